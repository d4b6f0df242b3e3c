"""Shared vision layer: image tensors and resizing (:mod:`~weaksam.vision.imaging`), the
convolutional backbones (:mod:`~weaksam.vision.backbones`), the one ResNet-50 loader
(:mod:`~weaksam.vision.resnet`) and cached feature maps as model input
(:mod:`~weaksam.vision.features`). WSOD, retraining, WSIS and the report import it; it imports
none of them."""

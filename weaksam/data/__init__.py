"""Data layer: COCO-format split index, weak (image-level) views, synthetic VOC-like generator,
VOC and COCO readers, VOCdevkit export. Training code reads training splits only through
:class:`weaksam.data.weak.WeakView`."""

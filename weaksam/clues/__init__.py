"""Classification clues (paper Sec. 3.1): a WeakTr-style CAM network and its maps.

``model``: the network (coarse CAM, fine CAM, class-to-patch cross-attention);
``train``: image-level training and classification mAP; ``infer``: multi-scale + flip maps;
``store``: the ``clues/{split}.npz`` file contract.
"""

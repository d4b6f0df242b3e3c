"""Weakly-supervised instance segmentation (paper Sec. 3.3, Tables 2 and 3, Fig. 9): PGT boxes
prompt SAM for pseudo instance masks; Mask R-CNN and Mask2Former are trained on them."""

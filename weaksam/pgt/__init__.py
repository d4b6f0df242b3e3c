"""Pseudo ground truth (PGT) from a WSOD run's trainval detections (paper Sec. 3.2).

- :mod:`weaksam.pgt.adaptive`: adaptive PGT, paper Algorithm 2 (appendix H: tau_s 0.3,
  tau_o 0.85);
- :mod:`weaksam.pgt.top1`: the top-scoring box of each labelled class (Table 5 baseline);
- :mod:`weaksam.pgt.build`: COCO results JSON + image-level labels -> COCO-format annotations;
- :mod:`weaksam.pgt.metrics`: PGT quality against the hidden ground truth (analysis only);
- :mod:`weaksam.pgt.figure`: paper Figure 7 (top-1 against adaptive PGT).
"""

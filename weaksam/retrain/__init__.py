"""Retraining on pseudo ground truth (paper Sec. 3.2): Faster R-CNN with RoI drop (``frcnn``,
``roi_drop``), the query-based detector with query drop (``query_detector``, ``query_drop``),
the shared training loop (``train``), data (``data``, ``features``) and inference (``infer``)."""

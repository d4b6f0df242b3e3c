"""Evaluation: VOC AP (voc.py), CorLoc (corloc.py), proposal recall (recall.py), COCO AP (coco.py).

Every metric takes plain COCO-format inputs (a ground-truth dict and a COCO results list) so it
can be tested without files; pipeline scripts load them. All numbers are returned in %.
"""

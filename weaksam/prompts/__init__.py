"""Automatic SAM prompts (paper Sec. 3.1): Algorithm 1 peaks, dense grid, KMeans de-duplication.

``peaks``: Algorithm 1; ``grid``: S x S patch centres; ``cluster``: KMeans of cross-attention
points; ``extract``: all sources of one image from its clues; ``evaluate``: pointing accuracy.
"""

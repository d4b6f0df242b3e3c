"""Region proposals: Selective Search baseline and WeakSAM (SAM prompted by clues)."""

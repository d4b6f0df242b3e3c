"""SAM for the workspace: the small SAM of the default profile (built from segment_anything's
own classes), its class-agnostic pre-training corpus and loop, and checkpoint loading for the
official ViT-H / ViT-L / ViT-B weights (paper Sec. 3.1 uses ViT-H)."""

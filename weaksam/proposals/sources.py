"""Names of proposal sources and the Table 4 prompt-source variants."""

PROMPT_SOURCES = ("dense", "cam_fine", "cam_coarse", "cross")

# Rows of paper Table 4 (after the Selective Search row): variant name -> prompt sources used.
TABLE4_VARIANTS: dict[str, tuple[str, ...]] = {
    "dense": ("dense",),
    "dense_fine": ("dense", "cam_fine"),
    "dense_fine_coarse": ("dense", "cam_fine", "cam_coarse"),
    "weaksam": ("dense", "cam_fine", "cam_coarse", "cross"),
}

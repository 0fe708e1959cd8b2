"""Mask kinds, importable without numpy (the CLI's help text needs them)."""

MASK_KINDS: tuple[str, ...] = (
    "irregular", "brush", "box", "thin", "medium", "thick", "occlusion", "mixed",
)
"""Every kind :func:`pconv_cli.data.masks.generate_mask` knows; ``irregular`` (MMagic) is
the training default. ``occlusion`` imitates NVIDIA's irregular test masks (thin curvy bands
along the contours of a smooth random field). A ``+``-joined spec such as ``mixed+occlusion``
picks one of its kinds uniformly per mask."""

"""Mask kinds, importable without numpy (the CLI's help text needs them)."""

MASK_KINDS: tuple[str, ...] = ("irregular", "brush", "box", "thin", "medium", "thick", "mixed")
"""Every kind :func:`pconv_cli.data.masks.generate_mask` knows; ``irregular`` (MMagic) is
the training default."""

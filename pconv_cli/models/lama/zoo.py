"""LaMa's published weights in pconv's zoo."""

from __future__ import annotations

from pconv_cli.weights.entry import WeightsEntry

__all__ = ["BIG_LAMA", "WEIGHTS"]

_PAPER = (
    "Suvorov, Logacheva, Mashikhin, Remizova, Ashukha, Silvestrov, Kong, Goka, Park, "
    "Lempitsky: Resolution-robust Large Mask Inpainting with Fourier Convolutions, WACV 2022"
)

_BIG_LAMA_CONFIG = {
    "ngf": 64, "n_downsampling": 3, "n_blocks": 18, "max_features": 1024, "ratio_g": 0.75,
    "enable_lfu": False, "out_act": "sigmoid", "ndf": 64, "disc_layers": 4,
}  # fmt: skip
"""big-lama's config.yaml: generator (ffc_resnet, 18 blocks) and discriminator (n_layers 4)."""

BIG_LAMA = WeightsEntry(
    name="big-lama",
    # The download LaMa's README gives (its Yandex links are gone); no hash is published.
    url="https://huggingface.co/smartywu/big-lama/resolve/main/big-lama.zip",
    sha256_prefix=None,
    source_format="lama",
    family="lama",
    config=_BIG_LAMA_CONFIG,
    dataset="Places365-Challenge (about 4.5 M photos)",
    description=(
        "Big LaMa: the FFC ResNet generator with 18 residual blocks (51 M parameters), "
        "trained at 256x256 on large masks; runs at any size (trained on 256 px crops, "
        "works up to about 2K). The zip holds LaMa's release folder (config.yaml + "
        "models/best.ckpt, a PyTorch Lightning checkpoint read without running its pickle)"
    ),
    train_size=256,
    normalization="unit",
    # LaMa paper, Table 1: LaMa-Fourier (27 M parameters, Places 512x512, wide masks). The
    # paper gives Big LaMa no row of its own in that table.
    metrics={"places-512-wide (LaMa-Fourier)": {"fid": 2.21, "lpips": 0.135}},
    license="Apache-2.0 (advimman/lama)",
    citation=f"{_PAPER}; https://github.com/advimman/lama",
    homepage="https://github.com/advimman/lama",
)

WEIGHTS: tuple[WeightsEntry, ...] = (BIG_LAMA,)

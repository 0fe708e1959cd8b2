"""The zoo: published weights pconv knows by name (in the spirit of torchvision's weights enums).

Each :class:`WeightsEntry` says where a file lives (a URL, or ``bundled``: a file
inside the package, loaded offline), its sha256, what it is (family, config,
data, the publisher's scores) and which converter reads it (``source_format``).
Nothing here downloads: see :mod:`pconv_cli.weights.hub`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pconv_cli.weights.errors import WeightsError

__all__ = [
    "DEFAULT_WEIGHTS",
    "ZOO",
    "WeightsEntry",
    "get_weights",
    "list_weights",
    "register_weights",
]

DEFAULT_WEIGHTS = "pconv-bsds300"
"""The zoo entry ``pconv inpaint``, ``pconv serve`` and ``pconv eval`` (without a source) use:
bundled in the package, so it works offline."""


@dataclass(frozen=True)
class WeightsEntry:
    """One set of published weights: where to get it and what it is.

    ``sha256_prefix`` is the start of the file's sha256 (torch.hub's convention:
    the 8 hex digits in MMagic's file names); ``None`` means no hash is published
    and the download is not checked. ``family`` and ``config`` are what the file
    converts to; ``colour_order`` and ``normalization`` describe the *original*
    weights (after conversion every entry runs on RGB images in [0, 1]).
    ``metrics`` maps an evaluation set to the publisher's scores. ``bundled`` names
    a file in ``pconv_cli/weights/bundled/`` (no URL; ``sha256_prefix`` is then the
    whole digest); ``recipe`` says how it was made, ``data_sha256`` identifies its
    training data (the sha256 of the data set's SHA256SUMS file). ``file_name`` is the
    file's name in the cache when the URL does not end with it (e.g. a Google Drive
    link); an entry with no ``url`` is downloaded by hand from ``download_page``.
    """

    name: str
    url: str
    sha256_prefix: str | None
    source_format: str
    family: str
    config: Mapping[str, Any]
    dataset: str
    description: str
    train_size: int = 256
    colour_order: str = "rgb"
    normalization: str = "minus_one_one"
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    license: str = ""
    citation: str = ""
    homepage: str = ""
    bundled: str | None = None
    recipe: str = ""
    data_sha256: str = ""
    file_name: str | None = None
    download_page: str = ""

    @property
    def filename(self) -> str:
        """The file name: the bundled file's, ``file_name``, or the URL's last component."""
        return self.bundled or self.file_name or self.url.rsplit("/", 1)[-1]


_PCONV_PAPER = (
    "Liu, Reda, Shih, Wang, Tao, Catanzaro: Image Inpainting for Irregular Holes "
    "Using Partial Convolutions, ECCV 2018"
)
_MMAGIC_CITATION = (
    f"{_PCONV_PAPER}; MMagic (OpenMMLab Multimodal Advanced, Generative, and "
    "Intelligent Creation Toolbox), https://github.com/open-mmlab/mmagic"
)
_MMAGIC_PCONV = "https://download.openmmlab.com/mmediting/inpainting/pconv/"
_MMAGIC_PCONV_HOME = "https://github.com/open-mmlab/mmagic/tree/main/configs/partial_conv"
_DEEPFILLV2_PAPER = (
    "Yu, Lin, Yang, Shen, Lu, Huang: Free-Form Image Inpainting with Gated Convolution, "
    "ICCV 2019"
)
_MMAGIC_DEEPFILLV2 = "https://download.openmmlab.com/mmediting/inpainting/deepfillv2/"
_MMAGIC_DEEPFILLV2_HOME = "https://github.com/open-mmlab/mmagic/tree/main/configs/deepfillv2"
_MMAGIC = (
    "MMagic (OpenMMLab Multimodal Advanced, Generative, and Intelligent Creation Toolbox), "
    "https://github.com/open-mmlab/mmagic"
)
_DEEPFILLV2 = {"width": 1.0, "normalization": "minus_one_one"}
_PCONV_L7 = {"layers": 7, "width": 1.0, "upsampling": "nearest", "normalization": "minus_one_one"}


_BSDS300_RECIPE = (
    "pconv train --preset default-model --data BSDS300/train --out RUN; "
    "pconv train --preset default-model --stage 2 --data BSDS300/train --out RUN; "
    "pconv weights convert RUN/stage2/last.safetensors -o pconv-bsds300.safetensors --half "
    "--keep-float32 'encoder.enc[1-3].*' --keep-float32 'decoder.dec[1-3].*'"
)


def _entries() -> list[WeightsEntry]:
    return [
        WeightsEntry(
            name="pconv-bsds300",
            url="",
            sha256_prefix="654c93e0a3303b5b41141ac32fccdcb496f044d2b5cc3a074756fe7abfd99ab4",
            source_format="pconv",
            family="pconv_unet",
            config={**_PCONV_L7, "width": 0.5},
            dataset="BSDS300 train (200 photos)",
            description=(
                "pconv's bundled default: a half-width 7-level PConv U-Net (6.4 M parameters) "
                "trained by pconv on 2 CPU cores with L1 + TV (no VGG), holes of 1-60 %; "
                "stored in float16 (the outer three levels float32), run in float32"
            ),
            metrics={"bsds300-val": {"l1": 9.430, "psnr": 23.70, "ssim": 0.8007}},  # README's table
            license="MIT (pconv); trained on BSDS300 images (research use)",
            citation=(
                f"{_PCONV_PAPER}; Martin, Fowlkes, Tal, Malik: A Database of Human Segmented "
                "Natural Images, ICCV 2001 (BSDS300)"
            ),
            bundled="pconv-bsds300.safetensors",
            recipe=_BSDS300_RECIPE,
            data_sha256="9f802b69989734b71fc5ff724dfab81a9811216606704b63416aa1b4deb702a8",
        ),
        WeightsEntry(
            name="mmagic-places",
            url=_MMAGIC_PCONV + "pconv_256x256_stage2_4x2_places_20200619-1ffed0e8.pth",
            sha256_prefix="1ffed0e8",
            source_format="mmagic",
            family="pconv_unet",
            config=_PCONV_L7,
            dataset="Places365",
            description="MMagic's PConv U-Net, stage 2 (BN-frozen fine-tuning), Places365, 256x256",
            colour_order="bgr",
            metrics={"places365-val": {"l1": 8.776, "psnr": 22.762, "ssim": 0.801}},
            license="Apache-2.0 (MMagic)",
            citation=_MMAGIC_CITATION,
            homepage=_MMAGIC_PCONV_HOME,
        ),
        WeightsEntry(
            name="mmagic-celeba",
            url=_MMAGIC_PCONV + "pconv_256x256_stage2_4x2_celeba_20200619-860f8b95.pth",
            sha256_prefix="860f8b95",
            source_format="mmagic",
            family="pconv_unet",
            config=_PCONV_L7,
            dataset="CelebA",
            description="MMagic's PConv U-Net, stage 2 (BN-frozen fine-tuning), CelebA, 256x256",
            colour_order="bgr",
            metrics={"celeba-val": {"l1": 5.990, "psnr": 25.404, "ssim": 0.853}},
            license="Apache-2.0 (MMagic)",
            citation=_MMAGIC_CITATION,
            homepage=_MMAGIC_PCONV_HOME,
        ),
        WeightsEntry(
            name="naoto0804-places2",
            # The README links the release page (tag v0.0.0); the asset is the
            # 1,000,000-iteration snapshot 1000000.pth. No hash is published.
            url=(
                "https://github.com/naoto0804/pytorch-inpainting-with-partial-conv/"
                "releases/download/v0.0.0/1000000.pth"
            ),
            sha256_prefix=None,
            source_format="naoto0804",
            family="pconv_unet",
            config={**_PCONV_L7, "normalization": "imagenet"},
            dataset="Places2",
            description=(
                "naoto0804's unofficial re-implementation, 500k iterations + 500k BN-frozen "
                "fine-tuning on Places2 at 256x256 (quality not guaranteed by its author)"
            ),
            normalization="imagenet",
            license="MIT (naoto0804/pytorch-inpainting-with-partial-conv)",
            citation=f"{_PCONV_PAPER}; https://github.com/naoto0804/pytorch-inpainting-with-partial-conv",
            homepage="https://github.com/naoto0804/pytorch-inpainting-with-partial-conv",
        ),
        WeightsEntry(
            name="mmagic-deepfillv2-places",
            url=_MMAGIC_DEEPFILLV2 + "deepfillv2_256x256_8x2_places_20200619-10d15793.pth",
            sha256_prefix="10d15793",
            source_format="mmagic",
            family="deepfillv2",
            config=_DEEPFILLV2,
            dataset="Places365",
            description="MMagic's DeepFillv2 (gated convolutions, contextual attention, "
            "SN-PatchGAN), Places365, 256x256",
            colour_order="bgr",
            metrics={"places365-val": {"l1": 8.635, "psnr": 22.398, "ssim": 0.815}},
            license="Apache-2.0 (MMagic)",
            citation=f"{_DEEPFILLV2_PAPER}; {_MMAGIC}",
            homepage=_MMAGIC_DEEPFILLV2_HOME,
        ),
        WeightsEntry(
            name="mmagic-deepfillv2-celeba",
            url=_MMAGIC_DEEPFILLV2 + "deepfillv2_256x256_8x2_celeba_20200619-c96e5f12.pth",
            sha256_prefix="c96e5f12",
            source_format="mmagic",
            family="deepfillv2",
            config=_DEEPFILLV2,
            dataset="CelebA",
            description="MMagic's DeepFillv2 (gated convolutions, contextual attention, "
            "SN-PatchGAN), CelebA, 256x256",
            colour_order="bgr",
            metrics={"celeba-val": {"l1": 5.411, "psnr": 25.721, "ssim": 0.871}},
            license="Apache-2.0 (MMagic)",
            citation=f"{_DEEPFILLV2_PAPER}; {_MMAGIC}",
            homepage=_MMAGIC_DEEPFILLV2_HOME,
        ),
    ]


ZOO: dict[str, WeightsEntry] = {entry.name: entry for entry in _entries()}
"""Published weights by name; see :func:`get_weights`. Families add theirs with
:func:`register_weights`."""


def register_weights(*entries: WeightsEntry) -> None:
    """Add (or replace) zoo entries; a family's package calls this for its published weights."""
    for entry in entries:
        ZOO[entry.name] = entry


def list_weights() -> list[WeightsEntry]:
    """Every zoo entry, in zoo order."""
    return list(ZOO.values())


def get_weights(name: str) -> WeightsEntry:
    """The zoo entry called ``name``; an unknown name is a :class:`WeightsError`."""
    try:
        return ZOO[name]
    except KeyError:
        raise WeightsError(
            f"unknown weights {name!r}; known: {', '.join(ZOO)} (or pass a file path)"
        ) from None

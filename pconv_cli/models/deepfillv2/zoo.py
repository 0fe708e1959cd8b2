"""Published weights of DeepFillv2 (torch-free): MMagic's Places365 and CelebA nets."""

from __future__ import annotations

from pconv_cli.weights.entry import WeightsEntry

_DEEPFILLV2_PAPER = (
    "Yu, Lin, Yang, Shen, Lu, Huang: Free-Form Image Inpainting with Gated Convolution, ICCV 2019"
)
_MMAGIC_DEEPFILLV2 = "https://download.openmmlab.com/mmediting/inpainting/deepfillv2/"
_MMAGIC_DEEPFILLV2_HOME = "https://github.com/open-mmlab/mmagic/tree/main/configs/deepfillv2"
_MMAGIC = (
    "MMagic (OpenMMLab Multimodal Advanced, Generative, and Intelligent Creation Toolbox), "
    "https://github.com/open-mmlab/mmagic"
)
_DEEPFILLV2 = {"width": 1.0, "normalization": "minus_one_one"}

WEIGHTS: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        name="mmagic-deepfillv2-places",
        download_mb=41.5,  # generator + discriminator, float32 (mmagic_deepfillv2_keys)
        url=_MMAGIC_DEEPFILLV2 + "deepfillv2_256x256_8x2_places_20200619-10d15793.pth",
        sha256_prefix="10d15793",
        source_format="mmagic-deepfillv2",
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
        download_mb=41.5,  # generator + discriminator, float32 (mmagic_deepfillv2_keys)
        url=_MMAGIC_DEEPFILLV2 + "deepfillv2_256x256_8x2_celeba_20200619-c96e5f12.pth",
        sha256_prefix="c96e5f12",
        source_format="mmagic-deepfillv2",
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
)

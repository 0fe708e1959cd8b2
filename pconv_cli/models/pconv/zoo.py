"""Published weights of the PConv U-Net (torch-free): the bundled default, MMagic's, naoto0804's."""

from __future__ import annotations

from pconv_cli.weights.entry import WeightsEntry

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
_PCONV_L7 = {"layers": 7, "width": 1.0, "upsampling": "nearest", "normalization": "minus_one_one"}


_BSDS300_RECIPE = (
    "pconv train --preset default-model --data BSDS300/train --out RUN; "
    "pconv train --preset default-model --stage 2 --data BSDS300/train --out RUN; "
    "pconv weights convert RUN/stage2/last.safetensors -o pconv-bsds300.safetensors --half "
    "--keep-float32 'encoder.enc[1-3].*' --keep-float32 'decoder.dec[1-3].*'"
)

WEIGHTS: tuple[WeightsEntry, ...] = (
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
        download_mb=206.2,  # generator + mask updaters, float32 (tests/data/mmagic_pconv_keys)
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
        download_mb=206.2,  # generator + mask updaters, float32 (tests/data/mmagic_pconv_keys)
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
)

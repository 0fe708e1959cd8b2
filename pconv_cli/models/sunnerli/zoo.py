"""Published weights of SunnerLi's P-Conv (torch-free)."""

from __future__ import annotations

from pconv_cli.weights.entry import WeightsEntry

PCONV_FAMILY = "sunnerli_pconv"
UNET_FAMILY = "sunnerli_unet"

_HOME = "https://github.com/SunnerLi/P-Conv"
_WIKI = "https://github.com/SunnerLi/P-Conv/wiki/Readme.md"
_DRIVE_FILE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"
_DRIVE_PAGE = "https://drive.google.com/file/d/{}/view"
_LICENSE = "no licence stated (SunnerLi/P-Conv has no LICENSE file): research use"
_CITATION = (
    "Liu, Reda, Shih, Wang, Tao, Catanzaro: Image Inpainting for Irregular Holes Using "
    f"Partial Convolutions, ECCV 2018; SunnerLi's re-implementation, {_HOME}"
)
_OLD = f"linked from his README until July 2018, now from his wiki: {_WIKI}"
_NO_HASH = "; no published hash, so the download is not checked"
_DOWNLOAD_MB = {PCONV_FAMILY: 343.0, UNET_FAMILY: 208.9}
"""Float32 tensors of his checkpoints (tests/data/sunnerli_*_keys.txt; the P-Conv file
holds its VGG16 loss network too)."""


def _entry(
    name: str,
    drive_id: str,
    file_name: str,
    family: str,
    description: str,
    *,
    size: int = 256,
    dataset: str = "Places365-Standard",
    **extra,
) -> WeightsEntry:
    return WeightsEntry(
        name=name,
        url=_DRIVE_FILE.format(drive_id),
        file_name=file_name,
        download_page=_DRIVE_PAGE.format(drive_id),
        sha256_prefix=None,
        source_format="sunnerli",
        family=family,
        config={"base": 64, "size": size},
        dataset=dataset,
        description=description + " (inference only, his test.py's steps)" + _NO_HASH,
        train_size=size,
        colour_order="bgr",
        license=_LICENSE,
        citation=_CITATION,
        homepage=_HOME,
        download_mb=_DOWNLOAD_MB[family],
        **extra,
    )


WEIGHTS: tuple[WeightsEntry, ...] = (
    _entry(
        "sunnerli-pconv-places365", "1Ss27dJ5TsQ39rCrUtEDnHt7eWst2jJyn",
        "pconv_256_retrain.pth", PCONV_FAMILY,
        "SunnerLi's partial-conv U-Net trained again in summer 2018, 20 epochs on Places365 "
        "at 256x256: the model his README links",
        metrics={"place365-10-images (his, holes 1-20 %)": {"psnr": 27.86}},
    ),
    _entry(
        "sunnerli-pconv-places365-v1", "1_r0Ek2CaPGfiIcchpxdzBbUrELjZwRNN",
        "sunnerli_pconv_places365_256_v1.pth", PCONV_FAMILY,
        f"SunnerLi's first partial-conv U-Net, 20 epochs on Places365 at 256x256 ({_OLD})",
    ),
    _entry(
        "sunnerli-pconv-coco-v1", "1noLXmAkCiSn7-LLPS8lpy4jVc_Br0paa",
        "pconv3_fine_tune_coco.pth", PCONV_FAMILY,
        "SunnerLi's first partial-conv U-Net fine-tuned on MS-COCO 2014 at 256x256, encoder "
        f"BatchNorm frozen ({_OLD})",
        dataset="Places365-Standard, then MS-COCO 2014 train",
    ),
    _entry(
        "sunnerli-pconv-places365-224-v1", "1VUxNQQXIRP6n92cT-z2F6rtDIOwxEyoo",
        "sunnerli_pconv_places365_224_v1.pth", PCONV_FAMILY,
        f"SunnerLi's first partial-conv U-Net trained at 224x224 on Places365 ({_OLD})",
        size=224,
    ),
    _entry(
        "sunnerli-unet-places365-v1", "1YLGXLndVgM0CkRd_s8-lgaGV_QUwG7rx",
        "sunnerli_unet_places365_256_v1.pth", UNET_FAMILY,
        "SunnerLi's plain U-Net baseline, 20 epochs on Places365 at 256x256 "
        f"({_OLD})",
        metrics={"place365-10-images (his, holes 1-20 %)": {"psnr": 18.62}},
    ),
)

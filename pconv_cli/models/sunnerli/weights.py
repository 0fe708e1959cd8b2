"""SunnerLi's published checkpoints: their converter (format ``sunnerli``) and zoo entries.

His files are ``torch.save(model.state_dict())`` of his ``PartialUNet`` / ``UNet``
(PyTorch 0.4, 2018), on Google Drive, without checksums. Each holds, besides the
U-Net, the VGG19 of his perceptual loss (``vgg.*``, a submodule of his model class).
The converter keeps his key names and drops what never affects the output:

- ``vgg.*`` (the loss network);
- ``*.pconv.mask_conv.1.weight``: the fixed kernels of ones that sum the mask (checked
  to be ones; pconv sums the mask with the same kernel, computed);
- ``down<k>.norm.*``: the encoder's BatchNorms, whose result his code discards.

``num_batches_tracked`` (absent from files written by PyTorch 0.4) is added as 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from pconv_cli.models.sunnerli.family import PCONV_FAMILY, UNET_FAMILY
from pconv_cli.weights.errors import WeightsError
from pconv_cli.weights.formats import Converted, register_converter
from pconv_cli.weights.zoo import WeightsEntry, register_weights

__all__ = ["ZOO_ENTRIES", "convert_sunnerli"]

_PCONV_KEY = "down1.pconv.img_conv.1.weight"
_UNET_KEYS = ("down1.layer.0.weight", "down8.layer.0.weight", "up8.layer.0.weight", "up1.weight")
_ENCODER_NORM = re.compile(r"down\d+\.norm\..+")
_BATCHNORM_MEAN = re.compile(r"(.+)\.running_mean")


def _is_sunnerli(state: Mapping[str, Tensor]) -> bool:
    return _PCONV_KEY in state or all(k in state for k in _UNET_KEYS)


def convert_sunnerli(state: Mapping[str, Tensor]) -> Converted:
    """His ``PartialUNet`` or ``UNet`` state dict -> (state, family, config); see the
    module docstring for what is dropped."""
    pconv = _PCONV_KEY in state
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("vgg.") or (pconv and _ENCODER_NORM.fullmatch(key)):
            continue
        if key.endswith(".mask_conv.1.weight"):
            if not bool((value == 1).all()):
                raise WeightsError(f"SunnerLi checkpoint: {key} is not a kernel of ones")
            continue
        out[key] = value
    for key in list(out):
        norm = _BATCHNORM_MEAN.fullmatch(key)
        if norm and f"{norm.group(1)}.num_batches_tracked" not in out:
            out[f"{norm.group(1)}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    first = out[_PCONV_KEY if pconv else _UNET_KEYS[0]]
    return out, PCONV_FAMILY if pconv else UNET_FAMILY, {"base": int(first.shape[0]), "size": 256}


register_converter("sunnerli", detect=_is_sunnerli, convert=convert_sunnerli)


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
        **extra,
    )


ZOO_ENTRIES = (
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

register_weights(*ZOO_ENTRIES)

"""Published weights of MI-GAN (torch-free)."""

from __future__ import annotations

from pconv_cli.weights.entry import WeightsEntry

FAMILY = "migan"

_PAPER = (
    "Sargsyan, Navasardyan, Xu, Shi: MI-GAN: A Simple Baseline for Image Inpainting on "
    "Mobile Devices, ICCV 2023"
)
_HOME = "https://github.com/Picsart-AI-Research/MI-GAN"
_FOLDER = "https://drive.google.com/drive/folders/1xNtvN2lto0p5yFKOEEg9RioMjGrYM74w"
_DRIVE_FILE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"
_LICENSE = "MIT (Picsart AI Research, MI-GAN repository and weights)"
_CONFIG = {"channel_base": 32768, "channel_max": 512, "pipeline": "demo"}
_NO_HASH = "; MI-GAN publishes no checksum, so the download is not checked"

WEIGHTS: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        name="migan-512-places2",
        download_mb=29.5,  # float32 tensors and buffers (tests/data/migan_512_keys.txt)
        # the file in the publisher's Drive folder (its id as recorded by users of the folder)
        url=_DRIVE_FILE.format("1D_YCuCgo20S2256sqpedsmENNm2WMtVY"),
        file_name="migan_512_places2.pt",
        download_page=_FOLDER,
        sha256_prefix=None,
        source_format="migan",
        family=FAMILY,
        config={"resolution": 512, **_CONFIG},
        dataset="Places2 (Places365-Standard, 512x512)",
        description=(
            "MI-GAN 512 (inference only): 5.97 M parameters, about 15 G multiply-adds per "
            "512x512 image (the paper: 5.98 M, 15.7 GFLOPs vs LaMa's 27.05 M, 128.1); "
            "MI-GAN's demo steps up to 512 px, a window per hole beyond" + _NO_HASH
        ),
        train_size=512,
        metrics={"places2-512 (paper, FID)": {"fid": 10.00}},
        license=_LICENSE,
        citation=_PAPER,
        homepage=_HOME,
    ),
    WeightsEntry(
        name="migan-256-places2",
        download_mb=25.2,  # float32 tensors and buffers (tests/data/migan_256_keys.txt)
        url="",
        file_name="migan_256_places2.pt",
        download_page=_FOLDER,
        sha256_prefix=None,
        source_format="migan",
        family=FAMILY,
        config={"resolution": 256, **_CONFIG},
        dataset="Places2 (Places365-Standard, 256x256)",
        description=(
            "MI-GAN 256 (inference only, 5.94 M parameters): the demo's steps at 256 px, "
            "a window per hole beyond; download it by hand from the publisher's folder"
            + _NO_HASH
        ),
        license=_LICENSE,
        citation=_PAPER,
        homepage=_HOME,
    ),
    WeightsEntry(
        name="migan-256-ffhq",
        download_mb=25.2,  # float32 tensors and buffers (tests/data/migan_256_keys.txt)
        url="",
        file_name="migan_256_ffhq.pt",
        download_page=_FOLDER,
        sha256_prefix=None,
        source_format="migan",
        family=FAMILY,
        config={"resolution": 256, **_CONFIG},
        dataset="FFHQ (aligned faces, 256x256)",
        description=(
            "MI-GAN 256 for face crops like FFHQ's (inference only); download it by hand "
            "from the publisher's folder" + _NO_HASH
        ),
        license=_LICENSE + "; FFHQ itself is CC BY-NC-SA 4.0",
        citation=_PAPER,
        homepage=_HOME,
    ),
)

"""The one place pconv reads and writes images: suffixes, decoding, uint8 conversion, saving.

Conventions:

- Pictures are read *upright*: EXIF orientation is applied on load.
- Arrays are uint8 RGB (H, W, 3); float images are RGB on the [0, 1] scale.
- :func:`to_uint8` is the one float -> uint8 conversion: clamp to [0, 1],
  multiply by 255, **round half to even** (numpy ``rint`` / torch ``round``).
- Every file is written atomically (:func:`pconv_cli.files.atomic_write`): a
  crash leaves the old file or the new one, never half of one.

Masks have their own reader and writer in :mod:`pconv_cli.data.masks`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps

from pconv_cli.errors import PconvError
from pconv_cli.files import atomic_write

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEEP_FORMATS",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "SUFFIX_OF_FORMAT",
    "ImageDepthWarning",
    "ImageError",
    "ImageMetadataWarning",
    "LoadedImage",
    "encode_image",
    "find_images",
    "format_for_suffix",
    "load_image",
    "open_rgb",
    "output_image",
    "read_rgb",
    "save_image",
    "save_png",
    "to_uint8",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Suffixes (any case) of the image files pconv reads: photos, masks, predictions."""

FORMATS: dict[str, str] = {
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "bmp": "BMP",
    "tiff": "TIFF",
    "tif": "TIFF",
}
"""Output format names (``--format`` values and file suffixes) -> Pillow format."""

SUFFIX_OF_FORMAT: dict[str, str] = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
"""The suffix pconv gives a file of each Pillow format."""


class ImageError(PconvError, ValueError):
    """An image that cannot be read or written; the message is one line for the CLI."""


class ImageDepthWarning(UserWarning):
    """An image whose bit depth the output cannot keep (e.g. 16-bit grey saved as JPEG)."""


class ImageMetadataWarning(UserWarning):
    """Metadata the output format cannot hold (e.g. 70 KB of EXIF in a JPEG), left out."""


JPEG_MAX_MARKER = 65533
"""Largest EXIF block (bytes, with its ``Exif`` header) one JPEG APP1 marker holds."""


DEEP_FORMATS = ("PNG", "TIFF")
"""Output formats that hold 16-bit grey pictures."""


def to_uint8(values: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Float [0, 1] -> uint8 0..255: clamp, x255, round half to even (numpy or torch, same type)."""
    if isinstance(values, np.ndarray):
        return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    import torch

    return values.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)


def format_for_suffix(suffix: str) -> str | None:
    """The Pillow format of a file suffix (``".jpg"`` -> ``"JPEG"``), None if unknown."""
    return FORMATS.get(suffix.lower().lstrip("."))


def find_images(folder: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Image files in ``folder`` (hidden files and folders skipped), sorted by relative path.

    The order is that of the ``/``-separated relative paths as strings, on every OS.
    """
    folder = Path(folder)
    found = []
    for path in folder.rglob("*") if recursive else folder.iterdir():
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _read_error(path: Path, what: str, error: BaseException) -> ImageError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    return ImageError(f"cannot read {what} {path}: {reason}")


def open_rgb(path: str | os.PathLike[str], what: str = "image") -> Image.Image:
    """An image file as an upright RGB PIL image (``what`` names it in errors)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise _read_error(path, what, error) from None


def read_rgb(path: str | os.PathLike[str], what: str = "image") -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3) at its own size, upright."""
    return np.asarray(open_rgb(path, what))


def save_png(
    path: str | os.PathLike[str],
    picture: Image.Image | np.ndarray,
    *,
    compress_level: int | None = None,
) -> Path:
    """Write a PIL image or a uint8 array as PNG, atomically (zlib's default level unless given)."""
    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture)
    options: dict[str, Any] = {} if compress_level is None else {"compress_level": compress_level}
    return atomic_write(path, lambda tmp: picture.save(tmp, format="PNG", **options))


_KEEP_MODES = ("RGB", "RGBA", "L", "LA")
_EXIF_FORMATS = ("JPEG", "PNG", "WEBP")
_ICC_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")


@dataclass
class LoadedImage:
    """An image file, upright (EXIF orientation applied), as pconv inpaints it.

    ``rgb``: uint8 (H, W, 3) fed to the net; ``upright``: the upright PIL image in
    its own mode; ``format``: the file's format (``"JPEG"``, ``"PNG"``...);
    ``exif``: EXIF bytes without the orientation tag (or None); ``icc_profile``;
    ``jpeg_subsampling``: the input's chroma subsampling (-1 = unknown);
    ``deep``: the uint16 grey values of a 16-bit grey picture (``upright`` and
    ``rgb`` then hold its top 8 bits); ``bits``: the file's bits per channel.
    """

    path: Path
    rgb: np.ndarray
    upright: Image.Image
    format: str
    exif: bytes | None = None
    icc_profile: bytes | None = None
    jpeg_subsampling: int = -1
    deep: np.ndarray | None = None
    bits: int = 8

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]


def load_image(path: str | os.PathLike[str] | BinaryIO, *, name: str | None = None) -> LoadedImage:
    """Read an image file upright: EXIF orientation applied, other EXIF kept.

    RGB, RGBA, L and LA stay as they are; 16-bit grey is kept in ``deep`` (the
    network sees its top 8 bits), palette and other modes become RGB (RGBA with
    transparency). 16-bit RGB files are read by Pillow as 8-bit RGB (``bits`` says 16).
    ``path`` may also be a binary stream (an upload); ``name`` then names it.
    """
    stream = hasattr(path, "read")
    opened = path if stream else Path(path)
    path = Path(name or "image") if stream else opened
    try:
        with Image.open(opened) as source:
            rawmode = str(source.tile[0].args[0] if isinstance(source.tile[0].args, tuple)
                          else source.tile[0].args) if source.tile else ""  # fmt: skip
            source.load()
            file_format = source.format or "PNG"
            subsampling = -1
            if file_format == "JPEG":
                from PIL import JpegImagePlugin

                subsampling = JpegImagePlugin.get_sampling(source)
            upright = ImageOps.exif_transpose(source)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise _read_error(path, "image", error) from None
    deep = None
    if upright.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey: the net sees 8 bits
        deep = np.clip(np.asarray(upright).astype(np.int64), 0, 65535).astype(np.uint16)
        upright = Image.fromarray((deep >> 8).astype(np.uint8), "L")
    if upright.mode not in _KEEP_MODES:
        has_alpha = upright.mode in ("PA", "RGBa", "La") or "transparency" in upright.info
        upright = upright.convert("RGBA" if has_alpha else "RGB")
    exif = upright.getexif()
    exif.pop(0x0112, None)
    return LoadedImage(
        path=path,
        rgb=np.asarray(upright.convert("RGB")),
        upright=upright,
        format=file_format,
        exif=exif.tobytes() if len(exif) else None,
        icc_profile=upright.info.get("icc_profile"),
        jpeg_subsampling=subsampling,
        deep=deep,
        bits=16 if deep is not None or ";16" in rawmode else 8,
    )


def output_image(
    loaded: LoadedImage, rgb: np.ndarray, hole: np.ndarray, file_format: str | None = None
) -> Image.Image:
    """The result in the input's mode: RGB/RGBA/L/LA, with alpha and known pixels kept.

    For ``L``/``LA`` inputs only hole pixels take the luma of ``rgb``; alpha is
    always the input's. A 16-bit grey input stays 16-bit (``I;16``, hole pixels
    ``luma * 257``) when ``file_format`` holds it (PNG, TIFF); otherwise, or for
    16-bit RGB inputs, an :class:`ImageDepthWarning` says the output has 8 bits.
    """
    target = (file_format or loaded.format).upper()
    if loaded.deep is not None and target in DEEP_FORMATS:
        luma = np.asarray(Image.fromarray(rgb, "RGB").convert("L")).astype(np.uint16)
        deep = loaded.deep.copy()
        deep[hole] = luma[hole] * np.uint16(257)
        return Image.fromarray(deep)  # uint16 grey: mode I;16
    if loaded.bits > 8:
        import warnings

        warnings.warn(
            f"{loaded.path} has 16 bits per channel; the {target} output has 8"
            + ("" if loaded.deep is not None else " (Pillow reads 16-bit colour as 8-bit)"),
            ImageDepthWarning,
            stacklevel=2,
        )
    mode = loaded.upright.mode
    if mode == "RGB":
        return Image.fromarray(rgb, "RGB")
    original = np.array(loaded.upright)
    if mode in ("L", "LA"):
        luma = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
        if mode == "L":
            original[hole] = luma[hole]
        else:
            original[..., 0][hole] = luma[hole]
        return Image.fromarray(original, mode)
    original[..., :3] = rgb  # RGBA
    return Image.fromarray(original, "RGBA")


def _save_options(
    image: Image.Image, loaded: LoadedImage, file_format: str, quality: int | None
) -> tuple[Image.Image, dict]:
    options: dict = {}
    if file_format == "JPEG":
        if image.mode in ("RGBA", "LA"):
            image = image.convert(image.mode[:-1])
        options["quality"] = 95 if quality is None else quality
        if loaded.format == "JPEG" and loaded.jpeg_subsampling >= 0:
            options["subsampling"] = loaded.jpeg_subsampling
    elif file_format == "WEBP":
        options["quality"] = 95 if quality is None else quality
    elif quality is not None and file_format != "PNG":
        options["quality"] = quality
    if file_format == "BMP" and image.mode == "LA":
        image = image.convert("RGBA")  # BMP has no grey + alpha mode; RGBA keeps both
    if loaded.exif and file_format in _EXIF_FORMATS:
        if file_format == "JPEG" and len(loaded.exif) > JPEG_MAX_MARKER:
            import warnings

            warnings.warn(
                f"{loaded.path.name}: its EXIF ({len(loaded.exif) // 1024} KB) does not fit in "
                f"a JPEG ({JPEG_MAX_MARKER // 1024} KB at most); the output has none",
                ImageMetadataWarning,
                stacklevel=3,
            )
        else:
            options["exif"] = loaded.exif
    if loaded.icc_profile and file_format in _ICC_FORMATS:
        options["icc_profile"] = loaded.icc_profile
    return image, options


def encode_image(
    image: Image.Image,
    loaded: LoadedImage,
    *,
    file_format: str | None = None,
    quality: int | None = None,
) -> bytes:
    """``image`` encoded as :func:`save_image` writes it, as bytes (for uploads/downloads)."""
    import io

    file_format = (file_format or loaded.format).upper()
    image, options = _save_options(image, loaded, file_format, quality)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=file_format, **options)
    except (OSError, ValueError, KeyError) as error:
        raise ImageError(f"cannot encode the result as {file_format}: {error}") from None
    return buffer.getvalue()


def save_image(
    path: str | os.PathLike[str],
    image: Image.Image,
    loaded: LoadedImage,
    *,
    file_format: str | None = None,
    quality: int | None = None,
) -> Path:
    """Write ``image`` atomically in ``file_format`` (default: the input's format).

    JPEG/WebP quality defaults to 95; the input's EXIF (without orientation), ICC
    profile and JPEG chroma subsampling are kept where the format allows.
    """
    file_format = (file_format or loaded.format).upper()
    image, options = _save_options(image, loaded, file_format, quality)

    def save(tmp: Path) -> None:
        image.save(tmp, format=file_format, **options)

    try:
        return atomic_write(path, save)
    except (OSError, ValueError, KeyError) as error:
        raise ImageError(f"cannot write {path} as {file_format}: {error}") from None

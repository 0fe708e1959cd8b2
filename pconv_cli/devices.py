"""Device selection shared by every command (``--device auto|cpu|cuda|mps``).

Importing this module is cheap (torch is imported when a device is resolved), so
commands can validate ``--device`` before loading anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pconv_cli.errors import PconvError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(PconvError, ValueError):
    """A device that is not available here (one-line message for the CLI)."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an unavailable device is an error."""
    import torch

    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {name!r}; choose from {', '.join(DEVICE_CHOICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is available (try --device cpu)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: Apple MPS is not available (try --device cpu)")
    device = torch.device(name)
    if (
        device.type == "cuda"
        and device.index is not None
        and (device.index >= torch.cuda.device_count())
    ):
        raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device

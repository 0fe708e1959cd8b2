"""LaMa's high-receptive-field perceptual loss (``ResNetPL``) and the network it uses.

The features come from the encoder of CSAIL's ADE20k scene-parsing model
``resnet50dilated`` (``ppm_deepsup`` decoder, epoch 20), as LaMa's
``models/ade20k`` builds it: a ResNet-50 with a three-convolution stem (3x3 convs
64, 64, 128; the first with stride 2) and max pooling, ``layer3`` and ``layer4``
without stride and dilated by 2 and 4 (8x downsampling in all). Module names are
CSAIL's (``conv1``, ``bn1`` ... ``layer4.2.bn3``), so its ``encoder_epoch_20.pth``
loads as it is.

``ResNetPL``: ImageNet-normalise prediction and target, take the outputs of
``layer1`` ... ``layer4`` for both, sum the four MSEs. As in LaMa's training, where
Lightning's ``train()`` reaches the loss module too, the encoder's BatchNorm layers
normalise with the batch's statistics (their weights stay frozen).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.nn.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from pconv_cli.train.errors import TrainingError

__all__ = [
    "ADE20K_ENCODER_FILE",
    "ADE20K_ENCODER_URL",
    "EncoderWeightsError",
    "ResNetPL",
    "ResnetDilated",
    "ade20k_encoder_path",
    "load_ade20k_encoder",
]

ADE20K_ENCODER_URL = (
    "http://sceneparsing.csail.mit.edu/model/pytorch/"
    "ade20k-resnet50dilated-ppm_deepsup/encoder_epoch_20.pth"
)
"""Where LaMa's README downloads the encoder from (CSAIL publishes no hash for it)."""
ADE20K_ENCODER_FILE = "ade20k-resnet50dilated-ppm_deepsup-encoder_epoch_20.pth"
"""Its file name in torch.hub's cache (the URL's own name, ``encoder_epoch_20.pth``, is
too generic to share a folder with other weights)."""


class EncoderWeightsError(TrainingError):
    """The ADE20k encoder is needed but cannot be had (one-line message with advice)."""


class Bottleneck(nn.Module):
    """ResNet's bottleneck (1x1, 3x3 with the stride and dilation, 1x1 to 4x), CSAIL's names."""

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)  # fmt: skip
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if downsample:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _layer(inplanes: int, planes: int, blocks: int, *, stride: int, dilations: tuple[int, int]):
    """``blocks`` bottlenecks; the first takes the stride (or, dilated, none) and
    ``dilations[0]``, the others ``dilations[1]``."""
    layers = [Bottleneck(inplanes, planes, stride, dilations[0], downsample=True)]
    layers += [Bottleneck(planes * 4, planes, 1, dilations[1], False) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResnetDilated(nn.Module):
    """CSAIL's ``ResnetDilated(resnet50, dilate_scale=8)``; ``forward(x)`` returns the
    outputs of ``layer1`` ... ``layer4`` (x normalised with ImageNet's statistics)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _layer(128, 64, 3, stride=1, dilations=(1, 1))
        self.layer2 = _layer(256, 128, 4, stride=2, dilations=(1, 1))
        self.layer3 = _layer(512, 256, 6, stride=1, dilations=(1, 2))
        self.layer4 = _layer(1024, 512, 3, stride=1, dilations=(2, 4))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


def ade20k_encoder_path() -> Path:
    """Where the encoder lives: ``torch.hub.get_dir()/checkpoints/<ADE20K_ENCODER_FILE>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ADE20K_ENCODER_FILE


def _advice(path: Path) -> str:
    return (
        f"download {ADE20K_ENCODER_URL} to {path}, or train without LaMa's perceptual loss "
        "with --loss resnet_pl=0 (LaMa's recipe weights it 30)"
    )


def fetch_ade20k_encoder(*, download: bool = True) -> Path:
    """The encoder file in the hub cache, downloaded once if missing and ``download``.

    CSAIL publishes no hash for it, so the download is not checked against one; the file
    is read with ``torch.load(weights_only=True)`` (no pickled code can run) and its keys
    and shapes are checked."""
    path = ade20k_encoder_path()
    if path.is_file():
        return path
    if not download:
        raise EncoderWeightsError(f"the ADE20k encoder is not in the hub cache: {_advice(path)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(ADE20K_ENCODER_URL, str(path), progress=False)
    except Exception as exc:  # URLError, HTTPError, timeouts
        reason = getattr(exc, "reason", None) or exc
        raise EncoderWeightsError(f"cannot download the ADE20k encoder ({reason}): "
                                  f"{_advice(path)}") from None  # fmt: skip
    return path


def load_ade20k_encoder(path: str | Path | None = None, *, download: bool = True) -> ResnetDilated:
    """The frozen encoder with CSAIL's weights (``path``, or the hub cache; see
    :func:`fetch_ade20k_encoder`). Wrong or unreadable files are :class:`EncoderWeightsError`."""
    from pconv_cli.weights.errors import WeightsError
    from pconv_cli.weights.formats import read_state_file

    path = Path(path) if path is not None else fetch_ade20k_encoder(download=download)
    try:
        state = read_state_file(path)
    except WeightsError as exc:
        raise EncoderWeightsError(f"ADE20k encoder {path}: {exc}") from None
    encoder = ResnetDilated()
    for key, value in encoder.state_dict().items():
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            found = tuple(state[key].shape) if key in state else "missing"
            raise EncoderWeightsError(
                f"ADE20k encoder {path}: {key} is {found}, expected {tuple(value.shape)} "
                f"(not CSAIL's resnet50dilated encoder?); {_advice(path)}"
            )
    encoder.load_state_dict({k: state[k] for k in encoder.state_dict()})
    return encoder.requires_grad_(False)


class ResNetPL(nn.Module):
    """LaMa's ``ResNetPL``: ``forward(pred, target)`` (RGB in [0, 1]) is the sum over the
    four stages of ``mse(features(pred), features(target))``, unweighted (the task
    weights it); features in float32."""

    def __init__(self, encoder: ResnetDilated):
        super().__init__()
        self.impl = encoder.requires_grad_(False)
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        with torch.autocast(pred.device.type, enabled=False):
            pred_features = self.impl(self.normalize(pred.float()))
            with torch.no_grad():
                target_features = self.impl(self.normalize(target.float()))
            losses = [F.mse_loss(p, t) for p, t in zip(pred_features, target_features, strict=True)]
        return torch.stack(losses).sum()

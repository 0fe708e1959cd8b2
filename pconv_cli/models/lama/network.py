"""LaMa's networks: the FFC ResNet generator and the PatchGAN discriminator, LaMa's key names.

:class:`LamaGenerator` is LaMa's ``FFCResNetGenerator`` (``model.0`` ... ``model.N``
in the same order, so ``generator.*`` keys of a LaMa checkpoint load 1:1 after the
prefix is dropped) with LaMa's inference around it (``bin/predict.py`` and
``DefaultInpaintingTrainingModule.forward``): image RGB in [0, 1], hole = 1, masked
image ``image * (1 - hole)`` and the hole concatenated (4 channels), both padded at
the bottom and right to a multiple of 8 by symmetric reflection (numpy's
``mode="symmetric"``, as LaMa's ``pad_img_to_modulo``), sigmoid output, cropped back.

:class:`NLayerDiscriminator` is LaMa's ``pix2pixhd_nlayer`` (``model0`` ...
``model{n_layers+1}``): it sees the RGB image alone and returns the score map and
the activations of every block before the last (for feature matching).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pconv_cli.models.inpainting import check_inputs
from pconv_cli.models.lama.ffc import (
    BatchNorm2d,
    FFCBNAct,
    FFCResnetBlock,
    Pair,
    no_autograd,
    reflect_conv2d,
)

__all__ = [
    "LamaConfig",
    "LamaGenerator",
    "NLayerDiscriminator",
    "pad_symmetric",
]

OUTPUT_ACTIVATIONS = ("sigmoid", "tanh", "none")


@dataclass(frozen=True)
class LamaConfig:
    """Options of the ``lama`` family, named as in LaMa's ``generator`` / ``discriminator``
    configs (defaults: big-lama's).

    - ``ngf``: channels of the first convolution (doubled per downsampling, at most
      ``max_features``); ``n_downsampling``: stride-2 convolutions (and transposed
      ones back); ``n_blocks``: FFC residual blocks (big-lama 18, lama-fourier 9);
    - ``ratio_g``: share of global (spectral) channels in the residual blocks (LaMa's
      ``resnet_conv_kwargs.ratio_gin`` = ``ratio_gout``); ``enable_lfu``: their local
      Fourier unit; ``out_act``: LaMa's ``add_out_act``, ``sigmoid`` (its releases),
      ``tanh`` (its default) or ``none``;
    - ``ndf``, ``disc_layers``: the discriminator's width and strided layers
      (LaMa's ``discriminator.ndf`` and ``n_layers``).
    """

    ngf: int = 64
    n_downsampling: int = 3
    n_blocks: int = 18
    max_features: int = 1024
    ratio_g: float = 0.75
    enable_lfu: bool = False
    out_act: str = "sigmoid"
    ndf: int = 64
    disc_layers: int = 4

    def __post_init__(self) -> None:
        for name in ("ngf", "n_downsampling", "n_blocks", "max_features", "ndf", "disc_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name, low in (("ngf", 1), ("n_downsampling", 1), ("n_blocks", 0),
                          ("max_features", 1), ("ndf", 1), ("disc_layers", 1)):  # fmt: skip
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be at least {low}, got {getattr(self, name)}")
        if isinstance(self.ratio_g, bool) or not isinstance(self.ratio_g, (int, float)):
            raise ValueError(f"ratio_g must be a number, got {self.ratio_g!r}")
        if not 0 <= self.ratio_g < 1:
            raise ValueError(f"ratio_g must be in [0, 1), got {self.ratio_g}")
        object.__setattr__(self, "ratio_g", float(self.ratio_g))
        if not isinstance(self.enable_lfu, bool):
            raise ValueError(f"enable_lfu must be true or false, got {self.enable_lfu!r}")
        if self.out_act not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"out_act must be one of {OUTPUT_ACTIVATIONS}, got {self.out_act!r}")

    def channels(self, level: int) -> int:
        """Channels after ``level`` downsamplings (LaMa's ``min(max_features, ngf * 2**level)``)."""
        return min(self.max_features, self.ngf * 2**level)


def _symmetric_index(size: int, total: int, device: torch.device) -> Tensor:
    """Indices of numpy's ``mode="symmetric"`` padding of ``size`` to ``total`` (at the end)."""
    index = torch.arange(total, device=device) % (2 * size)
    return torch.where(index < size, index, 2 * size - 1 - index)


def pad_symmetric(x: Tensor, multiple: int, minimum: int = 1) -> Tensor:
    """Pad bottom and right to a multiple of ``multiple`` (and at least ``minimum``) by
    mirroring with the edge repeated (``np.pad(mode="symmetric")``, LaMa's
    ``pad_img_to_modulo``)."""
    height, width = x.shape[-2:]
    pad_h = max(minimum, height + (-height) % multiple) - height
    pad_w = max(minimum, width + (-width) % multiple) - width
    if pad_h:
        x = x.index_select(-2, _symmetric_index(height, height + pad_h, x.device))
    if pad_w:
        x = x.index_select(-1, _symmetric_index(width, width + pad_w, x.device))
    return x


class ConcatTuple(nn.Module):
    """Local and global features back into one tensor (LaMa's ``ConcatTupleLayer``)."""

    def forward(self, x: Pair) -> Tensor:
        x_l, x_g = x
        if x_g is None:
            return x_l
        if x_l is None:
            return x_g
        return torch.cat([x_l, x_g], 1)


class LamaGenerator(nn.Module):
    """LaMa's ``FFCResNetGenerator`` and its inference (see the module docstring).

    ``forward(image, mask)``: ``image`` RGB (N, 3, H, W) in [0, 1], ``mask`` 1 = valid
    (pconv's convention; LaMa's hole mask is ``1 - mask``), any H, W (padded to at least
    :attr:`min_size`, 16 px, where LaMa's own code stops); returns the raw
    prediction (N, 3, H, W) in [0, 1] (sigmoid), not composited. :meth:`generate` is
    LaMa's generator alone on its 4-channel input.
    """

    default_blend = "none"
    """``--blend auto`` composites as LaMa's predict.py does (pixels as LaMa's own code)."""

    def __init__(self, config: LamaConfig):
        super().__init__()
        c = config
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), FFCBNAct(4, c.ngf, 7, 0, 0)]
        for level in range(c.n_downsampling):
            last = level == c.n_downsampling - 1
            layers.append(FFCBNAct(
                c.channels(level), c.channels(level + 1), 3, 0, c.ratio_g if last else 0,
                stride=2, padding=1,
            ))  # fmt: skip
        bottleneck = c.channels(c.n_downsampling)
        for _ in range(c.n_blocks):
            layers.append(FFCResnetBlock(bottleneck, c.ratio_g, enable_lfu=c.enable_lfu))
        layers.append(ConcatTuple())
        relu = nn.ReLU(True)  # LaMa shares one ReLU module between the upsampling levels
        for level in range(c.n_downsampling, 0, -1):
            out_channels = min(c.max_features, int(c.ngf * 2**level / 2))
            layers += [
                nn.ConvTranspose2d(c.channels(level), out_channels, 3, stride=2, padding=1,
                                   output_padding=1),
                BatchNorm2d(out_channels),
                relu,
            ]  # fmt: skip
        self._tail = len(layers)  # the last padding and convolution
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c.ngf, 3, 7)]
        if c.out_act != "none":
            layers.append(nn.Sigmoid() if c.out_act == "sigmoid" else nn.Tanh())
        self.model = nn.Sequential(*layers)
        self.config = config
        self.size_multiple = 2**c.n_downsampling * (2 if c.enable_lfu else 1)
        # the reflection padding of the stride-2 and bottleneck convolutions needs 2 pixels
        self.min_size = 2 ** (c.n_downsampling + 1)

    def generate(self, x: Tensor) -> Tensor:
        """LaMa's generator on ``[masked image, hole]`` (N, 4, H, W), H and W multiples of
        :attr:`size_multiple` and at least :attr:`min_size`.

        Without autograd the reflection-padded convolutions at full and half resolution run
        in bands of rows (the padded copies never exist whole; the same values)."""
        layers = list(self.model)
        features: Tensor | Pair = x
        for layer in layers[: self._tail]:
            if isinstance(layer, (FFCBNAct, FFCResnetBlock)):
                features = layer(features if isinstance(features, tuple) else (features, None))
            else:
                features = layer(features)
        pad, conv = layers[self._tail : self._tail + 2]
        if no_autograd(features, conv.weight):  # the same as below, in bands of rows
            features = reflect_conv2d(features, conv.weight, conv.bias, stride=1, padding=3)
        else:
            features = conv(pad(features))
        for layer in layers[self._tail + 2 :]:
            features = layer(features)
        return features

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        mask = check_inputs(image, mask)
        height, width = image.shape[-2:]
        hole = (mask.amin(1, keepdim=True) < 1).to(image.dtype)  # LaMa: (mask > 0) * 1
        image = pad_symmetric(image, self.size_multiple, self.min_size)
        hole = pad_symmetric(hole, self.size_multiple, self.min_size)
        x = torch.cat([image * (1 - hole), hole], 1)
        del image, hole
        return self.generate(x)[..., :height, :width]


class NLayerDiscriminator(nn.Module):
    """LaMa's ``NLayerDiscriminator`` (pix2pixHD's PatchGAN): 4x4 convolutions, padding 2.

    ``model0``: conv stride 2 + LeakyReLU(0.2); ``model1`` ... ``model{n-1}``: conv stride
    2 + BN + LeakyReLU; ``model{n}``: conv stride 1 + BN + LeakyReLU; ``model{n+1}``: conv
    to one channel. Channels ``ndf * 2**k``, at most 512. ``forward(image)`` (RGB in
    [0, 1]) returns ``(scores, [activations of model0 ... model{n}])``.
    """

    def __init__(self, config: LamaConfig):
        super().__init__()
        self.n_layers = n = config.disc_layers
        kernel, padding = 4, math.ceil((4 - 1) / 2)
        channels = [3] + [min(config.ndf * 2**k, 512) for k in range(n + 1)]
        for k in range(n + 2):
            if k == n + 1:
                block = [nn.Conv2d(channels[-1], 1, kernel, padding=padding)]
            else:
                stride = 2 if k < n else 1
                block = [nn.Conv2d(channels[k], channels[k + 1], kernel, stride, padding)]
                if k > 0:
                    block.append(nn.BatchNorm2d(channels[k + 1]))
                block.append(nn.LeakyReLU(0.2, True))
            self.add_module(f"model{k}", nn.Sequential(*block))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for k in range(self.n_layers + 2):
            x = getattr(self, f"model{k}")(x)
            features.append(x)
        return features[-1], features[:-1]

"""Loss objects of the training tasks: the paper's inpainting loss, masked L1, GAN losses.

Every loss here is an object (an ``nn.Module`` or a small callable class) that a
task holds and calls; the weights of a task's terms live in its ``loss_weights``
(``--loss TERM=WEIGHT``). GAN losses (:class:`HingeGANLoss`, :class:`NonSaturatingR1`
and the functions :func:`r1_penalty` and :func:`feature_matching_loss`) take the
discriminator's raw scores or features; they know no model.

The loss of Liu et al. (ECCV 2018), every term separately weighted and logged:

    L = 1*L_valid + 6*L_hole + 0.05*(L_perc_out + L_perc_comp)
        + 120*(L_style_out + L_style_comp) + 0.1*L_tv  (+ ssim*L_ssim, 0 by default)

Conventions: ``output`` and ``target`` are float RGB on the [0, 1] scale
(N, 3, H, W); ``mask`` is (N, 1, H, W), 1 = valid, 0 = hole. Normalisations are
the paper's: L_valid/L_hole divide by all elements of the image (C*H*W per
image), perceptual terms by the elements of each VGG feature map, Gram matrices by
C*H*W and the style L1 by C*C, TV by the elements of the image, summed over the
pairs of neighbours that both lie in the 1-pixel dilation of the hole.
VGG16 (ImageNet) features after pool1, pool2, pool3 take ImageNet-normalised
input; Gram matrices are computed in float32.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pconv_cli.errors import PconvError
from pconv_cli.nn.normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize
from pconv_cli.train.distributed import all_reduce_mean

__all__ = [
    "AdversarialLoss",
    "HingeGANLoss",
    "InpaintingLoss",
    "LossWeights",
    "NonSaturatingR1",
    "VGG16Features",
    "VGGWeightsError",
    "feature_matching_loss",
    "gram_matrix",
    "hole_ssim_loss",
    "load_vgg16_features",
    "masked_l1",
    "r1_penalty",
    "total_variation",
]

# VGG16 ``features`` indices: pool1 ends slice [:5], pool2 [5:10], pool3 [10:17].
_VGG16_SLICES = ((0, 5), (5, 10), (10, 17))
_VGG16_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128),
                10: (128, 256), 12: (256, 256), 14: (256, 256)}  # fmt: skip


class VGGWeightsError(PconvError, RuntimeError):
    """VGG16 weights are needed but cannot be had (one-line message for the CLI)."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (the paper's by default)."""

    valid: float = 1.0
    hole: float = 6.0
    perceptual: float = 0.05
    style: float = 120.0
    tv: float = 0.1
    ssim: float = 0.0  # not in the paper: see :func:`hole_ssim_loss`

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class VGG16Features(nn.Module):
    """Frozen VGG16 ``features[:17]``; ``forward(x in [0, 1])`` -> [pool1, pool2, pool3]."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(17):
            if index in _VGG16_CONVS:
                layers.append(nn.Conv2d(*_VGG16_CONVS[index], 3, padding=1))
            elif index in (4, 9, 16):
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG16Features:
        return super().train(False)  # always frozen, BN-free but keep eval semantics

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.normalize(x)
        outputs = []
        for start, stop in _VGG16_SLICES:
            for layer in self.features[start:stop]:
                x = layer(x)
            outputs.append(x)
        return outputs


def _vgg_state_from_file(path: Path) -> dict[str, Tensor]:
    """The tensors of a VGG16 weights file, read safely (no pickled code ever runs)."""
    from pconv_cli.weights.errors import WeightsError
    from pconv_cli.weights.formats import read_state_file

    if not path.is_file():
        raise VGGWeightsError(f"--vgg-weights {path}: file not found")
    try:
        return read_state_file(path)
    except WeightsError as exc:
        raise VGGWeightsError(f"--vgg-weights {path}: not a VGG16 state dict ({exc})") from None


def _imagenet_state(download: bool) -> dict[str, Tensor]:
    from torchvision.models import VGG16_Weights

    weights = VGG16_Weights.IMAGENET1K_V1
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    advice = (
        f"download {weights.url} to {cache}, or pass --vgg-weights PATH "
        f"(or --vgg-weights none to train without the perceptual and style losses)"
    )
    if not cache.is_file() and not download:
        raise VGGWeightsError(f"VGG16 ImageNet weights are not in the torch hub cache: {advice}")
    try:
        return torch.hub.load_state_dict_from_url(
            weights.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VGGWeightsError(f"cannot load VGG16 ImageNet weights ({reason}): {advice}") from None


def load_vgg16_features(
    weights: str | os.PathLike[str] = "imagenet", *, download: bool = True
) -> VGG16Features:
    """VGG16 features for the perceptual/style losses.

    ``weights``: ``"imagenet"`` (torchvision's ``VGG16_Weights.IMAGENET1K_V1``
    from the torch hub cache, downloaded with its hash checked if missing and
    ``download``) or a path to a VGG16 state dict (a full model's keys
    ``features.N.*``, or ``N.*``). Raises :class:`VGGWeightsError` with advice.
    """
    if str(weights) == "imagenet":
        state = _imagenet_state(download)
    else:
        state = _vgg_state_from_file(Path(weights))
    model = VGG16Features()
    wanted = model.features.state_dict()
    picked = {}
    for key in wanted:
        for candidate in (f"features.{key}", key):
            if candidate in state:
                picked[key] = state[candidate]
                break
        else:
            raise VGGWeightsError(
                f"--vgg-weights {weights}: not a VGG16 state dict (no features.{key})"
            )
        if tuple(picked[key].shape) != tuple(wanted[key].shape):
            raise VGGWeightsError(
                f"VGG16 weights: features.{key} has shape {tuple(picked[key].shape)}, "
                f"expected {tuple(wanted[key].shape)} ({weights})"
            )
    model.features.load_state_dict(picked)
    return model


def gram_matrix(features: Tensor) -> Tensor:
    """``F F^T / (C H W)`` per image, in float32: (N, C, H, W) -> (N, C, C)."""
    n, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        flat = features.float().reshape(n, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def total_variation(image: Tensor, region: Tensor) -> Tensor:
    """Paper TV: L1 of neighbour differences where both pixels lie in ``region``.

    ``region`` is (N, 1, H, W) in {0, 1}; the sum is divided by ``image.numel()``.
    """
    horizontal = region[..., :, 1:] * region[..., :, :-1]
    vertical = region[..., 1:, :] * region[..., :-1, :]
    dh = (image[..., :, 1:] - image[..., :, :-1]).abs() * horizontal
    dv = (image[..., 1:, :] - image[..., :-1, :]).abs() * vertical
    return (dh.sum() + dv.sum()) / image.numel()


def hole_ssim_loss(comp: Tensor, target: Tensor, hole: Tensor) -> Tensor:
    """Mean over images of ``1 - SSIM`` over the windows that see a hole pixel.

    SSIM as :mod:`pconv_cli.evaluation.metrics` scores it (Gaussian window, sigma
    1.5, 'valid' region), per channel, on [0, 1] images; each image's map is averaged
    over the window centres within the window radius of its hole, so a 2 % hole
    weighs as much as a 50 % one (the L1 terms divide by the image's size instead).
    ``hole`` is (N, 1, H, W), 1 = hole. Images without a hole add 0.
    """
    from pconv_cli.evaluation.metrics import gaussian_kernel1d

    kernel = gaussian_kernel1d(dtype=comp.dtype).to(comp.device)
    radius, taps, channels = kernel.numel() // 2, kernel.numel(), comp.shape[1]
    row = kernel.view(1, 1, 1, taps).expand(4 * channels, 1, 1, taps)
    col = kernel.view(1, 1, taps, 1).expand(4 * channels, 1, taps, 1)
    maps = torch.cat([comp, target, comp * comp + target * target, comp * target], 1)
    moments = F.conv2d(F.conv2d(maps, row, groups=4 * channels), col, groups=4 * channels)
    mx, my, mxxyy, mxy = moments.split(channels, dim=1)
    c1, c2 = 0.01**2, 0.03**2
    cov2 = 2 * (mxy - mx * my)
    var_sum = mxxyy - mx * mx - my * my
    ssim_map = (2 * mx * my + c1) * (cov2 + c2) / ((mx * mx + my * my + c1) * (var_sum + c2))
    near = F.max_pool2d(hole, taps, stride=1, padding=radius)[..., radius:-radius, radius:-radius]
    area = near.sum(dim=(1, 2, 3))
    per_image = ((1 - ssim_map) * near).sum(dim=(1, 2, 3)) / (channels * area).clamp_min(1)
    return per_image.mean()


class InpaintingLoss(nn.Module):
    """``forward(output, target, mask) -> (total, terms)``; see the module docstring.

    ``terms`` holds every weighted-before term as a detached scalar tensor:
    ``valid``, ``hole``, ``perceptual_out``, ``perceptual_comp``, ``style_out``,
    ``style_comp``, ``tv`` (and ``ssim`` when its weight is not 0). With ``vgg=None``
    the perceptual and style terms are left out.
    """

    def __init__(self, weights: LossWeights | None = None, vgg: VGG16Features | None = None):
        super().__init__()
        self.weights = weights or LossWeights()
        self.vgg = vgg

    def forward(self, output: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, dict]:
        output = output.float()
        target = target.float()
        mask = mask.float()
        hole = 1.0 - mask
        comp = mask * target + hole * output
        n_elements = output.numel()
        terms = {
            "valid": (mask * (output - target)).abs().sum() / n_elements,
            "hole": (hole * (output - target)).abs().sum() / n_elements,
        }
        if self.vgg is not None:
            with torch.no_grad():
                truth_features = self.vgg(target)
            both = self.vgg(torch.cat([output, comp], 0))
            n = output.shape[0]
            terms["perceptual_out"] = sum(
                F.l1_loss(f[:n].float(), t.float())
                for f, t in zip(both, truth_features, strict=True)
            )
            terms["perceptual_comp"] = sum(
                F.l1_loss(f[n:].float(), t.float())
                for f, t in zip(both, truth_features, strict=True)
            )
            truth_grams = [gram_matrix(t) for t in truth_features]
            terms["style_out"] = sum(
                F.l1_loss(gram_matrix(f[:n]), g) for f, g in zip(both, truth_grams, strict=True)
            )
            terms["style_comp"] = sum(
                F.l1_loss(gram_matrix(f[n:]), g) for f, g in zip(both, truth_grams, strict=True)
            )
        dilated_hole = F.max_pool2d(hole, 3, stride=1, padding=1)
        terms["tv"] = total_variation(comp, dilated_hole)

        w = self.weights
        if w.ssim:
            terms["ssim"] = hole_ssim_loss(comp, target, hole)
        total = w.valid * terms["valid"] + w.hole * terms["hole"] + w.tv * terms["tv"]
        if w.ssim:
            total = total + w.ssim * terms["ssim"]
        if self.vgg is not None:
            total = total + w.perceptual * (terms["perceptual_out"] + terms["perceptual_comp"])
            total = total + w.style * (terms["style_out"] + terms["style_comp"])
        return total, {k: v.detach() for k, v in terms.items()}


# --------------------------------------------------------------------------- masked L1 and GANs


def masked_l1(output: Tensor, target: Tensor, weight: Tensor, eps: float = 1e-12) -> Tensor:
    """``sum(|output - target| * weight) / sum(weight)``, ``weight`` (N, 1, H, W) over channels.

    Under DDP the denominator is the mean over ranks of ``sum(weight)``, so the
    average of the ranks' losses is the global batch's masked mean (and DDP trains
    what one process with the global batch would).
    """
    weight = weight.expand_as(output)
    total = all_reduce_mean(weight.sum().detach().reshape(1))[0]
    return ((output - target).abs() * weight).sum() / (total + eps)


class AdversarialLoss:
    """A GAN objective on raw discriminator scores (any shape; means over all elements).

    ``discriminator(real, fake)`` returns the discriminator's terms by name (their sum
    is its loss); ``generator(fake)`` the generator's adversarial term. Computed in
    float32 whatever the autocast dtype.
    """

    def discriminator(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def generator(self, fake: Tensor) -> Tensor:
        raise NotImplementedError


class HingeGANLoss(AdversarialLoss):
    """Hinge loss (SN-PatchGAN, DeepFillv2): D ``relu(1 - real) + relu(1 + fake)``, G ``-fake``."""

    def discriminator(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        return {
            "d_real": F.relu(1.0 - real.float()).mean(),
            "d_fake": F.relu(1.0 + fake.float()).mean(),
        }

    def generator(self, fake: Tensor) -> Tensor:
        return -fake.float().mean()


def _wide(x: Tensor) -> Tensor:
    """``x`` in float32 at least (half precision widened; float64 kept)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def r1_penalty(real_scores: Tensor, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): the batch mean of ``||d sum(D(real)) / d real||^2``.

    ``real`` must require grad and ``real_scores`` be computed from it; the gradient
    keeps its graph, so the penalty trains the discriminator. Computed in float32 at least.
    """
    (grad,) = torch.autograd.grad(_wide(real_scores).sum(), real, create_graph=True)
    return (_wide(grad).reshape(grad.shape[0], -1).norm(2, dim=1) ** 2).mean()


def feature_matching_loss(fake: list[Tensor], real: list[Tensor]) -> Tensor:
    """Mean over layers of the MSE between the discriminator's activations on the fake
    and on the real batch (pix2pixHD, LaMa's ``feature_matching_loss`` without a mask)."""
    losses = [F.mse_loss(_wide(f), _wide(r)) for f, r in zip(fake, real, strict=True)]
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class NonSaturatingR1:
    """The non-saturating GAN loss with an R1 penalty on real images (LaMa's
    ``NonSaturatingWithR1``); scores are logits, computed in float32 at least.

    - generator: ``mean(softplus(-D(fake)))``;
    - discriminator: ``mean(softplus(-D(real)) + r1_weight * R1 + fake_term)`` with
      ``fake_term = softplus(D(fake))``, or, given ``fake_region`` (N, 1, H, W), 1 where the
      fake differs from a real image (the hole), ``softplus(D(fake))`` there and
      ``softplus(-D(fake))`` elsewhere: the discriminator learns *where* an image was
      generated (LaMa's ``mask_as_fake_target``; the region is resized to the score map
      with nearest neighbour).
    """

    r1_weight: float = 0.001

    def generator_loss(self, fake_scores: Tensor) -> Tensor:
        return F.softplus(-_wide(fake_scores)).mean()

    def discriminator_loss(
        self,
        real_scores: Tensor,
        fake_scores: Tensor,
        real: Tensor,
        fake_region: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, {"d_real", "d_fake", "r1"}); ``real`` is the input of ``real_scores``."""
        real_scores, fake_scores = _wide(real_scores), _wide(fake_scores)
        real_term = F.softplus(-real_scores)
        penalty = r1_penalty(real_scores, real) if self.r1_weight else real_scores.new_zeros(())
        fake_term = F.softplus(fake_scores)
        if fake_region is not None:
            region = F.interpolate(fake_region.to(fake_scores.dtype), size=fake_scores.shape[-2:],
                                   mode="nearest")  # fmt: skip
            fake_term = fake_term * region + (1 - region) * F.softplus(-fake_scores)
        loss = (real_term + self.r1_weight * penalty + fake_term).mean()
        terms = {"d_real": real_term.mean(), "d_fake": fake_term.mean(), "r1": penalty}
        return loss, {k: v.detach() for k, v in terms.items()}

"""Independent references for the ``lama`` family tests.

- :func:`reference_generator`: LaMa's FFC ResNet generator written as plain functions
  over a state dict in the publisher's layout (``generator.model.N.*`` keys), float64,
  with numpy's FFT, explicit BatchNorm and explicit real/imaginary channel interleaving;
  :func:`reference_inpaint`: LaMa's ``predict.py`` around it (numpy symmetric padding,
  masked image + hole, composite, crop).
- :func:`write_release`: a LaMa release in the publisher's file layout (a PyTorch
  Lightning 1.2 style ``models/best.ckpt`` whose pickle holds OmegaConf-like
  ``DictConfig``/``AnyNode`` objects and a Lightning callback class, plus
  ``config.yaml``), written with stand-in classes registered under OmegaConf's and
  Lightning's module names only while pickling, so loading it cannot import them.
"""

from __future__ import annotations

import collections
import sys
import types
import typing
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- the network


def _bn(x, sd, prefix, eps=1e-5):
    mean, var = sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"]
    weight, bias = sd[f"{prefix}.weight"], sd[f"{prefix}.bias"]
    shape = (1, -1, 1, 1)
    return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + eps) * weight.view(
        shape
    ) + bias.view(shape)


def _conv(x, weight, *, stride=1, padding=0, reflect=True, bias=None):
    if padding:
        x = F.pad(x, (padding,) * 4, mode="reflect" if reflect else "constant")
    return F.conv2d(x, weight, bias, stride=stride)


def _fourier(x, sd, prefix):
    """rfft2 (orthonormal), channels [re c0, im c0, re c1, ...], 1x1 conv, BN, ReLU, back."""
    n, c, h, w = x.shape
    spectrum = np.fft.rfft2(x.numpy(), norm="ortho")  # (n, c, h, w//2+1) complex128
    real = np.empty((n, 2 * c, h, spectrum.shape[-1]))
    real[:, 0::2], real[:, 1::2] = spectrum.real, spectrum.imag
    real = torch.from_numpy(real)
    weight = sd[f"{prefix}.conv_layer.weight"][:, :, 0, 0]
    real = torch.einsum("oc,nchw->nohw", weight, real)
    real = torch.relu(_bn(real, sd, f"{prefix}.bn")).numpy()
    back = real[:, 0::2] + 1j * real[:, 1::2]
    return torch.from_numpy(np.fft.irfft2(back, s=(h, w), norm="ortho"))


def _spectral(x, sd, prefix):
    h = torch.relu(_bn(F.conv2d(x, sd[f"{prefix}.conv1.0.weight"]), sd, f"{prefix}.conv1.1"))
    return F.conv2d(h + _fourier(h, sd, f"{prefix}.fu"), sd[f"{prefix}.conv2.weight"])


def _ffc_layer(local, glob, sd, prefix, *, stride=1, padding=1):
    """One FFC_BN_ACT: the four paths that exist in ``sd``, BN and ReLU per branch."""

    def path(name, x):
        key = f"{prefix}.ffc.{name}.weight"
        if key not in sd or x is None:
            return None
        return _conv(x, sd[key], stride=stride, padding=padding)

    out_l = [t for t in (path("convl2l", local), path("convg2l", glob)) if t is not None]
    out_g = [t for t in (path("convl2g", local),) if t is not None]
    if glob is not None and f"{prefix}.ffc.convg2g.conv2.weight" in sd:
        out_g.append(_spectral(glob, sd, f"{prefix}.ffc.convg2g"))
    local = torch.relu(_bn(sum(out_l), sd, f"{prefix}.bn_l")) if out_l else None
    glob = torch.relu(_bn(sum(out_g), sd, f"{prefix}.bn_g")) if out_g else None
    return local, glob


def reference_generator(state: dict, x: torch.Tensor, *, n_downsampling: int, n_blocks: int):
    """LaMa's generator on ``x`` (N, 4, H, W), H and W multiples of 2**n_downsampling."""
    sd = {k.removeprefix("generator.model."): v.double() if v.is_floating_point() else v
          for k, v in state.items() if k.startswith("generator.")}  # fmt: skip
    x = F.pad(x.double(), (3, 3, 3, 3), mode="reflect")
    local, glob = _ffc_layer(x, None, sd, "1", padding=0)
    for k in range(2, 2 + n_downsampling):
        local, glob = _ffc_layer(local, glob, sd, str(k), stride=2)
    first_block = 2 + n_downsampling
    for k in range(first_block, first_block + n_blocks):
        a_l, a_g = _ffc_layer(local, glob, sd, f"{k}.conv1")
        b_l, b_g = _ffc_layer(a_l, a_g, sd, f"{k}.conv2")
        local, glob = local + b_l, glob + b_g
    x = torch.cat([local, glob], 1)
    k = first_block + n_blocks + 1  # after LaMa's ConcatTupleLayer
    for _ in range(n_downsampling):
        x = F.conv_transpose2d(x, sd[f"{k}.weight"], sd[f"{k}.bias"], stride=2, padding=1,
                               output_padding=1)  # fmt: skip
        x = torch.relu(_bn(x, sd, str(k + 1)))
        k += 3
    x = _conv(x, sd[f"{k + 1}.weight"], padding=3, bias=sd[f"{k + 1}.bias"])
    return torch.sigmoid(x)


def reference_inpaint(state, image: np.ndarray, hole: np.ndarray, **config) -> np.ndarray:
    """LaMa's predict.py in float64: ``image`` uint8 (H, W, 3), ``hole`` bool (H, W) ->
    the composited result (H, W, 3) in [0, 1] (before LaMa's uint8 conversion)."""
    img = image.transpose(2, 0, 1).astype(np.float32) / 255
    mask = hole[None].astype(np.float32)
    h, w = hole.shape
    pad = ((0, 0), (0, -h % 8), (0, -w % 8))
    img, mask = np.pad(img, pad, mode="symmetric"), np.pad(mask, pad, mode="symmetric")
    img_t = torch.from_numpy(img)[None].double()
    mask_t = torch.from_numpy((mask > 0) * 1)[None]
    x = torch.cat([img_t * (1 - mask_t), mask_t], 1)
    predicted = reference_generator(state, x, **config)
    inpainted = mask_t * predicted + (1 - mask_t) * img_t
    return inpainted[0, :, :h, :w].permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- the release


class AnyNode:
    """OmegaConf's leaf node layout: ``_val``, ``_metadata``, ``_parent``."""

    def __init__(self, value, parent=None):
        self.__dict__.update(_val=value, _metadata=Metadata(), _parent=parent)


class Metadata:
    """OmegaConf's node metadata: types, flags and a resolver cache."""

    def __init__(self):
        self.__dict__.update(ref_type=typing.Any, object_type=None, optional=True, key=None,
                             flags={}, resolver_cache=collections.defaultdict(dict))  # fmt: skip


class ContainerMetadata(Metadata):
    pass


class DictConfig:
    """OmegaConf's container layout: ``_metadata``, ``_parent``, ``_content``."""

    def __init__(self, content, parent=None):
        self.__dict__.update(_metadata=ContainerMetadata(), _parent=parent, _content={})
        for key, value in content.items():
            self._content[key] = _node(value, self)


class ListConfig(DictConfig):
    def __init__(self, content, parent=None):
        self.__dict__.update(_metadata=ContainerMetadata(), _parent=parent,
                             _content=[_node(v, self) for v in content])  # fmt: skip


def _node(value, parent):
    if isinstance(value, dict):
        return DictConfig(value, parent)
    if isinstance(value, list):
        return ListConfig(value, parent)
    return AnyNode(value, parent)


class ModelCheckpoint:
    """Lightning's checkpoint callback: its class is a key of ``callbacks``."""


class Payload:
    """Runs ``command`` with ``os.system`` when unpickled by a plain pickle."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


@contextmanager
def _publisher_modules():
    """Make the stand-ins importable under OmegaConf's and Lightning's module names."""
    names = {
        "omegaconf.dictconfig": [DictConfig], "omegaconf.listconfig": [ListConfig],
        "omegaconf.nodes": [AnyNode], "omegaconf.base": [Metadata, ContainerMetadata],
        "pytorch_lightning.callbacks.model_checkpoint": [ModelCheckpoint],
    }  # fmt: skip
    saved = {}
    try:
        for module_name, classes in names.items():
            parts = module_name.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                saved.setdefault(name, sys.modules.get(name))
                sys.modules[name] = sys.modules.get(name) or types.ModuleType(name)
            for cls in classes:
                cls.__module__ = module_name
                setattr(sys.modules[module_name], cls.__name__, cls)
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for classes in names.values():
            for cls in classes:
                cls.__module__ = __name__


def lightning_checkpoint(state_dict: dict, config: dict | None, **extra) -> dict:
    """The dict LaMa's training leaves (Lightning 1.2.9), after make_checkpoint.py."""
    checkpoint = {
        "epoch": 39,
        "global_step": 1_000_000,
        "pytorch-lightning_version": "1.2.9",
        "callbacks": {ModelCheckpoint: {"monitor": "val_ssim_fid100_f1_total_mean",
                                        "best_model_score": torch.tensor(0.93)}},
        "lr_schedulers": [],
        "state_dict": collections.OrderedDict(state_dict),
    }  # fmt: skip
    if config is not None:
        checkpoint.update(hparams_name="config", hyper_parameters=DictConfig(config),
                          hparams_type=DictConfig)  # fmt: skip
    checkpoint.update(extra)
    return checkpoint


def save_checkpoint(path: Path, checkpoint: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _publisher_modules():
        torch.save(checkpoint, path)
    return path


def publisher_state(generator, discriminator=None) -> dict:
    """A LaMa ``state_dict``: ``generator.*``, ``discriminator.*``, evaluator and loss tensors."""
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    if discriminator is not None:
        state.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
    state["val_evaluator.scores.fid.model.Mixed_5b.branch1x1.conv.weight"] = torch.ones(2, 3)
    state["loss_resnet_pl.impl.conv1.weight"] = torch.zeros(2, 3, 3, 3)
    return state


def write_release(root: Path, state: dict, config_yaml: str, config: dict | None) -> Path:
    """``root/config.yaml`` + ``root/models/best.ckpt``, as LaMa's make_checkpoint.py leaves."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(config_yaml)
    save_checkpoint(root / "models" / "best.ckpt", lightning_checkpoint(state, config))
    return root


def zip_release(folder: Path, path: Path) -> Path:
    """``big-lama.zip`` as distributed: the release folder inside the archive."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, f"{folder.name}/{file.relative_to(folder)}")
    return path


# --------------------------------------------------------------------------- the losses


def lama_generator_loss(pred, image, hole, discriminator, *, weight_known=10.0,
                        weight_missing=0.0, adversarial=10.0, feature_matching=100.0):  # fmt: skip
    """LaMa's ``DefaultInpaintingTrainingModule.generator_loss`` without ResNetPL: masked L1
    (``masked_l1_loss``), ``NonSaturatingWithR1.generator_loss``, ``feature_matching_loss``."""
    pixel_weights = hole * weight_missing + (1 - hole) * weight_known
    l1 = (pixel_weights * (pred - image).abs()).mean()
    _, real_features = discriminator(image)
    fake_scores, fake_features = discriminator(pred)
    adv = F.softplus(-fake_scores).mean() * adversarial
    pairs = zip(fake_features, real_features, strict=True)
    fm = torch.stack([F.mse_loss(f, r) for f, r in pairs]).mean()
    return l1 + adv + fm * feature_matching


def finite_difference_r1(discriminator, real, step=1e-6):
    """``mean_n ||d sum(D(real_n)) / d real_n||^2`` by central differences (float64), for a
    discriminator whose samples do not interact (eval mode): every perturbed copy of a
    sample goes through one batched forward."""
    total = 0.0
    for sample in real.detach():
        count = sample.numel()
        eye = torch.eye(count, dtype=sample.dtype).view(count, *sample.shape) * step
        with torch.no_grad():
            up = discriminator(sample + eye)[0].flatten(1).sum(1)
            down = discriminator(sample - eye)[0].flatten(1).sum(1)
        total = total + ((up - down) / (2 * step)).pow(2).sum()
    return total / real.shape[0]


def autograd_r1(discriminator, real):
    """The same penalty through autograd (for discriminators in training mode)."""
    real = real.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real)[0].sum(), real)
    return grad.view(real.shape[0], -1).pow(2).sum(1).mean()


def lama_discriminator_loss(image, pred, hole, discriminator, *, gp_coef=0.001):
    """LaMa's ``NonSaturatingWithR1.discriminator_loss`` with ``mask_as_fake_target``; the R1
    gradient by finite differences (a discriminator in eval mode) or autograd (training)."""
    real_scores, _ = discriminator(image)
    fake_scores, _ = discriminator(pred)
    r1 = autograd_r1 if discriminator.training else finite_difference_r1
    penalty = r1(discriminator, image) * gp_coef
    mask = F.interpolate(hole, size=fake_scores.shape[-2:], mode="nearest")
    fake = F.softplus(fake_scores) * mask + (1 - mask) * F.softplus(-fake_scores)
    return (F.softplus(-real_scores) + penalty + fake).mean()


def _bn_batch(x, sd, prefix, eps=1e-5):
    """BatchNorm with the batch's statistics (training mode, biased variance)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    shape = (1, -1, 1, 1)
    return (x - mean) / torch.sqrt(var + eps) * sd[f"{prefix}.weight"].view(shape) + sd[
        f"{prefix}.bias"
    ].view(shape)


def reference_resnet50_dilated(state: dict, x: torch.Tensor) -> list[torch.Tensor]:
    """CSAIL's ResnetDilated(resnet50, dilate_scale=8) from its state dict, BN on batch
    statistics: a ResNet-50 whose layer3/layer4 convolutions lose their stride 2 (a 3x3 one
    then gets dilation dilate/2) and whose other 3x3 convolutions get dilation ``dilate``
    (2 for layer3, 4 for layer4)."""
    sd = {k: v.double() for k, v in state.items()}
    x = x.double()
    for i, stride in ((1, 2), (2, 1), (3, 1)):
        x = torch.relu(_bn_batch(F.conv2d(x, sd[f"conv{i}.weight"], stride=stride, padding=1),
                                 sd, f"bn{i}"))  # fmt: skip
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    features = []
    for layer, blocks, dilate in ((1, 3, 1), (2, 4, 1), (3, 6, 2), (4, 3, 4)):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            base_stride = 2 if (b == 0 and layer > 1) else 1
            if dilate == 1:
                stride, dilation = base_stride, 1
            elif base_stride == 2:
                stride, dilation = 1, dilate // 2
            else:
                stride, dilation = 1, dilate
            out = torch.relu(_bn_batch(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
            out = F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=dilation,
                           dilation=dilation)  # fmt: skip
            out = torch.relu(_bn_batch(out, sd, f"{p}.bn2"))
            out = _bn_batch(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            if f"{p}.downsample.0.weight" in sd:
                short = F.conv2d(x, sd[f"{p}.downsample.0.weight"],
                                 stride=base_stride if dilate == 1 else 1)  # fmt: skip
                short = _bn_batch(short, sd, f"{p}.downsample.1")
            else:
                short = x
            x = torch.relu(out + short)
        features.append(x)
    return features

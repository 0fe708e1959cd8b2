"""Independent references for the MI-GAN and SunnerLi tests.

- :func:`migan_forward`: MI-GAN's inference generator as plain functions over a state
  dict in the publisher's layout (``filter_const`` and ``noise_const`` used as stored:
  nearest upsampling times the stored pattern, so only the training size runs), written
  from the structure of ``lib/model_zoo/migan_inference.py``;
- :func:`demo_reference` and :func:`reference_test_py`: the publishers' inference
  scripts (MI-GAN's ``scripts/demo.py`` for one image no larger than the generator's
  resolution, SunnerLi's ``test.py --mask_path``) written out with PIL, OpenCV and numpy,
  around any generator callable;
- :func:`naive_sunnerli_pconv`: SunnerLi's partial convolution, one output pixel at a time.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def _act(x):
    return (F.leaky_relu(x, 0.2) * math.sqrt(2)).clamp(-256, 256)


def _separable(state, prefix, x, *, down=False, up=False, noise=False):
    c = x.shape[1]
    x = _act(F.conv2d(x, state[f"{prefix}.conv1.weight"], state[f"{prefix}.conv1.bias"],
                      padding=1, groups=c))  # fmt: skip
    if down:
        x = F.conv2d(x, state[f"{prefix}.downsample.filter.weight"], stride=2, padding=1, groups=c)
    x = F.conv2d(x, state[f"{prefix}.conv2.weight"])
    if up:
        pattern = state[f"{prefix}.upsample.filter_const"]
        x = F.interpolate(x, scale_factor=2, mode="nearest") * pattern
        x = F.conv2d(F.pad(x, (2, 1, 2, 1)), state[f"{prefix}.upsample.filter.weight"],
                     groups=x.shape[1])  # fmt: skip
    if noise:
        x = x + state[f"{prefix}.noise_const"] * state[f"{prefix}.noise_strength"]
    return _act(x)


def migan_forward(state: dict, x: torch.Tensor, resolution: int) -> torch.Tensor:
    """MI-GAN's ``Generator.forward`` on (N, 4, res, res) ``[mask - 0.5, image * mask]``."""
    levels = [2**i for i in range(int(math.log2(resolution)), 1, -1)]  # res ... 4
    feats = {}
    h = None
    for res in levels:
        p = f"encoder.b{res}"
        if f"{p}.fromrgb.weight" in state:
            y = _act(F.conv2d(x, state[f"{p}.fromrgb.weight"], state[f"{p}.fromrgb.bias"]))
            h = y if h is None else h + y
        feats[res] = _separable(state, f"{p}.conv1", h)
        h = _separable(state, f"{p}.conv2", feats[res], down=res > 4)
    h = _separable(state, "synthesis.b4.conv1", h) + feats[4]
    h = _separable(state, "synthesis.b4.conv2", h)
    rgb = F.conv2d(h, state["synthesis.b4.torgb.weight"], state["synthesis.b4.torgb.bias"])
    for res in reversed(levels[:-1]):  # 8 ... res
        p = f"synthesis.b{res}"
        h = _separable(state, f"{p}.conv1", h, up=True, noise=True) + feats[res]
        h = _separable(state, f"{p}.conv2", h, noise=True)
        pattern = state[f"{p}.upsample.filter_const"]
        up = F.interpolate(rgb, scale_factor=2, mode="nearest") * pattern
        up = F.conv2d(F.pad(up, (2, 1, 2, 1)), state[f"{p}.upsample.filter.weight"], groups=3)
        rgb = up + F.conv2d(h, state[f"{p}.torgb.weight"], state[f"{p}.torgb.bias"])
    return rgb


def demo_reference(generate, image: np.ndarray, known: np.ndarray, resolution: int) -> np.ndarray:
    """MI-GAN's demo.py for one uint8 RGB image (sides <= resolution), known = True."""
    size = (resolution, resolution)
    pil = Image.fromarray(image).resize(size, Image.BICUBIC)
    mask = Image.fromarray(np.where(known, 255, 0).astype(np.uint8)).resize(size, Image.NEAREST)
    img = torch.Tensor(np.array(pil)).float() * 2 / 255 - 1
    m = torch.Tensor(np.array(mask)[:, :, None] // 255).float()
    x = torch.cat([m.permute(2, 0, 1)[None] - 0.5, (img * m).permute(2, 0, 1)[None]], dim=1)
    with torch.no_grad():
        out = generate(x)[0]
    out = ((out * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    out = cv2.resize(out, dsize=(image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    keep = known[:, :, None].astype(np.uint8)
    return image * keep + out * (1 - keep)


def reference_test_py(generate, image: np.ndarray, known: np.ndarray, size: int) -> np.ndarray:
    """SunnerLi's test.py with a mask file: uint8 RGB in, his raw uint8 RGB output out."""
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    mask = np.dstack([np.where(known, 255, 0).astype(np.uint8)] * 3)

    def prepare(a):
        t = torch.from_numpy(cv2.resize(a, (size, size))).float().permute(2, 0, 1)
        return t / 255 * 2 - 1

    img, m = prepare(bgr), prepare(mask)
    m = (m + 1) / 2
    img, m = torch.stack([img, img]), torch.stack([m, m])
    with torch.no_grad():
        out = generate(img * m, m)[0]
    out = ((out + 1) / 2 * 255).permute(1, 2, 0).numpy().astype(np.uint8)
    out = cv2.resize(out, (image.shape[1], image.shape[0]))
    return np.ascontiguousarray(out[:, :, ::-1])


def naive_sunnerli_pconv(x, mask, weight, bias, stride, padding):
    """Per output pixel: S = sum of the mask window; (W.(X*M) window) / S + b, or b if S = 0;
    new mask min(S, 1). float64 numpy."""
    x = np.pad(x.astype(np.float64), ((0, 0), (padding,) * 2, (padding,) * 2))
    mask = np.pad(mask.astype(np.float64), ((0, 0), (padding,) * 2, (padding,) * 2))
    c_out, _, k, _ = weight.shape
    h = (x.shape[1] - k) // stride + 1
    w = (x.shape[2] - k) // stride + 1
    out, new_mask = np.zeros((c_out, h, w)), np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            win = np.s_[:, i * stride : i * stride + k, j * stride : j * stride + k]
            s = mask[win].sum()
            raw = (weight * (x[win] * mask[win])[None]).sum(axis=(1, 2, 3))
            out[:, i, j] = raw / s + bias if s > 0 else bias
            new_mask[i, j] = min(s, 1.0)
    return out, new_mask

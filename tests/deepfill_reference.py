"""Independent references for DeepFillv2, written from the facts in DEEPFILLV2.md.

- :func:`naive_contextual_attention`: per-query, per-patch loops in float64 numpy:
  scores, the fuse (an identity kernel along flattened (query, patch) pairs,
  row-major then column-major), masking, softmax and the pasting of raw patches.
- :func:`mmagic_deepfillv2`: MMagic's generator run functionally from a raw
  ``generator.*`` state dict (BGR weights, MMagic's keys), with torch's functional
  convolutions and the naive attention: nothing of ``pconv_cli`` is used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def naive_contextual_attention(x: np.ndarray, hole: np.ndarray, scale: float = 10.0):
    """(output, attention) for features ``x`` (C, h, w) and ``hole`` (h, w) (1 = hole).

    ``attention`` is (queries, patches), both in row-major order at half resolution.
    """
    c, h, w = x.shape
    hs, ws = h // 2, w // 2
    count = hs * ws
    small = x[:, ::2, ::2]
    padded = np.zeros((c, hs + 2, ws + 2))
    padded[:, 1:-1, 1:-1] = small

    def window(i, j):
        return padded[:, i : i + 3, j : j + 3].ravel()

    patches = []
    for i in range(hs):
        for j in range(ws):
            v = window(i, j)
            patches.append(v / max(np.sqrt((v * v).sum()), 1e-4))
    scores = np.zeros((count, count))
    for q in range(count):
        query = window(q // ws, q % ws)
        for p in range(count):
            scores[q, p] = query @ patches[p]

    def fuse(m, order):  # m[q, p] -> sum_d m[q + d, p + d] in the given flattened order
        to_flat = [order(k) for k in range(count)]  # position k of the order -> row-major index
        out = np.zeros_like(m)
        for a in range(count):
            for b in range(count):
                total = 0.0
                for d in (-1, 0, 1):
                    if 0 <= a + d < count and 0 <= b + d < count:
                        total += m[to_flat[a + d], to_flat[b + d]]
                out[to_flat[a], to_flat[b]] = total
        return out

    scores = fuse(scores, lambda k: k)  # row-major
    scores = fuse(scores, lambda k: (k % hs) * ws + k // hs)  # column-major
    small_hole = np.pad(hole[::2, ::2], 1)
    for p in range(count):
        i, j = p // ws, p % ws
        if small_hole[i : i + 3, j : j + 3].any():
            scores[:, p] = -np.inf
    scores = scores * scale
    attention = np.exp(scores - scores.max(1, keepdims=True))
    attention /= attention.sum(1, keepdims=True)

    raw = np.zeros((c, h + 2, w + 2))
    raw[:, 1:-1, 1:-1] = x
    out = np.zeros((c, h + 2, w + 2))
    cover = np.zeros((h + 2, w + 2))
    for q in range(count):
        qi, qj = q // ws, q % ws
        mixed = np.zeros((c, 4, 4))
        for p in range(count):
            if attention[q, p]:
                pi, pj = p // ws, p % ws
                mixed += attention[q, p] * raw[:, 2 * pi : 2 * pi + 4, 2 * pj : 2 * pj + 4]
        out[:, 2 * qi : 2 * qi + 4, 2 * qj : 2 * qj + 4] += mixed
        cover[2 * qi : 2 * qi + 4, 2 * qj : 2 * qj + 4] += 1
    return out[:, 1:-1, 1:-1] / cover[1:-1, 1:-1], attention


def _gated(x, state, name, *, stride=1, dilation=1, feature_act=True):
    weight, bias = state[f"{name}.conv.conv.weight"], state[f"{name}.conv.conv.bias"]
    p = dilation * (weight.shape[-1] - 1) // 2
    y = F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), weight, bias, stride, 0, dilation)
    feature, gate = y.chunk(2, 1)
    return (F.elu(feature) if feature_act else feature) * torch.sigmoid(gate)


def _encoder(x, state, name):
    for level, stride in enumerate((1, 2, 1, 2, 1, 1), start=1):
        x = _gated(x, state, f"{name}.enc{level}", stride=stride)
    return x


def _neck(x, state, name):
    for i in range(4):
        x = _gated(x, state, f"{name}.dilation_convs.{i}", dilation=2 ** (i + 1))
    return x


def _decoder(x, state, name):
    for level in range(1, 8):
        x = _gated(x, state, f"{name}.dec{level}", feature_act=level < 7)
        if level in (2, 4):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
    return torch.tanh(x)


def _attention(x, hole_small):
    outputs = []
    for b in range(x.shape[0]):
        out, _ = naive_contextual_attention(x[b].numpy(), hole_small[b, 0].numpy())
        outputs.append(torch.from_numpy(out))
    return torch.stack(outputs).to(x.dtype)


def mmagic_deepfillv2(state, masked_image, hole):
    """MMagic's ``DeepFillEncoderDecoder`` forward: (stage-1 raw, stage-2 raw) outputs.

    ``state``: generator weights with MMagic's keys without ``generator.``;
    ``masked_image`` normalised to [-1, 1] with holes 0; ``hole`` (N, 1, H, W), 1 = hole.
    """
    ones = torch.ones_like(hole)
    x = torch.cat([masked_image, ones, hole], 1)
    s1 = _decoder(_neck(_encoder(x, state, "stage1.encoder"), state, "stage1.dilation_neck"),
                  state, "stage1.decoder")  # fmt: skip
    stage1_image = s1 * hole + masked_image * (1 - hole)
    x = torch.cat([stage1_image, ones, hole], 1)
    conv = _neck(_encoder(x, state, "stage2.encoder_conv"), state, "stage2.dilation_neck")
    attention = _encoder(x, state, "stage2.encoder_attention")
    small_hole = F.interpolate(hole, size=attention.shape[-2:], mode="nearest")
    attention = _attention(attention, small_hole)
    neck = "stage2.contextual_attention_neck"
    attention = _gated(_gated(attention, state, f"{neck}.conv1"), state, f"{neck}.conv2")
    s2 = _decoder(torch.cat([conv, attention], 1), state, "stage2.decoder")
    return s1, s2

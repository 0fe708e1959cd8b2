"""Evaluation masks drawn exactly as LaMa and MAT draw theirs, from per-mask seeds.

Each generator replays the reference code's sequence of numpy legacy random calls
on its own ``numpy.random.RandomState`` (the reference uses the global one, which is
a RandomState), so a seed gives the same mask the reference code gives after
``np.random.seed`` of the same seed:

- :func:`lama_eval_mask`: LaMa's ``bin/gen_mask_dataset.py`` with
  ``configs/data_gen/random_{thin,medium,thick}_512.yaml`` for one square image of
  ``size``: ``MixedMaskGenerator`` (irregular strokes drawn with ``cv2.line``, boxes
  with p=0.3 for medium/thick) called ``variants_n = 5`` times, each variant through
  ``propose_random_square_crop`` (the whole image when it is square), variants
  covering more than ``max_tamper_area = 0.5`` dropped, one of the others chosen.
  It needs OpenCV (``pip install 'pconv-cli[baselines]'``) since LaMa rasterises
  with ``cv2.line``.
- :func:`mat_eval_mask`: MAT's ``datasets/mask_generator_512.py`` (``large``) and
  ``mask_generator_512_small.py`` (``small``) ``RandomMask(s, hole_range=[0, 1])``:
  random rectangles plus Pillow brush strokes, redrawn until 0 < hole ratio < 1.

Masks are bool (H, W), **True = hole**.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LAMA_PRESETS", "MAT_PRESETS", "LamaPreset", "lama_eval_mask", "mat_eval_mask"]


@dataclass(frozen=True)
class LamaPreset:
    """One ``random_*_512.yaml`` of LaMa (``irregular_kwargs``, ``box_kwargs``, probabilities)."""

    irregular: dict[str, int]
    box: dict[str, int] | None
    box_proba: float
    variants: int = 5
    max_tamper_area: float = 0.5


LAMA_PRESETS: dict[str, LamaPreset] = {
    "thin": LamaPreset(
        irregular={
            "min_times": 4,
            "max_times": 70,
            "max_width": 20,
            "max_angle": 4,
            "max_len": 100,
        },
        box=None,
        box_proba=0.0,
    ),
    "medium": LamaPreset(
        irregular={
            "min_times": 4,
            "max_times": 10,
            "max_width": 100,
            "max_angle": 4,
            "max_len": 200,
        },
        box={
            "margin": 0,
            "bbox_min_size": 30,
            "bbox_max_size": 150,
            "max_times": 5,
            "min_times": 1,
        },
        box_proba=0.3,
    ),
    "thick": LamaPreset(
        irregular={
            "min_times": 1,
            "max_times": 5,
            "max_width": 250,
            "max_angle": 4,
            "max_len": 450,
        },
        box={
            "margin": 10,
            "bbox_min_size": 30,
            "bbox_max_size": 300,
            "max_times": 4,
            "min_times": 1,
        },
        box_proba=0.3,
    ),
}


def _require_cv2():
    from pconv_cli.data.masks import MaskError

    try:
        import cv2
    except ImportError:
        raise MaskError(
            "LaMa's evaluation masks are drawn with OpenCV (cv2.line): "
            "pip install 'pconv-cli[baselines]'"
        ) from None
    return cv2


def _lama_irregular(
    rs: np.random.RandomState,
    shape: tuple[int, int],
    *,
    max_angle: int,
    max_len: int,
    max_width: int,
    min_times: int,
    max_times: int,
) -> np.ndarray:
    """LaMa's ``RandomIrregularMaskGenerator`` (ramp coefficient 1, ``DrawMethod.LINE``)."""
    cv2 = _require_cv2()
    height, width = shape
    mask = np.zeros((height, width), np.float32)
    max_times = int(min_times + 1 + (max_times - min_times))  # the generator's cur_max_times
    times = rs.randint(min_times, max_times + 1)
    for i in range(times):
        start_x = rs.randint(width)
        start_y = rs.randint(height)
        for _ in range(1 + rs.randint(5)):
            angle = 0.01 + rs.randint(max_angle)
            if i % 2 == 0:
                angle = 2 * 3.1415926 - angle
            length = 10 + rs.randint(max_len)
            brush_w = 5 + rs.randint(max_width)
            end_x = np.clip((start_x + length * np.sin(angle)).astype(np.int32), 0, width)
            end_y = np.clip((start_y + length * np.cos(angle)).astype(np.int32), 0, height)
            cv2.line(
                mask, (int(start_x), int(start_y)), (int(end_x), int(end_y)), 1.0, int(brush_w)
            )
            start_x, start_y = end_x, end_y
    return mask


def _lama_boxes(
    rs: np.random.RandomState,
    shape: tuple[int, int],
    *,
    margin: int,
    bbox_min_size: int,
    bbox_max_size: int,
    min_times: int,
    max_times: int,
) -> np.ndarray:
    """LaMa's ``RandomRectangleMaskGenerator`` (ramp coefficient 1)."""
    height, width = shape
    mask = np.zeros((height, width), np.float32)
    bbox_max_size = int(bbox_min_size + 1 + (bbox_max_size - bbox_min_size))  # cur_bbox_max_size
    bbox_max_size = min(bbox_max_size, height - margin * 2, width - margin * 2)
    times = rs.randint(min_times, max_times + 1)
    for _ in range(times):
        box_width = rs.randint(bbox_min_size, bbox_max_size)
        box_height = rs.randint(bbox_min_size, bbox_max_size)
        start_x = rs.randint(margin, width - margin - box_width + 1)
        start_y = rs.randint(margin, height - margin - box_height + 1)
        mask[start_y : start_y + box_height, start_x : start_x + box_width] = 1
    return mask


def _lama_mixed(rs: np.random.RandomState, preset: LamaPreset, shape: tuple[int, int]):
    """LaMa's ``MixedMaskGenerator.__call__`` with irregular and (maybe) box generators."""
    probas = [1.0] + ([preset.box_proba] if preset.box_proba > 0 else [])
    p = np.array(probas, dtype="float32")
    p /= p.sum()
    kind = rs.choice(len(p), p=p)
    if kind == 0:
        return _lama_irregular(rs, shape, **preset.irregular)
    assert preset.box is not None
    return _lama_boxes(rs, shape, **preset.box)


def _square_crop_draw(rs: np.random.RandomState, mask: np.ndarray) -> None:
    """``propose_random_square_crop`` of a square mask: the whole image, after its draw."""
    height, width = mask.shape
    if height != width:
        raise ValueError("pconv draws LaMa's evaluation masks on square images only")
    ys = np.where(mask > 0.5)[0]
    obj_top, obj_bottom = ys.min(), ys.max()  # an empty mask fails here, as in LaMa
    obj_height = obj_bottom - obj_top
    top = max(0, min(height - width - 1, obj_top + obj_height * 1 - width))
    bottom = max(top + 1, min(height - width, obj_top + obj_height * 1))
    rs.randint(top, bottom)


def lama_eval_mask(kind: str, rs: np.random.RandomState, size: int = 512) -> np.ndarray | None:
    """One LaMa evaluation mask of ``kind`` (thin/medium/thick) for a ``size`` square image.

    Returns None where LaMa writes no mask for the image (every variant covers more
    than half of it). True = hole.
    """
    preset = LAMA_PRESETS[kind]
    shape = (size, size)
    kept = []
    for _ in range(preset.variants):
        mask = _lama_mixed(rs, preset, shape)
        _square_crop_draw(rs, mask)
        if mask.mean() > preset.max_tamper_area:
            continue
        kept.append(mask)
    chosen = rs.choice(len(kept), size=min(len(kept), 1), replace=False)
    if not len(chosen):
        return None
    mask = kept[int(chosen[0])]
    return np.clip(mask * 255, 0, 255).astype(np.uint8) > 127


# --------------------------------------------------------------------------- MAT


@dataclass(frozen=True)
class MatPreset:
    """Tries of ``RandomMask``'s two ``MultiFill`` calls and of ``RandomBrush``."""

    fill_half: int
    fill_full: int
    brush: int


MAT_PRESETS: dict[str, MatPreset] = {
    "large": MatPreset(fill_half=5, fill_full=3, brush=9),  # mask_generator_512.py
    "small": MatPreset(fill_half=3, fill_full=2, brush=4),  # mask_generator_512_small.py
}


def _mat_brush(rs: np.random.RandomState, max_tries: int, s: int) -> np.ndarray:
    """MAT's ``RandomBrush`` (default vertex, angle and width ranges); 1 = stroke."""
    from PIL import Image, ImageDraw

    min_num_vertex, max_num_vertex = 4, 18
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    min_width, max_width = 12, 48
    average_radius = math.sqrt(s * s + s * s) / 8
    mask = Image.new("L", (s, s), 0)
    for _ in range(rs.randint(max_tries)):
        num_vertex = rs.randint(min_num_vertex, max_num_vertex)
        angle_min = mean_angle - rs.uniform(0, angle_range)
        angle_max = mean_angle + rs.uniform(0, angle_range)
        angles = []
        for i in range(num_vertex):
            if i % 2 == 0:
                angles.append(2 * math.pi - rs.uniform(angle_min, angle_max))
            else:
                angles.append(rs.uniform(angle_min, angle_max))
        h, w = mask.size
        vertex = [(int(rs.randint(0, w)), int(rs.randint(0, h)))]
        for i in range(num_vertex):
            r = np.clip(
                rs.normal(loc=average_radius, scale=average_radius // 2), 0, 2 * average_radius
            )
            new_x = np.clip(vertex[-1][0] + r * math.cos(angles[i]), 0, w)
            new_y = np.clip(vertex[-1][1] + r * math.sin(angles[i]), 0, h)
            vertex.append((int(new_x), int(new_y)))
        draw = ImageDraw.Draw(mask)
        width = int(rs.uniform(min_width, max_width))
        draw.line(vertex, fill=1, width=width)
        for v in vertex:
            half = width // 2
            draw.ellipse((v[0] - half, v[1] - half, v[0] + half, v[1] + half), fill=1)
        rs.random_sample()  # MAT flips a copy it throws away: the draws still happen
        rs.random_sample()
    array = np.asarray(mask, np.uint8)
    if rs.random_sample() > 0.5:
        array = np.flip(array, 0)
    if rs.random_sample() > 0.5:
        array = np.flip(array, 1)
    return array


def mat_eval_mask(
    kind: str, rs: np.random.RandomState, size: int = 512, hole_range: Sequence[float] = (0, 1)
) -> np.ndarray:
    """MAT's ``RandomMask(size, hole_range)`` of ``kind`` (large/small); True = hole."""
    preset = MAT_PRESETS[kind]
    s = size
    coef = min(hole_range[0] + hole_range[1], 1.0)
    while True:
        valid = np.ones((s, s), np.uint8)

        def fill(max_size: int, valid: np.ndarray = valid) -> None:
            w, h = rs.randint(max_size), rs.randint(max_size)
            ww, hh = w // 2, h // 2
            x, y = rs.randint(-ww, s - w + ww), rs.randint(-hh, s - h + hh)
            valid[max(y, 0) : min(y + h, s), max(x, 0) : min(x + w, s)] = 0

        for tries, max_size in (
            (int(preset.fill_half * coef), s // 2),
            (int(preset.fill_full * coef), s),
        ):
            for _ in range(rs.randint(tries)):
                fill(max_size)
        kept = np.logical_and(valid, 1 - _mat_brush(rs, int(preset.brush * coef), s))
        hole_ratio = 1 - np.mean(kept)
        if hole_range is not None and (hole_ratio <= hole_range[0] or hole_ratio >= hole_range[1]):
            continue
        return ~kept

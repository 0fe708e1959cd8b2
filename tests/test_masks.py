"""Mask generators: hole-ratio bounds, border/margin rules, the published algorithms' parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pconv_cli.data import masks
from pconv_cli.data.masks import (
    DEFAULT_HOLE_RATIO,
    MASK_KINDS,
    MIXED_WEIGHTS,
    NVIDIA_BUCKETS,
    MaskError,
    bucket_label,
    default_margin,
    generate_mask,
    hole_ratio_of,
    in_ratio_range,
    parse_ratio_range,
    resolve_kind,
    touches_border,
)

SIZE = (72, 96)  # (height, width): non-square on purpose


def ratio(hole: np.ndarray) -> float:
    """Independent recount of the hole fraction."""
    return float(hole.sum()) / (hole.shape[0] * hole.shape[1])


def edge_band(hole: np.ndarray, margin: int) -> np.ndarray:
    """All pixels closer than ``margin`` to the image edge."""
    band = np.ones_like(hole)
    band[margin:-margin, margin:-margin] = False
    return hole[band]


def on_edge(hole: np.ndarray) -> bool:
    return bool(np.concatenate([hole[0], hole[-1], hole[:, 0], hole[:, -1]]).any())


# --------------------------------------------------------------------------- ratio & border


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("border", [None, False, True])
def test_each_kind_meets_ratio_and_border(kind: str, border: bool | None) -> None:
    margin = default_margin(SIZE)
    assert margin == 7  # 50 * 72 / 512
    for index in range(4):
        lo, hi = NVIDIA_BUCKETS[index % 3 + 1]
        hole = generate_mask(
            kind, np.random.default_rng([5, index]), size=SIZE, hole_ratio=(lo, hi), border=border
        )
        assert hole.dtype == np.bool_ and hole.shape == SIZE
        assert lo <= ratio(hole) < hi
        if border is False:
            assert not edge_band(hole, margin).any()
        if border is True:
            assert on_edge(hole)


@pytest.mark.parametrize(("lo", "hi"), [NVIDIA_BUCKETS[0], NVIDIA_BUCKETS[-1]])
@pytest.mark.parametrize("border", [False, True])
def test_extreme_buckets_are_reachable(lo: float, hi: float, border: bool) -> None:
    size = (128, 128)
    for index in range(3):
        hole = generate_mask(
            "irregular",
            np.random.default_rng([9, index]),
            size=size,
            hole_ratio=(lo, hi),
            border=border,
            margin=12,
        )
        assert lo <= ratio(hole) < hi
        assert on_edge(hole) is border
        if not border:
            assert not edge_band(hole, 12).any()


def test_explicit_margin_is_respected() -> None:
    hole = generate_mask(
        "brush",
        np.random.default_rng(1),
        size=(64, 64),
        hole_ratio=(0.1, 0.2),
        border=False,
        margin=20,
    )
    assert not edge_band(hole, 20).any() and hole[20:-20, 20:-20].any()


@pytest.mark.parametrize("kind", ["irregular", "thin", "medium", "thick"])
def test_default_ratio_ranges(kind: str) -> None:
    lo, hi = DEFAULT_HOLE_RATIO[kind]
    for index in range(8):
        hole = generate_mask(kind, np.random.default_rng([2, index]), size=(256, 256))
        assert lo <= ratio(hole) < hi


def test_box_keeps_its_own_margin_without_border_option() -> None:
    for index in range(10):
        hole = generate_mask("box", np.random.default_rng([4, index]), size=(256, 256))
        assert not edge_band(hole, 10).any()  # MMagic-style 10 px margin at 256
        assert hole.any()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(MASK_KINDS),
    height=st.integers(48, 120),
    width=st.integers(48, 120),
    bucket=st.sampled_from(NVIDIA_BUCKETS),
    border=st.sampled_from([None, False, True]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_feasible_request_is_met(kind, height, width, bucket, border, seed) -> None:
    hole = generate_mask(
        kind, np.random.default_rng(seed), size=(height, width), hole_ratio=bucket, border=border
    )
    assert hole.shape == (height, width)
    assert bucket[0] <= ratio(hole) < bucket[1]
    if border is False:
        assert not edge_band(hole, default_margin((height, width))).any()
    if border is True:
        assert on_edge(hole)


# --------------------------------------------------------------------------- clear failures


def test_ratio_beyond_the_margin_fails_clearly() -> None:
    with pytest.raises(MaskError) as info:
        generate_mask(
            "irregular",
            np.random.default_rng(0),
            size=(256, 256),
            hole_ratio=(0.7, 0.8),
            border=False,
        )
    message = str(info.value)
    assert "irregular" in message and "256x256" in message and "0.7-0.8" in message
    assert "25 px" in message and "\n" not in message


def test_exhausted_tries_fail_clearly() -> None:
    # every stroke (width >= 10 px at 256) covers far more than the 32 pixels allowed
    with pytest.raises(MaskError, match=r"could not draw a 256x256 irregular mask .*2 tries"):
        generate_mask(
            "irregular",
            np.random.default_rng(0),
            size=(256, 256),
            hole_ratio=(0.0, 0.0005),
            max_tries=2,
        )


@pytest.mark.parametrize(
    "options",
    [
        {"hole_ratio": (0.5, 0.2)},
        {"hole_ratio": (0.1, 1.5)},
        {"hole_ratio": (-0.1, 0.2)},
        {"size": (4, 64)},
        {"border": False, "margin": 40, "size": (64, 64)},
        {"margin": -1},
    ],
)
def test_bad_requests_raise(options: dict) -> None:
    with pytest.raises(MaskError):
        generate_mask("irregular", np.random.default_rng(0), **options)


def test_unknown_kind() -> None:
    with pytest.raises(MaskError, match="unknown mask kind 'blob'"):
        generate_mask("blob", np.random.default_rng(0))


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_same_rng_same_mask(kind: str) -> None:
    first = generate_mask(kind, np.random.default_rng([3, 1]), size=(64, 80))
    again = generate_mask(kind, np.random.default_rng([3, 1]), size=(64, 80))
    other = generate_mask(kind, np.random.default_rng([3, 2]), size=(64, 80))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


# --------------------------------------------------------------------------- algorithms


def _frame(size=(256, 256), border=None, margin=0):
    return masks._Frame(size[0], size[1], border, margin)


def test_irregular_follows_mmagic_parameters() -> None:
    rng = np.random.default_rng(0)
    counts = [len(masks._plan_batch(rng, masks._IRREGULAR)) for _ in range(400)]
    assert min(counts) == 4 and max(counts) == 9  # num_vertices (4, 10): randint -> 4..9
    frame = _frame()
    allowed = np.array([0.01 + k for k in range(6)])  # 0.01 + randint(0, max_angle=6)
    segments, widths = [], []
    for group in range(300):
        stroke = masks._sample_angle_stroke(rng, frame, masks._IRREGULAR.strokes, group, False)
        widths.append(stroke.width)
        segments.append(len(stroke.points) - 1)
        for (x0, y0), (x1, y1) in zip(stroke.points, stroke.points[1:], strict=False):
            if max(x1, y1) >= 255 or min(x1, y1) <= 0:
                continue  # clipped at the image edge like MMagic
            length = math.hypot(x1 - x0, y1 - y0)
            assert 20 - 1 <= length <= 127 + 1
            angle = math.atan2(y1 - y0, x1 - x0) % (2 * math.pi)
            if group % 2 == 0:  # mirrored to 2pi - a on every other group
                angle = 2 * math.pi - angle
            circular_gap = np.abs((allowed - angle + math.pi) % (2 * math.pi) - math.pi)
            assert circular_gap.min() < 0.06
    assert (min(segments), max(segments)) == (1, 5)
    assert (min(widths), max(widths)) == (10, 44)  # brush_width (10, 45)


def test_irregular_scales_with_image_size() -> None:
    rng = np.random.default_rng(0)
    frame = _frame((512, 512))
    widths = [
        masks._sample_angle_stroke(rng, frame, masks._IRREGULAR.strokes, i, False).width
        for i in range(300)
    ]
    assert (min(widths), max(widths)) == (20, 88)


def test_brush_follows_deepfillv2_parameters() -> None:
    rng = np.random.default_rng(0)
    frame = _frame()
    diagonal = math.hypot(256, 256)
    vertices, widths = [], []
    for group in range(300):
        stroke = masks._sample_brush_stroke(rng, frame, masks._BRUSH.strokes, group, False)
        vertices.append(len(stroke.points) - 1)
        widths.append(stroke.width)
        for (x0, y0), (x1, y1) in zip(stroke.points, stroke.points[1:], strict=False):
            assert math.hypot(x1 - x0, y1 - y0) <= diagonal / 4 + 1
    assert (min(vertices), max(vertices)) == (4, 11)
    assert (min(widths), max(widths)) == (12, 40)
    counts = [len(masks._plan_batch(rng, masks._BRUSH)) for _ in range(200)]
    assert (min(counts), max(counts)) == (1, 3)


def test_brush_has_round_joints() -> None:
    # a single stroke's pixels all lie within width/2 of its polyline, and every vertex
    # disc is filled: the shape is a union of capsules (round ends and joints)
    rng = np.random.default_rng(3)
    frame = _frame((128, 128))
    stroke = masks._sample_brush_stroke(rng, frame, masks._BRUSH.strokes, 0, False)
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (128, 128), 0)
    masks._draw_unit(ImageDraw.Draw(canvas), stroke)
    hole = np.asarray(canvas) > 0
    ys, xs = np.mgrid[0:128, 0:128]
    radius = stroke.width / 2
    for x, y in stroke.points:
        inside = (xs - x) ** 2 + (ys - y) ** 2 <= (radius - 1) ** 2
        assert hole[inside].all()


def test_lama_presets_use_their_table() -> None:
    rng = np.random.default_rng(0)
    for kind, size, max_width in [("thin", 256, 14), ("thin", 512, 24), ("thick", 512, 254)]:
        frame = _frame((size, size))
        recipe = masks._recipe_for(kind, frame)
        widths = [
            masks._sample_angle_stroke(rng, frame, recipe.strokes, i, False).width
            for i in range(400)
        ]
        assert max(widths) <= max_width and min(widths) >= 5
    medium = masks._recipe_for("medium", _frame())
    with_boxes = [
        "box" in masks._plan_batch(rng, medium) for _ in range(2000)
    ]  # boxes join with p = 0.3
    assert 0.26 < np.mean(with_boxes) < 0.34


def test_mixed_follows_its_weights() -> None:
    rng = np.random.default_rng(0)
    picks = [resolve_kind("mixed", rng) for _ in range(4000)]
    for kind, weight in MIXED_WEIGHTS.items():
        assert abs(picks.count(kind) / len(picks) - weight) < 0.03
    assert resolve_kind("brush", rng) == "brush"


# --------------------------------------------------------------------------- helpers


def test_bucket_labels() -> None:
    assert bucket_label(0.01) == "0.01-0.1"
    assert bucket_label(0.0999) == "0.01-0.1"
    assert bucket_label(0.1) == "0.1-0.2"
    assert bucket_label(0.55) == "0.5-0.6"
    assert bucket_label(0.6) == "0.5-0.6"
    assert bucket_label(0.009) is None
    assert bucket_label(0.61) is None


def test_ratio_ranges() -> None:
    assert parse_ratio_range("0.1-0.2") == (0.1, 0.2)
    assert parse_ratio_range(" 0-1 ") == (0.0, 1.0)
    for bad in ["0.5-0.2", "abc", "0.2", "0.1-0.2-0.3", "0.1-2", "nan-0.2"]:
        with pytest.raises(MaskError):
            parse_ratio_range(bad)
    assert in_ratio_range(0.1, 0.1, 0.2) and not in_ratio_range(0.2, 0.1, 0.2)
    assert in_ratio_range(1.0, 0.5, 1.0)
    # hand-computed pixel-count bounds: 0.1 * 65536 = 6553.6, 0.2 * 65536 = 13107.2
    assert masks._count_bounds(0.1, 0.2, 65536) == (6554, 13107)
    assert masks._count_bounds(0.1, 0.2, 100) == (10, 19)
    assert masks._count_bounds(0.0, 1.0, 100) == (1, 100)


def test_touches_border_and_ratio() -> None:
    hole = np.zeros((5, 7), bool)
    assert not touches_border(hole) and hole_ratio_of(hole) == 0
    hole[2, 3] = True
    assert not touches_border(hole) and hole_ratio_of(hole) == 1 / 35
    for index in [(0, 3), (4, 3), (2, 0), (2, 6)]:
        edge = np.zeros((5, 7), bool)
        edge[index] = True
        assert touches_border(edge)


def test_default_margin_scales_with_shorter_side() -> None:
    assert default_margin((512, 512)) == 50
    assert default_margin((256, 256)) == 25
    assert default_margin((300, 1000)) == 29


def test_occlusion_masks_are_thin_curvy_strokes_at_small_ratios() -> None:
    """NVIDIA-like: in the 1-10 % bucket most hole pixels lie within 3 px of a valid pixel
    (thin bands), and the holes are longer than wide (not discs or boxes)."""
    from scipy import ndimage

    near, elongation = [], []
    for seed in range(30):
        hole = generate_mask(
            "occlusion", np.random.default_rng([11, seed]), size=(256, 256), hole_ratio=(0.01, 0.1)
        )
        depth = ndimage.distance_transform_edt(hole)  # distance to the nearest valid pixel
        near.append(np.mean(depth[hole] <= 3))
        area, width = hole.sum(), 2 * depth[hole].mean()
        elongation.append(area / width**2)  # a band of length L, width w: L / w
    assert np.median(near) > 0.7, near
    assert np.median(elongation) > 20, elongation


def test_plus_joined_kinds_pick_each_kind_uniformly() -> None:
    rng = np.random.default_rng(0)
    picks = [resolve_kind("box+occlusion", rng) for _ in range(2000)]
    assert abs(picks.count("box") / len(picks) - 0.5) < 0.04
    assert set(picks) == {"box", "occlusion"}
    hole = generate_mask("irregular+occlusion", np.random.default_rng(1), hole_ratio=(0.1, 0.2))
    assert 0.1 <= hole.mean() < 0.2
    with pytest.raises(MaskError, match="unknown mask kind 'blob'"):
        generate_mask("occlusion+blob", np.random.default_rng(0))

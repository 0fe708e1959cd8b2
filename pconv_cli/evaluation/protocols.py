"""Pinned evaluation protocols (``pconv eval --protocol NAME``).

A protocol fixes everything a published table depends on: which images of the
user's copy of the data set (``--folder``: the files sorted by relative path, the
first ``images``), how they are mapped to the evaluated size (Pillow bicubic resize
to cover ``size`` x ``size``, centre crop), the mask sets (drawn by pconv from fixed
seeds, so every user regenerates the same pixels), how images and masks pair up, and
the metrics.

Masks are generated on first use into ``$PCONV_CACHE/protocols/<name>/`` (default
``~/.cache/pconv``), one folder per mask set plus ``manifest.csv`` (bucket = the set's
name for LaMa and MAT, the hole-ratio bucket for NVIDIA's layout). The first masks of
every set are checked against digests shipped with pconv (:data:`REFERENCE_DIGESTS`:
sha256 of the mask's packed bits, white = hole), so a machine whose OpenCV or Pillow
draws differently stops with an error instead of scoring other masks; the digest of
all masks used is recorded in the JSON config.

Pairing: pair ``k`` of a set is image ``k`` with mask ``k`` of that set; LaMa's and
MAT's sets each pair with every image (3 and 2 pairs per image). With ``--limit N``
the first ``N`` images are used (a subset: not comparable with published numbers).

- ``nvidia-irregular``: the PConv paper's layout (Liu et al. 2018: six hole-ratio
  buckets 0.01-0.1 ... 0.5-0.6, with and without holes touching the border, 1000 masks
  each, 12,000 in all) at 512 x 512, masks from pconv's ``irregular`` generator (as
  ``pconv gen-masks --nvidia-buckets`` draws them; NVIDIA's own masks are not
  redistributable), mask ``k`` of bucket-half ``j`` from ``default_rng([2018, j, k])``;
  image ``i`` gets bucket-half ``i mod 12``, so every subset covers every bucket.
  12,000 images, l1 / PSNR / SSIM / LPIPS / FID.
- ``lama-places512``: LaMa's evaluation masks (Suvorov et al. 2022,
  ``configs/data_gen/random_{thin,medium,thick}_512.yaml`` through
  ``bin/gen_mask_dataset.py``), drawn exactly as LaMa draws them for a 512 x 512 image
  (:func:`pconv_cli.data.reference_masks.lama_eval_mask`; mask ``k`` of set ``j`` is what
  LaMa's code gives after ``np.random.seed([2021, j, k])``; like LaMa, an image whose
  five candidate masks all cover more than half of it gets no mask of that set).
  LaMa scores a random 30,000 of Places365 val (unseeded); pconv the first 30,000 by
  name. LPIPS and FID, FID per mask set (LaMa's tables report thin/medium/thick apart).
- ``mat-places512``: MAT's masks (Li et al. 2022, ``datasets/mask_generator_512.py`` =
  ``large``, ``mask_generator_512_small.py`` = ``small``), drawn exactly
  (:func:`pconv_cli.data.reference_masks.mat_eval_mask`, seed ``[2022, j, k]``), on
  all 36,500 Places365 val images. FID and P-IDS/U-IDS, per mask set.

numpy and PIL only at import (OpenCV for LaMa's masks, when they are drawn).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pconv_cli.data.masks import (
    MANIFEST_NAME,
    NVIDIA_BUCKETS,
    ManifestRow,
    bucket_label,
    format_ratio_range,
    hole_ratio_of,
    load_mask,
    read_manifest,
    save_mask,
    touches_border,
    write_manifest,
)
from pconv_cli.evaluation.pairs import EvalError, ImageEntry, MaskEntry, PairPlan

__all__ = [
    "PROTOCOLS",
    "REFERENCE_DIGESTS",
    "Protocol",
    "draw_protocol_mask",
    "get_protocol",
    "mask_digest",
    "prepare_protocol",
    "protocol_cache_dir",
]


@dataclass(frozen=True)
class Protocol:
    """A pinned evaluation (see the module docstring)."""

    name: str
    title: str
    images: int
    size: int
    generator: str  # "nvidia" | "lama" | "mat"
    mask_sets: tuple[str, ...]
    metrics: tuple[str, ...]
    seed: int
    set_metrics_by_bucket: bool
    reference: str
    crop: str = "center"


PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            name="nvidia-irregular",
            title="PConv paper buckets (6 hole ratios x border/no border), 512 px, 12,000 pairs",
            images=12_000,
            size=512,
            generator="nvidia",
            mask_sets=tuple(
                f"{format_ratio_range(lo, hi)}/{half}"
                for lo, hi in NVIDIA_BUCKETS
                for half in ("border", "no-border")
            ),
            metrics=("l1", "psnr", "ssim", "lpips", "fid"),
            seed=2018,
            set_metrics_by_bucket=False,
            reference="Liu et al., Image Inpainting for Irregular Holes Using Partial "
            "Convolutions, ECCV 2018 (Places2, 512 px)",
        ),
        Protocol(
            name="lama-places512",
            title="LaMa thin/medium/thick masks, Places365 val, 512 px, 30,000 images",
            images=30_000,
            size=512,
            generator="lama",
            mask_sets=("thin", "medium", "thick"),
            metrics=("lpips", "fid"),
            seed=2021,
            set_metrics_by_bucket=True,
            reference="Suvorov et al., Resolution-robust Large Mask Inpainting with Fourier "
            "Convolutions, WACV 2022 (Places 512)",
        ),
        Protocol(
            name="mat-places512",
            title="MAT small/large masks, Places365 val, 512 px, 36,500 images",
            images=36_500,
            size=512,
            generator="mat",
            mask_sets=("small", "large"),
            metrics=("fid", "pids"),
            seed=2022,
            set_metrics_by_bucket=True,
            reference="Li et al., MAT: Mask-Aware Transformer for Large Hole Image "
            "Inpainting, CVPR 2022 (Places 512)",
        ),
    )
}

REFERENCE_DIGESTS: dict[str, dict[str, tuple[str, ...]]] = {
    "nvidia-irregular": {
        "0.01-0.1/border": (
            "4b174fd153208c3d309432101910a8f3994b0d9e30716ed7b3e934ec5d5a86ad",
            "0fad5e20260ae4ad2afac2d72306c5afc1b8409e90c93aa425df0b52a4797726",
        ),
        "0.01-0.1/no-border": (
            "3b2b43d29ac91be565ae63f9fe76382b1cb3adda63f06e5e0ae13031f92445fa",
            "fe9007dfcd005e64b2300df06c346c44fee02d32190ac73296f3fe5b5dff166f",
        ),
        "0.1-0.2/border": (
            "ed031c3b7dc31483228b22168a78aa434c9eb2a208b81ee9652cdb541d72da16",
            "a8658191f67276ef9a6ce352d473bec7867a6e0cdf6f2f3b30145f033394ef64",
        ),
        "0.1-0.2/no-border": (
            "8574ac8bba1b306bdd92c07e1058fc3a4c93a93bd2ed5173c19e9a11c8ad651f",
            "195e02adc4247a23146dfefe90c14fd097bea2d8afe836716fe91534ad691fa7",
        ),
        "0.2-0.3/border": (
            "b8988f099f7491b9cb2b0c04ba807268f5b3beb0204259e3f425dd1f8a8fc78f",
            "3b229b68739de41587aee6adb3718a37008a26a3077dd3e4c2ce8cb417e34cc5",
        ),
        "0.2-0.3/no-border": (
            "b19b4a87153c2cf2741004057388905b85af99c324d5fdd1a0d54045aed1b649",
            "5ad8772a30ed07cd5889041fc3fa1b3382b2858e0a31203f01df38d84e91f6cc",
        ),
        "0.3-0.4/border": (
            "6b69dda6a640186fd5e5b1d8d7a55669237b11ee5410f3c87fe39d2aefafdde1",
            "af5255521dab576f0f8915ced46ed41f8cba17eaafe0d38bef2eb26ee036dd1e",
        ),
        "0.3-0.4/no-border": (
            "af48a50cf29e2829eb18050986f50d7d31c21eeaa20a49c6ace68783b65ad96c",
            "2bb30fb22f8f1fbd9645e53d44dff58e13381a657ba0e4742d976bf65abb0a78",
        ),
        "0.4-0.5/border": (
            "a8ba3244aec27f00fc78f046dbdda498029983033eb6b34f6c965e9d7aae773b",
            "56a836d3a87a0f9fd091ad29c1a5b67f7d949f1c0e8e8d4941efdf765e6f807b",
        ),
        "0.4-0.5/no-border": (
            "60efab6e856b65501871aadc66560220f0a20d6b6ed13bb8c6ffe0e1a128eaae",
            "8fcc1591a16086e89e216e400d4762567b4d8a3e2c774e4132140ffec278fecb",
        ),
        "0.5-0.6/border": (
            "85f43f0b763a64980ea163ca27c79357bf671033c372426f98d5ce68011cdcc4",
            "7a29030d8233f6428595198da9fb2f53307d09722d2f6adad1ffe034bf955989",
        ),
        "0.5-0.6/no-border": (
            "5fce7037a9864664cec428bd1695a105e54b6cd9f6347511f4a9ba1d101fc46c",
            "dc7b0f4b09ff9e772d24ebeccc8189773728978cb91847048d2e070220a03e68",
        ),
    },
    "lama-places512": {
        "thin": (
            "961188ded393a777a483ec6065981d24cc7b8fe7de58759f2e8fe085df4cdcef",
            "9555c2c608218174859f171e7b5217ae764ab80a078fef1a8645e4d83563fbc9",
        ),
        "medium": (
            "348a6e49600e0bdec7e4e896317d10f798e6e6e0b2d3023c4d080bd576383bb5",
            "ea44522e368cbddf5d844ffed780070f5164f7e2d13ca44d13c06ea2dd237b17",
        ),
        "thick": (
            "3c24d51757df36d516e3dc6de0c3a5a574312a737931e414f8553f499f2fb85e",
            "5b364c86f40cc54b82cc1009692eaa3a6df67482acbca148cee104ac27882a6a",
        ),
    },
    "mat-places512": {
        "small": (
            "9606642a756f69fd1518a81af62e31da9d904fed156e45a70617e00391f3a849",
            "85a30ff216dc4738bcddd26e4171cbad6eaaac61e655fb6da6df02442682d6a0",
        ),
        "large": (
            "8ca3d30d77304e2ce1241e0a3899fe702d3f0631ebe336b1d14d8b55e029dfb3",
            "a30546fb32faad3305b0c7515f860322f46ea7aa034c61828cbba6196db65428",
        ),
    },
}
"""Per protocol and mask set, the :func:`mask_digest` of its first :data:`CHECKED_MASKS` masks
as drawn by pconv 0.x (numpy legacy RandomState / Generator, OpenCV 4 ``cv2.line``, Pillow)."""

CHECKED_MASKS = 2
"""How many leading masks of every set are checked against :data:`REFERENCE_DIGESTS`."""


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; EvalError listing the names otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise EvalError(
            f"unknown --protocol {name!r}; choose from {', '.join(PROTOCOLS)}"
        ) from None


def protocol_cache_dir(protocol: Protocol) -> Path:
    """``$PCONV_CACHE/protocols/<name>`` (default ``~/.cache/pconv/protocols/<name>``)."""
    root = os.environ.get("PCONV_CACHE") or Path.home() / ".cache" / "pconv"
    return Path(root) / "protocols" / protocol.name


def mask_digest(hole: np.ndarray) -> str:
    """sha256 of a mask's shape and packed bits (True = hole): independent of PNG encoders."""
    hole = np.asarray(hole, dtype=bool)
    header = f"{hole.shape[0]}x{hole.shape[1]}:".encode()
    return hashlib.sha256(header + np.packbits(hole).tobytes()).hexdigest()


def _file_name(protocol: Protocol, set_index: int, k: int) -> str:
    return f"{protocol.mask_sets[set_index]}/{k:05d}.png"


def draw_protocol_mask(protocol: Protocol, set_index: int, k: int) -> np.ndarray | None:
    """Mask ``k`` of mask set ``set_index`` (True = hole); None: LaMa gives this image none."""
    size = protocol.size
    if protocol.generator == "lama":
        from pconv_cli.data.reference_masks import lama_eval_mask

        state = np.random.RandomState([protocol.seed, set_index, k])
        return lama_eval_mask(protocol.mask_sets[set_index], state, size)
    if protocol.generator == "mat":
        from pconv_cli.data.reference_masks import mat_eval_mask

        state = np.random.RandomState([protocol.seed, set_index, k])
        return mat_eval_mask(protocol.mask_sets[set_index], state, size)
    from pconv_cli.data.masks import generate_mask

    lo, hi = NVIDIA_BUCKETS[set_index // 2]
    return generate_mask(
        "irregular",
        np.random.default_rng([protocol.seed, set_index, k]),
        size=(size, size),
        hole_ratio=(lo, hi),
        border=set_index % 2 == 0,
    )


def _mask_jobs(protocol: Protocol, count: int) -> list[tuple[int, int, int]]:
    """``(pair_number, set_index, k)`` of the first ``count`` images, in pair order."""
    sets = len(protocol.mask_sets)
    if protocol.generator == "nvidia":  # one mask per image, bucket-halves in turn
        return [(k, k % sets, k // sets) for k in range(count)]
    return [(j * count + k, j, k) for j in range(sets) for k in range(count)]


def _draw_job(args: tuple[str, int, int, str]) -> tuple[int, int, ManifestRow | None, str]:
    """Worker: draw and save one mask; return its manifest row and digest."""
    name, set_index, k, out_dir = args
    protocol = PROTOCOLS[name]
    hole = draw_protocol_mask(protocol, set_index, k)
    if hole is None:
        return set_index, k, None, ""
    file = _file_name(protocol, set_index, k)
    path = Path(out_dir, file)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_mask(path, hole)
    ratio = hole_ratio_of(hole)
    bucket = protocol.mask_sets[set_index]
    if protocol.generator == "nvidia":
        bucket = bucket_label(ratio) or ""
    row = ManifestRow(
        file=file,
        width=protocol.size,
        height=protocol.size,
        hole_ratio=ratio,
        bucket=bucket,
        touches_border=touches_border(hole),
        kind=f"{protocol.generator}:{protocol.mask_sets[set_index]}",
        seed=k,
    )
    return set_index, k, row, mask_digest(hole)


def _check_reference(protocol: Protocol, digests: dict[tuple[int, int], str]) -> None:
    expected = REFERENCE_DIGESTS.get(protocol.name, {})
    for set_index, name in enumerate(protocol.mask_sets):
        for k, want in enumerate(expected.get(name, ())):
            got = digests.get((set_index, k))
            if got is not None and want and got != want:
                raise EvalError(
                    f"--protocol {protocol.name}: mask {name}/{k:05d} drawn here differs from "
                    "pconv's reference (another OpenCV/Pillow rasteriser?); its masks would not "
                    "be comparable"
                )


def prepare_protocol(
    protocol: Protocol,
    images: Sequence[ImageEntry],
    *,
    limit: int | None = None,
    workers: int = 1,
    cache_dir: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[PairPlan, dict[str, object]]:
    """The pairs of ``protocol`` on ``images`` (``--folder``, sorted) and config facts.

    Draws the masks that are missing from the cache (``workers`` processes). Raises
    EvalError when the folder holds fewer images than the protocol (or ``limit``) needs.
    """
    count = protocol.images if limit is None else min(limit, protocol.images)
    if len(images) < count:
        raise EvalError(
            f"--protocol {protocol.name} scores the first {count} images of --folder "
            f"(sorted by name; Places365 val for the published tables), found {len(images)}; "
            "give --limit N to score a subset (not comparable with published numbers)"
        )
    folder = cache_dir or protocol_cache_dir(protocol)
    jobs = _mask_jobs(protocol, count)
    manifest = folder / MANIFEST_NAME
    rows: dict[tuple[int, int], ManifestRow | None] = {}
    digests: dict[tuple[int, int], str] = {}
    known: dict[str, ManifestRow] = {}
    if manifest.is_file():
        known = {row.file: row for row in read_manifest(manifest)}
    todo = []
    for _, set_index, k in jobs:
        file = _file_name(protocol, set_index, k)
        if file in known and (folder / file).is_file():
            rows[(set_index, k)] = known[file]
        elif (folder / f"{file}.none").is_file():
            rows[(set_index, k)] = None
        else:
            todo.append((protocol.name, set_index, k, str(folder)))
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        for set_index, k, row, digest in _run_draws(todo, workers, on_progress):
            rows[(set_index, k)] = row
            if row is None:
                (folder / f"{_file_name(protocol, set_index, k)}.none").touch()
            else:
                digests[(set_index, k)] = digest
        _check_reference(protocol, digests)
        merged = {**known, **{row.file: row for row in rows.values() if row is not None}}
        write_manifest(manifest, [merged[file] for file in sorted(merged)])
    for set_index in range(len(protocol.mask_sets)):  # cached masks: check them too
        for k in range(min(CHECKED_MASKS, count)):
            row = rows.get((set_index, k))
            if row is not None and (set_index, k) not in digests:
                digests[(set_index, k)] = mask_digest(load_mask(folder / row.file))
    _check_reference(protocol, digests)
    return _plan(protocol, images, jobs, rows, folder)


def _run_draws(todo, workers: int, on_progress):
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            yield _draw_job(job)
            if on_progress is not None:
                on_progress(1)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for result in pool.map(_draw_job, todo, chunksize=16):
            yield result
            if on_progress is not None:
                on_progress(1)


def _plan(
    protocol: Protocol,
    images: Sequence[ImageEntry],
    jobs: list[tuple[int, int, int]],
    rows: dict[tuple[int, int], ManifestRow | None],
    folder: Path,
) -> tuple[PairPlan, dict[str, object]]:
    explicit = []
    digest = hashlib.sha256()
    for _, set_index, k in jobs:
        row = rows[(set_index, k)]
        if row is None:
            continue
        image = images[k if protocol.generator != "nvidia" else _image_of(protocol, set_index, k)]
        mask = MaskEntry(
            key=Path(row.file).with_suffix("").as_posix(),
            path=folder / row.file,
            bucket=row.bucket or "other",
            touches_border=row.touches_border,
        )
        explicit.append((image, mask, None))
        digest.update(f"{row.file}:{row.hole_ratio!r};".encode())
    masks = tuple(entry for _, entry, _ in explicit)
    plan = PairPlan("file", images, masks, explicit=explicit)
    facts: dict[str, object] = {
        "protocol": protocol.name,
        "protocol_title": protocol.title,
        "protocol_reference": protocol.reference,
        "protocol_images": protocol.images,
        "protocol_complete": len({e[0].key for e in explicit}) >= protocol.images,
        "mask_cache": str(folder),
        "mask_sets": list(protocol.mask_sets),
        "mask_list_sha256": digest.hexdigest(),
        "pairs_without_mask": sum(1 for row in rows.values() if row is None),
    }
    return plan, facts


def _image_of(protocol: Protocol, set_index: int, k: int) -> int:
    """NVIDIA layout: mask ``k`` of bucket-half ``set_index`` belongs to image ``k*12 + j``."""
    return k * len(protocol.mask_sets) + set_index

"""``pconv eval`` over several processes: shard the pairs, merge the results exactly.

The plan is cut into the batches one process would score (``batch_size`` consecutive
pairs); batch ``i`` goes to rank ``i mod world_size``. Every batch is therefore
scored with exactly the inputs, batch composition and code of a one-process run,
so per-pair values (l1, PSNR, SSIM, LPIPS) and Inception features are bit for bit
those of one process (on the same kind of device and thread settings).

Rank 0 then gathers every rank's per-pair records, features and grid candidates
(through a gloo group, whatever the main backend) and rebuilds the result in pair
order: bucket sums are added in the same order as one process adds them, features
are spooled in pair order, and FID / P-IDS are computed from them by the same code,
so the whole report equals a one-process report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pconv_cli.evaluation.pairs import Pair
from pconv_cli.evaluation.scoring import (
    EvalResult,
    GridPick,
    Record,
    SourceResult,
    _Extremes,
    _RecordSpool,
)
from pconv_cli.evaluation.set_metrics import FeatureSpool

__all__ = ["gather_result", "shard_plan"]


def shard_plan(plan: Sequence[Pair], batch_size: int, rank: int, world_size: int) -> list[Pair]:
    """The pairs of rank ``rank``: batches ``rank, rank + world_size, ...`` of the plan."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    pairs: list[Pair] = []
    for number, start in enumerate(range(0, len(plan), batch_size)):
        if number % world_size == rank:
            pairs.extend(plan[start : start + batch_size])
    return pairs


def _picks(extremes: _Extremes | None) -> list[GridPick]:
    if extremes is None:
        return []
    return extremes.best + extremes.worst


def _payload(local: EvalResult) -> dict[str, Any]:
    sources = []
    for source in local.sources:
        if source.spool is None:
            raise RuntimeError("a shard must keep its records (evaluate(keep_records=True))")
        sources.append(
            {
                "records": list(source.records()),
                "features": None if source.features is None else source.features.read(),
                "picks": _picks(source.extremes),
            }
        )
    real = local.real_features
    return {
        "pairs": local.pairs,
        "sizes": sorted(local.sizes),
        "real": None if real is None else real.read(),
        "sources": sources,
    }


def _spool_in_order(parts: list[np.ndarray | None], order: list[tuple[int, int]]) -> FeatureSpool:
    """A spool of the rows ``parts[rank][position]`` taken in ``order``."""
    dims = next(part.shape[1] for part in parts if part is not None and part.size)
    spool = FeatureSpool(dims)
    rows = [parts[rank][position] for rank, position in order]  # type: ignore[index]
    for start in range(0, len(rows), 1024):
        spool.append(np.stack(rows[start : start + 1024]))
    return spool


def gather_result(local: EvalResult, *, keep_records: bool, grid_count: int) -> EvalResult | None:
    """Merge every rank's shard result on rank 0 (see the module docstring).

    Collective: every rank calls it. Returns the merged result on rank 0 and None
    elsewhere; set-level metrics are left to
    :func:`pconv_cli.evaluation.scoring.finish_set_metrics`.
    """
    import torch.distributed as dist

    group = dist.new_group(backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    gathered: list[dict[str, Any]] | None = [{} for _ in range(world)] if rank == 0 else None
    dist.gather_object(_payload(local), gathered, dst=0, group=group)
    dist.destroy_process_group(group)
    if gathered is None:
        return None
    # (pair index, rank, position in that rank's shard), sorted by pair index
    order = sorted(
        (record["index"], r, position)
        for r, payload in enumerate(gathered)
        if payload["sources"]
        for position, record in enumerate(payload["sources"][0]["records"])
    )
    positions = [(r, position) for _, r, position in order]
    merged = EvalResult(
        [],
        pairs=sum(payload["pairs"] for payload in gathered),
        sizes={tuple(size) for payload in gathered for size in payload["sizes"]},
        metrics=local.metrics,
    )
    try:
        if local.real_features is not None:
            merged.real_features = _spool_in_order([p["real"] for p in gathered], positions)
        for number, source in enumerate(local.sources):
            result = SourceResult(
                source.source,
                spool=_RecordSpool() if keep_records else None,
                extremes=_Extremes(grid_count) if grid_count else None,
            )
            merged.sources.append(result)
            parts = [payload["sources"][number] for payload in gathered]
            for r, position in positions:
                record = Record.from_json(parts[r]["records"][position])
                result.add(record)
                if number == 0:
                    merged.pair_buckets.append(record.bucket)
            if source.features is not None:
                result.features = _spool_in_order([p["features"] for p in parts], positions)
            if result.extremes is not None:
                for part in parts:
                    for pick in part["picks"]:
                        result.extremes.offer(pick.record, lambda pick=pick: pick)
    except BaseException:
        merged.close()
        raise
    return merged

"""Data-parallel training with PyTorch's own stack: DDP, launched by torch's elastic launcher.

``pconv train --gpus N`` (or ``--device cpu --nproc N``) starts N local worker
processes through ``torch.distributed.launcher`` (the engine behind
``torchrun``); the same command also runs unchanged under ``torchrun``, which
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. CUDA uses NCCL, CPU uses gloo.

SyncBN for every backend lives in :mod:`pconv_cli.nn.sync_batchnorm`.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistContext",
    "LaunchError",
    "check_world_size",
    "context_from_env",
    "launch",
]


class LaunchError(RuntimeError):
    """The distributed run could not start or a worker failed (one-line message)."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env() -> DistContext:
    """Rank, world size and local rank as torchrun (and our launcher) set them."""
    return DistContext(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_process_group(ctx: DistContext, device: torch.device) -> bool:
    """Join the process group (NCCL for CUDA, gloo otherwise); True if this call created it."""
    if not ctx.enabled or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return True


def check_world_size(processes: int, device: torch.device) -> None:
    """Refuse impossible requests before any process starts."""
    if processes < 1:
        raise LaunchError(f"the number of processes must be >= 1, got {processes}")
    if device.type == "cuda":
        available = torch.cuda.device_count()
        if processes > available:
            raise LaunchError(f"--gpus {processes}: only {available} CUDA GPU(s) are available")
    elif device.type != "cpu" and processes > 1:
        raise LaunchError(f"several processes need CUDA (NCCL) or the CPU (gloo), not {device}")


def all_reduce_mean(values: Tensor) -> Tensor:
    """Mean of ``values`` over all ranks (a no-op outside a process group)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


# -- launching ---------------------------------------------------------------------------


def launch(entrypoint: Callable[..., Any], args: tuple, *, processes: int) -> Any:
    """Run ``entrypoint(*args)`` in ``processes`` local workers via torch's elastic launcher.

    Returns rank 0's return value. A failing worker stops the run; its error
    message becomes a :class:`LaunchError`.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.2,
        logs_specs=None,
        start_method="spawn",
    )
    # The agent logs every worker failure with tracebacks; the LaunchError says it in one line.
    agent_logger = logging.getLogger("torch.distributed.elastic")
    level = agent_logger.level
    agent_logger.setLevel(logging.CRITICAL)
    try:
        results = elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        raise LaunchError(_failure_message(exc)) from None
    finally:
        agent_logger.setLevel(level)
    return results[0]


def _failure_message(exc: Any) -> str:
    """One line from the first (root-cause) failure of a ChildFailedError."""
    rank, failure = exc.get_first_failure()
    message = failure.message if failure.error_file_data.get("message") else ""
    while isinstance(message, dict):  # error files nest {"message": {"message": ...}}
        message = message.get("message", "")
    message = str(message or "")
    lines = message.strip().splitlines()
    text = lines[0] if lines else f"exit code {failure.exitcode} (its error is printed above)"
    # error files say "ExceptionType: text"; pconv's own errors read better without the type
    name, sep, rest = text.partition(": ")
    if sep and name.isidentifier() and name.endswith("Error") and rest:
        text = rest
    return f"worker rank {rank} failed: {text}"

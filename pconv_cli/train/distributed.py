"""Data-parallel training with PyTorch's own stack: DDP, launched by torch's elastic launcher.

``pconv train --gpus N`` (or ``--device cpu --nproc N``) starts N local worker
processes through ``torch.distributed.launcher`` (the engine behind
``torchrun``); the same command also runs unchanged under ``torchrun``, which
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. CUDA uses NCCL, CPU uses gloo.

:class:`SyncBatchNorm2d` is a SyncBN that also works on CPU/gloo (torch's own
``nn.SyncBatchNorm`` is GPU-only); on CUDA torch's fused version is used.
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
from torch import Tensor, nn

__all__ = [
    "DistContext",
    "LaunchError",
    "SyncBatchNorm2d",
    "check_world_size",
    "context_from_env",
    "convert_sync_batchnorm",
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


# -- SyncBN for every backend ------------------------------------------------------------


class _SyncBatchNormFunction(torch.autograd.Function):
    """Batch norm over the union of every rank's batch (training mode)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, group):
        c = x.shape[1]
        xf = x.float()
        local_var, local_mean = torch.var_mean(xf, dim=(0, 2, 3), unbiased=False)
        count = torch.full((1,), x.numel() / c, dtype=torch.float64, device=x.device)
        local = torch.cat([count, local_mean.double(), local_var.double()])
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, local, group=group)
        stats = torch.stack(gathered)  # (world, 1 + 2C)
        counts, means, variances = stats[:, :1], stats[:, 1 : 1 + c], stats[:, 1 + c :]
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / total
        if running_mean is not None:
            with torch.no_grad():
                unbiased = var * total / max(total.item() - 1, 1)
                running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        mean, invstd = mean.float(), torch.rsqrt(var.float() + eps)
        xhat = (xf - mean.view(1, -1, 1, 1)) * invstd.view(1, -1, 1, 1)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.total = float(total)
        ctx.group = group
        y = xhat * weight.float().view(1, -1, 1, 1) + bias.float().view(1, -1, 1, 1)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        xhat, weight, invstd = ctx.saved_tensors
        gy = grad_output.float()
        local = torch.cat([gy.sum((0, 2, 3)), (gy * xhat).sum((0, 2, 3))])
        grad_weight, grad_bias = local[xhat.shape[1] :].clone(), local[: xhat.shape[1]].clone()
        dist.all_reduce(local, group=ctx.group)
        c = xhat.shape[1]
        sum_dy, sum_dy_xhat = local[:c] / ctx.total, local[c:] / ctx.total
        grad_input = (weight.float() * invstd).view(1, -1, 1, 1) * (
            gy - sum_dy.view(1, -1, 1, 1) - xhat * sum_dy_xhat.view(1, -1, 1, 1)
        )
        # Local parameter gradients: DDP averages them over ranks like every other gradient.
        return (
            grad_input.to(grad_output.dtype),
            grad_weight.to(weight.dtype),
            grad_bias.to(weight.dtype),
            None, None, None, None, None,
        )  # fmt: skip


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span all ranks; any device, any backend.

    Same parameters and buffers as ``nn.BatchNorm2d``, so state dicts are
    interchangeable. Outside a process group (or in eval mode) it is plain BN.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if self.momentum is None:
            raise ValueError("SyncBatchNorm2d needs a momentum (cumulative averages unsupported)")
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
        return _SyncBatchNormFunction.apply(
            x, self.weight, self.bias,
            self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.eps, self.momentum, dist.group.WORLD,
        )  # fmt: skip


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d becomes a synchronised one (torch's on CUDA, ours elsewhere).

    Parameters and buffers are shared, not copied, so ``requires_grad`` and frozen
    layers carry over.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = SyncBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            )  # fmt: skip
            sync.weight, sync.bias = child.weight, child.bias
            sync.running_mean, sync.running_var = child.running_mean, child.running_var
            sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child, device)
    return module


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

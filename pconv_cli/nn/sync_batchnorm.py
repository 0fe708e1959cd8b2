"""Synchronised BatchNorm for every device and backend (torch's own is CUDA-only).

:class:`SyncBatchNorm2d` computes training statistics over the union of every
rank's batch; :func:`convert_sync_batchnorm` swaps it in for every BatchNorm2d of
a model (torch's fused ``nn.SyncBatchNorm`` on CUDA).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["SyncBatchNorm2d", "convert_sync_batchnorm"]


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



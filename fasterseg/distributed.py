"""Multi-process runs under ``torchrun``: process-group setup, collectives that are no-ops in a
single process, gradient averaging, and batch norm synchronised across processes on any device.

The library's promise is that N processes with a global batch B compute what one process with
batch B computes (up to float rounding): each process takes a contiguous share of every global
batch, losses are normalised by global counts, and batch-norm statistics are taken over the
global batch (:class:`SyncBatchNorm2d`). torch's own ``nn.SyncBatchNorm`` runs on GPUs only,
so CPU runs (gloo) could not keep that promise with it.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import ConfigError

log = logging.getLogger(__name__)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files and shows progress (rank 0). Outside the
    process group (before or after it) the launcher's ``RANK`` variable decides."""
    if is_distributed():
        return rank() == 0
    return os.environ.get("RANK", "0") == "0"


def _env_world_size() -> int:
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable WORLD_SIZE={raw!r} is not an integer") from None


@contextmanager
def launch(device: torch.device) -> Iterator[torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, if any, and
    yield the device this process uses.

    Without ``WORLD_SIZE`` > 1 (a plain single-process run) nothing happens. Otherwise the
    group is initialised with gloo for CPU devices and nccl for CUDA devices, and a CUDA device
    becomes ``cuda:LOCAL_RANK``. A group initialised here is destroyed on exit; one that the
    caller already initialised is left alone.
    """
    if _env_world_size() <= 1:
        yield device
        return
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if dist.is_initialized():
        yield device
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    log.info("rank %d/%d on %s (%s)", dist.get_rank(), dist.get_world_size(), device, backend)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def all_reduce_sum(t: Tensor) -> Tensor:
    """``t`` summed over processes (a new tensor; ``t`` itself without a group). Not
    differentiable: use it for counts and logged values."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def global_mean(value: Tensor) -> Tensor:
    """The mean of a per-process scalar over processes (for logging and NaN checks)."""
    v = value.detach()
    return all_reduce_sum(v if v.dtype == torch.float64 else v.float()) / world_size()


def all_gather_cat(t: Tensor) -> Tensor:
    """The 1-D tensors of all processes concatenated in rank order (lengths may differ)."""
    if not is_distributed():
        return t
    n = torch.tensor([t.numel()], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros(longest, dtype=t.dtype, device=t.device)
    padded[: t.numel()] = t.reshape(-1)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over processes, in one flat all-reduce.

    Every process must pass the same parameters in the same order; parameters without a
    gradient on every process are skipped (whether one has a gradient must not depend on the
    data, which holds for the search's steps).
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def barrier() -> None:
    """Wait until every process gets here (no-op in one process)."""
    if is_distributed():
        dist.barrier()


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every process."""
    if not is_distributed():
        return
    for b in module.buffers():
        dist.broadcast(b, src=0)


def shard(n: int) -> range:
    """The indices of ``range(n)`` this process handles when work is split round-robin."""
    return range(rank(), n, world_size())


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes: the gradient of each input is the summed gradient."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, t: Tensor) -> Tensor:  # type: ignore[override]
        out = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return _AllReduceSum.apply(grad)


def _sum_over_processes(t: Tensor) -> Tensor:
    return _AllReduceSum.apply(t)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics cover the batch of every process.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d``; in one process or in
    eval mode it is exactly ``nn.BatchNorm2d``. Works on any device whose backend implements
    all-reduce (gloo on CPU, nccl on CUDA). Mean and variance are computed in two passes (as
    ``F.batch_norm`` does) so the result matches one process to float rounding; gradients flow
    through the differentiable all-reduce. (Eval mode without running statistics normalises
    by the local batch, as in one process.)
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D input (N, C, H, W), got {tuple(x.shape)}")
        xf = x if x.dtype == torch.float64 else x.float()  # statistics in at least float32
        n = float(x.numel() // x.shape[1])
        count = all_reduce_sum(torch.tensor(n, device=x.device, dtype=xf.dtype))
        mean = _sum_over_processes(xf.sum(dim=(0, 2, 3))) / count
        centred = xf - mean[None, :, None, None]
        var = _sum_over_processes((centred * centred).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * (count / (count - 1).clamp_min(1))
                self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(
    module: nn.Module, _done: dict[int, nn.Module] | None = None
) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a :class:`SyncBatchNorm2d` that holds
    the very same parameter and buffer tensors (so device, dtype and ``requires_grad`` are
    kept, and a module used in two places stays one). In place for children; returns the
    possibly new root. Hooks registered on a replaced module are not carried over."""
    done: dict[int, nn.Module] = {} if _done is None else _done
    if id(module) in done:
        return done[id(module)]
    if type(module) is nn.BatchNorm2d:
        new = SyncBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats, device="meta",
        )  # fmt: skip
        new._parameters = dict(module._parameters)
        new._buffers = dict(module._buffers)
        new.train(module.training)
        done[id(module)] = new
        return new
    for name, child in list(module._modules.items()):  # named_children() skips repeats
        if child is not None:
            setattr(module, name, convert_sync_batchnorm(child, done))
    done[id(module)] = module
    return module


__all__ = [
    "SyncBatchNorm2d",
    "all_gather_cat",
    "all_reduce_sum",
    "average_gradients",
    "barrier",
    "broadcast_buffers",
    "convert_sync_batchnorm",
    "global_mean",
    "is_distributed",
    "is_main",
    "launch",
    "rank",
    "shard",
    "world_size",
]

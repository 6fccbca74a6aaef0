"""Losses: OHEM cross-entropy (the reference's ProbOhemCrossEntropy2d) and distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import distributed as dist
from .data.labels import IGNORE_INDEX


def ohem_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    thresh: float = 0.7,
    min_kept: int = 0,
    ignore_index: int = IGNORE_INDEX,
    synced: bool = False,
) -> Tensor:
    """Online hard example mining cross-entropy.

    logits (N, C, H, W), target (N, H, W) int64. The softmax probability of the true class is
    taken per labelled pixel; the threshold is ``max(thresh, the min_kept-th smallest
    probability)``, and the mean cross-entropy is taken over pixels at or below it. With
    fewer than ``min_kept`` labelled pixels every labelled pixel is kept, and ``min_kept`` 0
    mines nothing (plain cross-entropy over labelled pixels), as in the reference's
    ``ProbOhemCrossEntropy2d``. Logits at a coarser
    resolution than the target are not resized: pass labels at the logits' size.

    ``synced`` (under torchrun): the batch is the union of every process's share. Counts, the
    threshold and the mean are then global, and the returned value is this process's share
    times the process count, so that averaging gradients over processes (what DDP does)
    gives the gradient of the global loss; :func:`fasterseg.distributed.global_mean` of the
    returned values is the global loss.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in size"
        )
    sync = synced and dist.is_distributed()

    def total(t: Tensor) -> int:
        return int(dist.all_reduce_sum(t) if sync else t)

    valid = target != ignore_index
    num_valid = total(valid.sum())
    if num_valid == 0:
        return logits.sum() * 0.0
    keep_target = target
    if 0 < min_kept <= num_valid:
        with torch.no_grad():
            prob = F.softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=1)
            safe = torch.where(valid, target, torch.zeros_like(target))
            p_true = prob.gather(1, safe.unsqueeze(1)).squeeze(1)
            threshold = thresh
            # The min_kept-th smallest probability matters only when fewer than min_kept
            # pixels fall at or below ``thresh``; only then are they gathered across processes.
            if total((p_true[valid] <= thresh).sum()) < min_kept:
                p_valid = p_true[valid]
                everyone = dist.all_gather_cat(p_valid) if sync else p_valid
                threshold = max(threshold, torch.kthvalue(everyone, min_kept).values.item())
            kept = valid & (p_true <= threshold)
        keep_target = torch.where(kept, target, torch.full_like(target, ignore_index))
    if not sync:
        return F.cross_entropy(logits, keep_target, ignore_index=ignore_index)
    kept_count = total((keep_target != ignore_index).sum())
    loss_sum = F.cross_entropy(logits, keep_target, ignore_index=ignore_index, reduction="sum")
    return loss_sum * (dist.world_size() / max(kept_count, 1))


def distillation_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """T^2 * KL(teacher || student) on softened class distributions.

    student, teacher: logits (N, C, H, W) of the same shape. ``reduction`` is ``mean`` (the
    reference: averaged over all N*C*H*W elements, as ``nn.KLDivLoss()``), ``pixelmean``
    (summed over classes, averaged over pixels) or ``batchmean`` (summed, divided by N).
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"student logits {tuple(student.shape)} and teacher logits "
            f"{tuple(teacher.shape)} differ"
        )
    t = float(temperature)
    log_p = F.log_softmax(student / t, dim=1)
    q = F.softmax(teacher.detach() / t, dim=1)
    kl = F.kl_div(log_p, q, reduction="none")
    if reduction == "mean":
        loss = kl.mean()
    elif reduction == "pixelmean":
        loss = kl.sum(dim=1).mean()
    elif reduction == "batchmean":
        loss = kl.sum() / student.shape[0]
    else:
        raise ValueError(f"reduction must be mean, pixelmean or batchmean, got {reduction!r}")
    return loss * (t * t)

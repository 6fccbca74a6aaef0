"""Losses: OHEM cross-entropy (the reference's ProbOhemCrossEntropy2d) and distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .data.labels import IGNORE_INDEX


def ohem_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    thresh: float = 0.7,
    min_kept: int = 0,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Online hard example mining cross-entropy.

    logits (N, C, H, W), target (N, H, W) int64. The softmax probability of the true class is
    taken per labelled pixel; the threshold is ``max(thresh, the min_kept-th smallest
    probability)``, and the mean cross-entropy is taken over pixels at or below it. With
    fewer than ``min_kept`` labelled pixels every labelled pixel is kept. Logits at a coarser
    resolution than the target are not resized: pass labels at the logits' size.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in size"
        )
    valid = target != ignore_index
    num_valid = int(valid.sum())
    if num_valid == 0:
        return logits.sum() * 0.0
    keep_target = target
    if num_valid >= min_kept:
        with torch.no_grad():
            prob = F.softmax(logits.float(), dim=1)
            safe = torch.where(valid, target, torch.zeros_like(target))
            p_true = prob.gather(1, safe.unsqueeze(1)).squeeze(1)
            p_valid = p_true[valid]
            threshold = thresh
            if min_kept > 0:
                kth = torch.kthvalue(p_valid, min(num_valid, min_kept)).values.item()
                threshold = max(threshold, kth)
            kept = valid & (p_true <= threshold)
        keep_target = torch.where(kept, target, torch.full_like(target, ignore_index))
    return F.cross_entropy(logits, keep_target, ignore_index=ignore_index)


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

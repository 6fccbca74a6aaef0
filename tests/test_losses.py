"""OHEM cross-entropy and the distillation loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from fasterseg.losses import distillation_loss, ohem_cross_entropy


def test_ohem_keeps_only_hard_pixels_above_min_kept():
    # 4 pixels: confident correct (p ~ 1), two hard ones, one ignored.
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0], [0.0, 2.0], [5.0, 0.0]]).T.reshape(1, 2, 1, 4)
    target = torch.tensor([[[0, 0, 0, 255]]])
    # threshold 0.7, min_kept 1: pixels with p_true <= 0.7 are kept (pixels 1 and 2).
    got = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=1)
    keep = torch.tensor([[[255, 0, 0, 255]]])
    assert torch.isclose(got, F.cross_entropy(logits, keep, ignore_index=255))


def test_ohem_min_kept_raises_threshold():
    logits = torch.tensor([[10.0, 0.0], [0.0, 0.0], [8.0, 0.0]]).T.reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 0, 0]]])
    # Only pixel 1 is below 0.7; min_kept 2 lifts the threshold to the 2nd smallest p (pixel 2).
    got = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=2)
    keep = torch.tensor([[[255, 0, 0]]])
    assert torch.isclose(got, F.cross_entropy(logits, keep, ignore_index=255))


def test_ohem_with_too_few_pixels_keeps_all():
    logits = torch.randn(1, 3, 2, 2)
    target = torch.tensor([[[0, 1], [2, 255]]])
    got = ohem_cross_entropy(logits, target, min_kept=100)
    assert torch.isclose(got, F.cross_entropy(logits, target, ignore_index=255))


def test_ohem_all_ignored_is_zero_with_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = ohem_cross_entropy(logits, torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0 and logits.grad is not None


def test_distillation_zero_when_outputs_agree_positive_otherwise():
    s = torch.randn(2, 5, 4, 4, requires_grad=True)
    assert distillation_loss(s, s.detach().clone()).abs().item() < 1e-7
    t = torch.randn(2, 5, 4, 4, requires_grad=True)
    loss = distillation_loss(s, t)
    assert loss.item() > 0
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None  # only the student receives gradients


def test_distillation_reference_default_is_kldivloss_mean():
    s, t = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    ref = torch.nn.KLDivLoss()(F.log_softmax(s, 1), F.softmax(t, 1))
    assert torch.isclose(distillation_loss(s, t), ref)
    # Temperature: T^2 * KL on softened outputs; pixelmean = mean * C.
    t2 = distillation_loss(s, t, temperature=2.0)
    ref2 = 4 * torch.nn.KLDivLoss()(F.log_softmax(s / 2, 1), F.softmax(t / 2, 1))
    assert torch.isclose(t2, ref2)
    assert torch.isclose(distillation_loss(s, t, reduction="pixelmean"), ref * 4)
    with pytest.raises(ValueError, match="reduction"):
        distillation_loss(s, t, reduction="sum")


def test_ohem_with_min_kept_0_mines_nothing_as_the_reference():
    # The reference's ProbOhemCrossEntropy2d mines only when min_kept > 0: with 0 every
    # labelled pixel counts, the confident ones too (mining at 0.7 would keep none here).
    target = torch.tensor([[[0, 1], [255, 0]]])
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 0] = 10.0
    logits[0, 1, 0, 1] = 12.0  # pixel (0, 1) confident and right, like the two class-0 pixels
    loss = ohem_cross_entropy(logits, target, thresh=0.7, min_kept=0)
    # by hand: p_true is 1 / (1 + 2 e^-10) at the class-0 pixels, 1 / (1 + e^-12 + e^-2) at (0, 1)
    ce = [math.log(1 + 2 * math.exp(-10)), math.log(1 + math.exp(-12) + math.exp(-2))]
    expected = (2 * ce[0] + ce[1]) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() > 0

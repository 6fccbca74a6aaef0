"""Inference preparation: folded batch norm, in-place ReLU, channels-last, same output."""

import pytest
import torch
from torch import nn

from fasterseg.genotype import Branch, Genotype
from fasterseg.models import create_model
from fasterseg.models.deploy import fold_batchnorm, prepare_for_inference
from fasterseg.nn.ops import OPS, Skip

W = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)


def _geno(branches, fch=4):
    return Genotype("t", fch, 1.0, 1.0, W, tuple(Branch(*b) for b in branches))


# Every registered op; skip as identity (same width), as a width-changing 1x1 projection
# (stride 1) and as the factorised reduce (stride 2); the zoomed ops at stride 1 and 2.
ALL_OPS = _geno(
    [
        (
            ("skip", "conv", "skip", "conv_downup", "conv_2x_downup", "skip", "conv_2x"),
            (0, 0, 0, 1, 1, 2, 2),
            (0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
        ),
        (
            ("skip", "conv_downup", "conv_2x_downup", "skip"),
            (0, 0, 1, 1),
            (0.5, 1.0, 0.5, 1.0),
        ),
    ]
)
# Three branches (ending at /32, /8, /16), conv at stride 2 (conv_2x at stride 2 is in the
# stem), and a stride-2 skip with an odd width (53 = 26 + 27 channels).
STRIDE2 = _geno(
    [
        (("conv", "conv_2x", "conv_2x_downup", "conv"), (0, 1, 1, 2), (0.5, 1.0, 0.5, 1.0)),
        (("conv_2x_downup", "conv_2x"), (0, 0), (0.5, 1.0)),
        (("skip", "conv_downup", "conv_2x"), (0, 1, 1), (10 / 12, 0.5, 1.0)),
    ]
)


def _randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Random statistics and affine values so that folding changes every weight."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.6 - 0.3)
    return model


def _check_same_output(model: nn.Module, x: torch.Tensor, **kwargs) -> nn.Module:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training = model.training
    prepared = prepare_for_inference(model, **kwargs)
    # The input model is left as it was: same mode, same tensors, batch norms still there.
    assert model.training == training
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.inference_mode():
        ref = model.eval()(x)
        out = prepared(x)
    assert out.shape == ref.shape
    span = (ref.max() - ref.min()).item()
    assert span > 0
    assert (out - ref).abs().max().item() <= 1e-4 * span
    assert not prepared.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())
    assert not any(p.requires_grad for p in prepared.parameters())
    return prepared


# The teacher is built without aux heads only to keep the test fast.
@pytest.mark.parametrize("name, aux", [("fasterseg-student", True), ("fasterseg-teacher", False)])
def test_published_networks_match_after_preparation(name, aux):
    torch.manual_seed(0)
    model = _randomize_batchnorm(create_model(name, aux=aux), seed=1).train()
    prepared = _check_same_output(model, torch.randn(1, 3, 64, 128))
    # The training-only heads are gone from the copy, not from the original.
    assert prepared.aux16 is None and prepared.aux32 is None
    assert (model.aux16 is not None and model.aux32 is not None) == aux
    stem = prepared.stem.conv
    assert isinstance(stem.bn, nn.Identity) and stem.conv.bias is not None
    assert stem.relu.inplace and stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(m.inplace for m in prepared.modules() if isinstance(m, nn.ReLU))
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        out, out_cl = prepared(x), prepared(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, out_cl)


@pytest.mark.parametrize("geno", [ALL_OPS, STRIDE2], ids=["all_ops", "stride2"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_small_genotypes_match_after_preparation(geno, channels_last):
    torch.manual_seed(2)
    model = _randomize_batchnorm(create_model(geno, num_classes=5), seed=3)
    _check_same_output(model, torch.randn(2, 3, 64, 128), channels_last=channels_last)


def test_every_registered_op_is_covered():
    used = {op for b in ALL_OPS.branches for op in b.ops}
    # Other test modules may register extra operators (tests/test_extension.py does).
    assert used == {"skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup"} <= set(OPS.keys())
    net = create_model(ALL_OPS)
    skips = [m for m in net.modules() if isinstance(m, Skip)]
    kinds = {("identity" if s.identity else "proj" if s.stride == 1 else "reduce") for s in skips}
    assert kinds == {"identity", "proj", "reduce"}


def test_float64_model_folds_in_float64():
    torch.manual_seed(4)
    model = _randomize_batchnorm(create_model(ALL_OPS, num_classes=3), seed=5).double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    prepared = prepare_for_inference(model, channels_last=False)
    with torch.inference_mode():
        ref, out = model.eval()(x), prepared(x)
    assert out.dtype == torch.float64
    assert (out - ref).abs().max().item() <= 1e-10 * (ref.max() - ref.min()).item()


def test_fold_batchnorm_into_a_channel_slice():
    torch.manual_seed(6)
    conv_a, conv_b = nn.Conv2d(4, 3, 1, bias=False), nn.Conv2d(4, 5, 3, padding=1, bias=True)
    bn = _randomize_batchnorm(nn.BatchNorm2d(8), seed=7).eval()
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        ref = bn(torch.cat([conv_a(x), conv_b(x)], dim=1))
        fold_batchnorm(conv_a, bn, slice(0, 3))
        fold_batchnorm(conv_b, bn, slice(3, 8))
        out = torch.cat([conv_a(x), conv_b(x)], dim=1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="batch norm slice has 8 channels, conv has 3"):
        fold_batchnorm(conv_a, bn)


def test_only_networks_are_accepted():
    with pytest.raises(TypeError, match="expects a Network, got Conv2d"):
        prepare_for_inference(nn.Conv2d(3, 3, 1))


def test_unfoldable_batch_norm_is_kept_with_a_warning(caplog):
    model = create_model(STRIDE2, num_classes=3)
    # A batch norm outside the built-in patterns, as a user-registered operator might hold.
    model.layers[0].extra = nn.BatchNorm2d(4)
    with caplog.at_level("WARNING", logger="fasterseg.models.deploy"):
        prepared = prepare_for_inference(model)
    assert "layers.0.extra" in caplog.text
    assert [n for n, m in prepared.named_modules() if isinstance(m, nn.BatchNorm2d)] == [
        "layers.0.extra"
    ]

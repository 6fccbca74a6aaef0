"""Every registered operator keeps the shapes a cell expects, fixed and slimmable."""

import pytest
import torch

from fasterseg.nn import OPS, Operator, build_op
from fasterseg.nn.layers import SlimConv2d, SwitchableBatchNorm2d

ZOOMED = ("conv_downup", "conv_2x_downup")


@pytest.mark.parametrize("name", OPS.keys())
@pytest.mark.parametrize("stride", [1, 2])
def test_fixed_op_shapes(name, stride):
    op = build_op(name, 8, 16, stride)
    y = op(torch.randn(2, 8, 16, 32))
    assert y.shape == (2, 16, 16 // stride, 32 // stride)


@pytest.mark.parametrize("name", OPS.keys())
@pytest.mark.parametrize("stride", [1, 2])
def test_slimmable_op_takes_every_width(name, stride):
    choices = [8, 12, 16, 24]
    op = build_op(name, 24, 24, stride, out_choices=choices)
    for c_in in (8, 24):
        for c_out in choices:
            y = op(torch.randn(1, c_in, 8, 16), c_out)
            assert y.shape == (1, c_out, 8 // stride, 16 // stride)


@pytest.mark.parametrize("name", OPS.keys())
def test_slimmable_op_refuses_unbuilt_width(name):
    op = build_op(name, 16, 16, 1, out_choices=[8, 16])
    with pytest.raises(ValueError):
        op(torch.randn(1, 16, 8, 8), 12)


@pytest.mark.parametrize("name", OPS.keys())
def test_every_op_gets_its_constructor_from_the_base(name):
    op = build_op(name, 8, 16, 2, out_choices=[8, 16], resize_mode="nearest")
    assert isinstance(op, Operator)
    assert (op.c_in, op.c_out, op.stride, op.out_choices) == (8, 16, 2, (8, 16))
    assert op.slimmable and op.resize_mode == "nearest"
    assert not build_op(name, 8, 16, 1).slimmable


@pytest.mark.parametrize("name", OPS.keys())
def test_only_zoomed_ops_read_the_resize_mode(name):
    x = torch.randn(1, 4, 9, 13)
    outs = []
    for mode in ("bilinear", "nearest"):
        torch.manual_seed(0)
        outs.append(build_op(name, 4, 6, 1, resize_mode=mode).eval()(x))
    assert torch.equal(outs[0], outs[1]) is (name not in ZOOMED)


def test_an_operator_without_build_cannot_be_made():
    class NoBuild(Operator):
        def forward(self, x, c_out=None):
            return x

    with pytest.raises(TypeError, match="build"):
        NoBuild(4, 4, 1)


def test_skip_is_identity_only_when_widths_match():
    x = torch.randn(1, 8, 8, 8)
    assert build_op("skip", 8, 8, 1)(x) is x
    assert build_op("skip", 8, 16, 1)(x).shape == (1, 16, 8, 8)
    assert sum(p.numel() for p in build_op("skip", 8, 8, 1).parameters()) == 0


def test_zoomed_ops_resize_back_before_relu():
    # conv_downup at stride 1: the bilinear resize back happens before the ReLU, so the output
    # is non-negative and at input size even for odd sizes.
    op = build_op("conv_downup", 4, 4, 1)
    y = op(torch.randn(1, 4, 9, 13))
    assert y.shape == (1, 4, 9, 13) and (y >= 0).all()
    op2 = build_op("conv_2x_downup", 4, 6, 2)
    assert op2(torch.randn(1, 4, 10, 14)).shape == (1, 6, 5, 7)


def test_slim_conv_slices_the_full_weight():
    conv = SlimConv2d(16, 16, 3, 1, 1, bias=False)
    x = torch.randn(1, 8, 5, 5)
    ref = torch.nn.functional.conv2d(x, conv.weight[:4, :8], padding=1)
    assert torch.allclose(conv(x, 4), ref)


def test_switchable_bn_keeps_one_norm_per_width():
    bn = SwitchableBatchNorm2d([8, 16])
    bn.train()
    bn(torch.randn(4, 8, 3, 3) + 5)
    assert bn.bns[0].running_mean.mean() > 0.1
    assert torch.equal(bn.bns[1].running_mean, torch.zeros(16))
    with pytest.raises(ValueError, match="12 channels"):
        bn(torch.randn(1, 12, 3, 3))


def test_unknown_op_lists_registered_names():
    with pytest.raises(KeyError, match="conv_2x_downup"):
        build_op("sep_conv_9x9", 8, 8, 1)

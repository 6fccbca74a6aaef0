"""SuperNet: forward/backward per role, gradients to the right architecture parameters."""

import pytest
import torch

from fasterseg.config import SpaceConfig
from fasterseg.errors import ConfigError
from fasterseg.space import HEAD_NAMES, Role, SuperNet, WidthMode

SMALL = SpaceConfig(layers=6, fch=4, num_classes=5)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return SuperNet(SMALL)


def _arch_grads(net, role):
    return {k: p.grad for k, p in net.arch.items()}


@pytest.mark.parametrize("role", list(Role))
def test_forward_backward_reaches_own_arch_parameters(net, role):
    net.zero_grad(set_to_none=True)
    outs = net(torch.randn(2, 3, 64, 64), role)
    assert len(outs) == len(HEAD_NAMES)
    assert all(o.shape == (2, 5, 8, 8) for o in outs)
    sum(o.square().mean() for o in outs).backward()
    grads = _arch_grads(net, role)
    mine = {k: g for k, g in grads.items() if k.startswith(role.value)}
    others = {k: g for k, g in grads.items() if not k.startswith(role.value)}
    for name in ("alpha_0", "alpha_1", "alpha_2", "beta_1", "beta_2"):
        g = mine[f"{role.value}_{name}"]
        assert g is not None and g.abs().sum() > 0, name
    if role is Role.STUDENT:
        for s in range(3):
            g = mine[f"student_ratio_{s}"]
            assert g is not None and g.abs().sum() > 0
    assert all(g is None for g in others.values())
    # Cell weights are shared: both roles' passes train them.
    assert net.cells[1][0].keep.ops[1].conv.conv.weight.grad.abs().sum() > 0


def test_teacher_has_no_width_parameters(net):
    assert net.ratios(Role.TEACHER) is None
    assert not any("ratio" in k for k in dict(net.named_parameters()) if "teacher" in k)
    sample = net.sample_widths(Role.TEACHER, WidthMode.SAMPLED)
    top = max(range(len(net.width_choices)), key=lambda k: net.width_choices[k])
    assert all(i == top for row in sample.index for i in row)
    assert all(g is None for g in sample.gate)


def test_width_modes(net):
    K = len(net.width_choices)
    smallest = min(range(K), key=lambda k: net.width_choices[k])
    assert all(i == smallest for row in net.sample_widths("student", "min").index for i in row)
    torch.manual_seed(1)
    rnd = net.sample_widths("student", "random")
    assert len({i for row in rnd.index for i in row}) > 1
    sampled = net.sample_widths("student", "sampled")
    for row, gate in zip(sampled.index, sampled.gate):
        assert gate is not None and torch.allclose(gate, torch.ones_like(gate))
        assert all(0 <= i < K for i in row)


def test_sampling_follows_ratio_logits(net):
    with torch.no_grad():
        saved = [p.clone() for p in net.ratios("student")]
        for p in net.ratios("student"):
            p.zero_()
            p[:, 1] = 50.0
    try:
        sample = net.sample_widths("student", "sampled")
        assert all(i == 1 for row in sample.index for i in row)
    finally:
        with torch.no_grad():
            for p, s in zip(net.ratios("student"), saved):
                p.copy_(s)


def test_every_width_mode_runs(net):
    # The student's last-layer outputs have the fixed head width whatever the mode.
    x = torch.randn(2, 3, 64, 64)
    for mode in WidthMode:
        outs = net(x, "student", mode)
        assert outs[0].shape == (2, 5, 8, 8)


def test_arch_parameter_shapes_follow_the_method():
    net = SuperNet(SpaceConfig(layers=16, fch=2))
    P, K = 5, 5
    shapes = {k: tuple(p.shape) for k, p in net.arch.items()}
    for role in ("teacher", "student"):
        assert shapes[f"{role}_alpha_0"] == (16, P)
        assert shapes[f"{role}_alpha_1"] == (15, P)
        assert shapes[f"{role}_alpha_2"] == (14, P)
        assert shapes[f"{role}_beta_1"] == (14, 2)
        assert shapes[f"{role}_beta_2"] == (13, 2)
    assert shapes["student_ratio_0"] == (15, K)
    assert shapes["student_ratio_1"] == (15, K)
    assert shapes["student_ratio_2"] == (14, K)
    assert all(torch.allclose(p, torch.full_like(p, 1e-3)) for p in net.arch.values())


def test_weight_and_arch_parameters_partition(net):
    arch = {id(p) for r in Role for p in net.arch_parameters(r)}
    weights = {id(p) for p in net.weight_parameters()}
    assert not arch & weights
    assert arch | weights == {id(p) for p in net.parameters()}


def test_paper_supernet_size():
    # The reference supernet holds 251.8M parameters (method section 9, issue 60).
    net = SuperNet(SpaceConfig())
    n = sum(p.numel() for p in net.parameters())
    assert abs(n / 251.8e6 - 1) < 0.005


def test_stems_follow_role_widths():
    net = SuperNet(SpaceConfig(layers=6))
    t, s = net.roles["teacher"].stem, net.roles["student"].stem
    assert (t.conv.conv.out_channels, t.down1.conv1.conv.out_channels, t.out_channels) == (
        48,
        96,
        96,
    )
    assert (s.conv.conv.out_channels, s.down1.conv1.conv.out_channels, s.out_channels) == (
        32,
        64,
        64,
    )


@pytest.mark.parametrize(
    "space, match",
    [
        (SpaceConfig(layers=4), "space.layers"),
        (SpaceConfig(ops=("conv", "cnv")), r"space.ops\[1\]: unknown operator 'cnv'"),
        (SpaceConfig(width_choices=(0.5, 1.5)), "space.width_choices"),
    ],
)
def test_bad_space_is_a_config_error(space, match):
    with pytest.raises(ConfigError, match=match):
        SuperNet(space)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("lasts", [(2, 0), (2, 1)])
def test_decoded_genotype_builds_a_network(net, role, lasts):
    torch.manual_seed(3)
    with torch.no_grad():
        for p in net.arch_parameters(role):
            p.normal_()
    geno = net.genotype(role, lasts)
    assert [b.last_scale for b in geno.branches] == list(lasts)
    assert geno.stem_width == net.role_widths[role][0]
    if role is Role.TEACHER:
        assert all("skip" not in b.ops for b in geno.branches)
        assert all(w == 1.0 for b in geno.branches for w in b.widths)
    else:
        assert all(w in net.width_choices for b in geno.branches for w in b.widths[:-1])
    from fasterseg.models import create_model

    out = create_model(geno, num_classes=5).eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 5, 64, 64)

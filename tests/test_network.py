"""Derived network: published sizes and compute, shared prefix, aggregation, aux heads."""

import hashlib
import json

import pytest
import torch

from fasterseg.cli import main
from fasterseg.errors import GenotypeError
from fasterseg.genotype import Branch, Genotype
from fasterseg.models import create_model, load_genotype
from fasterseg.profile import count_params, profile_genotype

W = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)


def test_published_student_matches_section_8_table():
    net = create_model("fasterseg-student")
    # Layers 0-2 are shared: 10 + 9 layers, 3 of them built once.
    assert len(net.layers) == 16
    assert net.branch_nodes[0][:3] == net.branch_nodes[1][:3]
    convs = {i: layer for i, layer in enumerate(net.layers)}
    a = [convs[n] for n in net.branch_nodes[0]]
    b = [convs[n] for n in net.branch_nodes[1]]

    def io(op):
        first = next(m for m in op.modules() if isinstance(m, torch.nn.Conv2d))
        last = [m for m in op.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        return first.in_channels, last.out_channels

    assert [io(op) for op in a] == [
        (64, 32), (32, 32), (32, 32), (32, 128), (128, 64),
        (64, 64), (64, 64), (64, 128), (128, 128), (128, 256),
    ]  # fmt: skip
    assert [io(op) for op in b][3:] == [
        (32, 32),
        (32, 32),
        (32, 64),
        (64, 64),
        (64, 192),
        (192, 128),
    ]
    agg_a = net.aggregate[0]
    assert (agg_a[0].reduce.conv.in_channels, agg_a[0].fuse.conv.in_channels) == (256, 192)
    assert (agg_a[1].reduce.conv.in_channels, agg_a[1].fuse.conv.in_channels) == (128, 96)
    assert net.aggregate[1][0].fuse.conv.in_channels == 96
    assert net.ffm.conv.in_channels == 128 and net.head.conv.conv.out_channels == 128


@pytest.mark.parametrize(
    "name, params, params_aux, macs",
    [
        # method section 1.6.11 / 7: deploy params 3.422M, 4.386M - 0.033M unused attention,
        # thop 0.1.1 MACs 28.03G; teacher 22.115M, 23.52M - 0.074M, 108.23G.
        ("fasterseg-student", 3.422e6, 4.353e6, 28.03e9),
        ("fasterseg-teacher", 22.115e6, 23.446e6, 108.23e9),
    ],
)
def test_published_size_and_compute(name, params, params_aux, macs):
    r = profile_genotype(load_genotype(name), height=1024, width=2048)
    assert abs(r["params"] / params - 1) < 0.002
    assert abs(r["params_with_aux"] / params_aux - 1) < 0.002
    assert abs(r["macs"] / macs - 1) < 0.002


@pytest.mark.parametrize(
    "name, aux, count, digest",
    [
        (
            "fasterseg-student",
            False,
            266,
            "851579c9b6b1ea3e91027d2e73b3b1eae145179199e8d72fe33632bb86fc0d01",
        ),
        (
            "fasterseg-student",
            True,
            282,
            "a404bc86cdfeca8503469c6b256750023905bdad0cc88f426b645d9bf2384918",
        ),
        (
            "fasterseg-teacher",
            False,
            398,
            "4f050a6306298741f33abea0e6411dc720c0919c28b2cd77c987449b78f96398",
        ),
        (
            "fasterseg-teacher",
            True,
            414,
            "0f730880576658476a7ec8eea3071ca7a1c6fbd83e9cc3cb055dcc1674fa502a",
        ),
    ],
)
def test_published_state_dict_keys_and_shapes_are_pinned(name, aux, count, digest):
    # Saved checkpoints and reference-format weights load by these keys and shapes: a renamed or
    # renumbered module must show up here, not as a failed load_state_dict in a user's run.
    state = create_model(name, aux=aux).state_dict()
    lines = sorted(f"{key}:{tuple(value.shape)}" for key, value in state.items())
    assert len(lines) == count
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == digest


def test_aux_heads_only_when_built_and_training():
    net = create_model("fasterseg-student", num_classes=7, aux=True)
    x = torch.randn(2, 3, 64, 128)
    outs = net.train()(x)
    assert isinstance(outs, tuple) and len(outs) == 3
    assert all(o.shape == (2, 7, 64, 128) for o in outs)
    assert net.aux16.conv.conv.in_channels == 64 + 128  # section 8: 64 + 128
    assert net.aux32.conv.conv.in_channels == 256
    assert net.eval()(x).shape == (2, 7, 64, 128)
    plain = create_model("fasterseg-student", num_classes=7)
    assert plain.aux16 is None and plain.aux32 is None
    assert count_params(net) > count_params(plain)


def test_output_has_input_size_for_any_size():
    net = create_model("fasterseg-student", num_classes=3).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 72, 100)).shape == (1, 3, 72, 100)


def test_nearest_resize_mode_runs_and_differs():
    torch.manual_seed(0)
    a = create_model("fasterseg-student", num_classes=3).eval()
    b = create_model("fasterseg-student", num_classes=3, resize_mode="nearest").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape and not torch.allclose(ya, yb)
    with pytest.raises(ValueError, match="resize_mode"):
        create_model("fasterseg-student", resize_mode="bicubic")


def _geno(branches, fch=4, head=1.0):
    return Genotype("t", fch, 1.0, head, W, tuple(Branch(*b) for b in branches))


def test_single_branch_and_three_branch_genotypes():
    one = _geno([(("conv", "conv_2x"), (0, 0), (0.5, 1.0))])
    net = create_model(one, num_classes=4, aux=True).train()
    out = net(torch.randn(2, 3, 32, 32))
    # A lone /8 branch has neither a /16 nor a /32 feature for auxiliary heads.
    assert net.aux16 is None and net.aux32 is None
    assert out.shape == (2, 4, 32, 32)
    three = _geno(
        [
            (("conv",) * 4, (0, 0, 1, 2), (0.5, 0.5, 0.5, 1.0)),
            (("conv",) * 3, (0, 0, 1), (0.5, 0.5, 1.0)),
            (("conv_2x",) * 2, (0, 0), (0.5, 1.0)),
        ]
    )
    net3 = create_model(three, num_classes=4, aux=True).train()
    outs = net3(torch.randn(2, 3, 64, 64))
    assert len(outs) == 3 and all(o.shape == (2, 4, 64, 64) for o in outs)
    # Branches 0 and 1 agree on layers 0-1 (op, scales, widths); branch 1's layer 2 is its last
    # and never shared; branch 2 starts with another op.
    assert net3.branch_nodes[0][:2] == net3.branch_nodes[1][:2]
    assert net3.branch_nodes[0][2] != net3.branch_nodes[1][2]
    assert not set(net3.branch_nodes[2]) & set(net3.branch_nodes[0])
    assert len(net3.layers) == 4 + 1 + 2


def test_branch_down_at_first_layer_uses_stem_feature():
    g = _geno([(("conv", "conv"), (0, 1), (0.5, 1.0))])
    net = create_model(g, num_classes=2)
    assert net.aggregate[0][0].fuse.conv.in_channels == 32 + net.stem.out_channels
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)


def test_invalid_genotype_refused():
    bad = _geno([(("conv", "conv_9x9"), (0, 0), (0.5, 1.0))])
    with pytest.raises(GenotypeError, match=r"ops\[1\]: unknown operator 'conv_9x9'"):
        create_model(bad)


def test_profile_cli_json(capsys):
    assert (
        main(["profile", "fasterseg-student", "--height", "256", "--width", "512", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert {"name", "height", "width", "params", "params_with_aux", "macs"} <= set(out)
    assert out["name"] == "fasterseg-student" and out["height"] == 256
    assert abs(out["macs"] / (28.03e9 / 16) - 1) < 0.01


@pytest.mark.parametrize(
    "argv, message",
    [
        (["profile", "missing.json"], "missing.json: no such genotype file"),
        (
            ["profile", "fasterseg-student", "--height", "100"],
            "--height must be a multiple of 32 (the network's output stride), got 100",
        ),
    ],
)
def test_profile_cli_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err

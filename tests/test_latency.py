"""Latency lookup table: kernel keys, timers, table file, builder, estimates."""

import json
import random
import warnings

import pytest
import torch
from conftest import fake_timer

from fasterseg.config import LatencyConfig, SpaceConfig
from fasterseg.errors import ConfigError, UserError
from fasterseg.genotype import Branch, Genotype, nf
from fasterseg.latency import (
    Calibration,
    LatencyTable,
    LatencyTableError,
    Measurement,
    OpSpec,
    build_table,
    device_fingerprint,
    expected_latency,
    genotype_kernels,
    genotype_latency,
    latency_loss,
    measure_module,
    measure_network,
    space_kernels,
)
from fasterseg.latency import build as build_mod
from fasterseg.latency.enumerate import random_genotype
from fasterseg.latency.spec import build_module, example_input
from fasterseg.models import Network, load_genotype
from fasterseg.models.network import plan_layers
from fasterseg.nn.ops import OPS
from fasterseg.profile import count_params
from fasterseg.space import Role, SuperNet, WidthMode

H, W = 64, 128
TINY = SpaceConfig(layers=6, fch=4)
FAST = 0.005


def settings(out, **kwargs) -> LatencyConfig:
    """A latency section for a table at ``out`` at the tests' resolution."""
    return LatencyConfig(table=str(out), **{"height": H, "width": W, "check_networks": 0, **kwargs})


FP = {
    "cpu": "test cpu",
    "cores": 2,
    "threads": 1,
    "torch": "2.x",
    "backend": "torch",
    "backend_version": "2.x",
    "device": "cpu",
    "dtype": "float32",
    "height": H,
    "width": W,
    "statistic": "median",
}


def fake_table(specs, ms=None):
    """A table with a made-up, distinct latency per key (or ``ms(spec)``)."""
    table = LatencyTable(FP)
    for i, spec in enumerate(dict.fromkeys(specs)):
        value = ms(spec) if ms is not None else 0.5 + 0.01 * i
        table.add(spec, Measurement(value, 0.0, 1))
    return table


def shared_genotype():
    """Two branches sharing their first two layers (unique shapes: layer 0 reads the stem)."""
    w = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)
    a = Branch(
        ("conv", "conv_2x", "conv_downup", "conv_2x", "conv", "conv_2x_downup"),
        (0, 0, 1, 1, 2, 2),
        (w[0], w[1], w[2], w[0], w[1], 8 / 12),
    )
    b = Branch(
        ("conv", "conv_2x", "conv", "conv_2x", "conv_downup", "conv"),
        (0, 0, 1, 1, 1, 1),
        (w[0], w[1], w[4], w[3], w[2], 8 / 12),
    )
    return Genotype("shared", 4, 8 / 12, 8 / 12, w, (a, b)).validate(OPS.keys())


# ---------------------------------------------------------------- keys and modules
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_operator_builds_from_its_spec(name, stride):
    spec = OpSpec(name, 8, 16, 8, 16, stride)
    out = build_module(spec)(*example_input(spec))
    assert out.shape == (1, 16, 8 // stride, 16 // stride)
    assert OpSpec.from_key(spec.key()) == spec


def test_block_specs_build_and_key_round_trip():
    specs = [
        OpSpec("stem", 3, 16, 64, 128, c_mid=(8, 16)),
        OpSpec("fusion", 32, 16, 4, 8, c_fine=12, resize_mode="nearest"),
        OpSpec("concat", 16, 32, 8, 16),
        OpSpec("ffm", 32, 32, 8, 16),
        OpSpec("head", 32, 19, 8, 16),
    ]
    shapes = [(1, 16, 8, 16), (1, 16, 8, 16), (1, 32, 8, 16), (1, 32, 8, 16), (1, 19, 64, 128)]
    for spec, shape in zip(specs, shapes):
        assert OpSpec.from_key(spec.key()) == spec
        assert OpSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
        assert build_module(spec)(*example_input(spec)).shape == shape
    assert specs[0].key() == (
        "stem|c_in=3|c_out=16|h=64|w=128|stride=1|dtype=float32|resize=bilinear|c_mid=8x16"
    )
    assert len({*specs, *specs}) == 5  # hashable, equal specs collapse


@pytest.mark.parametrize(
    "key",
    ["conv|c_in=8", "conv|c_in=8|c_out=8|h=8|w=8|stride=3|dtype=float32|resize=bilinear", "x|y"],
)
def test_malformed_key_is_rejected(key):
    with pytest.raises(ValueError, match="malformed latency key"):
        OpSpec.from_key(key)


@pytest.mark.parametrize("name", ["fasterseg-student", "shared"])
def test_genotype_kernels_are_exactly_the_network_modules(name):
    geno = shared_genotype() if name == "shared" else load_genotype(name)
    specs = genotype_kernels(geno, 256, 512)
    net = Network(geno)
    # Every parameter of the deployable network belongs to exactly one kernel.
    assert sum(count_params(build_module(s)) for s in specs) == count_params(net)
    assert len(specs) == 1 + len(net.layers) + sum(len(a) for a in net.aggregate) + 3


def test_shared_layers_are_counted_once():
    geno = shared_genotype()
    specs = genotype_kernels(geno, H, W)
    net = Network(geno)
    assert net.branch_nodes[0][:2] == net.branch_nodes[1][:2]
    assert len(net.layers) == 6 + 6 - 2
    first = specs[1]
    assert (first.kind, first.c_in) == ("conv", nf(8, 8 / 12, 4)) and specs.count(first) == 1
    table = fake_table(specs, lambda s: 1000.0 if s == first else 1.0)
    assert genotype_latency(geno, table, height=H, width=W) == 1000.0 + (len(specs) - 1)


def test_genotype_latency_is_the_sum_of_its_kernel_entries():
    geno = load_genotype("fasterseg-student")
    specs = genotype_kernels(geno, 256, 512)
    table = fake_table(specs)
    expected = sum(table.lookup(s) for s in specs)
    assert genotype_latency(geno, table, height=256, width=512) == pytest.approx(expected)
    with pytest.raises(LatencyTableError, match="no calibration"):
        genotype_latency(geno, table, height=256, width=512, calibrated=True)
    table.calibration = Calibration(scale=2.0, offset_ms=1.5, fitted_on=4)
    got = genotype_latency(geno, table, height=256, width=512, calibrated=True)
    assert got == pytest.approx(2 * expected + 1.5)


def test_space_kernels_cover_random_genotypes_of_both_roles():
    space = SpaceConfig(layers=8, fch=4)
    kernels = set(space_kernels(space, H, W))
    assert len(kernels) == len(space_kernels(space, H, W))
    rng = random.Random(0)
    for i in range(20):
        role = "teacher" if i % 2 else "student"
        geno = random_genotype(space, rng, role=role, lasts=(2, i % 2))
        assert set(genotype_kernels(geno, H, W, space.num_classes)) <= kernels
    student = load_genotype("fasterseg-student")
    assert set(genotype_kernels(student, 512, 1024)) <= set(space_kernels(SpaceConfig(), 512, 1024))
    nearest = genotype_kernels(student, 512, 1024, resize_mode="nearest")
    assert {s.resize_mode for s in nearest} == {"nearest"}
    assert set(nearest) <= set(space_kernels(SpaceConfig(), 512, 1024, "nearest"))


def test_random_genotypes_share_prefixes_and_vary():
    rng = random.Random(1)
    genos = [random_genotype(SpaceConfig(), rng, lasts=(2, rng.choice((0, 1)))) for _ in range(30)]
    plans = [plan_layers(g).branch_nodes for g in genos]
    shared = sum(nodes[0][0] == nodes[1][0] for nodes in plans)
    assert 0 < shared < 30
    ops = {op for g in genos for b in g.branches for op in b.ops}
    assert ops == {"conv", "conv_downup", "conv_2x", "conv_2x_downup"}


@pytest.mark.parametrize(
    "size, match",
    [((100, 128), "height must be a multiple of 32"), ((64, 0), "width must be a positive"),
     ((32, 64), "height must be at least 64")],
)  # fmt: skip
def test_resolution_must_be_a_side_the_networks_take(size, match):
    with pytest.raises(ConfigError, match=match):
        space_kernels(TINY, *size)


# ---------------------------------------------------------------- table file
def test_table_round_trips_through_json(tmp_path):
    table = fake_table(space_kernels(TINY, H, W)[:20])
    table.calibration = Calibration(1.1, 0.25, 30)
    path = table.save(tmp_path / "lut.json")
    data = json.loads(path.read_text())
    assert data["format"] == "fasterseg-latency-table" and data["version"] == 1
    loaded = LatencyTable.load(path, expect_fingerprint=FP)
    assert loaded.entries == table.entries and loaded.fingerprint == FP
    assert loaded.calibration == table.calibration
    assert loaded.to_dict() == table.to_dict()


def test_fingerprint_mismatch_names_both_or_warns(tmp_path):
    path = fake_table([OpSpec("conv", 4, 4, 8, 8)]).save(tmp_path / "lut.json")
    other = {**FP, "threads": 2, "height": 128}
    with pytest.raises(LatencyTableError) as err:
        LatencyTable.load(path, expect_fingerprint=other)
    msg = str(err.value)
    assert "threads: 1 vs 2" in msg and "height: 64 vs 128" in msg and str(path) in msg
    assert isinstance(err.value, UserError)
    with pytest.warns(UserWarning, match="threads: 1 vs 2"):
        table = LatencyTable.load(path, expect_fingerprint=other, allow_mismatch=True)
    assert len(table) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LatencyTable.load(path, expect_fingerprint={**FP, "platform": "other"})


def test_missing_key_names_the_key_and_the_command(tmp_path):
    path = fake_table([OpSpec("conv", 4, 4, 8, 8)]).save(tmp_path / "lut.json")
    table = LatencyTable.load(path)
    spec = OpSpec("conv_2x", 4, 8, 8, 8, 2)
    with pytest.raises(KeyError) as err:
        table.lookup(spec)
    msg = str(err.value)
    assert spec.key() in msg
    assert f"fasterseg lut build --out {path} --height {H} --width {W}" in msg


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.update(format="other"), "'format'"),
        (lambda d: d["fingerprint"].pop("cpu"), "missing field 'cpu'"),
        (lambda d: d["entries"].update({"bogus": {"ms": 1, "std": 0, "n": 1}}), "'bogus'"),
        (lambda d: next(iter(d["entries"].values())).update(ms=-1), ".ms"),
        (lambda d: next(iter(d["entries"].values())).update(n=0), ".n"),
        (lambda d: d.update(calibration={"scale": 1}), "calibration"),
    ],
)
def test_malformed_table_names_file_and_field(tmp_path, edit, field):
    data = fake_table([OpSpec("conv", 4, 4, 8, 8)]).to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError) as err:
        LatencyTable.load(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_merge_and_summary():
    a = fake_table([OpSpec("conv", 4, 4, 8, 8)], lambda s: 2.0)
    b = fake_table([OpSpec("conv", 4, 4, 8, 8), OpSpec("ffm", 8, 8, 8, 8)], lambda s: 3.0)
    assert len(a.merge(b)) == 2 and a.lookup(OpSpec("conv", 4, 4, 8, 8)) == 3.0
    with pytest.raises(LatencyTableError, match="threads"):
        a.merge(LatencyTable({**FP, "threads": 4}))
    text = a.summary()
    assert "entries: 2" in text and "conv: 1" in text and "ffm: 1" in text
    assert "total: 6.000 ms" in text and "test cpu" in text


def test_device_fingerprint_records_this_machine():
    fp = device_fingerprint("torch", "cpu", 1, H, W)
    assert fp["threads"] == 1 and fp["backend"] == "torch" and fp["device"] == "cpu"
    assert fp["torch"] == torch.__version__ and (fp["height"], fp["width"]) == (H, W)
    assert fp["cores"] >= 1 and fp["cpu"]
    with pytest.raises(ConfigError, match="backend"):
        device_fingerprint("tensorrt", "cpu", 1, H, W)


# ---------------------------------------------------------------- measurement
def test_measure_tiny_conv_on_cpu_restores_threads():
    before = torch.get_num_threads()
    spec = OpSpec("conv", 4, 8, 16, 16)
    module = build_module(spec).train()
    m = measure_module(module, example_input(spec), threads=1, min_time=FAST)
    assert m.ms > 0 and m.n >= 1 and m.std >= 0
    assert torch.get_num_threads() == before and module.training


def test_measure_network_end_to_end():
    net = Network(shared_genotype())
    m = measure_network(net, H, W, threads=1, min_time=FAST, min_runs=1)
    assert m.ms > 0 and m.n >= 1


@pytest.mark.parametrize(
    "spec", [OpSpec("conv_2x_downup", 4, 8, 16, 16), OpSpec("fusion", 8, 4, 4, 8, c_fine=6)]
)
def test_measure_with_onnxruntime(spec):
    pytest.importorskip("onnxruntime")
    m = measure_module(
        build_module(spec), example_input(spec), backend="onnxruntime", threads=1, min_time=FAST
    )
    assert m.ms > 0 and m.n >= 3


def test_onnxruntime_rejects_cuda():
    with pytest.raises(ConfigError, match="CPU execution provider"):
        measure_module(torch.nn.Identity(), torch.zeros(1), backend="onnxruntime", device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measure_on_cuda():
    spec = OpSpec("conv_2x", 16, 32, 32, 64)
    m = measure_module(build_module(spec), example_input(spec), device="cuda", min_time=FAST)
    assert m.ms > 0 and m.n >= 3
    fp = device_fingerprint("torch", "cuda", None, H, W)
    assert fp["device"] == torch.cuda.get_device_name(0)
    net = Network(shared_genotype())
    assert measure_network(net, H, W, device="cuda", min_time=FAST).ms > 0


# ---------------------------------------------------------------- builder
def test_build_table_resumes_measuring_only_missing(tmp_path, monkeypatch):
    calls = []

    def fake_measure(module, inputs, **kwargs):
        calls.append(type(module).__name__)
        return Measurement(1.0 + len(calls), 0.1, 5)

    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(fake_measure))
    specs = space_kernels(TINY, H, W)[:12]
    extra = [OpSpec("conv", 4, 4, 8, 8)]
    out = tmp_path / "lut.json"
    # measurements that grow call by call invert siblings: no re-check, to count calls exactly
    table = build_table(
        settings(out, threads=1), specs=specs, extra_specs=extra, recheck=False, progress=False
    )
    assert len(calls) == 13 and len(table) == 13
    data = json.loads(out.read_text())
    removed = sorted(data["entries"])[:4]
    for key in removed:
        del data["entries"][key]
    out.write_text(json.dumps(data))
    calls.clear()
    table = build_table(
        settings(out, threads=1), specs=specs, extra_specs=extra, recheck=False, progress=False
    )
    assert len(calls) == 4 and len(table) == 13
    assert set(LatencyTable.load(out).entries) == {s.key() for s in [*specs, *extra]}
    with pytest.raises(LatencyTableError, match="threads: 1 vs 2"):
        build_table(settings(out, threads=2), specs=specs, progress=False)
    with pytest.raises(ConfigError, match="100"):
        build_table(settings(out, height=100), specs=specs, progress=False)
    with pytest.raises(LatencyTableError, match="statistic: 'min' vs 'median'"):
        build_table(settings(out, threads=1, statistic="median"), specs=specs, progress=False)


def _priced(table, prices):
    for spec, ms in prices.items():
        table.add(spec, Measurement(ms, 0.0, 1))
    return table


def test_inverted_siblings_compare_only_strictly_larger_kernels_of_one_kind():
    conv = lambda c_in, c_out, h=8: OpSpec("conv", c_in, c_out, h, h)  # noqa: E731
    skip = lambda c_in, c_out: OpSpec("skip", c_in, c_out, 8, 8)  # noqa: E731
    prices = {
        conv(4, 4): 2.0,  # slower than conv(4, 8) and conv(8, 8) by more than 10%
        conv(4, 8): 1.0,
        conv(8, 4): 2.15,  # 7.5% slower than conv(8, 8)
        conv(8, 8): 2.0,
        conv(4, 4, h=16): 0.5,  # another size: no sibling of the h=8 kernels
        skip(4, 4): 5.0,  # skips are not compared (identity vs projection)
        skip(4, 8): 1.0,
    }
    table = _priced(LatencyTable({"device": "test"}), prices)

    def found(tolerance):
        pairs = build_mod.inverted_siblings(table, list(prices), tolerance)
        return sorted((small.key(), large.key()) for small, large in pairs)

    assert found(0.1) == [(conv(4, 4).key(), conv(4, 8).key())]
    # 2.15 / 2.0 = 1.075: inverted at a 5% tolerance; equal times never are
    assert found(0.05) == sorted(
        [(conv(4, 4).key(), conv(4, 8).key()), (conv(8, 4).key(), conv(8, 8).key())]
    )


def test_build_table_re_measures_a_kernel_slower_than_a_larger_sibling(tmp_path, monkeypatch):
    """The first measurement of conv 4->4 is disturbed (3 ms, against 1 ms for the larger
    conv 4->8): the build measures it once more and keeps the faster second value; an
    undisturbed kernel is measured once."""
    small, large = OpSpec("conv", 4, 4, 8, 8), OpSpec("conv", 4, 8, 8, 8)
    calls = []
    values = {small.key(): [3.0, 0.5], large.key(): [1.0]}

    def fake_measure(module, inputs, **kwargs):
        with torch.no_grad():
            args = inputs if isinstance(inputs, tuple) else (inputs,)
            c_out = module.eval()(*args).shape[1]
        key = small.key() if c_out == 4 else large.key()
        calls.append(key)
        return Measurement(values[key].pop(0), 0.0, 1)

    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(fake_measure))
    out = tmp_path / "lut.json"
    table = build_table(settings(out, threads=1), specs=[small, large], progress=False)
    assert calls == [small.key(), large.key(), small.key()]
    assert table.get(small).ms == 0.5 and table.get(large).ms == 1.0
    assert LatencyTable.load(out).get(small).ms == 0.5  # the saved table has it too


def test_lut_build_cli_records_the_statistic(tmp_path, monkeypatch):
    from fasterseg.cli import main

    seen = set()

    def fake_measure(module, inputs, **kwargs):
        seen.add(kwargs.get("statistic"))
        return Measurement(1.0, 0.1, 5)

    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(fake_measure))
    cfg = tmp_path / "space.yaml"
    cfg.write_text("space: {layers: 4, fch: 4}\n")
    out = tmp_path / "lut.json"
    argv = ["lut", "build", "--out", str(out), "--height", "64", "--width", "128",
            "--config", str(cfg), "--threads", "1", "--statistic", "min"]  # fmt: skip
    assert main(argv) == 0
    assert seen == {"min"} and LatencyTable.load(out).fingerprint["statistic"] == "min"


def test_build_table_measures_real_kernels(tmp_path):
    specs = [OpSpec("conv", 4, 4, 8, 16), OpSpec("ffm", 8, 8, 8, 16)]
    table = build_table(
        settings(tmp_path / "lut.json", threads=1, min_time=FAST), specs=specs, progress=False
    )
    assert all(table.get(s).ms > 0 and table.get(s).n >= 3 for s in specs)
    assert table.fingerprint["threads"] == 1 and table.fingerprint["height"] == H


# ---------------------------------------------------------------- supernet estimate
@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return SuperNet(TINY)


@pytest.fixture(scope="module")
def flops_table():
    """Fake latencies growing with the work of each kernel."""

    def ms(spec):
        work = spec.c_in * spec.c_out * spec.h * spec.w / spec.stride**2
        return 1e-4 * work * (2 if "2x" in spec.kind else 1) + 0.01

    return fake_table(space_kernels(TINY, H, W), ms)


def test_expected_latency_is_differentiable(supernet, flops_table):
    widths = supernet.sample_widths(Role.STUDENT, WidthMode.SAMPLED)
    params = supernet.arch_parameters(Role.STUDENT)
    for p in params:
        p.grad = None
    lat = latency_loss(supernet, Role.STUDENT, widths, flops_table, height=H, width=W)
    assert lat.ndim == 0 and lat.item() > 0
    lat.backward()
    for name in ("alpha_0", "alpha_2", "beta_1", "beta_2", "ratio_0", "ratio_1", "ratio_2"):
        grad = supernet.arch[f"student_{name}"].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_raising_the_alpha_of_a_slower_op_raises_latency(supernet):
    table = fake_table(space_kernels(TINY, H, W), lambda s: 100.0 if s.kind == "conv_2x" else 1.0)
    widths = supernet.sample_widths(Role.TEACHER)
    k = supernet.op_names.index("conv_2x")
    alpha = supernet.arch["teacher_alpha_1"]
    for quirks in (False, True):
        before = expected_latency(
            supernet, "teacher", widths, table, height=H, width=W, reference_quirks=quirks
        )
        with torch.no_grad():
            alpha[2, k] += 3.0
        after = expected_latency(
            supernet, "teacher", widths, table, height=H, width=W, reference_quirks=quirks
        )
        with torch.no_grad():
            alpha[2, k] -= 3.0
        assert after.item() > before.item() + 10


def test_paper_formula_and_reference_quirks_on_a_constant_table(supernet):
    c, stem = 2.0, 5.0
    table = fake_table(space_kernels(TINY, H, W), lambda s: stem if s.kind == "stem" else c)
    widths = supernet.sample_widths(Role.STUDENT, WidthMode.MAX)
    L = TINY.layers

    def lat(**kw):
        return expected_latency(supernet, "student", widths, table, height=H, width=W, **kw)

    # Every path from the stem through L layers costs stem + L*c, at each of the 3 scales.
    assert lat().item() == pytest.approx(3 * (stem + L * c))
    assert lat(alpha_mode="uniform", beta_mode="uniform").item() == pytest.approx(
        3 * (stem + L * c)
    )
    # In-place updates add the same layer's keep latency onto the down paths: larger.
    assert lat(reference_quirks=True).item() > lat().item() + c


def test_reference_quirks_charge_conv_2x_for_zoomed_2x_and_reuse_the_32_betas(supernet):
    table = fake_table(space_kernels(TINY, H, W), lambda s: 50.0 if s.kind == "conv_2x" else 1.0)
    widths = supernet.sample_widths(Role.STUDENT, WidthMode.MAX)
    k = supernet.op_names.index("conv_2x_downup")
    with torch.no_grad():
        supernet.arch["student_alpha_0"][:, k] += 5.0
    try:
        for p in supernet.arch_parameters("student"):
            p.grad = None
        paper = expected_latency(supernet, "student", widths, table, height=H, width=W)
        quirk = expected_latency(
            supernet, "student", widths, table, height=H, width=W, reference_quirks=True
        )
        assert quirk.item() > paper.item() + 50
        quirk.backward()
        # The reference accumulates every scale with the /32 betas: /16 betas get no gradient.
        assert supernet.arch["student_beta_1"].grad is None
        assert supernet.arch["student_beta_2"].grad.abs().sum() > 0
        paper = expected_latency(supernet, "student", widths, table, height=H, width=W)
        paper.backward()
        assert supernet.arch["student_beta_1"].grad.abs().sum() > 0
    finally:
        with torch.no_grad():
            supernet.arch["student_alpha_0"][:, k] -= 5.0


def test_latency_loss_weights(supernet, flops_table):
    widths = supernet.sample_widths(Role.STUDENT, WidthMode.MIN)
    widest = supernet.sample_widths(Role.STUDENT, WidthMode.MAX)

    def part(a, b, w):
        return expected_latency(
            supernet, "student", w, flops_table, height=H, width=W, alpha_mode=a, beta_mode=b
        ).item()

    loss = latency_loss(supernet, "student", widths, flops_table, height=H, width=W).item()
    expected = (
        part("free", "uniform", widest) / 500
        + part("uniform", "free", widest) * 497 / 500
        + part("uniform", "uniform", widths) * 2 / 500
    )
    assert loss == pytest.approx(expected, rel=1e-6)
    assert part("uniform", "uniform", widths) < part("uniform", "uniform", widest)


def test_expected_latency_missing_entry_is_a_key_error(supernet):
    with pytest.raises(KeyError, match="fasterseg lut build"):
        expected_latency(
            supernet, "student", supernet.sample_widths("student"), LatencyTable(FP),
            height=H, width=W,
        )  # fmt: skip


def test_profile_cli_predicts_calibrates_and_measures(tmp_path, monkeypatch, capsys):
    from fasterseg.cli import main

    geno = load_genotype("fasterseg-student")
    specs = genotype_kernels(geno, H, W)
    monkeypatch.setattr(
        build_mod,
        "time_interleaved",
        fake_timer(lambda module, inputs, **kw: Measurement(0.5, 0.01, 5)),
    )
    out = tmp_path / "lut.json"
    table = build_table(settings(out, threads=1), specs=specs, progress=False)
    table.calibration = Calibration(scale=1.5, offset_ms=2.0, fitted_on=30)
    table.save(out)
    argv = ["profile", "fasterseg-student", "--lut", str(out), "--height", str(H),
            "--width", str(W), "--measure", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["latency_ms_predicted_sum"] == pytest.approx(0.5 * len(specs))
    assert result["latency_ms_predicted"] == pytest.approx(1.5 * 0.5 * len(specs) + 2)
    assert "calibrated on 30 networks" in result["latency_predicted_with"]
    assert result["latency_ms_measured"] > 0

"""The collaborative search on tiny synthetic data with a synthetic latency table (CPU)."""

import json
import math
from dataclasses import replace

import pytest
import torch

from fasterseg.config import config_from_dict
from fasterseg.data.synth import generate_dataset
from fasterseg.engine.search import objective, search, search_table, split_indices
from fasterseg.errors import ConfigError
from fasterseg.genotype import Genotype
from fasterseg.latency import (
    LatencyTable,
    LatencyTableError,
    Measurement,
    device_fingerprint,
    genotype_latency,
    space_kernels,
)
from fasterseg.models import create_model

H, W = 64, 128
# A made-up device on which every kernel costs its MACs, with the full-resolution double conv
# four times dearer than its zoomed twin: deterministic, so a test can tell fast from slow.
KIND_COST = {"conv": 1.0, "conv_2x": 2.0, "conv_downup": 0.25, "conv_2x_downup": 0.5, "skip": 0.1}


def fake_table(space):
    table = LatencyTable({"device": "synthetic", "height": H, "width": W, "dtype": "float32"})
    for spec in space_kernels(space, H, W):
        cost = KIND_COST.get(spec.kind, 1.0) * spec.c_in * spec.c_out * spec.h * spec.w
        table.add(spec, Measurement(ms=cost / 1e5 + 0.01, std=0.0, n=1))
    return table


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, train=6, val=2, size=(H, W), seed=2)
    return root


def _cfg(data, sections=None, **search):
    """A tiny search config; ``search`` keys go to the search section, ``sections`` holds
    other sections (``{"arch": {"lr": 0.05}}``)."""
    s = {
        "pretrain_epochs": 0,
        "epochs": 1,
        "iters_per_epoch": 2,
        "crop": [H, W],
        "pretrain_crop": [H, W],
        "batch_size": 2,
        "pretrain_batch_size": 2,
        **search,
    }
    other = sections or {}
    return config_from_dict(
        {
            "data": {"root": str(data), "label_stride": 8, "workers": 0, "scales": [1.0]},
            "space": {"layers": 6, "fch": 4},
            "latency": {"height": H, "width": W},
            "search": s,
            **other,
            "runtime": {"device": "cpu", **other.get("runtime", {})},
        }
    )


def test_split_is_seeded_and_disjoint():
    a, b = split_indices(10, 0.5, 3)
    assert sorted(a + b) == list(range(10)) and len(a) == 5
    assert split_indices(10, 0.5, 3) == (a, b) and split_indices(10, 0.5, 4) != (a, b)


def test_objective_is_the_reference_formula():
    assert objective(0.7, 8.3, 8.3, -0.07) == pytest.approx(0.7)
    assert objective(0.7, 16.6, 8.3, -0.07) == pytest.approx(0.7 * 2**-0.07)


def test_search_writes_outputs_and_valid_architectures(data, tmp_path):
    cfg = _cfg(data, pretrain_epochs=1, epochs=1)
    table = fake_table(cfg.space)
    result = search(cfg, tmp_path, table, progress=False)
    assert [r["phase"] for r in result["epochs"]] == ["pretrain", "search"]
    for name in ("config.yaml", "history.json", "checkpoint.pt", "arch_teacher.json",
                 "arch_student.json", "arch_student_last.json",
                 "arch_student_best.json"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    assert any((tmp_path / "tb").iterdir())
    history = json.loads((tmp_path / "history.json").read_text())
    row = history["epochs"][-1]
    for key in ("loss_weight", "loss_arch_teacher", "loss_arch_student", "lambda"):
        assert key in row
    for role in ("teacher", "student"):
        assert set(row[role]["miou"]) == {"8s", "16s", "32s", "8s_32s", "16s_32s"}
        assert row[role]["entropy_alpha"] > 0 and row[role]["entropy_beta"] > 0
    teacher = Genotype.load(tmp_path / "arch_teacher.json")
    student = Genotype.load(tmp_path / "arch_student.json")
    assert all("skip" not in b.ops for b in teacher.branches)
    assert all(w in cfg.space.width_choices for b in student.branches for w in b.widths[:-1])
    assert student.meta["latency_ms"] == pytest.approx(
        genotype_latency(student, table, height=H, width=W)
    )
    for g in (teacher, student):
        assert create_model(g).eval()(torch.randn(1, 3, H, W)).shape == (1, 19, H, W)
    torch.load(tmp_path / "checkpoint.pt", weights_only=True)


def test_resumed_search_matches_uninterrupted(data, tmp_path):
    full = _cfg(data, pretrain_epochs=1, epochs=2)
    table = fake_table(full.space)
    search(full, tmp_path / "full", table, progress=False)
    # "Killed" after the first two epochs, then the same command again.
    search(_cfg(data, pretrain_epochs=1, epochs=1), tmp_path / "part", table, progress=False)
    search(full, tmp_path / "part", table, progress=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["model"]
    arch = [k for k in a if k.startswith("arch.")]
    assert arch and all(torch.equal(a[k], b[k]) for k in arch)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_channels_last_search_matches_the_default_layout(data, tmp_path):
    cfg = _cfg(data, iters_per_epoch=1)
    nhwc = _cfg(data, {"runtime": {"channels_last": True}}, iters_per_epoch=1)
    table = fake_table(cfg.space)
    search(cfg, tmp_path / "nchw", table, progress=False)
    search(nhwc, tmp_path / "nhwc", table, progress=False)
    a, b = (torch.load(tmp_path / n / "checkpoint.pt", weights_only=True) for n in ("nchw", "nhwc"))
    for key, value in a["model"].items():
        if key.startswith("arch."):
            torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-5)
    assert a["history"][-1]["loss_weight"] == pytest.approx(b["history"][-1]["loss_weight"], 1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_search_with_amp_on_cuda(data, tmp_path):
    cfg = _cfg(data, {"runtime": {"device": "cuda", "amp": True}}, pretrain_epochs=1)
    result = search(cfg, tmp_path, fake_table(cfg.space), progress=False)
    row = result["epochs"][-1]
    assert all(math.isfinite(row[k]) for k in ("loss_weight", "loss_arch_student"))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["scalers"]["weight"]["scale"] > 0
    Genotype.load(tmp_path / "arch_student.json")


def test_allow_mismatch_searches_with_a_complete_foreign_table(data, tmp_path, caplog):
    path = tmp_path / "foreign.json"
    cfg = _cfg(data, {"latency": {"height": H, "width": W, "table": str(path)}})
    # "measured" on another machine: a complete fingerprint that is not this machine's
    fp = {**device_fingerprint("torch", "cpu", 1, H, W), "cpu": "another", "device": "synthetic"}
    table = LatencyTable(fp, fake_table(cfg.space).entries)
    table.save(path)
    with pytest.raises(LatencyTableError, match=r"fingerprint|device"):
        search_table(cfg, progress=False)  # this machine's table would differ: refused
    allowed = replace(cfg, latency=replace(cfg.latency, allow_mismatch=True))
    with caplog.at_level("WARNING", logger="fasterseg.engine.search"):
        got = search_table(allowed, progress=False)
    assert set(got.entries) == set(table.entries)  # used as it is, nothing measured
    assert "measured on synthetic" in caplog.text and "allow_mismatch" in caplog.text
    partial = LatencyTable(table.fingerprint)
    for key in list(table.entries)[:-3]:
        partial.entries[key] = table.entries[key]
    partial.save(path)
    with pytest.raises(ConfigError, match="lacks 3 kernels of this space"):
        search_table(allowed, progress=False)

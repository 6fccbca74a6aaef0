"""ONNX export of a trained checkpoint, verified with ONNX Runtime (tiny network, CPU)."""

import sys

import numpy as np
import pytest
import torch

import fasterseg.export as export_module
from fasterseg.config import config_from_dict
from fasterseg.data.synth import generate_dataset
from fasterseg.engine.checkpoint import CheckpointError
from fasterseg.engine.train import load_trained_model, train
from fasterseg.errors import ConfigError, UserError
from fasterseg.export import ExportError, compare_logits, export_onnx, format_export_result
from fasterseg.genotype import Branch, Genotype
from fasterseg.latency import measure_module

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TINY = Genotype(
    "tiny",
    4,
    1.0,
    1.0,
    (0.5, 1.0),
    (
        Branch(("conv", "conv_2x", "conv", "conv"), (0, 0, 1, 2), (1.0, 1.0, 1.0, 1.0)),
        Branch(("conv", "conv_2x", "conv_2x"), (0, 0, 0), (1.0, 0.5, 1.0)),
    ),
)
H, W = 64, 128
# Timing is not under test here: a short budget keeps the file fast.
FAST = {"threads": 1, "min_time": 0.02}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of TINY after one epoch of two iterations on synthetic scenes."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, train=4, val=1, size=(H, W), seed=0)
    cfg = config_from_dict(
        {
            "data": {"root": str(root), "crop": [H, W], "scales": [1.0], "batch_size": 2,
                     "workers": 0},
            "train": {"epochs": 1, "iters_per_epoch": 2, "lr": 0.05, "ohem_min_kept": 512,
                      "eval_every": 1},
            "runtime": {"device": "cpu"},
        }
    )  # fmt: skip
    run = tmp_path_factory.mktemp("run")
    train(cfg, TINY, run, progress=False)
    return run / "last.pt"


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_export_verifies_and_measures(checkpoint, tmp_path):
    out = tmp_path / "model.onnx"
    result = export_onnx(checkpoint, out, height=H, width=W, **FAST)
    assert out.is_file() and out.stat().st_size > 1000
    assert result["onnx"] == str(out)
    assert (result["height"], result["width"], result["dynamic"]) == (H, W, False)
    assert (result["opset"], result["threads"]) == (17, 1)
    assert (result["num_classes"], result["architecture"]) == (19, "tiny")
    assert result["verified_shapes"] == [[1, 3, H, W]]
    assert 0 <= result["max_abs_diff"] < 1e-3
    assert result["relative_diff"] < 1e-4
    assert result["argmax_agreement"] >= 0.999
    assert result["latency_ms_torch"] > 0 and result["latency_ms_onnxruntime"] > 0
    assert result["speedup"] == pytest.approx(
        result["latency_ms_torch"] / result["latency_ms_onnxruntime"]
    )
    text = format_export_result(result)
    assert str(out) in text and "ONNX Runtime check passed on 1x3x64x128" in text
    assert "PyTorch eager" in text and "1 thread(s)" in text
    assert _leftovers(tmp_path) == []


def test_onnx_file_matches_the_checkpoint_model(checkpoint, tmp_path):
    out = tmp_path / "model.onnx"
    result = export_onnx(checkpoint, out, height=H, width=W, measure=False, **FAST)
    assert result["latency_ms_torch"] is None and result["speedup"] is None
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, inp.type) == ("image", [1, 3, H, W], "tensor(float)")
    assert (outp.name, outp.shape) == ("logits", [1, 19, H, W])
    # The unprepared checkpoint model (batch norm not folded, another input than the check's).
    model = load_trained_model(checkpoint)
    x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        expected = model(x).numpy()
    (logits,) = session.run(None, {"image": x.numpy()})
    figures = compare_logits(expected, logits)
    assert figures["argmax_agreement"] >= 0.999
    assert figures["relative_diff"] < 1e-4


def test_dynamic_export_runs_at_two_sizes(checkpoint, tmp_path):
    out = tmp_path / "dynamic.onnx"
    result = export_onnx(checkpoint, out, height=H, width=W, dynamic=True, measure=False, **FAST)
    # half of H = 64 is below what the down-up operators take: one stride larger instead
    assert result["verified_shapes"] == [[1, 3, H, W], [2, 3, H + 32, W + 32]]
    assert result["relative_diff"] < 1e-4 and result["argmax_agreement"] >= 0.999
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    model = load_trained_model(checkpoint)
    for shape in [(1, 3, H, W), (2, 3, 96, 160)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
        with torch.inference_mode():
            expected = model(x).numpy()
        (logits,) = session.run(None, {"image": x.numpy()})
        assert logits.shape == (shape[0], 19, *shape[2:])
        assert compare_logits(expected, logits)["argmax_agreement"] >= 0.999


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (
            {"height": 100},
            r"export height must be a multiple of 32 \(the network's output "
            r"stride\), got 100 \(nearest: 96\)",
        ),
        (
            {"width": 1000},
            r"export width must be a multiple of 32 \(the network's output "
            r"stride\), got 1000 \(nearest: 992\)",
        ),
        ({"height": 0}, r"export height must be a positive integer, got 0"),
        ({"opset": 9}, r"export opset must be an integer from 11 to 20, got 9"),
    ],
)
def test_bad_sizes_and_opset_raise_config_error(checkpoint, tmp_path, size, message):
    kwargs = {"height": H, "width": W, **size}
    with pytest.raises(ConfigError, match=message):
        export_onnx(checkpoint, tmp_path / "m.onnx", **kwargs, **FAST)
    assert not (tmp_path / "m.onnx").exists()


def test_corrupt_checkpoint_names_the_file(checkpoint, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(checkpoint.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"broken\.pt: corrupt or unreadable checkpoint"):
        export_onnx(bad, tmp_path / "m.onnx", height=H, width=W, **FAST)
    assert not (tmp_path / "m.onnx").exists()


def test_failed_export_keeps_the_previous_file(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous model")

    def half_written(module, args, f, **kwargs):
        f.write(b"\x08\x07partial")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(checkpoint, out, height=H, width=W, **FAST)
    assert out.read_bytes() == b"previous model"
    assert _leftovers(tmp_path) == []
    fresh = tmp_path / "fresh.onnx"
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_onnx(checkpoint, fresh, height=H, width=W, **FAST)
    assert not fresh.exists() and _leftovers(tmp_path) == []


def test_failed_verification_reports_the_figures_and_writes_nothing(
    checkpoint, tmp_path, monkeypatch
):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous model")
    monkeypatch.setattr(
        export_module,
        "compare_logits",
        lambda a, b: {"max_abs_diff": 0.5, "relative_diff": 0.01, "argmax_agreement": 0.95},
    )
    with pytest.raises(
        ExportError,
        match=r"disagrees with PyTorch on a 1x3x64x128 input: max \|diff\| 0\.5 = 0\.01 of the "
        r"logit range \(limit 0\.0001\), argmax agreement 0\.95000 \(need >= 0\.999\)",
    ):
        export_onnx(checkpoint, out, height=H, width=W, **FAST)
    assert out.read_bytes() == b"previous model"


def test_missing_onnxruntime_says_how_to_install(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError) as info:
        export_onnx(checkpoint, tmp_path / "m.onnx", height=H, width=W, **FAST)
    assert str(info.value) == (
        "verifying and timing an ONNX export needs ONNX Runtime: pip install onnxruntime "
        "(or pip install fasterseg[export]; verify=False and measure=False skip it)"
    )
    assert isinstance(info.value, UserError) and not (tmp_path / "m.onnx").exists()
    # The latency backend shares the importer and says who needs the package.
    with pytest.raises(ConfigError) as info:
        measure_module(torch.nn.Identity(), torch.zeros(1, 1, 2, 2), backend="onnxruntime")
    assert str(info.value) == (
        "the onnxruntime latency backend needs ONNX Runtime: pip install onnxruntime"
    )
    # Without verification and timing, ONNX Runtime is not needed.
    result = export_onnx(
        checkpoint, tmp_path / "m.onnx", height=H, width=W, verify=False, measure=False, **FAST
    )
    assert result["max_abs_diff"] is None and (tmp_path / "m.onnx").is_file()
    assert "ONNX Runtime check: skipped" in format_export_result(result)


def test_compare_logits_figures():
    ref = np.zeros((1, 3, 2, 2), dtype=np.float32)
    ref[0, 0] = 4.0  # range 4, class 0 everywhere
    cand = ref.copy()
    cand[0, 1, 0, 0] = 5.0  # one pixel of four flips to class 1; max |diff| 5
    figures = compare_logits(ref, cand)
    assert figures == {"max_abs_diff": 5.0, "relative_diff": 1.25, "argmax_agreement": 0.75}
    assert compare_logits(ref, ref)["relative_diff"] == 0.0
    with pytest.raises(ExportError, match=r"shape \(1, 3, 2, 1\)"):
        compare_logits(ref, ref[..., :1])

"""Smoke tests of benchmarks/: each script runs as users run it (``python benchmarks/X.py``),
at tiny sizes and one thread, exits 0 and prints one JSON object with the keys
benchmarks/README.md documents. Timings are noise at these sizes: only keys, shapes and
finite (positive where a time) values are checked, never speed."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
OURS = ("fasterseg-student", "fasterseg-teacher")
PEER = "lraspp_mobilenet_v3_large"


def run(script, *args, cwd):
    """The JSON object ``benchmarks/script`` prints; its stderr is shown when it fails."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--threads", "1", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    result = json.loads(proc.stdout)  # all of stdout: one object, nothing else
    assert isinstance(result, dict)
    return result


def number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive(value):
    return number(value) and value > 0


def test_inference_latency(tmp_path):
    size = "64x128"
    r = run("inference_latency.py", "--sizes", size, "--repeats", "1", "--rounds", "1",
            cwd=tmp_path)  # fmt: skip
    assert r["benchmark"] == "inference_latency"
    meta = r["metadata"]
    assert meta["threads"] == 1 and (meta["repeats"], meta["rounds"]) == (1, 1)
    assert meta["statistic"] == "median" and meta["cpu_model"]
    assert len(meta["loadavg_start"]) == len(meta["loadavg_end"]) == 3
    assert r["gemm_gflops"]["n"] == 2048
    assert positive(r["gemm_gflops"]["start"]) and positive(r["gemm_gflops"]["end"])
    assert list(r["results"]) == [size]
    by_model = r["results"][size]
    assert set(by_model) == {*OURS, PEER}
    onnx = ["onnxruntime"] if "onnxruntime" in by_model[OURS[0]] else []
    for name in OURS:
        assert sorted(by_model[name]) == sorted(["eager", "prepared", *onnx])
    assert sorted(by_model[PEER]) == ["channels_last", "eager"]
    for model, variants in by_model.items():
        for variant, e in variants.items():
            where = f"{model}/{variant}"
            for key in ("latency_ms", "min_ms", "gflops_achieved", "ratio_to_lraspp",
                        "ratio_to_lraspp_channels_last"):  # fmt: skip
                assert positive(e[key]), (where, key, e[key])
            assert number(e["iqr_ms"]) and e["iqr_ms"] >= 0, where
            assert e["min_ms"] <= e["latency_ms"] and e["runs"] >= 1, where
            assert isinstance(e["params"], int) and e["params"] > 0, where
            assert isinstance(e["macs"], int) and e["macs"] > 0, where
    assert by_model[PEER]["eager"]["ratio_to_lraspp"] == 1.0
    assert by_model[PEER]["channels_last"]["ratio_to_lraspp_channels_last"] == 1.0
    for name in OURS:
        eager, prepared = by_model[name]["eager"], by_model[name]["prepared"]
        assert prepared["macs"] == eager["macs"] and prepared["params"] < eager["params"]
        assert 0 <= prepared["max_diff_vs_eager_rel_to_range"] < 1e-4
    target = r["prepared_student_vs_lraspp"]
    assert target["target_max_ratio"] == 0.6
    student = by_model["fasterseg-student"]["prepared"]
    assert target["by_size"] == {
        size: {k: student[k] for k in ("ratio_to_lraspp", "ratio_to_lraspp_channels_last")}
    }


def test_latency_predictor(tmp_path):
    samples = 4
    r = run("latency_predictor.py", "--sizes", "64x128", "--samples", samples,
            "--min-time", 0.005, "--check-networks", 3, "--table-dir", tmp_path / "luts",
            "--background-load", 1, "--quiet-wait", 0, cwd=tmp_path)  # fmt: skip
    assert r["benchmark"] == "latency_predictor" and r["background_load"] == 1
    assert r["load_seconds"] is None  # the load lasted the whole build
    assert r["cpu"] and r["targets"] == {"within_10pct": 0.95, "kendall_tau": 0.9}
    assert list(r["sizes"]) == ["64x128"]
    s = r["sizes"]["64x128"]
    assert (s["height"], s["width"], s["samples"]) == (64, 128, samples)
    table = s["table"]
    assert Path(table["path"]) == tmp_path / "luts" / "lut_64x128.json"
    assert Path(table["path"]).is_file() and table["entries"] >= table["kernels_used"] > 0
    assert number(table["build_seconds"])
    assert table["settings"] == {"threads": 1, "rounds": 3, "statistic": "min",
                                 "min_time": 0.005, "check_networks": 3,
                                 "quiet_wait": 0.0}  # fmt: skip
    check = table["self_check"]
    assert isinstance(check["passed"], bool) and check["heldout_error_max_pct"] >= 0
    # with a busy process beside it the check may find its networks disturbed and then
    # keeps no calibration; otherwise it keeps one
    assert (table["calibration"] is None) == check["disturbed"]
    low, high = s["measured_ms_range"]
    assert positive(low) and low <= high
    assert len(s["rows"]) == samples
    for row in s["rows"]:
        assert row["role"] in ("student", "teacher") and row["lasts"][0] == 2
        for key in ("macs_g", "sum_ms", "measured_ms"):
            assert positive(row[key]), (row["name"], key, row[key])
        # a line fitted through noisy timings can extrapolate below zero at these sizes
        assert number(row["predicted_ms"]) and isinstance(row["measured_disturbed"], bool)
        if table["calibration"] is None:
            assert row["predicted_ms"] == row["sum_ms"]
    names = [row["name"] for row in s["rows"]]
    train, test = s["split"]["train"], s["split"]["test"]
    assert len(train) == len(test) == samples // 2 and sorted(train + test) == sorted(names)

    def check_scores(x):
        assert 0 <= x["within_10pct"] <= 1 and number(x["mape_pct"]) and x["mape_pct"] >= 0
        assert x["max_abs_err_pct"] >= x["mape_pct"]
        assert -1 <= x["kendall_tau"] <= 1 and -1 <= x["spearman_rho"] <= 1

    check_scores(s["all"]["lut_sum"])
    check_scores(s["test_half"]["lut_sum"])
    check_scores(s["test_half"]["macs_proxy"])
    if table["calibration"] is not None:
        check_scores(s["all"]["lut_calibrated"])
    assert positive(s["all"]["lut_sum_over_measured_mean"])
    assert isinstance(s["targets_met"], bool)


def test_search_step(tmp_path):
    r = run("search_step.py", "--smoke", "--iters", 1, cwd=tmp_path)
    assert r["benchmark"] == "search_step"
    assert r["machine"]["threads"] == 1 and r["machine"]["cpu"]
    peer = r["lraspp_latency_256x512_s"]
    assert positive(peer)
    assert list(r["results"]) == ["smoke"]
    s = r["results"]["smoke"]
    assert s["config"]["layers"] == 6 and s["config"]["crop"] == [64, 128]
    assert isinstance(s["supernet_params"], int) and s["supernet_params"] > 0
    assert positive(s["seconds_per_iteration"]) and positive(s["peak_rss_gb"])
    assert s["ratio_to_lraspp_latency"] == pytest.approx(s["seconds_per_iteration"] / peer)
    assert set(r["reference_implementation"]) >= {"seconds_per_iteration", "peak_rss_gb"}
    assert list(tmp_path.iterdir()) == []  # its data and search outputs were temporary


def test_train_throughput(tmp_path):
    r = run("train_throughput.py", "--batch", 2, "--crop", "64x128", "--min-time", 0,
            cwd=tmp_path)  # fmt: skip
    assert r["benchmark"] == "train_throughput"
    assert (r["batch"], r["crop"], r["machine"]["threads"]) == (2, [64, 128], 1)
    assert set(r["results"]) == {*OURS, PEER}
    for name, e in r["results"].items():
        assert positive(e["seconds_per_step"]) and positive(e["ratio_to_lraspp"]), name
        assert e["images_per_second"] == pytest.approx(2 / e["seconds_per_step"]), name
    assert r["results"][PEER]["ratio_to_lraspp"] == 1.0

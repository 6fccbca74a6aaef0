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
    table = tmp_path / "lut.json"
    r = run("latency_predictor.py", "--height", 64, "--width", 128, "--samples", samples,
            "--rounds", 1, "--min-time", 0.005, "--net-min-time", 0.01, "--table", table,
            cwd=tmp_path)  # fmt: skip
    assert r["benchmark"] == "latency_predictor"
    assert (r["height"], r["width"], r["samples"], r["threads"]) == (64, 128, samples, 1)
    assert r["table"]["path"] == str(table) and table.is_file()
    assert r["table"]["kernels_used"] > 0 and number(r["table"]["build_seconds"])
    assert r["network_round_spread_pct_median"] is None  # one round: nothing to compare
    low, high = r["measured_ms_range"]
    assert positive(low) and low <= high
    assert len(r["rows"]) == samples
    for row in r["rows"]:
        assert row["role"] in ("student", "teacher") and row["lasts"][0] == 2
        for key in ("macs_g", "predicted_ms", "measured_ms"):
            assert positive(row[key]), (row["name"], key, row[key])
        # A line fitted through two noisy timings can extrapolate below zero at these sizes:
        # the calibrated value is a number, its sign is not guaranteed.
        assert number(row["calibrated_ms"]), row["name"]
        assert row["measured_rounds_ms"] == [round(row["measured_ms"], 1)]
    names = [row["name"] for row in r["rows"]]
    train, test = r["split"]["train"], r["split"]["test"]
    assert len(train) == len(test) == samples // 2 and sorted(train + test) == sorted(names)

    def check_scores(s):
        assert 0 <= s["within_10pct"] <= 1 and number(s["mape_pct"]) and s["mape_pct"] >= 0
        assert s["max_abs_err_pct"] >= s["mape_pct"]
        assert -1 <= s["kendall_tau"] <= 1 and -1 <= s["spearman_rho"] <= 1

    check_scores(r["all"]["lut_sum"])
    check_scores(r["all"]["macs_proxy_fitted_on_all"])
    assert positive(r["all"]["lut_sum_over_measured_mean"])
    for key in ("lut_sum", "lut_calibrated", "macs_proxy"):
        check_scores(r["test_half"][key])
    calibrated = r["test_half"]["lut_calibrated"]
    assert number(calibrated["scale"]) and number(calibrated["offset_ms"])


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

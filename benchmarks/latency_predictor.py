"""Does the latency table predict what a network really takes? Prints one JSON object.

For each size in ``--sizes`` it samples random valid architectures of the paper's search space
(seeded: operators, widths, down-sampling layers, lasts (2, 0) or (2, 1), student or teacher
stem/head widths, shared prefixes), builds a fresh latency table with the library's default
settings (``fasterseg lut build``: this process's threads, the fastest call of the least
disturbed of three interleaved rounds, the self-check on its own six networks and the
calibration fitted on them) holding the kernels the samples need, then measures every sample
end to end as ``fasterseg profile ARCH --lut TABLE --measure`` does, and compares three
predictors on the same samples:

* the plain sum of the network's kernels;
* the sum corrected by the table's own calibration (fitted on the self-check's networks, which
  are not among the samples);
* the peer every user falls back to: a MACs-only proxy ``a * MACs + b`` fitted by least
  squares on a seeded half of the samples and judged on the other half.

``--background-load N`` runs N busy processes (``while True: pass``) for the whole table
build and stops them before the end-to-end measurements: the table must then predict the
latency of a quiet machine from timings taken on a busy one. With ``--load-seconds S`` they
stop S seconds into the build instead (a load that passes, as another user's job does).

    python benchmarks/latency_predictor.py                       # 256x512 and 512x1024, 12 samples
    python benchmarks/latency_predictor.py --background-load 1   # the same beside a busy process
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

from fasterseg.config import LatencyConfig, SpaceConfig
from fasterseg.latency import build_table, genotype_kernels
from fasterseg.latency.enumerate import random_genotype
from fasterseg.profile import profile_genotype

#: The targets of the project's latency issue, printed beside the scores.
TARGETS = {"within_10pct": 0.95, "kendall_tau": 0.9}


def scores(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """MAPE (%), fraction within +-10 %, Kendall tau and Spearman rho of predictions."""
    err = np.abs(predicted - measured) / measured
    return {
        "mape_pct": round(float(100 * err.mean()), 2),
        "within_10pct": round(float((err <= 0.10).mean()), 3),
        "max_abs_err_pct": round(float(100 * err.max()), 2),
        "kendall_tau": round(float(stats.kendalltau(predicted, measured).statistic), 3),
        "spearman_rho": round(float(stats.spearmanr(predicted, measured).statistic), 3),
    }


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y ≈ a * x + b``."""
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b)


def busy_processes(n: int) -> list[subprocess.Popen]:
    """``n`` processes that each keep one core busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    return int(h), int(w)


def one_size(args: argparse.Namespace, H: int, W: int) -> dict:
    space = SpaceConfig()
    rng = random.Random(args.seed)
    genos = []
    for i in range(args.samples):
        role = rng.choice(("student", "teacher"))
        genos.append(
            random_genotype(space, rng, role=role, lasts=(2, rng.choice((0, 1))), name=f"g{i:02d}")
        )
    specs = list(dict.fromkeys(s for g in genos for s in genotype_kernels(g, H, W)))
    table_path = args.table_dir / f"lut_{H}x{W}.json"
    if table_path.exists() and not args.reuse_table:
        table_path.unlink()
    settings = replace(LatencyConfig(), table=str(table_path), height=H, width=W)
    given = {"threads": args.threads, "statistic": args.statistic, "min_time": args.min_time,
             "check_networks": args.check_networks, "quiet_wait": args.quiet_wait}  # fmt: skip
    settings = replace(settings, **{k: v for k, v in given.items() if v is not None})

    load = busy_processes(args.background_load)
    timer = None
    if load and args.load_seconds is not None:
        timer = threading.Timer(args.load_seconds, stop, [load])
        timer.start()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    try:
        table = build_table(settings, specs=specs, progress=sys.stderr.isatty())
    finally:
        if timer is not None:
            timer.cancel()
        stop(load)
    build_s = time.perf_counter() - t0
    load_during = os.getloadavg()

    t0 = time.perf_counter()
    rows = []
    for g in genos:
        p = profile_genotype(g, height=H, width=W, table=table, measure=True)
        rows.append(
            {
                "name": g.name,
                "role": "teacher" if g.stem_width == 1.0 else "student",
                "lasts": [b.last_scale for b in g.branches],
                "macs_g": round(p["macs"] / 1e9, 3),
                "sum_ms": round(p["latency_ms_predicted_sum"], 3),
                "predicted_ms": round(p["latency_ms_predicted"], 3),
                "measured_ms": round(p["latency_ms_measured"], 3),
                "measured_disturbed": p["latency_measured_disturbed"],
            }
        )
    networks_s = time.perf_counter() - t0

    summed = np.array([r["sum_ms"] for r in rows])
    meas = np.array([r["measured_ms"] for r in rows])
    macs = np.array([r["macs_g"] for r in rows])
    order = list(range(len(rows)))
    random.Random(args.seed + 1).shuffle(order)
    train, test = sorted(order[: len(order) // 2]), sorted(order[len(order) // 2 :])
    a, b = fit_line(macs[train], meas[train])
    c = table.calibration
    calibrated = None if c is None else np.array([c.apply(x) for x in summed])
    check = table.self_check
    result = {
        "height": H,
        "width": W,
        "samples": len(rows),
        "table": {
            "path": str(table_path),
            "kernels_used": len(specs),
            "entries": len(table),
            "build_seconds": round(build_s, 1),
            "settings": {
                "threads": table.fingerprint["threads"],
                "rounds": settings.rounds,
                "statistic": settings.statistic,
                "min_time": settings.min_time,
                "check_networks": settings.check_networks,
                "quiet_wait": settings.quiet_wait,
            },
            "calibration": None if c is None else c.to_dict(),
            "self_check": None
            if check is None
            else {
                "passed": check.passed,
                "disturbed": check.disturbed,
                "heldout_error_mean_pct": round(100 * check.heldout_error_mean, 2),
                "heldout_error_max_pct": round(100 * check.heldout_error_max, 2),
                "sum_error_mean_pct": round(100 * check.sum_error_mean, 2),
                "others_cores_max": round(check.others_cores_max, 2),
            },
        },
        "loadavg_before_build": [round(v, 2) for v in load_before],
        "loadavg_after_build": [round(v, 2) for v in load_during],
        "loadavg_after_networks": [round(v, 2) for v in os.getloadavg()],
        "networks_seconds": round(networks_s, 1),
        "measured_ms_range": [round(float(meas.min()), 1), round(float(meas.max()), 1)],
        "measured_disturbed": sum(r["measured_disturbed"] for r in rows),
        "split": {
            "train": [rows[i]["name"] for i in train],
            "test": [rows[i]["name"] for i in test],
        },
        "all": {
            "lut_sum": scores(summed, meas),
            "lut_calibrated": None if calibrated is None else scores(calibrated, meas),
            "lut_sum_over_measured_mean": round(float((summed / meas).mean()), 3),
        },
        "test_half": {
            "lut_sum": scores(summed[test], meas[test]),
            "lut_calibrated": None if calibrated is None else scores(calibrated[test], meas[test]),
            "macs_proxy": {
                **scores(a * macs[test] + b, meas[test]),
                "ms_per_gmac": round(a, 3),
                "offset_ms": round(b, 2),
            },
        },
        "rows": rows,
    }
    best = result["all"]["lut_calibrated"] or result["all"]["lut_sum"]
    result["targets_met"] = all(best[k] >= v for k, v in TARGETS.items())
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=size, nargs="+", default=[(256, 512), (512, 1024)],
                        metavar="HxW", help="input sizes (default: 256x512 512x1024)")  # fmt: skip
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--background-load", type=int, default=0, metavar="N",
        help="busy processes running while the table is built (stopped before the networks)",
    )  # fmt: skip
    parser.add_argument(
        "--load-seconds", type=float, metavar="S",
        help="stop the busy processes S seconds into the build (default: at its end)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, help="table threads (default: latency.threads)")
    parser.add_argument("--statistic", choices=["median", "min"], help="default: latency's")
    parser.add_argument("--min-time", type=float, help="seconds per kernel (default: latency's)")
    parser.add_argument("--check-networks", type=int, help="default: latency.check_networks")
    parser.add_argument(
        "--quiet-wait", type=float, metavar="S",
        help="seconds the build may wait for quiet to time disturbed kernels again "
        "(default: latency.quiet_wait)",
    )  # fmt: skip
    parser.add_argument(
        "--table-dir", type=Path, default=Path("runs/bench"),
        help="where the tables go (lut_<H>x<W>.json, rebuilt every run)",
    )  # fmt: skip
    parser.add_argument(
        "--reuse-table", action="store_true", help="complete an existing table, not rebuild it"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = {
        "benchmark": "latency_predictor",
        "seed": args.seed,
        "background_load": args.background_load,
        "load_seconds": args.load_seconds,
        "targets": TARGETS,
        "sizes": {},
    }
    from fasterseg.latency.table import cpu_model

    result["cpu"] = cpu_model()
    for H, W in args.sizes:
        result["sizes"][f"{H}x{W}"] = one_size(args, H, W)
        print(f"{H}x{W} done", file=sys.stderr)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

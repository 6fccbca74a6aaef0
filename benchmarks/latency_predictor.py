"""Does the latency table predict what a network really takes? Prints one JSON object.

Samples random valid architectures of the paper's search space (seeded: operators, widths,
down-sampling layers, lasts (2, 0) or (2, 1), student or teacher stem/head widths, shared
prefixes), builds (or completes) a latency table with only the kernels they need, predicts each
network's latency as the sum of its kernels, measures each network end to end with the same
backend and threads, and compares - on the same samples - with the peer every user falls back
to: a MACs-only proxy ``a * MACs + b`` fitted by least squares.

The samples are split in two halves (seeded): the calibration ``measured ≈ scale * sum + offset``
and the MACs proxy are fitted on the first half and judged on the second; the plain sum needs no
fitting and is judged on all samples and on the second half.

    python benchmarks/latency_predictor.py                 # 512x1024, 30 samples, ~20 min

The defaults are the protocol that held on a shared 2-vCPU VM: one thread, each timing's
fastest call (``--statistic min``: other tenants only ever slow a call down) and three rounds
of kernels and networks, alternating, so both see the same periods of machine load. With two
threads the two vCPUs wait on each other whenever the host takes one away, and single
timings swing by 10-20 %; see benchmarks/README.md for figures of both.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from fasterseg.config import LatencyConfig, SpaceConfig
from fasterseg.latency import (
    Calibration,
    LatencyTable,
    Measurement,
    build_table,
    genotype_kernels,
    genotype_latency,
    measure_network,
)
from fasterseg.latency.enumerate import random_genotype
from fasterseg.models import Network
from fasterseg.profile import profile_genotype


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


def combine(values: list[float], statistic: str) -> float:
    """Combine one quantity's per-round timings: the fastest for ``min``, else the median."""
    return float(min(values) if statistic == "min" else np.median(values))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--statistic", default="min", choices=["median", "min"])
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measure kernels and networks this many times, alternating, and combine the "
        "rounds with --statistic (spreads both over the same periods of machine load)",
    )
    parser.add_argument(
        "--min-time", type=float, default=0.2, help="seconds of timed calls per kernel"
    )
    parser.add_argument(
        "--net-min-time", type=float, default=2.0, help="seconds of timed calls per network"
    )
    parser.add_argument(
        "--table",
        type=Path,
        default=None,
        help="latency table to reuse or complete (default runs/bench/lut_<H>x<W>_....json); "
        "with --rounds > 1 each round uses FILE.roundN.json and FILE gets the combination",
    )
    parser.add_argument(
        "--save-calibration",
        action="store_true",
        help="store the calibration fitted on all samples in the table",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    H, W = args.height, args.width
    table_path = args.table or Path(
        f"runs/bench/lut_{H}x{W}_{args.backend}_{args.device}_t{args.threads}_{args.statistic}.json"
    )

    space = SpaceConfig()
    rng = random.Random(args.seed)
    genos = []
    for i in range(args.samples):
        role = rng.choice(("student", "teacher"))
        genos.append(
            random_genotype(space, rng, role=role, lasts=(2, rng.choice((0, 1))), name=f"g{i:02d}")
        )
    specs = list(dict.fromkeys(s for g in genos for s in genotype_kernels(g, H, W)))
    macs = np.array([profile_genotype(g, height=H, width=W)["macs"] / 1e9 for g in genos])

    load_before = os.getloadavg()
    tables: list[LatencyTable] = []
    measured: list[list[Measurement]] = [[] for _ in genos]
    table_s = networks_s = 0.0
    for r in range(args.rounds):
        path = table_path if args.rounds == 1 else table_path.with_suffix(f".round{r}.json")
        t0 = time.perf_counter()
        settings = LatencyConfig(
            table=str(path), height=H, width=W, backend=args.backend, device=args.device,
            threads=args.threads or 0, min_time=args.min_time, statistic=args.statistic,
        )  # fmt: skip
        tables.append(build_table(settings, specs=specs, progress=sys.stderr.isatty()))
        table_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        order = list(range(len(genos)))
        random.Random(args.seed + 100 + r).shuffle(order)
        for i in order:
            m = measure_network(
                Network(genos[i]),
                H,
                W,
                backend=args.backend,
                device=args.device,
                threads=args.threads,
                min_time=args.net_min_time,
                statistic=args.statistic,
            )
            measured[i].append(m)
        networks_s += time.perf_counter() - t0
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    if args.rounds == 1:
        table = tables[0]
    else:
        table = LatencyTable(tables[0].fingerprint, path=table_path)
        for spec in specs:
            ms = [t.get(spec) for t in tables]
            table.add(
                spec,
                Measurement(
                    combine([m.ms for m in ms], args.statistic),
                    max(m.std for m in ms),
                    sum(m.n for m in ms),
                ),
            )
        table.save(table_path)

    rows = []
    for g, gm, mac in zip(genos, measured, macs):
        predicted = genotype_latency(g, table, height=H, width=W)
        rows.append(
            {
                "name": g.name,
                "role": "teacher" if g.stem_width == 1.0 else "student",
                "lasts": [b.last_scale for b in g.branches],
                "macs_g": round(float(mac), 3),
                "predicted_ms": round(predicted, 3),
                "measured_ms": round(combine([m.ms for m in gm], args.statistic), 3),
                "measured_rounds_ms": [round(m.ms, 1) for m in gm],
                "measured_n": sum(m.n for m in gm),
            }
        )

    pred = np.array([r["predicted_ms"] for r in rows])
    meas = np.array([r["measured_ms"] for r in rows])
    order = list(range(len(rows)))
    random.Random(args.seed + 1).shuffle(order)
    train, test = sorted(order[: len(order) // 2]), sorted(order[len(order) // 2 :])

    calib = Calibration.fit(pred[train], meas[train])
    a_tr, b_tr = fit_line(macs[train], meas[train])
    a_all, b_all = fit_line(macs, meas)
    calibrated_test = np.array([calib.apply(p) for p in pred[test]])
    for r in rows:
        r["calibrated_ms"] = round(calib.apply(r["predicted_ms"]), 3)

    if args.save_calibration:
        table.calibration = Calibration.fit(pred, meas)
        table.save(table_path)

    round_spread = [
        max(m.ms for m in gm) / min(m.ms for m in gm) - 1 for gm in measured if len(gm) > 1
    ]
    result = {
        "benchmark": "latency_predictor",
        "height": H,
        "width": W,
        "samples": len(rows),
        "seed": args.seed,
        "backend": args.backend,
        "device": args.device,
        "threads": args.threads,
        "statistic": args.statistic,
        "rounds": args.rounds,
        "cpu": table.fingerprint["cpu"],
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "table": {
            "path": str(table_path),
            "kernels_used": len(specs),
            "build_seconds": round(table_s, 1),
            "median_std_over_ms": round(
                float(np.median([m.std / m.ms for m in table.entries.values() if m.ms > 0])), 3
            ),
        },
        "networks_seconds": round(networks_s, 1),
        "measured_ms_range": [round(float(meas.min()), 1), round(float(meas.max()), 1)],
        "network_round_spread_pct_median": (
            round(100 * float(np.median(round_spread)), 1) if round_spread else None
        ),
        "split": {
            "train": [rows[i]["name"] for i in train],
            "test": [rows[i]["name"] for i in test],
        },
        "all": {
            "lut_sum": scores(pred, meas),
            "macs_proxy_fitted_on_all": {
                **scores(a_all * macs + b_all, meas),
                "ms_per_gmac": round(a_all, 3),
                "offset_ms": round(b_all, 2),
            },
            "lut_sum_over_measured_mean": round(float((pred / meas).mean()), 3),
        },
        "test_half": {
            "lut_sum": scores(pred[test], meas[test]),
            "lut_calibrated": {
                **scores(calibrated_test, meas[test]),
                "scale": round(calib.scale, 4),
                "offset_ms": round(calib.offset_ms, 2),
            },
            "macs_proxy": {
                **scores(a_tr * macs[test] + b_tr, meas[test]),
                "ms_per_gmac": round(a_tr, 3),
                "offset_ms": round(b_tr, 2),
            },
        },
        "rows": rows,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

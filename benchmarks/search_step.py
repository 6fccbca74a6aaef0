"""Seconds per search iteration and peak memory, against LR-ASPP's inference latency.

One iteration = one architecture step (both roles, the student's latency term included) plus
one weight step (teacher at max width; student sampled, max, min), exactly as the search runs
it. Each configuration runs in its own process so its peak resident memory is its own.
Prints one JSON object. The yardstick is LR-ASPP MobileNetV3's inference latency at
1x3x1024x2048 measured in the same run.

    python benchmarks/search_step.py [--threads 2] [--iters 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import lraspp, machine, median_seconds

CONFIGS = {
    # The reference's batch and crop: 2 x 224x448, full 16-layer space, Fch 12, five widths.
    "reference": {"layers": 16, "fch": 12, "crop": [224, 448], "batch": 2, "lut_hw": [1024, 2048]},
    # The demo recipe (search/demo.yaml).
    "demo": {"layers": 8, "fch": 8, "crop": [128, 256], "batch": 2, "lut_hw": [256, 512],
             "widths": ["4/12", "8/12", "12/12"]},
}  # fmt: skip


def run_one(name: str, iters: int, threads: int) -> dict:
    """Time ``iters`` search iterations of configuration ``name`` (in this process)."""
    from fasterseg.config import config_from_dict
    from fasterseg.engine.search import _arch_step, _weight_step
    from fasterseg.latency import LatencyTable, Measurement, space_kernels
    from fasterseg.space import Role, SuperNet

    torch.set_num_threads(threads)
    c = CONFIGS[name]
    space = {"layers": c["layers"], "fch": c["fch"]}
    if "widths" in c:
        space["width_choices"] = c["widths"]
    cfg = config_from_dict(
        {"space": space, "latency": {"height": c["lut_hw"][0], "width": c["lut_hw"][1]}}
    )
    # A table of constant entries: timing the table build is not what this benchmark measures.
    table = LatencyTable({"device": "benchmark"})
    for spec in space_kernels(cfg.space, *c["lut_hw"]):
        table.add(spec, Measurement(ms=1.0, std=0.0, n=1))
    torch.manual_seed(0)
    net = SuperNet(cfg.space)
    weights = net.weight_parameters()
    w_opt = torch.optim.SGD(weights, lr=0.01, momentum=0.9, weight_decay=5e-4)
    a_opts = {
        r: torch.optim.Adam(net.arch_parameters(r), lr=3e-4, betas=(0.5, 0.999)) for r in Role
    }
    h, w = c["crop"]
    x = torch.randn(c["batch"], 3, h, w)
    y = torch.randint(0, 19, (c["batch"], h // 8, w // 8))
    net.train()

    def step() -> None:
        _arch_step(net, a_opts, x, y, table, 0.01, tuple(c["lut_hw"]), cfg, "benchmark")
        _weight_step(net, w_opt, weights, x, y, False, cfg, "benchmark")

    step()  # warm-up (allocations, first-call overheads)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return {
        "config": {k: v for k, v in c.items()},
        "supernet_params": sum(p.numel() for p in net.parameters()),
        "seconds_per_iteration": times[len(times) // 2],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="demo configuration only")
    parser.add_argument("--one", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.iters, args.threads)))
        return
    torch.set_num_threads(args.threads)
    peer = lraspp().eval()
    x = torch.randn(1, 3, 1024, 2048)
    with torch.inference_mode():
        peer_s = median_seconds(lambda: peer(x), min_time=3.0)
    results = {}
    for name in ["demo"] if args.quick else ["demo", "reference"]:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--iters", str(args.iters),
             "--threads", str(args.threads)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["ratio_to_lraspp_latency"] = r["seconds_per_iteration"] / peer_s
        results[name] = r
    print(
        json.dumps(
            {
                "benchmark": "search_step",
                "machine": machine(),
                "lraspp_latency_1024x2048_s": peer_s,
                "results": results,
                "reference_implementation": {
                    "seconds_per_iteration": 32.5,
                    "peak_rss_gb": 7.7,
                    "ratio_to_lraspp_latency": 63,
                    "note": "method document / issue 5, same kind of machine, 2 threads",
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

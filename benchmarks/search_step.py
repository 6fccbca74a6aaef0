"""Seconds per search iteration and peak memory, against LR-ASPP's inference latency.

One iteration = one architecture step (both roles, the student's latency term included) plus
one weight step (teacher at max width; student sampled, max, min) and the loading of their
two batches, timed inside ``fasterseg.engine.search.search`` itself: a two-epoch search on
synthetic scenes of the crop size with a constant latency table, whose first epoch is the
warm-up and whose second epoch's mean iteration is the result. Each configuration runs in its
own process so its peak resident memory is its own. Prints one JSON object. The yardstick is
LR-ASPP MobileNetV3's inference latency at 1x3x1024x2048 (1x3x256x512 with ``--smoke``)
measured in the same run.

    python benchmarks/search_step.py [--threads 2] [--iters 2] [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
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
    # Seconds on any machine (--smoke): shows that the script runs; its times mean nothing.
    "smoke": {"layers": 6, "fch": 2, "crop": [64, 128], "batch": 2, "lut_hw": [64, 128],
              "widths": ["1/2", "1"]},
}  # fmt: skip


def run_one(name: str, iters: int, threads: int) -> dict:
    """Time ``iters`` search iterations of configuration ``name`` (in this process)."""
    from fasterseg.config import config_from_dict
    from fasterseg.data.synth import generate_dataset
    from fasterseg.engine.search import search
    from fasterseg.latency import LatencyTable, Measurement, space_kernels
    from fasterseg.space import SuperNet

    torch.set_num_threads(threads)
    c = CONFIGS[name]
    space = {"layers": c["layers"], "fch": c["fch"]}
    if "widths" in c:
        space["width_choices"] = c["widths"]
    with tempfile.TemporaryDirectory(prefix="search_step_") as tmp:
        data = Path(tmp) / "data"
        # Each half of the training split (weights, architecture) holds one batch and one
        # image more; the architecture half's extra image is held out to score the per-epoch
        # report, which is not timed. Images of the crop size make every crop the whole image.
        generate_dataset(data, train=2 * c["batch"] + 2, val=1, size=tuple(c["crop"]), seed=0)
        cfg = config_from_dict(
            {
                "data": {"root": str(data), "scales": [1.0], "label_stride": 8, "workers": 0},
                "space": space,
                "latency": {"height": c["lut_hw"][0], "width": c["lut_hw"][1]},
                "runtime": {"device": "cpu"},
                "search": {
                    "pretrain_epochs": 0,
                    "epochs": 2,
                    "iters_per_epoch": iters,
                    "crop": c["crop"],
                    "batch_size": c["batch"],
                    "select_portion": 0.5 / (c["batch"] + 1),  # one image
                },
            }
        )
        # A table of constant entries: timing the table build is not what this benchmark measures.
        table = LatencyTable({"device": "benchmark"})
        for spec in space_kernels(cfg.space, *c["lut_hw"]):
            table.add(spec, Measurement(ms=1.0, std=0.0, n=1))
        history = search(cfg, Path(tmp) / "run", table, progress=False)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    timed = history["epochs"][-1]
    return {
        "config": dict(c),
        "supernet_params": sum(p.numel() for p in SuperNet(cfg.space).parameters()),
        "seconds_per_iteration": timed["seconds"] / iters,
        "peak_rss_gb": peak_rss_gb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=2)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="demo configuration only")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny configuration, the peer at 256x512: checks the script in seconds",
    )
    parser.add_argument("--one", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.iters, args.threads)))
        return
    torch.set_num_threads(args.threads)
    peer = lraspp().eval()
    peer_h, peer_w = (256, 512) if args.smoke else (1024, 2048)
    x = torch.randn(1, 3, peer_h, peer_w)
    with torch.inference_mode():
        peer_s = median_seconds(lambda: peer(x), min_time=0.0 if args.smoke else 3.0)
    if args.smoke:
        names = ["smoke"]
    else:
        names = ["demo"] if args.quick else ["demo", "reference"]
    results = {}
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--iters", str(args.iters),
             "--threads", str(args.threads)],
            check=True, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip  # the child's stderr (warnings, a traceback) passes through
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["ratio_to_lraspp_latency"] = r["seconds_per_iteration"] / peer_s
        results[name] = r
    print(
        json.dumps(
            {
                "benchmark": "search_step",
                "machine": machine(),
                f"lraspp_latency_{peer_h}x{peer_w}_s": peer_s,
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

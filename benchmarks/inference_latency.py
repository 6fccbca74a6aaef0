"""CPU inference latency of the published FasterSeg networks next to LR-ASPP. Prints one JSON.

At batch 1 and each size, times (eval mode, ``torch.inference_mode``, ``--threads`` threads):

* the published student and teacher as built (``create_model(name).eval()``, NCHW input) and
  after ``prepare_for_inference`` (folded batch norm, in-place ReLU, channels-last input);
* the peer, torchvision's ``lraspp_mobilenet_v3_large`` (19 classes, random weights), plain and
  with the same channels-last treatment (weights and input);
* the fp32 GEMM rate of this CPU (a 2048 x 2048 matmul), before and after the models.

Each latency is the median of the timed calls of ``torch.utils.benchmark.Timer``'s
``blocked_autorange`` after warm-up; the models are timed in turn, in ``--rounds`` rounds, so
that a slow spell of the machine touches all of them. ``ratio_to_lraspp`` is our latency over
LR-ASPP's plain latency, ``ratio_to_lraspp_channels_last`` over its channels-last latency
(both at ``--statistic``: the median, or the fastest call, which estimates the undisturbed
latency when other processes share the cores).

    python benchmarks/inference_latency.py --threads 2
    python benchmarks/inference_latency.py --quick
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import json
import logging
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn
from torch.utils.benchmark import Timer

from fasterseg.models import create_model, load_genotype
from fasterseg.models.deploy import prepare_for_inference
from fasterseg.profile import count_params, profile_genotype

log = logging.getLogger("inference_latency")
OURS = ("fasterseg-student", "fasterseg-teacher")
PEER = "lraspp_mobilenet_v3_large"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1024x2048,512x1024"`` -> [(1024, 2048), (512, 1024)]; sides divisible by 32."""
    sizes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"size {item!r}: expected HxW, e.g. 512x1024"
            ) from None
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise argparse.ArgumentTypeError(f"size {item!r}: both sides must be multiples of 32")
        sizes.append((h, w))
    return sizes


def gemm_gflops(threads: int, n: int = 2048, min_run_time: float = 1.0) -> float:
    """fp32 GEMM rate of an n x n @ n x n matmul: 2 n^3 / median time, in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = Timer("a @ b", globals={"a": a, "b": b}, num_threads=threads)
    return 2 * n**3 / t.blocked_autorange(min_run_time=min_run_time).median / 1e9


def lraspp_macs(model: nn.Module, x: torch.Tensor) -> int:
    """thop's MAC count of an eval forward (profiled on a throwaway copy: thop adds hooks)."""
    import thop

    with torch.inference_mode():
        macs, _ = thop.profile(copy.deepcopy(model), inputs=(x,), verbose=False)
    return int(macs)


def time_models(
    calls: dict[str, Callable[[], Any]], *, threads: int, repeats: int, rounds: int
) -> dict[str, list[float]]:
    """Per-call times (s) of every zero-argument callable, at least ``repeats`` calls each after
    warm-up, measured in ``rounds`` interleaved rounds of ``blocked_autorange``."""
    estimate = {}
    with torch.inference_mode():
        for key, fn in calls.items():
            fn()  # first call: allocations, oneDNN primitive creation
            t = Timer("fn()", globals={"fn": fn}, num_threads=threads).timeit(1)
            estimate[key] = t.median
    per_round = max(1, math.ceil(repeats / rounds))
    times: dict[str, list[float]] = {key: [] for key in calls}
    with torch.inference_mode():
        for _ in range(rounds):
            for key, fn in calls.items():
                timer = Timer("fn()", globals={"fn": fn}, num_threads=threads)
                got: list[float] = []
                # blocked_autorange stops once min_run_time has passed: about per_round calls
                # at the estimated speed, fewer when the machine is busier; top up to per_round.
                while len(got) < per_round:
                    need = per_round - len(got)
                    got.extend(
                        timer.blocked_autorange(min_run_time=0.9 * need * estimate[key]).times
                    )
                times[key].extend(got)
    return times


def pick(times: list[float], statistic: str) -> float:
    """The median or the fastest of the timed calls (s)."""
    return statistics.median(times) if statistic == "median" else min(times)


def summarize(times: list[float], macs: int, statistic: str) -> dict[str, Any]:
    """Median, interquartile range and minimum in ms, number of calls, and the compute rate
    reached, 2 * MACs / time, at ``statistic`` (median or min) in GFLOP/s."""
    med = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [med, med, med]
    return {
        "latency_ms": round(1e3 * med, 2),
        "iqr_ms": round(1e3 * (q[2] - q[0]), 2),
        "min_ms": round(1e3 * min(times), 2),
        "runs": len(times),
        "gflops_achieved": round(2 * macs / pick(times, statistic) / 1e9, 1),
    }


def _onnxruntime_session(model: nn.Module, x: torch.Tensor, threads: int) -> Any:
    """An ONNX Runtime session (CPU provider, ``threads`` intra-op threads) of the
    batch-norm-folded ``model``, or None when onnxruntime is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    from fasterseg.latency.measure import onnxruntime_session, trace_to_onnx

    data = trace_to_onnx(prepare_for_inference(model, channels_last=False), x)
    return onnxruntime_session(data, threads)


def bench_size(
    height: int, width: int, *, threads: int, repeats: int, rounds: int, statistic: str
) -> dict[str, Any]:
    """Every model at one input size: latency, size, compute, ratios to LR-ASPP."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, height, width)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    calls: dict[str, Callable[[], Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in OURS:
        eager = create_model(name).eval()
        prepared = prepare_for_inference(eager)
        prof = profile_genotype(load_genotype(name), height=height, width=width)
        with torch.inference_mode():
            ref, out = eager(x), prepared(x_cl)
        rel = ((out - ref).abs().max() / (ref.max() - ref.min())).item()
        calls[f"{name}/eager"] = lambda m=eager: m(x)
        calls[f"{name}/prepared"] = lambda m=prepared: m(x_cl)
        common = {"macs": prof["macs"]}
        info[f"{name}/eager"] = {
            **common,
            "params": count_params(eager),
            "memory_format": "contiguous",
        }
        info[f"{name}/prepared"] = {
            **common,
            "params": count_params(prepared),
            "memory_format": "channels_last",
            "max_diff_vs_eager_rel_to_range": float(f"{rel:.2e}"),
        }
        session = _onnxruntime_session(eager, x, threads)
        if session is not None:
            feed = {session.get_inputs()[0].name: x.numpy()}
            calls[f"{name}/onnxruntime"] = lambda s=session, f=feed: s.run(None, f)
            info[f"{name}/onnxruntime"] = {
                **common,
                "params": count_params(prepared),
                "memory_format": "onnxruntime (CPU execution provider)",
            }
    peer = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=19
    ).eval()
    peer_cl = copy.deepcopy(peer).to(memory_format=torch.channels_last)
    peer_macs = lraspp_macs(peer, x)
    # torchvision's segmentation models return a dict; take the logits as ours return them.
    calls[f"{PEER}/eager"] = lambda: peer(x)["out"]
    calls[f"{PEER}/channels_last"] = lambda: peer_cl(x_cl)["out"]
    for key, fmt in (("eager", "contiguous"), ("channels_last", "channels_last")):
        info[f"{PEER}/{key}"] = {
            "macs": peer_macs,
            "params": count_params(peer),
            "memory_format": fmt,
        }

    log.info("timing %d models at %dx%d", len(calls), height, width)
    times = time_models(calls, threads=threads, repeats=repeats, rounds=rounds)
    results: dict[str, Any] = {}
    peer_plain = pick(times[f"{PEER}/eager"], statistic)
    peer_cl_t = pick(times[f"{PEER}/channels_last"], statistic)
    for key, t in times.items():
        model, variant = key.split("/")
        entry = {**info[key], **summarize(t, info[key]["macs"], statistic)}
        entry["ratio_to_lraspp"] = round(pick(t, statistic) / peer_plain, 3)
        entry["ratio_to_lraspp_channels_last"] = round(pick(t, statistic) / peer_cl_t, 3)
        results.setdefault(model, {})[variant] = entry
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls per model and size (default 6)"
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=None,
        help="comma-separated HxW input sizes (default 1024x2048,512x1024)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds")
    parser.add_argument(
        "--statistic",
        default="median",
        choices=["median", "min"],
        help="what ratios and GFLOP/s use; min estimates the undisturbed latency on a busy host",
    )
    parser.add_argument(
        "--quick", action="store_true", help="512x1024 only, 3 timed calls (under a minute)"
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or ([(512, 1024)] if args.quick else [(1024, 2048), (512, 1024)])
    repeats = args.repeats or (3 if args.quick else 6)
    rounds = max(1, min(args.rounds, repeats))
    torch.set_num_threads(args.threads)

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    gemm_start = gemm_gflops(args.threads)
    per_size = {}
    for h, w in sizes:
        per_size[f"{h}x{w}"] = bench_size(
            h, w, threads=args.threads, repeats=repeats, rounds=rounds, statistic=args.statistic
        )
    gemm_end = gemm_gflops(args.threads)
    target = {
        size: {
            "ratio_to_lraspp": r["fasterseg-student"]["prepared"]["ratio_to_lraspp"],
            "ratio_to_lraspp_channels_last": r["fasterseg-student"]["prepared"][
                "ratio_to_lraspp_channels_last"
            ],
        }
        for size, r in per_size.items()
    }
    report = {
        "benchmark": "inference_latency",
        "metadata": {
            "date": started.isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "threads": args.threads,
            "cpu_model": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "repeats": repeats,
            "rounds": rounds,
            "statistic": args.statistic,
            "batch": 1,
            "dtype": "float32",
            "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE", ""),
            "loadavg_start": [round(v, 2) for v in load_start],
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
            "seconds": round(
                (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1
            ),
        },
        "gemm_gflops": {
            "n": 2048,
            "start": round(gemm_start, 1),
            "end": round(gemm_end, 1),
        },
        "results": per_size,
        "prepared_student_vs_lraspp": {"target_max_ratio": 0.6, "by_size": target},
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    main()

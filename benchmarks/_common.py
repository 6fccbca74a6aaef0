"""Shared helpers of the benchmarks: machine facts and the LR-ASPP yardstick."""

from __future__ import annotations

import platform
import time
from typing import Any

import torch


def machine() -> dict[str, Any]:
    """CPU model, threads, torch version and date, recorded with every benchmark."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def lraspp(num_classes: int = 19) -> torch.nn.Module:
    """torchvision's LR-ASPP MobileNetV3-Large with random weights, returning logits."""
    from fasterseg.models.peer import LRASPPLogits

    return LRASPPLogits(num_classes)


def median_seconds(fn: Any, *, min_time: float = 2.0, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over repeats filling ``min_time`` seconds (at least 3)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]

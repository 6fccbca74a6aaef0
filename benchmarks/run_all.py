"""Run every benchmark and write their JSON objects into one file (and print it).

    python benchmarks/run_all.py [--out benchmarks.json] [--quick] [--threads 2]

Each benchmark runs in its own process (so peak memory and thread settings stay its own) and
prints one JSON object; a failing benchmark is recorded with its error, not hidden.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "inference_latency": ["--quick"],
    "latency_predictor": ["--height", "256", "--width", "512", "--samples", "10"],
    "search_step": ["--quick"],
    "train_throughput": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks.json"))
    parser.add_argument("--quick", action="store_true", help="the quick variant of each")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = {}
    for name, quick_args in BENCHMARKS.items():
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--threads", str(args.threads)]
        if args.quick:
            cmd += quick_args
        tic = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - tic
        if proc.returncode != 0:
            results[name] = {"error": proc.stderr.strip().splitlines()[-1:], "seconds": seconds}
            continue
        start = proc.stdout.index("{")
        results[name] = {"result": json.loads(proc.stdout[start:]), "seconds": seconds}
    text = json.dumps(results, indent=2)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

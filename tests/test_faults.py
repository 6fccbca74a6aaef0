"""Faults survived: a pipeline killed (SIGKILL) at random points and rerun ends exactly like
an uninterrupted run; a failed checkpoint write keeps the previous checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fasterseg.engine.checkpoint import load_checkpoint, save_checkpoint

# The pipeline runs in a child process with a deterministic stand-in for the kernel timer, so
# that both runs see the same latency table (real timings differ from run to run).
CHILD = """
import sys
import fasterseg.latency.build as build
from fasterseg.latency import Measurement

from fasterseg.latency import Timing

def fake_timer(modules, **settings):
    out = {}
    for key, factory in modules.items():
        module, inputs = factory()
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        macs = sum(p.numel() for p in module.parameters()) * inputs[0].shape[-1]
        out[key] = Measurement(ms=1e-4 * macs + 0.01, std=0.0, n=1)
    return Timing(out, rounds=1, extra=0, others_cores_max=0.0)

build.time_interleaved = fake_timer
from fasterseg.cli import main
sys.exit(main(sys.argv[1:]))
"""

CONFIG = """
data_root: {root}
synthetic: {{enabled: true, train: 6, val: 2, size: [64, 128], seed: 0}}
search:
  data: {{label_stride: 8, workers: 0, scales: [0.75, 1.0]}}
  space: {{layers: 6, fch: 4, width_choices: [0.5, 1.0], ops: [skip, conv, conv_downup, conv_2x]}}
  latency: {{table: lut.json, height: 64, width: 128}}
  search:
    pretrain_epochs: 1
    epochs: 2
    iters_per_epoch: 3
    crop: [64, 128]
    pretrain_crop: [64, 128]
    batch_size: 2
    pretrain_batch_size: 2
  runtime: {{device: cpu}}
train:
  data: {{crop: [64, 128], scales: [0.75, 1.0], batch_size: 4, workers: 0}}
  train: {{epochs: 3, iters_per_epoch: 3, ohem_min_kept: 512, eval_every: 1}}
  runtime: {{device: cpu}}
report: {{height: 64, width: 128, measure: false, peer: false}}
"""


def _start(cfg: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, "pipeline", "--config", str(cfg), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip


def _results(out: Path) -> dict:
    return {
        "teacher": json.loads((out / "search" / "arch_teacher.json").read_text())["branches"],
        "student": json.loads((out / "search" / "arch_student.json").read_text())["branches"],
        "metrics": {
            k: json.loads((out / k / "metrics.json").read_text())["final"]
            for k in ("teacher", "student_distilled", "student_trained")
        },
    }


@pytest.mark.slow
def test_killed_pipeline_resumes_to_the_same_result(tmp_path):
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(CONFIG.format(root=tmp_path / "data"))
    ref = tmp_path / "ref"
    tic = time.monotonic()
    assert _start(cfg, ref).wait(timeout=300) == 0
    duration = time.monotonic() - tic

    out = tmp_path / "killed"
    kills = 0
    # Kill at points spread over the run (table, search, training, report), then finish.
    for fraction in (0.15, 0.4, 0.65, 0.9):
        proc = _start(cfg, out)
        time.sleep(duration * fraction / 2)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=300)
    final = _start(cfg, out)
    assert final.wait(timeout=300) == 0, final.stdout.read().decode()[-2000:]
    assert kills >= 2
    assert _results(out) == _results(ref)
    # Everything but wall-clock time is identical in the two reports.
    keys = ("miou", "pixel_accuracy", "per_class_iou", "params", "macs", "latency_ms_predicted")
    a, b = (json.loads((d / "report.json").read_text())["models"] for d in (out, ref))
    assert {k: {f: m[f] for f in keys} for k, m in a.items()} == {
        k: {f: m[f] for f in keys} for k, m in b.items()
    }


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]

"""A reduced pipeline end to end (tiny sizes), its report, and a rerun that only reports."""

import json

import pytest

from fasterseg.cli import main
from fasterseg.config import load_pipeline_config
from fasterseg.errors import ConfigError

TINY = """
data_root: {root}
synthetic: {{enabled: true, train: 6, val: 2, size: [64, 128], seed: 0}}
search:
  data: {{label_stride: 8, workers: 0, scales: [1.0]}}
  space: {{layers: 6, fch: 4, width_choices: [0.5, 1.0], ops: [skip, conv, conv_downup, conv_2x]}}
  latency: {{table: lut.json, height: 64, width: 128, min_time: 0.002}}
  search:
    pretrain_epochs: 1
    epochs: 1
    iters_per_epoch: 2
    crop: [64, 128]
    pretrain_crop: [64, 128]
    batch_size: 2
    pretrain_batch_size: 2
  runtime: {{device: cpu}}
train:
  data: {{crop: [64, 128], scales: [1.0], batch_size: 4, workers: 0}}
  train: {{epochs: 1, iters_per_epoch: 2, ohem_min_kept: 512}}
  runtime: {{device: cpu}}
report: {{height: 64, width: 128, min_time: 0.01}}
"""


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(TINY.format(root=tmp_path / "data"))
    return path


def test_reduced_pipeline_end_to_end_and_rerun(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["pipeline", "--config", str(tiny), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    for i, stage in enumerate(["data", "latency table", "search", "teacher"], start=1):
        assert f"[{i}/8] {stage}" in first
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    assert set(models) == {"teacher", "student_distilled", "student_trained"}
    for m in models.values():
        for key in ("miou", "params", "macs", "latency_ms_predicted", "latency_ms_measured"):
            assert m[key] is not None and m[key] >= 0, key
        assert 0 <= m["miou"] <= 1
    assert models["student_distilled"]["params"] == models["student_trained"]["params"]
    assert set(report["references"]) == {
        "fasterseg-student", "fasterseg-teacher", "lraspp_mobilenet_v3_large"
    }  # fmt: skip
    md = (out / "report.md").read_text()
    assert "Table 1" in md and "Table 2" in md and "student (distilled)" in md
    for name in ("latency_vs_miou", "search", "arch_teacher", "arch_student"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 10_000
    for sub in ("teacher", "student_distilled", "student_trained"):
        assert (out / sub / "best.pt").is_file() and (out / sub / "metrics.json").is_file()

    # A finished pipeline run again skips every stage and reprints the same report.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert main(["pipeline", "--config", str(tiny), "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "search is complete; skipped" in second and "teacher is complete; skipped" in second
    assert "measuring" not in second
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == before
    again = json.loads((out / "report.json").read_text())
    assert again["models"] == report["models"]


def test_pipeline_config_errors_name_the_key(tiny, tmp_path):
    cfg = load_pipeline_config(tiny, ["train.train.epochs=3"])
    assert cfg.train.train.epochs == 3 and cfg.search.space.layers == 6
    with pytest.raises(ConfigError, match=r"unknown key 'search.search.epoch'; did you mean"):
        load_pipeline_config(tiny, ["search.search.epoch=3"])
    demo = load_pipeline_config()
    assert demo.synthetic.enabled and demo.search.space.layers == 8


def test_pipeline_refuses_several_processes(tmp_path, monkeypatch):
    from fasterseg.pipeline import run_pipeline

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="the pipeline runs in one process"):
        run_pipeline(load_pipeline_config(), tmp_path)
    assert not any(tmp_path.iterdir())

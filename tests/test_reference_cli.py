"""The released files through the command line, and a search against the imported 1080Ti
table (issue: use what FasterSeg released)."""

import json
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_DIR
from test_reference_weights import rebuild_state_dict

from fasterseg.cli import main
from fasterseg.config import load_config
from fasterseg.data.synth import generate_dataset
from fasterseg.engine.search import search
from fasterseg.engine.train import teacher_from_checkpoint
from fasterseg.genotype import Genotype
from fasterseg.latency import LatencyTable, genotype_latency
from fasterseg.models import load_genotype

DATA = REFERENCE_DIR
ROOT = Path(__file__).resolve().parents[1]


def _same_architecture(a: Genotype, b: Genotype) -> bool:
    keep = ("fch", "stem_width", "head_width", "branches")
    return {k: v for k, v in a.to_dict().items() if k in keep} == {
        k: v for k, v in b.to_dict().items() if k in keep
    }


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lut") / "lut_1080ti.json"
    assert main(["lut", "import", str(DATA / "latency_lookup_table.npy"), "--out", str(out)]) == 0
    return out


def test_convert_arch_writes_the_published_genotypes(tmp_path):
    for index, name in ((1, "fasterseg-student"), (0, "fasterseg-teacher")):
        out = tmp_path / f"{index}.json"
        assert main(["convert", "arch", str(DATA / f"arch_{index}.pt"), "--out", str(out)]) == 0
        assert _same_architecture(Genotype.load(out), load_genotype(name)), name
    out = tmp_path / "pair.json"
    argv = ["convert", "arch", str(DATA / "arch_1.pt"), "--out", str(out), "--pair", "2,0"]
    assert main(argv) == 0
    assert Genotype.load(out).meta["pair"]["chosen_by"] != "objective"


def test_profile_prints_the_1080ti_latency_and_fps_beside_the_paper(imported, capsys):
    argv = ["profile", "fasterseg-student", "--lut", str(imported), "--height", "1024",
            "--width", "2048"]  # fmt: skip
    assert main(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "latency predicted" in x)
    # 6.413977 ms (the arch file's latency12) is 155.9 FPS; the paper measured 163.9
    assert "6.41 ms = 155.9 FPS on GeForce GTX 1080 Ti" in line and "163.9" in line
    table = LatencyTable.load(imported)
    assert table.fingerprint["imported"] and table.fingerprint["backend"] == "tensorrt"


def test_convert_weights_writes_a_checkpoint_evaluate_reads(tmp_path, capsys):
    weights = tmp_path / "weights1.pt"
    torch.save(rebuild_state_dict("student"), weights)
    out = tmp_path / "student.pt"
    argv = ["convert", "weights", str(weights), "--arch", "fasterseg-student", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["loaded"] and all(report["dropped"].values())  # every drop has its reason
    data = tmp_path / "data"
    generate_dataset(data, train=0, val=1, size=(64, 128), seed=0)
    assert main(["evaluate", str(out), "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 1
    onnx = tmp_path / "student.onnx"
    argv = ["export", str(out), "--onnx", str(onnx), "--height", "64", "--width", "128",
            "--no-measure", "--json"]  # fmt: skip
    assert main(argv) == 0 and onnx.is_file()  # verified against PyTorch by the command
    cfg = load_config(None, [f"data.root={data}"])
    teacher = teacher_from_checkpoint(out, cfg)  # what distill --teacher loads
    assert not teacher.training and sum(p.numel() for p in teacher.parameters()) == 3_421_875


def test_search_against_the_imported_table_predicts_1080ti_milliseconds(imported, tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, train=4, val=1, size=(128, 256), seed=0)
    overrides = [
        f"data.root={data}", "data.workers=0", "data.scales=[1.0]", "space.layers=6",
        f"latency.table={imported}", "latency.allow_mismatch=true", "search.pretrain_epochs=0",
        "search.epochs=1", "search.iters_per_epoch=1", "search.crop=[64,128]",
        "search.batch_size=2", "runtime.device=cpu",
    ]  # fmt: skip
    # The paper's recipe (space, window, 1024x2048 table), only its sizes reduced.
    cfg = load_config(ROOT / "search" / "cityscapes.yaml", overrides)
    assert (cfg.space.fch, cfg.latency.height, cfg.latency.width) == (12, 1024, 2048)
    history = search(cfg, tmp_path / "search", progress=False)
    table = LatencyTable.load(imported)
    row = history["epochs"][-1]
    for role in ("teacher", "student"):
        for cand in row[role]["candidates"].values():
            geno = Genotype.from_dict(cand["genotype"])
            assert cand["latency_ms"] == pytest.approx(
                genotype_latency(geno, table, height=1024, width=2048), rel=1e-12
            )
            assert 1.0 < cand["latency_ms"] < 100.0  # 1080Ti milliseconds, not CPU seconds

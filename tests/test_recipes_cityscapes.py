"""docs/recipes.md's Cityscapes commands, as written, on this CPU.

The commands of "Reproducing the paper on Cityscapes" run on a Cityscapes-layout folder made
by ``fasterseg data synth``; every override reduces a size only (layers, epochs, iterations,
crops, batch, the table's resolution and timing per kernel); space, window, schedule,
optimisers and devices are the recipes'.
"""

import json
import math
from pathlib import Path

import pytest

from fasterseg.cli import main
from fasterseg.config import load_config
from fasterseg.engine.search import PAIRS
from fasterseg.genotype import Genotype
from fasterseg.latency import LatencyTable, genotype_kernels
from fasterseg.models import load_genotype

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "recipes.md"
H, W = 128, 256  # the table's resolution: the 256x512 scenes halved, as the recipe halves


def _documented_commands() -> list[list[str]]:
    """The Cityscapes block of docs/recipes.md, one argv per command."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Reproducing the paper on Cityscapes", 1)[1]
    block = section.split("```", 2)[1]
    return [line.split()[1:] for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _substitute(argv: list[str], paths: dict[str, str]) -> list[str]:
    return [paths.get(a, a) for a in argv]


@pytest.mark.usefixtures("one_torch_thread")
def test_the_documented_cityscapes_commands_run_on_this_cpu(tmp_path, capsys):
    commands = _documented_commands()
    assert [c[0] for c in commands] == ["lut", "search", "train", "distill", "evaluate"]
    data = tmp_path / "cityscapes"
    assert main(["data", "synth", "--out", str(data), "--train", "10", "--val", "2"]) == 0
    table_path = tmp_path / "lut_cityscapes.json"
    # Where the documents write runs/ and /data/cityscapes, this test writes under tmp_path.
    paths = {
        "/data/cityscapes": str(data),
        "runs/cs_search": str(tmp_path / "cs_search"),
        "runs/cs_search/arch_teacher.json": str(tmp_path / "cs_search" / "arch_teacher.json"),
        "runs/cs_search/arch_student.json": str(tmp_path / "cs_search" / "arch_student.json"),
        "runs/cs_teacher": str(tmp_path / "cs_teacher"),
        "runs/cs_teacher/best.pt": str(tmp_path / "cs_teacher" / "best.pt"),
        "runs/cs_student": str(tmp_path / "cs_student"),
        "runs/cs_student/best.pt": str(tmp_path / "cs_student" / "best.pt"),
    }
    table_sizes = [
        f"latency.table={table_path}", f"latency.height={H}", f"latency.width={W}",
        "latency.min_time=0.01",
    ]  # fmt: skip
    search_sizes = [
        *table_sizes, "space.layers=6", "search.pretrain_epochs=1", "search.epochs=3",
        "search.iters_per_epoch=2", "search.pretrain_crop=[64,128]", "search.crop=[64,128]",
    ]  # fmt: skip
    train_sizes = [
        "train.epochs=1", "train.iters_per_epoch=2", "data.crop=[64,128]", "data.batch_size=2",
        "train.ohem_min_kept=1024",  # 2 x 64 x 128 / 16, as the recipe's 12 x 512 x 1024 / 16
    ]  # fmt: skip
    sizes = {"lut": table_sizes, "search": search_sizes, "train": train_sizes,
             "distill": train_sizes, "evaluate": []}  # fmt: skip
    out = ""
    for argv in commands:
        argv = _substitute(argv, paths) + sizes[argv[0]]
        capsys.readouterr()
        assert main(argv) == 0, argv
        out = capsys.readouterr().out

    # the table: this CPU's, at the reduced resolution, where the recipe says
    table = LatencyTable.load(table_path)
    assert (table.fingerprint["device"], table.fingerprint["height"]) == ("cpu", H)

    # the window: the recipe's factors times the published student's latency on that table,
    # summed here from its entries and corrected by the calibration the build fitted
    student = load_genotype("fasterseg-student")
    student_ms = sum(table.get(k).ms for k in genotype_kernels(student, H, W, 19))
    assert table.calibration is not None or table.self_check.disturbed
    if table.calibration is not None:
        student_ms = table.calibration.scale * student_ms + table.calibration.offset_ms
    cfg = load_config(ROOT / "search" / "cityscapes.yaml", search_sizes)
    factors = (cfg.budget.relative_min, cfg.budget.relative_max)
    assert factors == (0.891, 1.006)
    low, high = factors[0] * student_ms, factors[1] * student_ms
    history = json.loads((tmp_path / "cs_search" / "history.json").read_text())
    rows = [r for r in history["epochs"] if r["phase"] == "search"]
    assert len(rows) == 3
    lam = cfg.budget.latency_weight
    for row in rows:
        assert row["window_ms"] == pytest.approx([low, high], rel=1e-12)
        # lambda by the reference's rule from this epoch's two candidates
        assert row["lambda"] == lam
        lats = [row["student"]["candidates"][f"{a}{b}"]["latency_ms"] for a, b in PAIRS]
        if min(lats) <= low:
            lam = lam / 2
        elif max(lats) >= high:
            lam = min(2 * lam, cfg.budget.max_latency_weight)
        assert row["lambda_next"] == lam
        # the window is on the scale of what this CPU's students take (the 1080Ti's 5.7-6.5
        # ms at 1024x2048 is about a hundredth of what they take there)
        chosen = row["student"]["candidates"][row["student"]["chosen"]]["latency_ms"]
        assert low / 2 < chosen < 2 * high, (chosen, low, high)
        assert row["scored_on"]["split"] == "train"

    # the recipe retrains the last epoch's architectures
    assert history["select"] == "last" and history["selected"]["epoch"] == rows[-1]["epoch"]
    for role in ("teacher", "student"):
        geno = Genotype.load(tmp_path / "cs_search" / f"arch_{role}.json")
        assert geno.meta["epoch"] == rows[-1]["epoch"] and geno.meta["select"] == "last"

    # retraining, distillation and evaluation ran on the searched architectures
    assert (tmp_path / "cs_teacher" / "best.pt").is_file()
    assert (tmp_path / "cs_student" / "best.pt").is_file()
    scores = json.loads(out)
    assert 0 <= scores["miou"] <= 1 and math.isfinite(scores["miou"])

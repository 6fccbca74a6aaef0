"""Reports: genotype layout and drawings, plots, report.md / report.json."""

import json
import math
import os
import random
import subprocess
import sys

import pytest
from PIL import Image

from fasterseg.genotype import Branch, Genotype
from fasterseg.models import load_genotype
from fasterseg.models.network import plan_layers
from fasterseg.report import (
    HEAD,
    STEM,
    draw_genotype,
    format_report_summary,
    format_width,
    layout_genotype,
    plot_latency_vs_miou,
    plot_search_trajectory,
    write_report,
)

CHOICES = (1 / 3, 0.5, 2 / 3, 5 / 6, 1.0)
OP_NAMES = ("skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup")


def random_genotype(num_branches: int, num_layers: int, seed: int, share: int = 0) -> Genotype:
    """A valid random genotype; every branch starts with branch 0's first ``share`` layers."""
    rng = random.Random(seed)
    branches = []
    for _ in range(num_branches):
        k = min(share, num_layers - 1) if branches else 0
        ops = list(branches[0].ops[:k]) if k else []
        path = list(branches[0].path[:k]) if k else [0]
        widths = list(branches[0].widths[:k]) if k else []
        while len(path) < num_layers:
            path.append(min(2, path[-1] + (rng.random() < 0.3)))
        ops += [rng.choice(OP_NAMES) for _ in range(num_layers - len(ops))]
        widths += [rng.choice(CHOICES) for _ in range(num_layers - 1 - len(widths))] + [2 / 3]
        branches.append(Branch(tuple(ops), tuple(path), tuple(widths)))
    return Genotype(f"random-{num_branches}", 12, 0.5, 2 / 3, CHOICES, tuple(branches)).validate(
        OP_NAMES
    )


def _check_png(path, size=(1600, 700)):
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == size
        # A drawing, not a blank canvas: many distinct colours.
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50


def test_layout_published_student():
    lay = layout_genotype(load_genotype("fasterseg-student"))
    assert len(lay.nodes) == 10 + 9 - 3
    shared = [n for n in lay.nodes if n.shared]
    assert [n.layer for n in shared] == [0, 1, 2]
    assert all(n.branches == (0, 1) for n in shared)
    a, b = ([lay.nodes[i] for i in nodes] for nodes in lay.branch_nodes)
    assert a[:3] == b[:3]
    assert [n.layer for n in a if n.stride == 2] == [3, 7]
    assert [n.layer for n in b if n.stride == 2] == [5]
    assert [n.scale for n in a] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert [n.scale for n in b] == [0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert [n.op for n in a[3:5]] == ["conv_downup", "conv_2x_downup"]
    assert [format_width(n.width) for n in b[6:]] == ["4/12", "12/12", "8/12"]
    assert [n.x for n in a] == [float(i) for i in range(10)]
    # Branch A's row is above branch B's inside a lane; shared nodes sit between them.
    assert a[3].y > b[3].y and a[3].y - b[3].y >= lay.box_height
    assert b[3].y < shared[0].y < a[3].y and shared[0].y == pytest.approx(0.0)
    assert -1.5 < a[4].y < -0.5 and -2.5 < a[8].y < -1.5
    # Edges: one from the stem (shared layer 0), downward edges after stride-2 layers.
    assert [(e.src, e.dst) for e in lay.edges if e.src == STEM] == [(STEM, shared[0].node)]
    down = sorted((lay.nodes[e.src].layer, e.branches) for e in lay.edges if e.down)
    assert down == [(3, (0,)), (5, (1,)), (7, (0,))]
    assert [(e.src, e.branches) for e in lay.edges if e.dst == HEAD] == [
        (a[-1].node, (0,)),
        (b[-1].node, (1,)),
    ]
    # Every node has exactly one incoming edge (a tree): 16 layer edges + 2 into the head.
    assert len(lay.edges) == 16 + 2
    # The features each branch fuses in the head: A's layer-2 and layer-6 outputs, B's layer-4.
    taps = [(t.branch, lay.nodes[t.node].layer, t.scale) for t in lay.taps]
    assert taps == [(0, 3, 0), (0, 7, 1), (1, 5, 0)]


def test_layout_published_teacher_shares_four_layers():
    lay = layout_genotype(load_genotype("fasterseg-teacher"))
    assert [n.layer for n in lay.nodes if n.shared] == [0, 1, 2, 3]
    a, b = ([lay.nodes[i] for i in nodes] for nodes in lay.branch_nodes)
    # Layer 4 has the same op, scale and width in both branches but another stride: not shared.
    assert (a[4].op, a[4].scale, a[4].width) == (b[4].op, b[4].scale, b[4].width)
    assert a[4].node != b[4].node
    assert [n.layer for n in a if n.stride == 2] == [5, 13]
    assert [n.layer for n in b if n.stride == 2] == [4]
    assert len(lay.nodes) == 32 - 4


@pytest.mark.parametrize("seed", range(6))
def test_layout_shares_like_the_network(seed):
    geno = random_genotype(1 + seed % 3, 3 + seed, seed, share=seed % 4)
    lay = layout_genotype(geno)
    plan = plan_layers(geno)
    assert len(lay.nodes) == len(plan.layers)
    assert lay.branch_nodes == plan.branch_nodes
    for b, nodes in enumerate(lay.branch_nodes):
        branch = geno.branches[b]
        assert [lay.nodes[n].scale for n in nodes] == list(branch.path)
        assert [lay.nodes[n].stride for n in nodes] == list(branch.strides())
        assert not lay.nodes[nodes[-1]].shared
    # Nodes of different branches at the same layer never overlap.
    by_pos = {}
    for n in lay.nodes:
        by_pos.setdefault(n.layer, []).append(n.y)
    for ys in by_pos.values():
        ys.sort()
        assert all(y1 - y0 >= lay.box_height - 1e-9 for y0, y1 in zip(ys, ys[1:]))


def test_format_width():
    assert format_width(1 / 3) == "4/12"
    assert format_width(1.0) == "12/12"
    assert format_width(0.3) == "0.30"


@pytest.mark.parametrize("name", ["fasterseg-student", "fasterseg-teacher"])
def test_draw_published(name, tmp_path):
    out = draw_genotype(load_genotype(name), tmp_path / "plots" / f"{name}.png")
    assert out == tmp_path / "plots" / f"{name}.png"
    _check_png(out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left


@pytest.mark.parametrize(("branches", "layers"), [(1, 3), (3, 6)])
def test_draw_random(branches, layers, tmp_path):
    geno = random_genotype(branches, layers, seed=branches, share=2)
    _check_png(draw_genotype(geno, tmp_path / "g.png", title="custom title"))


def test_draw_rejects_invalid_genotype(tmp_path):
    bad = Genotype("bad", 12, 0.5, 2 / 3, CHOICES, (Branch(("conv",), (1,), (2 / 3,)),))
    with pytest.raises(ValueError, match=r"branches\[0\]\.path\[0\]"):
        draw_genotype(bad, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


POINTS = [
    {"name": "teacher", "latency_ms": 180.0, "miou": 0.41, "kind": "searched"},
    {"name": "student", "latency_ms": 41.0, "miou": 0.37, "kind": "searched"},
    {"name": "fasterseg-student", "latency_ms": 55.0, "miou": None, "kind": "reference"},
    {"name": "lraspp", "latency_ms": 35.5, "miou": 0.33, "kind": "peer"},
]


def test_plot_latency_vs_miou(tmp_path):
    _check_png(plot_latency_vs_miou(POINTS, tmp_path / "a.png"), (1000, 650))
    only_scored = [p for p in POINTS if p["miou"] is not None]
    _check_png(plot_latency_vs_miou(only_scored, tmp_path / "b.png"), (1000, 650))
    with pytest.raises(ValueError, match="'kind' must be one of"):
        plot_latency_vs_miou([{**POINTS[0], "kind": "ours"}], tmp_path / "c.png")


def _history(search_epochs: int = 4) -> dict:
    rows = [{"epoch": 1, "phase": "pretrain", "loss_weight": 2.0}]
    for e in range(2, 2 + search_epochs):
        rows.append(
            {
                "epoch": e,
                "phase": "search",
                "loss_weight": 1.5 / e,
                "lambda": 0.01 * 2**e,
                "student": {
                    "candidates": {
                        "20": {"latency_ms": 20.0 + e, "miou": 0.1 * e},
                        "21": {"latency_ms": 25.0 - e, "miou": 0.09 * e},
                    },
                    "chosen": "20" if e % 2 else "21",
                    "miou": {"8s_32s": 0.1 * e, "16s_32s": 0.09 * e},
                },
                "teacher": {"miou": {"8s": 0.1, "16s_32s": 0.12 * e, "32s": math.nan}},
            }
        )
    return {"epochs": rows, "best": {"epoch": 3, "objective": 0.2}}


def test_plot_search_trajectory(tmp_path):
    _check_png(plot_search_trajectory(_history(), tmp_path / "s.png"), (1000, 1000))
    pretrain_only = {"epochs": _history()["epochs"][:1], "best": None}
    _check_png(plot_search_trajectory(pretrain_only, tmp_path / "p.png"), (1000, 1000))


CLASSES = ["road", "sidewalk", "car"]


def _model(arch, miou, latency):
    return {
        "arch": arch,
        "miou": miou,
        "pixel_accuracy": None if miou is None else 0.9,
        "per_class_iou": {"road": 0.95, "sidewalk": None, "car": 0.5},
        "train_seconds": 3725.0,
        "params": 4_400_000,
        "macs": 28_200_000_000,
        "latency_ms_predicted": latency,
        "latency_ms_measured": None,
        "fps": None,
    }


def _report():
    ref = {
        "params": 3_450_000,
        "macs": 27_800_000_000,
        "latency_ms_predicted": None,
        "latency_ms_measured": 12.5,
        "fps": 80.0,
    }
    return {
        "title": "FasterSeg on synthetic scenes",
        "created": "2025-01-02T03:04:05",
        "device": {"cpu": "Test CPU", "threads": 2, "torch": "2.5.0"},
        "resolution": [256, 512],
        "dataset": {"root": "data/synth", "train": 40, "val": 10, "classes": CLASSES},
        "models": {
            "teacher": _model("arch_teacher.json", 0.4123, 30.0),
            "student_distilled": _model("arch_student.json", 0.3555, 10.0),
            "student_trained": _model("arch_student.json", None, 10.0),
        },
        "references": {
            "fasterseg-student": ref,
            "fasterseg-teacher": ref,
            "lraspp_mobilenet_v3_large": ref,
        },
        "search": {
            "epochs": 4,
            "seconds": 125.0,
            "select": "last",
            "selected_epoch": 4,
            "scored_on": {
                "split": "train",
                "part": "held-out 0.2 of the architecture half",
                "images": 4,
            },
            "lambda_final": 0.02,
        },
        "plots": {"latency_vs_miou": "plots/latency_vs_miou.png", "student": "plots/s.png"},
        "notes": ["A tiny run for the test."],
    }


def test_write_report(tmp_path):
    report = _report()
    json_path, md_path = write_report(report, tmp_path / "run")
    assert (json_path, md_path) == (
        tmp_path / "run" / "report.json",
        tmp_path / "run" / "report.md",
    )
    assert json.loads(json_path.read_text()) == report
    md = md_path.read_text()
    assert md.startswith("# FasterSeg on synthetic scenes\n")
    for name in ("teacher", "student (distilled)", "student (trained alone)", "lraspp_mobilenet"):
        assert name in md
    assert "| model | architecture | mIoU (%) | pixel accuracy (%) | training time |" in md
    assert "| teacher | `arch_teacher.json` | 41.2 | 90.0 | 1 h 02 min |" in md
    assert "| student (trained alone) | `arch_student.json` | - | - | 1 h 02 min |" in md
    assert "| sidewalk | - | - | - |" in md
    assert "| road | 95.0 | 95.0 | 95.0 |" in md
    assert "| teacher | 4.40 | 28.20 | 30.00 | - | - |" in md
    assert "| fasterseg-student (reference) | 3.45 | 27.80 | - | 12.50 | 80.0 |" in md
    assert "![Measured latency vs mIoU](plots/latency_vs_miou.png)" in md
    assert "- A tiny run for the test." in md
    assert "256x512" in md and "Test CPU" in md and "2 threads" in md
    assert "best validation mIoU is 41.2% (teacher)" in md
    assert (
        "the architectures come from epoch 4, the last epoch (`search.select: last`), with "
        "branch pairs and epochs scored on 4 'train' images held out of the architecture half, "
        "not on the validation split (final latency weight lambda 0.02)." in md
    )


@pytest.mark.parametrize(
    ("reached", "sentence"),
    [(True, "; a chosen student was inside it."),
     (False, "; **no chosen student was ever inside it**.")],
)  # fmt: skip
def test_report_says_whether_the_student_reached_its_window(tmp_path, reached, sentence):
    report = _report()
    report["search"] = {**report["search"], "window_ms": [5.714, 6.452], "window_reached": reached}
    _, md_path = write_report(report, tmp_path)
    assert f"The student's latency window was 5.71-6.45 ms{sentence}" in md_path.read_text()


def test_write_report_without_search_and_nan(tmp_path):
    report = {**_report(), "search": None, "plots": {}, "notes": []}
    report["models"]["teacher"]["miou"] = math.nan
    json_path, md_path = write_report(report, tmp_path)
    # NaN is not JSON: it is written as null, shown as "-".
    assert json.loads(json_path.read_text())["models"]["teacher"]["miou"] is None
    md = md_path.read_text()
    assert "The search ran" not in md and "## Plots" not in md and "## Notes" not in md
    assert "| teacher | `arch_teacher.json` | - |" in md


def test_format_report_summary():
    text = format_report_summary(_report())
    lines = text.splitlines()
    assert lines[0] == "FasterSeg on synthetic scenes"
    assert len(lines) == 1 + 3 + 3
    assert "teacher" in lines[1] and "41.2%" in lines[1] and "30.00 ms predicted" in lines[1]
    assert "mIoU     -  " in lines[3] and "-%" not in text
    assert "12.50 ms measured" in lines[4] and "80.0 FPS" in lines[4]


def test_no_matplotlib_at_import_and_no_pyplot(tmp_path):
    code = (
        "import sys\n"
        "import fasterseg.report as r\n"
        "assert 'matplotlib' not in sys.modules\n"
        "from fasterseg.genotype import Branch, Genotype\n"
        "g = Genotype('g', 12, 1.0, 1.0, (1.0,), (Branch(('conv',), (0,), (1.0,)),))\n"
        f"r.draw_genotype(g, {str(tmp_path / 'g.png')!r})\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
    _check_png(tmp_path / "g.png")

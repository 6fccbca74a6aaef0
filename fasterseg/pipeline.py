"""The end-to-end run: data -> latency table -> search -> decode -> train the teacher ->
distill the student -> train the student alone -> evaluate -> measure -> report.

Every stage checks its outputs first: complete ones are skipped, partial ones resume (the
training and search loops continue from their checkpoints), so rerunning a finished pipeline
only rebuilds the report from what is on disk.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .config import Config, PipelineConfig, save_config
from .errors import ConfigError
from .genotype import Genotype
from .io import atomic_write_json

log = logging.getLogger(__name__)

STAGES = (
    "data",
    "latency table",
    "search",
    "teacher",
    "student (distilled)",
    "student (trained alone)",
    "latency",
    "report",
)


def _with_root(cfg: Config, root: str, table: str | None = None) -> Config:
    cfg = replace(cfg, data=replace(cfg.data, root=root))
    if table is not None:
        cfg = replace(cfg, latency=replace(cfg.latency, table=table))
    return cfg


def _complete_training(out: Path, epochs: int) -> bool:
    metrics = _read_json(out / "metrics.json")
    return metrics is not None and len(metrics["epochs"]) >= epochs


def _count_images(root: Path) -> dict[str, int]:
    """Images per split (train, val) of a Cityscapes-layout folder."""
    return {
        split: len(list((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")))
        for split in ("train", "val")
    }


def _ensure_data(pcfg: PipelineConfig, root: Path, say: Callable[[str], None]) -> None:
    syn = pcfg.synthetic
    if not syn.enabled:
        return
    from .data.synth import generate_dataset

    if _count_images(root) == {"train": syn.train, "val": syn.val}:
        say(f"synthetic data in {root} is complete ({syn.train} train, {syn.val} val)")
        return
    summary = generate_dataset(root, train=syn.train, val=syn.val, size=syn.size, seed=syn.seed)
    say(f"wrote {summary['images']} synthetic street scenes to {root}")


@dataclass(frozen=True)
class Searched:
    """What the stages up to the trained teacher leave in a pipeline folder: the resolved
    search and training configs, the latency table's path, the search history and
    architectures, and the teacher's checkpoint (a study starts from here)."""

    out: Path
    root: Path
    table_path: Path
    search_cfg: Config
    train_cfg: Config
    history: dict[str, Any]
    teacher_arch: Genotype
    student_arch: Genotype

    @property
    def teacher_checkpoint(self) -> Path:
        """The trained teacher's best checkpoint (the distillation teacher)."""
        return self.out / "teacher" / "best.pt"


def run_pipeline(
    pcfg: PipelineConfig,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    say: Callable[[str], None] = log.info,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) every stage into ``out_dir``; return the report dict.

    ``data_root`` replaces ``pcfg.data_root`` and turns off synthetic data generation.
    ``say`` receives one line per stage event.
    """
    from .engine.train import teacher_from_checkpoint, train

    done = search_and_teacher(pcfg, out_dir, data_root=data_root, say=say, progress=progress)
    out, train_cfg = done.out, done.train_cfg
    epochs = train_cfg.train.epochs
    runs = {"teacher": (done.teacher_arch, _read_json(out / "teacher" / "metrics.json"))}
    for i, key in enumerate(("student_distilled", "student_trained"), start=4):
        _stage(say, i, f"{done.student_arch.name}, {epochs} epochs")
        run_dir = out / key
        if _complete_training(run_dir, epochs):
            say(f"{key} is complete; skipped")
        else:
            teacher = None
            if key == "student_distilled":
                teacher = teacher_from_checkpoint(done.teacher_checkpoint, train_cfg)
            train(train_cfg, done.student_arch, run_dir, teacher=teacher, progress=progress)
        runs[key] = (done.student_arch, _read_json(run_dir / "metrics.json"))

    _stage(say, 6, f"{pcfg.report.height}x{pcfg.report.width} on this CPU")
    measured = _measure_all(pcfg, out, runs, done.table_path, done.search_cfg, say)
    latency = measured["models"]

    _stage(say, 7)
    return _build_report(
        pcfg, out, runs, latency, done.history, done.root, done.search_cfg, measured["table"]
    )


def _stage(say: Callable[[str], None], i: int, text: str = "") -> None:
    say(f"[{i + 1}/{len(STAGES)}] {STAGES[i]}{': ' + text if text else ''}")


def search_and_teacher(
    pcfg: PipelineConfig,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    say: Callable[[str], None] = log.info,
    progress: bool | None = None,
) -> Searched:
    """Run (or resume) the pipeline's stages up to the trained teacher: data, latency table,
    search, teacher. Finished stages are skipped, as in :func:`run_pipeline`."""
    from .engine.search import search, search_table
    from .engine.train import train
    from .models import load_genotype

    if os.environ.get("WORLD_SIZE", "1") != "1":
        raise ConfigError(
            "the pipeline runs in one process (its data, table and report stages are not "
            "shared out); run `fasterseg search`, `train` and `distill` under torchrun instead"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if data_root is not None:
        pcfg = replace(
            pcfg, data_root=str(data_root), synthetic=replace(pcfg.synthetic, enabled=False)
        )
    root = Path(pcfg.data_root)
    table_path = Path(pcfg.search.latency.table)
    if not table_path.is_absolute():
        table_path = out / table_path
    search_cfg = _with_root(pcfg.search, str(root), str(table_path))
    train_cfg = _with_root(pcfg.train, str(root))
    train_cfg = replace(train_cfg, space=search_cfg.space)
    save_config(pcfg, out / "config.yaml")

    _stage(say, 0)
    _ensure_data(pcfg, root, say)

    _stage(say, 1, f"{search_cfg.latency.height}x{search_cfg.latency.width}, {table_path}")
    table = search_table(search_cfg, progress=progress is not False)

    s = search_cfg.search
    total = s.pretrain_epochs + s.epochs
    _stage(say, 2, f"{s.pretrain_epochs} pretraining + {s.epochs} search epochs")
    search_dir = out / "search"
    history = _read_json(search_dir / "history.json")
    if history is not None and len(history["epochs"]) >= total:
        say("search is complete; skipped")
    else:
        history = search(search_cfg, search_dir, table, progress=progress)
    teacher_arch = load_genotype(search_dir / "arch_teacher.json")
    student_arch = load_genotype(search_dir / "arch_student.json")

    epochs = train_cfg.train.epochs
    _stage(say, 3, f"{teacher_arch.name}, {epochs} epochs")
    if _complete_training(out / "teacher", epochs):
        say("teacher is complete; skipped")
    else:
        train(train_cfg, teacher_arch, out / "teacher", progress=progress)
    return Searched(
        out, root, table_path, search_cfg, train_cfg, history, teacher_arch, student_arch
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    return json.loads(path.read_text()) if path.is_file() else None


def _measure_all(
    pcfg: PipelineConfig,
    out: Path,
    runs: dict[str, tuple[Genotype, dict[str, Any]]],
    table_path: Path,
    search_cfg: Config,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Params, MACs, predicted and measured latency of every model, and what the table says
    of its own predictions; cached in latency.json. The models are timed together in the
    interleaved rounds of a table's kernels (``time_interleaved``)."""
    from .latency import build_table, genotype_kernels, prediction_kind
    from .latency.build import paper_check_spaces
    from .latency.measure import ROUNDS
    from .models import load_genotype

    rep = pcfg.report
    h, w = rep.height, rep.width
    cache_path = out / "latency.json"
    cache = _read_json(cache_path) or {}
    if cache.get("resolution") != [h, w] or "table" not in cache:
        cache = {"resolution": [h, w], "models": {}}
    genotypes = {key: arch for key, (arch, _) in runs.items()}
    genotypes["fasterseg-student"] = load_genotype("fasterseg-student")
    genotypes["fasterseg-teacher"] = load_genotype("fasterseg-teacher")
    classes = search_cfg.space.num_classes
    same_res = (search_cfg.latency.height, search_cfg.latency.width) == (h, w)
    lut = table_path if same_res else out / "lut_report.json"
    specs = [s for g in genotypes.values() for s in genotype_kernels(g, h, w, classes)]
    lat = search_cfg.latency
    settings = replace(lat, table=str(lut), height=h, width=w, threads=rep.threads or lat.threads)
    table = build_table(
        settings, space=search_cfg.space, specs=specs, progress=False,
        check_spaces=paper_check_spaces(search_cfg.space),  # it profiles the published two
    )  # fmt: skip
    stat = table.fingerprint.get("statistic", "min")
    cache["table"] = {
        "path": str(lut),
        "predicted": prediction_kind(table),
        "self_check": None if table.self_check is None else table.self_check.describe(),
        "measured": f"{_stat_words(stat)} of the least disturbed of {ROUNDS} interleaved rounds",
    }
    todo = {k: g for k, g in genotypes.items() if k not in cache["models"]}
    peer = None
    if rep.peer and "lraspp_mobilenet_v3_large" not in cache["models"]:
        peer = {"lraspp_mobilenet_v3_large": _peer(h, w, classes)}
    entries = genotype_speeds(
        todo, table, h, w, classes, measure=rep.measure, min_time=rep.min_time, extra=peer
    )
    for key, entry in entries.items():
        cache["models"][key] = entry
        say(f"{key}: {entry['latency_ms_measured'] or entry['latency_ms_predicted'] or 0:.2f} ms")
    atomic_write_json(cache_path, cache)
    return cache


def genotype_speeds(
    genotypes: Mapping[str, Genotype],
    table: Any,
    h: int,
    w: int,
    classes: int,
    *,
    measure: bool = True,
    min_time: float = 1.0,
    extra: Mapping[str, tuple[dict[str, Any], Callable[[], Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Params, MACs, predicted latency (calibrated and plain sum, from ``table``, which must
    hold their kernels at ``h`` x ``w``) and, with ``measure``, measured latency of each
    genotype: all timed together in the interleaved rounds of a table's kernels, with the
    table's threads and statistic; equal genotypes are timed once. ``extra`` adds modules
    to time beside them (key -> (entry, factory of (module, input)))."""
    from .latency import genotype_latency
    from .latency.measure import ROUNDS, network_input, time_interleaved
    from .models import create_model
    from .profile import profile_genotype

    timed: dict[str, Any] = {}
    twins: dict[str, str] = {}
    for key, geno in genotypes.items():
        twin = next((k for k, g in genotypes.items() if k in timed and g == geno), None)
        if twin is not None:  # the same architecture (distilled / trained student): time once
            twins[key] = twin
            continue
        entry = dict(profile_genotype(geno, height=h, width=w, num_classes=classes))
        entry["latency_ms_predicted"] = genotype_latency(
            geno, table, height=h, width=w, num_classes=classes
        )
        entry["latency_ms_predicted_sum"] = genotype_latency(
            geno, table, height=h, width=w, num_classes=classes, calibrated=False
        )
        entry["latency_ms_measured"] = None
        timed[key] = (entry, lambda g=geno: (create_model(g, classes).eval(), network_input(h, w)))
    timed.update(extra or {})
    if measure and timed:
        timing = time_interleaved(
            {k: factory for k, (_, factory) in timed.items()},
            threads=table.fingerprint.get("threads"), min_time=min_time, rounds=ROUNDS,
            statistic=table.fingerprint.get("statistic", "min"),
        )  # fmt: skip
        for key, m in timing.measurements.items():
            timed[key][0]["latency_ms_measured"] = m.ms
            timed[key][0]["latency_measured_disturbed"] = m.disturbed
    out = {key: entry for key, (entry, _) in timed.items()}
    for key, twin in twins.items():
        out[key] = out[twin]
    return out


def _peer(h: int, w: int, classes: int) -> tuple[dict[str, Any], Callable[[], Any]]:
    """torchvision's LR-ASPP MobileNetV3-Large (random weights): params, MACs, and how to
    build it for timing."""
    import copy

    import thop

    from .latency.measure import network_input
    from .models.peer import LRASPPLogits

    model = LRASPPLogits(classes).eval()
    with torch.inference_mode():
        macs, _ = thop.profile(
            copy.deepcopy(model), inputs=(torch.zeros(1, 3, h, w),), verbose=False
        )
    entry = {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": int(macs),
        "latency_ms_predicted": None,
        "latency_ms_measured": None,
    }
    return entry, lambda: (model, network_input(h, w))


#: How the report's note names the figure each timing keeps (latency.statistic).
_STATISTIC_WORDS = {"median": "median of the timed calls", "min": "fastest of the timed calls"}


def _stat_words(statistic: str) -> str:
    return _STATISTIC_WORDS.get(statistic, statistic)


def _fps(ms: float | None) -> float | None:
    return None if not ms else 1000.0 / ms


def _speed(lat: dict[str, Any]) -> dict[str, Any]:
    """The size and speed fields of one model's latency entry, with its FPS."""
    keys = ("params", "macs", "latency_ms_predicted", "latency_ms_measured")
    return {**{k: lat[k] for k in keys}, "fps": _fps(lat["latency_ms_measured"])}


def _point(name: str, lat: dict[str, Any], miou: float | None, kind: str) -> dict[str, Any]:
    """A point of the latency/mIoU plot: measured latency where there is one."""
    ms = lat["latency_ms_measured"] or lat["latency_ms_predicted"]
    return {"name": name, "latency_ms": ms, "miou": miou, "kind": kind}


def _build_report(
    pcfg: PipelineConfig,
    out: Path,
    runs: dict[str, tuple[Genotype, dict[str, Any]]],
    latency: dict[str, dict[str, Any]],
    history: dict[str, Any] | None,
    root: Path,
    search_cfg: Config,
    table_info: dict[str, Any],
) -> dict[str, Any]:
    from .data.labels import get_label_table
    from .report import draw_genotype, plot_latency_vs_miou, plot_search_trajectory, write_report

    plots = out / "plots"
    models = {}
    points = []
    for key, (arch, metrics) in runs.items():
        final = metrics.get("final") or {}
        lat = latency[key]
        models[key] = {
            "arch": arch.name,
            "miou": final.get("miou"),
            "pixel_accuracy": final.get("pixel_accuracy"),
            "per_class_iou": final.get("per_class_iou", {}),
            "train_seconds": metrics.get("train_seconds"),
            **_speed(lat),
        }
        points.append(_point(key.replace("_", " "), lat, final.get("miou"), "searched"))
    references = {}
    for key in ("fasterseg-student", "fasterseg-teacher", "lraspp_mobilenet_v3_large"):
        if key not in latency:
            continue
        references[key] = _speed(latency[key])
        kind = "peer" if key.startswith("lraspp") else "reference"
        points.append(_point(key, latency[key], None, kind))
    plot_latency_vs_miou(points, plots / "latency_vs_miou.png")
    draw_genotype(runs["teacher"][0], plots / "arch_teacher.png", title="searched teacher")
    draw_genotype(runs["student_trained"][0], plots / "arch_student.png", title="searched student")
    search_info = None
    if history is not None:
        plot_search_trajectory(history, plots / "search.png")
        rows = history["epochs"]
        search_info = {
            "epochs": len(rows),
            "seconds": sum(r.get("seconds", 0.0) for r in rows),
            "select": history.get("select", "best"),
            "selected_epoch": (history.get("selected") or history.get("best") or {}).get("epoch"),
            "scored_on": history.get("scored_on"),
            "lambda_final": next(
                (r["lambda_next"] for r in reversed(rows) if "lambda_next" in r), None
            ),
            "window_ms": next((r["window_ms"] for r in reversed(rows) if "window_ms" in r), None),
            "window_reached": history.get("window_reached"),
        }
    table = get_label_table(search_cfg.data.dataset)
    study = _read_json(out / "study.json")
    sections = []
    if study is not None:
        from .study.report import render_section

        sections.append("\n".join(["", *render_section(study, level=2)]).rstrip())
    report = {
        "title": "fasterseg pipeline report",
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "resolution": [pcfg.report.height, pcfg.report.width],
        "dataset": {"root": str(root), **_count_images(root), "classes": list(table.class_names)},
        "models": models,
        "references": references,
        "search": search_info,
        "latency_table": table_info,
        "study": None if study is None else {
            k: study.get(k) for k in ("search", "distillation", "spread", "conclusions")
        },
        "sections": sections,
        "plots": {
            "latency_vs_miou": "plots/latency_vs_miou.png",
            "search": "plots/search.png",
            "teacher": "plots/arch_teacher.png",
            "student": "plots/arch_student.png",
        },
        "notes": [
            "mIoU and pixel accuracy: validation split after the last training epoch.",
            f"Predicted latency: {table_info['predicted']}; measured: end-to-end eval "
            f"forward at batch 1 on this CPU ({table_info['measured']}).",
            *(
                [f"The latency table's {table_info['self_check']}."]
                if table_info.get("self_check")
                else []
            ),
            "The published FasterSeg architectures and LR-ASPP are untrained here; only their "
            "size and speed are compared.",
        ],
    }
    write_report(report, out)
    return report

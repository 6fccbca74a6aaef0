"""``fasterseg study``: the searched student against random architectures of the same predicted
latency and against the published student, each trained with the same recipe and several
seeds, and the distillation ablation paired by seed.

The study starts where a pipeline folder is (running the pipeline's stages up to the trained
teacher when they are missing, as :func:`fasterseg.pipeline.search_and_teacher` does), then
trains every (model, seed) pair in its own resumable run under ``study/runs/MODEL/seedS``. A
killed study resumes where it stopped: finished runs are read back, a partial one resumes
from its checkpoint, and every run is a function of its seed, so the numbers are those of an
uninterrupted study.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import Config, PipelineConfig, SpaceConfig, config_to_dict
from ..errors import ConfigError
from ..genotype import Genotype
from ..io import atomic_write_json

log = logging.getLogger(__name__)

#: The models every study trains besides the random ones, in the order they run.
SEARCHED, DISTILLED, PUBLISHED = "searched", "searched_distilled", "published"


def random_student(
    space: SpaceConfig, rng: random.Random, lasts: tuple[int, ...], *, name: str = "random"
) -> Genotype:
    """A random student of ``space`` that is a single path of its supernet, drawn with
    ``rng``: an operator for every cell (never ``skip``: a derived network has none) and a
    width for every searched output, then for each branch of ``lasts`` its down layers,
    uniformly. Branches that pass one cell run its operator and width, as in the supernet, so
    the supernet can score the result with its shared weights (:func:`fasterseg.decode.encode`).
    Paths that would enter one cell from two inputs are drawn again."""
    from ..arch import role_widths
    from ..decode import random_one_hot, trace, with_paths
    from ..errors import GenotypeError

    L, ops, choices = space.layers, tuple(space.ops), tuple(space.width_choices)
    stem_w, head_w = role_widths(space, "student")
    arch = random_one_hot(
        L, ops, choices, rng, allowed_ops=[o for o in ops if o != "skip"] or list(ops)
    )
    while True:
        paths = []
        for last in lasts:
            downs = set(rng.sample(range(L - 1), last))
            paths.append([sum(d < i for d in downs) for i in range(L)])
        try:
            pinned = with_paths(arch, paths, ops=ops, width_choices=choices)
        except GenotypeError:
            continue
        return trace(
            pinned, lasts, name=name, ops=ops, fch=space.fch, stem_width=stem_w,
            head_width=head_w, width_choices=choices,
        )  # fmt: skip


def sample_matched(
    space: SpaceConfig,
    latency_of: Callable[[Genotype], float],
    window_ms: tuple[float, float],
    count: int,
    *,
    seed: int = 0,
    max_draws: int = 10000,
) -> tuple[list[Genotype], int]:
    """``count`` random student architectures of ``space`` (:func:`random_student`, with the
    branch pair (2, 0) or (2, 1) at equal chance) whose ``latency_of`` lies in ``window_ms``
    (inclusive), drawn with ``random.Random(seed)``. Returns them with the number of draws it
    took; raises ConfigError naming the window when ``max_draws`` draws were not enough."""
    rng = random.Random(seed)
    low, high = window_ms
    kept: list[Genotype] = []
    draws = 0
    while len(kept) < count:
        if draws >= max_draws:
            raise ConfigError(
                f"study: only {len(kept)} of {count} random architectures had a predicted "
                f"latency in {low:.3f}-{high:.3f} ms after {draws} draws (study.max_draws); "
                "widen the window with study.latency_tolerance or raise study.max_draws"
            )
        draws += 1
        geno = random_student(
            space, rng, (2, rng.choice((0, 1))), name=f"random-{len(kept):02d}"
        )
        if low <= latency_of(geno) <= high:
            kept.append(geno)
    return kept, draws


def chance_miou(cfg: Config) -> float:
    """The validation mIoU of predicting every pixel as the most frequent class of the
    validation labels: the floor a trained model must clear."""
    import torch

    from ..engine.run import val_dataset
    from ..metrics import ConfusionMatrix

    ds = val_dataset(cfg)
    counts = torch.zeros(ds.num_classes + 1, dtype=torch.int64)
    masks = [ds[i][1] for i in range(len(ds))]
    for mask in masks:
        valid = mask[(mask >= 0) & (mask < ds.num_classes)]
        counts[: ds.num_classes] += torch.bincount(valid.flatten(), minlength=ds.num_classes)
    top = int(counts[: ds.num_classes].argmax())
    conf = ConfusionMatrix(ds.num_classes)
    for mask in masks:
        conf.update(torch.full_like(mask, top), mask)
    return float(conf.compute()["miou"])


def run_dir(out: Path, model: str, seed: int) -> Path:
    """Where the run of ``model`` with ``seed`` lives in a study folder ``out``."""
    return out / "study" / "runs" / model / f"seed{seed}"


def _final_miou(path: Path) -> float:
    metrics = json.loads((path / "metrics.json").read_text())
    final = metrics.get("final") or {}
    if final.get("miou") is None:
        raise ConfigError(f"{path}/metrics.json: the run has no validation mIoU")
    return float(final["miou"])


def run_study(
    pcfg: PipelineConfig,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    say: Callable[[str], None] = log.info,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study of ``pcfg.study`` in the pipeline folder ``out_dir``; write
    ``study.json``, ``study.md`` and the study's plots there; return the study dict.

    ``data_root`` replaces the pipeline's data as in :func:`fasterseg.pipeline.run_pipeline`.
    ``say`` gets a line per run: which of how many, and the time left estimated from the
    runs this call finished.
    """
    from ..engine.train import teacher_from_checkpoint, train
    from ..pipeline import _complete_training, _read_json, genotype_speeds, search_and_teacher
    from ..report import _duration
    from . import report as study_report
    from .stats import paired_effect, search_vs_random, spread, summary

    sc = pcfg.study
    done = search_and_teacher(pcfg, out_dir, data_root=data_root, say=say, progress=progress)
    out, train_cfg, search_cfg = done.out, done.train_cfg, done.search_cfg
    lat = search_cfg.latency
    h, w, classes = lat.height, lat.width, search_cfg.space.num_classes

    plan_path = out / "study" / "plan.json"
    fixed = _read_json(plan_path)
    if fixed is not None and not _same_plan(fixed.get("settings"), pcfg, done.student_arch):
        raise ConfigError(
            f"{plan_path}: this study was planned with other study settings or another searched "
            "student; use a new --out folder"
        )
    if fixed is None:
        fixed = _plan(pcfg, done, say)
        atomic_write_json(plan_path, fixed)
    else:
        say(f"study: {fixed['sampling']['accepted']} random architectures read from {plan_path}")
    genotypes = {k: Genotype.from_dict(g) for k, g in fixed["genotypes"].items()}
    random_names = [k for k in genotypes if k.startswith("random-")]

    plan: list[tuple[str, Genotype, int]] = []
    for model, geno in genotypes.items():
        plan += [(model, geno, seed) for seed in sc.seeds]
        if model == SEARCHED and sc.distill:
            plan += [(DISTILLED, geno, seed) for seed in sc.seeds]
    epochs = train_cfg.train.epochs
    teacher = None
    spent: list[float] = []
    for i, (model, geno, seed) in enumerate(plan, start=1):
        path = run_dir(out, model, seed)
        head = f"[study {i}/{len(plan)}] {model} seed {seed}"
        if _complete_training(path, epochs):
            say(f"{head}: complete; skipped")
            continue
        left = len(plan) - i + 1
        eta = f"; about {_duration(left * sum(spent) / len(spent))} left" if spent else ""
        say(f"{head}: training{eta}")
        cfg = replace(train_cfg, runtime=replace(train_cfg.runtime, seed=seed))
        if model == DISTILLED and teacher is None:
            teacher = teacher_from_checkpoint(done.teacher_checkpoint, train_cfg)
        tic = time.perf_counter()
        train(cfg, geno, path, teacher=teacher if model == DISTILLED else None, progress=progress)
        spent.append(time.perf_counter() - tic)

    per_model: dict[str, list[float]] = {}
    for model, _, seed in plan:
        per_model.setdefault(model, []).append(_final_miou(run_dir(out, model, seed)))

    speeds_path = out / "study" / "latency.json"
    speeds = _read_json(speeds_path) or {}
    todo = {k: g for k, g in genotypes.items() if k not in speeds}
    if todo:
        say(f"study: timing {len(todo)} models end to end")
        table = _table(done, genotypes)
        speeds.update(
            genotype_speeds(
                todo, table, h, w, classes, measure=pcfg.report.measure,
                min_time=pcfg.report.min_time,
            )
        )  # fmt: skip
        atomic_write_json(speeds_path, speeds)
    one_shot = _one_shot(done, genotypes, sc.one_shot_bn_images, say)
    models = {}
    for model, values in per_model.items():
        arch = SEARCHED if model == DISTILLED else model
        geno, sp = genotypes[arch], speeds[arch]
        models[model] = {
            "arch": geno.name,
            "kind": _kind(model),
            "miou": summary(values, sc.confidence),
            "params": sp["params"],
            "macs": sp["macs"],
            "latency_ms_predicted": fixed["predicted_ms"][arch],
            "latency_ms_measured": sp["latency_ms_measured"],
            "one_shot_miou": one_shot[arch].get("miou"),
            "genotype": geno.to_dict(),
        }
    result: dict[str, Any] = {
        "title": "fasterseg study",
        "seeds": list(sc.seeds),
        "confidence": sc.confidence,
        "alpha": sc.alpha,
        "resolution": [h, w],
        "metric": "validation mIoU after the last training epoch",
        "sampling": fixed["sampling"],
        "chance_miou": chance_miou(train_cfg),
        "models": models,
        "search": search_vs_random(
            per_model[SEARCHED], [models[n]["miou"]["mean"] for n in random_names], sc.alpha
        ),
        "spread": spread({n: per_model[n] for n in random_names}),
        "one_shot": _one_shot_ranking(one_shot, models),
        "distillation": (
            {
                **paired_effect(per_model[DISTILLED], per_model[SEARCHED], sc.confidence),
                "alpha": sc.alpha,
                "pairs": "by seed",
            }
            if sc.distill
            else None
        ),
        "runs": {
            m: {str(s): str(run_dir(out, m, s).relative_to(out)) for s in sc.seeds}
            for m in per_model
        },
    }
    study_report.write_study(result, out)
    if (out / "report.json").exists():  # a finished pipeline's report gains the study
        from ..pipeline import run_pipeline

        run_pipeline(pcfg, out, data_root=data_root, say=say, progress=progress)
    return result


def _one_shot(
    done: Any, genotypes: dict[str, Genotype], bn_images: int, say: Callable[[str], None]
) -> dict:
    """Each architecture's one-shot mIoU (:func:`fasterseg.engine.search.one_shot_miou`: the
    search's last supernet weights, no retraining, batch-norm statistics re-estimated on the
    first ``bn_images`` training images) on the validation split the trained models are
    scored on, or why it has none; kept in ``study/one_shot.json`` and read back."""
    from ..pipeline import _read_json

    path = done.out / "study" / "one_shot.json"
    scores = _read_json(path) or {}
    todo = {
        k: g for k, g in genotypes.items() if (scores.get(k) or {}).get("requested") != bn_images
    }
    if not todo:
        return scores
    from ..engine.checkpoint import load_checkpoint
    from ..engine.common import resolve_device
    from ..engine.run import val_dataset, whole_images
    from ..engine.search import one_shot_miou
    from ..errors import GenotypeError
    from ..space import SuperNet

    ckpt = done.out / "search" / "checkpoint.pt"
    if not ckpt.is_file():  # not kept, so not cached: a restored checkpoint is used next time
        say(f"study: {ckpt} is missing, so no architecture gets a one-shot score")
        why = f"{ckpt} is missing: no supernet weights to score with"
        return {**scores, **{k: {"miou": None, "why_none": why} for k in todo}}
    say(f"study: scoring {len(todo)} architectures with the supernet's weights ({ckpt})")
    device = resolve_device(done.search_cfg.runtime.device)
    net = SuperNet(done.search_cfg.space)
    net.load_state_dict(load_checkpoint(ckpt, map_location=device)["model"])
    net.to(device)
    cfg = done.train_cfg
    dataset = val_dataset(cfg)
    train_images = whole_images(cfg, cfg.data.train_split)
    calib = range(min(bn_images, len(train_images)))
    for name, geno in todo.items():
        try:
            scores[name] = one_shot_miou(
                net, geno, dataset, device, calibration=train_images if bn_images else None,
                calibration_indices=calib,
            )  # fmt: skip
        except GenotypeError as exc:
            scores[name] = {"miou": None, "why_none": str(exc)}
        scores[name]["requested"] = bn_images
    atomic_write_json(path, scores)
    return scores


def _one_shot_ranking(one_shot: dict[str, dict], models: dict[str, dict]) -> dict[str, Any]:
    """Kendall's tau and Spearman's rho between the one-shot and the trained mean mIoU of
    every architecture the supernet could score (the distilled run repeats the searched
    architecture, so it is left out)."""
    from .stats import rank_correlation

    scored = [m for m in models if m != DISTILLED and one_shot[m].get("miou") is not None]
    trained = [models[m]["miou"]["mean"] for m in scored]
    shot = [one_shot[m]["miou"] for m in scored]
    return {
        "weights": "the search's last supernet checkpoint (search/checkpoint.pt), unchanged",
        "split": "validation",
        "models": scored,
        "bn_images": max((one_shot[m].get("bn_images", 0) for m in scored), default=0),
        "overruled": {m: one_shot[m]["overruled"] for m in scored if one_shot[m]["overruled"]},
        "not_scored": {m: v["why_none"] for m, v in one_shot.items() if v.get("miou") is None},
        **rank_correlation(shot, trained),
    }


#: The study keys that decide which architectures a study draws.
PLAN_KEYS = ("random_archs", "sample_seed", "latency_tolerance", "max_draws", "published")


def _plan_settings(pcfg: PipelineConfig, searched: Genotype) -> dict[str, Any]:
    """What a study's plan was drawn with: the study section and the searched student."""
    return {"study": config_to_dict(pcfg.study), "searched": searched.to_dict()}


def _same_plan(settings: Any, pcfg: PipelineConfig, searched: Genotype) -> bool:
    """Whether a stored plan's settings draw what ``pcfg`` would: the same searched student
    and :data:`PLAN_KEYS` (seeds, tests and scoring may change between calls)."""
    now = _plan_settings(pcfg, searched)
    if not isinstance(settings, dict) or settings.get("searched") != now["searched"]:
        return False
    old = settings.get("study") or {}
    return all(old.get(k) == now["study"][k] for k in PLAN_KEYS)


def _table(done: Any, genotypes: dict[str, Genotype]) -> Any:
    """The search's table, completed with the kernels of ``genotypes`` it lacks."""
    from ..engine.search import table_check_spaces
    from ..latency import build_table, genotype_kernels

    lat, space = done.search_cfg.latency, done.search_cfg.space
    extra = [
        s
        for g in genotypes.values()
        for s in genotype_kernels(g, lat.height, lat.width, space.num_classes)
    ]
    return build_table(
        lat, space=space, extra_specs=extra, progress=False,
        check_spaces=table_check_spaces(done.search_cfg),  # as the search built it
    )  # fmt: skip


def _plan(pcfg: PipelineConfig, done: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Draw the study's random architectures once: the plan a resumed study reads back, so
    that a table refined later (a new self-check, a new calibration) changes nothing."""
    from ..latency import genotype_latency
    from ..models import load_genotype

    sc = pcfg.study
    lat = done.search_cfg.latency
    genotypes: dict[str, Genotype] = {SEARCHED: done.student_arch}
    if sc.published:
        genotypes[PUBLISHED] = load_genotype("fasterseg-student")
    table = _table(done, genotypes)

    def predicted(g: Genotype) -> float:
        return genotype_latency(
            g, table, height=lat.height, width=lat.width,
            num_classes=done.search_cfg.space.num_classes,
        )  # fmt: skip

    searched_ms = predicted(done.student_arch)
    if sc.latency_tolerance > 0:
        tol = sc.latency_tolerance
        window = (searched_ms * (1 - tol), searched_ms * (1 + tol))
        matched = f"within {tol:.0%} of the searched student's {searched_ms:.2f} ms"
    else:
        window = tuple(_search_window(done.history))
        matched = "in the student's search window"
    randoms, draws = sample_matched(
        done.search_cfg.space, predicted, window, sc.random_archs, seed=sc.sample_seed,
        max_draws=sc.max_draws,
    )  # fmt: skip
    say(
        f"study: {len(randoms)} random architectures {matched} ({window[0]:.2f}-{window[1]:.2f} "
        f"ms) from {draws} draws"
    )
    genotypes.update((g.name, g) for g in randoms)
    return {
        "settings": _plan_settings(pcfg, done.student_arch),
        "sampling": {
            "window_ms": list(window),
            "matched": matched,
            "accepted": len(randoms),
            "draws": draws,
            "draws_per_accepted": draws / len(randoms),
            "sample_seed": sc.sample_seed,
        },
        "predicted_ms": {k: predicted(g) for k, g in genotypes.items()},
        "genotypes": {k: g.to_dict() for k, g in genotypes.items()},
    }


def _search_window(history: dict[str, Any]) -> list[float]:
    rows = [r for r in history["epochs"] if "window_ms" in r]
    if not rows:
        raise ConfigError("study: the search history holds no latency window (window_ms)")
    return rows[-1]["window_ms"]


def _kind(model: str) -> str:
    if model.startswith("random-"):
        return "random"
    return {SEARCHED: "searched", DISTILLED: "searched (distilled)", PUBLISHED: "published"}[model]

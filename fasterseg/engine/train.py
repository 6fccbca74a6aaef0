"""Retraining and distillation of a derived network (method section 6), as plain functions.

One epoch = ``train.iters_per_epoch`` SGD steps on batches from a loader seeded by
(seed, epoch), so a run resumed from its last checkpoint continues exactly as an
uninterrupted run would. Writes ``last.pt`` (every epoch), ``best.pt`` (best validation
mIoU), ``metrics.json`` and TensorBoard scalars under ``tb/``.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import distributed as dist
from ..config import Config, config_from_dict, config_to_dict
from ..data.transforms import endless_loader
from ..errors import ConfigError
from ..genotype import Genotype
from ..io import atomic_write_json
from ..losses import distillation_loss, ohem_cross_entropy
from ..models import Network
from ..progress import progress_bar
from .checkpoint import CheckpointError, load_checkpoint, load_trained_model, save_checkpoint
from .common import check_crop, check_global_batch, resolve_device
from .evaluate import evaluate
from .run import (
    Runtime,
    checked_loss,
    epochs,
    init_model,
    loss_precision,
    resume_state,
    run_writer,
    set_lr,
    start_run,
    train_dataset,
    val_dataset,
)

log = logging.getLogger(__name__)


def _lr_at(cfg: Config, epoch: int) -> float:
    t = cfg.train
    if t.lr_schedule == "exponential":
        return t.lr * t.lr_gamma**epoch
    if t.lr_schedule == "poly":
        return t.lr * (1 - epoch / t.epochs) ** t.poly_power
    raise ConfigError(f"train.lr_schedule must be 'exponential' or 'poly', got {t.lr_schedule!r}")


def train(
    cfg: Config,
    genotype: Genotype,
    out_dir: str | os.PathLike,
    *,
    teacher: nn.Module | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train the network of ``genotype`` on ``cfg.data`` (and distill ``teacher`` into it).

    Resumes from ``out_dir/last.pt`` when present. Returns the metrics dict also written to
    ``out_dir/metrics.json``: ``{"epochs": [...], "best_miou", "final": {...},
    "train_seconds", ...}``.

    Under ``torchrun --nproc_per_node N`` the model is wrapped in DistributedDataParallel
    (gloo on CPU, nccl on CUDA), each process takes 1/N of every global batch of
    ``data.batch_size``, validation is shared out, and only rank 0 writes files.
    """
    check_crop("data.crop", cfg.data.crop)
    with dist.launch(resolve_device(cfg.runtime.device)) as device:
        return _train(cfg, genotype, Path(out_dir), device, teacher, progress)


def distill(
    cfg: Config,
    genotype: Genotype,
    teacher: nn.Module | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train ``genotype``'s network with ``teacher`` distilled into it (``cfg.distill``).

    ``teacher`` is a frozen module or the path of a ``train`` checkpoint (loaded with
    :func:`teacher_from_checkpoint`, which refuses a teacher of another class count, dataset
    or input scale). Otherwise exactly :func:`train`, whose metrics dict it returns.
    """
    if not isinstance(teacher, nn.Module):
        teacher = teacher_from_checkpoint(teacher, cfg)
    return train(cfg, genotype, out_dir, teacher=teacher, progress=progress)


def _train(
    cfg: Config,
    genotype: Genotype,
    out: Path,
    device: torch.device,
    teacher: nn.Module | None,
    progress: bool | None,
) -> dict[str, Any]:
    d, t, r = cfg.data, cfg.train, cfg.runtime
    check_global_batch("data.batch_size", d.batch_size)
    start_run(cfg, out)
    train_set = train_dataset(d, d.crop)
    val_set = val_dataset(cfg)
    rt = Runtime.create(device, r)
    model = init_model(lambda: Network(genotype, cfg.space.num_classes, aux=True), r.seed, rt)
    if teacher is not None:
        teacher.to(device=device, dtype=rt.dtype).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
    )
    scaler = rt.scaler()

    history: list[dict[str, Any]] = []
    best = -1.0
    start_epoch = 0
    train_seconds = 0.0
    last_path = out / "last.pt"
    state = resume_state(last_path, device)
    if state is not None:
        if state.get("genotype") != genotype.to_dict():
            raise CheckpointError(
                f"{last_path}: was trained with another architecture; use a new --out folder"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        history, best = state["history"], state["best_miou"]
        start_epoch, train_seconds = state["epoch"], state["train_seconds"]
        log.info("resuming %s from epoch %d", out, start_epoch)
    # The optimizer holds the module's own parameters; DDP only averages their gradients.
    net: nn.Module = model
    if rt.synced:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    if len(train_set) < d.batch_size and rt.synced:
        raise ConfigError(
            f"{d.root}: {len(train_set)} training images are fewer than one global batch "
            f"(data.batch_size {d.batch_size}) to share over {rt.world} processes"
        )

    def batches(epoch: int) -> Iterator[Any]:
        return endless_loader(
            train_set, batch_size=d.batch_size,
            seed_of_pass=lambda p: r.seed + epoch * 1000 + p,
            workers=d.workers, drop_last=len(train_set) >= d.batch_size,
            rank=dist.rank(), world_size=rt.world,
        )  # fmt: skip

    def save(path: Path, epoch: int, rows: list[dict[str, Any]]) -> None:
        _save(path, model, optimizer, scaler, cfg, genotype, epoch, rows, best, train_seconds)

    with run_writer(out) as writer:
        for epoch in epochs(start_epoch, t.epochs, r.seed):
            lr = _lr_at(cfg, epoch)
            set_lr(optimizer, lr)
            model.train()
            tic = time.perf_counter()
            losses = []
            bar = progress_bar(
                itertools.islice(
                    batches(epoch),
                    t.iters_per_epoch,
                ),
                total=t.iters_per_epoch,
                desc=f"epoch {epoch + 1}/{t.epochs}",
                enabled=progress,
            )
            for step, (image, mask) in enumerate(bar):
                image, mask = rt.batch(image, mask)
                with rt.autocast():
                    outputs = net(image)
                    loss = _segmentation_loss(cfg, outputs, mask, synced=rt.synced)
                    if teacher is not None:
                        with torch.no_grad():
                            target = teacher(image)
                        loss = loss + cfg.distill.weight * distillation_loss(
                            loss_precision(outputs[0]), loss_precision(target),
                            temperature=cfg.distill.temperature,
                            reduction=cfg.distill.reduction,
                        )  # fmt: skip
                kept = last_path if last_path.exists() else "none"
                value = checked_loss(
                    loss, "loss", f"epoch {epoch + 1}, step {step + 1}",
                    f"; the last good checkpoint is {kept}",
                )  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if t.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                losses.append(value)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            train_seconds += time.perf_counter() - tic
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": lr,
                "loss": sum(losses) / len(losses),
                "seconds": train_seconds,
            }
            if (epoch + 1) % t.eval_every == 0 or epoch == 0 or epoch + 1 == t.epochs:
                dist.broadcast_buffers(model)  # without sync_bn, rank 0's statistics
                scores = evaluate(
                    model, val_set, device=device, progress=progress, synced=rt.synced
                )
                row["val"] = scores
                if scores["miou"] is not None and scores["miou"] > best:
                    best = scores["miou"]
                    if rt.main:
                        save(out / "best.pt", epoch + 1, [*history, row])
            history.append(row)
            if rt.main:
                _log_row(writer, row)
                save(last_path, epoch + 1, history)
                _write_metrics(out, history, best, train_seconds, genotype)
    return _write_metrics(out, history, best, train_seconds, genotype, write=rt.main)


def _segmentation_loss(
    cfg: Config, outputs: Tensor | tuple[Tensor, ...], mask: Tensor, *, synced: bool = False
) -> Tensor:
    """OHEM on the main output plus ``aux_weight`` x OHEM on each auxiliary output."""
    t = cfg.train
    outs = outputs if isinstance(outputs, tuple) else (outputs,)
    losses = [
        ohem_cross_entropy(
            loss_precision(o), mask, thresh=t.ohem_thresh, min_kept=t.ohem_min_kept, synced=synced
        )
        for o in outs
    ]
    return losses[0] + t.aux_weight * sum(losses[1:], torch.zeros((), device=mask.device))


def _save(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: Config,
    genotype: Genotype,
    epoch: int,
    history: list[dict[str, Any]],
    best: float,
    train_seconds: float,
) -> None:
    save_checkpoint(
        path,
        {
            "kind": "train",
            "epoch": epoch,
            "genotype": genotype.to_dict(),
            "num_classes": cfg.space.num_classes,
            "config": config_to_dict(cfg),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "history": history,
            "best_miou": best,
            "train_seconds": train_seconds,
        },
    )


def _write_metrics(
    out: Path,
    history: list[dict[str, Any]],
    best: float,
    train_seconds: float,
    genotype: Genotype,
    *,
    write: bool = True,
) -> dict[str, Any]:
    final = next((r["val"] for r in reversed(history) if "val" in r), None)
    metrics = {
        "architecture": genotype.name,
        "epochs": history,
        "best_miou": None if best < 0 else best,
        "final": final,
        "train_seconds": train_seconds,
    }
    if write:
        atomic_write_json(out / "metrics.json", metrics)
    return metrics


def _log_row(writer: Any, row: dict[str, Any]) -> None:
    e = row["epoch"]
    writer.add_scalar("train/loss", row["loss"], e)
    writer.add_scalar("train/lr", row["lr"], e)
    if "val" in row and row["val"]["miou"] is not None:
        writer.add_scalar("val/miou", row["val"]["miou"], e)
        writer.add_scalar("val/pixel_accuracy", row["val"]["pixel_accuracy"], e)
    writer.flush()


def teacher_from_checkpoint(
    path: str | os.PathLike, cfg: Config, *, device: torch.device | str = "cpu"
) -> Network:
    """Load a frozen distillation teacher; refuse one of another class count or dataset."""
    state = load_checkpoint(path, map_location="cpu")
    if state.get("num_classes") != cfg.space.num_classes:
        raise ConfigError(
            f"{path}: the teacher predicts {state.get('num_classes')} classes but the student "
            f"is configured for {cfg.space.num_classes} (space.num_classes)"
        )
    t_cfg = config_from_dict(state.get("config", {}), source=f"{path} [config]")
    if t_cfg.data.dataset != cfg.data.dataset:
        raise ConfigError(
            f"{path}: the teacher was trained on {t_cfg.data.dataset!r} data, the student on "
            f"{cfg.data.dataset!r}"
        )
    if t_cfg.data.downsample != cfg.data.downsample:
        raise ConfigError(
            f"{path}: the teacher saw images down-sampled by {t_cfg.data.downsample}, the "
            f"student by {cfg.data.downsample} (data.downsample); their inputs must match"
        )
    return load_trained_model(path, device=device)


def with_data_root(cfg: Config, root: str | os.PathLike | None) -> Config:
    """``cfg`` with ``data.root`` replaced when ``root`` is given (the ``--data`` option)."""
    if root is None:
        return cfg
    return replace(cfg, data=replace(cfg.data, root=str(root)))

"""Latency-aware collaborative search of a teacher and a student (method sections 3-5).

``search(cfg, out_dir, table)`` pretrains the supernet's weights, then alternates per
iteration an architecture step (both roles; the student's loss adds lambda x the decoupled
latency term) and a weight step. After every search epoch it scores each role's five heads
on a held-out slice of the architecture half (never the validation split), decodes the
candidate branch pairs, predicts their latency from the table, adapts lambda and writes
``history.json`` and the architecture files (``search.select``: the last or the best epoch).
A checkpoint after every epoch makes a killed search resume exactly: every epoch's randomness
derives from (seed, epoch).

Under ``torchrun --nproc_per_node N`` each process takes 1/N of every global batch, batch-norm
statistics and OHEM are global, architecture and weight gradients are averaged over the
processes after each step, validation is shared out, and only rank 0 writes files: N
processes search what one process with the same global batch searches. Gradients are
averaged by hand rather than by DistributedDataParallel because a step runs several
forward/backward passes over different parts of the supernet (two roles, several widths)
and the latency term reaches the architecture parameters outside the forward pass; one
flat all-reduce per step is the same arithmetic with none of DDP's unused-parameter traps.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import distributed as dist
from ..arch import NUM_SCALES
from ..config import (
    BudgetConfig,
    Config,
    ReferenceConfig,
    SelectionConfig,
    SpaceConfig,
    config_to_dict,
)
from ..data.datasets import SegmentationFolder
from ..data.transforms import endless_loader
from ..decode import DecodeOptions, encode
from ..errors import ConfigError, GenotypeError
from ..genotype import Genotype
from ..io import atomic_write_json
from ..latency import (
    LatencyTable,
    OpSpec,
    build_table,
    genotype_kernels,
    genotype_latency,
    latency_loss,
    space_kernels,
)
from ..latency.build import paper_check_spaces
from ..losses import ohem_cross_entropy
from ..metrics import ConfusionMatrix
from ..models import load_genotype
from ..progress import progress_bar
from ..space import HEAD_NAMES, Role, SuperNet, WidthMode
from ..space.supernet import check_space
from . import run
from .checkpoint import CheckpointError, save_checkpoint
from .common import check_crop, check_global_batch, resolve_device

log = logging.getLogger(__name__)

PAIRS: tuple[tuple[int, int], ...] = ((2, 0), (2, 1))
#: The supernet head whose mIoU stands for a branch pair (the reference's mIoU02 / mIoU12).
PAIR_HEAD = {(2, 0): "8s_32s", (2, 1): "16s_32s"}
PRETRAIN_MODES = (WidthMode.MAX, WidthMode.MIN, WidthMode.RANDOM, WidthMode.RANDOM)
STUDENT_WEIGHT_MODES = (WidthMode.SAMPLED, WidthMode.MAX, WidthMode.MIN)


def objective(miou: float, latency_ms: float, target_ms: float, exponent: float) -> float:
    """The reported accuracy/latency trade-off: miou * (latency / target) ** exponent."""
    return miou * (latency_ms / target_ms) ** exponent


def resolve_window(
    budget: BudgetConfig, table: LatencyTable, height: int, width: int, num_classes: int
) -> tuple[float, float]:
    """The latency window (low_ms, high_ms) that ``budget`` means on ``table``.

    An ms or FPS window is the same on every table; a relative one is ``budget.relative_min``
    and ``relative_max`` times the predicted latency of ``budget.relative_to`` (a published
    architecture or a genotype file) on ``table`` at ``height`` x ``width`` with
    ``num_classes`` output classes, the resolution the candidates are predicted at.
    """
    absolute = budget.absolute_window_ms()
    if absolute is not None:
        return absolute
    geno = _relative_genotype(budget)
    try:
        ref_ms = genotype_latency(geno, table, height=height, width=width, num_classes=num_classes)
    except KeyError as exc:
        raise ConfigError(
            f"budget.relative_to {budget.relative_to!r}: the latency table lacks kernels of "
            f"this architecture ({exc.args[0]})"
        ) from None
    assert budget.relative_min is not None and budget.relative_max is not None
    return budget.relative_min * ref_ms, budget.relative_max * ref_ms


def window_kernels(cfg: Config) -> list[OpSpec]:
    """The kernels ``cfg``'s latency window needs besides the space's: those of
    ``budget.relative_to`` at the table's resolution (none for an ms or FPS window)."""
    if cfg.budget.absolute_window_ms() is not None:
        return []
    lat = cfg.latency
    return genotype_kernels(_relative_genotype(cfg.budget), lat.height, lat.width,
                            cfg.space.num_classes)  # fmt: skip


def table_check_spaces(cfg: Config) -> tuple[SpaceConfig, ...]:
    """The ``check_spaces`` of ``cfg``'s table (:func:`~fasterseg.latency.build_table`): the
    paper's space where a relative window predicts a published network on it, else none."""
    return paper_check_spaces(cfg.space) if window_kernels(cfg) else ()


def _relative_genotype(budget: BudgetConfig) -> Genotype:
    """The architecture a relative window is written against; a bad name is a ConfigError."""
    try:
        return load_genotype(budget.relative_to)
    except GenotypeError as exc:
        raise ConfigError(f"budget.relative_to: {exc}") from None


def next_lambda(
    latencies_ms: Sequence[float],
    lam: float,
    window_ms: tuple[float, float],
    max_weight: float = math.inf,
) -> float:
    """Lambda for the next search epoch from the candidate students' predicted latencies.

    The reference's rule (method section 3.3), in milliseconds: halve when any candidate is at
    or below ``window_ms[0]`` (too fast); otherwise double when any is at or above
    ``window_ms[1]`` (too slow), at most to ``max_weight``; otherwise keep. The too-fast test
    comes first, so a pair straddling the window halves.
    """
    low, high = window_ms
    if any(v <= low for v in latencies_ms):
        return lam / 2
    if any(v >= high for v in latencies_ms):
        return min(lam * 2, max_weight)
    return lam


def choose_pairs(
    candidates: Mapping[Role, Mapping[str, Mapping[str, Any]]],
    selection: SelectionConfig,
    reference: ReferenceConfig,
) -> tuple[str, str]:
    """The (student, teacher) branch pairs, as keys of ``candidates[role]`` ("20", "21").

    ``candidates[role][pair]`` holds that pair's ``miou`` and ``latency_ms``. The student's
    pair maximises :func:`objective`, "21" on a tie (the reference takes [2,0] only when its
    objective is strictly higher: ``[2,0] if obj02 > obj12 else [2,1]``); the teacher takes
    the student's pair with ``reference.teacher_pair_from_student``, else its own best-mIoU
    pair.
    """
    student, teacher = candidates[Role.STUDENT], candidates[Role.TEACHER]

    def score(pair: str) -> float:
        c = student[pair]
        return objective(
            c["miou"], c["latency_ms"], selection.target_ms, selection.objective_exponent
        )

    chosen = max(sorted(student, reverse=True), key=score)  # "21" first: it wins a tie
    if reference.teacher_pair_from_student:
        return chosen, chosen
    return chosen, max(teacher, key=lambda k: teacher[k]["miou"])


def split_indices(n: int, portion: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded split of ``range(n)`` into a weight part (first ``portion``) and an arch part."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).tolist()
    k = int(n * portion)
    if k == 0 or k == n:
        raise ConfigError(
            f"search.train_portion {portion} leaves one half of the {n} training images empty"
        )
    return perm[:k], perm[k:]


def hold_out(arch_idx: Sequence[int], portion: float) -> tuple[list[int], list[int]]:
    """The architecture half split into the images that train the architecture and the
    held-out slice (its last ``portion``, at least one image) that selection scores."""
    k = max(1, math.ceil(len(arch_idx) * portion))
    if k >= len(arch_idx):
        raise ConfigError(
            f"search.select_portion {portion} holds out all {len(arch_idx)} images of the "
            "architecture half; add training images or lower search.select_portion"
        )
    return list(arch_idx[:-k]), list(arch_idx[-k:])


def _seg_loss(outs: Sequence[Tensor], mask: Tensor, thresh: float, synced: bool) -> Tensor:
    """OHEM cross-entropy summed over the five heads (labels at the heads' resolution)."""
    min_kept = mask.numel() * (dist.world_size() if synced else 1) // 16  # of the global batch
    total = torch.zeros((), device=mask.device)
    for o in outs:
        o = run.loss_precision(o)
        if o.shape[-2:] != mask.shape[-2:]:
            o = F.interpolate(o, size=mask.shape[-2:], mode="bilinear", align_corners=True)
        total = total + ohem_cross_entropy(o, mask, thresh=thresh, min_kept=min_kept, synced=synced)
    return total


def _entropy(logits: Sequence[Tensor]) -> float:
    """Mean entropy (nats) of the softmax rows of the given logit matrices."""
    rows = torch.cat([t.detach().float() for t in logits], dim=0)
    p = rows.softmax(dim=-1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(dim=-1).mean())


@torch.inference_mode()
def evaluate_heads(
    net: SuperNet,
    role: Role,
    dataset: SegmentationFolder,
    device: torch.device,
    indices: Sequence[int] | None = None,
) -> dict[str, float]:
    """mIoU of each of ``role``'s five heads on ``dataset`` (whole images, upsampled logits),
    or on its images ``indices``.

    The student runs at its most likely widths (``argmax``), the teacher at full width. Under
    torchrun the images are shared out and the confusion matrices summed.
    """
    net.eval()
    confs = {h: ConfusionMatrix(dataset.num_classes, device=device) for h in HEAD_NAMES}
    order = list(range(len(dataset))) if indices is None else list(indices)
    widths = net.sample_widths(role, WidthMode.ARGMAX)
    for j in dist.shard(len(order)):
        image, mask = dataset[order[j]]
        h, w = image.shape[-2:]
        outs = net(_padded(image, net, device), role, widths)
        for name, o in zip(HEAD_NAMES, outs):
            o = F.interpolate(o, scale_factor=8, mode="bilinear", align_corners=True)
            confs[name].update(o[..., :h, :w].argmax(dim=1)[0], mask.to(device))
    for c in confs.values():
        c.matrix = dist.all_reduce_sum(c.matrix)
    return {name: float(c.compute()["miou"]) for name, c in confs.items()}


def _padded(image: Tensor, net: SuperNet, device: torch.device) -> Tensor:
    """A whole (3, H, W) image as a batch of one, padded right and below to multiples of 32
    (the supernet's coarsest stride), in the supernet's dtype on ``device``."""
    x = image.unsqueeze(0).to(device, dtype=next(net.parameters()).dtype)
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % 32, 0, (-h) % 32))


#: The head that scores a genotype by the scales its branches end at, coarsest first: a
#: branch pair's head as the search scores it, a single branch's own head.
GENOTYPE_HEAD = {**{(s,): HEAD_NAMES[s] for s in range(NUM_SCALES)}, **PAIR_HEAD}


def one_shot_miou(
    net: SuperNet,
    geno: Genotype,
    dataset: SegmentationFolder,
    device: torch.device,
    indices: Sequence[int] | None = None,
    role: Role = Role.STUDENT,
    *,
    calibration: SegmentationFolder | None = None,
    calibration_indices: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The one-shot mIoU of ``geno``: the supernet's shared weights running the single path
    :func:`fasterseg.decode.encode` makes of ``geno`` on ``role``'s current architecture
    parameters (where the genotype says nothing, e.g. the last layer's other scales that the
    heads read, their argmax), scored like :func:`evaluate_heads` on the head of the
    genotype's branch scales. ``net`` is left unchanged (a copy runs).

    The search trained the weights under a mixture of operators, so one operator alone feeds
    its successors features of another scale than their batch-norm statistics saw; with
    ``calibration`` (images of a training split) those statistics are first re-estimated on
    the single path, as one-shot methods do before scoring a sub-network.

    Returns ``{"miou", "overruled", "bn_images"}``: ``overruled`` names the cells where two
    branches disagreed and the earlier one's choice ran (see :func:`encode`). Raises
    GenotypeError when ``geno`` is no path of ``net`` or its branch scales have no head."""
    lasts = tuple(sorted((b.last_scale for b in geno.branches), reverse=True))
    if lasts not in GENOTYPE_HEAD:
        raise GenotypeError(
            f"genotype {geno.name!r}: no supernet head reads branches ending at "
            f"{', '.join(f'/{8 * 2**s}' for s in lasts)}"
        )
    overruled: list[str] = []
    pinned = encode(
        geno, net.export_arch(role), ops=net.op_names, width_choices=net.width_choices,
        overruled=overruled,
    )  # fmt: skip
    net = copy.deepcopy(net)
    params = net.arch_parameters(role)  # alphas, betas, then ratios: ArchParams' order
    values = [*pinned.alphas, *pinned.betas, *(pinned.ratios or ())]
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(torch.as_tensor(v, dtype=p.dtype))
    seen = 0
    if calibration is not None:
        seen = _recalibrate_batch_norm(net, role, calibration, device, calibration_indices)
    miou = evaluate_heads(net, role, dataset, device, indices)[GENOTYPE_HEAD[lasts]]
    return {"miou": miou, "overruled": overruled, "bn_images": seen}


def _recalibrate_batch_norm(
    net: SuperNet,
    role: Role,
    dataset: SegmentationFolder,
    device: torch.device,
    indices: Sequence[int] | None,
) -> int:
    """Reset every batch norm's running statistics of ``net`` and re-estimate them as plain
    averages over ``dataset``'s images (whole, padded as for evaluation), one forward each at
    ``role``'s argmax widths; returns the number of images."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    widths = net.sample_widths(role, WidthMode.ARGMAX)
    order = list(range(len(dataset))) if indices is None else list(indices)
    with torch.no_grad():
        for i in order:
            net(_padded(dataset[i][0], net, device), role, widths)
    net.eval()
    return len(order)


def _decode(
    net: SuperNet, role: Role, pair: tuple[int, int], cfg: Config, meta: dict[str, Any]
) -> Genotype:
    options = (
        DecodeOptions()
        if cfg.reference.decode
        else DecodeOptions(
            reference_last1_offset=False,
            reference_resoftmax=False,
            reference_shared_alpha_edits=False,
            reference_stale_skip_quota=False,
        )
    )
    name = f"searched-{role.value}"
    return net.genotype(role, pair, name=name, options=options, meta=meta)


def search_table(cfg: Config, *, progress: bool = True) -> LatencyTable:
    """Build or complete the latency table ``cfg``'s search needs (only missing entries): the
    space's kernels and those of the architecture a relative window names.

    With ``latency.allow_mismatch`` an existing table measured elsewhere (its fingerprint
    differs from this machine's) is used as it is, with a warning; it must hold every
    kernel of the space, since entries measured here would not be comparable.
    """
    check_space(cfg.space)
    lat = cfg.latency
    if lat.allow_mismatch and Path(lat.table).exists():
        table = LatencyTable.load(lat.table)
        fp = table.fingerprint
        log.warning(
            "%s: searching with a table measured on %s (%s, %s, %s threads) as it is "
            "(latency.allow_mismatch)",
            lat.table, fp.get("device"), fp.get("cpu"), fp.get("backend"), fp.get("threads"),
        )  # fmt: skip
        missing = table.missing(
            space_kernels(cfg.space, lat.height, lat.width) + window_kernels(cfg)
        )
        if missing:
            raise ConfigError(
                f"{lat.table}: latency.allow_mismatch uses the table as it is, but it lacks "
                f"{len(missing)} kernels of this space (first: {missing[0].key()}); rebuild "
                "it on its device or use a table of this machine"
            )
        return table
    return build_table(
        lat, space=cfg.space, extra_specs=window_kernels(cfg), progress=progress,
        check_spaces=table_check_spaces(cfg),
    )  # fmt: skip


def search(
    cfg: Config,
    out_dir: str | os.PathLike,
    table: LatencyTable | None = None,
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) the search; return the history dict also written to history.json.

    ``table`` must hold every kernel of ``cfg.space`` at ``cfg.latency``'s resolution; None
    builds or completes ``cfg.latency.table`` first (:func:`search_table`; under torchrun
    rank 0 measures while the others wait, then they load it).
    """
    s = cfg.search
    if s.epochs < 1:
        raise ConfigError(f"search.epochs must be at least 1, got {s.epochs}")
    check_crop("search.crop", s.crop)
    check_crop("search.pretrain_crop", s.pretrain_crop)
    with dist.launch(resolve_device(cfg.runtime.device)) as device:
        if table is None:
            if dist.is_main():
                table = search_table(cfg, progress=progress is not False)
            dist.barrier()
            if not dist.is_main():
                table = search_table(cfg, progress=False)
        assert table is not None
        return _search(cfg, Path(out_dir), table, device, progress)


def _search(
    cfg: Config,
    out: Path,
    table: LatencyTable,
    device: torch.device,
    progress: bool | None,
) -> dict[str, Any]:
    s, d, rt_cfg = cfg.search, cfg.data, cfg.runtime
    check_global_batch("search.batch_size", s.batch_size)
    if s.pretrain_epochs > 0:
        check_global_batch("search.pretrain_batch_size", s.pretrain_batch_size)
    run.start_run(cfg, out)
    lat_hw = (cfg.latency.height, cfg.latency.width)
    pre_set, search_set = run.train_dataset(d, s.pretrain_crop), run.train_dataset(d, s.crop)
    weight_idx, arch_idx = split_indices(len(search_set), s.train_portion, rt_cfg.seed)
    arch_idx, select_idx = hold_out(arch_idx, s.select_portion)
    # The same split without augmentation: the held-out images scored whole, as validation is.
    select_set = run.whole_images(cfg, d.train_split)
    scored_on = {
        "split": d.train_split,
        "part": f"held-out {s.select_portion:g} of the architecture half",
        "images": len(select_idx),
    }
    rt = run.Runtime.create(device, rt_cfg)
    net = run.init_model(lambda: SuperNet(cfg.space), rt_cfg.seed, rt)
    scalers = {"arch": rt.scaler(), "weight": rt.scaler()}
    weights = net.weight_parameters()
    w_opt = torch.optim.SGD(weights, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    a_opts = {
        r: torch.optim.Adam(
            net.arch_parameters(r),
            lr=cfg.arch.lr,
            betas=cfg.arch.betas,
            weight_decay=cfg.arch.weight_decay,
        )
        for r in Role
    }
    window = resolve_window(cfg.budget, table, *lat_hw, cfg.space.num_classes)
    log.info("latency window %.3f-%.3f ms at %dx%d", *window, *lat_hw)
    lam = cfg.budget.latency_weight
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    log.info(
        "choosing the %s epoch and the branch pairs on %d held-out images of the %r split "
        "(%d train the weights, %d the architecture)",
        s.select, len(select_idx), d.train_split, len(weight_idx), len(arch_idx),
    )  # fmt: skip
    start = 0
    ckpt_path = out / "checkpoint.pt"
    state = run.resume_state(ckpt_path, device)
    if state is not None:
        if state.get("space") != config_to_dict(cfg.space):
            raise CheckpointError(
                f"{ckpt_path}: was searched with another space; use a new --out folder"
            )
        net.load_state_dict(state["model"])
        w_opt.load_state_dict(state["weight_optimizer"])
        for r in Role:
            a_opts[r].load_state_dict(state["arch_optimizers"][r.value])
        lam, history, best, start = state["lambda"], state["history"], state["best"], state["epoch"]
        for name, saved in state.get("scalers", {}).items():
            scalers[name].load_state_dict(saved)
        log.info("resuming search in %s after epoch %d", out, start)

    total_epochs = s.pretrain_epochs + s.epochs
    with run.run_writer(out) as writer:
        for epoch in run.epochs(start, total_epochs, rt_cfg.seed):
            pretrain = epoch < s.pretrain_epochs
            phase_epoch = epoch if pretrain else epoch - s.pretrain_epochs
            lr = (s.pretrain_lr if pretrain else s.lr) * s.lr_gamma**phase_epoch
            run.set_lr(w_opt, lr)
            batch = s.pretrain_batch_size if pretrain else s.batch_size
            iters = s.iters_per_epoch or max(len(weight_idx) // batch, 400)
            dataset = pre_set if pretrain else search_set
            w_loader = _cycle(dataset, weight_idx, batch, rt_cfg.seed + epoch, d.workers, rt.world)
            a_loader = (
                None
                if pretrain
                else _cycle(
                    dataset, arch_idx, batch, rt_cfg.seed + 10**6 + epoch, d.workers, rt.world
                )
            )
            tic = time.perf_counter()
            sums: dict[str, float] = {}
            bar = progress_bar(
                range(iters),
                desc=f"{'pretrain' if pretrain else 'search'} epoch {epoch + 1}/{total_epochs}",
                enabled=progress,
            )
            net.train()
            for step in bar:
                where = f"epoch {epoch + 1}, step {step + 1}"
                if a_loader is not None:
                    image, mask = rt.batch(*next(a_loader))
                    parts = _arch_step(
                        net, a_opts, scalers["arch"], image, mask, table, lam, cfg, rt, where
                    )
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + v
                image, mask = rt.batch(*next(w_loader))
                w_loss = _weight_step(
                    net, w_opt, scalers["weight"], image, mask, pretrain, cfg, rt, where
                )
                sums["loss_weight"] = sums.get("loss_weight", 0.0) + w_loss
                bar.set_postfix(loss=f"{w_loss:.3f}")
            # Without sync_bn each process's running statistics drift apart: evaluate and
            # save one network, rank 0's (no-op in one process or with synced statistics).
            if not rt_cfg.sync_bn:
                dist.broadcast_buffers(net)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "phase": "pretrain" if pretrain else "search",
                "lr": lr,
                "seconds": time.perf_counter() - tic,
                **{k: v / iters for k, v in sums.items()},
            }
            if not pretrain:
                row.update(
                    _epoch_report(
                        net, cfg, (select_set, select_idx), table, lam, window, lat_hw, device,
                        epoch + 1,
                    )
                )  # fmt: skip
                row["scored_on"] = scored_on
                lam = row["lambda_next"]
                obj = row["student"]["objective"]
                improved = best is None or obj > best["objective"]
                if improved:
                    best = {"epoch": epoch + 1, "objective": obj}
                if rt.main:
                    _write_arch(out, row, "_last", "last")
                    if improved:
                        _write_arch(out, row, "_best", "best")
                    if improved or s.select == "last":
                        _write_arch(out, row, "", s.select)
            history.append(row)
            if not rt.main:
                continue
            _log(writer, row)
            if not pretrain:
                log.info("%s", epoch_summary(row))
            atomic_write_json(out / "history.json", _history(history, best, s.select))
            save_checkpoint(
                ckpt_path,
                {
                    "kind": "search",
                    "epoch": epoch + 1,
                    "space": config_to_dict(cfg.space),
                    "config": config_to_dict(cfg),
                    "model": net.state_dict(),
                    "weight_optimizer": w_opt.state_dict(),
                    "arch_optimizers": {r.value: a_opts[r].state_dict() for r in Role},
                    "scalers": {k: v.state_dict() for k, v in scalers.items()},
                    "lambda": lam,
                    "history": history,
                    "best": best,
                },
            )
    result = _history(history, best, s.select)
    if not result["window_reached"] and rt.main:
        log.warning(
            "the student's predicted latency never entered the window %.3f-%.3f ms in %d search "
            "epochs (last lambda %g, at most budget.max_latency_weight %g); widen the window "
            "or search longer",
            *window, s.epochs, lam, cfg.budget.max_latency_weight,
        )  # fmt: skip
    return result


def _history(
    rows: list[dict[str, Any]], best: dict[str, Any] | None, select: str
) -> dict[str, Any]:
    """What history.json holds: the epochs; the best and the last search epoch (student
    objective); which of them the architecture files hold (``select``, ``selected``) and the
    data that chose it; whether any search epoch's chosen student was predicted inside its
    window."""
    searched = [r for r in rows if r["phase"] == "search"]
    last = (
        {"epoch": searched[-1]["epoch"], "objective": searched[-1]["student"]["objective"]}
        if searched
        else None
    )
    return {
        "epochs": rows,
        "best": best,
        "last": last,
        "select": select,
        "selected": best if select == "best" else last,
        "scored_on": searched[-1]["scored_on"] if searched else None,
        "window_reached": any(r.get("in_window", False) for r in rows),
    }


def _cycle(
    dataset: SegmentationFolder,
    indices: list[int],
    batch: int,
    seed: int,
    workers: int,
    world: int,
) -> Any:
    """Endless batches from ``indices`` of ``dataset``, reshuffled (seeded) at every pass;
    this process's share of each global batch."""
    subset = torch.utils.data.Subset(dataset, indices)
    size = min(batch, len(indices))
    if size % world:
        raise ConfigError(
            f"only {len(indices)} images in a half of the training split: a batch of {size} "
            f"cannot be shared by {world} processes"
        )
    return endless_loader(
        subset,
        batch_size=size,
        seed_of_pass=lambda p: seed * 1000 + p,
        workers=workers,
        drop_last=True,
        rank=dist.rank(),
        world_size=world,
    )


def _arch_step(
    net: SuperNet,
    opts: dict[Role, torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    image: Tensor,
    mask: Tensor,
    table: LatencyTable,
    lam: float,
    cfg: Config,
    rt: run.Runtime,
    where: str,
) -> dict[str, float]:
    """One architecture step for both roles; weight gradients it leaves are cleared."""
    parts: dict[str, float] = {}
    for role in Role:
        opts[role].zero_grad(set_to_none=True)
        widths = net.sample_widths(role, WidthMode.SAMPLED)
        with rt.autocast():
            outs = net(image, role, widths)
        loss = _seg_loss(outs, mask, cfg.search.ohem_thresh, rt.synced)
        parts[f"loss_arch_{role.value}"] = float(dist.global_mean(loss))
        if role is Role.STUDENT and lam > 0:
            lat = latency_loss(
                net,
                role,
                widths,
                table,
                height=cfg.latency.height,
                width=cfg.latency.width,
                reference_quirks=cfg.reference.latency_quirks,
            )
            parts["latency_term_ms"] = lat.item()
            loss = loss + lam * lat
        run.checked_loss(loss, "search loss", where)
        scaler.scale(loss).backward()
        dist.average_gradients(net.arch_parameters(role))
        scaler.step(opts[role])
    scaler.update()
    for p in net.weight_parameters():
        p.grad = None
    return parts


def _weight_step(
    net: SuperNet,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    image: Tensor,
    mask: Tensor,
    pretrain: bool,
    cfg: Config,
    rt: run.Runtime,
    where: str,
) -> float:
    """One weight step: the pretraining sandwich, or teacher + student (sampled, max, min)."""
    s = cfg.search
    if pretrain:
        roles = [Role.TEACHER] if cfg.reference.pretrain_teacher_only else list(Role)
        passes = [(r, m) for r in roles for m in PRETRAIN_MODES]
    else:
        passes = [(Role.TEACHER, WidthMode.MAX)] + [(Role.STUDENT, m) for m in STUDENT_WEIGHT_MODES]
    opt.zero_grad(set_to_none=True)
    total = 0.0
    # Backward per pass: the same gradient as the summed loss, with one graph alive at a time.
    for role, mode in passes:
        with rt.autocast():
            outs = net(image, role, mode)
        loss = _seg_loss(outs, mask, s.ohem_thresh, rt.synced)
        total += run.checked_loss(loss, "search loss", where)
        scaler.scale(loss).backward()
    for p in net.arch.parameters():
        p.grad = None
    weights = net.weight_parameters()
    dist.average_gradients(weights)
    if s.grad_clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(weights, s.grad_clip)
    scaler.step(opt)
    scaler.update()
    return total


def _epoch_report(
    net: SuperNet,
    cfg: Config,
    scored: tuple[SegmentationFolder, Sequence[int]],
    table: LatencyTable,
    lam: float,
    window: tuple[float, float],
    lat_hw: tuple[int, int],
    device: torch.device,
    epoch: int,
) -> dict[str, Any]:
    """Score both roles on ``scored`` (a dataset and the held-out images of it), decode the
    candidates, predict their latency, adapt lambda. ``in_window``: the chosen student is
    predicted strictly inside ``window`` (the edges move lambda)."""
    sel = cfg.selection
    report: dict[str, Any] = {"lambda": lam, "window_ms": list(window)}
    for role in Role:
        mious = evaluate_heads(net, role, scored[0], device, scored[1])
        candidates = {}
        for pair in PAIRS:
            meta = {"epoch": epoch, "lasts": list(pair), "miou_head": PAIR_HEAD[pair]}
            geno = _decode(net, role, pair, cfg, meta)
            lat = genotype_latency(
                geno,
                table,
                height=lat_hw[0],
                width=lat_hw[1],
                num_classes=cfg.space.num_classes,
            )
            miou = mious[PAIR_HEAD[pair]]
            candidates["".join(map(str, pair))] = {
                "genotype": geno.to_dict(),
                "miou": miou,
                "latency_ms": lat,
                "objective": objective(miou, lat, sel.target_ms, sel.objective_exponent),
            }
        report[role.value] = {
            "miou": mious,
            "candidates": candidates,
            "entropy_alpha": _entropy(net.alphas(role)),
            "entropy_beta": _entropy(net.betas(role)),
        }
    student, teacher = report["student"], report["teacher"]
    student["chosen"], teacher["chosen"] = choose_pairs(
        {r: report[r.value]["candidates"] for r in Role}, sel, cfg.reference
    )
    student["objective"] = student["candidates"][student["chosen"]]["objective"]
    lats = [c["latency_ms"] for c in student["candidates"].values()]
    report["lambda_next"] = next_lambda(lats, lam, window, cfg.budget.max_latency_weight)
    chosen_ms = student["candidates"][student["chosen"]]["latency_ms"]
    report["in_window"] = window[0] < chosen_ms < window[1]
    return report


def _write_arch(out: Path, row: dict[str, Any], suffix: str, rule: str) -> None:
    """``row``'s chosen architectures as ``arch_{role}{suffix}.json``; their meta says the
    selection ``rule`` that put them there and the images that scored them."""
    for role in Role:
        info = row[role.value]
        cand = info["candidates"][info["chosen"]]
        geno = Genotype.from_dict(cand["genotype"], source=f"epoch {row['epoch']} {role.value}")
        meta = {
            **geno.meta,
            "miou": cand["miou"],
            "latency_ms": cand["latency_ms"],
            "objective": cand["objective"],
            "select": rule,
            "scored_on": dict(row["scored_on"]),
        }
        replace(geno, meta=meta).save(out / f"arch_{role.value}{suffix}.json")


def epoch_summary(row: Mapping[str, Any]) -> str:
    """One line for a search epoch of history.json: lambda, both student candidates'
    predicted latency against the window, each role's held-out mIoU (its chosen pair's head)
    and the mean entropies of the op (alpha) and path (beta) distributions."""
    low, high = row["window_ms"]
    st = row["student"]
    lats = ", ".join(
        f"[{pair[0]},{pair[1]}] {c['latency_ms']:.2f}" + ("*" if pair == st["chosen"] else "")
        for pair, c in sorted(st["candidates"].items())
    )
    parts = [
        f"search epoch {row['epoch']}: lambda {row['lambda']:.4g}",
        f"student ms {lats} (window {low:.2f}-{high:.2f}, "
        f"{'inside' if row['in_window'] else 'outside'})",
    ]
    for role in Role:
        info = row[role.value]
        miou = info["candidates"][info["chosen"]]["miou"]
        parts.append(
            f"{role.value} mIoU {100 * miou:.1f}% H(alpha) {info['entropy_alpha']:.4f} "
            f"H(beta) {info['entropy_beta']:.4f}"
        )
    return "; ".join(parts)


def _log(writer: Any, row: dict[str, Any]) -> None:
    e = row["epoch"]
    for k in ("loss_weight", "loss_arch_teacher", "loss_arch_student", "latency_term_ms", "lr"):
        if k in row and math.isfinite(row[k]):
            writer.add_scalar(f"search/{k}", row[k], e)
    for role in Role:
        if role.value not in row:
            continue
        info = row[role.value]
        for head, v in info["miou"].items():
            writer.add_scalar(f"{role.value}/miou_{head}", v, e)
        for pair, c in info["candidates"].items():
            writer.add_scalar(f"{role.value}/latency_ms_{pair}", c["latency_ms"], e)
        writer.add_scalar(f"{role.value}/entropy_alpha", info["entropy_alpha"], e)
        writer.add_scalar(f"{role.value}/entropy_beta", info["entropy_beta"], e)
    if "lambda" in row:
        writer.add_scalar("search/lambda", row["lambda"], e)
    writer.flush()

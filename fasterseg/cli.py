"""The ``fasterseg`` command line. Each subcommand says what it does and shows an example.

User errors (bad files, keys, values) print one line ``fasterseg: error: ...`` and exit with
status 2; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
import typing
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from . import __version__
from .errors import UserError

log = logging.getLogger("fasterseg")


def _size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` into (height, width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HEIGHTxWIDTH such as 256x512, got {text!r}"
        ) from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"height and width must be positive, got {text!r}")
    return h, w


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _nonneg(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other user error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2))


def _print_scores(result: dict) -> None:
    """The score dict of `score` and `evaluate`, for a person to read."""
    print(f"images: {result['images']}")
    print(f"mIoU:   {result['miou']:.4f}")
    print(f"pixel accuracy: {result['pixel_accuracy']:.4f}")
    for name, iou in result["per_class_iou"].items():
        print(f"  {name:<15} {'-' if iou is None else f'{iou:.4f}'}")


# ---------------------------------------------------------------- data
def _cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.synth import generate_dataset

    summary = generate_dataset(
        args.out, train=args.train, val=args.val, size=args.size, seed=args.seed, test=args.test
    )
    if args.json:
        _print_json(summary)
    else:
        print(
            f"wrote {summary['images']} synthetic street scenes "
            f"({args.size[0]}x{args.size[1]}) to {args.out} in {summary['seconds']:.1f} s"
        )
    return 0


# ---------------------------------------------------------------- score
def _cmd_score(args: argparse.Namespace) -> int:
    from .metrics import score_folder

    result = score_folder(args.pred_dir, args.gt, split=args.split)
    if args.json:
        _print_json(result)
    else:
        _print_scores(result)
    return 0


# ---------------------------------------------------------------- profile
def _cmd_profile(args: argparse.Namespace) -> int:
    from .arch import side_problem
    from .models import load_genotype
    from .profile import profile_genotype

    for name, value in (("--height", args.height), ("--width", args.width)):
        problem = side_problem(value)
        if problem:
            raise UserError(f"{name} {problem}")
    table = None
    if args.lut is not None:
        from .latency import LatencyTable

        table = LatencyTable.load(args.lut, allow_mismatch=True)
    result = profile_genotype(
        load_genotype(args.arch), height=args.height, width=args.width,
        num_classes=args.classes, table=table, measure=args.measure,
    )  # fmt: skip
    if args.json:
        _print_json(result)
    else:
        print(f"{result['name']} at {args.height}x{args.width}, {args.classes} classes")
        print(f"  params (deployable):   {result['params'] / 1e6:.3f} M")
        print(f"  params (with aux):     {result['params_with_aux'] / 1e6:.3f} M")
        print(f"  MACs (thop, batch 1):  {result['macs'] / 1e9:.2f} G")
        if "latency_ms_predicted" in result:
            ms = result["latency_ms_predicted"]
            line = f"  latency predicted:     {ms:.2f} ms"
            if table is not None and table.fingerprint.get("imported"):
                from .reference import PUBLISHED_FPS

                line += f" = {1000 / ms:.1f} FPS on {table.fingerprint.get('device')}"
                if result["name"] in PUBLISHED_FPS:
                    line += f" (the paper: {PUBLISHED_FPS[result['name']]} FPS end to end)"
            print(line)
            print(f"    ({result['latency_predicted_with']})")
        if "latency_ms_measured" in result:
            how = result["latency_measured_with"]
            print(
                f"  latency measured:      {result['latency_ms_measured']:.2f} ms "
                f"({how['backend']}, {how['threads']} threads, {how['statistic']} of "
                f"{how['rounds']} rounds)"
            )
            if result["latency_measured_disturbed"]:
                print("    (every round was timed while other processes were busy: too slow)")
    return 0


# ---------------------------------------------------------------- train / distill / evaluate
def _train_config(args: argparse.Namespace):  # -> Config
    from .config import load_config
    from .engine.train import with_data_root

    return with_data_root(load_config(args.config, args.overrides), args.data)


def _print_training_result(metrics: dict, out: Path) -> None:
    from .distributed import is_main

    if not is_main():  # under torchrun, one summary
        return
    final = metrics["final"] or {}
    miou = final.get("miou")
    best = metrics["best_miou"]
    print(
        f"done: {len(metrics['epochs'])} epochs in {metrics['train_seconds']:.0f} s; "
        f"final mIoU {'-' if miou is None else f'{miou:.4f}'}, "
        f"best {'-' if best is None else f'{best:.4f}'}; checkpoints in {out}"
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine.train import train
    from .models import load_genotype

    cfg = _train_config(args)
    metrics = train(cfg, load_genotype(args.arch), args.out)
    _print_training_result(metrics, args.out)
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from .engine.train import teacher_from_checkpoint, train
    from .models import load_genotype

    cfg = _train_config(args)
    # On the CPU: under torchrun every process would otherwise load its copy onto the first
    # GPU before it knows its own; train() moves the teacher to the process's device.
    teacher = teacher_from_checkpoint(args.teacher, cfg, device="cpu")
    metrics = train(cfg, load_genotype(args.arch), args.out, teacher=teacher)
    _print_training_result(metrics, args.out)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.evaluate import LABEL_IDS_DIR, check_window, evaluate_checkpoint

    try:
        check_window(args.window, args.overlap)
    except ValueError as e:
        raise UserError(f"--window/--overlap: {e}") from None
    result = evaluate_checkpoint(
        args.checkpoint, args.data, split=args.split, device=args.device, scales=args.scales,
        flip=args.flip, save_predictions=args.save_predictions, window=args.window,
        overlap=args.overlap, skip_corrupt=args.skip_corrupt,
    )  # fmt: skip
    if args.json:
        _print_json(result)
    elif result["miou"] is None:
        where = (
            f"predictions in {args.save_predictions / LABEL_IDS_DIR}"
            if args.save_predictions is not None
            else "no predictions saved (--save-predictions DIR)"
        )
        print(f"{result['images']} images without labels; {where}")
    else:
        _print_scores(result)
    return 0


# ---------------------------------------------------------------- latency table / search
def _cmd_lut_build(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine.search import table_check_spaces, window_kernels
    from .latency import build_table

    cfg = load_config(args.config, args.overrides)
    given = {
        "table": None if args.out is None else str(args.out), "height": args.height,
        "width": args.width, "backend": args.backend, "device": args.device,
        "threads": args.threads, "min_time": args.min_time, "statistic": args.statistic,
    }  # fmt: skip
    settings = replace(cfg.latency, **{k: v for k, v in given.items() if v is not None})
    extra = window_kernels(replace(cfg, latency=settings))
    table = build_table(
        settings, space=cfg.space, extra_specs=extra, progress=True,
        check_spaces=table_check_spaces(cfg),
    )  # fmt: skip
    print(f"{settings.table}: {len(table.entries)} entries")
    return 0


def _cmd_lut_show(args: argparse.Namespace) -> int:
    from .latency import LatencyTable

    print(LatencyTable.load(args.file, allow_mismatch=True).summary())
    return 0


def _cmd_lut_import(args: argparse.Namespace) -> int:
    from .reference import import_reference_table

    table = import_reference_table(args.file, reference_quirks=not args.own_downup_entries)
    table.save(args.out)
    fp = table.fingerprint
    print(
        f"{args.out}: {len(table)} kernels from {args.file} ({fp['device']}, {fp['backend']}, "
        f"{fp['height']}x{fp['width']}); use it with --lut, or search with "
        "latency.allow_mismatch=true"
    )
    return 0


# ---------------------------------------------------------------- the released files
def _pair(text: str) -> tuple[int, int]:
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected two branch ends such as 2,1, got {text!r}")
    return int(parts[0]), int(parts[1])


def _cmd_convert_arch(args: argparse.Namespace) -> int:
    from .reference import genotype_from_arch_file

    geno = genotype_from_arch_file(args.file, role=args.role, pair=args.pair)
    geno.save(args.out)
    pair = geno.meta.get("pair", {})
    print(
        f"{args.out}: the {geno.meta.get('role')} of {args.file}, branch pair "
        f"{pair.get('lasts')} (chosen by {pair.get('chosen_by')})"
    )
    return 0


def _cmd_convert_weights(args: argparse.Namespace) -> int:
    from .models import load_genotype
    from .reference import convert_weights

    report = convert_weights(
        args.file, load_genotype(args.arch), args.out, num_classes=args.classes
    )
    if args.json:
        _print_json(report)
        return 0
    print(
        f"{args.out}: {len(report['loaded'])} tensors loaded, {len(report['aliased'])} aliases "
        f"of shared layers, {len(report['dropped'])} dropped ({report['format']} format)"
    )
    reasons: dict[str, int] = {}
    for reason in report["dropped"].values():
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items()):
        print(f"  dropped {count}: {reason}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from .distributed import is_main
    from .engine.search import search

    cfg = _train_config(args)
    result = search(cfg, args.out)
    chosen, data = result["selected"], result["scored_on"]
    if is_main():
        print(
            f"done: {args.out}/arch_student.json and arch_teacher.json hold the "
            f"{result['select']} epoch ({chosen['epoch']}, student objective "
            f"{chosen['objective']:.4f} on {data['images']} held-out {data['split']!r} images)"
        )
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from .config import load_pipeline_config
    from .pipeline import run_pipeline
    from .report import format_report_summary

    pcfg = load_pipeline_config(args.config, args.overrides)
    report = run_pipeline(pcfg, args.out, data_root=args.data, say=print)
    print()
    print(format_report_summary(report))
    print(f"report: {args.out / 'report.md'}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from .config import load_pipeline_config
    from .study import run_study

    pcfg = load_pipeline_config(args.config, args.overrides, default="study_demo.yaml")
    result = run_study(pcfg, args.out, data_root=args.data, say=print)
    print()
    for line in result["conclusions"]:
        print(f"  {line}")
    print(f"study: {args.out / 'study.md'}")
    return 0


def _cmd_draw(args: argparse.Namespace) -> int:
    from .models import load_genotype
    from .report import draw_genotype

    path = draw_genotype(load_genotype(args.arch), args.out)
    print(f"wrote {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx, format_export_result

    result = export_onnx(
        args.checkpoint, args.onnx, height=args.height, width=args.width,
        dynamic=args.dynamic, threads=args.threads or None, measure=not args.no_measure,
    )  # fmt: skip
    if args.json:
        _print_json(result)
    else:
        print(format_export_result(result))
    return 0


# ---------------------------------------------------------------- the parser
_FMT = argparse.RawDescriptionHelpFormatter
#: The subcommand group of a parser (``add_subparsers``); every ``_add_*`` adds one command.
_Commands = argparse._SubParsersAction


def _add_training_args(p: argparse.ArgumentParser, arch: bool = True) -> None:
    p.add_argument("--config", type=Path, help="YAML recipe (default: built-in defaults)")
    if arch:
        p.add_argument(
            "--arch", required=True, help="genotype .json file or fasterseg-student/-teacher"
        )
    p.add_argument("--out", required=True, type=Path, help="output folder; rerun to resume")
    p.add_argument("--data", type=Path, help="dataset root (overrides data.root)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")


def _add_data(sub: _Commands) -> None:
    data = sub.add_parser(
        "data", help="generate datasets", description="Generate or inspect datasets."
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)
    synth = data_sub.add_parser(
        "synth",
        formatter_class=_FMT,
        help="write the built-in synthetic street scenes (Cityscapes layout)",
        description=textwrap.dedent(
            """\
            Write procedurally drawn street scenes in the Cityscapes folder layout
            (leftImg8bit/ and gtFine/ with labelIds, instanceIds and color PNGs).
            All 19 Cityscapes classes occur; the same seed gives identical files.

            example:
              fasterseg data synth --out runs/data/synthetic --train 40 --val 10 --size 256x512
            """
        ),
    )
    synth.add_argument("--out", required=True, type=Path, help="output folder (created)")
    synth.add_argument("--train", type=_nonneg, default=40, help="training images (default 40)")
    synth.add_argument("--val", type=_nonneg, default=10, help="validation images (default 10)")
    synth.add_argument("--test", type=_nonneg, default=0, help="test images, no labels (default 0)")
    synth.add_argument(
        "--size", type=_size, default=(256, 512), help="HEIGHTxWIDTH (default 256x512)"
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--json", action="store_true", help="print a JSON summary")
    synth.set_defaults(func=_cmd_data_synth)


def _add_score(sub: _Commands) -> None:
    score = sub.add_parser(
        "score",
        formatter_class=_FMT,
        help="score prediction PNGs against Cityscapes ground truth",
        description=textwrap.dedent(
            """\
            Score prediction PNGs in labelId space (the Cityscapes submission format) against
            ROOT/gtFine/SPLIT. Predictions are matched to ground truth by the
            {city}_{sequence}_{frame} part of the file name (*_color.png files are
            skipped). mIoU averages the classes that occur in ground truth or prediction,
            as cityscapesscripts does.

            example:
              fasterseg score runs/demo/predictions --gt runs/data/synthetic --split val --json
            """
        ),
    )
    score.add_argument(
        "pred_dir", type=Path, help="folder of prediction PNGs (searched recursively)"
    )
    score.add_argument("--gt", required=True, type=Path, help="dataset root holding gtFine/")
    score.add_argument("--split", default="val", help="split to score (default val)")
    score.add_argument(
        "--json",
        action="store_true",
        help='print {"miou", "pixel_accuracy", "per_class_iou", "images"} as JSON',
    )
    score.set_defaults(func=_cmd_score)


def _add_profile(sub: _Commands) -> None:
    profile = sub.add_parser(
        "profile",
        formatter_class=_FMT,
        help="parameters and MACs of an architecture",
        description=textwrap.dedent(
            """\
            Count the parameters and multiply-accumulates (thop, batch 1) of the derived
            network of ARCH: a published name (fasterseg-student, fasterseg-teacher) or a
            genotype JSON file. "params" is the deployable network; "params_with_aux"
            includes the training-only auxiliary heads. --lut adds the latency a table
            built at this size predicts (calibrated when the table carries a calibration,
            and it says which); --measure times the network on this CPU for 2 s in 3
            interleaved rounds, as a table's kernels are, with the table's backend, threads
            and statistic, or without --lut with PyTorch on this process's threads (fastest
            call of the least disturbed round).

            example:
              fasterseg profile fasterseg-student --height 1024 --width 2048 --json
            """
        ),
    )
    profile.add_argument("arch", help="published name or genotype .json file")
    profile.add_argument("--height", type=_positive, default=1024, help="input height (1024)")
    profile.add_argument("--width", type=_positive, default=2048, help="input width (2048)")
    profile.add_argument("--classes", type=_positive, default=19, help="output classes (19)")
    profile.add_argument("--lut", type=Path, help="latency table: add latency_ms_predicted")
    profile.add_argument(
        "--measure", action="store_true", help="also time the network (latency_ms_measured)"
    )
    profile.add_argument("--json", action="store_true", help="print one JSON object")
    profile.set_defaults(func=_cmd_profile)


def _add_train(sub: _Commands) -> None:
    train = sub.add_parser(
        "train",
        formatter_class=_FMT,
        help="train a derived network (teacher, or student without a teacher)",
        description=textwrap.dedent(
            """\
            Train the network of ARCH with SGD and OHEM cross-entropy (main output plus 0.2 x
            each auxiliary head). Writes OUT/last.pt (every epoch), best.pt, metrics.json,
            config.yaml and tb/. Running the same command again resumes from last.pt.
            Under `torchrun --nproc_per_node N -m fasterseg train ...` N processes share
            each global batch (data.batch_size) with DistributedDataParallel.

            example:
              fasterseg train --config train/demo.yaml --arch fasterseg-student \\
                  --out runs/student --data runs/data/synthetic train.epochs=5
              torchrun --nproc_per_node 2 -m fasterseg train --config train/demo.yaml \\
                  --arch fasterseg-student --out runs/student2
            """
        ),
    )
    _add_training_args(train)
    train.set_defaults(func=_cmd_train)


def _add_distill(sub: _Commands) -> None:
    distill = sub.add_parser(
        "distill",
        formatter_class=_FMT,
        help="train a student with a frozen teacher (knowledge distillation)",
        description=textwrap.dedent(
            """\
            Like `train`, with distill.weight x T^2 x KL(teacher || student) added to the
            loss on outputs softened by distill.temperature (defaults reproduce the
            reference: weight 1, T 1, element-wise mean). The teacher checkpoint must
            predict the same classes from the same input.

            example:
              fasterseg distill --config train/demo.yaml --arch fasterseg-student \\
                  --teacher runs/teacher/best.pt --out runs/student_kd
            """
        ),
    )
    _add_training_args(distill)
    distill.add_argument("--teacher", required=True, type=Path, help="teacher checkpoint (.pt)")
    distill.set_defaults(func=_cmd_distill)


def _add_evaluate(sub: _Commands) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        formatter_class=_FMT,
        help="evaluate a checkpoint; write prediction PNGs",
        description=textwrap.dedent(
            """\
            Whole-image or sliding-window (--window) inference on every image of a split
            (any size: padded to a multiple of 32 inside, cropped back), optionally
            multi-scale and flipped. Prints mIoU, pixel accuracy and per-class IoU (the
            keys of `fasterseg score`); on a split without labels only writes predictions.
            Predictions are labelId PNGs (the Cityscapes submission format) and colour PNGs,
            in two folders: --save-predictions DIR writes DIR/labelIds/*_labelIds.png (give
            this folder to cityscapesscripts, e.g. as CITYSCAPES_RESULTS) and
            DIR/color/*_color.png.

            example:
              fasterseg evaluate runs/student/best.pt --data runs/data/synthetic --json
              fasterseg evaluate best.pt --data cityscapes --window 512 1024 --flip
            """
        ),
    )
    evaluate.add_argument("checkpoint", type=Path, help="checkpoint written by train/distill")
    evaluate.add_argument("--data", required=True, type=Path, help="dataset root")
    evaluate.add_argument("--split", default="val", help="split (default val)")
    evaluate.add_argument(
        "--scales", type=float, nargs="+", default=[1.0], help="test scales (default 1.0)"
    )
    evaluate.add_argument("--flip", action="store_true", help="average with the mirror image")
    evaluate.add_argument("--save-predictions", type=Path, help="folder for prediction PNGs")
    evaluate.add_argument(
        "--window", type=int, nargs=2, metavar=("H", "W"),
        help="infer in overlapping H x W tiles (multiples of 32) instead of whole images",
    )  # fmt: skip
    evaluate.add_argument(
        "--overlap", type=float, default=1 / 3,
        help="fraction by which neighbouring tiles overlap (default 1/3)",
    )  # fmt: skip
    evaluate.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    evaluate.add_argument(
        "--skip-corrupt", action="store_true",
        help="leave out unreadable images (warns with a count) instead of stopping",
    )  # fmt: skip
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=_cmd_evaluate)


def _add_search(sub: _Commands) -> None:
    search = sub.add_parser(
        "search",
        formatter_class=_FMT,
        help="search a teacher and a latency-constrained student",
        description=textwrap.dedent(
            """\
            Pretrain the supernet, then search the teacher and the student together: per
            iteration an architecture step (the student's loss adds lambda x its predicted
            latency from the table) and a weight step. The latency table (latency.table) is
            built first if it lacks entries. OUT receives config.yaml, history.json,
            arch_teacher.json, arch_student.json (the epoch search.select names: last or
            best; *_last.json and *_best.json: both), checkpoint.pt and tb/. Epochs and
            branch pairs are chosen on a held-out slice of the architecture half
            (search.select_portion), never on the validation split. The same command on
            the same OUT resumes.
            Under `torchrun --nproc_per_node N -m fasterseg search ...` N processes share
            each global batch; only rank 0 writes.

            example:
              fasterseg search --config search/demo.yaml --out runs/search \\
                  --data runs/data/synthetic
            """
        ),
    )
    _add_training_args(search, arch=False)
    search.set_defaults(func=_cmd_search)


def _add_lut(sub: _Commands) -> None:
    lut = sub.add_parser(
        "lut",
        help="build or show a latency lookup table",
        description="Build or inspect latency lookup tables.",
    )
    lut_sub = lut.add_subparsers(dest="lut_command", metavar="ACTION", parser_class=_Parser)
    build = lut_sub.add_parser(
        "build",
        formatter_class=_FMT,
        help="time every kernel of the search space on this device",
        description=textwrap.dedent(
            """\
            Time every kernel the configured search space can produce at HEIGHTxWIDTH
            (operators at every width pair, scale and stride, stems, fusion modules, heads)
            on this device, at batch 1. Only entries missing from FILE, or marked disturbed
            there, are measured, so an interrupted build resumes. Kernels are timed in
            interleaved rounds (latency.rounds, 3): a round timed while other processes used
            the CPU (read from /proc/stat) is timed again, and each kernel keeps its least
            disturbed round. Kernels none of whose rounds escaped are timed again once the
            machine is quiet, if it becomes so within latency.quiet_wait (60) seconds; else
            they stay marked disturbed in FILE and the next build times them again. A new
            kernel more than 10% slower than a strictly larger one of the same operator (most
            likely a disturbed timing) is measured once more and keeps the faster time. At the
            end latency.check_networks (6) networks of the space (its smallest and largest
            kind, the others random; as many of the paper's space where the table also
            predicts the published networks) are timed end to end:
            the table's calibration is fitted on them and its held-out error stored and
            printed (`fasterseg lut show`); predictions use the calibration. The table records
            this device's fingerprint. Every
            option left out comes from the --config recipe's latency section (the defaults
            without one) and its section.key=value overrides, so the table is the one
            `fasterseg search` with that recipe and those overrides uses. A window relative
            to an architecture (budget.relative_to) adds that architecture's kernels.

            examples:
              fasterseg lut build --out runs/lut.json --height 256 --width 512 \\
                  --config search/demo.yaml --threads 2
              fasterseg lut build --config search/cityscapes.yaml latency.device=cuda
            """
        ),
    )
    build.add_argument("--out", type=Path, help="table file (JSON; default: latency.table)")
    build.add_argument("--height", type=_positive, help="input height (default: latency.height)")
    build.add_argument("--width", type=_positive, help="input width (default: latency.width)")
    build.add_argument(
        "--config", type=Path,
        help="recipe whose space section is timed and whose latency section gives every default",
    )  # fmt: skip
    build.add_argument(
        "--backend", choices=["torch", "onnxruntime"], help="default: latency.backend, torch"
    )
    build.add_argument("--device", help="cpu or cuda (default: latency.device, cpu)")
    build.add_argument(
        "--threads", type=_nonneg, help="CPU threads (default: latency.threads; 0: all)"
    )
    build.add_argument(
        "--statistic", choices=["median", "min"],
        help="keep each round's fastest call (min) or its median; "
        "default: latency.statistic, min",
    )  # fmt: skip
    build.add_argument(
        "--min-time",
        type=float,
        help="seconds of timing per kernel (default: latency.min_time, 0.2)",
    )
    build.add_argument(
        "overrides", nargs="*", metavar="section.key=value",
        help="overrides of the --config recipe (those the search gets too)",
    )  # fmt: skip
    build.set_defaults(func=_cmd_lut_build)
    show = lut_sub.add_parser(
        "show",
        help="summarise a table",
        description="Print a table's device fingerprint, entry counts, noisiest kernels, "
        "calibration and self-check (its error on networks timed end to end).",
    )
    show.add_argument("file", type=Path, help="table file (JSON)")
    show.set_defaults(func=_cmd_lut_show)
    imp = lut_sub.add_parser(
        "import",
        formatter_class=_FMT,
        help="import FasterSeg's released 1080Ti table (latency_lookup_table.npy)",
        description=textwrap.dedent(
            """\
            Read the reference's latency_lookup_table.npy (GTX 1080Ti, TensorRT, 1024x2048)
            without unpickling anything but a str -> float mapping, map its entries onto
            this project's kernels by the reference's accounting (docs/reference-files.md)
            and write a table whose fingerprint says where it comes from. Every command
            that takes --lut accepts it; a search uses it with latency.allow_mismatch=true.

            example:
              fasterseg lut import latency_lookup_table.npy --out runs/lut_1080ti.json
            """
        ),
    )
    imp.add_argument("file", type=Path, help="the reference's latency_lookup_table.npy")
    imp.add_argument("--out", required=True, type=Path, help="table file to write (JSON)")
    imp.add_argument(
        "--own-downup-entries", action="store_true",
        help="time conv_2x_downup by its own entries (the reference looks up conv_2x's)",
    )  # fmt: skip
    imp.set_defaults(func=_cmd_lut_import)


def _add_convert(sub: _Commands) -> None:
    convert = sub.add_parser(
        "convert",
        help="convert FasterSeg's released architecture files and weights",
        description="Convert the files FasterSeg released (docs/reference-files.md).",
    )
    convert_sub = convert.add_subparsers(
        dest="convert_command", metavar="WHAT", parser_class=_Parser
    )
    arch = convert_sub.add_parser(
        "arch",
        formatter_class=_FMT,
        help="a released arch_0.pt / arch_1.pt into a genotype JSON file",
        description=textwrap.dedent(
            """\
            Load a released architecture file safely (weights_only, only the numpy globals
            it needs) and decode it as the reference's train/ network does: the teacher
            without skip at width 1.0, the branch pair chosen by the objective from the
            file's mIoU and latency unless --pair says otherwise.

            example:
              fasterseg convert arch arch_1.pt --out student.json
            """
        ),
    )
    arch.add_argument("file", type=Path, help="arch_0.pt (teacher) or arch_1.pt (student)")
    arch.add_argument("--out", required=True, type=Path, help="genotype JSON file to write")
    arch.add_argument(
        "--role", choices=["teacher", "student"], help="default: from the file (0 teacher)"
    )
    arch.add_argument("--pair", type=_pair, help="branch pair 2,0 or 2,1 (default: objective)")
    arch.set_defaults(func=_cmd_convert_arch)
    weights = convert_sub.add_parser(
        "weights",
        formatter_class=_FMT,
        help="a released state dict (weights0.pt / weights1.pt) into a checkpoint",
        description=textwrap.dedent(
            """\
            Map a reference state dict onto the derived network of ARCH and write an
            ordinary checkpoint of this project (evaluate, export, profile and distill
            --teacher take it). Every key is loaded, loaded once for a shared layer, or
            reported as dropped with its reason.

            example:
              fasterseg convert weights weights1.pt --arch student.json --out student.pt
            """
        ),
    )
    weights.add_argument("file", type=Path, help="the reference's weights file")
    weights.add_argument(
        "--arch", required=True, help="its genotype (convert arch) or a published name"
    )
    weights.add_argument("--out", required=True, type=Path, help="checkpoint to write")
    weights.add_argument("--classes", type=_positive, default=19, help="classes (19)")
    weights.add_argument("--json", action="store_true", help="print one JSON object")
    weights.set_defaults(func=_cmd_convert_weights)


def _add_pipeline(sub: _Commands) -> None:
    pipeline = sub.add_parser(
        "pipeline",
        formatter_class=_FMT,
        help="run everything: data, latency table, search, train, distill, report",
        description=textwrap.dedent(
            """\
            The whole method in one command: generate the synthetic data if missing, build
            the latency table for this device, search, train the teacher, distill the
            student, train the student alone, evaluate, measure latency and write
            OUT/report.md, report.json and plots/. Finished stages are skipped and partial
            ones resume, so the same command continues a killed run; rerunning a finished
            pipeline only rebuilds the report. Without --config it runs the built-in demo.

            examples:
              fasterseg pipeline
              fasterseg pipeline --config my_pipeline.yaml --out runs/study \\
                  --data /data/cityscapes search.search.epochs=10
            """
        ),
    )
    pipeline.add_argument("--config", type=Path, help="pipeline YAML (default: the built-in demo)")
    pipeline.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    pipeline.add_argument("--data", type=Path, help="a real dataset root (no synthetic data)")
    pipeline.add_argument(
        "overrides", nargs="*", metavar="a.b.c=value", help="overrides, e.g. train.train.epochs=3"
    )
    pipeline.set_defaults(func=_cmd_pipeline)


def _add_study(sub: _Commands) -> None:
    study = sub.add_parser(
        "study",
        formatter_class=_FMT,
        help="searched student vs random architectures of its latency, over seeds; distillation",
        description=textwrap.dedent(
            """\
            Does the search buy anything, and does distillation? Runs the pipeline's stages up
            to the trained teacher in OUT (skipping finished ones), draws random
            architectures of the search space whose predicted latency lies in the student's
            search window (or within study.latency_tolerance of the searched student's),
            trains them, the searched student and the published one with the pipeline's
            training recipe once per seed, distills the searched student from the teacher
            with every seed, scores every architecture with the search's supernet weights
            (one-shot), and writes OUT/study.md, study.json and plots/study_*.png: means
            with t-intervals, the searched student's rank and one-sided tests against the
            random ones, the paired distillation effect, and how well the one-shot scores
            rank the trained ones (Kendall, Spearman). Every (model, seed) run resumes:
            the same command continues a killed study. Without --config it runs the
            built-in demo study (K = 8, 3 seeds).

            examples:
              fasterseg study --out runs/demo
              fasterseg study --config my_study.yaml --out runs/study study.seeds=[0,1,2,3,4]
            """
        ),
    )
    study.add_argument("--config", type=Path, help="pipeline YAML with a study section "
                       "(default: the built-in demo study)")  # fmt: skip
    study.add_argument("--out", type=Path, default=Path("runs/demo"), help="the pipeline folder")
    study.add_argument("--data", type=Path, help="a real dataset root (no synthetic data)")
    study.add_argument(
        "overrides", nargs="*", metavar="a.b.c=value", help="overrides, e.g. study.random_archs=4"
    )
    study.set_defaults(func=_cmd_study)


def _add_draw(sub: _Commands) -> None:
    draw = sub.add_parser(
        "draw",
        formatter_class=_FMT,
        help="draw an architecture like the paper's Figure 6",
        description=textwrap.dedent(
            """\
            Draw the branches of ARCH over the 1/8, 1/16 and 1/32 scales: where each goes
            down, the operator and output width of every layer, the shared layers.

            example:
              fasterseg draw fasterseg-student --out student.png
            """
        ),
    )
    draw.add_argument("arch", help="published name or genotype .json file")
    draw.add_argument("--out", required=True, type=Path, help="PNG file to write")
    draw.set_defaults(func=_cmd_draw)


def _add_export(sub: _Commands) -> None:
    export = sub.add_parser(
        "export",
        formatter_class=_FMT,
        help="export a checkpoint to ONNX, verified with ONNX Runtime",
        description=textwrap.dedent(
            """\
            Export the deployable network of a train/distill checkpoint to ONNX (batch norm
            folded into the convolutions, auxiliary heads dropped), then check it with ONNX
            Runtime in the same command: logits within 1e-4 of the logits' range and the
            same argmax on at least 99.9% of pixels. Prints the check and the latency of
            ONNX Runtime against PyTorch eager on this CPU. The file is written only when
            the check passes.

            example:
              fasterseg export runs/demo/student_trained/best.pt --onnx student.onnx \\
                  --height 256 --width 512
            """
        ),
    )
    export.add_argument("checkpoint", type=Path, help="checkpoint written by train/distill")
    export.add_argument("--onnx", required=True, type=Path, help="ONNX file to write")
    export.add_argument("--height", type=_positive, default=1024, help="input height (1024)")
    export.add_argument("--width", type=_positive, default=2048, help="input width (2048)")
    export.add_argument("--dynamic", action="store_true", help="dynamic batch, height, width")
    export.add_argument("--threads", type=_nonneg, default=0, help="CPU threads (default: all)")
    export.add_argument("--no-measure", action="store_true", help="skip the latency comparison")
    export.add_argument("--json", action="store_true", help="print one JSON object")
    export.set_defaults(func=_cmd_export)


#: The subcommands in the order ``fasterseg --help`` lists them.
_COMMANDS = (
    _add_data, _add_score, _add_profile, _add_train, _add_distill, _add_evaluate, _add_search,
    _add_lut, _add_pipeline, _add_study, _add_draw, _add_export, _add_convert,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fasterseg`` command."""
    parser = _Parser(
        prog="fasterseg",
        formatter_class=_FMT,
        description=textwrap.dedent(
            """\
            Latency-aware architecture search, retraining and distillation for real-time
            semantic segmentation (FasterSeg, rebuilt).

            Quick start (the whole method on built-in synthetic data, report in runs/demo):
              fasterseg pipeline

            Step by step: data synth -> lut build -> search -> train / distill ->
            evaluate; `fasterseg COMMAND --help` explains each with an example.
            """
        ),
    )
    parser.add_argument("--version", action="version", version=f"fasterseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fasterseg`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    func = getattr(args, "func", None)
    if func is None:
        # A group without an action (``fasterseg``, ``fasterseg data``): show what exists.
        target = parser
        if args.command is not None:
            target = parser._subparsers._group_actions[0].choices[args.command]
        target.print_help()
        return 2
    try:
        return func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"fasterseg: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``fasterseg lut show T | head``): not an error.
        return 0
    except KeyboardInterrupt:
        print("fasterseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

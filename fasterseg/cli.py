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
from collections.abc import Sequence
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


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2))


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
        print(f"images: {result['images']}")
        print(f"mIoU:   {result['miou']:.4f}")
        print(f"pixel accuracy: {result['pixel_accuracy']:.4f}")
        for name, iou in result["per_class_iou"].items():
            print(f"  {name:<15} {'-' if iou is None else f'{iou:.4f}'}")
    return 0


# ---------------------------------------------------------------- profile
def _cmd_profile(args: argparse.Namespace) -> int:
    from .models import load_genotype
    from .models.profile import profile_genotype

    for name, value in (("--height", args.height), ("--width", args.width)):
        if value % 32:
            raise UserError(f"{name} {value} is not divisible by 32 (the network's output stride)")
    result = profile_genotype(
        load_genotype(args.arch), height=args.height, width=args.width, num_classes=args.classes
    )
    if args.json:
        _print_json(result)
    else:
        print(f"{result['name']} at {args.height}x{args.width}, {args.classes} classes")
        print(f"  params (deployable):   {result['params'] / 1e6:.3f} M")
        print(f"  params (with aux):     {result['params_with_aux'] / 1e6:.3f} M")
        print(f"  MACs (thop, batch 1):  {result['macs'] / 1e9:.2f} G")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fasterseg`` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="fasterseg",
        formatter_class=fmt,
        description=textwrap.dedent(
            """\
            Latency-aware architecture search, retraining and distillation for real-time
            semantic segmentation (FasterSeg, rebuilt).

            Quick start:
              fasterseg data synth --out runs/data/synthetic --train 40 --val 10
              fasterseg score PRED_DIR --gt runs/data/synthetic --json
            """
        ),
    )
    parser.add_argument("--version", action="version", version=f"fasterseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    data = sub.add_parser(
        "data", help="generate datasets", description="Generate or inspect datasets."
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    synth = data_sub.add_parser(
        "synth",
        formatter_class=fmt,
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

    score = sub.add_parser(
        "score",
        formatter_class=fmt,
        help="score prediction PNGs against Cityscapes ground truth",
        description=textwrap.dedent(
            """\
            Score prediction PNGs in labelId space (the Cityscapes submission format) against
            ROOT/gtFine/SPLIT. Predictions are matched to ground truth by the
            {city}_{sequence}_{frame} part of the file name. mIoU averages the classes that
            occur in ground truth or prediction, as cityscapesscripts does.

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

    profile = sub.add_parser(
        "profile",
        formatter_class=fmt,
        help="parameters and MACs of an architecture",
        description=textwrap.dedent(
            """\
            Count the parameters and multiply-accumulates (thop, batch 1) of the derived
            network of ARCH: a published name (fasterseg-student, fasterseg-teacher) or a
            genotype JSON file. "params" is the deployable network; "params_with_aux"
            includes the training-only auxiliary heads.

            example:
              fasterseg profile fasterseg-student --height 1024 --width 2048 --json
            """
        ),
    )
    profile.add_argument("arch", help="published name or genotype .json file")
    profile.add_argument("--height", type=_positive, default=1024, help="input height (1024)")
    profile.add_argument("--width", type=_positive, default=2048, help="input width (2048)")
    profile.add_argument("--classes", type=_positive, default=19, help="output classes (19)")
    profile.add_argument("--json", action="store_true", help="print one JSON object")
    profile.set_defaults(func=_cmd_profile)
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
    except KeyboardInterrupt:
        print("fasterseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

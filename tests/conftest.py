"""Pieces several test files share: a tiny trained checkpoint, cityscapesscripts' arguments."""

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from fasterseg.config import config_from_dict
from fasterseg.data.synth import generate_dataset
from fasterseg.engine.train import train
from fasterseg.genotype import Branch, Genotype

#: FasterSeg's released files (and files generated from them) that the tests use.
REFERENCE_DIR = Path(__file__).parent / "data" / "reference"
REFERENCE_ARCH = {"teacher": REFERENCE_DIR / "arch_0.pt", "student": REFERENCE_DIR / "arch_1.pt"}


class WritesMarker:
    """Unpickling this object runs code: it creates the file ``marker`` (what a hostile
    released file could carry; a test shows the code did not run by the marker's absence)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


#: One conv branch of two cells: the smallest network that trains and evaluates.
TINY_ONE_BRANCH = Genotype(
    "tiny", 4, 1.0, 1.0, (0.5, 1.0),
    (Branch(("conv", "conv"), (0, 0), (1.0, 1.0)),),
)  # fmt: skip


def train_tiny(
    root: Path, *, train_images: int, val: int, test: int = 0, iters: int
) -> tuple[Path, Path]:
    """Synthetic scenes (64x128) under ``root/data`` and ``root/run`` trained on them for one
    epoch of ``iters`` steps; returns (data root, the run folder)."""
    generate_dataset(root / "data", train=train_images, val=val, test=test, size=(64, 128), seed=0)
    cfg = config_from_dict(
        {
            "data": {"root": str(root / "data"), "crop": [64, 128], "scales": [1.0],
                     "batch_size": 2, "workers": 0},
            "train": {"epochs": 1, "iters_per_epoch": iters, "ohem_min_kept": 64},
            "runtime": {"device": "cpu"},
        }
    )  # fmt: skip
    train(cfg, TINY_ONE_BRANCH, root / "run", progress=False)
    return root / "data", root / "run"


def cityscapes_args(**fields: Any) -> Any:
    """A copy of cityscapesscripts' evaluator arguments (the module-level object is global
    state), quiet, without the instance-level score (it calls np.in1d, gone in numpy 2.4)."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval

    args = copy.copy(cs_eval.args)
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.quiet = True
    for key, value in fields.items():
        setattr(args, key, value)
    return args


def assert_same_scores(ours: dict[str, Any], ref: dict[str, Any]) -> None:
    """Our scores equal cityscapesscripts' ``evaluateImgLists`` result: mIoU and each class's
    IoU to 1e-6 (its float64 sums), a class it cannot score (NaN) unscored (None) here."""
    assert ours["miou"] == pytest.approx(ref["averageScoreClasses"], abs=1e-6)
    for name, iou in ours["per_class_iou"].items():
        expected = ref["classScores"][name]
        if math.isnan(expected):
            assert iou is None, name
        else:
            assert iou == pytest.approx(expected, abs=1e-6), name


@pytest.fixture(autouse=True)
def no_waiting_for_quiet(monkeypatch):
    """A table build in a test never waits for the machine to quiet down (latency.quiet_wait):
    CI machines are shared, and a test must not sleep. The waiting itself is tested with a
    scripted meter (tests/test_latency_protocol.py)."""
    import fasterseg.latency.build as build

    monkeypatch.setattr(build, "wait_for_quiet", lambda *args, **kwargs: False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests: on a shared 2-core machine two threads wait
    on each other at every small kernel, and tiny supernets run about 10x faster on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_timer(measure: Any) -> Any:
    """A stand-in for ``fasterseg.latency.measure.time_interleaved`` (patch it into
    ``fasterseg.latency.build``): each module is built once and timed by
    ``measure(module, inputs, **settings)``, which returns a Measurement; ``on_round`` hears
    of every one of its ``rounds`` rounds."""
    from fasterseg.latency import Timing

    def timer(modules: Any, **settings: Any) -> Any:
        out = {}
        for key, factory in modules.items():
            module, inputs = factory()
            out[key] = measure(module, inputs, **settings)
        for _ in range(settings.get("rounds", 1)):
            for key in modules:
                if settings.get("on_round") is not None:
                    settings["on_round"](key)
        return Timing(out, rounds=settings.get("rounds", 1), extra=0, others_cores_max=0.0)

    return timer

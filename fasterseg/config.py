"""Configuration: frozen dataclasses per stage, read from YAML, overridable from the command line.

A config file has one mapping per section (``data``, ``space``, ...); every key is optional and
defaults to the paper's value. Unknown keys, wrong types and malformed overrides raise
:class:`~fasterseg.errors.ConfigError` naming the file, the key and what was expected.

Float fields also accept a fraction written as a string, e.g. ``"8/12"``, because the method's
width multipliers are twelfths.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Union

import yaml

from .errors import ConfigError
from .io import atomic_write_text

PAPER_WIDTHS = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)
PAPER_OPS = ("skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup")


@dataclass(frozen=True)
class DataConfig:
    """Dataset and augmentation.

    ``dataset`` is ``cityscapes`` (Cityscapes folder layout; the synthetic data uses it too) or
    ``camvid``. ``crop`` is (height, width) of training crops (the search has its own, in
    ``search``); ``scales`` are the random rescale factors; ``downsample`` shrinks every image
    before augmentation (the search uses 2); ``label_stride`` shrinks labels after cropping
    for /8 supervision (the search uses 8). ``skip_corrupt`` leaves out unreadable images and
    labels (with a warning and a count) instead of stopping with an error.
    """

    dataset: str = "cityscapes"
    root: str = "runs/data/synthetic"
    train_split: str = "train"
    val_split: str = "val"
    crop: tuple[int, int] = (512, 1024)
    scales: tuple[float, ...] = (0.75, 1.0, 1.25)
    flip: bool = True
    downsample: int = 1
    label_stride: int = 1
    batch_size: int = 12
    workers: int = 2
    skip_corrupt: bool = False


@dataclass(frozen=True)
class SpaceConfig:
    """The search space (section 1 of the method): layers, base channels, widths, operators.

    Stem and head widths are per role: the teacher runs at full width, the student at 8/12.
    ``gumbel_temperature`` is the student's width-sampling temperature (1 as published).
    """

    layers: int = 16
    fch: int = 12
    width_choices: tuple[float, ...] = PAPER_WIDTHS
    ops: tuple[str, ...] = PAPER_OPS
    num_classes: int = 19
    teacher_stem_width: float = 1.0
    teacher_head_width: float = 1.0
    student_stem_width: float = 8 / 12
    student_head_width: float = 8 / 12
    gumbel_temperature: float = 1.0


@dataclass(frozen=True)
class RuntimeConfig:
    """How a stage runs, whichever it is (search, training, distillation).

    ``device`` is ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``. ``seed`` seeds
    every random choice of the run (weights, batches, widths, the search's data split).
    ``amp`` (CUDA only, float32 only) runs forward passes in float16 autocast with loss
    scaling; the published search ran in float32, so the search recipes leave it off.
    ``channels_last`` stores weights and inputs in NHWC. Under torchrun batch sizes are
    global and ``sync_bn`` takes batch-norm statistics over the global batch, so N processes
    compute what one does. ``dtype`` ``float64`` runs weights, activations and losses in
    double precision (slow; for checks that must not depend on float32 rounding).
    """

    device: str = "auto"
    seed: int = 12345
    amp: bool = False
    channels_last: bool = False
    sync_bn: bool = True
    dtype: str = "float32"


@dataclass(frozen=True)
class TrainConfig:
    """Retraining (method section 6): SGD with per-epoch decay, OHEM on main + aux outputs.

    ``lr_schedule`` is ``exponential`` (lr * lr_gamma**epoch, as published) or ``poly``
    (lr * (1 - epoch/epochs)**poly_power). Validation runs after the first epoch, every
    ``eval_every`` epochs and after the last. ``grad_clip`` 0 disables clipping.
    ``ohem_min_kept`` 0 mines nothing (plain cross-entropy), as in the reference.
    """

    epochs: int = 600
    iters_per_epoch: int = 1000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "exponential"
    lr_gamma: float = 0.992
    poly_power: float = 0.9
    grad_clip: float = 0.0
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 393216
    aux_weight: float = 0.2
    eval_every: int = 10


@dataclass(frozen=True)
class DistillConfig:
    """Distillation: ``weight`` x T^2 x KL(teacher || student) at ``temperature`` T.

    ``reduction``: ``mean`` (the reference: over all N*C*H*W elements), ``pixelmean``
    (summed over classes, mean over pixels) or ``batchmean``.
    """

    weight: float = 1.0
    temperature: float = 1.0
    reduction: str = "mean"


@dataclass(frozen=True)
class LatencyConfig:
    """The latency lookup table: where it lives and how its entries are measured.

    ``height``/``width`` is the input resolution the table is built for (multiples of 32, at
    least 64);
    ``threads`` 0 keeps torch's current thread count. Each kernel gets ``min_time`` seconds of
    timed calls, spread over ``rounds`` interleaved passes over all kernels (a load that lasts
    seconds touches one round of each, and a round timed while other processes were busy is
    timed again). ``statistic`` is the figure kept of a round's calls: ``min`` (their fastest,
    the default: other processes only ever slow a call down) or ``median``; a kernel keeps its
    least disturbed round. Kernels none of whose rounds escaped other processes are timed once
    more after the machine has been quiet for a moment, if that comes within ``quiet_wait``
    seconds (0: no waiting); those still disturbed stay marked in the table and the next build
    times them again. At the end of a build ``check_networks`` networks of the space (its
    smallest and largest kind, the others random) are timed end to end (0: none), the
    table's calibration (measured ≈ scale * sum + offset, in relative least squares) is
    fitted on them and its leave-one-out error stored as the table's self-check.
    ``allow_mismatch`` lets the search use a complete table measured elsewhere (another
    device, backend or thread count: its fingerprint differs from this machine's) with a
    warning, instead of refusing it; such a table is never completed here, so a missing kernel
    is an error.
    """

    table: str = "runs/lut.json"
    height: int = 1024
    width: int = 2048
    backend: str = "torch"
    device: str = "cpu"
    threads: int = 0
    min_time: float = 0.2
    rounds: int = 3
    statistic: str = "min"
    check_networks: int = 6
    quiet_wait: float = 60.0
    allow_mismatch: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.quiet_wait, (int, float)) and self.quiet_wait >= 0):
            raise ConfigError(f"latency.quiet_wait must be >= 0 seconds, got {self.quiet_wait!r}")


#: ``search.select``: which search epoch the architecture files hold.
SELECT_RULES = ("last", "best")


@dataclass(frozen=True)
class SearchConfig:
    """The search's schedule and weight steps (method sections 3-5).

    The training split is divided (seeded) into a weight half and an architecture half
    (``train_portion``). Pretraining trains weights only (the max/min/random/random
    sandwich); the search alternates an architecture step (``arch``) and a weight step (SGD
    here) per iteration. ``iters_per_epoch`` 0 means max(weight-half images // batch, 400)
    as published.

    After every search epoch both roles are scored on a held-out slice of the architecture
    half (its last ``select_portion``, at least one image), which no step trains on, and the
    branch pairs and the epoch are chosen there, never on the validation split the reports
    score. ``select`` says which epoch's architectures ``arch_{teacher,student}.json`` hold:
    ``last`` (the reference's ``load_epoch="last"``) or ``best`` (the best student
    objective); ``arch_*_last.json`` and ``arch_*_best.json`` hold both either way.
    """

    pretrain_epochs: int = 20
    epochs: int = 30
    iters_per_epoch: int = 0
    pretrain_crop: tuple[int, int] = (256, 512)
    crop: tuple[int, int] = (224, 448)
    pretrain_batch_size: int = 3
    batch_size: int = 2
    train_portion: float = 0.5
    pretrain_lr: float = 0.02
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_gamma: float = 0.978
    grad_clip: float = 5.0
    ohem_thresh: float = 0.7
    select: str = "last"
    select_portion: float = 0.2

    def __post_init__(self) -> None:
        if self.select not in SELECT_RULES:
            raise ConfigError(
                f"search.select must be one of {', '.join(SELECT_RULES)}, got {self.select!r}"
            )
        if not 0 < self.select_portion < 1:
            raise ConfigError(
                f"search.select_portion must be between 0 and 1 (exclusive), got "
                f"{self.select_portion!r}"
            )


@dataclass(frozen=True)
class ArchConfig:
    """The search's architecture optimiser: Adam on alpha, beta and the width ratios."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0


#: The paper's latency window, 155-175 FPS on a 1080Ti with TensorRT, in ms (low, high).
PAPER_WINDOW_MS = (1000 / 175, 1000 / 155)


@dataclass(frozen=True)
class BudgetConfig:
    """The student's latency budget: lambda x the latency term joins its architecture loss.

    Lambda starts at ``latency_weight``; after each search epoch it halves when a candidate
    student is predicted at or below the window's lower edge and doubles when one is at or
    above its upper edge (at the latency table's resolution), never beyond
    ``max_latency_weight``. The reference has no bound (a student that cannot reach the
    window doubles lambda every epoch); 1e3 is 2^17 x the paper's 0.01, far more doublings
    than a 30-epoch search makes, so the bound changes nothing in a run that reaches its
    window and only stops a hopeless one from growing without end.

    The window is written one way of three (a second way, or half of one, is a ConfigError):
    ``min_ms``/``max_ms``; ``min_fps``/``max_fps`` (``max_ms = 1000 / min_fps``); or
    ``relative_to`` (a published architecture or a genotype file) with
    ``relative_min``/``relative_max``, factors of that architecture's predicted latency on
    the search's own table, so that the window means the same on every device. With none
    given the window is the paper's 155-175 FPS in milliseconds (``PAPER_WINDOW_MS``).
    """

    latency_weight: float = 0.01
    max_latency_weight: float = 1e3
    min_ms: float | None = None
    max_ms: float | None = None
    min_fps: float | None = None
    max_fps: float | None = None
    relative_to: str = ""
    relative_min: float | None = None
    relative_max: float | None = None

    def __post_init__(self) -> None:
        forms = self._forms()
        given = [keys for keys, values in forms.items() if any(v not in (None, "") for v in values)]
        if len(given) > 1:
            named = " and ".join("/".join(f"budget.{k}" for k in keys) for keys in given)
            raise ConfigError(f"budget: the latency window is given twice ({named}); keep one")
        for keys in given:
            values = forms[keys]
            if any(v in (None, "") for v in values):
                raise ConfigError(
                    f"budget: {'/'.join(f'budget.{k}' for k in keys)} go together; got "
                    + ", ".join(f"{k}={v!r}" for k, v in zip(keys, values))
                )
            low, high = values[-2:]
            # 0 ms is a lower edge no student reaches; 0 FPS is no upper edge at all
            floor_ok = low > 0 if keys[0] == "min_fps" else low >= 0
            if not (floor_ok and low < high):
                sign = "<" if keys[0] == "min_fps" else "<="
                raise ConfigError(
                    f"budget: expected 0 {sign} budget.{keys[-2]} < budget.{keys[-1]}, "
                    f"got {low!r} and {high!r}"
                )
        if not self.max_latency_weight >= self.latency_weight >= 0:
            raise ConfigError(
                f"budget: expected 0 <= budget.latency_weight <= budget.max_latency_weight, "
                f"got {self.latency_weight!r} and {self.max_latency_weight!r}"
            )

    def _forms(self) -> dict[tuple[str, ...], tuple[Any, ...]]:
        return {
            ("min_ms", "max_ms"): (self.min_ms, self.max_ms),
            ("min_fps", "max_fps"): (self.min_fps, self.max_fps),
            ("relative_to", "relative_min", "relative_max"): (
                self.relative_to,
                self.relative_min,
                self.relative_max,
            ),
        }

    def absolute_window_ms(self) -> tuple[float, float] | None:
        """(low, high) ms of an ms or FPS window (the paper's when none is given); None for a
        relative window, which needs a table (``fasterseg.engine.search.resolve_window``)."""
        if self.relative_to:
            return None
        if self.min_fps is not None and self.max_fps is not None:
            return 1000 / self.max_fps, 1000 / self.min_fps
        if self.min_ms is not None and self.max_ms is not None:
            return self.min_ms, self.max_ms
        return PAPER_WINDOW_MS


@dataclass(frozen=True)
class SelectionConfig:
    """How a searched architecture is chosen: the student's branch pair maximises
    mIoU * (latency / target_ms) ** objective_exponent."""

    target_ms: float = 8.3
    objective_exponent: float = -0.07


@dataclass(frozen=True)
class ReferenceConfig:
    """Documented quirks of the reference implementation (method section 10), reproduced
    when true: pretraining trains only the teacher's stem and heads; the teacher takes the
    student's branch pair; the reference decoder's quirks (``fasterseg.decode.DecodeOptions``);
    the reference's latency accumulation instead of the paper's formula."""

    pretrain_teacher_only: bool = True
    teacher_pair_from_student: bool = True
    decode: bool = True
    latency_quirks: bool = False


@dataclass(frozen=True)
class Config:
    """All sections of one run. A recipe sets the sections its stage reads: the search reads
    data, space, latency, runtime, search, arch, budget, selection and reference; training
    reads data, space, runtime, train and distill."""

    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)


#: Keys of earlier releases and where they live now (None: removed, with the reason).
MOVED: dict[str, tuple[str | None, str]] = {
    **{
        f"{stage}.{key}": (f"runtime.{key}", "")
        for stage in ("train", "search")
        for key in ("device", "seed", "amp", "channels_last", "sync_bn", "dtype")
    },
    "search.arch_lr": ("arch.lr", ""),
    "search.arch_betas": ("arch.betas", ""),
    "search.arch_weight_decay": ("arch.weight_decay", ""),
    "search.latency_weight": ("budget.latency_weight", ""),
    "search.latency_min_ms": ("budget.min_ms", ""),
    "search.latency_max_ms": ("budget.max_ms", ""),
    "search.target_ms": ("selection.target_ms", ""),
    "search.objective_exponent": ("selection.objective_exponent", ""),
    "search.reference_pretrain_teacher_only": ("reference.pretrain_teacher_only", ""),
    "search.reference_teacher_pair_from_student": ("reference.teacher_pair_from_student", ""),
    "search.reference_decode": ("reference.decode", ""),
    "latency.reference_quirks": ("reference.latency_quirks", ""),
    "data.seed": (None, "it was never read; runtime.seed seeds the run"),
    "search.eval_images": (
        None,
        "the search scores a held-out slice of its architecture half (search.select_portion), "
        "never the validation split",
    ),
}


@dataclass(frozen=True)
class SynthConfig:
    """The built-in synthetic street scenes a pipeline generates when ``enabled``."""

    enabled: bool = True
    train: int = 40
    val: int = 10
    size: tuple[int, int] = (256, 512)
    seed: int = 0


@dataclass(frozen=True)
class ReportConfig:
    """The report's latency comparison: resolution, timing budget, the LR-ASPP peer."""

    height: int = 256
    width: int = 512
    measure: bool = True
    min_time: float = 1.0
    peer: bool = True
    threads: int = 0


@dataclass(frozen=True)
class StudyConfig:
    """``fasterseg study``: what the searched student is compared with, and how often.

    ``random_archs`` architectures are drawn from the search space (seeded by
    ``sample_seed``) and kept only when their predicted latency on the search's table lies
    in the student's search window, or, with ``latency_tolerance`` > 0, within that fraction
    of the searched student's predicted latency; ``max_draws`` bounds the draws. The searched
    student, the published one (``published``) and the random ones are each trained once per
    seed in ``seeds`` with the pipeline's training recipe; with ``distill`` the searched
    student is also distilled from the pipeline's teacher with every seed (the ablation).
    ``confidence`` is the level of every interval and ``alpha`` the tests' significance level.
    Every architecture is also scored with the search's supernet weights (one-shot), after
    re-estimating its batch-norm statistics on ``one_shot_bn_images`` training images (0: the
    statistics the search left).
    """

    random_archs: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    sample_seed: int = 0
    latency_tolerance: float = 0.0
    max_draws: int = 10000
    published: bool = True
    distill: bool = True
    confidence: float = 0.95
    alpha: float = 0.05
    one_shot_bn_images: int = 20

    def __post_init__(self) -> None:
        if self.one_shot_bn_images < 0:
            raise ConfigError(
                f"study.one_shot_bn_images must be 0 or more, got {self.one_shot_bn_images}"
            )
        if self.random_archs < 1:
            raise ConfigError(f"study.random_archs must be at least 1, got {self.random_archs}")
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(
                f"study.seeds must be at least two different seeds (intervals need a spread), "
                f"got {list(self.seeds)}"
            )
        if not 0 <= self.latency_tolerance < 1:
            raise ConfigError(
                f"study.latency_tolerance must be in [0, 1) (0: the search window), "
                f"got {self.latency_tolerance}"
            )
        if self.max_draws < self.random_archs:
            raise ConfigError(
                f"study.max_draws ({self.max_draws}) must be at least study.random_archs "
                f"({self.random_archs})"
            )
        for key in ("confidence", "alpha"):
            if not 0 < getattr(self, key) < 1:
                raise ConfigError(f"study.{key} must be in (0, 1), got {getattr(self, key)}")


@dataclass(frozen=True)
class PipelineConfig:
    """One end-to-end run: data -> latency table -> search -> train teacher -> distill student
    -> train student alone -> evaluate -> report; ``study`` is read only by ``fasterseg
    study``. ``search`` and ``train`` are complete configs (their ``data.root`` is replaced
    by ``data_root``); in YAML each may name a stage recipe (``recipe: FILE``, relative to
    the pipeline file) whose values the rest of the section overrides."""

    data_root: str = "runs/data/synthetic"
    synthetic: SynthConfig = field(default_factory=SynthConfig)
    search: Config = field(default_factory=Config)
    train: Config = field(default_factory=Config)
    report: ReportConfig = field(default_factory=ReportConfig)
    study: StudyConfig = field(default_factory=StudyConfig)


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_PLURAL.get(args[0], _type_name(args[0]))}"
        return f"a list of {len(args)} values ({', '.join(_type_name(a) for a in args)})"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, source: str, where: str) -> Any:
    """Return ``value`` converted to ``tp``, or raise ConfigError naming ``source`` and key."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{source}: '{where}': expected {_type_name(tp)}, got {value!r}")
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, source, where)
            except ConfigError:
                continue
        raise bad
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], source, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad
        return tuple(
            _coerce(v, a, source, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))
        )
    if tp is type(None):
        if value is None:
            return None
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(Fraction(value.replace(" ", "")))
            except (ValueError, ZeroDivisionError):
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise TypeError(f"config type {tp!r} of {where} is not supported")


def _unknown_key(source: str, where: str, key: str, valid: list[str]) -> ConfigError:
    prefix = f"{where}." if where else ""
    # Inside a pipeline's stage configs ``where`` starts with the stage (search., train.).
    for depth in range(len(where.split(".")) if where else 0, -1, -1):
        scope = ".".join(where.split(".")[depth:]) if where else ""
        old = f"{scope}.{key}" if scope else key
        if old in MOVED:
            new, why = MOVED[old]
            outer = ".".join(where.split(".")[:depth])
            if new is None:
                return ConfigError(f"{source}: '{prefix}{key}' was removed: {why}")
            new_path = f"{outer}.{new}" if outer else new
            return ConfigError(f"{source}: '{prefix}{key}' has moved to '{new_path}'")
    # At the top level the keys are section names; say so, since that is what the user typed.
    what = "key" if where else "section"
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        hint = f"; did you mean '{prefix}{close[0]}'?"
    else:
        hint = f"; valid {what}s: {', '.join(valid)}"
    return ConfigError(f"{source}: unknown {what} '{prefix}{key}'{hint}")


def _build(cls: type, data: Any, source: str, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and types recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{where or 'top level'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(source, where, str(key), names)
        tp = hints[key]
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, source, path)
        else:
            kwargs[key] = _coerce(value, tp, source, path)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a check across fields (``__post_init__``): name the file
        raise ConfigError(f"{source}: {exc}") from None


def config_from_dict(data: dict[str, Any] | None, source: str = "<dict>") -> Config:
    """Build a validated :class:`Config` from a plain mapping; ``source`` names it in errors."""
    return _build(Config, data, source, "")


def _set_path(data: dict[str, Any], override: str, source: str) -> None:
    """Apply one ``section.key=value`` override to the raw mapping ``data`` (from ``source``)."""
    where = f"{source}: override {override!r}"
    if "=" not in override:
        raise ConfigError(f"{where}: expected section.key=value (no '=' found)")
    path, raw = override.split("=", 1)
    keys = path.strip().split(".")
    if len(keys) < 2 or not all(keys):
        raise ConfigError(f"{where}: expected section.key=value, got key {path.strip()!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: value is not valid YAML ({_one_line(exc)})") from None
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        # An empty section in YAML (``data:``) reads as None; it is valid and means "defaults".
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: '{k}' is not a section (it is {child!r})")
        node = child
    node[keys[-1]] = value


def _one_line(exc: Exception) -> str:
    """PyYAML's multi-line error text on one line (messages must fit one line)."""
    return " ".join(str(exc).split())


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections (data:, space:, ...), "
            f"got a {type(data).__name__}"
        )
    return data


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s values on top; mappings merge key by key, anything else
    (lists included) is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _named_recipe(
    data: dict[str, Any], base: Path, source: str, where: str, seen: tuple[Path, ...]
) -> tuple[dict[str, Any], Path]:
    """``data`` without its ``recipe`` key, and the existing file that key names (relative
    to ``base``); ConfigError for a bad value, a missing file or a file including itself."""
    rest = dict(data)
    ref = rest.pop("recipe")
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{source}: '{where}recipe' must be a file path, got {ref!r}")
    path = (base / ref).resolve()
    if path in seen:
        raise ConfigError(f"{source}: '{where}recipe' {ref} includes itself")
    if not path.exists():
        raise ConfigError(f"{source}: '{where}recipe' {ref}: no such file ({path})")
    return rest, path


def with_recipe(
    data: dict[str, Any], base: Path, source: str, where: str = "", _seen: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """Resolve a ``recipe: FILE`` key of the mapping ``data`` (read from ``source``): the
    named YAML file (relative to ``base``, itself possibly naming a recipe) with the rest
    of ``data`` merged on top, so a file states only what differs from the recipe."""
    if "recipe" not in data:
        return data
    rest, path = _named_recipe(data, base, source, where, _seen)
    parent = with_recipe(read_yaml(path), path.parent, str(path), "", (*_seen, path))
    return _merged(parent, rest)


def load_config(
    path: str | os.PathLike | None = None, overrides: typing.Sequence[str] = ()
) -> Config:
    """Load a config file (or the defaults when ``path`` is None) and apply overrides.

    A file may start from another with ``recipe: FILE`` (relative to it) and state only
    what differs. ``overrides`` are strings ``section.key=value``; the value is parsed as
    YAML (``data.crop=[256,512]``, ``space.ops=[conv,conv_2x]``).
    """
    data = {}
    if path is not None:
        data = with_recipe(read_yaml(path), Path(path).parent, str(path))
    source = str(path) if path is not None else "<defaults>"
    for ov in overrides:
        _set_path(data, ov, source)
    if overrides:
        source += " (with overrides)"
    return config_from_dict(data, source)


def load_pipeline_config(
    path: str | os.PathLike | None = None,
    overrides: typing.Sequence[str] = (),
    *,
    default: str = "pipeline_demo.yaml",
) -> PipelineConfig:
    """Load a pipeline config (without ``path``, the built-in recipe ``default`` of
    ``fasterseg/recipes``, the demo pipeline) with overrides such as
    ``search.search.epochs=2`` or ``train.train.epochs=3`` (the stage, then the section of its
    config). The file may start from another pipeline file (``recipe: FILE``, relative to
    it) and its ``search`` and ``train`` sections may name stage recipes (``recipe: FILE``,
    relative to the file that names them)."""
    if path is None:
        from importlib import resources

        ref = resources.files("fasterseg") / "recipes" / default
        with resources.as_file(ref) as builtin:
            data = _pipeline_data(Path(builtin), str(builtin))
        source = f"built-in recipe fasterseg/recipes/{default}"
    else:
        data = _pipeline_data(Path(path), str(path))
        source = str(path)
    for ov in overrides:
        _set_path(data, ov, source)
    if overrides:
        source += " (with overrides)"
    return _build(PipelineConfig, data, source, "")


def _pipeline_data(path: Path, source: str, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A pipeline file's mapping with its ``recipe:`` (another pipeline file) and its stage
    recipes resolved, each relative to the file that names it."""
    data = _stage_recipes(read_yaml(path), path.parent, source)
    if "recipe" not in data:
        return data
    seen = (*_seen, path.resolve())
    rest, parent = _named_recipe(data, path.parent, source, "", seen)
    return _merged(_pipeline_data(parent, str(parent), seen), rest)


def _stage_recipes(data: dict[str, Any], base: Path, source: str) -> dict[str, Any]:
    for stage in ("search", "train"):
        if isinstance(data.get(stage), dict):
            data[stage] = with_recipe(data[stage], base, source, f"{stage}.")
    return data


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML-friendly dict (tuples become lists) of a config dataclass."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically); it loads back to an equal config."""
    return atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

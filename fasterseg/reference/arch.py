"""Released FasterSeg architecture files (``arch_0.pt``: teacher, ``arch_1.pt``: student) read
safely and decoded into a :class:`~fasterseg.genotype.Genotype` as the reference's ``train/``
network decodes them (``train/train.py`` with ``Network_Multi_Path_Infer``).

An arch file is a legacy (torch < 1.6) pickle of a dict: for the file's architecture index
``i`` (0 teacher, 1 student) the logits ``alpha_i_{0,1,2}`` (L, L-1, L-2 rows by 5 ops),
``beta_i_{1,2}`` (L-2, L-3 rows by 2), ``ratio_i_{0,1,2}`` (L-1, L-1, L-2 rows by K widths;
K = 1 for a fixed-width role), all stored on ``cuda:0``, and the search's figures of its two
branch pairs: ``mIoU02``/``mIoU12`` (numpy float64 fractions) and ``latency02``/``latency12``
(ms). The reference decodes with Fch 12, the widths 4/12 .. 12/12 and the five operators of
:data:`fasterseg.config.PAPER_OPS`; the teacher forbids skip and the student runs its stem and
head at 8/12.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..arch import ratio_rows
from ..config import PAPER_OPS, PAPER_WIDTHS
from ..decode import MIN_LAYERS, ArchParams, DecodeOptions, decode
from ..engine.search import PAIRS, objective
from ..errors import ConfigError
from ..genotype import Genotype
from ..space.roles import Role
from .common import ReferenceFileError, load_torch_file

__all__ = [
    "REFERENCE_FCH",
    "arch_index",
    "branch_pair",
    "genotype_from_arch_file",
    "load_arch_file",
]

#: ``config_train.py``: base channels and the objective that picks the branch pair
#: (``objective_acc_lat``: mIoU * (latency / 8.3) ** -0.07).
REFERENCE_FCH = 12
REFERENCE_TARGET_MS = 8.3
REFERENCE_EXPONENT = -0.07
#: ``train.py``: stem/head width and whether skip is forbidden, per role.
_STEM_HEAD_WIDTH = {Role.TEACHER: 1.0, Role.STUDENT: 8 / 12}
_IGNORE_SKIP = {Role.TEACHER: True, Role.STUDENT: False}
_ROLE_OF_INDEX = {0: Role.TEACHER, 1: Role.STUDENT}
_FIGURES = ("mIoU02", "latency02", "mIoU12", "latency12")


def _numpy_globals() -> list[Any]:
    """The numpy objects the arch files' ``mIoU`` scalars need, and nothing else.

    The released files name numpy's scalar constructor ``numpy.core.multiarray.scalar``;
    numpy 2 moved it to ``numpy._core`` (the name files it writes use), so it is allowlisted
    under both names.
    """
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return [
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        type(np.dtype(np.float64)),
    ]


def arch_index(data: dict[str, Any], source: str = "<dict>") -> int:
    """The architecture index ``i`` of an arch file's keys (``alpha_i_0``): 0 or 1 as released.

    Raises ReferenceFileError when no or several indices are present.
    """
    found = sorted(
        int(k[len("alpha_") : -len("_0")])
        for k in data
        if isinstance(k, str)
        and k.startswith("alpha_")
        and k.endswith("_0")
        and k[len("alpha_") : -len("_0")].isdigit()
    )
    if not found:
        keys = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise ReferenceFileError(f"{source}: not an arch file (no 'alpha_<i>_0' key; keys: {keys})")
    if len(found) > 1:
        raise ReferenceFileError(
            f"{source}: holds the architectures of several indices {found}; an arch file holds one"
        )
    return found[0]


def _figure(data: dict[str, Any], key: str, source: str) -> float:
    value = data[key]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ReferenceFileError(f"{source}: {key} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (key.startswith("latency") and number == 0):
        raise ReferenceFileError(f"{source}: {key} = {number!r} is not a valid figure")
    return number


def load_arch_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a released arch file safely and check its keys and shapes.

    ``torch.load(weights_only=True)`` with only numpy's scalar constructor, ``numpy.dtype`` and
    the float64 dtype class allowlisted, for this call only; tensors come back on the CPU
    (they were saved on ``cuda:0``). Returns the file's dict: the eight logit tensors (shapes
    in the module docstring) and the four figures.

    Raises ReferenceFileError, naming the file, for a missing or truncated file, a pickle that
    would import anything else (nothing of it runs), a file without the keys of one
    architecture, a tensor of the wrong shape and a figure that is not a finite number.
    """
    source = str(path)
    data = load_torch_file(path, "arch file", _numpy_globals())
    if not isinstance(data, dict):
        raise ReferenceFileError(
            f"{source}: not an arch file (holds a {type(data).__name__}, expected a dict of "
            "alpha/beta/ratio tensors)"
        )
    i = arch_index(data, source)
    names = {
        "alpha": [f"alpha_{i}_{s}" for s in range(3)],
        "beta": [f"beta_{i}_{s}" for s in (1, 2)],
        "ratio": [f"ratio_{i}_{s}" for s in range(3)],
    }
    for key in [*names["alpha"], *names["beta"], *names["ratio"], *_FIGURES]:
        if key not in data:
            raise ReferenceFileError(f"{source}: not an arch file (no {key!r})")
    for key in [*names["alpha"], *names["beta"], *names["ratio"]]:
        value = data[key]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ReferenceFileError(
                f"{source}: {key} must be a float tensor, got {type(value).__name__}"
            )
        if not torch.isfinite(value).all():
            raise ReferenceFileError(f"{source}: {key} holds NaN or infinite values")
    alpha0 = data[names["alpha"][0]]
    layers = alpha0.shape[0] if alpha0.dim() == 2 else 0
    widths = data[names["ratio"][0]].shape[-1] if data[names["ratio"][0]].dim() == 2 else 0
    if layers < MIN_LAYERS or widths not in (1, len(PAPER_WIDTHS)):
        raise ReferenceFileError(
            f"{source}: {names['alpha'][0]} has shape {list(alpha0.shape)} and "
            f"{names['ratio'][0]} {list(data[names['ratio'][0]].shape)}; expected "
            f"[L, {len(PAPER_OPS)}] with L >= {MIN_LAYERS} and [L - 1, K] with K = 1 or "
            f"{len(PAPER_WIDTHS)}"
        )
    expected = {
        **{k: (layers - s, len(PAPER_OPS)) for s, k in enumerate(names["alpha"])},
        names["beta"][0]: (layers - 2, 2),
        names["beta"][1]: (layers - 3, 2),
        **{k: (ratio_rows(s, layers), widths) for s, k in enumerate(names["ratio"])},
    }
    for key, shape in expected.items():
        if tuple(data[key].shape) != shape:
            raise ReferenceFileError(
                f"{source}: {key} has shape {list(data[key].shape)}, expected {list(shape)} "
                f"(L = {layers} layers, {len(PAPER_OPS)} ops, K = {widths} widths)"
            )
    for key in _FIGURES:
        _figure(data, key, source)
    return data


def branch_pair(data: dict[str, Any], source: str = "<dict>") -> tuple[int, int]:
    """The branch pair ``train.py`` builds for an arch file's figures: (2, 0) when
    mIoU02 * (latency02 / 8.3) ** -0.07 is larger than the same for (2, 1), else (2, 1)."""
    obj02, obj12 = _objectives(data, source)
    return (2, 0) if obj02 > obj12 else (2, 1)


def _objectives(data: dict[str, Any], source: str) -> tuple[float, float]:
    return tuple(
        objective(
            _figure(data, f"mIoU{p}", source),
            _figure(data, f"latency{p}", source),
            REFERENCE_TARGET_MS,
            REFERENCE_EXPONENT,
        )
        for p in ("02", "12")
    )


def _check_pair(pair: Sequence[int]) -> tuple[int, int]:
    try:
        lasts = tuple(int(b) for b in pair)
    except (TypeError, ValueError):
        lasts = None
    if lasts not in PAIRS:
        raise ConfigError(
            f"pair must be one of {', '.join(str(p) for p in PAIRS)} (the branches' last "
            f"scales: 2 = /32, 1 = /16, 0 = /8), got {pair!r}"
        )
    return lasts


def genotype_from_arch_file(
    path: str | os.PathLike,
    *,
    role: Role | str | None = None,
    pair: Sequence[int] | None = None,
    name: str | None = None,
) -> Genotype:
    """Decode a released arch file as the reference's ``train/`` network does.

    ``role`` (``"teacher"`` or ``"student"``) defaults to the file's index (0 teacher, 1
    student). The teacher forbids skip and runs stem and head at width 1.0, the student at
    8/12; a role whose width logits have one column runs every layer at 1.0 when it forbids
    skip and at 4/12 otherwise (``Network_Multi_Path_Infer``). ``pair`` (``(2, 0)`` or
    ``(2, 1)``) defaults to :func:`branch_pair` of the file's figures. Decoding reproduces the
    reference's quirks (:class:`~fasterseg.decode.DecodeOptions` defaults). The genotype's
    ``width_choices`` are the reference's five widths; ``name`` defaults to the file's stem;
    ``meta`` records the file, role, figures and how the pair was chosen.

    Raises ReferenceFileError for a bad file (:func:`load_arch_file`), ConfigError for a bad
    role or pair, or a file index whose role cannot be inferred.
    """
    path = Path(path)
    source = str(path)
    data = load_arch_file(path)
    index = arch_index(data, source)
    if role is None:
        if index not in _ROLE_OF_INDEX:
            raise ConfigError(
                f"{source}: architecture index {index} has no default role (0 is the teacher, "
                "1 the student); pass the role"
            )
        role = _ROLE_OF_INDEX[index]
    try:
        role = Role(role)
    except ValueError:
        raise ConfigError(f"role must be 'teacher' or 'student', got {role!r}") from None
    obj02, obj12 = _objectives(data, source)
    lasts = branch_pair(data, source) if pair is None else _check_pair(pair)
    ratios = tuple(data[f"ratio_{index}_{s}"] for s in range(3))
    if ratios[0].shape[1] == 1:
        width_choices = (1.0,) if _IGNORE_SKIP[role] else (4 / 12,)
    else:
        width_choices = PAPER_WIDTHS
    arch = ArchParams(
        alphas=tuple(data[f"alpha_{index}_{s}"] for s in range(3)),
        betas=tuple(data[f"beta_{index}_{s}"] for s in (1, 2)),
        ratios=ratios,
    )
    figures = {key: _figure(data, key, source) for key in _FIGURES}
    meta = {
        "source": f"FasterSeg reference arch file {path.name}",
        "role": role.value,
        "arch_file": {"path": source, "index": index, **figures},
        "pair": {
            "lasts": list(lasts),
            "chosen_by": "objective" if pair is None else "argument",
            "objective02": obj02,
            "objective12": obj12,
        },
    }
    width = _STEM_HEAD_WIDTH[role]
    geno = decode(
        arch,
        lasts,
        name=name or path.stem,
        ops=PAPER_OPS,
        fch=REFERENCE_FCH,
        stem_width=width,
        head_width=width,
        width_choices=width_choices,
        forbid_skip=_IGNORE_SKIP[role],
        options=DecodeOptions(),
        meta=meta,
    )
    # the decoded widths are among the reference's five; the genotype lists all five, as the
    # space it was searched in offers them
    return dataclasses.replace(geno, width_choices=PAPER_WIDTHS).validate()

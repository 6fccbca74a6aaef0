"""Genotype: a searched architecture as plain data, stored as versioned JSON.

A genotype holds one or more branches over the scales /8, /16, /32 (scale index 0, 1, 2).
For branch ``b`` with layers ``l = 0..n-1``:

* ``ops[l]`` is the operator name (a key of :data:`fasterseg.nn.OPS`);
* ``path[l]`` is the scale index of layer ``l``'s *input*; the path starts at 0, never
  decreases and rises by at most one per layer; layer ``l`` has stride 2 exactly when
  ``path[l+1] == path[l] + 1`` (the last layer never has stride 2);
* ``widths[l]`` is layer ``l``'s output width multiplier, one of ``width_choices``; the last
  entry equals ``head_width``.

Branches whose leading (op, path, width) entries agree share those layers in the network.
This module imports no torch so that architecture files can be read anywhere.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# nf and scale_rate are re-exported: callers import them from here as well as from arch.
from .arch import NUM_SCALES as NUM_SCALES
from .arch import nf as nf
from .arch import scale_rate as scale_rate
from .errors import GenotypeError
from .io import atomic_write_json

FORMAT = "fasterseg-genotype"
VERSION = 1


@dataclass(frozen=True)
class Branch:
    """One branch of a derived network: per-layer operator, input scale index, output width."""

    ops: tuple[str, ...]
    path: tuple[int, ...]
    widths: tuple[float, ...]

    @property
    def last_scale(self) -> int:
        """Scale index of the branch's output (0 = /8, 1 = /16, 2 = /32)."""
        return self.path[-1]

    def strides(self) -> tuple[int, ...]:
        """Stride of every layer: 2 where the next layer's input is one scale coarser."""
        return tuple(
            2 if i + 1 < len(self.path) and self.path[i + 1] > self.path[i] else 1
            for i in range(len(self.path))
        )


@dataclass(frozen=True)
class Genotype:
    """A derived architecture: base channels, stem/head width, width choices, branches."""

    name: str
    fch: int
    stem_width: float
    head_width: float
    width_choices: tuple[float, ...]
    branches: tuple[Branch, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def validate(self, op_names: Iterable[str] | None = None) -> Genotype:
        """Check every field; raise GenotypeError naming the first bad one. Returns self.

        ``op_names``, when given, are the operator names allowed (normally ``OPS.keys()``).
        """
        src = f"genotype {self.name!r}"
        if not isinstance(self.fch, int) or isinstance(self.fch, bool) or self.fch <= 0:
            raise GenotypeError(f"{src}: 'fch' must be a positive integer, got {self.fch!r}")
        for key in ("stem_width", "head_width"):
            value = getattr(self, key)
            if not _is_number(value) or not 0 < value <= 1:
                raise GenotypeError(f"{src}: '{key}' must be a number in (0, 1], got {value!r}")
        if not self.width_choices or not all(
            _is_number(w) and 0 < w <= 1 for w in self.width_choices
        ):
            raise GenotypeError(
                f"{src}: 'width_choices' must be a non-empty list of numbers in (0, 1], "
                f"got {list(self.width_choices)!r}"
            )
        if not self.branches:
            raise GenotypeError(f"{src}: 'branches' must hold at least one branch")
        allowed = set(op_names) if op_names is not None else None
        for b, branch in enumerate(self.branches):
            self._validate_branch(src, b, branch, allowed)
        return self

    def _validate_branch(self, src: str, b: int, branch: Branch, allowed: set[str] | None) -> None:
        where = f"{src}: branches[{b}]"
        n = len(branch.ops)
        if n == 0:
            raise GenotypeError(f"{where}.ops: a branch needs at least one layer")
        for key in ("path", "widths"):
            if len(getattr(branch, key)) != n:
                raise GenotypeError(
                    f"{where}.{key}: has {len(getattr(branch, key))} entries, 'ops' has {n}"
                )
        for i, op in enumerate(branch.ops):
            if not isinstance(op, str):
                raise GenotypeError(f"{where}.ops[{i}]: expected an operator name, got {op!r}")
            if allowed is not None and op not in allowed:
                raise GenotypeError(
                    f"{where}.ops[{i}]: unknown operator {op!r}; "
                    f"known: {', '.join(sorted(allowed))}"
                )
        for i, s in enumerate(branch.path):
            if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < NUM_SCALES:
                raise GenotypeError(f"{where}.path[{i}]: expected 0, 1 or 2, got {s!r}")
        if branch.path[0] != 0:
            raise GenotypeError(
                f"{where}.path[0]: a branch starts at scale 0 (/8), got {branch.path[0]}"
            )
        for i in range(1, n):
            step = branch.path[i] - branch.path[i - 1]
            if step not in (0, 1):
                raise GenotypeError(
                    f"{where}.path[{i}]: the scale may stay or go down by one per layer, "
                    f"got {branch.path[i - 1]} -> {branch.path[i]}"
                )
        for i, w in enumerate(branch.widths):
            if not _is_number(w) or not any(_close(w, c) for c in self.width_choices):
                if i == n - 1 and _is_number(w) and _close(w, self.head_width):
                    continue
                raise GenotypeError(
                    f"{where}.widths[{i}]: {w!r} is not one of width_choices "
                    f"{[round(c, 4) for c in self.width_choices]}"
                )
        if not _close(branch.widths[-1], self.head_width):
            raise GenotypeError(
                f"{where}.widths[{n - 1}]: the last width must equal head_width "
                f"{self.head_width!r}, got {branch.widths[-1]!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready mapping of this genotype (the file format)."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "fch": self.fch,
            "stem_width": self.stem_width,
            "head_width": self.head_width,
            "width_choices": list(self.width_choices),
            "branches": [
                {"ops": list(b.ops), "path": list(b.path), "widths": list(b.widths)}
                for b in self.branches
            ],
        }
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "<dict>", op_names: Iterable[str] | None = None
    ) -> Genotype:
        """Parse and validate a genotype mapping; errors name ``source`` and the field."""
        if not isinstance(data, dict):
            raise GenotypeError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise GenotypeError(
                f"{source}: 'format' must be {FORMAT!r}, got {data.get('format')!r}"
            )
        if data.get("version") != VERSION:
            raise GenotypeError(
                f"{source}: 'version' {data.get('version')!r} is not supported (expected {VERSION})"
            )
        known = {
            "format",
            "version",
            "name",
            "fch",
            "stem_width",
            "head_width",
            "width_choices",
            "branches",
            "meta",
        }
        for key in data:
            if key not in known:
                raise GenotypeError(f"{source}: unknown field {key!r}")
        for key in known - {"meta"}:
            if key not in data:
                raise GenotypeError(f"{source}: missing field {key!r}")
        if not isinstance(data["name"], str):
            raise GenotypeError(f"{source}: 'name' must be a string, got {data['name']!r}")
        if not isinstance(data["width_choices"], list):
            raise GenotypeError(f"{source}: 'width_choices' must be a list")
        if not isinstance(data["branches"], list):
            raise GenotypeError(f"{source}: 'branches' must be a list")
        branches = []
        for b, raw in enumerate(data["branches"]):
            if not isinstance(raw, dict):
                raise GenotypeError(f"{source}: branches[{b}] must be an object")
            for key in ("ops", "path", "widths"):
                if not isinstance(raw.get(key), list):
                    raise GenotypeError(f"{source}: branches[{b}].{key} must be a list")
            extra = set(raw) - {"ops", "path", "widths"}
            if extra:
                raise GenotypeError(f"{source}: branches[{b}]: unknown field {sorted(extra)[0]!r}")
            branches.append(Branch(tuple(raw["ops"]), tuple(raw["path"]), tuple(raw["widths"])))
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise GenotypeError(f"{source}: 'meta' must be an object")
        geno = cls(
            name=data["name"],
            fch=data["fch"],
            stem_width=data["stem_width"],
            head_width=data["head_width"],
            width_choices=tuple(data["width_choices"]),
            branches=tuple(branches),
            meta=meta,
        )
        try:
            return geno.validate(op_names)
        except GenotypeError as exc:
            raise GenotypeError(f"{source}: {exc}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write this genotype as JSON (atomically)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike, op_names: Iterable[str] | None = None) -> Genotype:
        """Read and validate a genotype JSON file; errors name the file and the field."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise GenotypeError(f"{path}: genotype file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise GenotypeError(f"{path}: cannot read genotype file ({exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(path), op_names=op_names)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6

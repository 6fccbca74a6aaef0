"""The latency lookup table: measured kernel latencies of one device, as JSON.

File format::

    {"format": "fasterseg-latency-table", "version": 1,
     "fingerprint": {"cpu": ..., "cores": ..., "threads": ..., "torch": ..., "backend": ...,
                     "backend_version": ..., "device": ..., "dtype": ..., "height": ...,
                     "width": ..., "statistic": "median", "memory": ..., ...},
     "entries": {"<OpSpec.key()>": {"ms": float, "std": float, "n": int,
                                    "disturbed": true (optional)}, ...},
     "calibration": {"scale": float, "offset_ms": float, "fitted_on": int},  (optional)
     "self_check": {"networks": [{"name", "sum_ms", "measured_ms", "heldout_ms",
                                  "disturbed"}, ...],
                    "others_cores_max": float}                                  (optional)}

``self_check`` holds the networks a build timed end to end to fit ``calibration``: each one's
summed kernels, its measured latency and the calibration fitted on the *other* networks
applied to its sum (``heldout_ms``, leave-one-out), so the table carries the error of its own
predictions on networks it was not fitted to. An entry marked ``disturbed`` could only be timed
while other processes were busy; the next build of the table times it again.

The fingerprint says where and how the entries were measured. Loading a table whose
fingerprint differs from the current device is an error unless explicitly allowed. A table
never measures anything: a lookup miss is a KeyError naming the key and the command that
fills it (``fasterseg lut build``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..io import atomic_write_json
from .measure import (
    Measurement,
    check_backend,
    check_statistic,
    import_onnxruntime,
    memory_mode,
    resolve_threads,
)
from .spec import OpSpec

FORMAT = "fasterseg-latency-table"
VERSION = 1
#: Fingerprint fields that must agree for two tables (or a table and a device) to be comparable.
COMPARED_FIELDS = (
    "cpu",
    "cores",
    "threads",
    "torch",
    "backend",
    "backend_version",
    "device",
    "dtype",
    "height",
    "width",
    "statistic",
)


class LatencyTableError(UserError):
    """A latency table file that is malformed or was measured on another device/setting."""


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else what ``platform`` reports)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def device_fingerprint(
    backend: str,
    device: torch.device | str,
    threads: int | None,
    height: int,
    width: int,
    dtype: str = "float32",
    statistic: str = "median",
) -> dict[str, Any]:
    """Where and how latencies are measured: the fields of :data:`COMPARED_FIELDS` plus
    informational ones (``OMP_NUM_THREADS``, platform) that are recorded but not compared."""
    dev = check_backend(backend, device)
    if backend == "onnxruntime":
        backend_version = import_onnxruntime().__version__
    else:
        backend_version = torch.__version__
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "threads": resolve_threads(threads),
        "torch": torch.__version__,
        "backend": backend,
        "backend_version": backend_version,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "dtype": dtype,
        "height": int(height),
        "width": int(width),
        "statistic": check_statistic(statistic),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "memory": memory_mode(),
        "platform": platform.platform(),
    }


def fingerprint_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The compared fields on which two fingerprints differ, as ``field: a vs b`` strings."""
    return [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in COMPARED_FIELDS if a.get(k) != b.get(k)]


@dataclass(frozen=True)
class Calibration:
    """A correction of summed kernel latencies: ``measured ≈ scale * sum + offset_ms``.

    Fitted on networks measured end to end (``fitted_on`` of them); it absorbs what the
    kernels miss when timed alone (per-call overhead, cache and memory traffic between
    kernels).
    """

    scale: float
    offset_ms: float
    fitted_on: int

    def apply(self, ms: float) -> float:
        """Corrected latency (ms) of a summed prediction ``ms``."""
        return self.scale * ms + self.offset_ms

    def to_dict(self) -> dict[str, Any]:
        """The JSON mapping stored under the table's ``calibration``."""
        return {"scale": self.scale, "offset_ms": self.offset_ms, "fitted_on": self.fitted_on}

    def describe(self) -> str:
        """``measured ≈ S x sum`` (and the offset, where there is one)."""
        offset = f" {self.offset_ms:+.3f} ms" if self.offset_ms else ""
        return f"measured ≈ {self.scale:.4f} x sum{offset}"

    @classmethod
    def fit(cls, predicted: Iterable[float], measured: Iterable[float]) -> Calibration:
        """The ``scale`` and ``offset_ms`` that best map ``predicted`` sums to ``measured``
        latencies in relative terms (least squares of ``(scale * p + offset) / m - 1``, so a
        large network does not outweigh a small one); a scale alone where the sums do not
        determine a line (one network, or all of one sum).

        The offset is real: small networks run further above their summed kernels than large
        ones (a demo-space network 1.36x its sum, the paper's teacher 1.12x, in one table),
        but it is only measured when the fitted networks differ in size: the self-check's
        networks include the smallest and the largest of their space for that reason
        (:func:`fasterseg.latency.build.check_genotypes`).
        """
        p, m = list(map(float, predicted)), list(map(float, measured))
        if len(p) != len(m) or len(p) < 1:
            raise ValueError(f"need at least one (predicted, measured) pair, got {len(p)}")
        if any(not (x > 0 and y > 0) for x, y in zip(p, m)):
            raise ValueError("cannot fit a calibration: latencies must be positive")
        u = [x / y for x, y in zip(p, m)]  # the scale's column, relative to each network
        v = [1.0 / y for y in m]  # the offset's column
        uu, uv, vv = sum(a * a for a in u), sum(a * b for a, b in zip(u, v)), sum(b * b for b in v)
        su, sv = sum(u), sum(v)
        det = uu * vv - uv * uv
        if len(p) < 2 or det <= 1e-9 * uu * vv:
            return cls(scale=su / uu, offset_ms=0.0, fitted_on=len(p))
        scale = (su * vv - sv * uv) / det
        return cls(scale=scale, offset_ms=(sv * uu - su * uv) / det, fitted_on=len(p))


#: A self-check passes when every held-out prediction lies within this fraction of its network.
CHECK_TOLERANCE = 0.10


@dataclass(frozen=True)
class CheckedNetwork:
    """One self-check network: its summed kernels, measured and held-out predicted latency."""

    name: str
    sum_ms: float
    measured_ms: float
    heldout_ms: float
    disturbed: bool

    @property
    def heldout_error(self) -> float:
        """|held-out prediction - measured| / measured."""
        return abs(self.heldout_ms - self.measured_ms) / self.measured_ms

    @property
    def sum_error(self) -> float:
        """|summed kernels - measured| / measured."""
        return abs(self.sum_ms - self.measured_ms) / self.measured_ms


@dataclass(frozen=True)
class SelfCheck:
    """A table's check of itself against networks timed end to end (see the module doc)."""

    networks: tuple[CheckedNetwork, ...]
    others_cores_max: float

    @classmethod
    def of(
        cls,
        names: Iterable[str],
        sums: Iterable[float],
        measured: Iterable[float],
        disturbed: Iterable[bool],
        others_cores_max: float,
    ) -> SelfCheck:
        """Fit, for each network, the calibration on all the others and predict it."""
        names, sums, meas = list(names), list(map(float, sums)), list(map(float, measured))
        bad = list(disturbed)
        if len(sums) < 3:
            raise ValueError(f"a self-check needs at least 3 networks, got {len(sums)}")
        nets = []
        for i, name in enumerate(names):
            rest = [j for j in range(len(sums)) if j != i]
            held = Calibration.fit([sums[j] for j in rest], [meas[j] for j in rest])
            nets.append(CheckedNetwork(name, sums[i], meas[i], held.apply(sums[i]), bad[i]))
        return cls(tuple(nets), float(others_cores_max))

    @property
    def disturbed(self) -> bool:
        """Whether some network was timed only while other processes were busy."""
        return any(n.disturbed for n in self.networks)

    @property
    def heldout_error_max(self) -> float:
        """The largest held-out relative error."""
        return max(n.heldout_error for n in self.networks)

    @property
    def heldout_error_mean(self) -> float:
        """The mean held-out relative error."""
        return sum(n.heldout_error for n in self.networks) / len(self.networks)

    @property
    def sum_error_mean(self) -> float:
        """The mean relative error of the plain sums."""
        return sum(n.sum_error for n in self.networks) / len(self.networks)

    @property
    def passed(self) -> bool:
        """Undisturbed, and every held-out prediction within :data:`CHECK_TOLERANCE`."""
        return not self.disturbed and self.heldout_error_max <= CHECK_TOLERANCE

    def calibration(self) -> Calibration:
        """The calibration fitted on every network of the check."""
        return Calibration.fit(
            [n.sum_ms for n in self.networks], [n.measured_ms for n in self.networks]
        )

    def describe(self) -> str:
        """One sentence: networks, held-out error, plain-sum error, disturbance."""
        n = len(self.networks)
        text = (
            f"self-check on {n} networks timed end to end: calibrated predictions off by "
            f"{100 * self.heldout_error_mean:.1f}% on average (at most "
            f"{100 * self.heldout_error_max:.1f}%) on networks left out of the fit; the plain "
            f"sum of kernels off by {100 * self.sum_error_mean:.1f}%"
        )
        if self.disturbed:
            text += (
                f"; other processes used up to {self.others_cores_max:.2f} cores while "
                "networks were timed, so these figures measure the load, not the table"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        """The JSON mapping stored under the table's ``self_check``."""
        return {
            "networks": [
                {
                    "name": n.name,
                    "sum_ms": n.sum_ms,
                    "measured_ms": n.measured_ms,
                    "heldout_ms": n.heldout_ms,
                    "disturbed": n.disturbed,
                }
                for n in self.networks
            ],
            "others_cores_max": self.others_cores_max,
        }


class LatencyTable:
    """Kernel latencies of one device: ``fingerprint`` and ``entries`` (key -> Measurement).

    ``path`` is the file the table was loaded from or last saved to (None for a new table);
    it only makes error messages precise.
    """

    def __init__(
        self,
        fingerprint: Mapping[str, Any],
        entries: Mapping[str, Measurement] | None = None,
        *,
        calibration: Calibration | None = None,
        self_check: SelfCheck | None = None,
        path: str | os.PathLike | None = None,
    ) -> None:
        self.fingerprint = dict(fingerprint)
        self.entries: dict[str, Measurement] = dict(entries or {})
        self.calibration = calibration
        self.self_check = self_check
        self.path = Path(path) if path is not None else None

    # ------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, spec: object) -> bool:
        key = spec.key() if isinstance(spec, OpSpec) else spec
        return key in self.entries

    def add(self, spec: OpSpec, measurement: Measurement) -> None:
        """Store (or replace) the entry of ``spec``."""
        self.entries[spec.key()] = measurement

    def get(self, spec: OpSpec) -> Measurement:
        """The measurement of ``spec``; a miss raises KeyError naming the key and the fix."""
        key = spec.key()
        try:
            return self.entries[key]
        except KeyError:
            raise KeyError(self._missing_message([key])) from None

    def require(self, specs: Iterable[OpSpec]) -> None:
        """Raise KeyError listing every spec without an entry (with the fix), if any."""
        missing = self.missing(specs)
        if missing:
            raise KeyError(self._missing_message([s.key() for s in missing]))

    def _missing_message(self, keys: list[str]) -> str:
        where = str(self.path) if self.path is not None else "FILE"
        one = len(keys) == 1
        what = f"entry {keys[0]}" if one else f"entries ({len(keys)}) {', '.join(keys)}"
        it, they = ("it", "it") if one else ("them", "they")
        if self.fingerprint.get("imported"):
            # another device's timings: measuring here would mix devices in one table
            return (
                f"no latency {what} in {where}, imported from {self.fingerprint.get('source')}; "
                f"neither that table nor its accounting rule covers {it}, and {they} cannot be "
                f"measured here: use a table built on this machine (`fasterseg lut build`)"
            )
        h = self.fingerprint.get("height", "H")
        w = self.fingerprint.get("width", "W")
        return (
            f"no latency {what} in {where}; measure {it} with "
            f"`fasterseg lut build --out {where} --height {h} --width {w}` and the "
            f"--config whose search space contains it"
        )

    def lookup(self, spec: OpSpec) -> float:
        """Latency of ``spec`` in milliseconds (KeyError on a miss; never measures)."""
        return self.get(spec).ms

    def missing(self, specs: Iterable[OpSpec]) -> list[OpSpec]:
        """The specs (deduplicated, in order) that have no entry yet."""
        seen: set[str] = set()
        out = []
        for spec in specs:
            key = spec.key()
            if key not in self.entries and key not in seen:
                seen.add(key)
                out.append(spec)
        return out

    def check_fingerprint(
        self, expected: Mapping[str, Any], *, allow_mismatch: bool = False, source: str = ""
    ) -> None:
        """Raise LatencyTableError when this table's fingerprint differs from ``expected`` in a
        compared field (naming both values of each), or only warn with ``allow_mismatch``."""
        diff = fingerprint_diff(self.fingerprint, expected)
        if not diff:
            return
        where = source or str(self.path or "latency table")
        msg = (
            f"{where}: measured on a different device or setting "
            f"(table vs current: {'; '.join(diff)})"
        )
        if not allow_mismatch:
            raise LatencyTableError(
                msg + "; build a table for this device with `fasterseg lut build`"
            )
        warnings.warn(msg, stacklevel=3)

    def merge(self, other: LatencyTable, *, allow_mismatch: bool = False) -> LatencyTable:
        """Add ``other``'s entries to this table (``other`` wins on equal keys); returns self.

        The fingerprints must agree (see :meth:`check_fingerprint`).
        """
        other.check_fingerprint(self.fingerprint, allow_mismatch=allow_mismatch)
        self.entries.update(other.entries)
        return self

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """The JSON mapping of the file format."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "entries": {k: m.to_dict() for k, m in sorted(self.entries.items())},
        }
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_dict()
        if self.self_check is not None:
            out["self_check"] = self.self_check.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> LatencyTable:
        """Parse and validate the file format; errors name ``source`` and the field."""
        if not isinstance(data, dict):
            raise LatencyTableError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise LatencyTableError(
                f"{source}: 'format' must be {FORMAT!r}, got {data.get('format')!r}"
            )
        if data.get("version") != VERSION:
            raise LatencyTableError(
                f"{source}: 'version' {data.get('version')!r} is not supported (expected {VERSION})"
            )
        extra = set(data) - {"format", "version", "fingerprint", "entries", "calibration",
                             "self_check"}  # fmt: skip
        if extra:
            raise LatencyTableError(f"{source}: unknown field {sorted(extra)[0]!r}")
        fingerprint = data.get("fingerprint")
        if not isinstance(fingerprint, dict):
            raise LatencyTableError(f"{source}: 'fingerprint' must be an object")
        for key in COMPARED_FIELDS:
            if key not in fingerprint:
                raise LatencyTableError(f"{source}: fingerprint: missing field {key!r}")
        raw = data.get("entries")
        if not isinstance(raw, dict):
            raise LatencyTableError(f"{source}: 'entries' must be an object")
        entries = {}
        for key, value in raw.items():
            entries[key] = _parse_entry(key, value, source)
        calibration = None
        if "calibration" in data:
            calibration = _parse_calibration(data["calibration"], source)
        check = None
        if "self_check" in data:
            check = _parse_self_check(data["self_check"], source)
        return cls(fingerprint, entries, calibration=calibration, self_check=check)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the table as JSON atomically to ``path`` (default: where it came from)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("LatencyTable.save needs a path: this table has none yet")
        atomic_write_json(target, self.to_dict())
        self.path = target
        return target

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        expect_fingerprint: Mapping[str, Any] | None = None,
        allow_mismatch: bool = False,
    ) -> LatencyTable:
        """Read and validate a table file.

        With ``expect_fingerprint`` (normally :func:`device_fingerprint` of the current device),
        a differing compared field raises LatencyTableError naming both fingerprints' values,
        or warns when ``allow_mismatch``.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LatencyTableError(
                f"{path}: latency table not found; make one with "
                f"`fasterseg lut build --out {path} --height H --width W`"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LatencyTableError(f"{path}: cannot read latency table ({exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LatencyTableError(f"{path}: not valid JSON ({exc})") from None
        table = cls.from_dict(data, source=str(path))
        table.path = path
        if expect_fingerprint is not None:
            table.check_fingerprint(expect_fingerprint, allow_mismatch=allow_mismatch)
        return table

    # ------------------------------------------------------------ report
    def summary(self, *, worst: int = 5) -> str:
        """A human-readable summary: fingerprint, entry counts per kind, total/min/max ms and the
        ``worst`` entries with the largest std/ms ratio (the noisiest measurements)."""
        lines = [f"latency table {self.path or ''}".rstrip(), "fingerprint:"]
        lines += [f"  {k}: {v}" for k, v in self.fingerprint.items()]
        lines.append(f"entries: {len(self.entries)}")
        if self.entries:
            kinds = Counter(key.split("|", 1)[0] for key in self.entries)
            lines += [f"  {kind}: {count}" for kind, count in sorted(kinds.items())]
            values = [m.ms for m in self.entries.values()]
            lo = min(self.entries.items(), key=lambda kv: kv[1].ms)
            hi = max(self.entries.items(), key=lambda kv: kv[1].ms)
            lines.append(f"total: {sum(values):.3f} ms")
            disturbed = sum(m.disturbed for m in self.entries.values())
            if disturbed:
                lines.append(
                    f"disturbed: {disturbed} entries could only be timed while other processes "
                    "were busy; `fasterseg lut build` with the same settings times them again"
                )
            lines.append(f"min: {lo[1].ms:.4f} ms  {lo[0]}")
            lines.append(f"max: {hi[1].ms:.4f} ms  {hi[0]}")
            noisy = sorted(
                self.entries.items(), key=lambda kv: kv[1].std / max(kv[1].ms, 1e-9), reverse=True
            )[:worst]
            lines.append(f"largest std/ms ({len(noisy)}):")
            lines += [
                f"  {m.std / max(m.ms, 1e-9):.3f}  ({m.ms:.4f} ± {m.std:.4f} ms, n={m.n})  {k}"
                for k, m in noisy
            ]
        if self.calibration is not None:
            c = self.calibration
            lines.append(
                f"calibration: {c.describe()} (fitted on {c.fitted_on} networks; predictions "
                "use it)"
            )
        else:
            lines.append("calibration: none (predictions are plain sums of kernels)")
        if self.self_check is not None:
            lines.append(self.self_check.describe())
            lines += [
                f"  {n.name}: sum {n.sum_ms:.2f} ms, measured {n.measured_ms:.2f} ms, held-out "
                f"prediction {n.heldout_ms:.2f} ms ({100 * n.heldout_error:.1f}%)"
                + (" [disturbed]" if n.disturbed else "")
                for n in self.self_check.networks
            ]
        return "\n".join(lines)


ENTRY_KEYS = {"ms", "std", "n", "disturbed"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_entry(key: Any, value: Any, source: str) -> Measurement:
    where = f"{source}: entries[{key!r}]"
    try:
        OpSpec.from_key(key)
    except ValueError as exc:
        raise LatencyTableError(f"{where}: {exc}") from None
    if not isinstance(value, dict) or not {"ms", "std", "n"} <= set(value) <= ENTRY_KEYS:
        raise LatencyTableError(
            f"{where}: expected an object with 'ms', 'std', 'n' (and optionally 'disturbed')"
        )
    disturbed = value.get("disturbed", False)
    if not isinstance(disturbed, bool):
        raise LatencyTableError(f"{where}.disturbed: expected true or false, got {disturbed!r}")
    if not _number(value["ms"]) or value["ms"] < 0:
        raise LatencyTableError(f"{where}.ms: expected a number >= 0, got {value['ms']!r}")
    if not _number(value["std"]) or value["std"] < 0:
        raise LatencyTableError(f"{where}.std: expected a number >= 0, got {value['std']!r}")
    n = value["n"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise LatencyTableError(f"{where}.n: expected a positive integer, got {n!r}")
    return Measurement(ms=float(value["ms"]), std=float(value["std"]), n=n, disturbed=disturbed)


def _parse_calibration(value: Any, source: str) -> Calibration:
    where = f"{source}: calibration"
    if not isinstance(value, dict) or set(value) != {"scale", "offset_ms", "fitted_on"}:
        raise LatencyTableError(f"{where}: expected an object with scale, offset_ms, fitted_on")
    for key in ("scale", "offset_ms"):
        if not _number(value[key]):
            raise LatencyTableError(f"{where}.{key}: expected a number, got {value[key]!r}")
    n = value["fitted_on"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise LatencyTableError(f"{where}.fitted_on: expected an integer >= 2, got {n!r}")
    return Calibration(float(value["scale"]), float(value["offset_ms"]), n)


def _parse_self_check(value: Any, source: str) -> SelfCheck:
    where = f"{source}: self_check"
    if not isinstance(value, dict) or set(value) != {"networks", "others_cores_max"}:
        raise LatencyTableError(f"{where}: expected an object with networks, others_cores_max")
    nets = value["networks"]
    if not isinstance(nets, list) or len(nets) < 3:
        raise LatencyTableError(f"{where}.networks: expected a list of at least 3 networks")
    keys = {"name", "sum_ms", "measured_ms", "heldout_ms", "disturbed"}
    out = []
    for i, net in enumerate(nets):
        if not isinstance(net, dict) or set(net) != keys:
            raise LatencyTableError(f"{where}.networks[{i}]: expected {', '.join(sorted(keys))}")
        for key in ("sum_ms", "measured_ms", "heldout_ms"):
            if not _number(net[key]) or (key == "measured_ms" and net[key] <= 0):
                raise LatencyTableError(
                    f"{where}.networks[{i}].{key}: expected a number, got {net[key]!r}"
                )
        if not isinstance(net["name"], str) or not isinstance(net["disturbed"], bool):
            raise LatencyTableError(f"{where}.networks[{i}]: name is text, disturbed true/false")
        out.append(
            CheckedNetwork(net["name"], float(net["sum_ms"]), float(net["measured_ms"]),
                           float(net["heldout_ms"]), net["disturbed"])
        )  # fmt: skip
    if not _number(value["others_cores_max"]):
        raise LatencyTableError(f"{where}.others_cores_max: expected a number")
    return SelfCheck(tuple(out), float(value["others_cores_max"]))

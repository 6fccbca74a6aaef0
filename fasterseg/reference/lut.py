"""Import the latency lookup table FasterSeg released (``latency_lookup_table.npy``).

The reference repository (VITA-Group/FasterSeg) ships one table, measured on a GTX 1080Ti with
TensorRT 5.1.5 in fp32 at batch 1 for a 1024x2048 frame: a pickled ``{key: ms}`` dict of 667
entries inside a ``.npy`` file. :func:`import_reference_table` turns it into a
:class:`~fasterseg.latency.LatencyTable` keyed by this project's kernels, usable wherever a
table is taken (:func:`~fasterseg.latency.genotype_latency`, ``profile_genotype``, the search).

**Reading.** :func:`read_reference_npy` never unpickles arbitrary objects (numpy's
``allow_pickle=True`` would): its unpickler resolves only the four globals ``np.save`` writes
for a 0-d object array (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``, ``_codecs.encode`` with latin1), each to an inert stand-in that only records
its arguments, so not even numpy code runs. Any other global is refused before it is looked
up. The result must be a 0-d object array holding one ``dict`` of ``str -> finite float >= 0``.

**Accounting rule.** The reference sums one table entry per module its
``Network_Multi_Path_Infer.forward_latency`` visits; this project sums one entry per kernel of
:func:`~fasterseg.latency.genotype_kernels`. The imported entries are those reference entries,
grouped by kernel (H and W are always the kernel's input size at 1024x2048):

================  ======================================================================
project kernel    reference entries
================  ======================================================================
operator          one cell entry: ``conv`` = ``BasicResidual1x``, ``conv_downup`` =
                  ``BasicResidual_downup_1x``, ``conv_2x`` = ``BasicResidual2x``,
                  ``conv_2x_downup`` = ``BasicResidual_downup_2x`` (see the switch below),
                  ``skip`` = ``FactorizedReduce``; at 128x256, 64x128 or 32x64
``stem``          ``ConvNorm`` 3x3 stride 2 at 1024x2048 + ``BasicResidual2x`` stride 2 at
                  512x1024 + ``BasicResidual2x`` stride 2 at 256x512, for every chain of
                  matching channels
``fusion``        ``ConvNorm`` 1x1 (the reference's ``arms*``) at the coarse size + ``ConvNorm``
                  3x3 (``refines*``) at twice that size on ``c_out + c_fine`` channels; the
                  upsampling and concatenation inside the block cost **0 ms by this rule**
``concat``        **0 ms by this rule**, for 1, 2 or 3 branches whose concatenation has an
                  ``ff_*`` entry: the reference times no concatenation
``ffm``           ``ff_H_W_C`` (FeatureFusion, timed by the reference as one module)
``head``          ``head_H_W_Cin_Cout``; the x8 resize of the logits costs **0 ms by this
                  rule**: the reference does not time it
================  ======================================================================

So a network's predicted latency on the imported table is exactly the reference's
``forward_latency`` sum. Two kinds of reference entries are left unused, and counted in the
fingerprint (``source_entries_unused``): the ``BasicResidual_downup_2x_*`` entries under the
switch below, and the two ``ConvNorm`` 3x3 stride-2 entries at 512x1024 that the reference's
table builder measures for a stem no reference network has. The fingerprint also records the
rule (``accounting``) and the kinds whose entries are 0 ms by it (``zero_ms_by_rule``).

Any other reference key that fits no row above (another op class, a dilation other than 1, a
size that is no kernel input at 1024x2048, a ``ConvNorm`` that pairs with nothing) is an
error listing all such keys. A kernel a network needs that is neither in the table nor
covered by the rule is a KeyError listing the kernels
(:meth:`~fasterseg.latency.LatencyTable.require`), never a silent zero.

**The conv_2x_downup switch.** The reference's ``BasicResidual_downup_2x.forward_latency``
looks up the ``BasicResidual2x_*`` key (method section 3.1), so its search and the
``latency02``/``latency12`` stored in the released arch files charge ``conv_2x_downup`` the
``conv_2x`` latency. ``reference_quirks=True`` (the default for an imported table) does the
same: ``conv_2x_downup`` entries take the ``BasicResidual2x_*`` value. This is the lookup
quirk that ``expected_latency(reference_quirks=True)`` applies at estimate time, moved into
the table so that every consumer (network latency, profile, a search with either
accumulation) sees the reference's figure; applying both is the same as applying one.
``reference_quirks=False`` takes the table's own ``BasicResidual_downup_2x_*`` measurements
(the fingerprint's ``conv_2x_downup_as_conv_2x`` says which).

Kernels are keyed with bilinear resizes (every resize of the reference's ``train/`` and
``search/`` networks, which read this table) and float32. The reference keeps one mean per
entry, so every measurement has ``std`` 0 and ``n`` 1.
"""

from __future__ import annotations

import ast
import hashlib
import io
import math
import os
import pickle
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..latency.measure import Measurement
from ..latency.spec import CONCAT, FFM, FUSION, HEAD, STEM, OpSpec
from ..latency.table import LatencyTable
from .common import ReferenceFileError

#: The frame size every entry of the released table was measured for.
REFERENCE_HEIGHT, REFERENCE_WIDTH = 1024, 2048
#: Reference op class of each cell key -> this project's operator.
CELL_OPS = {
    "BasicResidual1x": "conv",
    "BasicResidual_downup_1x": "conv_downup",
    "BasicResidual2x": "conv_2x",
    "BasicResidual_downup_2x": "conv_2x_downup",
    "FactorizedReduce": "skip",
}
#: Branch counts whose concatenation an ``ff_*`` entry may take (the reference times 1 to 3).
MAX_BRANCHES = 3
UNUSED_DOWNUP_2X = "BasicResidual_downup_2x (conv_2x_downup is charged conv_2x's entry)"
UNUSED_STEM_CONVNORM = (
    "ConvNorm 3x3 stride 2 at 512x1024 (measured by the reference's table builder, run by no "
    "reference network)"
)
ACCOUNTING = (
    "FasterSeg reference accounting (fasterseg.reference.lut): operator = one cell entry; "
    "stem = ConvNorm + 2 BasicResidual2x; fusion = ConvNorm 1x1 + ConvNorm 3x3; ffm = ff_*; "
    "head = head_*; concatenation and resizes are not timed by the reference: 0 ms"
)

_N = r"([1-9][0-9]*)"
_HW = rf"_H{_N}_W{_N}"
_PATTERNS = {
    "cell": re.compile(
        rf"(BasicResidual1x|BasicResidual_downup_1x|BasicResidual2x|BasicResidual_downup_2x)"
        rf"{_HW}_Cin{_N}_Cout{_N}_stride([12])_dilation1"
    ),
    "cell_fr": re.compile(rf"(FactorizedReduce){_HW}_Cin{_N}_Cout{_N}_stride([12])"),
    "convnorm": re.compile(rf"ConvNorm{_HW}_Cin{_N}_Cout{_N}_kernel([13])_stride([12])"),
    "ff": re.compile(rf"ff{_HW}_C{_N}"),
    "head": re.compile(rf"head{_HW}_Cin{_N}_Cout{_N}"),
}
_NPY_MAGIC = b"\x93NUMPY"


# ---------------------------------------------------------------- restricted .npy reader
class _NDArrayType:
    """Stand-in for the ``numpy.ndarray`` class a numpy pickle names as the array's type."""


class _Array:
    """Stand-in for the array ``_reconstruct`` makes; BUILD hands it numpy's array state
    ``(version, shape, dtype, is_fortran, data)``."""

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DType:
    """Stand-in for ``numpy.dtype(code, align, copy)``; only the type code is kept."""

    def __init__(self, code: Any, align: Any = False, copy: Any = True) -> None:
        self.code = code

    def __setstate__(self, state: Any) -> None:
        """Ignore the byte order and field layout numpy pickles: an object dtype has none."""


#: Frames per second the paper reports for the published networks, measured end to end on a
#: GTX 1080Ti with TensorRT at 1024x2048 (its Table 4; method document section 7).
PUBLISHED_FPS = {"fasterseg-student": 163.9}


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _Array:
    if subtype is not _NDArrayType:
        raise pickle.UnpicklingError("_reconstruct of something other than numpy.ndarray")
    return _Array()


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # numpy pickles the array's raw bytes as a latin1 str; other codecs are never needed
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy >= 2 writes this name
    ("numpy", "ndarray"): _NDArrayType,
    ("numpy", "dtype"): _DType,
    ("_codecs", "encode"): _encode,
}


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside :data:`_ALLOWED_GLOBALS`."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of a pickled 0-d numpy object array, to inert stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _npy_header(data: bytes, where: str) -> tuple[dict[str, Any], int]:
    """Parse the .npy header; returns (header dict, offset of the payload)."""
    if not data.startswith(_NPY_MAGIC):
        raise ReferenceFileError(f"{where}: not a .npy file (no \\x93NUMPY magic)")
    major = data[6] if len(data) > 6 else None
    if major == 1:
        start, fmt = 10, "<H"
    elif major in (2, 3):
        start, fmt = 12, "<I"
    else:
        raise ReferenceFileError(f"{where}: truncated or unsupported .npy version {major!r}")
    if len(data) < start:
        raise ReferenceFileError(f"{where}: truncated .npy header ({len(data)} bytes)")
    (length,) = struct.unpack(fmt, data[8:start])
    end = start + length
    if len(data) < end:
        raise ReferenceFileError(
            f"{where}: truncated .npy header ({len(data)} bytes, the header ends at {end})"
        )
    text = data[start:end].decode("utf-8" if major == 3 else "latin1")
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        header = None
    if not isinstance(header, dict) or not {"descr", "shape"} <= set(header):
        raise ReferenceFileError(f"{where}: malformed .npy header {text.strip()!r}")
    return header, end


def _parse_npy(data: bytes, where: str) -> dict[str, float]:
    """The mapping in the bytes of a reference .npy file (see :func:`read_reference_npy`)."""
    header, offset = _npy_header(data, where)
    if header["descr"] != "|O" or header["shape"] != ():
        raise ReferenceFileError(
            f"{where}: holds a {header['descr']!r} array of shape {header['shape']!r}, not a "
            "pickled mapping (a 0-d object array)"
        )
    stream = io.BytesIO(data[offset:])
    try:
        obj = _RestrictedUnpickler(stream).load()
    except _RefusedGlobal as exc:
        raise ReferenceFileError(
            f"{where}: refused to unpickle global {str(exc)!r}: a latency table needs only "
            "numpy's array reconstruction, anything else could run code (nothing was executed)"
        ) from None
    except EOFError:
        raise ReferenceFileError(f"{where}: truncated pickle (the file ends early)") from None
    except (pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ReferenceFileError(f"{where}: malformed or truncated pickle ({exc})") from None
    trailing = len(stream.read())
    if trailing:
        raise ReferenceFileError(f"{where}: {trailing} unexpected bytes after the pickle")
    state = obj.state if isinstance(obj, _Array) else None
    if not (isinstance(state, tuple) and len(state) == 5):
        raise ReferenceFileError(f"{where}: the pickle holds no numpy array")
    _, shape, dtype, _, items = state
    if shape != () or not isinstance(dtype, _DType) or dtype.code not in ("O4", "O8"):
        raise ReferenceFileError(f"{where}: the pickle holds no 0-d object array")
    if not (isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict)):
        held = type(items[0]).__name__ if isinstance(items, list) and items else "nothing"
        raise ReferenceFileError(f"{where}: holds a {held}, not a str -> float mapping")
    table = items[0]
    for key, value in table.items():
        if not isinstance(key, str):
            raise ReferenceFileError(f"{where}: key {key!r} is not a string")
        if not isinstance(value, float) or not math.isfinite(value) or value < 0:
            raise ReferenceFileError(
                f"{where}: entry {key!r}: expected a finite float >= 0 (ms), got {value!r}"
            )
    return dict(table)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ReferenceFileError(f"{path}: reference latency table not found") from None
    except OSError as exc:
        raise ReferenceFileError(f"{path}: cannot read reference latency table ({exc})") from None


def read_reference_npy(path: str | os.PathLike) -> dict[str, float]:
    """The ``{key: ms}`` mapping pickled in a FasterSeg ``latency_lookup_table.npy``.

    Only a 0-d object array holding a ``dict`` of ``str -> finite float >= 0`` is accepted;
    the pickle is read with a restricted unpickler that builds nothing but that (no numpy
    code runs, see the module docstring). Raises ReferenceFileError naming the file for a
    missing or truncated file, a pickle naming any other global (refused before it could
    run), a .npy holding anything but one such mapping, and a key or value of another type.
    """
    path = Path(path)
    return _parse_npy(_read(path), str(path))


# ---------------------------------------------------------------- key mapping
def _parse(key: str) -> tuple[str, tuple[Any, ...]] | None:
    """(pattern name, fields with numbers as int) of a reference key; None if none matches."""
    for name, pattern in _PATTERNS.items():
        match = pattern.fullmatch(key)
        if match:
            return name, tuple(int(g) if g.isdigit() else g for g in match.groups())
    return None


@dataclass
class _Parts:
    """The reference entries sorted into the rows of the accounting rule (values: keys)."""

    ops: dict[OpSpec, str] = field(default_factory=dict)
    stem_convs: list[tuple[int, str]] = field(default_factory=list)  # (c_out, key)
    #: per conv_2x of the stem (input 512x1024, 256x512): (c_in, c_out, key)
    stem_downs: tuple[list[tuple[int, int, str]], ...] = field(default_factory=lambda: ([], []))
    arms: list[tuple[int, int, int, int, str]] = field(default_factory=list)  # (h, w, c_in, c_out)
    refines: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    ffs: list[tuple[int, int, int, str]] = field(default_factory=list)  # (h, w, c, key)
    heads: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    unused: dict[str, list[str]] = field(
        default_factory=lambda: {UNUSED_DOWNUP_2X: [], UNUSED_STEM_CONVNORM: []}
    )
    unplaced: list[str] = field(default_factory=list)


def _sort(raw: dict[str, float], reference_quirks: bool) -> _Parts:
    h, w = REFERENCE_HEIGHT, REFERENCE_WIDTH
    cells = {(h // 8, w // 8): 0, (h // 16, w // 16): 1, (h // 32, w // 32): 2}
    stem_ops = {(h // 2, w // 2): 0, (h // 4, w // 4): 1}  # inputs of the stem's 2 conv_2x
    parts = _Parts()
    for key in raw:
        parsed = _parse(key)
        kind, f = parsed if parsed is not None else ("", ())
        if kind in ("cell", "cell_fr"):
            cls, kh, kw, c_in, c_out, stride = f
            if cls == "BasicResidual2x" and stride == 2 and (kh, kw) in stem_ops:
                parts.stem_downs[stem_ops[kh, kw]].append((c_in, c_out, key))
            elif (kh, kw) not in cells:
                parts.unplaced.append(key)
            elif reference_quirks and cls == "BasicResidual_downup_2x":
                parts.unused[UNUSED_DOWNUP_2X].append(key)
            else:
                parts.ops[OpSpec(CELL_OPS[cls], c_in, c_out, kh, kw, stride)] = key
                if reference_quirks and cls == "BasicResidual2x":
                    parts.ops[OpSpec("conv_2x_downup", c_in, c_out, kh, kw, stride)] = key
        elif kind == "convnorm":
            kh, kw, c_in, c_out, k, stride = f
            scale = cells.get((kh, kw))
            if (kh, kw, c_in, k, stride) == (h, w, 3, 3, 2):
                parts.stem_convs.append((c_out, key))
            elif stem_ops.get((kh, kw)) == 0 and (k, stride) == (3, 2):
                parts.unused[UNUSED_STEM_CONVNORM].append(key)
            elif scale in (1, 2) and (k, stride) == (1, 1):
                parts.arms.append((kh, kw, c_in, c_out, key))
            elif scale in (0, 1) and (k, stride) == (3, 1):
                parts.refines.append((kh, kw, c_in, c_out, key))
            else:
                parts.unplaced.append(key)
        elif kind == "ff" and cells.get(f[:2]) == 0:
            parts.ffs.append((*f, key))
        elif kind == "head" and cells.get(f[:2]) == 0:
            parts.heads.append((*f, key))
        else:
            parts.unplaced.append(key)
    return parts


def import_reference_table(
    npy_path: str | os.PathLike, *, reference_quirks: bool = True
) -> LatencyTable:
    """A :class:`~fasterseg.latency.LatencyTable` of the kernels FasterSeg's released table
    covers, by the accounting rule of the module docstring (its ``path`` is None).

    ``reference_quirks`` (default True, the reference's behaviour) charges ``conv_2x_downup``
    the ``conv_2x`` entry, as the reference's lookup does; False uses the table's own
    ``BasicResidual_downup_2x`` entries. The fingerprint marks the table as imported (GTX
    1080Ti, TensorRT, fp32, 1024x2048, mean per entry) and holds every compared field, so it
    loads wherever a table loads and never matches a device measured here.

    Raises ReferenceFileError naming the file for an unreadable or unsafe file
    (:func:`read_reference_npy`) and for keys the rule cannot place (all of them listed).
    """
    path = Path(npy_path)
    data = _read(path)
    raw = _parse_npy(data, str(path))
    parts = _sort(raw, reference_quirks)
    entries: dict[str, Measurement] = {}
    used = {key for keys in parts.unused.values() for key in keys}

    def add(spec: OpSpec, keys: list[str]) -> None:
        used.update(keys)
        entries[spec.key()] = Measurement(ms=sum(raw[k] for k in keys), std=0.0, n=1)

    for spec, key in parts.ops.items():
        add(spec, [key])
    for c1, conv in parts.stem_convs:
        for c1_in, c2, down1 in parts.stem_downs[0]:
            for c2_in, c3, down2 in parts.stem_downs[1]:
                if (c1_in, c2_in) == (c1, c2):
                    stem = OpSpec(STEM, 3, c3, REFERENCE_HEIGHT, REFERENCE_WIDTH, c_mid=(c1, c2))
                    add(stem, [conv, down1, down2])
    for h, w, c_coarse, c_out, arm in parts.arms:
        for rh, rw, r_in, r_out, refine in parts.refines:
            if (rh, rw, r_out) == (2 * h, 2 * w, c_out) and r_in > c_out:
                add(OpSpec(FUSION, c_coarse, c_out, h, w, c_fine=r_in - c_out), [arm, refine])
    for h, w, c, key in parts.ffs:
        add(OpSpec(FFM, c, c, h, w), [key])
        for branches in range(1, MAX_BRANCHES + 1):
            if c % branches == 0:
                add(OpSpec(CONCAT, c // branches, c, h, w), [])
    for h, w, c_in, c_out, key in parts.heads:
        add(OpSpec(HEAD, c_in, c_out, h, w), [key])

    unplaced = parts.unplaced + [k for k in raw if k not in used and k not in parts.unplaced]
    if unplaced:
        raise ReferenceFileError(
            f"{path}: {len(unplaced)} reference entries fit no kernel of the accounting rule "
            f"(fasterseg.reference.lut): {', '.join(unplaced)}"
        )
    unused = {reason: len(keys) for reason, keys in parts.unused.items() if keys}
    fingerprint = reference_fingerprint(
        source_file=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        entries=len(raw),
        unused=unused,
        reference_quirks=reference_quirks,
    )
    return LatencyTable(fingerprint, entries)


def reference_fingerprint(
    *, source_file: str, sha256: str, entries: int, unused: dict[str, int], reference_quirks: bool
) -> dict[str, Any]:
    """The fingerprint of a table imported from the reference file ``source_file`` (its
    ``sha256`` and number of ``entries``; ``unused``: entries left unused, by reason).

    It holds every field of :data:`~fasterseg.latency.table.COMPARED_FIELDS` (what the
    reference did not record is None or ``"not recorded"``) plus ``imported``, the source, the
    accounting rule and the ``conv_2x_downup`` switch."""
    return {
        "cpu": "not recorded",
        "cores": None,
        "threads": None,
        "torch": "not recorded",
        "backend": "tensorrt",
        "backend_version": "5.1.5",
        "device": "GeForce GTX 1080 Ti",
        "dtype": "float32",
        "height": REFERENCE_HEIGHT,
        "width": REFERENCE_WIDTH,
        "statistic": "mean",
        "imported": True,
        "source": (
            "FasterSeg reference (VITA-Group/FasterSeg) latency_lookup_table.npy: GTX 1080Ti, "
            "TensorRT 5.1.5 fp32 (or the reference's PyTorch fallback), batch 1, 1024x2048"
        ),
        "source_file": source_file,
        "source_sha256": sha256,
        "source_entries": entries,
        "source_entries_unused": unused,
        "accounting": ACCOUNTING,
        "zero_ms_by_rule": [CONCAT],
        "conv_2x_downup_as_conv_2x": reference_quirks,
    }

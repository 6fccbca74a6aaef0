"""The arithmetic of the FasterSeg architecture (method sections 1.2-1.5): channel counts, which
cells a layer has and what each reads. One home for the supernet, the derived network, the
latency enumeration and estimate and the report's drawings.

Plain functions without torch and with no run-time import from the package, below
``genotype``, ``space`` and ``models`` so that every user can import them (``genotype`` takes
``NUM_SCALES``, ``nf`` and ``scale_rate`` from here). Scale index ``s`` (0, 1, 2) means /8,
/16, /32; ``layers`` is the number of layers L.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .config import SpaceConfig

__all__ = [
    "MIN_SIDE",
    "NUM_SCALES",
    "OUTPUT_STRIDE",
    "cell_inputs",
    "cell_scales",
    "channels",
    "has_down",
    "layer_channels",
    "nf",
    "padded_side",
    "ratio_row",
    "ratio_rows",
    "role_widths",
    "scale_rate",
    "side_problem",
    "stem_channels",
]

T = TypeVar("T")

NUM_SCALES = 3
#: The coarsest branch runs at /32, so an input side must divide by 32 ...
OUTPUT_STRIDE = 32
#: ... and be at least 64: the down-up operators halve the /32 feature once more, and a side
#: of 1 there would halve to nothing.
MIN_SIDE = 2 * OUTPUT_STRIDE


def side_problem(value: object) -> str | None:
    """Why ``value`` cannot be a side of a network's input (None when it can): the sides of
    every crop, table resolution and export size are multiples of :data:`OUTPUT_STRIDE` and at
    least :data:`MIN_SIDE`."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return f"must be a positive integer, got {value!r}"
    if value % OUTPUT_STRIDE:
        near = max(MIN_SIDE, round(value / OUTPUT_STRIDE) * OUTPUT_STRIDE)
        return (
            f"must be a multiple of {OUTPUT_STRIDE} (the network's output stride), got {value} "
            f"(nearest: {near})"
        )
    if value < MIN_SIDE:
        return (
            f"must be at least {MIN_SIDE} (the down-up operators halve the /{OUTPUT_STRIDE} "
            f"feature), got {value}"
        )
    return None


def padded_side(side: int) -> int:
    """The smallest side of at least ``side`` pixels that a network takes (see
    :func:`side_problem`): what an image of any size is padded to."""
    return max(MIN_SIDE, -(-side // OUTPUT_STRIDE) * OUTPUT_STRIDE)


def nf(rate: int, width: float, fch: int) -> int:
    """Channels of a feature at down-sampling ``rate`` (2, 4, 8, 16, 32) and width multiplier.

    ``round(rate * fch * width)``: 96/192/384 at /8, /16, /32 for width 1 and Fch 12.
    """
    return round(rate * fch * width)


def scale_rate(scale_index: int) -> int:
    """Down-sampling rate of scale index 0, 1, 2: 8, 16, 32."""
    return 8 * 2**scale_index


def channels(scale: int, width: float, fch: int) -> int:
    """Channels of a feature at scale index ``scale`` and width multiplier ``width``:
    ``round(rate * fch * width)`` with rate 8, 16, 32 (96/192/384 at width 1 and Fch 12)."""
    return nf(scale_rate(scale), width, fch)


def stem_channels(width: float, fch: int) -> tuple[int, int, int]:
    """Output channels (c1, c2, c3) of the stem's three stride-2 steps at stem width ``width``:
    ``2 * nf(2, w)``, ``2 * nf(4, w)``, ``nf(8, w)`` (48/96/96 for the teacher, 32/64/64 for the
    student). c3, at /8, is what the first layer reads."""
    return 2 * nf(2, width, fch), 2 * nf(4, width, fch), nf(8, width, fch)


def role_widths(space: SpaceConfig, role: str) -> tuple[float, float]:
    """(stem width, head width) of ``role`` (``"teacher"`` or ``"student"``) in ``space``;
    neither is searched."""
    if role == "teacher":
        return space.teacher_stem_width, space.teacher_head_width
    if role == "student":
        return space.student_stem_width, space.student_head_width
    raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")


def layer_channels(
    scale: int, stride: int, in_width: float, out_width: float, fch: int
) -> tuple[int, int]:
    """(C_in, C_out) of an operator whose input is at ``scale``: C_in at ``scale`` and
    ``in_width`` (the previous layer's output width; the stem width for layer 0), C_out at the
    next coarser scale when ``stride`` is 2, at ``out_width``."""
    return channels(scale, in_width, fch), channels(scale + (stride == 2), out_width, fch)


def cell_scales(layer: int) -> range:
    """Scale indices of the supernet cells at ``layer``: /8 from layer 0, /16 from layer 1 and
    /32 from layer 2 on (the first cell at a scale reads the finer scale's first down output)."""
    return range(min(layer, NUM_SCALES - 1) + 1)


def has_down(scale: int, layer: int, layers: int) -> bool:
    """Whether the cell (``layer``, ``scale``) has a down op: not at /32, not in the last layer."""
    return scale < NUM_SCALES - 1 and layer < layers - 1


def cell_inputs(
    layer: int,
    scale: int,
    keep: Mapping[int, T],
    down: Mapping[int, T],
    betas: Sequence[Any],
) -> list[tuple[T, Any]]:
    """The inputs of cell (``layer``, ``scale``) with their path weights (section 1.2).

    ``keep[s]``/``down[s]`` are the previous layer's keep output at scale ``s`` (the stem at
    layer 0) and its down output into ``s``; ``betas[s - 1][row]`` the path weights of the
    scale-``s`` cells, ``[from-down, from-keep]``. The /8 cell reads ``keep[0]``, the first cell
    at a scale (``layer == scale``) reads ``down[scale]``, each with weight 1.0; every other cell
    reads ``down[scale]`` and ``keep[scale]``, weighted by ``betas[scale - 1][layer - scale - 1]``.
    The values are passed through untouched: features in the supernet, latencies in the estimate.
    """
    if scale == 0:
        return [(keep[0], 1.0)]
    if layer == scale:
        return [(down[scale], 1.0)]
    b = betas[scale - 1][layer - scale - 1]
    return [(down[scale], b[0]), (keep[scale], b[1])]


def ratio_row(scale: int, layer: int) -> int:
    """Row of the width logits ``ratio_s`` that holds the width of ``layer``'s output at
    ``scale`` (the first /32 output comes from layer 1, so /32 rows start there)."""
    return layer - 1 if scale == 2 else layer


def ratio_rows(scale: int, layers: int) -> int:
    """Number of rows of ``ratio_s``: one per searched output at ``scale`` (the last layer's
    output has the head width): L - 1 at /8 and /16, L - 2 at /32."""
    return layers - 1 if scale < NUM_SCALES - 1 else layers - 2

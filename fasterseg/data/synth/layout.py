"""The plan of the street: road width, lanes, rails, and per side the sidewalk and what stands
along it (facades, parks, side streets)."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

import numpy as np

from .classes import SIDEWALK, TERRAIN, VEGETATION
from .geometry import Array

# what stands behind the sidewalk along one stretch of a side
SEGMENT_BUILDING, SEGMENT_PARK, SEGMENT_GAP = 0, 1, 2
SEGMENT_KIND_P = (0.7, 0.15, 0.15)  # mostly houses, as in a city centre
SEGMENT_LENGTH_RANGE = (8, 35)  # metres along the street
FIRST_SEGMENT_Z = 1.0
FACADE_HEIGHT_RANGE = (8, 26)  # three to eight floors

STREET_LENGTH_RANGE = (90, 200)  # metres to the skyline that closes the street
CURB_RANGE = (3.5, 8.0)  # metres from the centre line to each curb: one to five lanes in all
SIDEWALK_RANGE = (1.8, 4.5)
VERGE_P = 0.2  # a strip of grass between road and sidewalk
VERGE_RANGE = (1.0, 2.5)
FEATURED_VERGE_RANGE = (2.0, 3.5)  # wide enough to show at a visible size
SETBACK_P = 0.6  # facades standing back from the sidewalk, behind a front strip
SETBACK_RANGE = (0, 5)
SETBACK_LABELS = (SIDEWALK, TERRAIN, VEGETATION)
SETBACK_LABEL_P = (0.45, 0.35, 0.2)
RAIL_P = 0.12  # tram rails in the road when no tram is featured
RAIL_CURB_CLEARANCE = 2.0
LANE_WIDTH = 3.3
# people, poles and trees keep this far (metres) from the curb and from the wall line
SIDEWALK_MARGIN = 0.3
MIN_SIDEWALK_SPAN = 0.1
MIN_DEPTH = 1.0


@dataclass
class Side:
    """One side of the street (``sign`` -1 left, +1 right); lateral widths in metres."""

    sign: int
    curb: float
    verge: float
    sidewalk: float
    setback: float
    setback_label: int
    bounds: Array  # segment starts along Z, ascending, last entry = end of the street
    kinds: Array  # segment kind per segment
    heights: Array  # facade height per segment

    @property
    def wall_line(self) -> float:
        """|X| of the outer sidewalk edge, where walls and fences stand."""
        return self.curb + self.verge + self.sidewalk

    @property
    def facade(self) -> float:
        """|X| of the facade plane."""
        return self.wall_line + self.setback

    def segment_at(self, z: Array | float) -> Array:
        """Index of the segment at depth ``z`` (clipped to the first and last segment)."""
        return np.clip(np.searchsorted(self.bounds, z, side="right") - 1, 0, len(self.kinds) - 1)

    def sidewalk_x(self, where: float) -> float:
        """X at fraction ``where`` across the sidewalk (0 = curb side, 1 = outer edge)."""
        span = max(self.sidewalk - 2 * SIDEWALK_MARGIN, MIN_SIDEWALK_SPAN)
        return self.sign * (self.curb + self.verge + SIDEWALK_MARGIN + where * span)


@dataclass
class Street:
    """The sides (left, right), the depth of the skyline, the side with a featured grass verge
    (-1, +1, or 0 for none), the X of the tram rails (None for none) and lane centres X."""

    sides: tuple[Side, Side]
    z_end: float
    terrain_side: int
    rail_x: float | None
    lanes: list[float]


def random_street(rng: np.random.Generator, featured: Set[str]) -> Street:
    """A street plan; featured "terrain" and "train" get a grass verge and rails."""
    z_end = rng.uniform(*STREET_LENGTH_RANGE)
    terrain_side = int(rng.choice([-1, 1])) if "terrain" in featured else 0
    sides = []
    for sign in (-1, 1):
        verge = rng.uniform(*VERGE_RANGE) if rng.random() < VERGE_P else 0.0
        if sign == terrain_side:
            verge = rng.uniform(*FEATURED_VERGE_RANGE)
        setback_label = SETBACK_LABELS[rng.choice(len(SETBACK_LABELS), p=SETBACK_LABEL_P)]
        starts = [FIRST_SEGMENT_Z]
        while starts[-1] < z_end:
            starts.append(starts[-1] + rng.uniform(*SEGMENT_LENGTH_RANGE))
        n = len(starts) - 1
        kinds = rng.choice(len(SEGMENT_KIND_P), size=n, p=SEGMENT_KIND_P)
        kinds[0] = SEGMENT_BUILDING  # keeps the near view of each side a street of houses
        sides.append(
            Side(
                sign=sign,
                curb=rng.uniform(*CURB_RANGE),
                verge=verge,
                sidewalk=rng.uniform(*SIDEWALK_RANGE),
                setback=rng.uniform(*SETBACK_RANGE) * (rng.random() < SETBACK_P),
                setback_label=setback_label,
                bounds=np.asarray(starts, np.float32),
                kinds=kinds,
                heights=rng.uniform(*FACADE_HEIGHT_RANGE, size=n).astype(np.float32),
            )
        )
    left, right = sides
    rail_x: float | None = None
    if "train" in featured or rng.random() < RAIL_P:
        rail_x = float(
            rng.uniform(-left.curb + RAIL_CURB_CLEARANCE, right.curb - RAIL_CURB_CLEARANCE)
        )
    width = left.curb + right.curb
    n_lanes = max(1, round(width / LANE_WIDTH))
    lanes = (-left.curb + (np.arange(n_lanes) + 0.5) * width / n_lanes).tolist()
    return Street((left, right), z_end, terrain_side, rail_x, lanes)


def random_z(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Depth, log-uniform: as many objects near as far, as seen by a camera."""
    lo = max(lo, MIN_DEPTH)
    return float(lo * (hi / lo) ** rng.random())

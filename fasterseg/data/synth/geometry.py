"""Scene geometry in metres: planar parts, the objects made of them, and polygon helpers.

Coordinates are X right, Y up from the ground and Z forward from the camera, which stands at
X = 0, Z = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Array = np.ndarray
Normal = tuple[float, float, float]

FACING_CAMERA: Normal = (0.0, 0.0, -1.0)
UP: Normal = (0.0, 1.0, 0.0)
# texture noise of a part: enough to look like a surface, too little to look like a pattern
PART_TEXTURE = 0.05
CIRCLE_VERTICES = 12
# painter's layers: things behind the wall line (park and front-garden trees) are drawn before
# walls and fences, everything on the street after them
LAYER_BEHIND, LAYER_STREET = 0, 1


@dataclass
class Part:
    """A planar 3-D polygon (or polyline) of one object, drawn in one colour.

    ``pts`` is (n, 3) in metres. ``width`` > 0 draws a polyline that wide (metres).
    ``labelled`` False paints only the image (shadows); ``multiply`` darkens what is there
    instead of painting over it. ``normal`` None draws unlit (lamps, glass, tyres).
    """

    pts: Array
    rgb: Array
    normal: Normal | None = FACING_CAMERA
    width: float = 0.0
    closed: bool = False
    labelled: bool = True
    multiply: bool = False
    texture: float = PART_TEXTURE


@dataclass
class SceneObject:
    """An object with one label, drawn in painter's order by ``(layer, -z, order)``.

    ``footprint`` (X0, X1, Z0, Z1) in metres, where set, may not intersect another footprint.
    """

    label: int
    z: float
    parts: list[Part]
    layer: int = LAYER_STREET
    order: int = 0
    footprint: tuple[float, float, float, float] | None = None


def billboard(cx: float, z: float, pts2: Sequence[tuple[float, float]]) -> Array:
    """(n, 3) points of a polygon in the plane Z = z, given as (X offset, Y) pairs."""
    p = np.asarray(pts2, np.float32)
    return np.column_stack([cx + p[:, 0], p[:, 1], np.full(len(p), z, np.float32)])


def side_plane(x: float, z: float, pts2: Sequence[tuple[float, float]]) -> Array:
    """(n, 3) points of a polygon in the plane X = x, given as (Z offset, Y) pairs."""
    p = np.asarray(pts2, np.float32)
    return np.column_stack([np.full(len(p), x, np.float32), p[:, 1], z + p[:, 0]])


def horizontal_rect(x0: float, x1: float, y: float, z0: float, z1: float) -> Array:
    """(4, 3) float32 corners of a rectangle at height ``y`` spanning X x0..x1, Z z0..z1."""
    return np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]], np.float32)


def circle(cx: float, cy: float, r: float, n: int = CIRCLE_VERTICES) -> list[tuple[float, float]]:
    """``n`` vertices of a circle around (cx, cy)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return list(zip((cx + r * np.cos(t)).tolist(), (cy + r * np.sin(t)).tolist()))


def rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """The four corners of an axis-aligned rectangle."""
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def box(
    xa: float, xb: float, ya: float, yb: float, za: float, zb: float, cam_height: float
) -> list[tuple[Array, Normal]]:
    """The faces of an axis-aligned box a camera at X = 0 sees, in drawing order, with normals."""
    faces: list[tuple[Array, Normal]] = []
    if yb < cam_height:
        faces.append((horizontal_rect(xa, xb, yb, za, zb), UP))
    if xa > 0:
        faces.append((side_plane(xa, za, rect(0, ya, zb - za, yb)), (-1.0, 0.0, 0.0)))
    elif xb < 0:
        faces.append((side_plane(xb, za, rect(0, ya, zb - za, yb)), (1.0, 0.0, 0.0)))
    faces.append((billboard(0.0, za, rect(xa, ya, xb, yb)), FACING_CAMERA))
    return faces


def mirrored_billboard(cx: float, z: float, d: float, pts2: Sequence[tuple[float, float]]) -> Array:
    """:func:`billboard` of an outline drawn facing +X, turned to face ``d`` (-1 or +1)."""
    return billboard(cx, z, [(d * a, b) for a, b in pts2])

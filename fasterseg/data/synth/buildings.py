"""What stands along the street: facades with windows in perspective, park edges, the skyline
that closes the street, and walls and fences along the sidewalk."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

import numpy as np

from .canvas import Canvas, Region
from .classes import BUILDING, FENCE, VEGETATION, WALL
from .colors import BUILDING_PAINT, GREENS, jitter, jitter_pick
from .geometry import FACING_CAMERA, Array, Normal, billboard, rect, side_plane
from .layout import SEGMENT_GAP, SEGMENT_PARK, Side, random_z

FLOOR_HEIGHT_RANGE = (2.8, 3.6)
WINDOW_SPACING_RANGE = (2.2, 4.0)
WINDOW_WIDTH_RANGE = (0.35, 0.65)  # fraction of the spacing
SILL_RANGE = (0.7, 1.0)
WINDOW_HEIGHT_RANGE = (1.1, 1.7)
DARK_GLASS_P = 0.7  # the rest reflect the sky
DARK_GLASS, SKY_GLASS = (55, 65, 80), (140, 160, 185)
FIRST_WINDOW_FLOORS = 0.8  # no windows on the lowest 0.8 floors: doors and shop fronts
LEDGE_HEIGHT = 0.25
LEDGE_BRIGHTEN = 1.12
FACADE_BLOTCH = 0.1

PARK_STEP = 1.5  # metres between the crown tops of a park's edge
PARK_HEIGHT_RANGE = (3, 11)
# foliage: strong per-pixel texture and large blotches; far away, a little smoother
PARK_TEXTURE, PARK_BLOTCH = 0.1, 0.35
FAR_TREES_TEXTURE, FAR_TREES_BLOTCH = 0.08, 0.3
# depth of a house's front face: how far it shows where a side street or a lower house opens
FRONT_DEPTH_RANGE = (12, 30)

SKYLINE_MARGIN = 5  # metres beyond the image edges at the end of the street
# building tops reach 30-70 % of the way from the horizon to the image top: sky stays visible
SKY_BAND_RANGE = (0.3, 0.7)
SKYLINE_BLOCK_WIDTH_RANGE = (6, 30)
SKYLINE_BLOCK_HEIGHT_RANGE = (5, 35)
SKYLINE_TREES_P = 0.25
SKYLINE_TREE_TOPS = 6
SKYLINE_TREE_TOP_RANGE = (0.5, 1)  # crown tops as a fraction of the block height

# walls and fences stand just in front of the outer sidewalk edge, hiding what is behind it
BARRIER_INSET = 0.05
FENCE_COLORS = ((110, 110, 105), (90, 75, 60), (60, 90, 70), (160, 160, 160))
FENCE_GAP_RANGE = (0.12, 0.4)  # metres between bars
FENCE_BAR_RANGE = (0.25, 0.5)  # bar width as a fraction of the gap
# opacity of bars and of the mesh between them; where bars are below a pixel, the average
FENCE_BAR_ALPHA, FENCE_MESH_ALPHA, FENCE_FAR_ALPHA = 0.95, 0.35, 0.6
FENCE_RAIL_WIDTH = 0.08
FENCE_RAIL_DARKEN = 0.8
FENCE_TEXTURE = 0.04

# (label, name in the featured groups, chance per side, height range in metres)
BARRIER_KINDS = ((WALL, "wall", 0.25, (1.0, 3.0)), (FENCE, "fence", 0.25, (0.8, 2.0)))
FEATURED_BARRIER_MIN_HEIGHT = 1.5
FEATURED_BARRIER_GAP_RANGE = (2, 6)  # metres beyond the nearest visible ground
FEATURED_BARRIER_LENGTH_RANGE = (15, 30)
BARRIER_Z_RANGE = (2, 60)
BARRIER_LENGTH_RANGE = (6, 30)


def _windows(
    rng: np.random.Generator,
    canvas: Canvas,
    reg: Region,
    u: Array,
    z: Array,
    base: Array,
    label: int,
    normal: Normal,
    windows: bool,
) -> None:
    """Paint a plane (``u`` metres along it, ``z`` depth per masked pixel) in ``base``, with
    rows of windows that fade to their average colour where they get smaller than a pixel."""
    _, yp = canvas.pixel_grid(reg)
    v = canvas.camera.metres_y(yp, z)
    color = np.broadcast_to(base * canvas.light(normal), (len(yp), 3)).astype(np.float32)
    if windows:
        floor = rng.uniform(*FLOOR_HEIGHT_RANGE)
        spacing = rng.uniform(*WINDOW_SPACING_RANGE)
        win_w = spacing * rng.uniform(*WINDOW_WIDTH_RANGE)
        sill, win_h = rng.uniform(*SILL_RANGE), rng.uniform(*WINDOW_HEIGHT_RANGE)
        glass = jitter(rng, DARK_GLASS if rng.random() < DARK_GLASS_P else SKY_GLASS, 0.2)
        hit = (
            ((u % spacing) < win_w)
            & (((v % floor) - sill) % floor < win_h)
            & (v > floor * FIRST_WINDOW_FLOORS)
        )
        size_px = win_w * canvas.camera.f / z
        vis = np.clip((size_px - 1.0) / 2.0, 0, 1)  # windows 1 px wide are averaged, 3 px drawn
        coverage = win_w / spacing * win_h / floor
        alpha = (hit * vis + (1 - vis) * coverage)[:, None]
        color = color * (1 - alpha) + (glass * canvas.light(normal))[None, :] * alpha
        ledge = ((v % floor) < LEDGE_HEIGHT) & (vis > 0)
        color = np.where(ledge[:, None], color * LEDGE_BRIGHTEN, color)
    canvas.paint(reg, color, label, blotch=FACADE_BLOTCH)


def paint_side_plane(
    rng: np.random.Generator,
    canvas: Canvas,
    reg: Region,
    *,
    x: float,
    origin: float,
    base: Array,
    label: int,
    normal: Normal,
    windows: bool,
) -> None:
    """Paint a region of the plane X = ``x`` (a facade or wall); ``origin`` is the Z where the
    window pattern starts."""
    xp, _ = canvas.pixel_grid(reg)
    z = canvas.camera.side_plane_depth(xp, x)
    _windows(rng, canvas, reg, z - origin, z, base, label, normal, windows)


def paint_front_plane(
    rng: np.random.Generator, canvas: Canvas, reg: Region, *, z: float, origin: float, base: Array
) -> None:
    """Paint a region of the plane Z = ``z`` (a face toward the camera) as a building with
    windows; ``origin`` is the X where the window pattern starts."""
    xp, _ = canvas.pixel_grid(reg)
    depth = np.full(xp.shape, z, np.float32)
    u = np.abs(canvas.camera.metres_x(xp, depth) - origin)
    _windows(rng, canvas, reg, u, depth, base, BUILDING, FACING_CAMERA, True)


def facade(rng: np.random.Generator, canvas: Canvas, side: Side, k: int) -> None:
    """Segment k of one side: a facade, a park edge or nothing (a side street)."""
    za, zb = float(side.bounds[k]), float(side.bounds[k + 1])
    x = side.sign * side.facade
    h = float(side.heights[k])
    kind = side.kinds[k]
    if kind == SEGMENT_GAP:
        return
    side_normal = (float(-side.sign), 0.0, 0.0)
    if kind == SEGMENT_PARK:
        steps = np.linspace(0, zb - za, max(2, int((zb - za) / PARK_STEP)))
        tops = rng.uniform(*PARK_HEIGHT_RANGE, size=len(steps))
        pts = [(0.0, 0.0)] + [(float(s), float(t)) for s, t in zip(steps, tops)]
        pts.append((float(steps[-1]), 0.0))
        reg = canvas.project_region(side_plane(x, za, pts))
        if reg is not None:
            green = jitter_pick(rng, GREENS, 0.12)
            canvas.paint(
                reg, green * canvas.light(side_normal), VEGETATION, PARK_TEXTURE, PARK_BLOTCH
            )
        return
    base = jitter_pick(rng, BUILDING_PAINT, 0.12)
    reg = canvas.project_region(side_plane(x, za, rect(0, 0, zb - za, h)))
    if reg is not None:
        paint_side_plane(
            rng,
            canvas,
            reg,
            x=x,
            origin=za,
            base=base,
            label=BUILDING,
            normal=side_normal,
            windows=True,
        )
    # the face toward the camera, seen where the street or a lower house in front opens
    depth = side.sign * rng.uniform(*FRONT_DEPTH_RANGE)
    reg = canvas.project_region(billboard(x, za, rect(0, 0, depth, h)))
    if reg is not None:
        paint_front_plane(rng, canvas, reg, z=za, origin=x, base=base)


def skyline(rng: np.random.Generator, canvas: Canvas, z: float) -> None:
    """A row of distant buildings and trees across the end of the street, at depth ``z``."""
    cam = canvas.camera
    x = cam.metres_x(0, z) - SKYLINE_MARGIN
    x_max = cam.metres_x(canvas.W, z) + SKYLINE_MARGIN
    h_cap = cam.height + cam.yh * rng.uniform(*SKY_BAND_RANGE) * z / cam.f
    while x < x_max:
        w = rng.uniform(*SKYLINE_BLOCK_WIDTH_RANGE)
        h = min(rng.uniform(*SKYLINE_BLOCK_HEIGHT_RANGE), h_cap)
        if rng.random() < SKYLINE_TREES_P:
            steps = np.linspace(0, w, SKYLINE_TREE_TOPS)
            pts = [(x, 0.0)] + [
                (float(x + s), float(rng.uniform(*SKYLINE_TREE_TOP_RANGE) * h)) for s in steps
            ]
            pts.append((x + w, 0.0))
            reg = canvas.project_region(billboard(0.0, z, pts))
            if reg is not None:
                green = jitter_pick(rng, GREENS, 0.1)
                canvas.paint(
                    reg,
                    green * canvas.light(FACING_CAMERA),
                    VEGETATION,
                    FAR_TREES_TEXTURE,
                    FAR_TREES_BLOTCH,
                )
        else:
            reg = canvas.project_region(billboard(0.0, z, rect(x, 0, x + w, h)))
            if reg is not None:
                base = jitter_pick(rng, BUILDING_PAINT, 0.12)
                paint_front_plane(rng, canvas, reg, z=z, origin=x, base=base)
        x += w


@dataclass
class Barrier:
    """A wall or fence ``h`` metres high along one side's sidewalk edge from Z za to zb."""

    label: int
    side: Side
    za: float
    zb: float
    h: float


def random_barriers(
    rng: np.random.Generator, sides: tuple[Side, Side], featured: Set[str], z_near: float
) -> list[Barrier]:
    """Walls and fences of a scene; a featured one is near, long and on one side."""
    barriers: list[Barrier] = []
    for label, name, p, (hmin, hmax) in BARRIER_KINDS:
        if name in featured:
            side = sides[rng.integers(2)]
            za = z_near + rng.uniform(*FEATURED_BARRIER_GAP_RANGE)
            zb = za + rng.uniform(*FEATURED_BARRIER_LENGTH_RANGE)
            h = rng.uniform(max(hmin, FEATURED_BARRIER_MIN_HEIGHT), hmax)
            barriers.append(Barrier(label, side, za, zb, h))
        for side in sides:
            if rng.random() < p:
                za = random_z(rng, *BARRIER_Z_RANGE)
                zb = za + rng.uniform(*BARRIER_LENGTH_RANGE)
                barriers.append(Barrier(label, side, za, zb, rng.uniform(hmin, hmax)))
    return barriers


def barrier(rng: np.random.Generator, canvas: Canvas, b: Barrier, z_near: float) -> None:
    """Draw a wall (like a facade without windows) or a see-through fence with a top rail."""
    side, za, zb, h = b.side, b.za, b.zb, b.h
    x = side.sign * (side.wall_line - BARRIER_INSET)
    reg = canvas.project_region(side_plane(x, za, rect(0, 0, zb - za, h)))
    if reg is None:
        return
    normal = (float(-side.sign), 0.0, 0.0)
    if b.label == WALL:
        base = jitter_pick(rng, BUILDING_PAINT, 0.1)
        paint_side_plane(
            rng, canvas, reg, x=x, origin=za, base=base, label=WALL, normal=normal, windows=False
        )
        return
    cam = canvas.camera
    xp, _ = canvas.pixel_grid(reg)
    z = cam.side_plane_depth(xp, x)
    gap = rng.uniform(*FENCE_GAP_RANGE)
    bars = ((z - za) % gap) < gap * rng.uniform(*FENCE_BAR_RANGE)
    # bars fade in between about 1 and 4 pixels apart; closer, only their average shows
    vis = np.clip(gap * cam.f / z / 3 - 0.3, 0, 1)
    # see-through mesh: the background shows between the bars (still labelled fence)
    alpha = np.where(bars, FENCE_BAR_ALPHA, FENCE_MESH_ALPHA) * vis + FENCE_FAR_ALPHA * (1 - vis)
    rgb = jitter_pick(rng, FENCE_COLORS, 0.12) * canvas.light(normal)
    rows, cols, mask = reg
    behind = canvas.img[rows, cols][mask]
    color = behind * (1 - alpha[:, None]) + rgb[None, :] * alpha[:, None]
    canvas.paint(reg, color, FENCE, texture=FENCE_TEXTURE, blotch=FENCE_TEXTURE)
    top = canvas.project_region(
        side_plane(x, za, [(0, h), (zb - za, h)]),
        width_px=max(1.0, FENCE_RAIL_WIDTH * cam.f / max(za, z_near)),
    )
    if top is not None:
        canvas.paint(top, rgb * FENCE_RAIL_DARKEN, FENCE)

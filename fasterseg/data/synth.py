"""The built-in synthetic street scenes, written in the Cityscapes folder layout.

Each image is a procedurally drawn street seen from a car: a ground plane with a road (lanes,
crossings, rail tracks), sidewalks, grass verges, facades with windows, parks, walls, fences
and a skyline, then poles, traffic lights, signs, trees, people, riders, bicycles, motorcycles,
cars, trucks, buses and trams placed in 3-D and drawn far to near (painter's order) through a
pinhole camera, so that they shrink toward the horizon and occlude each other. Colours overlap
between classes (cars of every colour, grey walls like grey buildings, overcast skies like
concrete) and every image gets its own lighting, blur, colour cast, gamma and noise: a model
has to use shape, position and context, as on real street scenes.

Labels are Cityscapes ``labelIds`` (road = 7, ...). Every image features one group of rare
classes (tram, bus, truck, motorcycle, bicycle, rider, wall, fence, traffic light/sign,
terrain, person) near the camera and unoccluded, cycled per image, so that every four
consecutive images of a split show all of them; road, sidewalk, building, vegetation, sky,
pole and car are in nearly every image.
"""

from __future__ import annotations

import colorsys
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import DataError
from ..io import atomic_write
from .labels import IGNORE_INDEX, get_label_table

logger = logging.getLogger(__name__)

# Cityscapes labelIds drawn by the generator.
UNLABELED, EGO_VEHICLE, STATIC = 0, 1, 4
ROAD, SIDEWALK, RAIL_TRACK = 7, 8, 10
BUILDING, WALL, FENCE = 11, 12, 13
POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = 17, 19, 20
VEGETATION, TERRAIN, SKY = 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33
# Classes whose pixels carry labelId * 1000 + instance in *_instanceIds.png (train ids 11-18).
INSTANCE_IDS = frozenset({PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE})

SPLITS = ("train", "val", "test")
CITIES = {"train": ("synthA", "synthB"), "val": ("synthC", "synthD"), "test": ("synthE", "synthF")}
FRAME = 19  # Cityscapes fine annotations are all frame 000019 of their sequence
MIN_SIZE = 32

# One group per image, cycled: the rare classes each image is made to show at a visible size
# ("rider" comes with the featured motorcycle or bicycle, which are always ridden).
FEATURED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("train", "traffic light", "terrain"),
    ("bus", "wall", "person"),
    ("motorcycle", "rider", "fence", "traffic sign"),
    ("truck", "bicycle", "rider", "person"),
)

_SEGMENT_BUILDING, _SEGMENT_PARK, _SEGMENT_GAP = 0, 1, 2

Array = np.ndarray


@functools.lru_cache(maxsize=1)
def _id_colors() -> Array:
    """(256, 4) uint8 RGBA colours by labelId, from the Cityscapes label definitions."""
    from cityscapesscripts.helpers.labels import labels

    colors = np.zeros((256, 4), np.uint8)
    colors[:, 3] = 255
    for lab in labels:
        if lab.id >= 0:
            colors[lab.id, :3] = lab.color
    return colors


# ---------------------------------------------------------------------------------- colours
def _hsv(h: float, s: float, v: float) -> Array:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255.0


def _jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float) -> Array:
    """``rgb`` with an overall brightness change and a per-channel shift (fractions of 255)."""
    base = np.asarray(rgb, np.float32) * rng.uniform(1 - amount, 1 + amount)
    return np.clip(base + rng.normal(0.0, amount * 60.0, 3), 0, 255).astype(np.float32)


def _any_color(rng: np.random.Generator) -> Array:
    """Paint of any hue, from black and grey to saturated: cars, clothes, buses."""
    if rng.random() < 0.45:
        return np.full(3, rng.uniform(20, 235), np.float32)
    return _hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.95))


_BUILDING_PAINT = (
    (150, 150, 150),
    (200, 190, 170),
    (165, 95, 75),
    (222, 216, 205),
    (120, 108, 98),
    (190, 170, 125),
    (145, 155, 170),
    (185, 145, 135),
    (95, 95, 100),
)
_GREENS = ((60, 100, 40), (80, 112, 50), (48, 78, 38), (100, 120, 60), (112, 100, 52))
_TERRAIN = ((112, 122, 72), (142, 130, 82), (92, 112, 62), (128, 138, 96))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> Array:
    """(h, w) float32 noise with unit standard deviation and features about ``cell`` pixels."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))
    return (big - big.mean()) / (big.std() + 1e-6)


# ---------------------------------------------------------------------------------- geometry
@dataclass
class _Part:
    """A planar 3-D polygon (or polyline) of one object, drawn in one colour.

    ``pts`` is (n, 3): X right, Y up from the ground, Z forward, in metres. ``width`` > 0 draws
    a polyline that wide (metres). ``labelled`` False paints only the image (shadows);
    ``multiply`` darkens what is there instead of painting over it.
    """

    pts: Array
    rgb: Array
    normal: tuple[float, float, float] | None = (0.0, 0.0, -1.0)
    width: float = 0.0
    closed: bool = False
    labelled: bool = True
    multiply: bool = False
    texture: float = 0.05


@dataclass
class _Object:
    """An object with one label, drawn in painter's order by ``(layer, -z, order)``.

    ``footprint`` (X0, X1, Z0, Z1) in metres, where set, may not intersect another footprint.
    """

    label: int
    z: float
    parts: list[_Part]
    layer: int = 1
    order: int = 0
    footprint: tuple[float, float, float, float] | None = None


def _billboard(cx: float, z: float, pts2: Sequence[tuple[float, float]]) -> Array:
    """(n, 3) points of a polygon in the plane Z = z, given as (X offset, Y) pairs."""
    p = np.asarray(pts2, np.float32)
    return np.column_stack([cx + p[:, 0], p[:, 1], np.full(len(p), z, np.float32)])


def _side_plane(x: float, z: float, pts2: Sequence[tuple[float, float]]) -> Array:
    """(n, 3) points of a polygon in the plane X = x, given as (Z offset, Y) pairs."""
    p = np.asarray(pts2, np.float32)
    return np.column_stack([np.full(len(p), x, np.float32), p[:, 1], z + p[:, 0]])


def _circle(cx: float, cy: float, r: float, n: int = 12) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return list(zip((cx + r * np.cos(t)).tolist(), (cy + r * np.sin(t)).tolist()))


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _box(
    xa: float, xb: float, ya: float, yb: float, za: float, zb: float, cam_height: float
) -> list[tuple[Array, tuple[float, float, float]]]:
    """The faces of an axis-aligned box a camera at X = 0 sees, in drawing order, with normals."""
    faces: list[tuple[Array, tuple[float, float, float]]] = []
    if yb < cam_height:
        top = np.array([[xa, yb, za], [xb, yb, za], [xb, yb, zb], [xa, yb, zb]], np.float32)
        faces.append((top, (0.0, 1.0, 0.0)))
    if xa > 0:
        faces.append((_side_plane(xa, za, _rect(0, ya, zb - za, yb)), (-1.0, 0.0, 0.0)))
    elif xb < 0:
        faces.append((_side_plane(xb, za, _rect(0, ya, zb - za, yb)), (1.0, 0.0, 0.0)))
    faces.append((_billboard(0.0, za, _rect(xa, ya, xb, yb)), (0.0, 0.0, -1.0)))
    return faces


@dataclass
class _Side:
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


# ---------------------------------------------------------------------------------- scene
class _Scene:
    """Draws one street scene into an RGB float image and a labelId*1000+instance map."""

    def __init__(
        self, rng: np.random.Generator, height: int, width: int, featured: Sequence[str]
    ) -> None:
        self.rng = rng
        self.H, self.W = height, width
        self.featured = set(featured)
        self.f = width * rng.uniform(0.55, 0.72)
        self.xv = width * rng.uniform(0.42, 0.58)
        self.yh = height * rng.uniform(0.36, 0.46)
        self.cam_h = rng.uniform(1.3, 1.7)
        self.img = np.zeros((height, width, 3), np.float32)
        self.ids = np.zeros((height, width), np.int32)
        self.fine = rng.standard_normal((height, width), dtype=np.float32)
        self.blotch = _smooth_noise(rng, height, width, 5)
        self.large = _smooth_noise(rng, height, width, 28)
        sun = np.array([rng.uniform(-1, 1), rng.uniform(0.3, 1.2), rng.uniform(-0.7, 0.8)])
        self.sun = sun / np.linalg.norm(sun)
        self.ambient = rng.uniform(0.45, 0.72)
        self.diffuse = rng.uniform(0.3, 0.65)
        self.instances: dict[int, int] = {}
        # (depth, screen box x0, y0, x1, y1) of what featured objects occupy
        self.protected: list[tuple[float, tuple[float, float, float, float]]] = []
        self.objects: list[_Object] = []
        self.hood = int(height * rng.uniform(0.05, 0.11)) if rng.random() < 0.45 else 0
        # the lowest ground row above the hood: nearest depth at which an object stands in view
        self.z_near = self.f * self.cam_h / max(height - self.hood - 2 - self.yh, 1.0)

    # ------------------------------------------------------------------ primitives
    def light(self, normal: tuple[float, float, float] | None) -> float:
        if normal is None:
            return 1.0
        return self.ambient + self.diffuse * max(0.0, float(np.dot(normal, self.sun)))

    def project(self, pts: Array) -> Array:
        """(n, 3) metres -> (n, 2) pixel coordinates (x right, y down; pixel centres at .5)."""
        z = pts[:, 2]
        return np.column_stack(
            [self.xv + self.f * pts[:, 0] / z, self.yh + self.f * (self.cam_h - pts[:, 1]) / z]
        )

    def region(
        self, pts2: Array, width_px: float = 0.0, closed: bool = False
    ) -> tuple[slice, slice, Array] | None:
        """The pixels a 2-D polygon (or polyline, if ``width_px``) covers: (rows, cols, mask)."""
        pad = width_px / 2 + 1
        x0 = max(int(np.floor(pts2[:, 0].min() - pad)), 0)
        x1 = min(int(np.ceil(pts2[:, 0].max() + pad)) + 1, self.W)
        y0 = max(int(np.floor(pts2[:, 1].min() - pad)), 0)
        y1 = min(int(np.ceil(pts2[:, 1].max() + pad)) + 1, self.H)
        if x0 >= x1 or y0 >= y1:
            return None
        im = Image.new("L", (x1 - x0, y1 - y0), 0)
        # PIL puts integer coordinates on pixel centres; ours are at .5
        local = [(float(x) - x0 - 0.5, float(y) - y0 - 0.5) for x, y in pts2]
        draw = ImageDraw.Draw(im)
        if width_px > 0:
            if closed:
                local.append(local[0])
            draw.line(local, fill=1, width=max(1, round(width_px)), joint="curve")
        else:
            draw.polygon(local, fill=1)
        mask = np.asarray(im, dtype=bool)
        if not mask.any():
            return None
        return slice(y0, y1), slice(x0, x1), mask

    def paint(
        self,
        reg: tuple[slice, slice, Array],
        rgb: Array | float,
        value: int | None,
        texture: float = 0.05,
        blotch: float = 0.06,
        multiply: bool = False,
    ) -> None:
        """Colour the region (with this image's texture noise) and set its label value."""
        rows, cols, mask = reg
        view = self.img[rows, cols]
        if multiply:
            view[mask] *= rgb
        else:
            mod = (
                1.0 + blotch * self.blotch[rows, cols][mask] + texture * self.fine[rows, cols][mask]
            )
            color = np.asarray(rgb, np.float32)
            view[mask] = (color[None, :] if color.ndim == 1 else color) * mod[:, None]
        if value is not None:
            self.ids[rows, cols][mask] = value

    def new_value(self, label: int) -> int:
        """The instanceIds value of a new object: labelId*1000+k for instance classes."""
        if label not in INSTANCE_IDS:
            return label
        k = self.instances.get(label, 0)
        self.instances[label] = k + 1
        return label * 1000 + k

    def pixel_grid(self, reg: tuple[slice, slice, Array]) -> tuple[Array, Array]:
        """Pixel-centre x and y coordinates of the masked pixels of a region."""
        rows, cols, mask = reg
        yy, xx = np.nonzero(mask)
        return xx + cols.start + 0.5, yy + rows.start + 0.5

    # ------------------------------------------------------------------ layout
    def layout(self) -> None:
        rng = self.rng
        self.sides: list[_Side] = []
        self.z_end = rng.uniform(90, 200)
        self.terrain_side = int(rng.choice([-1, 1])) if "terrain" in self.featured else 0
        for sign in (-1, 1):
            verge = rng.uniform(1.0, 2.5) if rng.random() < 0.2 else 0.0
            if sign == self.terrain_side:
                verge = rng.uniform(2.0, 3.5)
            setback_label = [SIDEWALK, TERRAIN, VEGETATION][rng.choice(3, p=[0.45, 0.35, 0.2])]
            starts = [1.0]
            while starts[-1] < self.z_end:
                starts.append(starts[-1] + rng.uniform(8, 35))
            n = len(starts) - 1
            kinds = rng.choice(3, size=n, p=[0.7, 0.15, 0.15])
            kinds[0] = _SEGMENT_BUILDING  # keeps the near view of each side a street of houses
            self.sides.append(
                _Side(
                    sign=sign,
                    curb=rng.uniform(3.5, 8.0),
                    verge=verge,
                    sidewalk=rng.uniform(1.8, 4.5),
                    setback=rng.uniform(0, 5) * (rng.random() < 0.6),
                    setback_label=setback_label,
                    bounds=np.asarray(starts, np.float32),
                    kinds=kinds,
                    heights=rng.uniform(8, 26, size=n).astype(np.float32),
                )
            )
        left, right = self.sides
        self.rail_x: float | None = None
        if "train" in self.featured or rng.random() < 0.12:
            self.rail_x = float(rng.uniform(-left.curb + 2.0, right.curb - 2.0))
        width = left.curb + right.curb
        n_lanes = max(1, round(width / 3.3))
        self.lanes = (-left.curb + (np.arange(n_lanes) + 0.5) * width / n_lanes).tolist()

    # ------------------------------------------------------------------ background
    def draw_sky(self) -> None:
        rng = self.rng
        if rng.random() < 0.5:  # clear
            top = _jitter(rng, (70, 125, 200), 0.15)
            bottom = _jitter(rng, (185, 205, 225), 0.1)
        else:  # overcast or hazy: grey like concrete
            g = rng.uniform(150, 235)
            top = _jitter(rng, (g, g, g + 8), 0.08)
            bottom = _jitter(rng, (g + 10, g + 10, g + 10), 0.05)
        t = np.clip(np.arange(self.H, dtype=np.float32) / max(self.yh, 1.0), 0, 1)
        sky = top[None, :] * (1 - t[:, None]) + bottom[None, :] * t[:, None]
        img = np.broadcast_to(sky[:, None, :], self.img.shape).copy()
        clouds = np.clip(0.7 * self.large + 0.2 * self.blotch - rng.uniform(0, 0.8), 0, 1)
        img += clouds[..., None] * (np.float32(235) - img) * rng.uniform(0.3, 0.9)
        self.img[:] = img
        self.ids[:] = SKY

    def draw_ground(self) -> None:
        rng = self.rng
        y0 = int(np.floor(self.yh)) + 1
        ys = np.arange(y0, self.H, dtype=np.float32) + 0.5
        xs = np.arange(self.W, dtype=np.float32) + 0.5
        z = (self.f * self.cam_h / (ys - self.yh))[:, None] * np.ones((1, self.W), np.float32)
        x = (xs[None, :] - self.xv) * z / self.f
        px = z / self.f  # metres per pixel at each ground pixel
        lab = np.full(z.shape, ROAD, np.int32)
        for side in self.sides:
            a = side.sign * x - side.curb  # metres beyond this side's curb
            seg = np.clip(np.searchsorted(side.bounds, z, side="right") - 1, 0, len(side.kinds) - 1)
            beyond = np.where(side.kinds[seg] == _SEGMENT_GAP, ROAD, SIDEWALK)
            lab = np.where(a >= 0, SIDEWALK, lab)
            if side.verge > 0:
                lab = np.where((a >= 0) & (a < side.verge), TERRAIN, lab)
            lab = np.where(a >= side.wall_line - side.curb, side.setback_label, lab)
            lab = np.where(a >= side.facade - side.curb, beyond, lab)
        if self.rail_x is not None:
            lab = np.where((np.abs(x - self.rail_x) < 1.0) & (lab == ROAD), RAIL_TRACK, lab)

        colors = {
            ROAD: _jitter(rng, (rng.uniform(70, 125),) * 3, 0.05),
            RAIL_TRACK: _jitter(rng, (rng.uniform(70, 120),) * 3, 0.08),
            SIDEWALK: _jitter(
                rng, (rng.uniform(115, 175),) * 3 if rng.random() < 0.6 else (165, 130, 118), 0.1
            ),
            TERRAIN: _jitter(rng, _TERRAIN[rng.integers(len(_TERRAIN))], 0.1),
            VEGETATION: _jitter(rng, _GREENS[rng.integers(len(_GREENS))], 0.1),
        }
        img = np.zeros((*z.shape, 3), np.float32)
        strength = {ROAD: 0.1, RAIL_TRACK: 0.12, SIDEWALK: 0.08, TERRAIN: 0.22, VEGETATION: 0.3}
        sl = slice(y0, self.H)
        for label, rgb in colors.items():
            m = lab == label
            mod = 1 + strength[label] * self.blotch[sl][m] + 0.05 * self.fine[sl][m]
            img[m] = rgb[None, :] * mod[:, None]

        road = (lab == ROAD) | (lab == RAIL_TRACK)
        near = np.abs(x) < (self.sides[0].curb + self.sides[1].curb)  # main road, not side streets

        def stripe(center: float | Array, half: float) -> Array:
            """Coverage (0..1) of a line on the ground, fading instead of aliasing far away."""
            return np.clip((half + px / 2 - np.abs(x - center)) / px, 0, 1)

        paint_white = _jitter(rng, (225, 225, 215), 0.08)
        marks = np.zeros(z.shape, np.float32)
        period, dash, phase = rng.uniform(6, 12), rng.uniform(2, 4), rng.uniform(0, 12)
        for boundary in np.linspace(self.lanes[0], self.lanes[-1], len(self.lanes) + 1)[1:-1]:
            on = ((z + phase) % period) < dash
            marks = np.maximum(marks, stripe(float(boundary) - 1.65, 0.07) * on)
        if rng.random() < 0.6:
            for edge in (-self.sides[0].curb + 0.4, self.sides[1].curb - 0.4):
                marks = np.maximum(marks, stripe(edge, 0.07))
        if rng.random() < 0.35:
            zc = rng.uniform(self.z_near + 2, 30)
            bars = ((x % 1.0) < 0.5) & (z > zc) & (z < zc + 3.5)
            marks = np.maximum(marks, bars.astype(np.float32) * np.clip(0.5 / px, 0, 1))
        marks *= road & near
        img += marks[..., None] * (paint_white[None, None, :] - img) * 0.85
        for lane in self.lanes:  # darker tyre tracks
            for off in (-0.8, 0.8):
                img *= 1 - 0.12 * (stripe(lane + off, 0.3) * road)[..., None]
        if self.rail_x is not None:
            rails = np.maximum(stripe(self.rail_x - 0.72, 0.05), stripe(self.rail_x + 0.72, 0.05))
            img += (rails * (lab == RAIL_TRACK))[..., None] * (np.float32(200) - img) * 0.7

        walk = lab == SIDEWALK
        tile = rng.uniform(0.3, 0.8)
        seam = ((x % tile) < 0.04) | ((z % tile) < 0.04)
        fade = np.clip(tile / px / 4 - 0.5, 0, 1)
        img *= 1 - (0.18 * seam * fade * walk)[..., None]
        for side in self.sides:
            a = side.sign * x - side.curb - side.verge
            curb = (a >= 0) & (a < np.maximum(0.2, px)) & (lab == SIDEWALK)
            img[curb] *= 1.2

        # shadows the facades of one side cast across the street
        shade_side = self.sides[int(self.sun[0] > 0)]
        reach = shade_side.curb - rng.uniform(-3, 4)
        seg = np.clip(
            np.searchsorted(shade_side.bounds, z, side="right") - 1, 0, len(shade_side.kinds) - 1
        )
        shadow = (shade_side.sign * x > reach) & (shade_side.kinds[seg] == _SEGMENT_BUILDING)
        img[shadow] *= rng.uniform(0.55, 0.8)
        img *= self.light((0.0, 1.0, 0.0))
        self.img[sl] = img
        self.ids[sl] = lab

    def plane_texture(
        self,
        reg: tuple[slice, slice, Array],
        *,
        side_x: float | None,
        front_z: float | None,
        origin: float,
        base: Array,
        label: int,
        normal: tuple[float, float, float],
        windows: bool,
    ) -> None:
        """Paint a facade (X = side_x) or a front face (Z = front_z) with windows in perspective."""
        rng = self.rng
        xp, yp = self.pixel_grid(reg)
        if side_x is not None:
            dx = xp - self.xv
            safe = np.where(np.abs(dx) < 1e-3, 1e-3, dx)
            z = np.clip(self.f * side_x / safe, 0.5, 1e4)
            u = z - origin
        else:
            z = np.full(xp.shape, front_z, np.float32)
            u = np.abs((xp - self.xv) * z / self.f - origin)
        v = self.cam_h - (yp - self.yh) * z / self.f
        color = np.broadcast_to(base * self.light(normal), (len(xp), 3)).astype(np.float32)
        if windows:
            floor = rng.uniform(2.8, 3.6)
            spacing = rng.uniform(2.2, 4.0)
            win_w = spacing * rng.uniform(0.35, 0.65)
            sill, win_h = rng.uniform(0.7, 1.0), rng.uniform(1.1, 1.7)
            glass = _jitter(rng, (55, 65, 80) if rng.random() < 0.7 else (140, 160, 185), 0.2)
            hit = (
                ((u % spacing) < win_w) & (((v % floor) - sill) % floor < win_h) & (v > floor * 0.8)
            )
            size_px = win_w * self.f / z
            vis = np.clip((size_px - 1.0) / 2.0, 0, 1)
            coverage = win_w / spacing * win_h / floor
            alpha = (hit * vis + (1 - vis) * coverage)[:, None]
            color = color * (1 - alpha) + (glass * self.light(normal))[None, :] * alpha
            ledge = ((v % floor) < 0.25) & (vis > 0)
            color = np.where(ledge[:, None], color * 1.12, color)
        self.paint(reg, color, label, texture=0.05, blotch=0.1)

    def facade(self, side: _Side, k: int) -> None:
        """Segment k of one side: a facade, a park edge or nothing (a side street)."""
        rng = self.rng
        za, zb = float(side.bounds[k]), float(side.bounds[k + 1])
        x = side.sign * side.facade
        h = float(side.heights[k])
        kind = side.kinds[k]
        if kind == _SEGMENT_GAP:
            return
        side_normal = (float(-side.sign), 0.0, 0.0)
        if kind == _SEGMENT_PARK:
            steps = np.linspace(0, zb - za, max(2, int((zb - za) / 1.5)))
            tops = rng.uniform(3, 11, size=len(steps))
            pts = [(0.0, 0.0)] + [(float(s), float(t)) for s, t in zip(steps, tops)]
            pts.append((float(steps[-1]), 0.0))
            reg = self.region(self.project(_side_plane(x, za, pts)))
            if reg is not None:
                green = _jitter(rng, _GREENS[rng.integers(len(_GREENS))], 0.12)
                self.paint(reg, green * self.light(side_normal), VEGETATION, 0.1, 0.35)
            return
        base = _jitter(rng, _BUILDING_PAINT[rng.integers(len(_BUILDING_PAINT))], 0.12)
        reg = self.region(self.project(_side_plane(x, za, _rect(0, 0, zb - za, h))))
        if reg is not None:
            self.plane_texture(
                reg,
                side_x=x,
                front_z=None,
                origin=za,
                base=base,
                label=BUILDING,
                normal=side_normal,
                windows=True,
            )
        # the face toward the camera, seen where the street or a lower house in front opens
        depth = side.sign * rng.uniform(12, 30)
        reg = self.region(self.project(_billboard(x, za, _rect(0, 0, depth, h))))
        if reg is not None:
            self.plane_texture(
                reg,
                side_x=None,
                front_z=za,
                origin=x,
                base=base,
                label=BUILDING,
                normal=(0.0, 0.0, -1.0),
                windows=True,
            )

    def skyline(self) -> None:
        """A row of distant buildings and trees across the end of the street."""
        rng = self.rng
        z = self.z_end
        x = -self.xv * z / self.f - 5
        x_max = (self.W - self.xv) * z / self.f + 5
        # keep a band of sky above the end of the street
        h_cap = self.cam_h + self.yh * rng.uniform(0.3, 0.7) * z / self.f
        while x < x_max:
            w = rng.uniform(6, 30)
            h = min(rng.uniform(5, 35), h_cap)
            if rng.random() < 0.25:
                steps = np.linspace(0, w, 6)
                pts = [(x, 0.0)] + [(float(x + s), float(rng.uniform(0.5, 1) * h)) for s in steps]
                pts.append((x + w, 0.0))
                reg = self.region(self.project(_billboard(0.0, z, pts)))
                if reg is not None:
                    green = _jitter(rng, _GREENS[rng.integers(len(_GREENS))], 0.1)
                    self.paint(reg, green * self.light((0, 0, -1)), VEGETATION, 0.08, 0.3)
            else:
                reg = self.region(self.project(_billboard(0.0, z, _rect(x, 0, x + w, h))))
                if reg is not None:
                    base = _jitter(rng, _BUILDING_PAINT[rng.integers(len(_BUILDING_PAINT))], 0.12)
                    self.plane_texture(
                        reg,
                        side_x=None,
                        front_z=z,
                        origin=x,
                        base=base,
                        label=BUILDING,
                        normal=(0.0, 0.0, -1.0),
                        windows=True,
                    )
            x += w

    def barrier(self, label: int, side: _Side, za: float, zb: float, h: float) -> None:
        """A wall or fence along the outer sidewalk edge."""
        rng = self.rng
        x = side.sign * (side.wall_line - 0.05)
        reg = self.region(self.project(_side_plane(x, za, _rect(0, 0, zb - za, h))))
        if reg is None:
            return
        normal = (float(-side.sign), 0.0, 0.0)
        if label == WALL:
            base = _jitter(rng, _BUILDING_PAINT[rng.integers(len(_BUILDING_PAINT))], 0.1)
            self.plane_texture(
                reg,
                side_x=x,
                front_z=None,
                origin=za,
                base=base,
                label=WALL,
                normal=normal,
                windows=False,
            )
            return
        xp, _ = self.pixel_grid(reg)
        dx = xp - self.xv
        z = np.clip(self.f * x / np.where(np.abs(dx) < 1e-3, 1e-3, dx), 0.5, 1e4)
        gap = rng.uniform(0.12, 0.4)
        bars = ((z - za) % gap) < gap * rng.uniform(0.25, 0.5)
        vis = np.clip(gap * self.f / z / 3 - 0.3, 0, 1)
        # see-through mesh: the background shows between the bars (still labelled fence)
        alpha = np.where(bars, 0.95, 0.35) * vis + 0.6 * (1 - vis)
        rgb = _jitter(
            rng,
            [(110, 110, 105), (90, 75, 60), (60, 90, 70), (160, 160, 160)][rng.integers(4)],
            0.12,
        ) * self.light(normal)
        rows, cols, mask = reg
        behind = self.img[rows, cols][mask]
        color = behind * (1 - alpha[:, None]) + rgb[None, :] * alpha[:, None]
        self.paint(reg, color, FENCE, texture=0.04, blotch=0.04)
        top = self.region(
            self.project(_side_plane(x, za, [(0, h), (zb - za, h)])),
            width_px=max(1.0, 0.08 * self.f / max(za, self.z_near)),
        )
        if top is not None:
            self.paint(top, rgb * 0.8, FENCE)

    # ------------------------------------------------------------------ objects
    def screen_box(self, objs: list[_Object]) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) pixel box around the labelled parts of a group of objects."""
        pts = np.concatenate([self.project(p.pts) for o in objs for p in o.parts if p.labelled])
        return (
            float(pts[:, 0].min()),
            float(pts[:, 1].min()),
            float(pts[:, 0].max()),
            float(pts[:, 1].max()),
        )

    def add(self, objs: list[_Object], protect: bool = False, force: bool = False) -> bool:
        """Add a group of objects standing where nothing else stands, unless it would hide (or,
        if ``protect``, touch) a featured object; ``force`` skips the checks."""
        z = min(o.z for o in objs)
        box = self.screen_box(objs)
        if not force and not self.fits(objs, z, box, protect):
            return False
        self.objects.extend(objs)
        if protect:
            self.protected.append((z, box))
        return True

    def fits(
        self, objs: list[_Object], z: float, box: tuple[float, float, float, float], protect: bool
    ) -> bool:
        for obj in objs:
            if obj.footprint is None:
                continue
            a0, a1, b0, b1 = obj.footprint
            for other in self.objects:
                if other.footprint is not None:
                    c0, c1, d0, d1 = other.footprint
                    if a0 < c1 and c0 < a1 and b0 < d1 and d0 < b1:
                        return False
        x0, y0, x1, y1 = box
        for pz, (px0, py0, px1, py1) in self.protected:
            # featured objects must not overlap at all; others only must not stand in front
            if (protect or z <= pz) and x0 < px1 and px0 < x1 and y0 < py1 and py0 < y1:
                return False
        return True

    def in_frame(self, objs: list[_Object]) -> bool:
        x0, y0, x1, y1 = self.screen_box(objs)
        return x0 >= 1 and x1 <= self.W - 1 and y0 >= 1 and y1 <= self.H - self.hood - 2

    def place_featured(
        self, make: Callable[[float], list[_Object]], z_lo: float, z_hi: float
    ) -> None:
        """Place a featured group near, fully in view and unhidden by other featured objects."""
        objs: list[_Object] = []
        for attempt in range(40):
            z = self.rng.uniform(z_lo, z_hi) * (1.04**attempt)
            objs = make(z)
            if self.in_frame(objs) and self.add(objs, protect=True):
                return
        self.add(objs, protect=True, force=True)

    def random_z(self, lo: float, hi: float) -> float:
        """Depth, log-uniform: as many objects near as far, as seen by a camera."""
        lo = max(lo, 1.0)
        return float(lo * (hi / lo) ** self.rng.random())

    def sidewalk_x(self, side: _Side, where: float) -> float:
        """X at fraction ``where`` across a side's sidewalk (0 = curb, 1 = outer edge)."""
        return side.sign * (side.curb + side.verge + 0.3 + where * max(side.sidewalk - 0.6, 0.1))

    def vehicle(self, kind: int, cx: float, z: float, oncoming: bool) -> _Object:
        rng = self.rng
        parts: list[_Part] = []
        ch = self.cam_h
        dims = {
            CAR: (rng.uniform(1.7, 1.95), rng.uniform(3.8, 4.8)),
            TRUCK: (2.45, rng.uniform(7.5, 10.0)),
            BUS: (2.55, rng.uniform(10.5, 12.5)),
            TRAIN: (2.65, rng.uniform(20, 35)),
        }
        w, length = dims[kind]
        xa, xb, za, zb = cx - w / 2, cx + w / 2, z, z + length
        paint = _any_color(rng)
        if kind == TRAIN:
            paint = _jitter(
                rng,
                [(225, 225, 220), (190, 40, 40), (230, 190, 40), (40, 90, 160), (60, 140, 80)][
                    rng.integers(5)
                ],
                0.1,
            )
        dark = _jitter(rng, (30, 30, 32), 0.2)
        glass = _jitter(rng, (50, 60, 75) if rng.random() < 0.7 else (120, 140, 165), 0.2)
        lamp = np.array((230, 40, 30) if not oncoming else (240, 235, 200), np.float32)
        shadow = np.array(
            [
                [xa - 0.1, 0.01, za - 0.2],
                [xb + 0.1, 0.01, za - 0.2],
                [xb + 0.1, 0.01, zb],
                [xa - 0.1, 0.01, zb],
            ],
            np.float32,
        )
        parts.append(
            _Part(
                shadow,
                np.full(3, rng.uniform(0.45, 0.7), np.float32),
                None,
                labelled=False,
                multiply=True,
            )
        )
        for tx in (xa + 0.15, xb - 0.45):  # tyres seen under the bumper
            parts.append(_Part(_billboard(0, za + 0.3, _rect(tx, 0, tx + 0.3, 0.4)), dark))

        def box(ya: float, yb: float, z0: float, z1: float, inset: float, rgb: Array) -> None:
            for pts, normal in _box(xa + inset, xb - inset, ya, yb, z0, z1, ch):
                parts.append(_Part(pts, rgb, normal, texture=0.04))

        near_x = xa if xa > 0 else xb if xb < 0 else None
        if kind == CAR:
            body_top = rng.uniform(0.85, 1.05)
            roof = body_top + rng.uniform(0.45, 0.7)
            box(0.28, body_top, za, zb, 0.0, paint)
            c0, c1 = za + rng.uniform(0.8, 1.2), zb - rng.uniform(0.9, 1.4)
            box(body_top, roof, c0, c1, 0.1, paint)
            parts.append(
                _Part(
                    _billboard(0, c0, _rect(xa + 0.2, body_top + 0.05, xb - 0.2, roof - 0.08)),
                    glass,
                )
            )
            if near_x is not None:
                parts.append(
                    _Part(
                        _side_plane(
                            near_x + (0.1 if xa > 0 else -0.1),
                            c0,
                            _rect(0.1, body_top + 0.05, c1 - c0 - 0.1, roof - 0.08),
                        ),
                        glass,
                        None,
                    )
                )
            wheels = (za + 0.85, zb - 0.85)
            lamp_y = body_top - 0.2
        elif kind == TRUCK:
            cab_len = 2.3
            cargo = (za, zb - cab_len - 0.2) if not oncoming else (za + cab_len + 0.2, zb)
            cab = (zb - cab_len, zb) if not oncoming else (za, za + cab_len)
            cargo_rgb = (
                _jitter(rng, (225, 225, 225), 0.1) if rng.random() < 0.6 else _any_color(rng)
            )
            if oncoming:
                box(0.9, rng.uniform(3.2, 3.9), *cargo, 0.0, cargo_rgb)
                box(0.45, rng.uniform(2.7, 3.1), *cab, 0.05, paint)
                parts.append(_Part(_billboard(0, za, _rect(xa + 0.2, 1.6, xb - 0.2, 2.5)), glass))
            else:
                box(0.45, rng.uniform(2.7, 3.1), *cab, 0.05, paint)
                top = rng.uniform(3.2, 3.9)
                box(0.9, top, *cargo, 0.0, cargo_rgb)
                parts.append(
                    _Part(_billboard(0, za, [(cx, 1.0), (cx, top - 0.1)]), dark, width=0.05)
                )
            wheels = (za + 1.0, za + 2.4, zb - 1.2)
            lamp_y = 1.1
        else:  # bus or tram
            top = rng.uniform(3.0, 3.3) if kind == BUS else rng.uniform(3.4, 3.8)
            bottom = 0.3 if kind == BUS else 0.45
            box(bottom, top, za, zb, 0.0, paint)
            parts.append(
                _Part(_billboard(0, za, _rect(xa + 0.15, 1.3, xb - 0.15, top - 0.35)), glass)
            )
            if near_x is not None:
                pane = rng.uniform(1.2, 1.8)
                off = 0.08 if xa > 0 else -0.08
                for s in np.arange(0.8, length - pane, pane):
                    parts.append(
                        _Part(
                            _side_plane(
                                near_x + off,
                                za,
                                _rect(float(s), 1.25, float(s + pane - 0.15), top - 0.5),
                            ),
                            glass,
                            None,
                        )
                    )
            wheels = (
                (za + 2.0, zb - 2.5)
                if kind == BUS
                else tuple(float(s) for s in np.arange(za + 2.0, zb, 8.0))
            )
            lamp_y = 0.8
        if near_x is not None:
            off = 0.12 if xa > 0 else -0.12
            for wz in wheels:
                parts.append(
                    _Part(_side_plane(near_x + off, 0.0, _circle(wz, 0.36, 0.36)), dark, None)
                )
        for lx in (xa + 0.1, xb - 0.35):
            parts.append(
                _Part(_billboard(0, za, _rect(lx, lamp_y, lx + 0.25, lamp_y + 0.15)), lamp, None)
            )
        return _Object(kind, z, parts, footprint=(xa - 0.3, xb + 0.3, za - 0.8, zb + 0.8))

    def person(self, cx: float, z: float) -> _Object:
        rng = self.rng
        s = rng.uniform(1.55, 1.95) / 1.75
        top_rgb, legs_rgb = _any_color(rng), _any_color(rng) * rng.uniform(0.4, 1.0)
        skin = _jitter(rng, [(230, 190, 160), (190, 140, 100), (120, 85, 60)][rng.integers(3)], 0.1)
        hair = _jitter(rng, (40, 30, 25), 0.3)
        parts = []
        coat = rng.uniform(0.9, 1.2) if rng.random() < 0.3 else 0.9
        if rng.random() < 0.5:  # facing the camera
            stride = rng.uniform(-0.06, 0.06)
            for sgn in (-1, 1):
                leg = [
                    (sgn * 0.02, 0.9),
                    (sgn * 0.16, 0.9),
                    (sgn * 0.17 + stride, 0),
                    (sgn * 0.05 + stride, 0),
                ]
                parts.append(_Part(_billboard(cx, z, [(a * s, b * s) for a, b in leg]), legs_rgb))
            torso = [(-0.2, 1.8 - coat), (0.2, 1.8 - coat), (0.23, 1.45), (-0.23, 1.45)]
            parts.append(_Part(_billboard(cx, z, [(a * s, b * s) for a, b in torso]), top_rgb))
            for sgn in (-1, 1):
                arm = [(sgn * 0.25 * s, 1.43 * s), (sgn * 0.28 * s, 0.88 * s)]
                parts.append(_Part(_billboard(cx, z, arm), top_rgb, width=0.09 * s))
        else:  # walking across
            d = rng.choice([-1, 1])
            step = rng.uniform(0.1, 0.3)
            for sgn in (-1, 1):
                leg = [(0.0, 0.9 * s), (sgn * step * s, 0.0)]
                parts.append(_Part(_billboard(cx, z, leg), legs_rgb, width=0.15 * s))
            torso = [(-0.13, 1.8 - coat), (0.13, 1.8 - coat), (0.15, 1.45), (-0.13, 1.45)]
            parts.append(_Part(_billboard(cx, z, [(a * s, b * s) for a, b in torso]), top_rgb))
            arm = [(0.0, 1.42 * s), (d * step * 0.8 * s, 0.9 * s)]
            parts.append(_Part(_billboard(cx, z, arm), top_rgb, width=0.09 * s))
        parts.append(_Part(_billboard(cx, z, _circle(0, 1.61 * s, 0.11 * s, 10)), skin))
        parts.append(
            _Part(
                _billboard(
                    cx,
                    z,
                    [
                        (-0.11 * s, 1.62 * s),
                        (0.11 * s, 1.62 * s),
                        (0.08 * s, 1.72 * s),
                        (-0.08 * s, 1.72 * s),
                    ],
                ),
                hair,
            )
        )
        return _Object(PERSON, z, parts, footprint=(cx - 0.3, cx + 0.3, z - 0.3, z + 0.3))

    def two_wheeler(self, kind: int, cx: float, z: float, ridden: bool) -> list[_Object]:
        """A bicycle or motorcycle seen from the side (crossing), with or without its rider."""
        rng = self.rng
        d = float(rng.choice([-1, 1]))
        parts: list[_Part] = []
        paint = _any_color(rng)
        dark = _jitter(rng, (30, 30, 30), 0.3)

        def bb(pts: Sequence[tuple[float, float]]) -> Array:
            return _billboard(cx, z, [(d * a, b) for a, b in pts])

        if kind == BICYCLE:
            half, r = 0.52, 0.34
            for wx in (-half, half):
                parts.append(_Part(bb(_circle(wx, r, r, 14)), dark, width=0.06, closed=True))
            frame = [
                (-half, r),
                (0.0, 0.3),
                (-0.15, 0.85),
                (-half, r),
                (-0.15, 0.85),
                (0.4, 0.85),
                (0.0, 0.3),
                (0.4, 0.85),
                (half, r),
            ]
            parts.append(_Part(bb(frame), paint, width=0.05))
            parts.append(_Part(bb([(0.4, 0.85), (0.38, 1.0), (0.3, 1.02)]), dark, width=0.04))
            parts.append(_Part(bb(_rect(-0.25, 0.87, -0.05, 0.93)), dark))
            seat, bar = (-0.15, 0.9), (0.32, 1.0)
        else:
            half, r = 0.72, 0.32
            for wx in (-half, half):
                parts.append(_Part(bb(_circle(wx, r, r, 14)), dark))
            body = [
                (-half, 0.5),
                (-0.4, 0.78),
                (0.15, 0.88),
                (0.5, 0.82),
                (0.6, 0.55),
                (0.2, 0.32),
                (-0.3, 0.34),
            ]
            parts.append(_Part(bb(body), paint))
            parts.append(_Part(bb([(0.55, 1.0), (half, r)]), dark, width=0.06))
            seat, bar = (-0.2, 0.85), (0.5, 1.0)
        objs = [
            _Object(kind, z, parts, footprint=(cx - half - 0.4, cx + half + 0.4, z - 0.4, z + 0.4))
        ]
        if ridden:
            top, legs = _any_color(rng), _any_color(rng) * 0.7
            skin = _jitter(rng, (200, 160, 130), 0.15)
            hip = (seat[0], seat[1] + 0.08)
            shoulder = (seat[0] + 0.25, seat[1] + 0.62)
            knee = (seat[0] + 0.3, seat[1] - 0.15)
            foot = (0.0, 0.25) if kind == BICYCLE else (0.05, 0.35)
            rp = [
                _Part(bb([hip, knee, foot]), legs, width=0.14),
                _Part(
                    bb(
                        [
                            (hip[0] - 0.12, hip[1]),
                            (hip[0] + 0.1, hip[1]),
                            (shoulder[0] + 0.1, shoulder[1]),
                            (shoulder[0] - 0.1, shoulder[1]),
                        ]
                    ),
                    top,
                ),
                _Part(bb([shoulder, bar]), top, width=0.09),
                _Part(
                    bb(_circle(shoulder[0] + 0.05, shoulder[1] + 0.17, 0.12, 10)),
                    skin if kind == BICYCLE else _any_color(rng),
                ),
            ]
            objs.append(_Object(RIDER, z, rp, order=1))
        return objs

    def pole_with(self, side: _Side, z: float, head: int | None) -> list[_Object]:
        """A pole near the curb, bare, a street lamp, or carrying a traffic light or sign."""
        rng = self.rng
        cx = self.sidewalk_x(side, rng.uniform(0, 0.25))
        grey = _jitter(
            rng,
            [(120, 120, 120), (70, 85, 75), (60, 60, 62), (150, 150, 145)][rng.integers(4)],
            0.12,
        )
        toward_road = -side.sign
        if head is None:
            h = rng.uniform(3, 9)
            w = rng.uniform(0.12, 0.3)
            parts = [_Part(_billboard(cx, z, _rect(-w / 2, 0, w / 2, h)), grey, texture=0.03)]
            if h > 5.5 and rng.random() < 0.6:  # street lamp arm
                arm = [(0.0, h), (toward_road * 1.2, h + 0.35), (toward_road * 1.8, h + 0.3)]
                parts.append(_Part(_billboard(cx, z, arm), grey, width=0.1))
            return [_Object(POLE, z, parts)]
        h = rng.uniform(2.4, 3.4)
        hanging = head == TRAFFIC_LIGHT and rng.random() < 0.3
        if hanging:
            h = rng.uniform(5.0, 6.0)
        w = rng.uniform(0.08, 0.2)
        pole = [_Part(_billboard(cx, z, _rect(-w / 2, 0, w / 2, h)), grey, texture=0.03)]
        hx = 0.0
        if hanging:
            hx = toward_road * rng.uniform(2.5, 4.0)
            pole.append(_Part(_billboard(cx, z, [(0.0, h - 0.1), (hx, h - 0.1)]), grey, width=0.12))
        parts: list[_Part] = []
        if head == TRAFFIC_LIGHT:
            y0 = h - 1.05 if hanging else h - 0.1
            housing = _jitter(rng, (35, 35, 35) if rng.random() < 0.75 else (190, 160, 40), 0.2)
            parts.append(
                _Part(_billboard(cx, z, _rect(hx - 0.18, y0, hx + 0.18, y0 + 0.95)), housing)
            )
            if rng.random() < 0.75:  # facing us: three lamps, one lit
                lit = rng.integers(3)
                lit_rgb = [(255, 60, 40), (255, 180, 40), (60, 230, 120)]
                for i, ly in enumerate((0.75, 0.47, 0.19)):
                    rgb = np.array(lit_rgb[i], np.float32) if i == lit else housing * 0.5 + 20
                    parts.append(_Part(_billboard(cx, z, _circle(hx, y0 + ly, 0.1, 10)), rgb, None))
        else:
            c = h + 0.3
            if rng.random() < 0.25:  # seen from behind: a plain grey plate
                shape = (
                    _circle(0, c, 0.35, 14)
                    if rng.random() < 0.5
                    else _rect(-0.35, c - 0.3, 0.35, c + 0.3)
                )
                parts.append(_Part(_billboard(cx, z, shape), grey * 1.1))
            else:
                style = rng.integers(4)
                red = _jitter(rng, (200, 30, 30), 0.1)
                white = _jitter(rng, (235, 235, 230), 0.05)
                blue = _jitter(rng, (30, 70, 170), 0.1)
                if style == 0:  # round, red ring
                    parts.append(_Part(_billboard(cx, z, _circle(0, c, 0.35, 14)), red))
                    parts.append(_Part(_billboard(cx, z, _circle(0, c, 0.26, 14)), white))
                elif style == 1:  # triangle
                    tri = [(-0.4, c - 0.25), (0.4, c - 0.25), (0.0, c + 0.45)]
                    inner = [(-0.27, c - 0.17), (0.27, c - 0.17), (0.0, c + 0.3)]
                    parts.append(_Part(_billboard(cx, z, tri), red))
                    parts.append(_Part(_billboard(cx, z, inner), white))
                elif style == 2:  # blue disc with an arrow
                    parts.append(_Part(_billboard(cx, z, _circle(0, c, 0.33, 14)), blue))
                    parts.append(
                        _Part(_billboard(cx, z, [(0, c - 0.2), (0, c + 0.2)]), white, width=0.07)
                    )
                else:  # rectangular direction sign
                    rgb = blue if rng.random() < 0.5 else _jitter(rng, (30, 120, 60), 0.1)
                    parts.append(_Part(_billboard(cx, z, _rect(-0.5, c - 0.3, 0.5, c + 0.3)), rgb))
                    parts.append(
                        _Part(_billboard(cx, z, [(-0.35, c), (0.3, c)]), white, width=0.06)
                    )
        return [_Object(POLE, z, pole), _Object(head, z, parts, order=1)]

    def tree(self, cx: float, z: float, layer: int = 1) -> _Object:
        rng = self.rng
        h = rng.uniform(4.5, 11)
        crown = rng.uniform(1.6, 3.6)
        bark = _jitter(rng, (85, 70, 55) if rng.random() < 0.6 else (110, 110, 100), 0.15)
        parts = [
            _Part(
                _billboard(cx, z, [(0.0, 0.0), (0.0, h * 0.6)]), bark, width=rng.uniform(0.22, 0.45)
            )
        ]
        green = _GREENS[rng.integers(len(_GREENS))]
        for _ in range(rng.integers(5, 10)):
            bx, by = rng.normal(0, crown * 0.45), h - crown + rng.normal(0, crown * 0.3)
            r = crown * rng.uniform(0.45, 0.85)
            parts.append(
                _Part(
                    _billboard(cx, z, _circle(bx, by, r, 12)),
                    _jitter(rng, green, 0.15),
                    texture=0.1,
                )
            )
        return _Object(VEGETATION, z, parts, layer=layer)

    def static_object(self, cx: float, z: float) -> _Object:
        rng = self.rng
        w, h = rng.uniform(0.3, 0.9), rng.uniform(0.6, 1.2)
        rgb = _jitter(
            rng,
            [(60, 80, 60), (110, 110, 110), (200, 110, 30), (50, 50, 60)][rng.integers(4)],
            0.15,
        )
        return _Object(STATIC, z, [_Part(_billboard(cx, z, _rect(-w / 2, 0, w / 2, h)), rgb)])

    def populate(self) -> None:
        """Place the featured group first (protected), then random street furniture and traffic."""
        rng = self.rng
        left, right = self.sides
        zn = self.z_near
        lanes = self.lanes
        feat = self.featured

        def lane_x() -> float:
            return float(lanes[rng.integers(len(lanes))])

        if self.terrain_side:
            # keep a stretch of the featured grass verge free of anything standing in front
            side = self.sides[int(self.terrain_side > 0)]
            room = self.W - self.xv if side.sign > 0 else self.xv
            z0 = max(zn + 3, self.f * (side.curb + side.verge) / max(room, 1.0) + 1)
            x0, x1 = side.sign * side.curb, side.sign * (side.curb + side.verge)
            quad = self.project(
                np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z0 + 8], [x0, 0, z0 + 8]], np.float32)
            )
            self.protected.append(
                (
                    z0 + 8,
                    (
                        float(quad[:, 0].min()),
                        float(quad[:, 1].min()),
                        float(quad[:, 0].max()),
                        float(quad[:, 1].max()),
                    ),
                )
            )
        if "train" in feat and self.rail_x is not None:
            rail = self.rail_x
            self.place_featured(
                lambda z: [self.vehicle(TRAIN, rail, z, rng.random() < 0.5)], zn + 5, zn + 20
            )
        for name, kind in (("bus", BUS), ("truck", TRUCK)):
            if name in feat:
                self.place_featured(
                    lambda z, k=kind: [self.vehicle(k, lane_x(), z, False)], zn + 4, zn + 18
                )
        for name, kind in (("motorcycle", MOTORCYCLE), ("bicycle", BICYCLE)):
            if name in feat:
                self.place_featured(
                    lambda z, k=kind: self.two_wheeler(
                        k, float(rng.uniform(-left.curb + 1, right.curb - 1)), z, True
                    ),
                    zn + 2,
                    zn + 12,
                )
        if "person" in feat:
            self.place_featured(
                lambda z: [
                    self.person(self.sidewalk_x(self.sides[rng.integers(2)], rng.random()), z)
                ],
                zn + 3,
                zn + 14,
            )
        for name, kind in (("traffic light", TRAFFIC_LIGHT), ("traffic sign", TRAFFIC_SIGN)):
            if name in feat:
                self.place_featured(
                    lambda z, k=kind: self.pole_with(self.sides[rng.integers(2)], z, k),
                    zn + 4,
                    zn + 14,
                )
        # one car at a visible size in every image
        self.place_featured(
            lambda z: [self.vehicle(CAR, lane_x(), z, rng.random() < 0.3)], zn + 3, zn + 30
        )

        far = min(self.z_end, 90.0)
        for _ in range(rng.integers(2, 9)):
            cx, z = lane_x(), self.random_z(zn, far)
            roll = rng.random()
            kind = TRUCK if roll < 0.12 else BUS if roll < 0.18 else CAR
            self.add([self.vehicle(kind, cx, z, cx < 0 and rng.random() < 0.7)])
        for side in self.sides:  # parked cars along the curb
            if side.sign == self.terrain_side:  # keep the featured grass verge in view
                continue
            for _ in range(rng.integers(0, 4)):
                z = self.random_z(zn, far)
                self.add([self.vehicle(CAR, side.sign * (side.curb - 1.1), z, False)])
        if self.rail_x is not None and "train" not in feat and rng.random() < 0.3:
            self.add([self.vehicle(TRAIN, self.rail_x, self.random_z(zn + 10, far), False)])
        for _ in range(rng.integers(0, 7)):
            side = self.sides[rng.integers(2)]
            self.add([self.person(self.sidewalk_x(side, rng.random()), self.random_z(zn, 60))])
        for kind, p in ((BICYCLE, 0.25), (MOTORCYCLE, 0.15)):
            if rng.random() < p:
                cx = float(rng.uniform(-left.curb + 1, right.curb - 1))
                self.add(self.two_wheeler(kind, cx, self.random_z(zn, 50), rng.random() < 0.8))
        for _ in range(rng.integers(0, 3) if rng.random() < 0.3 else 0):
            side = self.sides[rng.integers(2)]
            self.add(
                self.two_wheeler(BICYCLE, self.sidewalk_x(side, 0.9), self.random_z(zn, 40), False)
            )
        for _ in range(rng.integers(2, 7)):
            side = self.sides[rng.integers(2)]
            self.add(self.pole_with(side, self.random_z(zn, far), None))
        for _ in range(rng.integers(0, 3) if rng.random() < 0.4 else 0):
            side = self.sides[rng.integers(2)]
            self.add(self.pole_with(side, self.random_z(zn, far), TRAFFIC_LIGHT))
        for _ in range(rng.integers(0, 4)):
            side = self.sides[rng.integers(2)]
            self.add(self.pole_with(side, self.random_z(zn, far), TRAFFIC_SIGN))
        for _ in range(rng.integers(4, 13)):
            side = self.sides[rng.integers(2)]
            z = self.random_z(zn + 2, self.z_end)
            seg = np.clip(np.searchsorted(side.bounds, z, side="right") - 1, 0, len(side.kinds) - 1)
            if side.kinds[seg] == _SEGMENT_PARK or (side.setback > 3 and rng.random() < 0.5):
                cx = side.sign * (side.wall_line + side.setback / 2 + rng.uniform(0, 3))
                self.add([self.tree(cx, z, layer=0)])
            else:
                self.add([self.tree(self.sidewalk_x(side, rng.uniform(0.7, 1.0)), z)])
        for _ in range(rng.integers(0, 4)):
            side = self.sides[rng.integers(2)]
            self.add(
                [self.static_object(self.sidewalk_x(side, rng.random()), self.random_z(zn, 50))]
            )

    def draw_object(self, obj: _Object) -> None:
        value = self.new_value(obj.label)
        for part in obj.parts:
            pts2 = self.project(part.pts)
            width_px = part.width * self.f / float(part.pts[:, 2].mean()) if part.width else 0
            reg = self.region(
                pts2, width_px=max(width_px, 1.0) if part.width else 0, closed=part.closed
            )
            if reg is None:
                continue
            if part.multiply:
                self.paint(reg, part.rgb, None, multiply=True)
            else:
                self.paint(
                    reg,
                    part.rgb * self.light(part.normal),
                    value if part.labelled else None,
                    part.texture,
                )

    def draw_hood(self) -> None:
        rng = self.rng
        xs = np.linspace(0, self.W, 17)
        t = (xs - self.W / 2) / (self.W / 2)
        top = self.H - self.hood * (0.55 + 0.45 * (1 - t**2))
        pts = [*np.column_stack([xs, top]).tolist(), [self.W + 1, self.H + 1], [-1, self.H + 1]]
        reg = self.region(np.asarray(pts, np.float32) + 0.5)
        if reg is None:
            return
        base = _jitter(rng, (40, 40, 45), 0.3)
        _, yp = self.pixel_grid(reg)
        gloss = np.clip(1.6 - (yp - (self.H - self.hood)) / max(self.hood, 1), 0.6, 1.6)
        self.paint(reg, base[None, :] * gloss[:, None], EGO_VEHICLE, 0.02, 0.02)

    def render(self) -> tuple[Array, Array]:
        """Draw everything; return (H, W, 3) uint8 RGB and (H, W) int32 instanceIds values."""
        rng = self.rng
        self.layout()
        self.draw_sky()
        self.draw_ground()
        self.skyline()
        for side in self.sides:
            for k in np.argsort(-side.bounds[:-1], kind="stable"):
                self.facade(side, int(k))
        self.populate()
        barriers: list[tuple[float, int, _Side, float, float, float]] = []
        for label, name, p, hmin, hmax in (
            (WALL, "wall", 0.25, 1.0, 3.0),
            (FENCE, "fence", 0.25, 0.8, 2.0),
        ):
            sides = list(self.sides)
            if name in self.featured:  # near and long, on one side
                side = sides[rng.integers(2)]
                za = self.z_near + rng.uniform(2, 6)
                barriers.append(
                    (
                        za,
                        label,
                        side,
                        za,
                        za + rng.uniform(15, 30),
                        rng.uniform(max(hmin, 1.5), hmax),
                    )
                )
            for side in sides:
                if rng.random() < p:
                    za = self.random_z(2, 60)
                    barriers.append(
                        (za, label, side, za, za + rng.uniform(6, 30), rng.uniform(hmin, hmax))
                    )
        # painter's order: layer 0 (behind the wall line), barriers, then layer 1 far to near
        for obj in sorted((o for o in self.objects if o.layer == 0), key=lambda o: -o.z):
            self.draw_object(obj)
        for _, label, side, za, zb, h in sorted(barriers, key=lambda b: -b[0]):
            self.barrier(label, side, za, zb, h)
        for obj in sorted((o for o in self.objects if o.layer == 1), key=lambda o: (-o.z, o.order)):
            self.draw_object(obj)
        if self.hood:
            self.draw_hood()
        return self.photometric(), self.ids

    def photometric(self) -> Array:
        """Camera effects: light falloff, blur, colour cast, contrast, gamma, sensor noise."""
        rng = self.rng
        h, w = self.H, self.W
        gy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
        gx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
        gain = 1 + rng.uniform(-0.35, 0.35) * gx + rng.uniform(-0.25, 0.25) * gy
        gain -= rng.uniform(0, 0.5) * (gx**2 + gy**2)  # vignetting
        img = np.clip(self.img * gain[..., None], 0, 255).astype(np.uint8)
        img = (
            np.asarray(
                Image.fromarray(img).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9))),
                np.float32,
            )
            / 255.0
        )
        img = img * rng.uniform(0.92, 1.08, size=3).astype(np.float32)  # white balance
        contrast, bright = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.08)
        img = np.clip((img - 0.5) * contrast + 0.5 + bright, 0, 1) ** rng.uniform(0.8, 1.25)
        img = img * 255 + rng.normal(0, rng.uniform(2, 7), img.shape).astype(np.float32)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_scene(
    rng: np.random.Generator, size: tuple[int, int], featured: Sequence[str] = ()
) -> tuple[Array, Array]:
    """Draw one street scene.

    Returns ``(image, instance_ids)``: (H, W, 3) uint8 RGB and (H, W) int32 with the Cityscapes
    ``*_instanceIds.png`` values (labelId*1000+k for person..bicycle, the labelId elsewhere).
    ``featured`` names classes (``FEATURED_GROUPS`` entries) placed near and unoccluded.
    """
    return _Scene(rng, int(size[0]), int(size[1]), featured).render()


def label_ids(instance_ids: Array) -> Array:
    """(H, W) labelIds (uint8) of an instanceIds array."""
    return np.where(instance_ids >= 1000, instance_ids // 1000, instance_ids).astype(np.uint8)


# ---------------------------------------------------------------------------------- files
def _write_png(path: Path, array: Array) -> None:
    image = Image.fromarray(array)

    def write(f: IO[bytes]) -> None:
        image.save(f, format="PNG")

    atomic_write(path, write)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"synthetic data: {name}={value!r}; expected an integer >= {minimum}")
    return int(value)


def generate_dataset(
    out: str | os.PathLike, *, train: int, val: int, size: tuple[int, int], seed: int, test: int = 0
) -> dict:
    """Write synthetic street scenes in the Cityscapes layout under ``out`` and summarise them.

    Files per image (``{city}_{seq:06d}_000019`` prefix, cities ``synthA``.. per split)::

        leftImg8bit/{split}/{city}/*_leftImg8bit.png      (H, W, 3) uint8 RGB
        gtFine/{split}/{city}/*_gtFine_labelIds.png       (H, W) uint8 Cityscapes labelIds
        gtFine/{split}/{city}/*_gtFine_instanceIds.png    (H, W) uint16 labelId*1000+k for
                                                          person..bicycle, labelId elsewhere
        gtFine/{split}/{city}/*_gtFine_color.png          (H, W, 4) uint8 label colours

    Test images get all-zero (unlabeled) labels, as the Cityscapes test split does. ``size`` is
    (H, W). The same ``seed`` writes byte-identical files; images of one split do not depend on
    the sizes of the others. Existing files of the same names are overwritten.

    Returns ``{"root", "images", "splits": {split: count}, "size": [H, W], "seed", "seconds",
    "class_pixel_fraction": {class name: share of all train+val pixels}}``.
    """
    counts = {
        "train": _check_int("train", train, 0),
        "val": _check_int("val", val, 0),
        "test": _check_int("test", test, 0),
    }
    if sum(counts.values()) < 1:
        raise DataError("synthetic data: train+val+test is 0; expected at least one image")
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise DataError(f"synthetic data: size={size!r}; expected (height, width)")
    height = _check_int("size height", size[0], MIN_SIZE)
    width = _check_int("size width", size[1], MIN_SIZE)
    seed = _check_int("seed", seed, 0)

    start = time.perf_counter()
    root = Path(out)
    table = get_label_table("cityscapes")
    colors = _id_colors()
    histogram = np.zeros(256, np.int64)
    for split_index, split in enumerate(SPLITS):
        n = counts[split]
        cities = CITIES[split]
        first: dict[int, int] = {}  # first image index of each city
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, i)))
            # each split starts the cycle at a different group so that small splits together
            # cover all groups
            group = FEATURED_GROUPS[(seed + i + 2 * split_index) % len(FEATURED_GROUPS)]
            image, ids = render_scene(rng, (height, width), group)
            if split == "test":
                ids = np.zeros_like(ids)
            labels = label_ids(ids)
            if split != "test":
                histogram += np.bincount(labels.ravel(), minlength=256)
            c = i * len(cities) // n
            seq = i - first.setdefault(c, i)
            stem = f"{cities[c]}_{seq:06d}_{FRAME:06d}"
            img_dir = root / "leftImg8bit" / split / cities[c]
            gt_dir = root / "gtFine" / split / cities[c]
            _write_png(img_dir / f"{stem}_leftImg8bit.png", image)
            _write_png(gt_dir / f"{stem}_gtFine_labelIds.png", labels)
            _write_png(gt_dir / f"{stem}_gtFine_instanceIds.png", ids.astype(np.uint16))
            _write_png(gt_dir / f"{stem}_gtFine_color.png", colors[labels])

    lut = table.lut()
    per_train = np.zeros(table.num_classes, np.int64)
    valid = (lut >= 0) & (lut != IGNORE_INDEX)
    np.add.at(per_train, lut[valid], histogram[valid])
    total = max(int(histogram.sum()), 1)
    seconds = time.perf_counter() - start
    summary = {
        "root": str(root),
        "images": sum(counts.values()),
        "splits": dict(counts),
        "size": [height, width],
        "seed": seed,
        "seconds": round(seconds, 3),
        "class_pixel_fraction": {
            name: round(float(per_train[k]) / total, 6) for k, name in enumerate(table.class_names)
        },
    }
    logger.debug(
        "wrote %d synthetic images (%dx%d) to %s in %.1f s",
        summary["images"],
        height,
        width,
        root,
        seconds,
    )
    return summary

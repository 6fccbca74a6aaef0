"""Cars, trucks, buses and trams as lit boxes with windows, lamps and wheels, and bicycles and
motorcycles seen from the side with their riders.

Dimensions are metres; outlines of parts are (offset, Y) pairs in the plane they lie in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .classes import BICYCLE, BUS, CAR, TRAIN, TRUCK
from .colors import any_color, jitter, jitter_pick
from .geometry import (
    Array,
    Part,
    SceneObject,
    billboard,
    box,
    circle,
    horizontal_rect,
    mirrored_billboard,
    rect,
    side_plane,
)
from .people import rider

CAR_WIDTH_RANGE = (1.7, 1.95)
CAR_LENGTH_RANGE = (3.8, 4.8)
TRUCK_WIDTH, TRUCK_LENGTH_RANGE = 2.45, (7.5, 10.0)
BUS_WIDTH, BUS_LENGTH_RANGE = 2.55, (10.5, 12.5)
TRAM_WIDTH, TRAM_LENGTH_RANGE = 2.65, (20, 35)
TRAM_PAINT = ((225, 225, 220), (190, 40, 40), (230, 190, 40), (40, 90, 160), (60, 140, 80))
TYRE_BLACK = (30, 30, 32)
DARK_GLASS_P = 0.7  # the rest reflect the sky
DARK_GLASS, SKY_GLASS = (50, 60, 75), (120, 140, 165)
TAIL_LIGHT, HEAD_LIGHT = (230, 40, 30), (240, 235, 200)
CAR_BODY_TOP_RANGE = (0.85, 1.05)
CAR_CABIN_HEIGHT_RANGE = (0.45, 0.7)
# the cabin starts this far from the rear and ends this far from the front
CAR_BOOT_RANGE, CAR_BONNET_RANGE = (0.8, 1.2), (0.9, 1.4)
TRUCK_CARGO_TOP_RANGE = (3.2, 3.9)  # the box is higher than the cab
TRUCK_CAB_TOP_RANGE = (2.7, 3.1)
BUS_ROOF_RANGE, TRAM_ROOF_RANGE = (3.0, 3.3), (3.4, 3.8)
SIDE_PANE_RANGE = (1.2, 1.8)  # window pitch along a bus or tram
SHADOW_RANGE = (0.45, 0.7)  # darkening of the ground under a vehicle
WHEEL_RADIUS = 0.36
# nothing else may stand this close (metres) beside, and in front of or behind, a vehicle
FOOTPRINT_SIDE, FOOTPRINT_END = 0.3, 0.8
WHITE_CARGO_P = 0.6
WHITE_CARGO = (225, 225, 225)
TRUCK_CAB_LENGTH = 2.3
TRAM_AXLE_SPACING = 8.0

TWO_WHEELER_BLACK = (30, 30, 30)
# metres beside and in front of or behind a two-wheeler where nothing else may stand
TWO_WHEELER_CLEARANCE = 0.4
WHEEL_VERTICES = 14


def vehicle(
    rng: np.random.Generator, kind: int, cx: float, z: float, oncoming: bool, cam_height: float
) -> SceneObject:
    """A car, truck, bus or tram (``kind`` its labelId) centred on X = cx, its back (or, if
    ``oncoming``, its front) at Z = z; ``cam_height`` decides whether its roof shows."""
    parts: list[Part] = []
    # every kind's size is drawn, whichever is built, so that the random stream stays the same
    dims = {
        CAR: (rng.uniform(*CAR_WIDTH_RANGE), rng.uniform(*CAR_LENGTH_RANGE)),
        TRUCK: (TRUCK_WIDTH, rng.uniform(*TRUCK_LENGTH_RANGE)),
        BUS: (BUS_WIDTH, rng.uniform(*BUS_LENGTH_RANGE)),
        TRAIN: (TRAM_WIDTH, rng.uniform(*TRAM_LENGTH_RANGE)),
    }
    w, length = dims[kind]
    xa, xb, za, zb = cx - w / 2, cx + w / 2, z, z + length
    paint = any_color(rng)
    if kind == TRAIN:
        paint = jitter_pick(rng, TRAM_PAINT, 0.1)
    dark = jitter(rng, TYRE_BLACK, 0.2)
    glass = jitter(rng, DARK_GLASS if rng.random() < DARK_GLASS_P else SKY_GLASS, 0.2)
    lamp = np.array(TAIL_LIGHT if not oncoming else HEAD_LIGHT, np.float32)
    shadow = horizontal_rect(xa - 0.1, xb + 0.1, 0.01, za - 0.2, zb)
    darken = np.full(3, rng.uniform(*SHADOW_RANGE), np.float32)
    parts.append(Part(shadow, darken, None, labelled=False, multiply=True))
    for tx in (xa + 0.15, xb - 0.45):  # tyres seen under the bumper
        parts.append(Part(billboard(0, za + 0.3, rect(tx, 0, tx + 0.3, 0.4)), dark))

    def add_box(ya: float, yb: float, z0: float, z1: float, inset: float, rgb: Array) -> None:
        for pts, normal in box(xa + inset, xb - inset, ya, yb, z0, z1, cam_height):
            parts.append(Part(pts, rgb, normal, texture=0.04))

    def side_glass(x: float, z0: float, outline: Sequence[tuple[float, float]]) -> None:
        parts.append(Part(side_plane(x, z0, outline), glass, None))

    # the side of the vehicle the camera sees, None when it is straight ahead
    near_x = xa if xa > 0 else xb if xb < 0 else None
    if kind == CAR:
        body_top = rng.uniform(*CAR_BODY_TOP_RANGE)
        roof = body_top + rng.uniform(*CAR_CABIN_HEIGHT_RANGE)
        add_box(0.28, body_top, za, zb, 0.0, paint)
        c0, c1 = za + rng.uniform(*CAR_BOOT_RANGE), zb - rng.uniform(*CAR_BONNET_RANGE)
        add_box(body_top, roof, c0, c1, 0.1, paint)
        windscreen = rect(xa + 0.2, body_top + 0.05, xb - 0.2, roof - 0.08)
        parts.append(Part(billboard(0, c0, windscreen), glass))
        if near_x is not None:
            side_window = rect(0.1, body_top + 0.05, c1 - c0 - 0.1, roof - 0.08)
            side_glass(near_x + (0.1 if xa > 0 else -0.1), c0, side_window)
        wheels: Sequence[float] = (za + 0.85, zb - 0.85)
        lamp_y = body_top - 0.2
    elif kind == TRUCK:
        cab_len = TRUCK_CAB_LENGTH
        cargo = (za, zb - cab_len - 0.2) if not oncoming else (za + cab_len + 0.2, zb)
        cab = (zb - cab_len, zb) if not oncoming else (za, za + cab_len)
        cargo_rgb = (
            jitter(rng, WHITE_CARGO, 0.1) if rng.random() < WHITE_CARGO_P else any_color(rng)
        )
        if oncoming:
            add_box(0.9, rng.uniform(*TRUCK_CARGO_TOP_RANGE), *cargo, 0.0, cargo_rgb)
            add_box(0.45, rng.uniform(*TRUCK_CAB_TOP_RANGE), *cab, 0.05, paint)
            parts.append(Part(billboard(0, za, rect(xa + 0.2, 1.6, xb - 0.2, 2.5)), glass))
        else:
            add_box(0.45, rng.uniform(*TRUCK_CAB_TOP_RANGE), *cab, 0.05, paint)
            top = rng.uniform(*TRUCK_CARGO_TOP_RANGE)
            add_box(0.9, top, *cargo, 0.0, cargo_rgb)
            door_seam = [(cx, 1.0), (cx, top - 0.1)]
            parts.append(Part(billboard(0, za, door_seam), dark, width=0.05))
        wheels = (za + 1.0, za + 2.4, zb - 1.2)
        lamp_y = 1.1
    else:  # bus or tram
        top = rng.uniform(*BUS_ROOF_RANGE) if kind == BUS else rng.uniform(*TRAM_ROOF_RANGE)
        bottom = 0.3 if kind == BUS else 0.45
        add_box(bottom, top, za, zb, 0.0, paint)
        parts.append(Part(billboard(0, za, rect(xa + 0.15, 1.3, xb - 0.15, top - 0.35)), glass))
        if near_x is not None:
            pane = rng.uniform(*SIDE_PANE_RANGE)
            off = 0.08 if xa > 0 else -0.08
            for s in np.arange(0.8, length - pane, pane):
                side_glass(
                    near_x + off, za, rect(float(s), 1.25, float(s + pane - 0.15), top - 0.5)
                )
        wheels = (
            (za + 2.0, zb - 2.5)
            if kind == BUS
            else tuple(float(s) for s in np.arange(za + 2.0, zb, TRAM_AXLE_SPACING))
        )
        lamp_y = 0.8
    if near_x is not None:
        off = 0.12 if xa > 0 else -0.12
        for wz in wheels:
            wheel = circle(wz, WHEEL_RADIUS, WHEEL_RADIUS)
            parts.append(Part(side_plane(near_x + off, 0.0, wheel), dark, None))
    for lx in (xa + 0.1, xb - 0.35):
        parts.append(Part(billboard(0, za, rect(lx, lamp_y, lx + 0.25, lamp_y + 0.15)), lamp, None))
    footprint = (xa - FOOTPRINT_SIDE, xb + FOOTPRINT_SIDE, za - FOOTPRINT_END, zb + FOOTPRINT_END)
    return SceneObject(kind, z, parts, footprint=footprint)


def two_wheeler(
    rng: np.random.Generator, kind: int, cx: float, z: float, ridden: bool
) -> list[SceneObject]:
    """A bicycle or motorcycle (``kind``) seen from the side, crossing at X = cx, Z = z, and
    its rider if ``ridden``."""
    d = float(rng.choice([-1, 1]))
    parts: list[Part] = []
    paint = any_color(rng)
    dark = jitter(rng, TWO_WHEELER_BLACK, 0.3)

    def bb(pts: Sequence[tuple[float, float]]) -> Array:
        return mirrored_billboard(cx, z, d, pts)

    if kind == BICYCLE:
        half, r = 0.52, 0.34  # half the wheelbase, wheel radius
        for wx in (-half, half):
            tyre = circle(wx, r, r, WHEEL_VERTICES)
            parts.append(Part(bb(tyre), dark, width=0.06, closed=True))
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
        parts.append(Part(bb(frame), paint, width=0.05))
        parts.append(Part(bb([(0.4, 0.85), (0.38, 1.0), (0.3, 1.02)]), dark, width=0.04))
        parts.append(Part(bb(rect(-0.25, 0.87, -0.05, 0.93)), dark))
        seat, bar, foot = (-0.15, 0.9), (0.32, 1.0), (0.0, 0.25)
    else:
        half, r = 0.72, 0.32
        for wx in (-half, half):
            parts.append(Part(bb(circle(wx, r, r, WHEEL_VERTICES)), dark))
        body = [
            (-half, 0.5),
            (-0.4, 0.78),
            (0.15, 0.88),
            (0.5, 0.82),
            (0.6, 0.55),
            (0.2, 0.32),
            (-0.3, 0.34),
        ]
        parts.append(Part(bb(body), paint))
        parts.append(Part(bb([(0.55, 1.0), (half, r)]), dark, width=0.06))
        seat, bar, foot = (-0.2, 0.85), (0.5, 1.0), (0.05, 0.35)
    clear = TWO_WHEELER_CLEARANCE
    footprint = (cx - half - clear, cx + half + clear, z - clear, z + clear)
    objs = [SceneObject(kind, z, parts, footprint=footprint)]
    if ridden:
        # motorcyclists wear a helmet of any colour; cyclists show their face
        objs.append(rider(rng, cx, z, d, seat, bar, foot, helmet=kind != BICYCLE))
    return objs

"""Street furniture: poles (bare or street lamps), traffic lights, traffic signs and small
static objects (bins, boxes, bollards) on the sidewalks.

Outlines are (X offset, Y) metres in the plane Z = z of the pole, facing the camera.
"""

from __future__ import annotations

import numpy as np

from .classes import POLE, STATIC, TRAFFIC_LIGHT
from .colors import jitter, jitter_pick
from .geometry import Array, Part, SceneObject, billboard, circle, rect
from .layout import Side

POLE_SIDEWALK_RANGE = (0, 0.25)  # fraction across the sidewalk: poles stand near the curb
POLE_GREYS = ((120, 120, 120), (70, 85, 75), (60, 60, 62), (150, 150, 145))
POLE_TEXTURE = 0.03  # smooth painted metal
BARE_POLE_HEIGHT_RANGE = (3, 9)
BARE_POLE_WIDTH_RANGE = (0.12, 0.3)
LAMP_MIN_HEIGHT = 5.5  # only tall poles carry a street lamp
LAMP_P = 0.6
HEAD_POLE_HEIGHT_RANGE = (2.4, 3.4)
HEAD_POLE_WIDTH_RANGE = (0.08, 0.2)
HANGING_LIGHT_P = 0.3  # traffic lights on a mast over the road
HANGING_POLE_HEIGHT_RANGE = (5.0, 6.0)
MAST_REACH_RANGE = (2.5, 4.0)

DARK_HOUSING_P = 0.75  # the rest are painted yellow
DARK_HOUSING, YELLOW_HOUSING = (35, 35, 35), (190, 160, 40)
LIGHTS_FACING_P = 0.75  # the rest are seen from the side or behind: a plain housing
LAMP_COLORS = ((255, 60, 40), (255, 180, 40), (60, 230, 120))  # red, amber, green
LAMP_HEIGHTS = (0.75, 0.47, 0.19)  # above the housing's bottom, top to bottom
LAMP_VERTICES = 10

SIGN_BACK_P = 0.25  # seen from behind: a plain grey plate
ROUND_BACK_P = 0.5  # the rest are rectangular
SIGN_STYLES = 4  # round with a red ring, triangle, blue disc with an arrow, direction sign
BLUE_DIRECTION_P = 0.5  # the rest are green
SIGN_VERTICES = 14
SIGN_RED, SIGN_WHITE, SIGN_BLUE, SIGN_GREEN = (
    (200, 30, 30),
    (235, 235, 230),
    (30, 70, 170),
    (30, 120, 60),
)

STATIC_WIDTH_RANGE = (0.3, 0.9)
STATIC_HEIGHT_RANGE = (0.6, 1.2)
STATIC_COLORS = ((60, 80, 60), (110, 110, 110), (200, 110, 30), (50, 50, 60))


def _pole(cx: float, z: float, w: float, h: float, grey: Array) -> Part:
    return Part(billboard(cx, z, rect(-w / 2, 0, w / 2, h)), grey, texture=POLE_TEXTURE)


def _traffic_light(
    rng: np.random.Generator, cx: float, z: float, hx: float, y0: float
) -> list[Part]:
    """A housing from ``y0`` up, ``hx`` beside the pole, with three lamps, one lit."""
    housing = jitter(rng, DARK_HOUSING if rng.random() < DARK_HOUSING_P else YELLOW_HOUSING, 0.2)
    parts = [Part(billboard(cx, z, rect(hx - 0.18, y0, hx + 0.18, y0 + 0.95)), housing)]
    if rng.random() < LIGHTS_FACING_P:
        lit = rng.integers(len(LAMP_COLORS))
        for i, ly in enumerate(LAMP_HEIGHTS):
            rgb = np.array(LAMP_COLORS[i], np.float32) if i == lit else housing * 0.5 + 20
            lamp = circle(hx, y0 + ly, 0.1, LAMP_VERTICES)
            parts.append(Part(billboard(cx, z, lamp), rgb, None))
    return parts


def _traffic_sign(
    rng: np.random.Generator, cx: float, z: float, c: float, grey: Array
) -> list[Part]:
    """A sign centred ``c`` metres up: seen from behind, or one of four common styles."""

    def plate(outline: list[tuple[float, float]], rgb: Array, width: float = 0.0) -> Part:
        return Part(billboard(cx, z, outline), rgb, width=width)

    if rng.random() < SIGN_BACK_P:
        shape = (
            circle(0, c, 0.35, SIGN_VERTICES)
            if rng.random() < ROUND_BACK_P
            else rect(-0.35, c - 0.3, 0.35, c + 0.3)
        )
        return [plate(shape, grey * 1.1)]
    style = rng.integers(SIGN_STYLES)
    red = jitter(rng, SIGN_RED, 0.1)
    white = jitter(rng, SIGN_WHITE, 0.05)
    blue = jitter(rng, SIGN_BLUE, 0.1)
    if style == 0:  # round, red ring
        return [
            plate(circle(0, c, 0.35, SIGN_VERTICES), red),
            plate(circle(0, c, 0.26, SIGN_VERTICES), white),
        ]
    if style == 1:  # triangle
        tri = [(-0.4, c - 0.25), (0.4, c - 0.25), (0.0, c + 0.45)]
        inner = [(-0.27, c - 0.17), (0.27, c - 0.17), (0.0, c + 0.3)]
        return [plate(tri, red), plate(inner, white)]
    if style == 2:  # blue disc with an arrow
        return [
            plate(circle(0, c, 0.33, SIGN_VERTICES), blue),
            plate([(0, c - 0.2), (0, c + 0.2)], white, width=0.07),
        ]
    # rectangular direction sign
    rgb = blue if rng.random() < BLUE_DIRECTION_P else jitter(rng, SIGN_GREEN, 0.1)
    return [
        plate(rect(-0.5, c - 0.3, 0.5, c + 0.3), rgb),
        plate([(-0.35, c), (0.3, c)], white, width=0.06),
    ]


def pole_with(
    rng: np.random.Generator, side: Side, z: float, head: int | None
) -> list[SceneObject]:
    """A pole near the curb of ``side`` at depth ``z``: bare or a street lamp (``head`` None),
    or carrying a traffic light or sign (``head`` its labelId, drawn in front of the pole)."""
    cx = side.sidewalk_x(rng.uniform(*POLE_SIDEWALK_RANGE))
    grey = jitter_pick(rng, POLE_GREYS, 0.12)
    toward_road = -side.sign
    if head is None:
        h = rng.uniform(*BARE_POLE_HEIGHT_RANGE)
        w = rng.uniform(*BARE_POLE_WIDTH_RANGE)
        parts = [_pole(cx, z, w, h, grey)]
        if h > LAMP_MIN_HEIGHT and rng.random() < LAMP_P:  # street lamp arm
            arm = [(0.0, h), (toward_road * 1.2, h + 0.35), (toward_road * 1.8, h + 0.3)]
            parts.append(Part(billboard(cx, z, arm), grey, width=0.1))
        return [SceneObject(POLE, z, parts)]
    h = rng.uniform(*HEAD_POLE_HEIGHT_RANGE)
    hanging = head == TRAFFIC_LIGHT and rng.random() < HANGING_LIGHT_P
    if hanging:
        h = rng.uniform(*HANGING_POLE_HEIGHT_RANGE)
    w = rng.uniform(*HEAD_POLE_WIDTH_RANGE)
    pole = [_pole(cx, z, w, h, grey)]
    hx = 0.0
    if hanging:
        hx = toward_road * rng.uniform(*MAST_REACH_RANGE)
        mast = [(0.0, h - 0.1), (hx, h - 0.1)]
        pole.append(Part(billboard(cx, z, mast), grey, width=0.12))
    if head == TRAFFIC_LIGHT:
        parts = _traffic_light(rng, cx, z, hx, h - 1.05 if hanging else h - 0.1)
    else:
        parts = _traffic_sign(rng, cx, z, h + 0.3, grey)
    return [SceneObject(POLE, z, pole), SceneObject(head, z, parts, order=1)]


def static_object(rng: np.random.Generator, cx: float, z: float) -> SceneObject:
    """A box-shaped object (bin, electrical box, bollard) standing at X = cx, Z = z."""
    w, h = rng.uniform(*STATIC_WIDTH_RANGE), rng.uniform(*STATIC_HEIGHT_RANGE)
    rgb = jitter_pick(rng, STATIC_COLORS, 0.15)
    return SceneObject(STATIC, z, [Part(billboard(cx, z, rect(-w / 2, 0, w / 2, h)), rgb)])

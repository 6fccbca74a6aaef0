"""People on the sidewalks (facing the camera or walking across) and riders of two-wheelers.

Outlines are (X offset, Y) metres in the plane of the person, drawn for someone 1.75 m tall.
"""

from __future__ import annotations

import numpy as np

from .classes import PERSON, RIDER
from .colors import any_color, jitter, jitter_pick
from .geometry import Part, SceneObject, billboard, circle, mirrored_billboard

PERSON_HEIGHT_RANGE = (1.55, 1.95)
OUTLINE_HEIGHT = 1.75
SKIN_TONES = ((230, 190, 160), (190, 140, 100), (120, 85, 60))
HAIR = (40, 30, 25)
COAT_P = 0.3  # a coat reaches below the hips
COAT_RANGE = (0.9, 1.2)
NO_COAT = 0.9
LEGS_SHADE_RANGE = (0.4, 1.0)  # trousers as dark as, or darker than, the top
FACING_P = 0.5
STRIDE_RANGE = (-0.06, 0.06)  # facing the camera
STEP_RANGE = (0.1, 0.3)  # walking across
PERSON_FOOTPRINT = 0.3  # half width, metres, where nothing else may stand
HEAD_VERTICES = 10

RIDER_SKIN = (200, 160, 130)
RIDER_LEGS_DARKEN = 0.7


def person(rng: np.random.Generator, cx: float, z: float) -> SceneObject:
    """A pedestrian standing at X = cx, Z = z."""
    s = rng.uniform(*PERSON_HEIGHT_RANGE) / OUTLINE_HEIGHT
    top_rgb, legs_rgb = any_color(rng), any_color(rng) * rng.uniform(*LEGS_SHADE_RANGE)
    skin = jitter_pick(rng, SKIN_TONES, 0.1)
    hair = jitter(rng, HAIR, 0.3)
    parts = []
    coat = rng.uniform(*COAT_RANGE) if rng.random() < COAT_P else NO_COAT
    if rng.random() < FACING_P:
        stride = rng.uniform(*STRIDE_RANGE)
        for sgn in (-1, 1):
            leg = [
                (sgn * 0.02, 0.9),
                (sgn * 0.16, 0.9),
                (sgn * 0.17 + stride, 0),
                (sgn * 0.05 + stride, 0),
            ]
            parts.append(Part(billboard(cx, z, [(a * s, b * s) for a, b in leg]), legs_rgb))
        torso = [(-0.2, 1.8 - coat), (0.2, 1.8 - coat), (0.23, 1.45), (-0.23, 1.45)]
        parts.append(Part(billboard(cx, z, [(a * s, b * s) for a, b in torso]), top_rgb))
        for sgn in (-1, 1):
            arm = [(sgn * 0.25 * s, 1.43 * s), (sgn * 0.28 * s, 0.88 * s)]
            parts.append(Part(billboard(cx, z, arm), top_rgb, width=0.09 * s))
    else:
        d = rng.choice([-1, 1])
        step = rng.uniform(*STEP_RANGE)
        for sgn in (-1, 1):
            leg = [(0.0, 0.9 * s), (sgn * step * s, 0.0)]
            parts.append(Part(billboard(cx, z, leg), legs_rgb, width=0.15 * s))
        torso = [(-0.13, 1.8 - coat), (0.13, 1.8 - coat), (0.15, 1.45), (-0.13, 1.45)]
        parts.append(Part(billboard(cx, z, [(a * s, b * s) for a, b in torso]), top_rgb))
        arm = [(0.0, 1.42 * s), (d * step * 0.8 * s, 0.9 * s)]
        parts.append(Part(billboard(cx, z, arm), top_rgb, width=0.09 * s))
    parts.append(Part(billboard(cx, z, circle(0, 1.61 * s, 0.11 * s, HEAD_VERTICES)), skin))
    hair_outline = [(-0.11, 1.62), (0.11, 1.62), (0.08, 1.72), (-0.08, 1.72)]
    parts.append(Part(billboard(cx, z, [(a * s, b * s) for a, b in hair_outline]), hair))
    footprint = (
        cx - PERSON_FOOTPRINT,
        cx + PERSON_FOOTPRINT,
        z - PERSON_FOOTPRINT,
        z + PERSON_FOOTPRINT,
    )
    return SceneObject(PERSON, z, parts, footprint=footprint)


def rider(
    rng: np.random.Generator,
    cx: float,
    z: float,
    d: float,
    seat: tuple[float, float],
    bar: tuple[float, float],
    foot: tuple[float, float],
    helmet: bool,
) -> SceneObject:
    """The rider of a two-wheeler facing ``d``, sitting on ``seat``, hands on ``bar``, a foot
    on ``foot`` (outline points of the vehicle); ``helmet`` paints the head in any colour."""
    top, legs = any_color(rng), any_color(rng) * RIDER_LEGS_DARKEN
    skin = jitter(rng, RIDER_SKIN, 0.15)
    hip = (seat[0], seat[1] + 0.08)
    shoulder = (seat[0] + 0.25, seat[1] + 0.62)
    knee = (seat[0] + 0.3, seat[1] - 0.15)

    def bb(pts: list[tuple[float, float]]) -> np.ndarray:
        return mirrored_billboard(cx, z, d, pts)

    torso = [
        (hip[0] - 0.12, hip[1]),
        (hip[0] + 0.1, hip[1]),
        (shoulder[0] + 0.1, shoulder[1]),
        (shoulder[0] - 0.1, shoulder[1]),
    ]
    parts = [
        Part(bb([hip, knee, foot]), legs, width=0.14),
        Part(bb(torso), top),
        Part(bb([shoulder, bar]), top, width=0.09),
        Part(
            bb(circle(shoulder[0] + 0.05, shoulder[1] + 0.17, 0.12, HEAD_VERTICES)),
            any_color(rng) if helmet else skin,
        ),
    ]
    # drawn after its vehicle at the same depth
    return SceneObject(RIDER, z, parts, order=1)

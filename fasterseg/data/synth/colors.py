"""Colours: random paints with per-image jitter, and the palettes shared by several drawings.

Colours are float RGB in 0..255. Classes share colours on purpose (cars of every colour, grey
walls like grey buildings) so that a model has to use shape, position and context.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from .geometry import Array

T = TypeVar("T")

# a jitter of amount a shifts each channel by a normal deviate of a * JITTER_SHIFT (0..255 units)
JITTER_SHIFT = 60.0
# share of "any colour" paints that are black, grey or white, as most real cars are
GREY_PAINT_P = 0.45
GREY_PAINT_RANGE = (20, 235)
PAINT_SATURATION_RANGE = (0.2, 0.9)
PAINT_VALUE_RANGE = (0.2, 0.95)

# facades, skyline blocks and walls: concrete, render, brick, stone
BUILDING_PAINT = (
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
# foliage, lawns and hedges
GREENS = ((60, 100, 40), (80, 112, 50), (48, 78, 38), (100, 120, 60), (112, 100, 52))


def hsv(h: float, s: float, v: float) -> Array:
    """(3,) float32 RGB of a hue (wrapped to 0..1), saturation and value."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255.0


def jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float) -> Array:
    """``rgb`` with an overall brightness change and a per-channel shift (fractions of 255)."""
    base = np.asarray(rgb, np.float32) * rng.uniform(1 - amount, 1 + amount)
    return np.clip(base + rng.normal(0.0, amount * JITTER_SHIFT, 3), 0, 255).astype(np.float32)


def pick(rng: np.random.Generator, palette: Sequence[T]) -> T:
    """One entry of ``palette``, uniformly."""
    return palette[rng.integers(len(palette))]


def jitter_pick(
    rng: np.random.Generator, palette: Sequence[Sequence[float]], amount: float
) -> Array:
    """:func:`jitter` of one entry of ``palette``."""
    return jitter(rng, pick(rng, palette), amount)


def any_color(rng: np.random.Generator) -> Array:
    """Paint of any hue, from black and grey to saturated: cars, clothes, buses."""
    if rng.random() < GREY_PAINT_P:
        return np.full(3, rng.uniform(*GREY_PAINT_RANGE), np.float32)
    return hsv(rng.random(), rng.uniform(*PAINT_SATURATION_RANGE), rng.uniform(*PAINT_VALUE_RANGE))

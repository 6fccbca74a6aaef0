"""Trees: a trunk and a crown of overlapping leafy discs."""

from __future__ import annotations

import numpy as np

from .classes import VEGETATION
from .colors import GREENS, jitter, pick
from .geometry import LAYER_STREET, Part, SceneObject, billboard, circle

TREE_HEIGHT_RANGE = (4.5, 11)
CROWN_RADIUS_RANGE = (1.6, 3.6)
TRUNK_SHARE = 0.6  # of the tree height: the crown hides the rest
BROWN_BARK_P = 0.6
BROWN_BARK, GREY_BARK = (85, 70, 55), (110, 110, 100)
TRUNK_WIDTH_RANGE = (0.22, 0.45)
BLOBS_RANGE = (5, 10)  # leafy discs per crown
BLOB_SPREAD_X, BLOB_SPREAD_Y = 0.45, 0.3  # standard deviations as fractions of the crown
BLOB_RADIUS_RANGE = (0.45, 0.85)
LEAF_TEXTURE = 0.1


def tree(rng: np.random.Generator, cx: float, z: float, layer: int = LAYER_STREET) -> SceneObject:
    """A tree standing at X = cx, Z = z, drawn in painter's ``layer``."""
    h = rng.uniform(*TREE_HEIGHT_RANGE)
    crown = rng.uniform(*CROWN_RADIUS_RANGE)
    bark = jitter(rng, BROWN_BARK if rng.random() < BROWN_BARK_P else GREY_BARK, 0.15)
    trunk = billboard(cx, z, [(0.0, 0.0), (0.0, h * TRUNK_SHARE)])
    parts = [Part(trunk, bark, width=rng.uniform(*TRUNK_WIDTH_RANGE))]
    green = pick(rng, GREENS)
    for _ in range(rng.integers(*BLOBS_RANGE)):
        bx = rng.normal(0, crown * BLOB_SPREAD_X)
        by = h - crown + rng.normal(0, crown * BLOB_SPREAD_Y)
        r = crown * rng.uniform(*BLOB_RADIUS_RANGE)
        leaves = circle(bx, by, r)
        parts.append(Part(billboard(cx, z, leaves), jitter(rng, green, 0.15), texture=LEAF_TEXTURE))
    return SceneObject(VEGETATION, z, parts, layer=layer)

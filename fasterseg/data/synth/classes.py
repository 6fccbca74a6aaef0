"""The Cityscapes labelIds the synthetic scenes are drawn with, and the featured class groups."""

from __future__ import annotations

import numpy as np

# Cityscapes labelIds drawn by the generator.
UNLABELED, EGO_VEHICLE, STATIC = 0, 1, 4
ROAD, SIDEWALK, RAIL_TRACK = 7, 8, 10
BUILDING, WALL, FENCE = 11, 12, 13
POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = 17, 19, 20
VEGETATION, TERRAIN, SKY = 21, 22, 23
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33
# Classes whose pixels carry labelId * 1000 + instance in *_instanceIds.png (train ids 11-18).
INSTANCE_IDS = frozenset({PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE})
# the Cityscapes instanceIds encoding: labelId * INSTANCE_STRIDE + instance number
INSTANCE_STRIDE = 1000

# One group per image, cycled: the rare classes each image is made to show at a visible size
# ("rider" comes with the featured motorcycle or bicycle, which are always ridden).
FEATURED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("train", "traffic light", "terrain"),
    ("bus", "wall", "person"),
    ("motorcycle", "rider", "fence", "traffic sign"),
    ("truck", "bicycle", "rider", "person"),
)


def label_ids(instance_ids: np.ndarray) -> np.ndarray:
    """(H, W) labelIds (uint8) of an (H, W) instanceIds array."""
    grouped = instance_ids >= INSTANCE_STRIDE
    return np.where(grouped, instance_ids // INSTANCE_STRIDE, instance_ids).astype(np.uint8)

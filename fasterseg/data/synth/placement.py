"""Where things stand: the featured group first, near, in view and unhidden, then traffic,
parked cars, people, two-wheelers, poles, lights, signs, trees and small objects."""

from __future__ import annotations

from collections.abc import Callable, Set

import numpy as np

from .camera import Camera
from .classes import BICYCLE, BUS, CAR, MOTORCYCLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, TRAIN, TRUCK
from .furniture import pole_with, static_object
from .geometry import LAYER_BEHIND, Array, SceneObject, horizontal_rect
from .layout import SEGMENT_PARK, Side, Street, random_z
from .people import person
from .vegetation import tree
from .vehicles import two_wheeler, vehicle

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels

# featured objects stay this many pixels inside the frame (and above the hood)
FRAME_MARGIN = 1
FEATURED_ATTEMPTS = 40
# each failed attempt places the group 4 % further away, where it is smaller and fits better
FEATURED_RETREAT = 1.04
# depth windows (metres beyond the nearest visible ground) of the featured objects: near
# enough to be large, far enough to be whole
FEATURED_DEPTHS = {
    "train": (5, 20),
    "bus": (4, 18),
    "truck": (4, 18),
    "motorcycle": (2, 12),
    "bicycle": (2, 12),
    "person": (3, 14),
    "traffic light": (4, 14),
    "traffic sign": (4, 14),
    "car": (3, 30),
}
TRAM_ONCOMING_P = 0.5
FEATURED_CAR_ONCOMING_P = 0.3
# a stretch of featured grass verge kept free: starts this far beyond the nearest ground
# (metres) and this long
VERGE_VIEW_GAP = 3
VERGE_VIEW_LENGTH = 8
LANE_CLEARANCE = 1  # two-wheelers keep this far from the curbs

TRAFFIC_MAX_Z = 90.0
TRAFFIC_RANGE = (2, 9)  # moving vehicles per image
TRUCK_SHARE, BUS_SHARE = 0.12, 0.06  # of moving vehicles; the rest are cars
ONCOMING_P = 0.7  # of vehicles in left lanes
PARKED_RANGE = (0, 4)  # per side
PARKED_INSET = 1.1  # metres from the curb to a parked car's centre
PARKED_TRAM_P = 0.3
PARKED_TRAM_GAP = 10
PEOPLE_RANGE = (0, 7)
PEOPLE_MAX_Z = 60
RIDDEN_P = ((BICYCLE, 0.25), (MOTORCYCLE, 0.15))
TWO_WHEELER_MAX_Z = 50
TWO_WHEELER_RIDDEN_P = 0.8
PARKED_BICYCLES_P = 0.3
PARKED_BICYCLES_RANGE = (0, 3)
PARKED_BICYCLES_MAX_Z = 40
PARKED_BICYCLE_AT = 0.9  # across the sidewalk, by the wall line
POLES_RANGE = (2, 7)
LIGHTS_P, LIGHTS_RANGE = 0.4, (0, 3)
SIGNS_RANGE = (0, 4)
TREES_RANGE = (4, 13)
TREES_MIN_GAP = 2
FRONT_GARDEN_MIN = 3  # metres of setback with room for trees
FRONT_GARDEN_TREE_P = 0.5
FRONT_GARDEN_SPREAD = 3
STREET_TREE_RANGE = (0.7, 1.0)  # across the sidewalk
STATICS_RANGE = (0, 4)
STATICS_MAX_Z = 50


def bbox(pts2: Array) -> Box:
    """The (x0, y0, x1, y1) box around (n, 2) pixel points."""
    return (
        float(pts2[:, 0].min()),
        float(pts2[:, 1].min()),
        float(pts2[:, 0].max()),
        float(pts2[:, 1].max()),
    )


class Placement:
    """The objects of a scene and the rules for adding more: footprints may not intersect,
    and nothing may hide a featured ("protected") object."""

    def __init__(self, camera: Camera, width: int, bottom: int) -> None:
        self.camera = camera
        self.width = width
        self.bottom = bottom  # the lowest image row a featured object may reach
        self.objects: list[SceneObject] = []
        # (depth, screen box) of what featured objects occupy
        self.protected: list[tuple[float, Box]] = []

    def screen_box(self, objs: list[SceneObject]) -> Box:
        """Pixel box around the labelled parts of a group of objects."""
        cam = self.camera
        return bbox(
            np.concatenate([cam.project(p.pts) for o in objs for p in o.parts if p.labelled])
        )

    def add(self, objs: list[SceneObject], protect: bool = False, force: bool = False) -> bool:
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

    def fits(self, objs: list[SceneObject], z: float, box: Box, protect: bool) -> bool:
        """Whether ``objs`` (nearest depth ``z``, screen ``box``) may be added."""
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

    def in_frame(self, objs: list[SceneObject]) -> bool:
        """Whether a group is wholly in the image, above the hood."""
        x0, y0, x1, y1 = self.screen_box(objs)
        m = FRAME_MARGIN
        return x0 >= m and x1 <= self.width - m and y0 >= m and y1 <= self.bottom

    def place_featured(
        self,
        rng: np.random.Generator,
        make: Callable[[float], list[SceneObject]],
        z_lo: float,
        z_hi: float,
    ) -> None:
        """Place a featured group near, fully in view and unhidden by other featured objects."""
        objs: list[SceneObject] = []
        for attempt in range(FEATURED_ATTEMPTS):
            z = rng.uniform(z_lo, z_hi) * (FEATURED_RETREAT**attempt)
            objs = make(z)
            if self.in_frame(objs) and self.add(objs, protect=True):
                return
        self.add(objs, protect=True, force=True)


def _protect_verge(placement: Placement, side: Side, z_near: float) -> None:
    """Keep a stretch of the featured grass verge free of anything standing in front."""
    cam = placement.camera
    room = placement.width - cam.xv if side.sign > 0 else cam.xv
    z0 = max(z_near + VERGE_VIEW_GAP, cam.f * (side.curb + side.verge) / max(room, 1.0) + 1)
    x0, x1 = side.sign * side.curb, side.sign * (side.curb + side.verge)
    quad = cam.project(horizontal_rect(x0, x1, 0, z0, z0 + VERGE_VIEW_LENGTH))
    placement.protected.append((z0 + VERGE_VIEW_LENGTH, bbox(quad)))


def populate(
    rng: np.random.Generator,
    placement: Placement,
    street: Street,
    featured: Set[str],
    z_near: float,
) -> None:
    """Place the featured group first (protected), then random street furniture and traffic."""
    left, right = street.sides
    zn = z_near
    lanes = street.lanes
    cam_height = placement.camera.height
    add = placement.add

    def lane_x() -> float:
        return float(lanes[rng.integers(len(lanes))])

    def any_side() -> Side:
        return street.sides[rng.integers(2)]

    def road_x() -> float:
        return float(rng.uniform(-left.curb + LANE_CLEARANCE, right.curb - LANE_CLEARANCE))

    def feature(name: str, make: Callable[[float], list[SceneObject]]) -> None:
        lo, hi = FEATURED_DEPTHS[name]
        placement.place_featured(rng, make, zn + lo, zn + hi)

    if street.terrain_side:
        _protect_verge(placement, street.sides[int(street.terrain_side > 0)], zn)
    if "train" in featured and street.rail_x is not None:
        rail = street.rail_x
        feature(
            "train",
            lambda z: [vehicle(rng, TRAIN, rail, z, rng.random() < TRAM_ONCOMING_P, cam_height)],
        )
    for name, kind in (("bus", BUS), ("truck", TRUCK)):
        if name in featured:
            feature(name, lambda z, k=kind: [vehicle(rng, k, lane_x(), z, False, cam_height)])
    for name, kind in (("motorcycle", MOTORCYCLE), ("bicycle", BICYCLE)):
        if name in featured:
            feature(name, lambda z, k=kind: two_wheeler(rng, k, road_x(), z, True))
    if "person" in featured:
        feature("person", lambda z: [person(rng, any_side().sidewalk_x(rng.random()), z)])
    for name, kind in (("traffic light", TRAFFIC_LIGHT), ("traffic sign", TRAFFIC_SIGN)):
        if name in featured:
            feature(name, lambda z, k=kind: pole_with(rng, any_side(), z, k))
    # one car at a visible size in every image
    feature(
        "car",
        lambda z: [
            vehicle(rng, CAR, lane_x(), z, rng.random() < FEATURED_CAR_ONCOMING_P, cam_height)
        ],
    )

    far = min(street.z_end, TRAFFIC_MAX_Z)
    for _ in range(rng.integers(*TRAFFIC_RANGE)):
        cx, z = lane_x(), random_z(rng, zn, far)
        roll = rng.random()
        kind = TRUCK if roll < TRUCK_SHARE else BUS if roll < TRUCK_SHARE + BUS_SHARE else CAR
        add([vehicle(rng, kind, cx, z, cx < 0 and rng.random() < ONCOMING_P, cam_height)])
    for side in street.sides:  # parked cars along the curb
        if side.sign == street.terrain_side:  # keep the featured grass verge in view
            continue
        for _ in range(rng.integers(*PARKED_RANGE)):
            z = random_z(rng, zn, far)
            add([vehicle(rng, CAR, side.sign * (side.curb - PARKED_INSET), z, False, cam_height)])
    if street.rail_x is not None and "train" not in featured and rng.random() < PARKED_TRAM_P:
        z = random_z(rng, zn + PARKED_TRAM_GAP, far)
        add([vehicle(rng, TRAIN, street.rail_x, z, False, cam_height)])
    for _ in range(rng.integers(*PEOPLE_RANGE)):
        side = any_side()
        add([person(rng, side.sidewalk_x(rng.random()), random_z(rng, zn, PEOPLE_MAX_Z))])
    for kind, p in RIDDEN_P:
        if rng.random() < p:
            cx = road_x()
            z = random_z(rng, zn, TWO_WHEELER_MAX_Z)
            add(two_wheeler(rng, kind, cx, z, rng.random() < TWO_WHEELER_RIDDEN_P))
    for _ in range(rng.integers(*PARKED_BICYCLES_RANGE) if rng.random() < PARKED_BICYCLES_P else 0):
        side = any_side()
        cx = side.sidewalk_x(PARKED_BICYCLE_AT)
        add(two_wheeler(rng, BICYCLE, cx, random_z(rng, zn, PARKED_BICYCLES_MAX_Z), False))
    for _ in range(rng.integers(*POLES_RANGE)):
        side = any_side()
        add(pole_with(rng, side, random_z(rng, zn, far), None))
    for _ in range(rng.integers(*LIGHTS_RANGE) if rng.random() < LIGHTS_P else 0):
        side = any_side()
        add(pole_with(rng, side, random_z(rng, zn, far), TRAFFIC_LIGHT))
    for _ in range(rng.integers(*SIGNS_RANGE)):
        side = any_side()
        add(pole_with(rng, side, random_z(rng, zn, far), TRAFFIC_SIGN))
    for _ in range(rng.integers(*TREES_RANGE)):
        side = any_side()
        z = random_z(rng, zn + TREES_MIN_GAP, street.z_end)
        in_park = side.kinds[side.segment_at(z)] == SEGMENT_PARK
        if in_park or (side.setback > FRONT_GARDEN_MIN and rng.random() < FRONT_GARDEN_TREE_P):
            spread = rng.uniform(0, FRONT_GARDEN_SPREAD)
            cx = side.sign * (side.wall_line + side.setback / 2 + spread)
            add([tree(rng, cx, z, layer=LAYER_BEHIND)])
        else:
            add([tree(rng, side.sidewalk_x(rng.uniform(*STREET_TREE_RANGE)), z)])
    for _ in range(rng.integers(*STATICS_RANGE)):
        side = any_side()
        add([static_object(rng, side.sidewalk_x(rng.random()), random_z(rng, zn, STATICS_MAX_Z))])

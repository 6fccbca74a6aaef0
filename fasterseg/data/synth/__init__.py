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

Modules, bottom up: ``classes`` (labelIds, featured groups), ``geometry`` (parts, objects,
polygons in metres), ``colors``, ``camera`` (projection, photometric effects), ``canvas``
(image, labels, lighting, painting), ``layout`` (the street plan), ``background`` (sky,
ground), ``buildings`` (facades, skyline, walls, fences), ``vehicles``, ``people``,
``furniture`` (poles, lights, signs), ``vegetation``, ``placement`` (where objects stand),
``scene`` (one image) and ``writer`` (the files).
"""

from .classes import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    EGO_VEHICLE,
    FEATURED_GROUPS,
    FENCE,
    INSTANCE_IDS,
    MOTORCYCLE,
    PERSON,
    POLE,
    RAIL_TRACK,
    RIDER,
    ROAD,
    SIDEWALK,
    SKY,
    STATIC,
    TERRAIN,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    TRAIN,
    TRUCK,
    UNLABELED,
    VEGETATION,
    WALL,
    label_ids,
)
from .scene import render_scene
from .writer import CITIES, FRAME, MIN_SIZE, SPLITS, generate_dataset

__all__ = [
    "BICYCLE",
    "BUILDING",
    "BUS",
    "CAR",
    "CITIES",
    "EGO_VEHICLE",
    "FEATURED_GROUPS",
    "FENCE",
    "FRAME",
    "INSTANCE_IDS",
    "MIN_SIZE",
    "MOTORCYCLE",
    "PERSON",
    "POLE",
    "RAIL_TRACK",
    "RIDER",
    "ROAD",
    "SIDEWALK",
    "SKY",
    "SPLITS",
    "STATIC",
    "TERRAIN",
    "TRAFFIC_LIGHT",
    "TRAFFIC_SIGN",
    "TRAIN",
    "TRUCK",
    "UNLABELED",
    "VEGETATION",
    "WALL",
    "generate_dataset",
    "label_ids",
    "render_scene",
]

"""One street scene, composed: camera, sky, ground, buildings, placed objects drawn far to near
(painter's order), the ego vehicle's hood, then the camera's photometric effects."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .background import draw_ground, draw_sky
from .buildings import barrier, facade, random_barriers, skyline
from .camera import PIXEL_CENTRE, Camera, photometric
from .canvas import Canvas
from .classes import EGO_VEHICLE
from .colors import jitter
from .geometry import LAYER_BEHIND, LAYER_STREET, Array
from .layout import random_street
from .placement import Placement, populate

HOOD_P = 0.45  # images that show the hood of the car the camera sits in
HOOD_RANGE = (0.05, 0.11)  # its height at the image centre, as a fraction of the image
# objects stand above this many rows over the hood (or the image bottom)
HOOD_MARGIN = 2
HOOD_VERTICES = 17
# hood height at the image edges, and what its curve adds at the centre (relative heights)
HOOD_EDGE, HOOD_CROWN = 0.55, 0.45
HOOD_PAINT = (40, 40, 45)
HOOD_GLOSS_RANGE = (0.6, 1.6)  # brightness from the hood's lower edge up to a highlight
HOOD_TEXTURE = 0.02  # smooth lacquer


def _draw_hood(rng: np.random.Generator, canvas: Canvas, hood: int) -> None:
    """The hood of the ego vehicle across the bottom ``hood`` rows, curved and glossy."""
    h, w = canvas.H, canvas.W
    xs = np.linspace(0, w, HOOD_VERTICES)
    t = (xs - w / 2) / (w / 2)
    top = h - hood * (HOOD_EDGE + HOOD_CROWN * (1 - t**2))
    pts = [*np.column_stack([xs, top]).tolist(), [w + 1, h + 1], [-1, h + 1]]
    reg = canvas.region(np.asarray(pts, np.float32) + PIXEL_CENTRE)
    if reg is None:
        return
    base = jitter(rng, HOOD_PAINT, 0.3)
    _, yp = canvas.pixel_grid(reg)
    lo, hi = HOOD_GLOSS_RANGE
    gloss = np.clip(hi - (yp - (h - hood)) / max(hood, 1), lo, hi)
    canvas.paint(reg, base[None, :] * gloss[:, None], EGO_VEHICLE, HOOD_TEXTURE, HOOD_TEXTURE)


def render_scene(
    rng: np.random.Generator, size: tuple[int, int], featured: Sequence[str] = ()
) -> tuple[Array, Array]:
    """Draw one street scene of ``size`` (H, W).

    Returns ``(image, instance_ids)``: (H, W, 3) uint8 RGB and (H, W) int32 with the Cityscapes
    ``*_instanceIds.png`` values (labelId*1000+k for person..bicycle, the labelId elsewhere).
    ``featured`` names classes (``FEATURED_GROUPS`` entries) placed near and unoccluded.
    """
    height, width = int(size[0]), int(size[1])
    wanted = set(featured)
    camera = Camera.random(rng, height, width)
    canvas = Canvas(rng, camera, height, width)
    hood = int(height * rng.uniform(*HOOD_RANGE)) if rng.random() < HOOD_P else 0
    bottom = height - hood - HOOD_MARGIN
    # the lowest ground row above the hood: nearest depth at which an object stands in view
    z_near = camera.f * camera.height / max(bottom - camera.yh, 1.0)

    street = random_street(rng, wanted)
    draw_sky(rng, canvas)
    draw_ground(rng, canvas, street, z_near)
    skyline(rng, canvas, street.z_end)
    for side in street.sides:
        for k in np.argsort(-side.bounds[:-1], kind="stable"):  # far to near
            facade(rng, canvas, side, int(k))
    placement = Placement(camera, width, bottom)
    populate(rng, placement, street, wanted, z_near)
    barriers = random_barriers(rng, street.sides, wanted, z_near)
    # painter's order: behind the wall line, then walls and fences, then the street far to near
    objects = placement.objects
    for obj in sorted((o for o in objects if o.layer == LAYER_BEHIND), key=lambda o: -o.z):
        canvas.draw_object(obj)
    for b in sorted(barriers, key=lambda b: -b.za):
        barrier(rng, canvas, b, z_near)
    street_objects = (o for o in objects if o.layer == LAYER_STREET)
    for obj in sorted(street_objects, key=lambda o: (-o.z, o.order)):
        canvas.draw_object(obj)
    if hood:
        _draw_hood(rng, canvas, hood)
    return photometric(rng, canvas.img), canvas.ids

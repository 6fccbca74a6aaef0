"""The sky and the ground plane: road with lane markings, crossings and rails, sidewalks with
tiles and curbs, grass verges, and the shadows facades cast across the street."""

from __future__ import annotations

import numpy as np

from .camera import PIXEL_CENTRE
from .canvas import Canvas
from .classes import RAIL_TRACK, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION
from .colors import GREENS, jitter, jitter_pick
from .geometry import UP, Array
from .layout import LANE_WIDTH, SEGMENT_BUILDING, SEGMENT_GAP, Street

CLEAR_SKY_P = 0.5
CLEAR_ZENITH, CLEAR_HORIZON = (70, 125, 200), (185, 205, 225)
# overcast or hazy skies are grey like concrete
OVERCAST_GREY_RANGE = (150, 235)
OVERCAST_BLUE = 8  # a faint blue at the top of a grey sky
OVERCAST_HORIZON = 10  # and a brighter horizon
CLOUD_WHITE = 235
# clouds: mostly large shapes, with some small-scale structure at their edges
CLOUD_LARGE, CLOUD_SMALL = 0.7, 0.2
CLOUD_COVER_RANGE = (0, 0.8)
CLOUD_OPACITY_RANGE = (0.3, 0.9)

ROAD_GREY_RANGE = (70, 125)
RAIL_TRACK_GREY_RANGE = (70, 120)
GREY_SIDEWALK_P = 0.6
SIDEWALK_GREY_RANGE = (115, 175)
RED_PAVING = (165, 130, 118)
TERRAIN_COLORS = ((112, 122, 72), (142, 130, 82), (92, 112, 62), (128, 138, 96))
# blotch strength per ground class: asphalt is even, grass patchy
GROUND_BLOTCH = {ROAD: 0.1, RAIL_TRACK: 0.12, SIDEWALK: 0.08, TERRAIN: 0.22, VEGETATION: 0.3}
GROUND_TEXTURE = 0.05
RAIL_TRACK_HALF_WIDTH = 1.0

PAINT_WHITE = (225, 225, 215)
MARK_OPACITY = 0.85
LINE_HALF_WIDTH = 0.07
DASH_PERIOD_RANGE = (6, 12)
DASH_LENGTH_RANGE = (2, 4)
DASH_PHASE_RANGE = (0, 12)
EDGE_LINE_P = 0.6
EDGE_LINE_INSET = 0.4
CROSSING_P = 0.35
CROSSING_MIN_GAP = 2  # metres beyond the nearest visible ground
CROSSING_MAX_Z = 30
CROSSING_DEPTH = 3.5
CROSSING_BAR = 0.5  # bar width, metres, one bar per metre
TYRE_TRACK_OFFSET = 0.8
TYRE_TRACK_HALF_WIDTH = 0.3
TYRE_TRACK_DARKEN = 0.12
RAIL_HALF_GAUGE = 0.72  # half of the standard gauge, 1.435 m
RAIL_HALF_WIDTH = 0.05
RAIL_SHINE = 200
RAIL_OPACITY = 0.7
TILE_RANGE = (0.3, 0.8)  # paving tile size, metres
SEAM_WIDTH = 0.04
SEAM_DARKEN = 0.18
CURB_WIDTH = 0.2
CURB_BRIGHTEN = 1.2
# facade shadows end this far (metres) short of, or beyond, the curb of the shading side
SHADOW_REACH_RANGE = (-3, 4)
SHADOW_RANGE = (0.55, 0.8)


def draw_sky(rng: np.random.Generator, canvas: Canvas) -> None:
    """Fill the whole image with a sky gradient and clouds, labelled sky."""
    if rng.random() < CLEAR_SKY_P:
        top = jitter(rng, CLEAR_ZENITH, 0.15)
        bottom = jitter(rng, CLEAR_HORIZON, 0.1)
    else:
        g = rng.uniform(*OVERCAST_GREY_RANGE)
        top = jitter(rng, (g, g, g + OVERCAST_BLUE), 0.08)
        bottom = jitter(rng, (g + OVERCAST_HORIZON,) * 3, 0.05)
    t = np.clip(np.arange(canvas.H, dtype=np.float32) / max(canvas.camera.yh, 1.0), 0, 1)
    sky = top[None, :] * (1 - t[:, None]) + bottom[None, :] * t[:, None]
    img = np.broadcast_to(sky[:, None, :], canvas.img.shape).copy()
    cover = rng.uniform(*CLOUD_COVER_RANGE)
    clouds = np.clip(CLOUD_LARGE * canvas.large + CLOUD_SMALL * canvas.blotch - cover, 0, 1)
    img += clouds[..., None] * (np.float32(CLOUD_WHITE) - img) * rng.uniform(*CLOUD_OPACITY_RANGE)
    canvas.img[:] = img
    canvas.ids[:] = SKY


def _ground_labels(street: Street, x: Array, z: Array) -> Array:
    """labelIds of the ground at X = x, Z = z: road, curbside verge, sidewalk, setback strip,
    and beyond the facades a side street (road) or a park's sidewalk."""
    lab = np.full(z.shape, ROAD, np.int32)
    for side in street.sides:
        a = side.sign * x - side.curb  # metres beyond this side's curb
        beyond = np.where(side.kinds[side.segment_at(z)] == SEGMENT_GAP, ROAD, SIDEWALK)
        lab = np.where(a >= 0, SIDEWALK, lab)
        if side.verge > 0:
            lab = np.where((a >= 0) & (a < side.verge), TERRAIN, lab)
        lab = np.where(a >= side.wall_line - side.curb, side.setback_label, lab)
        lab = np.where(a >= side.facade - side.curb, beyond, lab)
    if street.rail_x is not None:
        on_rails = (np.abs(x - street.rail_x) < RAIL_TRACK_HALF_WIDTH) & (lab == ROAD)
        lab = np.where(on_rails, RAIL_TRACK, lab)
    return lab


def draw_ground(rng: np.random.Generator, canvas: Canvas, street: Street, z_near: float) -> None:
    """Paint every row below the horizon as the ground plane seen through the camera."""
    cam = canvas.camera
    y0 = int(np.floor(cam.yh)) + 1
    ys = np.arange(y0, canvas.H, dtype=np.float32) + PIXEL_CENTRE
    xs = np.arange(canvas.W, dtype=np.float32) + PIXEL_CENTRE
    z = (cam.f * cam.height / (ys - cam.yh))[:, None] * np.ones((1, canvas.W), np.float32)
    x = cam.metres_x(xs[None, :], z)
    px = z / cam.f  # metres per pixel at each ground pixel
    lab = _ground_labels(street, x, z)

    colors = {
        ROAD: jitter(rng, (rng.uniform(*ROAD_GREY_RANGE),) * 3, 0.05),
        RAIL_TRACK: jitter(rng, (rng.uniform(*RAIL_TRACK_GREY_RANGE),) * 3, 0.08),
        SIDEWALK: jitter(
            rng,
            (rng.uniform(*SIDEWALK_GREY_RANGE),) * 3
            if rng.random() < GREY_SIDEWALK_P
            else RED_PAVING,
            0.1,
        ),
        TERRAIN: jitter_pick(rng, TERRAIN_COLORS, 0.1),
        VEGETATION: jitter_pick(rng, GREENS, 0.1),
    }
    img = np.zeros((*z.shape, 3), np.float32)
    sl = slice(y0, canvas.H)
    for label, rgb in colors.items():
        m = lab == label
        mod = 1 + GROUND_BLOTCH[label] * canvas.blotch[sl][m] + GROUND_TEXTURE * canvas.fine[sl][m]
        img[m] = rgb[None, :] * mod[:, None]

    road = (lab == ROAD) | (lab == RAIL_TRACK)
    left, right = street.sides
    near = np.abs(x) < (left.curb + right.curb)  # main road, not side streets

    def stripe(center: float | Array, half: float) -> Array:
        """Coverage (0..1) of a line on the ground, fading instead of aliasing far away."""
        return np.clip((half + px / 2 - np.abs(x - center)) / px, 0, 1)

    paint_white = jitter(rng, PAINT_WHITE, 0.08)
    marks = np.zeros(z.shape, np.float32)
    period = rng.uniform(*DASH_PERIOD_RANGE)
    dash, phase = rng.uniform(*DASH_LENGTH_RANGE), rng.uniform(*DASH_PHASE_RANGE)
    lanes = street.lanes
    for boundary in np.linspace(lanes[0], lanes[-1], len(lanes) + 1)[1:-1]:
        on = ((z + phase) % period) < dash
        marks = np.maximum(marks, stripe(float(boundary) - LANE_WIDTH / 2, LINE_HALF_WIDTH) * on)
    if rng.random() < EDGE_LINE_P:
        for edge in (-left.curb + EDGE_LINE_INSET, right.curb - EDGE_LINE_INSET):
            marks = np.maximum(marks, stripe(edge, LINE_HALF_WIDTH))
    if rng.random() < CROSSING_P:
        zc = rng.uniform(z_near + CROSSING_MIN_GAP, CROSSING_MAX_Z)
        bars = ((x % 1.0) < CROSSING_BAR) & (z > zc) & (z < zc + CROSSING_DEPTH)
        marks = np.maximum(marks, bars.astype(np.float32) * np.clip(CROSSING_BAR / px, 0, 1))
    marks *= road & near
    img += marks[..., None] * (paint_white[None, None, :] - img) * MARK_OPACITY
    for lane in lanes:  # darker tyre tracks
        for off in (-TYRE_TRACK_OFFSET, TYRE_TRACK_OFFSET):
            track = stripe(lane + off, TYRE_TRACK_HALF_WIDTH) * road
            img *= 1 - TYRE_TRACK_DARKEN * track[..., None]
    if street.rail_x is not None:
        rails = np.maximum(
            stripe(street.rail_x - RAIL_HALF_GAUGE, RAIL_HALF_WIDTH),
            stripe(street.rail_x + RAIL_HALF_GAUGE, RAIL_HALF_WIDTH),
        )
        shine = np.float32(RAIL_SHINE) - img
        img += (rails * (lab == RAIL_TRACK))[..., None] * shine * RAIL_OPACITY

    walk = lab == SIDEWALK
    tile = rng.uniform(*TILE_RANGE)
    seam = ((x % tile) < SEAM_WIDTH) | ((z % tile) < SEAM_WIDTH)
    fade = np.clip(tile / px / 4 - 0.5, 0, 1)  # seams fade out below 6 pixels a tile, gone at 2
    img *= 1 - (SEAM_DARKEN * seam * fade * walk)[..., None]
    for side in street.sides:
        a = side.sign * x - side.curb - side.verge
        curb = (a >= 0) & (a < np.maximum(CURB_WIDTH, px)) & (lab == SIDEWALK)
        img[curb] *= CURB_BRIGHTEN

    # shadows the facades of one side cast across the street
    shade_side = street.sides[int(canvas.lighting.sun[0] > 0)]
    reach = shade_side.curb - rng.uniform(*SHADOW_REACH_RANGE)
    seg = shade_side.segment_at(z)
    shadow = (shade_side.sign * x > reach) & (shade_side.kinds[seg] == SEGMENT_BUILDING)
    img[shadow] *= rng.uniform(*SHADOW_RANGE)
    img *= canvas.light(UP)
    canvas.img[sl] = img
    canvas.ids[sl] = lab

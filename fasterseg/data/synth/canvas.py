"""What the drawings paint into: the image, the label map, their texture noise and the light."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .camera import PIXEL_CENTRE, Camera
from .classes import INSTANCE_IDS, INSTANCE_STRIDE
from .geometry import Array, Normal, SceneObject

Region = tuple[slice, slice, Array]  # rows, columns and the mask of the pixels inside them

# feature sizes (pixels) of the two smooth noise fields: stains and wear, and clouds
BLOTCH_CELL = 5
LARGE_CELL = 28
NOISE_EPS = 1e-6
# the sun's direction before normalising: always above the horizon, from any side
SUN_X_RANGE = (-1, 1)
SUN_Y_RANGE = (0.3, 1.2)
SUN_Z_RANGE = (-0.7, 0.8)
AMBIENT_RANGE = (0.45, 0.72)
DIFFUSE_RANGE = (0.3, 0.65)
# default strength of the per-pixel texture and of the blotches in painted colours
PAINT_TEXTURE = 0.05
PAINT_BLOTCH = 0.06


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> Array:
    """(h, w) float32 noise with unit standard deviation and features about ``cell`` pixels."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))
    return (big - big.mean()) / (big.std() + NOISE_EPS)


@dataclass(frozen=True)
class Lighting:
    """A sun (unit vector toward it) with ambient and diffuse strengths."""

    sun: Array
    ambient: float
    diffuse: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Lighting:
        """Lighting of one image."""
        sun = np.array(
            [rng.uniform(*SUN_X_RANGE), rng.uniform(*SUN_Y_RANGE), rng.uniform(*SUN_Z_RANGE)]
        )
        ambient = rng.uniform(*AMBIENT_RANGE)
        return cls(sun / np.linalg.norm(sun), ambient, rng.uniform(*DIFFUSE_RANGE))

    def light(self, normal: Normal | None) -> float:
        """Brightness factor of a surface with this normal; 1 for unlit parts (None)."""
        if normal is None:
            return 1.0
        return self.ambient + self.diffuse * max(0.0, float(np.dot(normal, self.sun)))


class Canvas:
    """An (H, W, 3) float RGB image and an (H, W) labelId*1000+instance map, drawn through
    ``camera`` under one lighting, with per-image texture noise."""

    def __init__(self, rng: np.random.Generator, camera: Camera, height: int, width: int) -> None:
        self.camera = camera
        self.H, self.W = height, width
        self.img = np.zeros((height, width, 3), np.float32)
        self.ids = np.zeros((height, width), np.int32)
        self.fine = rng.standard_normal((height, width), dtype=np.float32)
        self.blotch = smooth_noise(rng, height, width, BLOTCH_CELL)
        self.large = smooth_noise(rng, height, width, LARGE_CELL)
        self.lighting = Lighting.random(rng)
        self.instances: dict[int, int] = {}

    def light(self, normal: Normal | None) -> float:
        """See :meth:`Lighting.light`."""
        return self.lighting.light(normal)

    def region(self, pts2: Array, width_px: float = 0.0, closed: bool = False) -> Region | None:
        """The pixels a 2-D polygon (or polyline, if ``width_px``) covers, None if none."""
        pad = width_px / 2 + 1
        x0 = max(int(np.floor(pts2[:, 0].min() - pad)), 0)
        x1 = min(int(np.ceil(pts2[:, 0].max() + pad)) + 1, self.W)
        y0 = max(int(np.floor(pts2[:, 1].min() - pad)), 0)
        y1 = min(int(np.ceil(pts2[:, 1].max() + pad)) + 1, self.H)
        if x0 >= x1 or y0 >= y1:
            return None
        im = Image.new("L", (x1 - x0, y1 - y0), 0)
        # PIL puts integer coordinates on pixel centres; ours are at .5
        local = [(float(x) - x0 - PIXEL_CENTRE, float(y) - y0 - PIXEL_CENTRE) for x, y in pts2]
        draw = ImageDraw.Draw(im)
        if width_px > 0:
            if closed:
                local.append(local[0])
            draw.line(local, fill=1, width=max(1, round(width_px)), joint="curve")
        else:
            draw.polygon(local, fill=1)
        mask = np.asarray(im, dtype=bool)
        if not mask.any():
            return None
        return slice(y0, y1), slice(x0, x1), mask

    def project_region(
        self, pts: Array, width_px: float = 0.0, closed: bool = False
    ) -> Region | None:
        """:meth:`region` of (n, 3) points in metres, seen through the camera."""
        return self.region(self.camera.project(pts), width_px=width_px, closed=closed)

    def paint(
        self,
        reg: Region,
        rgb: Array | float,
        value: int | None,
        texture: float = PAINT_TEXTURE,
        blotch: float = PAINT_BLOTCH,
        multiply: bool = False,
    ) -> None:
        """Colour the region (with this image's texture noise) and set its label value.

        ``rgb`` is (3,) or one colour per masked pixel, (n, 3); ``multiply`` scales what is
        there instead. ``value`` None leaves the labels as they are.
        """
        rows, cols, mask = reg
        view = self.img[rows, cols]
        if multiply:
            view[mask] *= rgb
        else:
            mod = (
                1.0 + blotch * self.blotch[rows, cols][mask] + texture * self.fine[rows, cols][mask]
            )
            color = np.asarray(rgb, np.float32)
            view[mask] = (color[None, :] if color.ndim == 1 else color) * mod[:, None]
        if value is not None:
            self.ids[rows, cols][mask] = value

    def new_value(self, label: int) -> int:
        """The instanceIds value of a new object: labelId*1000+k for instance classes."""
        if label not in INSTANCE_IDS:
            return label
        k = self.instances.get(label, 0)
        self.instances[label] = k + 1
        return label * INSTANCE_STRIDE + k

    def pixel_grid(self, reg: Region) -> tuple[Array, Array]:
        """Pixel-centre x and y coordinates of the masked pixels of a region."""
        rows, cols, mask = reg
        yy, xx = np.nonzero(mask)
        return xx + cols.start + PIXEL_CENTRE, yy + rows.start + PIXEL_CENTRE

    def draw_object(self, obj: SceneObject) -> None:
        """Paint every part of ``obj``, lit, with one new label value for all of them."""
        value = self.new_value(obj.label)
        for part in obj.parts:
            pts2 = self.camera.project(part.pts)
            width_px = (
                part.width * self.camera.f / float(part.pts[:, 2].mean()) if part.width else 0
            )
            reg = self.region(
                pts2, width_px=max(width_px, 1.0) if part.width else 0, closed=part.closed
            )
            if reg is None:
                continue
            if part.multiply:
                self.paint(reg, part.rgb, None, multiply=True)
            else:
                self.paint(
                    reg,
                    part.rgb * self.light(part.normal),
                    value if part.labelled else None,
                    part.texture,
                )

"""The pinhole camera the street is seen through, and the photometric effects of its sensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from .geometry import Array

# focal length over image width: horizontal fields of view of about 70 to 85 degrees (dash cams)
FOCAL_RANGE = (0.55, 0.72)
# vanishing point column over width: the camera looks a little left or right along the street
VANISHING_X_RANGE = (0.42, 0.58)
# horizon row over height: above the middle, a camera pitched slightly down
HORIZON_Y_RANGE = (0.36, 0.46)
# metres above the road: a camera behind the windscreen of a car
CAMERA_HEIGHT_RANGE = (1.3, 1.7)
# pixel (i, j) covers [i, i + 1) x [j, j + 1); coordinates of its centre end in .5
PIXEL_CENTRE = 0.5
# a ray of a column this close (pixels) to the vanishing point meets a side plane at infinity
MIN_COLUMN_OFFSET = 1e-3
SIDE_DEPTH_RANGE = (0.5, 1e4)

# photometric effects, each drawn per image
GAIN_TILT_X = 0.35  # brightness slope across the frame, left to right
GAIN_TILT_Y = 0.25  # and top to bottom
MAX_VIGNETTING = 0.5
BLUR_RADIUS_RANGE = (0.3, 0.9)  # pixels: a slightly soft lens
WHITE_BALANCE_RANGE = (0.92, 1.08)
CONTRAST_RANGE = (0.8, 1.2)
BRIGHTNESS_RANGE = (-0.1, 0.08)
GAMMA_RANGE = (0.8, 1.25)
SENSOR_NOISE_RANGE = (2, 7)  # standard deviation in 0..255 units


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at X = 0, Z = 0, ``height`` metres above the ground, looking along +Z.

    ``f`` is the focal length in pixels, ``xv`` the column of the vanishing point and ``yh``
    the row of the horizon.
    """

    f: float
    xv: float
    yh: float
    height: float

    @classmethod
    def random(cls, rng: np.random.Generator, height: int, width: int) -> Camera:
        """A camera for an image of ``height`` x ``width`` pixels."""
        f = width * rng.uniform(*FOCAL_RANGE)
        xv = width * rng.uniform(*VANISHING_X_RANGE)
        yh = height * rng.uniform(*HORIZON_Y_RANGE)
        return cls(f, xv, yh, rng.uniform(*CAMERA_HEIGHT_RANGE))

    def project(self, pts: Array) -> Array:
        """(n, 3) metres -> (n, 2) pixel coordinates (x right, y down; pixel centres at .5)."""
        z = pts[:, 2]
        return np.column_stack(
            [self.xv + self.f * pts[:, 0] / z, self.yh + self.f * (self.height - pts[:, 1]) / z]
        )

    def metres_x(self, xp: Array | float, z: Array | float) -> Array | float:
        """X (metres) of what is seen at pixel column ``xp`` at depth ``z``."""
        return (xp - self.xv) * z / self.f

    def metres_y(self, yp: Array, z: Array | float) -> Array:
        """Y (metres above the ground) of what is seen at pixel row ``yp`` at depth ``z``."""
        return self.height - (yp - self.yh) * z / self.f

    def side_plane_depth(self, xp: Array, plane_x: float) -> Array:
        """Depth at which the rays of pixel columns ``xp`` meet the plane X = ``plane_x``."""
        dx = xp - self.xv
        safe = np.where(np.abs(dx) < MIN_COLUMN_OFFSET, MIN_COLUMN_OFFSET, dx)
        return np.clip(self.f * plane_x / safe, *SIDE_DEPTH_RANGE)


def photometric(rng: np.random.Generator, image: Array) -> Array:
    """Camera effects on an (H, W, 3) float image: light falloff, blur, colour cast, contrast,
    gamma and sensor noise. Returns (H, W, 3) uint8."""
    h, w = image.shape[:2]
    gy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    gx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    gain = (
        1
        + rng.uniform(-GAIN_TILT_X, GAIN_TILT_X) * gx
        + rng.uniform(-GAIN_TILT_Y, GAIN_TILT_Y) * gy
    )
    gain -= rng.uniform(0, MAX_VIGNETTING) * (gx**2 + gy**2)  # vignetting
    img = np.clip(image * gain[..., None], 0, 255).astype(np.uint8)
    blur = ImageFilter.GaussianBlur(rng.uniform(*BLUR_RADIUS_RANGE))
    img = np.asarray(Image.fromarray(img).filter(blur), np.float32) / 255.0
    img = img * rng.uniform(*WHITE_BALANCE_RANGE, size=3).astype(np.float32)
    contrast, bright = rng.uniform(*CONTRAST_RANGE), rng.uniform(*BRIGHTNESS_RANGE)
    img = np.clip((img - 0.5) * contrast + 0.5 + bright, 0, 1) ** rng.uniform(*GAMMA_RANGE)
    img = img * 255 + rng.normal(0, rng.uniform(*SENSOR_NOISE_RANGE), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)  # rounded to the nearest level

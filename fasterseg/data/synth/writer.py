"""Writing the scenes as files in the Cityscapes folder layout, with a class-share summary."""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from ...errors import DataError
from ...io import atomic_write
from ..labels import IGNORE_INDEX, get_label_table
from .classes import FEATURED_GROUPS, label_ids
from .geometry import Array
from .scene import render_scene

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CITIES = {"train": ("synthA", "synthB"), "val": ("synthC", "synthD"), "test": ("synthE", "synthF")}
FRAME = 19  # Cityscapes fine annotations are all frame 000019 of their sequence
# smallest height and width accepted
MIN_SIZE = 32
# each split starts the cycle of featured groups this many groups further on, so that small
# splits together cover all groups
SPLIT_GROUP_SHIFT = 2
FRACTION_DIGITS = 6


@functools.lru_cache(maxsize=1)
def _id_colors() -> Array:
    """(256, 4) uint8 RGBA colours by labelId, from the Cityscapes label definitions."""
    from cityscapesscripts.helpers.labels import labels

    colors = np.zeros((256, 4), np.uint8)
    colors[:, 3] = 255
    for lab in labels:
        if lab.id >= 0:
            colors[lab.id, :3] = lab.color
    return colors


def _write_png(path: Path, array: Array) -> None:
    image = Image.fromarray(array)

    def write(f: IO[bytes]) -> None:
        image.save(f, format="PNG")

    atomic_write(path, write)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"synthetic data: {name}={value!r}; expected an integer >= {minimum}")
    return int(value)


def generate_dataset(
    out: str | os.PathLike, *, train: int, val: int, size: tuple[int, int], seed: int, test: int = 0
) -> dict:
    """Write synthetic street scenes in the Cityscapes layout under ``out`` and summarise them.

    Files per image (``{city}_{seq:06d}_000019`` prefix, cities ``synthA``.. per split)::

        leftImg8bit/{split}/{city}/*_leftImg8bit.png      (H, W, 3) uint8 RGB
        gtFine/{split}/{city}/*_gtFine_labelIds.png       (H, W) uint8 Cityscapes labelIds
        gtFine/{split}/{city}/*_gtFine_instanceIds.png    (H, W) uint16 labelId*1000+k for
                                                          person..bicycle, labelId elsewhere
        gtFine/{split}/{city}/*_gtFine_color.png          (H, W, 4) uint8 label colours

    Test images get all-zero (unlabeled) labels, as the Cityscapes test split does. ``size`` is
    (H, W). The same ``seed`` writes byte-identical files; images of one split do not depend on
    the sizes of the others. Existing files of the same names are overwritten.

    Returns ``{"root", "images", "splits": {split: count}, "size": [H, W], "seed", "seconds",
    "class_pixel_fraction": {class name: share of all train+val pixels}}``.
    """
    counts = {
        "train": _check_int("train", train, 0),
        "val": _check_int("val", val, 0),
        "test": _check_int("test", test, 0),
    }
    if sum(counts.values()) < 1:
        raise DataError("synthetic data: train+val+test is 0; expected at least one image")
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise DataError(f"synthetic data: size={size!r}; expected (height, width)")
    height = _check_int("size height", size[0], MIN_SIZE)
    width = _check_int("size width", size[1], MIN_SIZE)
    seed = _check_int("seed", seed, 0)

    start = time.perf_counter()
    root = Path(out)
    table = get_label_table("cityscapes")
    colors = _id_colors()
    histogram = np.zeros(256, np.int64)
    for split_index, split in enumerate(SPLITS):
        n = counts[split]
        cities = CITIES[split]
        first: dict[int, int] = {}  # first image index of each city
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, i)))
            shift = seed + i + SPLIT_GROUP_SHIFT * split_index
            group = FEATURED_GROUPS[shift % len(FEATURED_GROUPS)]
            image, ids = render_scene(rng, (height, width), group)
            if split == "test":
                ids = np.zeros_like(ids)
            labels = label_ids(ids)
            if split != "test":
                histogram += np.bincount(labels.ravel(), minlength=256)
            c = i * len(cities) // n
            seq = i - first.setdefault(c, i)
            stem = f"{cities[c]}_{seq:06d}_{FRAME:06d}"
            img_dir = root / "leftImg8bit" / split / cities[c]
            gt_dir = root / "gtFine" / split / cities[c]
            _write_png(img_dir / f"{stem}_leftImg8bit.png", image)
            _write_png(gt_dir / f"{stem}_gtFine_labelIds.png", labels)
            _write_png(gt_dir / f"{stem}_gtFine_instanceIds.png", ids.astype(np.uint16))
            _write_png(gt_dir / f"{stem}_gtFine_color.png", colors[labels])

    lut = table.lut()
    per_train = np.zeros(table.num_classes, np.int64)
    valid = (lut >= 0) & (lut != IGNORE_INDEX)
    np.add.at(per_train, lut[valid], histogram[valid])
    total = max(int(histogram.sum()), 1)
    seconds = time.perf_counter() - start
    summary = {
        "root": str(root),
        "images": sum(counts.values()),
        "splits": dict(counts),
        "size": [height, width],
        "seed": seed,
        "seconds": round(seconds, 3),
        "class_pixel_fraction": {
            name: round(float(per_train[k]) / total, FRACTION_DIGITS)
            for k, name in enumerate(table.class_names)
        },
    }
    logger.debug(
        "wrote %d synthetic images (%dx%d) to %s in %.1f s",
        summary["images"],
        height,
        width,
        root,
        seconds,
    )
    return summary

"""Segmentation datasets on disk: the Cityscapes layout (also used by the synthetic scenes) and
CamVid's SegNet-style layout. Every problem with the files raises DataError naming the file."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors

from ..errors import DataError
from .labels import IGNORE_INDEX, LabelTable, get_label_table

log = logging.getLogger(__name__)

CITYSCAPES_LAYOUT = (
    "ROOT/leftImg8bit/SPLIT/CITY/*_leftImg8bit.png with "
    "ROOT/gtFine/SPLIT/CITY/*_gtFine_labelIds.png"
)
CAMVID_LAYOUT = "ROOT/SPLIT/*.png with ROOT/SPLITannot/*.png (SegNet layout: train, val, test)"


@dataclass(frozen=True)
class Sample:
    """One image and its label file (None on splits without labels)."""

    image: Path
    label: Path | None
    name: str


# Single-channel modes whose pixel values are label ids (16/32-bit ones are range-checked).
_LABEL_MODES = ("L", "P", "I", "I;16")


def read_image(path: Path) -> np.ndarray:
    """Read an RGB image as a writable (H, W, 3) uint8 array; a corrupt file raises DataError."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def read_label(path: Path) -> np.ndarray:
    """Read a single-channel label PNG as a (H, W) uint8 array; errors name the file."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im) if mode in _LABEL_MODES else None
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read label image ({exc})") from None
    if arr is None:
        raise DataError(
            f"{path}: label image must be single-channel (mode L or P) holding label ids, "
            f"got mode {mode}"
        )
    if arr.max(initial=0) > 255 or arr.min(initial=0) < 0:
        bad = np.unique(arr[(arr > 255) | (arr < 0)])[:10].tolist()
        raise DataError(f"{path}: label values {bad} are outside the label table")
    return arr.astype(np.uint8)


class SegmentationFolder(torch.utils.data.Dataset):
    """Pairs of image/label files mapped to train ids.

    ``__getitem__`` returns ``(image, mask)`` after ``transforms``: without transforms, a
    ``tv_tensors.Image`` (3, H, W) uint8 and a ``tv_tensors.Mask`` (H, W) int64 with train ids
    and ``IGNORE_INDEX``; on an unlabeled split the mask is all ``IGNORE_INDEX``.
    """

    def __init__(
        self,
        samples: list[Sample],
        table: LabelTable,
        transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    ) -> None:
        self.samples = samples
        self.table = table
        self.transforms = transforms
        self._lut = table.lut()

    @property
    def num_classes(self) -> int:
        """Number of evaluated classes."""
        return self.table.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names by train id."""
        return self.table.class_names

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (H, W, 3) uint8 and train-id mask (H, W) int64 of sample ``index``."""
        s = self.samples[index]
        image = read_image(s.image)
        if s.label is None:
            return image, np.full(image.shape[:2], IGNORE_INDEX, dtype=np.int64)
        raw = read_label(s.label)
        if raw.shape != image.shape[:2]:
            raise DataError(
                f"{s.image} is {image.shape[0]}x{image.shape[1]} but its label {s.label} is "
                f"{raw.shape[0]}x{raw.shape[1]}"
            )
        mask = self._lut[raw]
        if (mask < 0).any():
            bad = np.unique(raw[mask < 0])[:10].tolist()
            raise DataError(
                f"{s.label}: label values {bad} are not in the {self.table.name} label table "
                f"(valid ids: {_ranges(self.table.valid_ids())})"
            )
        return image, mask.astype(np.int64)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, mask = self.load(index)
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        msk = tv_tensors.Mask(torch.from_numpy(mask))
        if self.transforms is not None:
            return self.transforms(img, msk)
        return img, msk


def _ranges(ids: list[int]) -> str:
    out, start = [], ids[0]
    for a, b in zip(ids, [*ids[1:], None]):
        if b != a + 1:
            out.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)


def _require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise DataError(f"{path}: {what} not found; expected layout {layout}")


def _check_pairs(
    images: dict[str, Path],
    labels: dict[str, Path],
    label_for: Callable[[Path, str], Path],
    image_for: Callable[[Path, str], Path],
) -> None:
    """Raise DataError naming the first image without a label (or label without an image)."""
    for found, other, expected_for, problem in (
        (images, labels, label_for, "no label file"),
        (labels, images, image_for, "label without an image"),
    ):
        missing = sorted(found.keys() - other.keys())
        if missing:
            stem = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(
                f"{found[stem]}: {problem}; expected {expected_for(found[stem], stem)}{more}"
            )


def cityscapes_samples(root: str | os.PathLike, split: str) -> list[Sample]:
    """List the image/label pairs of a Cityscapes-layout folder (labels optional on ``test``)."""
    root = Path(root)
    _require_dir(root, "dataset root", CITYSCAPES_LAYOUT)
    img_dir = root / "leftImg8bit" / split
    gt_dir = root / "gtFine" / split
    _require_dir(img_dir, f"split {split!r}", CITYSCAPES_LAYOUT)
    images = {p.name[: -len("_leftImg8bit.png")]: p for p in img_dir.glob("*/*_leftImg8bit.png")}
    labels = (
        {p.name[: -len("_gtFine_labelIds.png")]: p for p in gt_dir.glob("*/*_gtFine_labelIds.png")}
        if gt_dir.is_dir()
        else {}
    )
    if not images:
        raise DataError(
            f"{img_dir}: no *_leftImg8bit.png images; expected layout {CITYSCAPES_LAYOUT}"
        )
    labeled = split != "test" or bool(labels)
    if labeled:
        if not gt_dir.is_dir():
            raise DataError(
                f"{gt_dir}: label folder not found; expected layout {CITYSCAPES_LAYOUT}"
            )
        _check_pairs(
            images,
            labels,
            lambda p, stem: gt_dir / p.parent.name / f"{stem}_gtFine_labelIds.png",
            lambda p, stem: img_dir / p.parent.name / f"{stem}_leftImg8bit.png",
        )
    return [Sample(images[k], labels[k] if labeled else None, k) for k in sorted(images)]


def camvid_samples(root: str | os.PathLike, split: str) -> list[Sample]:
    """List the image/label pairs of a SegNet-layout CamVid folder."""
    root = Path(root)
    _require_dir(root, "dataset root", CAMVID_LAYOUT)
    img_dir, gt_dir = root / split, root / f"{split}annot"
    _require_dir(img_dir, f"split {split!r}", CAMVID_LAYOUT)
    _require_dir(gt_dir, f"label folder of split {split!r}", CAMVID_LAYOUT)
    images = {p.stem: p for p in img_dir.glob("*.png")}
    labels = {p.stem: p for p in gt_dir.glob("*.png")}
    if not images:
        raise DataError(f"{img_dir}: no .png images; expected layout {CAMVID_LAYOUT}")
    _check_pairs(
        images,
        labels,
        lambda p, stem: gt_dir / f"{stem}.png",
        lambda p, stem: img_dir / f"{stem}.png",
    )
    return [Sample(images[k], labels[k], k) for k in sorted(images)]


DATASETS = {
    "cityscapes": (cityscapes_samples, "cityscapes"),
    "camvid": (camvid_samples, "camvid"),
}


def build_dataset(
    name: str,
    root: str | os.PathLike,
    split: str,
    transforms: Callable[[Any, Any], tuple[Any, Any]] | None = None,
    *,
    skip_corrupt: bool = False,
) -> SegmentationFolder:
    """The dataset ``name`` (``cityscapes`` or ``camvid``) at ``root``/``split``.

    With ``skip_corrupt`` every sample is read once up front and those whose image or label
    cannot be read are left out, with a warning that counts them and names the first; without
    it a corrupt file raises DataError naming it when it is loaded.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    list_samples, table = DATASETS[name]
    dataset = SegmentationFolder(list_samples(root, split), get_label_table(table), transforms)
    if skip_corrupt:
        good, bad = [], []
        for i, sample in enumerate(dataset.samples):
            try:
                dataset.load(i)
                good.append(sample)
            except DataError as exc:
                bad.append(str(exc))
        if bad:
            log.warning(
                "skipped %d of %d samples of %s/%s that cannot be used; first: %s",
                len(bad), len(dataset.samples), root, split, bad[0],
            )  # fmt: skip
        if not good:
            raise DataError(f"{root}: every sample of split {split!r} is unusable; first: {bad[0]}")
        dataset.samples = good
    return dataset

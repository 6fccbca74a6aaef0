"""Segmentation metrics: a streaming confusion matrix, mIoU / pixel accuracy / per-class IoU, and
scoring a folder of prediction PNGs against Cityscapes ground truth (``fasterseg score``).

IoU follows cityscapesscripts: for class ``c``, ``tp`` is the diagonal entry, ``fn`` every other
prediction on ground-truth pixels of ``c`` (including predictions of no evaluated class), ``fp``
the predictions of ``c`` on ground-truth pixels of other evaluated classes. A class with
``tp + fp + fn == 0`` has no IoU (``None``) and is left out of the mean.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .data.labels import IGNORE_INDEX, get_label_table
from .errors import DataError
from .progress import progress_bar

log = logging.getLogger(__name__)

GT_SUFFIX = "_gtFine_labelIds.png"


class ConfusionMatrix:
    """A confusion matrix accumulated over batches, kept on the device of the tensors.

    ``matrix`` is a ``(C, C + 1)`` int64 tensor: row = target class, column = predicted class;
    the last column ("other") counts predictions outside ``0..C-1``, which are always wrong.
    Target pixels equal to ``ignore_index`` or outside ``0..C-1`` are skipped.

    Args:
        num_classes: number of evaluated classes ``C``.
        ignore_index: target value to skip.
        device: where the matrix lives; ``None`` follows the device of the tensors passed to
            :meth:`update`.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._fixed_device = device is not None
        self.matrix = torch.zeros(
            num_classes,
            num_classes + 1,
            dtype=torch.int64,
            device=device if device is not None else "cpu",
        )
        self.images = 0

    def reset(self) -> None:
        """Zero the counts and the image count."""
        self.matrix.zero_()
        self.images = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch.

        Args:
            pred: ``[N, H, W]`` or ``[H, W]`` integer tensor of predicted class ids.
            target: integer tensor of the same shape holding target class ids.
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}"
            )
        if pred.dim() not in (2, 3):
            raise ValueError(f"expected [N, H, W] or [H, W] tensors, got shape {tuple(pred.shape)}")
        if pred.dtype.is_floating_point or target.dtype.is_floating_point:
            raise ValueError(
                f"expected integer class ids, got dtypes {pred.dtype} and {target.dtype}"
            )
        n_images = pred.shape[0] if pred.dim() == 3 else 1
        if not self._fixed_device:
            self.matrix = self.matrix.to(target.device)
        device = self.matrix.device
        c = self.num_classes
        target = target.to(device=device, dtype=torch.int64).flatten()
        pred = pred.to(device=device, dtype=torch.int64).flatten()
        keep = (target >= 0) & (target < c) & (target != self.ignore_index)
        target, pred = target[keep], pred[keep]
        pred = torch.where((pred >= 0) & (pred < c), pred, c)
        counts = torch.bincount(target * (c + 1) + pred, minlength=c * (c + 1))
        self.matrix += counts.view(c, c + 1)
        self.images += n_images

    def compute(self) -> dict:
        """IoU per class, their mean and pixel accuracy.

        Returns:
            ``{"iou": [float | None] * C, "miou": float, "pixel_accuracy": float}``. A class
            with ``tp + fp + fn == 0`` gets ``None`` and is left out of ``miou``; ``miou`` is
            NaN when every class is ``None``, ``pixel_accuracy`` NaN when no pixel was labelled.
        """
        m = self.matrix.cpu()
        diag = m.diagonal()
        # Exact integer counts, then the same float64 division cityscapesscripts performs.
        tp = diag.tolist()
        fn = (m.sum(dim=1) - diag).tolist()
        fp = (m[:, : self.num_classes].sum(dim=0) - diag).tolist()
        iou: list[float | None] = []
        for t, p, n in zip(tp, fp, fn):
            denom = t + p + n
            iou.append(t / denom if denom > 0 else None)
        present = [v for v in iou if v is not None]
        miou = sum(present) / len(present) if present else math.nan
        labelled = int(m.sum())
        pixel_accuracy = sum(tp) / labelled if labelled > 0 else math.nan
        return {"iou": iou, "miou": miou, "pixel_accuracy": pixel_accuracy}


def scores_dict(conf: ConfusionMatrix, class_names: Sequence[str]) -> dict:
    """The scores of ``conf`` as plain JSON-ready values.

    Returns:
        ``{"miou": float, "pixel_accuracy": float, "per_class_iou": {name: float | None},
        "images": int}``.
    """
    if len(class_names) != conf.num_classes:
        raise ValueError(
            f"got {len(class_names)} class names for a {conf.num_classes}-class confusion matrix"
        )
    result = conf.compute()
    return {
        "miou": float(result["miou"]),
        "pixel_accuracy": float(result["pixel_accuracy"]),
        "per_class_iou": dict(zip(class_names, result["iou"])),
        "images": conf.images,
    }


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_label_png(path: Path, role: str) -> np.ndarray:
    """A single-channel label PNG as an ``[H, W]`` int64 array."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            arr = np.asarray(img)
    # PIL reports damaged files as OSError (truncated, unidentified), SyntaxError (broken
    # chunks) or ValueError (bad header fields).
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read {role} {path}: {_one_line(exc)}") from exc
    if arr.ndim != 2:
        raise DataError(
            f"{role} {path} has {arr.shape[-1]} channels (mode {mode}); "
            "expected a single-channel PNG of Cityscapes labelIds"
        )
    return arr.astype(np.int64)


def _to_train_ids(label_ids: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map ``[H, W]`` labelIds to trainIds; values outside the 256-entry table map to -1."""
    inside = (label_ids >= 0) & (label_ids < len(lut))
    return np.where(inside, lut[np.clip(label_ids, 0, len(lut) - 1)], -1)


COLOR_SUFFIX = "_color.png"


def _match_predictions(pred_dir: Path, gt_files: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Pair each ground-truth file with the one prediction whose name starts with its
    ``{city}_{seq}_{frame}`` key (the cityscapesscripts pattern ``{key}*.png``).

    Colour visualisations (``*_color.png``, which ``evaluate`` writes into ``color/`` beside
    ``labelIds/``) are not predictions and are skipped.
    """
    keys = {gt.name[: -len(GT_SUFFIX)]: gt for gt in gt_files}
    lengths = sorted({len(k) for k in keys})
    found: dict[str, list[Path]] = {k: [] for k in keys}
    for pred in sorted(pred_dir.rglob("*.png")):
        if pred.name.endswith(COLOR_SUFFIX):
            continue
        for n in lengths:
            if pred.name[:n] in found:
                found[pred.name[:n]].append(pred)
    missing = [k for k in keys if not found[k]]
    if missing:
        key = missing[0]
        extra = (
            f" ({len(missing)} of {len(keys)} ground-truth images have none)"
            if len(missing) > 1
            else ""
        )
        raise DataError(
            f"no prediction for ground truth {keys[key]}: expected a PNG named {key}*.png "
            f"under {pred_dir}{extra}"
        )
    for key, preds in found.items():
        if len(preds) > 1:
            more = f" (and {len(preds) - 2} more)" if len(preds) > 2 else ""
            raise DataError(
                f"two predictions match ground truth {keys[key]}: {preds[0]} and {preds[1]}"
                f"{more}; keep one PNG named {key}*.png"
            )
    return [(found[k][0], gt) for k, gt in keys.items()]


def score_folder(
    pred_dir: str | os.PathLike, gt_root: str | os.PathLike, split: str = "val"
) -> dict:
    """Score prediction PNGs in Cityscapes labelId space against ``gt_root/gtFine/split``.

    Each ``gt_root/gtFine/{split}/{city}/{key}_gtFine_labelIds.png`` is matched with the one PNG
    under ``pred_dir`` (searched recursively) whose name starts with ``{key}``
    (``{city}_{seq}_{frame}``), as cityscapesscripts does. Both are single-channel ``[H, W]``
    labelId images (road = 7); they are mapped to the 19 trainIds. Ground-truth pixels of ignored
    labels are skipped; predicted labels that are ignored or not Cityscapes labels count as wrong.
    Per-class IoU and their mean agree with cityscapesscripts' ``evaluateImgLists``.

    Returns:
        ``{"miou": float, "pixel_accuracy": float, "per_class_iou": {class: float | None},
        "images": int}``.

    Raises:
        DataError: a missing folder, no ground truth, a ground-truth image without prediction or
            with two, a size mismatch, an unreadable PNG or an unknown ground-truth labelId.
    """
    pred_dir = Path(pred_dir)
    gt_root = Path(gt_root)
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} does not exist or is not a folder")
    gt_dir = gt_root / "gtFine" / split
    layout = f"{gt_root}/gtFine/{split}/CITY/*{GT_SUFFIX}"
    if not gt_dir.is_dir():
        raise DataError(f"ground-truth folder {gt_dir} not found; expected the layout {layout}")
    gt_files = sorted(gt_dir.glob(f"*/*{GT_SUFFIX}"))
    if not gt_files:
        raise DataError(f"no ground-truth files in {gt_dir}; expected the layout {layout}")
    pairs = _match_predictions(pred_dir, gt_files)
    log.debug("scoring %d predictions from %s against %s", len(pairs), pred_dir, gt_dir)

    table = get_label_table("cityscapes")
    lut = table.lut().astype(np.int64)
    valid = table.valid_ids()
    conf = ConfusionMatrix(table.num_classes, ignore_index=IGNORE_INDEX, device="cpu")
    for pred_path, gt_path in progress_bar(pairs, desc="score", unit="img"):
        gt = _read_label_png(gt_path, "ground truth")
        pred = _read_label_png(pred_path, "prediction")
        if pred.shape != gt.shape:
            raise DataError(
                f"prediction {pred_path} is {pred.shape[0]}x{pred.shape[1]} (HxW) but its ground "
                f"truth {gt_path} is {gt.shape[0]}x{gt.shape[1]}"
            )
        gt_train = _to_train_ids(gt, lut)
        if (gt_train < 0).any():
            bad = int(gt[gt_train < 0].flat[0])
            raise DataError(
                f"ground truth {gt_path} holds labelId {bad}, which is not a Cityscapes labelId "
                f"(expected {min(valid)}..{max(valid)})"
            )
        # Ignored (255) and invalid (-1) predictions fall outside 0..C-1: the "other" column.
        pred_train = _to_train_ids(pred, lut)
        conf.update(torch.from_numpy(pred_train), torch.from_numpy(gt_train))
    return scores_dict(conf, table.class_names)

"""Evaluation: whole-image or sliding-window inference at any size (padded to a multiple of 32
inside, cropped back), optional multi-scale and flip, mIoU/pixel accuracy/per-class IoU,
prediction PNGs; under torchrun the images are shared out and the confusion matrices summed.
:func:`evaluate_checkpoint` evaluates a ``train``/``distill`` checkpoint on a dataset folder
(``fasterseg evaluate``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from .. import distributed as dist
from ..arch import OUTPUT_STRIDE, padded_side
from ..config import config_from_dict
from ..data.datasets import SegmentationFolder, build_dataset
from ..data.transforms import eval_transforms
from ..errors import DataError
from ..io import atomic_write
from ..metrics import ConfusionMatrix, scores_dict
from ..progress import progress_bar
from .checkpoint import load_checkpoint, load_trained_model
from .common import resolve_device

#: Sub-folders of ``save_predictions``: the labelId PNGs (the Cityscapes submission format)
#: and the colour PNGs apart, because cityscapesscripts searches its prediction folder
#: recursively and stops at a second PNG that matches a ground-truth image.
LABEL_IDS_DIR = "labelIds"
COLOR_DIR = "color"


def _forward_padded(model: nn.Module, image: Tensor) -> Tensor:
    """Logits (N, C, H, W) for an image of any size: pad right/bottom to a side the networks
    take (a multiple of 32, at least 64)."""
    h, w = image.shape[-2:]
    ph, pw = padded_side(h) - h, padded_side(w) - w
    x = F.pad(image, (0, pw, 0, ph)) if ph or pw else image
    out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out[..., :h, :w]


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets that cover ``size`` (the last window ends flush with the border)."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride))
    return [*starts, size - window]


def _forward_windows(
    model: nn.Module, image: Tensor, window: tuple[int, int], overlap: float
) -> Tensor:
    """Logits (N, C, H, W) averaged over overlapping ``window``-sized tiles of the image.

    Consecutive tiles overlap by ``overlap`` of their size; an image smaller than the window
    is padded (right/bottom) to it and the padding cropped from the result.
    """
    h, w = image.shape[-2:]
    wh, ww = window
    ph, pw = max(0, wh - h), max(0, ww - w)
    x = F.pad(image, (0, pw, 0, ph)) if ph or pw else image
    big_h, big_w = x.shape[-2:]
    rows = _starts(big_h, wh, max(1, int(wh * (1 - overlap))))
    cols = _starts(big_w, ww, max(1, int(ww * (1 - overlap))))
    total: Tensor | None = None
    count = torch.zeros((1, 1, big_h, big_w), device=image.device)
    for y in rows:
        for x0 in cols:
            logits = _forward_padded(model, x[..., y : y + wh, x0 : x0 + ww]).float()
            if total is None:
                total = torch.zeros(
                    (x.shape[0], logits.shape[1], big_h, big_w), device=image.device
                )
            total[..., y : y + wh, x0 : x0 + ww] += logits
            count[..., y : y + wh, x0 : x0 + ww] += 1
    assert total is not None
    return (total / count)[..., :h, :w]


def check_window(window: Sequence[int] | None, overlap: float) -> tuple[int, int] | None:
    """Validate a sliding window (two positive multiples of 32: a tile is never padded, except
    up to the 64 the down-up operators need) and its overlap in [0, 1)."""
    if window is None:
        return None
    win = tuple(int(v) for v in window)
    if len(win) != 2 or any(v <= 0 or v % OUTPUT_STRIDE for v in win):
        raise ValueError(f"window {list(window)}: give height and width, positive multiples of 32")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"window overlap {overlap} must be in [0, 1)")
    return win  # type: ignore[return-value]


@torch.inference_mode()
def predict(
    model: nn.Module,
    image: Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: Sequence[int] | None = None,
    overlap: float = 1 / 3,
) -> Tensor:
    """Class probabilities (N, C, H, W) averaged over ``scales`` and, with ``flip``, mirrors.

    ``image`` is a normalised float batch (N, 3, H, W) on the model's device. Each view is
    inferred whole, or with ``window`` (height, width) in overlapping tiles (see
    :func:`_forward_windows`).
    """
    win = check_window(window, overlap)
    h, w = image.shape[-2:]
    total: Tensor | None = None
    for s in scales:
        x = image
        if s != 1.0:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = F.interpolate(image, size=size, mode="bilinear", align_corners=True)
        views = [x, x.flip(-1)] if flip else [x]
        for k, v in enumerate(views):
            logits = (
                _forward_padded(model, v)
                if win is None
                else _forward_windows(model, v, win, overlap)
            )
            if k == 1:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=True)
            prob = logits.float().softmax(dim=1)
            total = prob if total is None else total + prob
    assert total is not None
    return total / (len(scales) * (2 if flip else 1))


def _save_png(path: Path, array: np.ndarray) -> None:
    def write(f: Any) -> None:
        Image.fromarray(array).save(f, format="PNG")

    atomic_write(path, write)


def evaluate(
    model: nn.Module,
    dataset: SegmentationFolder,
    *,
    device: torch.device | str = "cpu",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    save_predictions: str | os.PathLike | None = None,
    progress: bool | None = None,
    limit: int | None = None,
    window: Sequence[int] | None = None,
    overlap: float = 1 / 3,
    synced: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on every image of ``dataset`` (one at a time).

    ``dataset`` must yield normalised images and full-size masks (``eval_transforms``).
    Returns ``{"miou", "pixel_accuracy", "per_class_iou", "images"}`` (the keys of
    ``fasterseg score``); on a split without labels only predictions are written and the
    scores are None. With ``save_predictions``, writes per image
    ``save_predictions/labelIds/NAME_labelIds.png`` (the Cityscapes submission format: label
    ids; point cityscapesscripts at this folder) and ``save_predictions/color/NAME_color.png``
    (:data:`LABEL_IDS_DIR`, :data:`COLOR_DIR`). ``window``/``overlap``
    select sliding-window inference (:func:`predict`). ``synced`` (under torchrun): each
    process evaluates every world-size-th image and all get the scores of the whole set.
    """
    check_window(window, overlap)
    device = torch.device(device)
    model.eval()
    conf = ConfusionMatrix(dataset.num_classes, device=device)
    table = dataset.table
    to_id = np.asarray([*table.train_to_id], dtype=np.uint8)
    palette = table.palette()
    out_dir = Path(save_predictions) if save_predictions is not None else None
    labelled = False
    n = len(dataset) if limit is None else min(limit, len(dataset))
    indices = dist.shard(n) if synced else range(n)
    dtype = next(model.parameters()).dtype  # a float64 run evaluates in float64
    for i in progress_bar(indices, desc="evaluate", unit="img", enabled=progress):
        image, mask = dataset[i]
        prob = predict(
            model, image.unsqueeze(0).to(device, dtype=dtype), scales=scales, flip=flip,
            window=window, overlap=overlap,
        )  # fmt: skip
        pred = prob.argmax(dim=1)[0]
        mask = mask.to(device)
        if (mask != 255).any():
            labelled = True
            conf.update(pred, mask)
        if out_dir is not None:
            name = dataset.samples[i].name
            p = pred.cpu().numpy().astype(np.int64)
            _save_png(out_dir / LABEL_IDS_DIR / f"{name}_labelIds.png", to_id[p])
            _save_png(out_dir / COLOR_DIR / f"{name}_color.png", palette[p])
    if synced and dist.is_distributed():
        conf.matrix = dist.all_reduce_sum(conf.matrix)
        labelled = bool(dist.all_reduce_sum(torch.tensor(int(labelled), device=device)))
    if not labelled:
        return {
            "miou": None,
            "pixel_accuracy": None,
            "per_class_iou": {c: None for c in dataset.class_names},
            "images": n,
        }
    result = scores_dict(conf, dataset.class_names)
    result["images"] = n
    return result


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike,
    *,
    split: str = "val",
    device: torch.device | str = "auto",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    save_predictions: str | os.PathLike | None = None,
    window: Sequence[int] | None = None,
    overlap: float = 1 / 3,
    skip_corrupt: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate a ``train``/``distill`` checkpoint on ``data_root``/``split`` with
    :func:`evaluate`.

    The dataset kind (``cityscapes``, ``camvid``) and evaluation downsampling come from the
    configuration saved in the checkpoint. ``device`` is ``auto`` (CUDA when available), a name
    or a torch.device; ``skip_corrupt`` leaves out unreadable images (see ``build_dataset``).
    Returns what :func:`evaluate` returns.

    Raises:
        CheckpointError: a missing, corrupt or non-training checkpoint.
        ConfigError: a bad device or saved configuration.
        DataError: a bad dataset folder, or one whose class count differs from the model's.
    """
    dev = resolve_device(str(device))
    state = load_checkpoint(checkpoint)
    cfg = config_from_dict(state.get("config", {}), source=f"{checkpoint} [config]")
    model = load_trained_model(checkpoint, device=dev)
    dataset = build_dataset(
        cfg.data.dataset, data_root, split, eval_transforms(cfg.data.downsample),
        skip_corrupt=skip_corrupt,
    )  # fmt: skip
    if dataset.num_classes != model.num_classes:
        raise DataError(
            f"{checkpoint} predicts {model.num_classes} classes but {data_root} "
            f"({cfg.data.dataset}) has {dataset.num_classes}"
        )
    return evaluate(
        model, dataset, device=dev, scales=scales, flip=flip, save_predictions=save_predictions,
        progress=progress, window=window, overlap=overlap,
    )  # fmt: skip

"""Evaluation: whole-image inference at any size (padded to a multiple of 32 inside, cropped
back), optional multi-scale and flip, mIoU/pixel accuracy/per-class IoU, prediction PNGs."""

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
from tqdm import tqdm

from ..data.datasets import SegmentationFolder
from ..io import atomic_write
from ..metrics import ConfusionMatrix, scores_dict

STRIDE = 32


def _forward_padded(model: nn.Module, image: Tensor) -> Tensor:
    """Logits (N, C, H, W) for an image of any size: pad right/bottom to a multiple of 32."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    x = F.pad(image, (0, pw, 0, ph)) if ph or pw else image
    out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out[..., :h, :w]


@torch.inference_mode()
def predict(
    model: nn.Module,
    image: Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> Tensor:
    """Class probabilities (N, C, H, W) averaged over ``scales`` and, with ``flip``, mirrors.

    ``image`` is a normalised float batch (N, 3, H, W) on the model's device.
    """
    h, w = image.shape[-2:]
    total: Tensor | None = None
    for s in scales:
        x = image
        if s != 1.0:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = F.interpolate(image, size=size, mode="bilinear", align_corners=True)
        views = [x, x.flip(-1)] if flip else [x]
        for k, v in enumerate(views):
            logits = _forward_padded(model, v)
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
) -> dict[str, Any]:
    """Evaluate ``model`` on every image of ``dataset`` (one at a time, whole image).

    ``dataset`` must yield normalised images and full-size masks (``eval_transforms``).
    Returns ``{"miou", "pixel_accuracy", "per_class_iou", "images"}`` (the keys of
    ``fasterseg score``); on a split without labels only predictions are written and the
    scores are None. With ``save_predictions``, writes ``NAME_labelIds.png`` (the Cityscapes
    submission format: label ids) and ``NAME_color.png`` per image.
    """
    device = torch.device(device)
    model.eval()
    conf = ConfusionMatrix(dataset.num_classes, device=device)
    table = dataset.table
    to_id = np.asarray([*table.train_to_id], dtype=np.uint8)
    palette = table.palette()
    out_dir = Path(save_predictions) if save_predictions is not None else None
    labelled = False
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(
        range(n),
        desc="evaluate",
        unit="img",
        disable=None if progress is None else not progress,
        leave=False,
    ):
        image, mask = dataset[i]
        prob = predict(model, image.unsqueeze(0).to(device), scales=scales, flip=flip)
        pred = prob.argmax(dim=1)[0]
        mask = mask.to(device)
        if (mask != 255).any():
            labelled = True
            conf.update(pred, mask)
        if out_dir is not None:
            name = dataset.samples[i].name
            p = pred.cpu().numpy().astype(np.int64)
            _save_png(out_dir / f"{name}_labelIds.png", to_id[p])
            _save_png(out_dir / f"{name}_color.png", palette[p])
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

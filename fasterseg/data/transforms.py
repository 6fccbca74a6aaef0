"""Augmentation with torchvision.transforms.v2: images and ``tv_tensors.Mask`` labels together.

The order follows the method (section 4): flip, random scale, normalise, crop with padding
(image 0 after normalisation, label 255), then optional label down-sampling for /8 supervision.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .labels import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomScale(v2.Transform):
    """Resize image and mask by a factor drawn uniformly from ``scales`` (bilinear / nearest)."""

    def __init__(self, scales: Sequence[float]) -> None:
        super().__init__()
        self.scales = tuple(scales)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        s = self.scales[int(torch.randint(len(self.scales), ()).item())]
        return {"size": [max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.resize(inpt, params["size"], antialias=True)


class Downsample(v2.Transform):
    """Shrink image (bilinear) and mask (nearest) by an integer ``factor``."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        return {"size": [h // self.factor, w // self.factor]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.resize(inpt, params["size"], antialias=True)


class MaskStride(v2.Transform):
    """Down-sample only the mask by ``stride`` (nearest), for supervision at /stride."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Mask):
            return inpt
        h, w = inpt.shape[-2:]
        return TF.resize(inpt, [h // self.stride, w // self.stride])


class ToLongMask(v2.Transform):
    """Masks become int64 (H, W), as cross-entropy expects."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return tv_tensors.wrap(inpt.to(torch.int64), like=inpt)
        return inpt


def _normalise() -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transforms(
    crop: tuple[int, int],
    scales: Sequence[float] = (0.75, 1.0, 1.25),
    flip: bool = True,
    downsample: int = 1,
    label_stride: int = 1,
) -> v2.Compose:
    """Training augmentation: (image uint8 (3,H,W), Mask (H,W)) -> (float (3,h,w), int64 Mask).

    ``crop`` is (height, width); images smaller than the crop are padded (label 255).
    """
    steps: list[v2.Transform] = []
    if downsample > 1:
        steps.append(Downsample(downsample))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if tuple(scales) != (1.0,):
        steps.append(RandomScale(scales))
    steps += _normalise()
    steps.append(
        v2.RandomCrop(
            crop,
            pad_if_needed=True,
            fill={tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX},
        )
    )
    if label_stride > 1:
        steps.append(MaskStride(label_stride))
    steps.append(ToLongMask())
    return v2.Compose(steps)


def eval_transforms(downsample: int = 1) -> v2.Compose:
    """Evaluation: optional down-sampling and normalisation only; labels stay full size."""
    steps: list[v2.Transform] = []
    if downsample > 1:
        steps.append(Downsample(downsample))
    return v2.Compose([*steps, *_normalise(), ToLongMask()])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive Python's and NumPy's seeds from torch's worker seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


_RNGStates = tuple[Any, Any, torch.Tensor]


def _get_rng_states() -> _RNGStates:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_rng_states(states: _RNGStates) -> None:
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


class _PrivateRNGIterator:
    """Runs every ``next`` of a loader iterator on its own Python/NumPy/torch RNG states.

    The global states seen by the caller (model init, dropout, ...) are restored after each
    batch, so augmentations neither consume nor depend on them.
    """

    def __init__(self, it: Iterator[Any], seed: int) -> None:
        self._it = it
        # Built from fresh generators so that no global (or CUDA) RNG is touched.
        py_seed = seed % 2**32
        self._states: _RNGStates = (
            random.Random(py_seed).getstate(),
            np.random.RandomState(py_seed).get_state(),
            torch.Generator().manual_seed(seed).get_state(),
        )

    def __iter__(self) -> _PrivateRNGIterator:
        return self

    def __len__(self) -> int:
        return len(self._it)

    def __next__(self) -> Any:
        outer = _get_rng_states()
        _set_rng_states(self._states)
        try:
            return next(self._it)
        finally:
            self._states = _get_rng_states()
            _set_rng_states(outer)


class SeededDataLoader(torch.utils.data.DataLoader):
    """A DataLoader whose order and augmentations depend only on its ``generator``'s seed.

    With worker processes, PyTorch already seeds each worker from the generator. Loading in the
    main process (``num_workers=0``) would draw augmentations from the global RNGs instead, so
    the result would depend on everything else that used them; here each epoch gets private RNG
    states seeded from the generator. Successive epochs differ; equal seeds give equal epochs.
    """

    def __iter__(self) -> Iterator[Any]:
        it = super().__iter__()
        if self.num_workers > 0:
            return it
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item())
        return _PrivateRNGIterator(it, seed)


def build_loader(
    dataset: torch.utils.data.Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A seeded DataLoader: the same seed gives the same order and augmentations.

    That holds for any ``workers`` count (but ``workers=0`` and ``workers>0`` draw different
    augmentations) and whatever the global RNG states are; each new epoch reshuffles.
    """
    gen = torch.Generator()
    gen.manual_seed(seed)
    return SeededDataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        drop_last=drop_last,
        generator=gen,
        worker_init_fn=seed_worker,
        persistent_workers=False,
    )

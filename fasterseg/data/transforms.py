"""Augmentation with torchvision.transforms.v2: images and ``tv_tensors.Mask`` labels together.

The order follows the method (section 4): flip, random scale, normalise, crop with padding
(image 0 after normalisation, label 255), then optional label down-sampling for /8 supervision.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..errors import ConfigError
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


def _seed_rngs(seed: int) -> None:
    # Only the CPU generator: torch.manual_seed would also reseed the caller's CUDA RNGs.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.random.default_generator.manual_seed(seed)


class _SeededItems(torch.utils.data.Dataset):
    """``dataset`` indexed by ``(index, seed)``: each item's augmentation is drawn from RNGs
    seeded with its own seed, so it does not depend on which process or worker loads it."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        _seed_rngs(seed)
        return self.dataset[index]


class GlobalBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, seed)`` pairs: this process's share of each global batch.

    Every pass draws a permutation (when shuffling) and one seed per item from ``generator``;
    global batch b is ``perm[b*B:(b+1)*B]``, and process r of W takes its contiguous
    ``B/W`` slice. W processes therefore see, together and in rank order, exactly the batches
    and augmentations that one process sees.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        generator: torch.Generator,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if batch_size % world_size:
            raise ValueError(
                f"a global batch of {batch_size} cannot be split evenly over {world_size} processes"
            )
        if not drop_last and world_size > 1 and n % batch_size:
            raise ValueError("several processes need drop_last=True (equal shares per batch)")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.generator, self.rank, self.world_size = generator, rank, world_size

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        gen = self.generator
        order = torch.randperm(self.n, generator=gen) if self.shuffle else torch.arange(self.n)
        seeds = torch.randint(0, 2**62, (self.n,), generator=gen)
        share = self.batch_size // self.world_size
        for b in range(len(self)):
            lo = b * self.batch_size + self.rank * share
            hi = min(lo + share, (b + 1) * self.batch_size, self.n)
            yield [(int(order[k]), int(seeds[k])) for k in range(lo, hi)]


class EndlessBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Pass after pass of :class:`GlobalBatchSampler` batches without end, pass ``p`` seeded
    with ``seed_of_pass(p)``: the batches of a fresh loader per pass, from one loader whose
    workers live as long as its iterator. A pass that yields nothing raises ConfigError."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed_of_pass: Callable[[int], int],
        drop_last: bool,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n, self.batch_size, self.seed_of_pass, self.drop_last = (
            n, batch_size, seed_of_pass, drop_last,
        )  # fmt: skip
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        p = 0
        while True:
            one_pass = GlobalBatchSampler(
                self.n, self.batch_size, shuffle=True, drop_last=self.drop_last,
                generator=torch.Generator().manual_seed(self.seed_of_pass(p)),
                rank=self.rank, world_size=self.world_size,
            )  # fmt: skip
            if len(one_pass) == 0:
                raise ConfigError(
                    "the training loader produced no batch (batch larger than dataset?)"
                )
            yield from one_pass
            p += 1


class _RestoreRNGIterator:
    """Runs every ``next`` of a loader iterator between a save and a restore of the global
    Python/NumPy/torch RNG states, so in-process loading leaves the caller's RNGs alone."""

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it

    def __iter__(self) -> _RestoreRNGIterator:
        return self

    def __len__(self) -> int:
        return len(self._it)  # type: ignore[arg-type]

    def __next__(self) -> Any:
        outer = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            return next(self._it)
        finally:
            random.setstate(outer[0])
            np.random.set_state(outer[1])
            torch.set_rng_state(outer[2])


class SeededDataLoader(torch.utils.data.DataLoader):
    """A DataLoader whose order and augmentations depend only on its sampler's seed.

    Items are seeded one by one (see :class:`GlobalBatchSampler`), so the batches are the
    same for any ``num_workers`` and any number of processes; loading in the main process
    leaves the global RNG states as they were.
    """

    def __iter__(self) -> Iterator[Any]:
        it = super().__iter__()
        return it if self.num_workers > 0 else _RestoreRNGIterator(it)


def build_loader(
    dataset: torch.utils.data.Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> torch.utils.data.DataLoader:
    """A seeded DataLoader of this process's share of each global batch of ``batch_size``.

    The same seed gives the same order and augmentations whatever ``workers`` is, whatever
    the global RNG states are, and however many processes share the batch; each new pass
    over the loader reshuffles.
    """
    gen = torch.Generator()
    gen.manual_seed(seed)
    sampler = GlobalBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=gen,
        rank=rank,
        world_size=world_size,
    )
    return _seeded_loader(dataset, sampler, workers, seed)


def _seeded_loader(
    dataset: torch.utils.data.Dataset, sampler: torch.utils.data.Sampler, workers: int, seed: int
) -> SeededDataLoader:
    return SeededDataLoader(
        _SeededItems(dataset),
        batch_sampler=sampler,
        num_workers=workers,
        worker_init_fn=seed_worker,
        # Only for the workers' base seeds (items are seeded by the sampler); without it the
        # loader would draw them from the global RNG.
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


def endless_loader(
    dataset: torch.utils.data.Dataset,
    *,
    batch_size: int,
    seed_of_pass: Callable[[int], int],
    workers: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[Any]:
    """Endless shuffled batches of ``dataset``: pass ``p`` holds exactly the batches that
    ``build_loader(..., shuffle=True, seed=seed_of_pass(p))`` would, but the worker
    processes start once, not once per pass (a small split is passed over every few steps)."""
    sampler = EndlessBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        batch_size,
        seed_of_pass=seed_of_pass,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
    )
    return iter(_seeded_loader(dataset, sampler, workers, seed_of_pass(0)))

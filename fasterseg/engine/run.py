"""The skeleton every training-like run shares: search, train/distill (and studies built on them).

A run is: an output folder holding the resolved ``config.yaml``; datasets read from
``cfg.data`` with one class-count check; a :class:`Runtime` (device, process group,
precision, memory layout, loss scaling) that prepares models and batches; a checkpoint to
resume from; a TensorBoard writer closed whatever happens; and epochs whose randomness derives
from (seed, epoch) alone, so a resumed run continues as an uninterrupted one would. Each loop
(:mod:`.search`, :mod:`.train`) keeps only its own steps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from .. import distributed as dist
from ..config import Config, DataConfig, RuntimeConfig, save_config
from ..data.datasets import SegmentationFolder, build_dataset
from ..data.transforms import eval_transforms, train_transforms
from ..errors import ConfigError, DivergedError
from .checkpoint import load_checkpoint
from .common import kaiming_init, seed_everything, summary_writer

log = logging.getLogger(__name__)

M = TypeVar("M", bound=nn.Module)

#: Per-epoch seeds are ``seed + EPOCH_SEED_STRIDE * (epoch + 1)``: a prime stride keeps the
#: seeds of different (seed, epoch) pairs of nearby runs apart.
EPOCH_SEED_STRIDE = 7919

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of 0-based ``epoch`` of a run seeded with ``seed``."""
    return seed + EPOCH_SEED_STRIDE * (epoch + 1)


def resolve_dtype(key: str, name: str) -> torch.dtype:
    """The torch dtype of a config's ``dtype`` value; ConfigError naming ``key`` otherwise."""
    if name not in DTYPES:
        raise ConfigError(f"{key} must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


@dataclass(frozen=True)
class Runtime:
    """How this process runs a loop: device, collectives, precision and memory layout.

    ``dtype`` float64 exists for checks that must not depend on float32 rounding (e.g. that N
    processes compute what one does); ``amp`` applies on CUDA with float32 only.
    """

    device: torch.device
    world: int
    sync_bn: bool
    amp: bool
    channels_last: bool
    dtype: torch.dtype = torch.float32

    @classmethod
    def create(cls, device: torch.device, settings: RuntimeConfig) -> Runtime:
        """This process's runtime on ``device`` from a config's ``runtime`` section (the
        world size is read from the process group)."""
        dtype = resolve_dtype("runtime.dtype", settings.dtype)
        use_amp = settings.amp and device.type == "cuda" and dtype == torch.float32
        return cls(
            device, dist.world_size(), settings.sync_bn, use_amp, settings.channels_last, dtype
        )

    @property
    def main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return dist.is_main()

    @property
    def synced(self) -> bool:
        """Whether batch statistics, OHEM and gradients are taken over several processes."""
        return self.world > 1

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` with global batch norm under torchrun, on the device, dtype and layout."""
        if self.synced and self.sync_bn:
            dist.convert_sync_batchnorm(model)
        model.to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def batch(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """A training batch on the device, the image in the run's dtype and memory layout."""
        image = image.to(self.device, dtype=self.dtype, non_blocking=True)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, mask.to(self.device, non_blocking=True)

    def autocast(self) -> torch.autocast:
        """Mixed-precision autocast when ``amp`` is on (CUDA), else a no-op context."""
        return torch.autocast(device_type=self.device.type, enabled=self.amp)

    def scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, active with ``amp``."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp)


def loss_precision(t: Tensor) -> Tensor:
    """``t`` in at least float32: losses of half-precision (autocast) outputs are taken in
    float32, those of a float64 run stay in float64."""
    return t if t.dtype == torch.float64 else t.float()


def start_run(cfg: Any, out: Path) -> None:
    """Create ``out`` and write the resolved ``config.yaml`` (rank 0 only)."""
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")


def train_dataset(d: DataConfig, crop: Sequence[int]) -> SegmentationFolder:
    """``d``'s training split with training augmentation at ``crop``; empty is an error."""
    tf = train_transforms(tuple(crop), d.scales, d.flip, d.downsample, d.label_stride)
    ds = build_dataset(d.dataset, d.root, d.train_split, tf, skip_corrupt=d.skip_corrupt)
    if len(ds) == 0:
        raise ConfigError(f"{d.root}: the {d.train_split!r} split is empty")
    return ds


def val_dataset(cfg: Config) -> SegmentationFolder:
    """``cfg.data``'s validation split (whole images), checked against ``space.num_classes``."""
    return whole_images(cfg, cfg.data.val_split)


def whole_images(cfg: Config, split: str) -> SegmentationFolder:
    """``split`` of ``cfg.data`` as evaluation sees it (whole images, no augmentation),
    checked against ``space.num_classes``."""
    d = cfg.data
    ds = build_dataset(
        d.dataset, d.root, split, eval_transforms(d.downsample), skip_corrupt=d.skip_corrupt
    )
    if cfg.space.num_classes != ds.num_classes:
        raise ConfigError(
            f"space.num_classes is {cfg.space.num_classes} but dataset {d.dataset!r} has "
            f"{ds.num_classes} classes"
        )
    return ds


def init_model(model_fn: Callable[[], M], seed: int, runtime: Runtime) -> M:
    """``model_fn()`` built under ``seed``, Kaiming-initialised and prepared by ``runtime``."""
    seed_everything(seed)
    model = model_fn()
    kaiming_init(model)
    runtime.prepare(model)
    return model


def resume_state(path: Path, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at ``path`` to resume from, or None when there is none."""
    if not path.exists():
        return None
    return load_checkpoint(path, map_location=device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (schedules are functions of the epoch, so a
    resumed run needs no scheduler state)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def epochs(start: int, total: int, seed: int) -> Iterator[int]:
    """Epochs ``start .. total-1``, each entered with the RNGs seeded by (seed, epoch)."""
    for epoch in range(start, total):
        seed_everything(epoch_seed(seed, epoch))
        yield epoch


@contextmanager
def run_writer(out: Path) -> Iterator[Any]:
    """A TensorBoard writer under ``out/tb`` on rank 0 (None elsewhere), closed on exit."""
    writer = summary_writer(out / "tb") if dist.is_main() else None
    try:
        yield writer
    finally:
        if writer is not None:
            writer.close()


def checked_loss(loss: Tensor, what: str, where: str, hint: str = "") -> float:
    """The global mean of ``loss``; every process raises DivergedError together when it is
    not finite (``what`` names the loss, ``where`` the step, ``hint`` what is kept)."""
    value = float(dist.global_mean(loss))
    if not math.isfinite(value):
        raise DivergedError(f"{what} is {value} at {where}{hint}")
    return value

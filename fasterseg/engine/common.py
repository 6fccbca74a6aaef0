"""Small helpers of the training and search loops: seeding, devices, init, batches, checks."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..arch import side_problem
from ..distributed import world_size
from ..errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available")
    return dev


def kaiming_init(model: nn.Module) -> None:
    """Kaiming-normal (fan_in, relu) conv weights; batch norm weight 1, bias 0 (section 6)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def summary_writer(path: Path) -> Any:
    """A TensorBoard SummaryWriter writing to ``path`` (imported lazily: it is slow)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(path))


def check_global_batch(key: str, size: int) -> None:
    """Raise ConfigError unless the global batch ``key`` splits evenly over the processes."""
    world = world_size()
    if size % world:
        raise ConfigError(
            f"{key} {size} is the global batch and must split evenly over the {world} processes"
        )


def check_crop(key: str, crop: Iterable[int]) -> None:
    """Raise ConfigError unless every side of the crop ``key`` can enter the networks
    (:func:`~fasterseg.arch.side_problem`)."""
    crop = list(crop)
    for value in crop:
        problem = side_problem(value)
        if problem:
            raise ConfigError(f"{key} {crop}: each side {problem}")

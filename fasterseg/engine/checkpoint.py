"""Checkpoints: atomic writes, ``weights_only`` loads, plain contents.

A checkpoint is a dict of tensors and plain Python values (configs and genotypes as dicts), so
``torch.load(path, weights_only=True)`` reads it and nothing in it can execute code.
:func:`load_trained_model` turns a training checkpoint back into its network.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..genotype import Genotype
from ..io import atomic_write
from ..models import Network
from ..nn.ops import OPS

FORMAT = "fasterseg-checkpoint"
VERSION = 1


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is missing, corrupt, unsafe or of the wrong kind."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format and version) atomically; a crash keeps the previous file."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()))


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if unsafe:
            raise CheckpointError(
                f"{path}: refused to load - the file would import {unsafe.group(1)}, which a "
                "weights-only checkpoint never does (nothing was executed)"
            ) from None
        raise CheckpointError(
            f"{path}: corrupt or unreadable checkpoint (not a file written by torch.save "
            "with tensors and plain values; nothing was executed)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fasterseg checkpoint (no format {FORMAT!r})")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')!r} is not supported "
            f"(expected {VERSION})"
        )
    return state


def load_trained_model(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> Network:
    """A Network in eval mode with the weights of a ``train``/``distill`` checkpoint."""
    state = load_checkpoint(path, map_location=device)
    for key in ("genotype", "num_classes", "model"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} (not a training checkpoint)")
    geno = Genotype.from_dict(state["genotype"], source=f"{path} [genotype]", op_names=OPS.keys())
    model = Network(geno, state["num_classes"], aux=False)
    weights = {k: v for k, v in state["model"].items() if not k.startswith(("aux16.", "aux32."))}
    model.load_state_dict(weights)
    return model.to(device).eval()

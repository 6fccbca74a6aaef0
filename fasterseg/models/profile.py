"""Size and compute of a derived network: parameters and thop's multiply-accumulate count."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..genotype import Genotype
from .network import Network


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters (sum of numel) of every built submodule."""
    return sum(p.numel() for p in module.parameters())


def profile_genotype(
    genotype: Genotype, *, height: int, width: int, num_classes: int = 19
) -> dict[str, Any]:
    """Parameters and MACs of ``genotype``'s network at batch 1 and (height, width).

    Returns ``{"name", "height", "width", "num_classes", "params", "params_with_aux", "macs"}``:
    ``params`` counts the deployable network, ``params_with_aux`` includes the training-only
    auxiliary heads, ``macs`` is thop's count of an eval forward (batch norm counted by thop).
    """
    import thop

    deploy = Network(genotype, num_classes).eval()
    train_build = Network(genotype, num_classes, aux=True)
    x = torch.zeros(1, 3, height, width)
    with torch.inference_mode():
        # thop adds buffers and hooks to the model it profiles; profile a throwaway copy.
        macs, _ = thop.profile(copy.deepcopy(deploy), inputs=(x,), verbose=False)
    return {
        "name": genotype.name,
        "height": height,
        "width": width,
        "num_classes": num_classes,
        "params": count_params(deploy),
        "params_with_aux": count_params(train_build),
        "macs": int(macs),
    }

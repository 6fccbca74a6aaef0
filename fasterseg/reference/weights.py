"""Released FasterSeg weights (``weights0.pt`` teacher, ``weights1.pt`` student: the
``state_dict()`` of the reference's ``Network_Multi_Path_Infer``) -> a checkpoint of this
project's :class:`~fasterseg.models.Network`.

The reference's keys and ours, module by module (``b`` = branch index, in the order of the
genotype's branches = the reference's ``lasts``; ``l`` = layer; a ConvNorm is
``conv.0`` (conv) / ``conv.1`` (batch norm) there and ``conv`` / ``bn`` here):

============================================  =============================================
reference                                     this project
============================================  =============================================
``stem.0`` (ConvNorm)                         ``stem.conv``
``stem.{1,2}.{conv1,bn1,conv2,bn2}``          ``stem.down{1,2}.{conv1,conv2}.{conv,bn}``
``cells.{l}-{b}._op._op.<op>``                ``layers.<node>.<op>`` (node of branch b, layer l)
``arms32.{0,1}`` / ``refines32.{0,1}``        ``aggregate.<b of /32>.{0,1}.reduce`` / ``.fuse``
``arms16`` / ``refines16``                    ``aggregate.<b of /16>.0.reduce`` / ``.fuse``
``ffm.conv_1x1.{conv,bn}``                    ``ffm.{conv,bn}``
``heads8.conv_3x3.{conv,bn}``, ``.conv_1x1``  ``head.conv.{conv,bn}``, ``head.classifier``
============================================  =============================================

Inside a cell: ``conv1``/``bn1`` of ``conv`` and ``conv_downup`` are our ``conv.conv``/``conv.bn``;
``conv1``/``bn1``/``conv2``/``bn2`` of the 2x ops our ``conv1.*``/``conv2.*``; a stride-2
``skip`` (FactorizedReduce) has ``conv1``/``conv2``/``bn`` for our ``conv_a``/``conv_b``/``bn``.
Branches that share their first layers share the reference's Cell object, saved under both
names (``cells.0-0`` and ``cells.0-1``): the tensor is loaded once, and the second name is
reported as an alias. Dropped, each with its reason: ``heads16``/``heads32`` (training-only
auxiliary heads), ``ffm.channel_attention`` (never called), thop's ``total_ops`` /
``total_params`` counting buffers (newer thop versions leave them behind).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..config import Config, config_to_dict
from ..engine.checkpoint import save_checkpoint
from ..errors import GenotypeError
from ..genotype import Genotype
from ..models.network import Network, plan_layers
from .common import ReferenceFileError, load_torch_file

__all__ = ["convert_weights", "reference_key_map"]

#: reference submodule -> ours, inside each operator (keyed by this project's op names)
_OP_MODULES: dict[str, tuple[tuple[str, str], ...]] = {
    "conv": (("conv1", "conv.conv"), ("bn1", "conv.bn")),
    "conv_downup": (("conv1", "conv.conv"), ("bn1", "conv.bn")),
    "conv_2x": (
        ("conv1", "conv1.conv"),
        ("bn1", "conv1.bn"),
        ("conv2", "conv2.conv"),
        ("bn2", "conv2.bn"),
    ),
    "conv_2x_downup": (
        ("conv1", "conv1.conv"),
        ("bn1", "conv1.bn"),
        ("conv2", "conv2.conv"),
        ("bn2", "conv2.bn"),
    ),
    "skip": (("conv1", "conv_a"), ("conv2", "conv_b"), ("bn", "bn")),
}
_CONV_NORM = (("conv.0", "conv"), ("conv.1", "bn"))

_AUX_REASON = (
    "training-only auxiliary head: the reference builds it in train mode, its eval forward "
    "never runs it"
)
#: key prefix -> why the key is left out of the converted network
_DROPPED_PREFIXES = {
    "heads16.": _AUX_REASON,
    "heads32.": _AUX_REASON,
    "ffm.channel_attention.": (
        "never called: the reference's FeatureFusion.forward returns after conv_1x1"
    ),
}
_THOP_REASON = "a thop counting buffer (newer thop leaves it behind), not a weight"


def _module_pairs(genotype: Genotype) -> list[tuple[str, str]]:
    """(reference module, our module) for every weight-holding leaf module of the network."""
    pairs: list[tuple[str, str]] = [
        ("stem.0.conv.0", "stem.conv.conv"),
        ("stem.0.conv.1", "stem.conv.bn"),
    ]
    for k in (1, 2):
        pairs += [
            (f"stem.{k}.{ref}", f"stem.down{k}.{ours}") for ref, ours in _OP_MODULES["conv_2x"]
        ]
    plan = plan_layers(genotype)
    for b, (branch, nodes) in enumerate(zip(genotype.branches, plan.branch_nodes)):
        for layer, (op, node) in enumerate(zip(branch.ops, nodes)):
            if op not in _OP_MODULES:
                raise GenotypeError(
                    f"genotype {genotype.name!r}: operator {op!r} (branch {b}, layer {layer}) "
                    "has no counterpart in the reference's weights"
                )
            ref = f"cells.{layer}-{b}._op._op"
            pairs += [(f"{ref}.{r}", f"layers.{node}.{o}") for r, o in _OP_MODULES[op]]
    lasts = [branch.last_scale for branch in genotype.branches]
    if len(set(lasts)) != len(lasts):
        raise GenotypeError(
            f"genotype {genotype.name!r}: branches end at scales {lasts}; the reference's "
            "network has at most one branch per output scale"
        )
    blocks = {
        2: [("arms32.0", "refines32.0"), ("arms32.1", "refines32.1")],
        1: [("arms16", "refines16")],
    }
    for b, last in enumerate(lasts):
        for k, (arm, refine) in enumerate(blocks.get(last, [])):
            for ref, ours in ((arm, "reduce"), (refine, "fuse")):
                pairs += [(f"{ref}.{r}", f"aggregate.{b}.{k}.{ours}.{o}") for r, o in _CONV_NORM]
    pairs += [("ffm.conv_1x1.conv", "ffm.conv"), ("ffm.conv_1x1.bn", "ffm.bn")]
    pairs += [
        ("heads8.conv_3x3.conv", "head.conv.conv"),
        ("heads8.conv_3x3.bn", "head.conv.bn"),
        ("heads8.conv_1x1", "head.classifier"),
    ]
    return pairs


def _key_map(genotype: Genotype, network: Network) -> dict[str, str]:
    state = network.state_dict()
    leaves: dict[str, list[str]] = {}
    for key in state:
        module, _, leaf = key.rpartition(".")
        leaves.setdefault(module, []).append(leaf)
    mapping: dict[str, str] = {}
    covered: set[str] = set()
    for ref, ours in _module_pairs(genotype):
        for leaf in leaves.get(ours, []):
            mapping[f"{ref}.{leaf}"] = f"{ours}.{leaf}"
            covered.add(f"{ours}.{leaf}")
    uncovered = [key for key in state if key not in covered]
    if uncovered:
        raise GenotypeError(
            f"genotype {genotype.name!r}: network tensor {uncovered[0]!r} has no counterpart in "
            "the reference's weights"
        )
    return mapping


def reference_key_map(genotype: Genotype, num_classes: int = 19) -> dict[str, str]:
    """Every state-dict key of the reference's eval network of ``genotype`` -> the key of the
    same tensor in :class:`~fasterseg.models.Network` (``aux=False``).

    Shared layers appear under each branch's reference name, mapped to the one tensor. Raises
    GenotypeError for a genotype the reference's network cannot express (an operator without a
    reference counterpart, two branches ending at the same scale).
    """
    return _key_map(genotype, Network(genotype, num_classes))


def _drop_reason(key: str) -> str | None:
    for prefix, reason in _DROPPED_PREFIXES.items():
        if key.startswith(prefix):
            return reason
    if key.rpartition(".")[2] in ("total_ops", "total_params"):
        return _THOP_REASON
    return None


def _check_state_dict(path: Path, state: Any) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and state.get("format") == "fasterseg-checkpoint":
        raise ReferenceFileError(
            f"{path}: already a fasterseg checkpoint, not a reference weights file"
        )
    if not isinstance(state, dict):
        raise ReferenceFileError(
            f"{path}: not a weights file (holds a {type(state).__name__}, expected the "
            "state dict the reference saves)"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ReferenceFileError(
                f"{path}: not a weights file (entry {key!r} holds a {type(value).__name__}, "
                "expected a tensor)"
            )
    return state


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_weights(
    weights_path: str | os.PathLike,
    genotype: Genotype,
    out_path: str | os.PathLike,
    *,
    num_classes: int = 19,
) -> dict[str, Any]:
    """Map a reference state dict onto ``genotype``'s Network and save it as a checkpoint.

    ``weights_path`` is read with ``torch.load(weights_only=True)`` (zip or the legacy format
    of torch < 1.6; tensors land on the CPU). Every key is loaded, reported as an alias of a
    shared layer already loaded (the values must agree), or dropped with its reason (see the
    module docstring); every tensor of the network must be filled. The checkpoint at
    ``out_path`` (written atomically) is an ordinary one of this project: ``genotype``,
    ``num_classes``, the network's ``model`` state dict and a Cityscapes ``config`` at full
    resolution (the reference's), so ``load_trained_model``, ``evaluate``, ``export`` and
    ``distill --teacher`` read it.

    Returns ``{"weights", "format" ("zip" or "legacy"), "sha256", "out", "genotype",
    "num_classes", "keys", "loaded" {reference key: our key}, "aliased" {reference key: the
    reference key loaded in its place}, "dropped" {reference key: reason}, "parameters"}``.

    Raises ReferenceFileError, naming the file, for a missing, truncated, unsafe or foreign
    file, and for weights that do not fit: a key with no place in the network, a shape that
    differs (the key and both shapes; e.g. the weights of the other architecture), aliases
    with different values, or a tensor of the network left without a key. GenotypeError for a
    genotype the reference cannot express.
    """
    path = Path(weights_path)
    state = _check_state_dict(path, load_torch_file(path, "weights file"))
    network = Network(genotype, num_classes)
    key_map = _key_map(genotype, network)
    target = network.state_dict()
    where = f"the network of genotype {genotype.name!r} ({num_classes} classes)"
    problems: list[str] = []
    loaded: dict[str, str] = {}
    aliased: dict[str, str] = {}
    dropped: dict[str, str] = {}
    filled: dict[str, str] = {}
    new_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ours = key_map.get(key)
        if ours is None:
            reason = _drop_reason(key)
            if reason is None:
                problems.append(f"{key} {list(value.shape)} has no place in {where}")
            else:
                dropped[key] = reason
            continue
        if value.shape != target[ours].shape:
            problems.append(
                f"{key} has shape {list(value.shape)}, {where} needs {list(target[ours].shape)}"
            )
            continue
        if ours in filled:
            if not torch.equal(new_state[ours], value.to(new_state[ours].dtype)):
                problems.append(
                    f"{key} and {filled[ours]} are one shared layer ({ours}) but hold "
                    "different values"
                )
            else:
                aliased[key] = filled[ours]
            continue
        filled[ours] = key
        loaded[key] = ours
        new_state[ours] = value
    expected_for = {}
    for ref, ours in key_map.items():
        expected_for.setdefault(ours, ref)
    problems += [
        f"no {ref} {list(target[ours].shape)}, which {where} needs"
        for ours, ref in expected_for.items()
        if ours not in filled
    ]
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise ReferenceFileError(f"{path}: {problems[0]}{more}")
    network.load_state_dict(new_state)
    base = Config()
    config = dataclasses.replace(
        base, space=dataclasses.replace(base.space, num_classes=num_classes)
    )
    fmt = "zip" if zipfile.is_zipfile(path) else "legacy"
    sha = _sha256(path)
    out = save_checkpoint(
        out_path,
        {
            "kind": "convert",
            "genotype": genotype.to_dict(),
            "num_classes": num_classes,
            "config": config_to_dict(config),
            "model": network.state_dict(),
            "source": {"weights": str(path), "format": fmt, "sha256": sha},
        },
    )
    return {
        "weights": str(path),
        "format": fmt,
        "sha256": sha,
        "out": str(out),
        "genotype": genotype.name,
        "num_classes": num_classes,
        "keys": len(state),
        "loaded": loaded,
        "aliased": aliased,
        "dropped": dropped,
        "parameters": sum(p.numel() for p in network.parameters()),
    }

"""Derived networks: build a Network from a published name or a genotype file."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import GenotypeError
from ..genotype import Genotype
from ..nn.ops import OPS
from .network import Network

PUBLISHED = ("fasterseg-student", "fasterseg-teacher")


def list_models() -> list[str]:
    """The names :func:`create_model` and :func:`load_genotype` accept besides file paths."""
    return list(PUBLISHED)


def load_genotype(name_or_path: str | os.PathLike) -> Genotype:
    """A published architecture by name (``fasterseg-student``, ``fasterseg-teacher``) or a
    genotype JSON file by path; validated against the registered operators."""
    text = str(name_or_path)
    if text in PUBLISHED:
        ref = resources.files("fasterseg") / "genotypes" / f"{text}.json"
        with resources.as_file(ref) as path:
            return Genotype.load(path, op_names=OPS.keys())
    path = Path(text)
    if not path.exists():
        raise GenotypeError(
            f"{text}: no such genotype file, and not a published architecture "
            f"({', '.join(PUBLISHED)})"
        )
    return Genotype.load(path, op_names=OPS.keys())


def create_model(
    name_or_path: str | os.PathLike | Genotype,
    num_classes: int = 19,
    *,
    aux: bool = False,
    resize_mode: str = "bilinear",
) -> Network:
    """Build the derived :class:`Network` of a published name, a genotype file or a Genotype.

    ``aux=True`` adds the training-only auxiliary heads (/16 and /32).
    """
    geno = name_or_path if isinstance(name_or_path, Genotype) else load_genotype(name_or_path)
    return Network(geno, num_classes, aux=aux, resize_mode=resize_mode)


__all__ = ["PUBLISHED", "Network", "create_model", "list_models", "load_genotype"]

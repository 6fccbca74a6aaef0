"""fasterseg: latency-aware architecture search for real-time semantic segmentation.

A clean rebuild of FasterSeg (Chen et al., 2019): a multi-resolution supernet searched for a
teacher and a latency-constrained student, decoded into plain architecture files, retrained and
distilled. The names below are the public API; each is imported on first use, so that
``import fasterseg`` (and the CLI's ``--help``) stays fast and has no side effects.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_API = {
    "create_model": "fasterseg.models",
    "list_models": "fasterseg.models",
    "load_genotype": "fasterseg.models",
    "Network": "fasterseg.models",
    "Genotype": "fasterseg.genotype",
    "SuperNet": "fasterseg.space",
    "Role": "fasterseg.space",
    "WidthMode": "fasterseg.space",
    "Config": "fasterseg.config",
    "load_config": "fasterseg.config",
    "load_pipeline_config": "fasterseg.config",
    "search": "fasterseg.engine.search",
    "train": "fasterseg.engine.train",
    "distill": "fasterseg.engine.train",
    "load_trained_model": "fasterseg.engine.train",
    "evaluate": "fasterseg.engine.evaluate",
    "evaluate_checkpoint": "fasterseg.engine.evaluate",
    "LatencyTable": "fasterseg.latency",
    "build_table": "fasterseg.latency",
    "genotype_latency": "fasterseg.latency",
    "generate_dataset": "fasterseg.data.synth",
    "run_pipeline": "fasterseg.pipeline",
    "run_study": "fasterseg.study",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'fasterseg' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

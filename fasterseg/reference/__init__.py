"""The files FasterSeg released (VITA-Group/FasterSeg), read safely and converted: architecture
files into genotypes (:mod:`.arch`), trained weights into checkpoints (:mod:`.weights`), the
1080Ti latency lookup table into a LatencyTable (:mod:`.lut`)."""

from __future__ import annotations

from .arch import branch_pair, genotype_from_arch_file, load_arch_file
from .common import ReferenceFileError, load_torch_file
from .lut import PUBLISHED_FPS, import_reference_table, read_reference_npy
from .weights import convert_weights, reference_key_map

__all__ = [
    "PUBLISHED_FPS",
    "ReferenceFileError",
    "branch_pair",
    "convert_weights",
    "genotype_from_arch_file",
    "import_reference_table",
    "load_arch_file",
    "load_torch_file",
    "read_reference_npy",
    "reference_key_map",
]

"""Latency: kernel keys, timers, the lookup table, its builder and the estimates built on it.

The table never measures by itself; :mod:`fasterseg.latency.measure` does, when asked (by
:func:`build_table` or ``fasterseg lut build``).
"""

from .build import build_table
from .enumerate import genotype_kernels, space_kernels
from .estimate import expected_latency, genotype_latency, latency_loss, prediction_kind
from .measure import Measurement, Timing, measure_module, measure_network, time_interleaved
from .spec import OpSpec
from .table import Calibration, LatencyTable, LatencyTableError, SelfCheck, device_fingerprint

__all__ = [
    "Calibration",
    "LatencyTable",
    "LatencyTableError",
    "Measurement",
    "OpSpec",
    "SelfCheck",
    "Timing",
    "build_table",
    "device_fingerprint",
    "expected_latency",
    "genotype_kernels",
    "genotype_latency",
    "latency_loss",
    "measure_module",
    "measure_network",
    "prediction_kind",
    "space_kernels",
    "time_interleaved",
]

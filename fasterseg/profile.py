"""Size, compute and latency of a derived network: parameters, thop's multiply-accumulate count,
the latency a table predicts and the latency measured end to end."""

from __future__ import annotations

import copy
from typing import Any

import torch

from .genotype import Genotype
from .latency import (
    LatencyTable,
    LatencyTableError,
    genotype_latency,
    measure_network,
    prediction_kind,
)
from .latency.measure import ROUNDS, resolve_threads
from .models.network import Network

#: How ``profile_genotype(measure=True)`` times a network when no table says otherwise: the
#: PyTorch eager backend on the thread count this process runs with (None), the fastest call
#: of the least disturbed round, as ``fasterseg lut build`` times a kernel.
DEFAULT_MEASURE = {"backend": "torch", "threads": None, "statistic": "min"}
#: Seconds of timed calls per network, over :data:`~fasterseg.latency.measure.ROUNDS` rounds.
MEASURE_SECONDS = 2.0


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters (sum of numel) of every built submodule."""
    return sum(p.numel() for p in module.parameters())


def profile_genotype(
    genotype: Genotype,
    *,
    height: int,
    width: int,
    num_classes: int = 19,
    table: LatencyTable | None = None,
    measure: bool = False,
) -> dict[str, Any]:
    """Parameters, MACs and optionally latency of ``genotype``'s network at batch 1, (height,
    width).

    Returns ``{"name", "height", "width", "num_classes", "params", "params_with_aux", "macs"}``:
    ``params`` counts the deployable network, ``params_with_aux`` includes the training-only
    auxiliary heads, ``macs`` is thop's count of an eval forward (batch norm counted by thop).

    With ``table`` (built at the same height and width) adds ``latency_ms_predicted``: the sum
    of the network's kernels in the table, calibrated when the table carries a calibration
    (``latency_predicted_with`` says which, ``latency_ms_predicted_sum`` is the plain sum).
    With ``measure`` adds ``latency_ms_measured`` and ``latency_ms_measured_std``: the
    deployable network's forward on one (1, 3, height, width) image timed for
    :data:`MEASURE_SECONDS` in interleaved rounds (as a table's kernels are), with the table's
    backend, threads and statistic, or without a table (or with one imported from another
    device) with :data:`DEFAULT_MEASURE`; ``latency_measured_with`` records the backend,
    thread count, statistic and rounds used, and ``latency_measured_disturbed`` whether every
    round was timed while other processes were busy.

    Raises:
        LatencyTableError: ``table`` was built at another height or width.
    """
    import thop

    if table is not None:
        h, w = table.fingerprint.get("height"), table.fingerprint.get("width")
        if (h, w) != (height, width):  # its entries are kernels at that input's resolutions
            raise LatencyTableError(
                f"{table.path or 'latency table'} was built at {h}x{w}, not {height}x{width}; "
                "profile at the table's size"
            )
    deploy = Network(genotype, num_classes).eval()
    train_build = Network(genotype, num_classes, aux=True)
    x = torch.zeros(1, 3, height, width)
    with torch.inference_mode():
        # thop adds buffers and hooks to the model it profiles; profile a throwaway copy.
        macs, _ = thop.profile(copy.deepcopy(deploy), inputs=(x,), verbose=False)
    result: dict[str, Any] = {
        "name": genotype.name,
        "height": height,
        "width": width,
        "num_classes": num_classes,
        "params": count_params(deploy),
        "params_with_aux": count_params(train_build),
        "macs": int(macs),
    }
    settings = dict(DEFAULT_MEASURE)
    if table is not None:
        predicted = genotype_latency(
            genotype, table, height=height, width=width, num_classes=num_classes
        )
        result["latency_ms_predicted"] = predicted
        result["latency_ms_predicted_sum"] = genotype_latency(
            genotype, table, height=height, width=width, num_classes=num_classes,
            calibrated=False,
        )  # fmt: skip
        result["latency_predicted_with"] = prediction_kind(table)
        if not table.fingerprint.get("imported"):  # an imported table was timed elsewhere
            settings = {k: table.fingerprint.get(k, v) for k, v in DEFAULT_MEASURE.items()}
    if measure:
        settings["threads"] = resolve_threads(settings["threads"])
        settings["rounds"] = ROUNDS
        m = measure_network(deploy, height, width, min_time=MEASURE_SECONDS, **settings)
        result["latency_ms_measured"] = m.ms
        result["latency_ms_measured_std"] = m.std
        result["latency_measured_with"] = settings
        result["latency_measured_disturbed"] = m.disturbed
    return result

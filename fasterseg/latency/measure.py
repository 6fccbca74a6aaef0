"""Timing one module at batch 1: PyTorch on CPU or CUDA, or ONNX Runtime on CPU.

Every timer follows the same procedure: the module is put in eval mode and run under
``torch.inference_mode``; warm-up calls run first (at least :data:`WARMUP_CALLS` and at least a
quarter of the time budget, so that caches, allocators, oneDNN primitive caches and CPU clocks
settle); then single calls are timed one by one until ``min_time`` seconds have been spent and
at least ``min_runs`` calls were timed. The median is the latency (robust to the outliers other
processes cause); the standard deviation and the number of timed calls are kept beside it.
``statistic="min"`` keeps the fastest call instead: on a machine shared with other busy
processes it estimates the uncontended latency, which the median then no longer does.

* ``torch`` on ``cpu``: ``time.perf_counter`` around each call, with ``torch.set_num_threads``
  fixed for the measurement and restored afterwards.
* ``torch`` on ``cuda``: CUDA events around each call, synchronised after it (latency, not
  throughput, is what a batch-1 segmentation network is judged by).
* ``onnxruntime``: the module is exported to ONNX in memory and run by an ONNX Runtime session
  on the CPU execution provider with ``intra_op_num_threads`` fixed.
"""

from __future__ import annotations

import io
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
STATISTICS = ("median", "min")
#: At least two warm-up calls: the first ones create oneDNN primitives and allocator pools.
WARMUP_CALLS = 2
ONNX_OPSET = 17


@dataclass(frozen=True)
class Measurement:
    """One timing: latency ``ms`` (milliseconds; the median of the timed calls unless another
    statistic was asked for), ``std`` over the timed calls, ``n`` timed calls."""

    ms: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """``{"ms", "std", "n"}`` as stored in a latency table."""
        return {"ms": self.ms, "std": self.std, "n": self.n}


def resolve_threads(threads: int | None) -> int:
    """The intra-op thread count a measurement uses: ``threads``, or torch's current one."""
    if threads is None:
        return torch.get_num_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads <= 0:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    return threads


def check_backend(backend: str, device: torch.device | str) -> torch.device:
    """Validate a backend/device pair; return the device. Raises ConfigError naming both."""
    if backend not in BACKENDS:
        raise ConfigError(f"latency backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"invalid device {device!r} ({exc})") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"latency device must be cpu or cuda, got {device!r}")
    if backend == "onnxruntime" and dev.type != "cpu":
        raise ConfigError(
            f"the onnxruntime backend runs on the CPU execution provider only, "
            f"got device {device!r}"
        )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


def import_onnxruntime(
    needed_for: str = "the onnxruntime latency backend",
    *,
    hint: str = "",
    error: type[Exception] = ConfigError,
) -> Any:
    """Import ONNX Runtime, or raise ``error`` saying what ``needed_for`` it and how to install
    it (``hint``, when given, is added in parentheses)."""
    try:
        import onnxruntime
    except ImportError:
        extra = f" ({hint})" if hint else ""
        raise error(f"{needed_for} needs ONNX Runtime: pip install onnxruntime{extra}") from None
    return onnxruntime


def onnxruntime_session(model: bytes, threads: int) -> Any:
    """An ONNX Runtime session of ``model`` (ONNX bytes) on the CPU execution provider with
    ``threads`` intra-op threads, one inter-op thread, sequential execution, errors-only log."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def check_statistic(statistic: str) -> str:
    """Validate the name of the statistic kept as a measurement's latency."""
    if statistic not in STATISTICS:
        raise ConfigError(
            f"latency statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}"
        )
    return statistic


def _check_budget(min_time: float, min_runs: int) -> None:
    if min_time < 0 or min_runs < 1:
        raise ConfigError(f"min_time must be >= 0 and min_runs >= 1, got {min_time}, {min_runs}")


def _time_calls(
    call: Callable[[], object],
    clock: Callable[[Callable[[], object]], float],
    min_time: float,
    min_runs: int,
    statistic: str,
) -> Measurement:
    """Warm up ``call``, then time single calls with ``clock`` (returns ms) until the budget."""
    start = time.perf_counter()
    warm = 0
    while warm < WARMUP_CALLS or time.perf_counter() - start < min_time / 4:
        clock(call)  # timed and discarded: the CUDA clock also keeps the queue short
        warm += 1
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        times.append(clock(call))
    std = statistics.stdev(times) if len(times) > 1 else 0.0
    ms = min(times) if statistic == "min" else statistics.median(times)
    return Measurement(ms=float(ms), std=float(std), n=len(times))


def _cpu_clock(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1e3


def _cuda_clock(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def clock(call: Callable[[], object]) -> float:
        with torch.cuda.device(device):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

    return clock


def _as_tuple(inputs: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


def trace_to_onnx(
    module: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    *,
    opset: int = ONNX_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> bytes:
    """The ONNX model (bytes) of an eval-mode ``module`` traced on ``inputs`` (CPU tensors).

    Inputs are named ``input_names`` (default ``x0``, ``x1``, ...), outputs ``output_names``
    (default: the exporter's names); ``dynamic_axes`` maps a name to its free axes, as in
    ``torch.onnx.export`` (default: every size fixed to the traced one).
    """
    args = _as_tuple(inputs)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter needs no extra package (the dynamo one needs onnxscript);
        # its deprecation notice says nothing about this use. Its tracer warnings about sizes
        # turned into constants are expected: a latency table is per input size, and
        # fasterseg.export verifies a dynamic export on a second size, which catches any size
        # that was frozen.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            buf,
            opset_version=opset,
            dynamo=False,
            input_names=(
                list(input_names)
                if input_names is not None
                else [f"x{i}" for i in range(len(args))]
            ),
            output_names=list(output_names) if output_names is not None else None,
            dynamic_axes=dynamic_axes,
        )
    return buf.getvalue()


def measure_module(
    module: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    *,
    backend: str = "torch",
    device: torch.device | str = "cpu",
    threads: int | None = None,
    min_time: float = 0.2,
    min_runs: int = 3,
    statistic: str = "median",
) -> Measurement:
    """Latency of ``module(*inputs)`` at batch 1 (inputs shaped (1, C, H, W)).

    ``backend`` is ``torch`` (on ``device``: cpu or cuda) or ``onnxruntime`` (CPU execution
    provider). ``threads`` fixes the intra-op thread count (default: torch's current count);
    torch's own setting is restored afterwards. ``min_time`` is the timing budget in seconds
    after warm-up, ``min_runs`` the least number of timed calls; ``statistic`` (``median`` or
    ``min``) is what ``Measurement.ms`` holds. The module is moved to ``device`` (in place, like
    ``nn.Module.to``) and run in eval mode; its training flag is restored afterwards.
    """
    dev = check_backend(backend, device)
    check_statistic(statistic)
    n_threads = resolve_threads(threads)
    _check_budget(min_time, min_runs)
    was_training = module.training
    module.eval()
    try:
        if backend == "onnxruntime":
            return _measure_onnxruntime(module, inputs, n_threads, min_time, min_runs, statistic)
        return _measure_torch(module, inputs, dev, n_threads, min_time, min_runs, statistic)
    finally:
        module.train(was_training)


def _measure_torch(
    module: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    dev: torch.device,
    threads: int,
    min_time: float,
    min_runs: int,
    statistic: str,
) -> Measurement:
    module.to(dev)
    args = tuple(x.to(dev) for x in _as_tuple(inputs))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():

            def call() -> object:
                return module(*args)

            clock = _cuda_clock(dev) if dev.type == "cuda" else _cpu_clock
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            return _time_calls(call, clock, min_time, min_runs, statistic)
    finally:
        torch.set_num_threads(previous)


def _measure_onnxruntime(
    module: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    threads: int,
    min_time: float,
    min_runs: int,
    statistic: str,
) -> Measurement:
    import_onnxruntime()  # before the export: a missing package is the error to report
    module.to("cpu")
    args = tuple(x.detach().cpu() for x in _as_tuple(inputs))
    with torch.inference_mode():
        model = trace_to_onnx(module, args)
    return measure_onnx(
        model, args, threads=threads, min_time=min_time, min_runs=min_runs, statistic=statistic
    )


def measure_onnx(
    model: bytes,
    inputs: Tensor | Sequence[Tensor],
    *,
    threads: int | None = None,
    min_time: float = 0.2,
    min_runs: int = 3,
    statistic: str = "median",
) -> Measurement:
    """Latency of one call of an ONNX ``model`` (bytes) in ONNX Runtime (CPU execution
    provider) on ``inputs`` (tensors in the order of the model's inputs), with the timers,
    budget and ``statistic`` of :func:`measure_module`."""
    check_statistic(statistic)
    n_threads = resolve_threads(threads)
    _check_budget(min_time, min_runs)
    session = onnxruntime_session(model, n_threads)
    arrays = [x.detach().cpu().numpy() for x in _as_tuple(inputs)]
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays)}

    def call() -> object:
        return session.run(None, feeds)

    return _time_calls(call, _cpu_clock, min_time, min_runs, statistic)


def measure_network(
    model: nn.Module,
    height: int,
    width: int,
    *,
    backend: str = "torch",
    device: torch.device | str = "cpu",
    threads: int | None = None,
    min_time: float = 1.0,
    min_runs: int = 3,
    statistic: str = "median",
) -> Measurement:
    """End-to-end latency of a deployable network's eval forward on one (1, 3, height, width)
    image (no pre- or post-processing), with the same timers as :func:`measure_module`."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, height, width, generator=gen)
    return measure_module(
        model,
        x,
        backend=backend,
        device=device,
        threads=threads,
        min_time=min_time,
        min_runs=min_runs,
        statistic=statistic,
    )

"""Timing one module at batch 1: PyTorch on CPU or CUDA, or ONNX Runtime on CPU.

Every timer follows the same procedure: the module is put in eval mode and run under
``torch.inference_mode``; warm-up calls run first (at least :data:`WARMUP_CALLS` and at least a
quarter of the time budget, so that caches, allocators, oneDNN primitive caches and CPU clocks
settle); then single calls are timed one by one until ``min_time`` seconds have been spent and
at least ``min_runs`` calls were timed. Warm-up and timed calls run with freed memory kept in
the process (:func:`kept_memory`): otherwise every call of a network page-faults in fresh
memory for its large tensors, a cost that varied by 20 % between identical runs at 512x1024 on
a 2-core VM and that the sum of isolated kernels (whose outputs reuse the same freed block)
never pays. The median is the latency (robust to the outliers other processes cause); the
standard deviation and the number of timed calls are kept beside it.
``statistic="min"`` keeps the fastest call instead: on a machine shared with other busy
processes it estimates the uncontended latency, which the median then no longer does.

Many modules (a table's kernels, a report's networks) are timed by :func:`time_interleaved`:
in ``rounds`` passes over all of them, each pass spending ``1/rounds`` of every module's budget,
so that a load lasting seconds touches one round of each module instead of every call of a few.
A :class:`CpuMeter` reads how much CPU other processes (and the hypervisor) took during each
window of the passes; a round timed in a window where they used more than
:data:`DISTURBED_CORES` cores is disturbed, a module with no undisturbed round is timed again
(up to ``rounds`` more passes), and a module's latency is the smallest of its undisturbed
rounds' statistics: another process only ever slows a call down, so the least disturbed round
is the least biased one.

* ``torch`` on ``cpu``: ``time.perf_counter`` around each call, with ``torch.set_num_threads``
  fixed for the measurement and restored afterwards.
* ``torch`` on ``cuda``: CUDA events around each call, synchronised after it (latency, not
  throughput, is what a batch-1 segmentation network is judged by).
* ``onnxruntime``: the module is exported to ONNX in memory and run by an ONNX Runtime session
  on the CPU execution provider with ``intra_op_num_threads`` fixed.
"""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import os
import platform
import random
import statistics
import time
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
STATISTICS = ("median", "min")
#: At least two warm-up calls: the first ones create oneDNN primitives and allocator pools.
WARMUP_CALLS = 2
ONNX_OPSET = 17
#: Rounds :func:`time_interleaved` splits each module's budget into, by default.
ROUNDS = 3
#: Other processes using more than this many cores on average over a window disturb it.
DISTURBED_CORES = 0.25
#: A CPU-usage window closes once it spans this many seconds: /proc/stat counts CPU time in
#: ticks of 10 ms per core, so a shorter window cannot tell a quarter of a core from none.
METER_WINDOW_S = 0.5

K = TypeVar("K", bound=Hashable)

# mallopt(3) parameters and glibc's defaults for them, restored after a timing.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_TRIM_THRESHOLD_DEFAULT, _MMAP_MAX_DEFAULT = 128 * 1024, 65536
_KEPT_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the largest one
_kept_depth = 0


@functools.lru_cache(maxsize=1)
def _glibc() -> Any:
    """This process's C library when it is glibc (it has ``mallopt``), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def memory_mode() -> str:
    """How timings here treat freed memory: ``kept (glibc mallopt)`` where :func:`kept_memory`
    can keep it, else ``default`` (the C library's own policy); recorded in tables."""
    return "kept (glibc mallopt)" if _glibc() is not None else "default"


@contextmanager
def kept_memory() -> Iterator[bool]:
    """Keep freed memory mapped in this process while timing; yields whether it could.

    With glibc, large blocks are normally ``mmap``-ed and unmapped again on free, and the top
    of the heap is trimmed, so a network that allocates tens of MB per call page-faults all of
    it in again on every call, at a cost that depends on the kernel's and hypervisor's state
    (measured on a 2-core VM at 512x1024: the same network 208-247 ms in two runs; 193 ms with
    memory kept). Inside this context no block is ``mmap``-ed and nothing is trimmed, as in a
    serving runtime with a memory arena; glibc's defaults come back on exit (glibc then stops
    adapting its mmap threshold for the rest of the process, which only changes when memory
    goes back to the system). Elsewhere it does nothing and yields False.
    """
    global _kept_depth
    libc = _glibc()
    if libc is None:
        yield False
        return
    if _kept_depth == 0:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_TRIM_THRESHOLD)
    _kept_depth += 1
    try:
        yield True
    finally:
        _kept_depth -= 1
        if _kept_depth == 0:
            libc.mallopt(_M_MMAP_MAX, _MMAP_MAX_DEFAULT)
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_DEFAULT)


@dataclass(frozen=True)
class Measurement:
    """One timing: latency ``ms`` (milliseconds; the median of the timed calls unless another
    statistic was asked for), ``std`` over the timed calls, ``n`` timed calls. ``disturbed``
    says that every round was timed while other processes were busy (a table stores it, only
    when set, so that a later build times that kernel again)."""

    ms: float
    std: float
    n: int
    disturbed: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """``{"ms", "std", "n"}`` (and ``"disturbed": true`` when set) as stored in a latency
        table."""
        out: dict[str, Any] = {"ms": self.ms, "std": self.std, "n": self.n}
        if self.disturbed:
            out["disturbed"] = True
        return out


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
    """Warm up ``call``, then time single calls with ``clock`` (returns ms) until the budget,
    all with freed memory kept (:func:`kept_memory`)."""
    with kept_memory():
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


class CpuMeter:
    """Cores that other processes (and the hypervisor, as steal time) used since :meth:`start`.

    Reads the machine's CPU time from ``/proc/stat`` and this process's (every thread) from
    ``time.process_time``; the difference over the wall time is what others took. Where
    ``/proc/stat`` cannot be read (not Linux) ``available`` is False and :meth:`others` is 0.
    """

    def __init__(self, stat: str | os.PathLike = "/proc/stat") -> None:
        self._stat = Path(stat)
        self._tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.available = self._busy_seconds() is not None
        self.start()

    def _busy_seconds(self) -> float | None:
        try:
            first = self._stat.read_text(encoding="ascii").split("\n", 1)[0].split()
        except OSError:
            return None
        if len(first) < 9 or first[0] != "cpu":
            return None
        # user nice system idle iowait irq softirq steal: all but idle and iowait are busy
        ticks = [int(x) for x in first[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / self._tick

    def start(self) -> None:
        """Start a new window."""
        self._wall = time.perf_counter()
        self._busy = self._busy_seconds()
        self._own = time.process_time()

    def elapsed(self) -> float:
        """Seconds since :meth:`start`."""
        return time.perf_counter() - self._wall

    def resolution(self) -> float:
        """The reading's uncertainty in cores now: ``/proc/stat`` counts whole ticks on each
        core, so each end of a window may be short of one tick per core."""
        return 2 * (os.cpu_count() or 1) / self._tick / max(self.elapsed(), 1e-9)

    def others(self) -> float:
        """Average cores used by other processes since :meth:`start` (0 when unavailable)."""
        wall = self.elapsed()
        busy = self._busy_seconds()
        if busy is None or self._busy is None or wall <= 0:
            return 0.0
        own = time.process_time() - self._own
        return max(0.0, (busy - self._busy - own) / wall)


@contextmanager
def _prepared(
    module: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    backend: str,
    dev: torch.device,
    threads: int,
) -> Iterator[tuple[Callable[[], object], Callable[[Callable[[], object]], float]]]:
    """``(call, clock)`` for timing ``module(*inputs)`` on ``backend``/``dev`` in eval mode,
    with ``threads`` intra-op threads; the module's training flag and torch's thread count
    are restored on exit."""
    was_training = module.training
    module.eval()
    try:
        if backend == "onnxruntime":
            import_onnxruntime()  # before the export: a missing package is the error to report
            module.to("cpu")
            args = tuple(x.detach().cpu() for x in _as_tuple(inputs))
            with torch.inference_mode():
                model = trace_to_onnx(module, args)
            session = onnxruntime_session(model, threads)
            arrays = [x.numpy() for x in args]
            feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
            yield (lambda: session.run(None, feeds)), _cpu_clock
            return
        module.to(dev)
        targs = tuple(x.to(dev) for x in _as_tuple(inputs))
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                clock = _cuda_clock(dev) if dev.type == "cuda" else _cpu_clock
                yield (lambda: module(*targs)), clock
        finally:
            torch.set_num_threads(previous)
    finally:
        module.train(was_training)


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
    """Latency of ``module(*inputs)`` at batch 1 (inputs shaped (1, C, H, W)), in one go.

    ``backend`` is ``torch`` (on ``device``: cpu or cuda) or ``onnxruntime`` (CPU execution
    provider). ``threads`` fixes the intra-op thread count (default: torch's current count);
    torch's own setting is restored afterwards. ``min_time`` is the timing budget in seconds
    after warm-up, ``min_runs`` the least number of timed calls; ``statistic`` (``median`` or
    ``min``) is what ``Measurement.ms`` holds. The module is moved to ``device`` (in place, like
    ``nn.Module.to``) and run in eval mode; its training flag is restored afterwards.
    :func:`time_interleaved` times several modules in rounds, robustly to other processes.
    """
    dev = check_backend(backend, device)
    check_statistic(statistic)
    n_threads = resolve_threads(threads)
    _check_budget(min_time, min_runs)
    with _prepared(module, inputs, backend, dev, n_threads) as (call, clock):
        return _time_calls(call, clock, min_time, min_runs, statistic)


@dataclass(frozen=True)
class Timing(Generic[K]):
    """What :func:`time_interleaved` found: a Measurement per module (``disturbed`` set on
    those with no undisturbed round), the rounds it ran (``rounds`` planned plus ``extra``
    re-measuring passes) and the most cores other processes used in one of its windows."""

    measurements: dict[K, Measurement]
    rounds: int
    extra: int
    others_cores_max: float

    @property
    def disturbed(self) -> list[K]:
        """The modules none of whose rounds escaped other processes."""
        return [k for k, m in self.measurements.items() if m.disturbed]


def time_interleaved(
    modules: Mapping[K, Callable[[], tuple[nn.Module, Tensor | Sequence[Tensor]]]],
    *,
    backend: str = "torch",
    device: torch.device | str = "cpu",
    threads: int | None = None,
    min_time: float = 0.2,
    rounds: int = ROUNDS,
    statistic: str = "min",
    min_runs: int = 1,
    meter: CpuMeter | None = None,
    on_round: Callable[[K], None] | None = None,
) -> Timing[K]:
    """Time each of ``modules`` (key -> a function building ``(module, inputs)``, called once
    per round so that only one module lives at a time) in ``rounds`` interleaved passes.

    Each pass times every module for ``min_time / rounds`` seconds (at least ``min_runs``
    calls, after the warm-up of :func:`measure_module`), in an order shuffled per pass
    (seeded). ``meter`` (default a new :class:`CpuMeter`) judges each window of at least
    :data:`METER_WINDOW_S` seconds: a round timed in a window where other processes used more
    than :data:`DISTURBED_CORES` cores is disturbed. Modules with no undisturbed round are timed
    in up to ``rounds`` further passes, until each has one. A module's ``ms`` is the smallest
    of its undisturbed rounds' statistics (all rounds' if none escaped; then ``disturbed`` is
    set), ``std`` the largest of those rounds', ``n`` the calls timed in all. ``on_round(key)``
    is called after each round of each module (progress bars).
    """
    dev = check_backend(backend, device)
    check_statistic(statistic)
    n_threads = resolve_threads(threads)
    _check_budget(min_time, min_runs)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ConfigError(f"rounds must be a positive integer, got {rounds!r}")
    meter = meter or CpuMeter()
    budget = min_time / rounds
    timed: dict[K, list[tuple[Measurement, bool]]] = {k: [] for k in modules}
    worst = 0.0

    def one_pass(keys: list[K], seed: int) -> None:
        nonlocal worst
        order = list(keys)
        random.Random(seed).shuffle(order)
        window: list[tuple[K, Measurement]] = []
        meter.start()
        for i, key in enumerate(order):
            module, inputs = modules[key]()
            with _prepared(module, inputs, backend, dev, n_threads) as (call, clock):
                window.append((key, _time_calls(call, clock, budget, min_runs, statistic)))
            del module, inputs
            if on_round is not None:
                on_round(key)
            last = i == len(order) - 1
            if meter.elapsed() >= METER_WINDOW_S or last:
                # a short last window is judged too, beyond the uncertainty of its reading
                others = _others_disturbing(meter)
                bad = others > 0
                worst = max(worst, others)
                for k, m in window:
                    timed[k].append((m, bad))
                window = []
                meter.start()

    keys = list(modules)
    for r in range(rounds):
        one_pass(keys, r)
    extra = 0
    while extra < rounds:
        redo = [k for k in keys if all(bad for _, bad in timed[k])]
        if not redo:
            break
        one_pass(redo, rounds + extra)
        extra += 1
    out: dict[K, Measurement] = {}
    for key in keys:
        calm = [m for m, bad in timed[key] if not bad]
        used = calm or [m for m, _ in timed[key]]
        out[key] = Measurement(
            ms=min(m.ms for m in used),
            std=max(m.std for m in used),
            n=sum(m.n for m, _ in timed[key]),
            disturbed=not calm,
        )
    return Timing(out, rounds=rounds, extra=extra, others_cores_max=worst)


def wait_for_quiet(
    timeout: float, *, meter: CpuMeter | None = None, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Wait, at most ``timeout`` seconds, for a :data:`METER_WINDOW_S` window in which other
    processes used at most :data:`DISTURBED_CORES` cores; True when one came, False at once
    where the meter cannot read the machine's CPU time."""
    meter = meter or CpuMeter()
    if not meter.available:
        return False
    waited = 0.0
    while waited < timeout:
        meter.start()
        sleep(METER_WINDOW_S)
        waited += METER_WINDOW_S
        if not _others_disturbing(meter):
            return True
    return False


def _others_disturbing(meter: CpuMeter) -> float:
    """The cores other processes used in ``meter``'s window when, beyond the uncertainty of
    the reading, that exceeds :data:`DISTURBED_CORES` (the window is disturbed), else 0."""
    others = meter.others()
    return others if others - meter.resolution() > DISTURBED_CORES else 0.0


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
    rounds: int = 1,
) -> Measurement:
    """End-to-end latency of a deployable network's eval forward on one (1, 3, height, width)
    image (no pre- or post-processing), with the same timers as :func:`measure_module`; with
    ``rounds`` > 1 in the rounds of :func:`time_interleaved` (``min_runs`` calls per round),
    which detect other processes and time again."""
    x = network_input(height, width)
    if rounds == 1:
        return measure_module(
            model, x, backend=backend, device=device, threads=threads, min_time=min_time,
            min_runs=min_runs, statistic=statistic,
        )  # fmt: skip
    timing = time_interleaved(
        {0: lambda: (model, x)}, backend=backend, device=device, threads=threads,
        min_time=min_time, rounds=rounds, statistic=statistic, min_runs=min_runs,
    )  # fmt: skip
    return timing.measurements[0]


def network_input(height: int, width: int) -> Tensor:
    """The (1, 3, height, width) image every end-to-end timing feeds (seeded noise)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, height, width, generator=gen)

"""Build (or complete) a latency table on this device, resumably."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from ..config import LatencyConfig, SpaceConfig
from ..progress import progress_bar
from .enumerate import check_resolution, space_kernels
from .measure import Measurement, check_backend, measure_module, resolve_threads
from .spec import OpSpec, build_module, example_input
from .table import LatencyTable, device_fingerprint

log = logging.getLogger(__name__)

#: A kernel this much slower than a strictly larger sibling is re-measured once.
INVERSION_TOLERANCE = 0.1
#: Kinds whose cost need not grow with the channels: a skip is an identity at c_in == c_out
#: and a convolution otherwise; a concatenation copies.
_NOT_MONOTONE = ("skip", "concat")


def _sibling_group(spec: OpSpec) -> tuple[object, ...]:
    return (spec.kind, spec.h, spec.w, spec.stride, spec.dtype, spec.resize_mode, spec.c_fine,
            spec.c_mid)  # fmt: skip


def inverted_siblings(
    table: LatencyTable, specs: Iterable[OpSpec], tolerance: float = INVERSION_TOLERANCE
) -> list[tuple[OpSpec, OpSpec]]:
    """Pairs ``(small, large)`` of ``specs`` in ``table`` where ``large`` is the same kernel
    (kind, input size, stride, format) with at least as many input and output channels and
    more of one, yet ``small`` was measured more than ``tolerance`` slower. Another process
    only ever slows a call down, so such a pair is most likely a disturbed measurement of
    ``small`` (FasterSeg's issue 21). Skips and concatenations are not compared."""
    groups: dict[tuple[object, ...], list[OpSpec]] = {}
    for spec in specs:
        if spec.kind not in _NOT_MONOTONE and spec.key() in table.entries:
            groups.setdefault(_sibling_group(spec), []).append(spec)
    pairs = []
    for members in groups.values():
        for small in members:
            slow = table.get(small).ms
            for large in members:
                bigger = large.c_in >= small.c_in and large.c_out >= small.c_out
                if bigger and large != small and slow > (1 + tolerance) * table.get(large).ms:
                    pairs.append((small, large))
    return pairs


def build_table(
    settings: LatencyConfig,
    *,
    space: SpaceConfig | None = None,
    specs: Iterable[OpSpec] | None = None,
    extra_specs: Iterable[OpSpec] = (),
    resize_mode: str = "bilinear",
    save_every: int = 10,
    recheck: bool = True,
    progress: bool = True,
) -> LatencyTable:
    """Measure every kernel of ``space`` that the table file ``settings.table`` lacks; save
    and return the table.

    ``settings`` (a config's ``latency`` section) says where the table lives, the resolution
    (``height`` x ``width``), the backend, device, thread count (0: this process's), the
    minimum timing per kernel and the statistic kept. The kernels are :func:`space_kernels`
    ``(space, height, width, resize_mode)`` (``space`` defaults to the paper's), or exactly
    ``specs`` when given, plus ``extra_specs``. An existing table at ``settings.table`` is
    loaded first (its fingerprint must match this device, backend, thread
    count and resolution, else LatencyTableError) and only missing entries are measured. The
    table is saved atomically every ``save_every`` new entries and at the end, so a killed
    build resumes where it stopped. ``statistic`` (``median``, or ``min`` on a machine shared
    with other busy processes) is what each entry's ``ms`` holds. ``progress`` shows a bar
    on a terminal, a log line per tenth elsewhere. Height and width must be multiples of 32
    (ConfigError otherwise). With ``recheck`` every kernel measured in this build that is
    slower than a strictly larger sibling (:func:`inverted_siblings`) is measured once more
    and keeps the faster of its two measurements.
    """
    height, width, backend = settings.height, settings.width, settings.backend
    check_resolution(height, width)
    dev = check_backend(backend, settings.device)
    n_threads = resolve_threads(settings.threads or None)
    fingerprint = device_fingerprint(
        backend, dev, n_threads, height, width, statistic=settings.statistic
    )
    out = Path(settings.table)
    if out.exists():
        table = LatencyTable.load(out, expect_fingerprint=fingerprint)
    else:
        table = LatencyTable(fingerprint, path=out)
    wanted = (
        list(specs)
        if specs is not None
        else space_kernels(
            space if space is not None else SpaceConfig(), height, width, resize_mode
        )
    )
    wanted = [*wanted, *extra_specs]
    todo = table.missing(wanted)
    log.info(
        "latency table %s: %d kernels wanted, %d present, %d to measure",
        out,
        len(wanted),
        len(table),
        len(todo),
    )

    def measure(spec: OpSpec) -> Measurement:
        return measure_module(
            build_module(spec),
            example_input(spec),
            backend=backend,
            device=dev,
            threads=n_threads,
            min_time=settings.min_time,
            statistic=settings.statistic,
        )

    bar = progress_bar(todo, desc="measuring kernels", unit="kernel", enabled=progress)
    done = 0
    for spec in bar:
        table.add(spec, measure(spec))
        done += 1
        if done % save_every == 0:
            table.save(out)
    bar.close()
    if recheck and todo:
        new = set(todo)
        suspects = sorted(
            {s for s, _ in inverted_siblings(table, wanted) if s in new}, key=OpSpec.key
        )
        faster = 0
        for spec in suspects:
            again = measure(spec)
            if again.ms < table.get(spec).ms:
                table.add(spec, again)
                faster += 1
        if suspects:
            log.info(
                "latency table %s: re-measured %d kernels slower than a larger sibling; "
                "%d were faster the second time",
                out, len(suspects), faster,
            )  # fmt: skip
    table.save(out)
    return table

"""Build (or complete) a latency table on this device, resumably."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from ..config import LatencyConfig, SpaceConfig
from ..progress import progress_bar
from .enumerate import check_resolution, space_kernels
from .measure import check_backend, measure_module, resolve_threads
from .spec import OpSpec, build_module, example_input
from .table import LatencyTable, device_fingerprint

log = logging.getLogger(__name__)


def build_table(
    settings: LatencyConfig,
    *,
    space: SpaceConfig | None = None,
    specs: Iterable[OpSpec] | None = None,
    extra_specs: Iterable[OpSpec] = (),
    resize_mode: str = "bilinear",
    save_every: int = 10,
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
    (ConfigError otherwise).
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
    todo = table.missing([*wanted, *extra_specs])
    log.info(
        "latency table %s: %d kernels wanted, %d present, %d to measure",
        out,
        len(wanted),
        len(table),
        len(todo),
    )
    bar = progress_bar(todo, desc="measuring kernels", unit="kernel", enabled=progress)
    done = 0
    for spec in bar:
        module = build_module(spec)
        inputs = example_input(spec)
        table.add(
            spec,
            measure_module(
                module,
                inputs,
                backend=backend,
                device=dev,
                threads=n_threads,
                min_time=settings.min_time,
                statistic=settings.statistic,
            ),
        )
        done += 1
        if done % save_every == 0:
            table.save(out)
    bar.close()
    table.save(out)
    return table

"""Progress for long loops: a tqdm bar on a terminal, a few plain lines elsewhere.

A carriage-return bar written into a log file is a flood of fragments (``measuring kernels:
NN%`` thousands of times), so off a terminal a loop logs one line at each tenth of its length
instead (through :mod:`logging`, which the CLI routes to stderr). Processes other than
torchrun's rank 0 show nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

from .distributed import is_main

T = TypeVar("T")

log = logging.getLogger("fasterseg.progress")

#: Off a terminal a loop of n steps logs up to min(n, LINES) lines, one as it passes each tenth.
LINES = 10
#: ... but a tenth reached sooner than this after the last line is not logged (the last step
#: always is): a loop of half a second says it ran in one line, not ten.
MIN_SECONDS = 2.0

_clock = time.perf_counter


def stderr_is_tty() -> bool:
    """Whether standard error is a terminal (a progress bar can redraw in place)."""
    return sys.stderr is not None and sys.stderr.isatty()


class _Lines:
    """tqdm's small interface (iteration, ``set_postfix``, ``close``) as a line per tenth."""

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None, unit: str) -> None:
        self._iterable = iterable
        self._desc = desc
        self._unit = unit
        self._total = total if total is not None else _length(iterable)
        self._postfix = ""

    def __iter__(self) -> Iterator[T]:
        total = self._total
        tic = last = _clock()
        done = 0
        for item in self._iterable:
            yield item
            done += 1
            # Every ceil(n / LINES) steps would give 9 lines for 25 steps and 6 for 11: a line
            # as the count passes each tenth gives min(n, LINES) lines for any n.
            if not total or done * LINES // total == (done - 1) * LINES // total:
                continue
            now = _clock()
            if done == total or now - last >= MIN_SECONDS:
                last, elapsed = now, now - tic
                log.info(
                    "%s: %d/%d %s (%.0f%%, %.1f s)%s",
                    self._desc, done, total, self._unit, 100 * done / total, elapsed,
                    self._postfix,
                )  # fmt: skip

    def set_postfix(self, **values: Any) -> None:
        self._postfix = ", " + ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """Nothing to clear (lines are already written)."""


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress_bar(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    enabled: bool | None = None,
) -> Any:
    """Iterate ``iterable`` with progress: a bar on a terminal, a log line per tenth elsewhere.

    ``enabled`` False shows nothing, True shows progress (bar or lines), None (the default)
    shows it on rank 0 only. The result supports ``set_postfix(**values)`` and ``close()``.
    """
    if enabled is False or not is_main():
        return tqdm(iterable, total=total, disable=True)
    if stderr_is_tty():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False)
    return _Lines(iterable, desc, total, unit)

"""Progress off a terminal: a few log lines instead of a carriage-return bar."""

import io
import logging

import pytest
from conftest import fake_timer

from fasterseg.config import LatencyConfig, SpaceConfig
from fasterseg.latency import Measurement, build_table, space_kernels
from fasterseg.latency import build as build_mod
from fasterseg.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "fasterseg.progress"]


@pytest.fixture
def stderr(monkeypatch):
    """A stderr that is not a terminal (a file or a pipe), returned to read what reached it."""
    fake = io.StringIO()
    monkeypatch.setattr("sys.stderr", fake)
    return fake


@pytest.fixture()
def slow(monkeypatch):
    """A clock on which every reading is 10 s after the previous one: every step is slow."""
    ticks = iter(range(0, 10**6, 10))
    monkeypatch.setattr("fasterseg.progress._clock", lambda: float(next(ticks)))


def test_a_fast_loop_off_a_terminal_logs_only_its_end(stderr, caplog):
    caplog.set_level(logging.INFO, logger="fasterseg.progress")
    for _ in progress_bar(range(25), desc="work"):
        pass  # microseconds: no tenth comes MIN_SECONDS after the last line
    lines = _lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("work: 25/25 it (100%,")


def test_off_a_terminal_a_loop_logs_one_line_per_tenth(slow, stderr, caplog):
    caplog.set_level(logging.INFO, logger="fasterseg.progress")
    bar = progress_bar(range(25), desc="work", unit="step")
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(loss="0.5")
    bar.close()
    lines = _lines(caplog)
    assert seen == list(range(25))
    assert len(lines) == 10
    # A line as the count passes each tenth of 25 steps: 2.5, 5, 7.5, ... rounded up.
    assert [line.split()[1] for line in lines] == [
        f"{n}/25" for n in (3, 5, 8, 10, 13, 15, 18, 20, 23, 25)
    ]
    assert lines[-1].startswith("work: 25/25 step (100%,") and lines[-1].endswith(", loss=0.5")
    assert stderr.getvalue() == ""  # no bar, no carriage returns


@pytest.mark.parametrize("n", [3, 11, 100])
def test_off_a_terminal_a_loop_logs_at_most_ten_lines(n, slow, stderr, caplog):
    caplog.set_level(logging.INFO, logger="fasterseg.progress")
    for _ in progress_bar(range(n), desc="work"):
        pass
    lines = _lines(caplog)
    assert len(lines) == min(n, 10)
    assert lines[-1].startswith(f"work: {n}/{n} it (100%,")


def test_disabled_progress_logs_and_draws_nothing(stderr, caplog):
    caplog.set_level(logging.INFO, logger="fasterseg.progress")
    assert list(progress_bar(range(25), desc="work", enabled=False)) == list(range(25))
    assert _lines(caplog) == []
    assert stderr.getvalue() == ""


def test_on_a_terminal_a_bar_is_drawn_instead_of_lines(monkeypatch, caplog):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    caplog.set_level(logging.INFO, logger="fasterseg.progress")
    assert list(progress_bar(range(25), desc="work")) == list(range(25))
    assert _lines(caplog) == []
    assert "\r" in terminal.getvalue() and "work" in terminal.getvalue()


def test_build_table_logs_kernel_progress_off_a_terminal(
    tmp_path, monkeypatch, slow, stderr, caplog
):
    monkeypatch.setattr(
        build_mod, "time_interleaved", fake_timer(lambda *a, **k: Measurement(1.0, 0.0, 1))
    )
    specs = space_kernels(SpaceConfig(layers=6, fch=4), 64, 128)[:20]
    caplog.set_level(logging.INFO, logger="fasterseg.progress")
    lut = LatencyConfig(str(tmp_path / "lut.json"), 64, 128, threads=1, check_networks=0)
    build_table(lut, specs=specs)
    lines = _lines(caplog)
    assert len(lines) == 10  # 20 kernels x 3 rounds, a line per tenth
    assert lines[0].startswith("measuring kernels: 6/60 kernel-round (10%,")
    assert lines[-1].startswith("measuring kernels: 60/60 kernel-round (100%,")
    caplog.clear()
    lut2 = LatencyConfig(str(tmp_path / "lut2.json"), 64, 128, threads=1, check_networks=0)
    build_table(lut2, specs=specs, progress=False)
    assert _lines(caplog) == []
    assert "\r" not in stderr.getvalue()

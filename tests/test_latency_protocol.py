"""The measuring protocol: interleaved rounds, disturbed windows timed again, the CPU meter,
and the table's self-check against whole networks (fitted, stored, shown, used by default)."""

import ctypes
import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import fake_timer

from fasterseg.config import LatencyConfig, SpaceConfig
from fasterseg.errors import ConfigError
from fasterseg.latency import (
    Calibration,
    LatencyTable,
    Measurement,
    SelfCheck,
    build_table,
    genotype_latency,
    space_kernels,
    time_interleaved,
)
from fasterseg.latency import build as build_mod
from fasterseg.latency import measure as measure_mod
from fasterseg.latency.table import LatencyTableError
from fasterseg.models.network import Network
from fasterseg.profile import count_params, profile_genotype

TINY = SpaceConfig(layers=4, fch=4, width_choices=(0.5, 1.0))
H, W = 64, 128


class Recorder(torch.nn.Module):
    """Appends its name to ``log`` on every call."""

    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log

    def forward(self, x):
        self.log.append(self.name)
        return x


class ScriptedMeter:
    """A CpuMeter whose readings are scripted: ``others()`` pops the next value (0 when the
    script is exhausted), windows always count as long."""

    def __init__(self, readings):
        self.readings = list(readings)

    def start(self):
        pass

    def elapsed(self):
        return measure_mod.METER_WINDOW_S

    def resolution(self):
        return 0.0

    def others(self):
        return self.readings.pop(0) if self.readings else 0.0

    available = True


def _factories(names, log):
    return {n: (lambda n=n: (Recorder(n, log), torch.zeros(1))) for n in names}


def test_rounds_interleave_every_module_before_the_next_round():
    log, built = [], []

    def factory(name):
        built.append(name)  # once per round: the module is built, timed, dropped
        return Recorder(name, log), torch.zeros(1)

    timing = time_interleaved(
        {n: (lambda n=n: factory(n)) for n in "abc"}, threads=1, min_time=0.0, rounds=3,
        meter=ScriptedMeter([]),
    )  # fmt: skip
    assert len(built) == 9 and all(set(built[3 * k : 3 * k + 3]) == set("abc") for k in range(3))
    assert set(log) == set("abc")
    assert timing.rounds == 3 and timing.extra == 0 and not timing.disturbed
    assert all(m.n == 3 for m in timing.measurements.values())  # one timed call per round


def test_a_disturbed_round_is_timed_again_and_not_kept(monkeypatch):
    """Round 0 is disturbed for everybody and slow; rounds 1-2 are calm: each module keeps the
    least of its calm rounds, not the slow one (even where it is lower by chance)."""
    ms = {"a": [0.5, 2.0, 3.0], "b": [9.0, 4.0, 5.0]}

    def scripted(call, clock, budget, min_runs, statistic):
        name = call()
        return Measurement(ms[name].pop(0), 0.0, 1)

    monkeypatch.setattr(measure_mod, "_time_calls", scripted)
    factories = {n: (lambda n=n: (_Name(n), torch.zeros(1))) for n in "ab"}
    # one window per module per round (each window counts as long): round 0's two are busy
    timing = time_interleaved(
        factories, threads=1, min_time=1.0, rounds=3, meter=ScriptedMeter([1.0, 1.0])
    )
    got = {k: m.ms for k, m in timing.measurements.items()}
    assert got == {"a": 2.0, "b": 4.0} and timing.extra == 0 and not timing.disturbed
    assert timing.others_cores_max == 1.0


def test_a_module_with_only_disturbed_rounds_is_retimed_then_flagged(monkeypatch):
    calls = []

    def scripted(call, clock, budget, min_runs, statistic):
        calls.append(call())
        return Measurement(float(len(calls)), 0.0, 1)

    monkeypatch.setattr(measure_mod, "_time_calls", scripted)
    factories = {"a": lambda: (_Name("a"), torch.zeros(1))}
    busy = ScriptedMeter([1.0] * 2 + [0.0] + [1.0] * 10)  # rounds 0-1 busy, extra pass calm
    timing = time_interleaved(factories, threads=1, min_time=1.0, rounds=2, meter=busy)
    assert calls == ["a"] * 3 and timing.extra == 1
    assert timing.measurements["a"].ms == 3.0 and not timing.measurements["a"].disturbed
    calls.clear()
    always = ScriptedMeter([1.0] * 10)
    timing = time_interleaved(factories, threads=1, min_time=1.0, rounds=2, meter=always)
    # two rounds, then up to two more passes: all busy, so the least of all four is kept
    assert calls == ["a"] * 4 and timing.extra == 2 and timing.disturbed == ["a"]
    assert timing.measurements["a"].ms == 1.0 and timing.measurements["a"].n == 4


class _Name(torch.nn.Module):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, x):
        return self.name


def test_rounds_must_be_positive():
    with pytest.raises(ConfigError, match="rounds"):
        time_interleaved({}, threads=1, rounds=0)


def test_cpu_meter_reads_other_processes_from_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    tick = 100.0

    def write(user, system, idle, steal):
        # user nice system idle iowait irq softirq steal guest guest_nice
        stat.write_text(f"cpu  {user} 0 {system} {idle} 7 0 0 {steal} 0 0\ncpu0 1 2 3\n")

    monkeypatch.setattr(measure_mod.os, "sysconf", lambda name: tick)
    clock = [10.0, 12.0]  # perf_counter: at start, then ever after

    def perf_counter():
        return clock.pop(0) if len(clock) > 1 else clock[0]

    monkeypatch.setattr(measure_mod.time, "perf_counter", perf_counter)
    own = [5.0, 5.5]  # this process used 0.5 s of CPU

    def process_time():
        return own.pop(0) if len(own) > 1 else own[0]

    monkeypatch.setattr(measure_mod.time, "process_time", process_time)
    write(1000, 500, 9000, 0)
    meter = measure_mod.CpuMeter(stat)
    assert meter.available
    write(1000 + 120, 500 + 30, 9000 + 200, 50)  # busy +2.0 s (steal counts), 2 s of wall
    # others = (2.0 - 0.5) / 2 s = 0.75 cores
    assert meter.others() == pytest.approx(0.75)
    assert not measure_mod.CpuMeter(tmp_path / "missing").available


def _relative_line(sums, meas):
    """(scale, offset) minimising sum(((a * s + b) / m - 1) ** 2), by numpy's least squares."""
    s, m = np.asarray(sums, float), np.asarray(meas, float)
    rows = np.stack([s / m, 1.0 / m], axis=1)
    a, b = np.linalg.lstsq(rows, np.ones_like(m), rcond=None)[0]
    return float(a), float(b)


def test_calibration_fits_a_line_in_relative_terms():
    sums, meas = [10.0, 20.0, 40.0, 80.0], [13.0, 21.0, 44.0, 83.0]
    c = Calibration.fit(sums, meas)
    a, b = _relative_line(sums, meas)
    assert c.scale == pytest.approx(a, rel=1e-9) and c.offset_ms == pytest.approx(b, rel=1e-9)
    assert c.fitted_on == 4
    # not the plain least squares, which the largest network dominates
    assert abs(c.offset_ms - np.polyfit(sums, meas, 1)[1]) > 0.05
    exact = Calibration.fit([10.0, 20.0, 50.0], [15.0, 27.0, 63.0])  # 1.2 x + 3 ms
    assert exact.scale == pytest.approx(1.2) and exact.offset_ms == pytest.approx(3.0)
    # no line through one network, or through networks of one sum: a scale alone
    assert Calibration.fit([50.0], [60.0]) == Calibration(1.2, 0.0, 1)
    same = Calibration.fit([10.0, 10.0], [12.0, 13.0])
    assert same.offset_ms == 0.0 and same.scale == pytest.approx(
        float(np.linalg.lstsq(np.array([[10 / 12], [10 / 13]]), np.ones(2), rcond=None)[0][0])
    )
    assert c.describe() == f"measured ≈ {c.scale:.4f} x sum {c.offset_ms:+.3f} ms"
    assert Calibration(1.5, 0.0, 4).describe() == "measured ≈ 1.5000 x sum"
    with pytest.raises(ValueError, match="positive"):
        Calibration.fit([10.0, 0.0], [12.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        Calibration.fit([], [])


def test_self_check_is_leave_one_out():
    sums = [10.0, 20.0, 30.0, 45.0]
    meas = [13.0, 21.0, 36.0, 50.0]
    check = SelfCheck.of("abcd", sums, meas, [False] * 4, 0.0)
    for i, net in enumerate(check.networks):
        rest = [j for j in range(4) if j != i]
        a, b = _relative_line([sums[j] for j in rest], [meas[j] for j in rest])
        assert net.heldout_ms == pytest.approx(a * sums[i] + b, rel=1e-9)
        assert net.heldout_error == pytest.approx(abs(a * sums[i] + b - meas[i]) / meas[i])
    assert check.calibration().scale == pytest.approx(_relative_line(sums, meas)[0])
    assert check.passed is False
    assert check.heldout_error_max > 0.10  # 10 -> 13 is off the line of the others
    with pytest.raises(ValueError, match="at least 3"):
        SelfCheck.of("ab", sums[:2], meas[:2], [False] * 2, 0.0)


def test_check_networks_span_their_space_from_the_smallest_to_the_largest():
    small, large, *others = build_mod.check_genotypes(TINY, 5)
    low, high = min(TINY.width_choices), max(TINY.width_choices)
    assert small.stem_width == TINY.student_stem_width and large.stem_width == 1.0
    for geno, width, last in ((small, low, 1), (large, high, 0)):
        assert [b.last_scale for b in geno.branches] == [2, last]
        assert all(w == width for b in geno.branches for w in b.widths[:-1])
    macs = [profile_genotype(g, height=H, width=W)["macs"] for g in (small, large, *others)]
    assert macs[0] == min(macs) and macs[1] == max(macs)
    assert len(others) == 3
    assert small.branches[0].path[:3] == (0, 1, 2) and large.branches[0].path[-3:] == (0, 1, 2)
    assert [g.name for g in build_mod.check_genotypes(TINY, 3, prefix="p")] == ["p0", "p1", "p2"]
    # the published networks' space joins the check where the table predicts them
    assert build_mod.paper_check_spaces(SpaceConfig()) == ()
    (paper,) = build_mod.paper_check_spaces(replace(TINY, num_classes=7))
    assert paper == replace(SpaceConfig(), num_classes=7)


def test_check_spaces_join_the_self_check_and_another_check_is_redone(tmp_path, monkeypatch):
    networks = []

    def timer(module, inputs, **settings):
        if isinstance(module, Network):
            networks.append(module.genotype.name)
        return _linear_timer(1.2, 3.0)(module, inputs)

    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(timer))
    other = replace(TINY, fch=8)
    settings = _settings(tmp_path, check_networks=3)
    table = build_table(settings, space=TINY, specs=[], check_spaces=(other,), progress=False)
    named = ["check0", "check1", "check2", "check-space1-0", "check-space1-1", "check-space1-2"]
    assert networks == named and [n.name for n in table.self_check.networks] == named
    for geno in build_mod.check_genotypes(other, 3, prefix="check-space1-"):
        assert not table.missing(build_mod.genotype_kernels(geno, H, W, 19))
    networks.clear()  # the same checks again: nothing to measure, the check stands
    build_table(settings, space=TINY, specs=[], check_spaces=(other,), progress=False)
    assert networks == []
    # without the other space nothing is missing, but the stored check is of other networks
    table = build_table(settings, space=TINY, specs=[], progress=False)
    assert networks == named[:3] and len(table.self_check.networks) == 3


def _linear_timer(scale, offset_ms, *, disturbed=False, bend=None):
    """Kernels take 1 us per parameter; a network takes ``scale`` x that + ``offset_ms``
    (the network's parameters are its kernels', so its plain sum is exactly 1 us each);
    ``bend(name)`` adds ms to a network."""

    def measure(module, inputs, **settings):
        us = 1e-3 * count_params(module)
        if isinstance(module, Network):
            extra = bend(module.genotype.name) if bend else 0.0
            return Measurement(scale * us + offset_ms + extra, 0.0, 1, disturbed=disturbed)
        return Measurement(us, 0.0, 1)

    return measure


def _settings(tmp_path, **kw):
    return LatencyConfig(table=str(tmp_path / "lut.json"), height=H, width=W, threads=1, **kw)


def test_build_fits_and_stores_the_calibration_on_its_check_networks(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(_linear_timer(1.2, 3.0)))
    table = build_table(_settings(tmp_path, check_networks=4), space=TINY, progress=False)
    c, check = table.calibration, table.self_check
    assert c.scale == pytest.approx(1.2) and c.offset_ms == pytest.approx(3.0) and c.fitted_on == 4
    assert check.passed and check.heldout_error_max < 1e-9
    assert [n.name for n in check.networks] == [f"check{i}" for i in range(4)]
    loaded = LatencyTable.load(tmp_path / "lut.json")
    assert loaded.calibration == c and loaded.self_check == check
    # the check's networks are of the space, and the default prediction is calibrated
    geno = build_mod.check_genotypes(TINY, 4)[0]
    plain = genotype_latency(geno, loaded, height=H, width=W, num_classes=19, calibrated=False)
    assert genotype_latency(geno, loaded, height=H, width=W, num_classes=19) == pytest.approx(
        1.2 * plain + 3.0
    )
    summary = loaded.summary()
    assert "self-check on 4 networks" in summary and "predictions use it" in summary


def test_a_failing_check_re_measures_the_kernels_it_was_wrong_on(tmp_path, monkeypatch, caplog):
    kernels = []

    def bent(module, inputs, **settings):
        if not isinstance(module, Network):
            kernels.append(1)
        # check0, the smallest network (291 ms of kernels), measured 1.3x its sum
        return _linear_timer(1.0, 0.0, bend=lambda n: 90.0 if n == "check0" else 0.0)(
            module, inputs
        )

    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(bent))
    caplog.set_level(logging.INFO, logger="fasterseg.latency.build")
    settings = _settings(tmp_path, check_networks=4)
    table = build_table(settings, space=TINY, specs=[], progress=False)
    check_kernels = {
        s.key() for s in build_mod.genotype_kernels(build_mod.check_genotypes(TINY, 4)[0], H, W, 19)
    }
    first = len(table)  # the specs are empty: the table holds the check networks' kernels
    assert len(kernels) == first + len(check_kernels)  # check0's kernels timed a second time
    assert not table.self_check.passed and not table.self_check.disturbed
    assert table.calibration is not None  # undisturbed: a (poor) calibration is still kept
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("self-check failed" in w and "rebuild" in w for w in warnings)
    # a second run measures no kernel and repeats only the check (it did not pass)
    kernels.clear()
    build_table(settings, space=TINY, specs=[], progress=False)
    assert len(kernels) == len(check_kernels)


def test_networks_timed_only_under_load_leave_no_calibration(tmp_path, monkeypatch, caplog):
    timer = fake_timer(_linear_timer(1.1, 2.0, disturbed=True))
    monkeypatch.setattr(build_mod, "time_interleaved", timer)
    caplog.set_level(logging.WARNING, logger="fasterseg.latency.build")
    table = build_table(_settings(tmp_path, check_networks=3), space=TINY, progress=False)
    assert table.calibration is None and table.self_check.disturbed
    assert "the table" in table.self_check.describe() and "load" in table.self_check.describe()
    assert any("self-check failed" in r.getMessage() for r in caplog.records)


def test_kernels_timed_only_under_load_are_marked_and_timed_again_by_the_next_build(
    tmp_path, monkeypatch, caplog
):
    specs = space_kernels(TINY, H, W)[:6]
    loaded = {specs[1].key(): 5.0, specs[4].key(): 0.5}  # kernel -> ms added by the load
    calls: list[str] = []

    def timer(module, inputs, **settings):
        key = module.spec_key
        calls.append(key)
        extra = loaded.get(key)
        return Measurement(1.0 + (extra or 0.0), 0.0, 1, disturbed=extra is not None)

    real_build = build_mod.build_module

    def tagged(spec):
        module = real_build(spec)
        module.spec_key = spec.key()
        return module

    monkeypatch.setattr(build_mod, "build_module", tagged)
    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(timer))
    caplog.set_level(logging.WARNING, logger="fasterseg.latency.build")
    settings = _settings(tmp_path, check_networks=0)
    build_table(settings, space=TINY, specs=specs, progress=False)
    assert any("2 of 6 kernels could only be timed" in r.getMessage() for r in caplog.records)
    stored = json.loads((tmp_path / "lut.json").read_text())["entries"]
    assert {k for k, v in stored.items() if v.get("disturbed")} == set(loaded)
    assert all("disturbed" not in v for k, v in stored.items() if k not in loaded)
    table = LatencyTable.load(tmp_path / "lut.json")
    assert "disturbed: 2 entries" in table.summary()

    # the next build times exactly those two: one is quiet now (its clean timing replaces the
    # loaded one), the other is still loaded and slower than before (the faster one stays)
    calls.clear()
    loaded = {specs[4].key(): 2.0}
    table = build_table(settings, space=TINY, specs=specs, progress=False)
    assert sorted(calls) == sorted([specs[1].key(), specs[4].key()])
    assert table.get(specs[1]) == Measurement(1.0, 0.0, 1) and not table.get(specs[1]).disturbed
    assert table.get(specs[4]).ms == 1.5 and table.get(specs[4]).disturbed  # the faster kept
    # nothing disturbed is left to time once a quiet build has run
    loaded = {}
    build_table(settings, space=TINY, specs=specs, progress=False)
    calls.clear()
    table = build_table(settings, space=TINY, specs=specs, progress=False)
    assert calls == [] and not any(m.disturbed for m in table.entries.values())


def test_waiting_for_quiet_polls_windows_until_one_is_calm():
    naps = []
    meter = ScriptedMeter([1.0, 0.9, 0.1])  # cores other processes used in each window
    assert measure_mod.wait_for_quiet(10, meter=meter, sleep=naps.append)
    assert naps == [measure_mod.METER_WINDOW_S] * 3  # the third window was calm
    naps.clear()
    assert not measure_mod.wait_for_quiet(1.2, meter=ScriptedMeter([1.0] * 9), sleep=naps.append)
    assert sum(naps) == pytest.approx(1.5)  # windows of 0.5 s until 1.2 s had passed
    blind = ScriptedMeter([])
    blind.available = False
    assert not measure_mod.wait_for_quiet(10, meter=blind, sleep=naps.append)


@pytest.mark.parametrize("quiet", [True, False])
def test_a_build_times_disturbed_kernels_again_once_the_machine_is_quiet(
    tmp_path, monkeypatch, caplog, quiet
):
    specs = space_kernels(TINY, H, W)[:4]
    state = {"busy": True}
    waits = []

    def timer(module, inputs, **settings):
        return Measurement(3.0 if state["busy"] else 1.0, 0.0, 1, disturbed=state["busy"])

    def wait(timeout):
        waits.append(timeout)
        state["busy"] = not quiet
        return quiet

    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(timer))
    monkeypatch.setattr(build_mod, "wait_for_quiet", wait)
    caplog.set_level(logging.WARNING, logger="fasterseg.latency.build")
    settings = _settings(tmp_path, check_networks=0, quiet_wait=7.0)
    table = build_table(settings, space=TINY, specs=specs, progress=False)
    assert waits == [7.0]
    assert all(table.get(s).disturbed is not quiet for s in specs)
    assert all(table.get(s).ms == (1.0 if quiet else 3.0) for s in specs)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "waiting up to 7 s" in said
    assert ("could only be timed" in said.split("waiting up to")[1]) is not quiet
    # no waiting when told so
    waits.clear()
    build_table(_settings(tmp_path / "b", check_networks=0, quiet_wait=0), space=TINY,
                specs=specs, progress=False)  # fmt: skip
    assert waits == []


@pytest.mark.parametrize("n", [1, 2, -1])
def test_check_networks_is_zero_or_at_least_three(tmp_path, n):
    with pytest.raises(ConfigError, match="check_networks"):
        build_table(_settings(tmp_path, check_networks=n), specs=[], progress=False)


def test_a_self_check_in_a_table_file_is_validated(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "time_interleaved", fake_timer(_linear_timer(1.0, 1.0)))
    build_table(_settings(tmp_path, check_networks=3), space=TINY, progress=False)
    path = tmp_path / "lut.json"
    data = json.loads(path.read_text())
    data["self_check"]["networks"][1]["measured_ms"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match=r"self_check.networks\[1\].measured_ms"):
        LatencyTable.load(path)
    del data["self_check"]["networks"][1:]
    path.write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="at least 3 networks"):
        LatencyTable.load(path)


def test_real_kernels_and_networks_build_a_checked_table(tmp_path):
    specs = space_kernels(TINY, H, W)[:4]
    table = build_table(
        _settings(tmp_path, check_networks=3, min_time=0.003), space=TINY, specs=specs,
        progress=False,
    )  # fmt: skip
    assert len(table.self_check.networks) == 3
    assert all(n.measured_ms > 0 and n.sum_ms > 0 for n in table.self_check.networks)
    assert (table.calibration is None) == table.self_check.disturbed


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _mallinfo():
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2()


def _mmapped_bytes():
    """Bytes this process holds in mmap-ed malloc blocks (glibc's mallinfo2().hblkhd)."""
    return _mallinfo().hblkhd


@pytest.mark.skipif(
    measure_mod.memory_mode() == "default" or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="kept memory needs glibc (2.33+ for mallinfo2)",
)
def test_kept_memory_maps_no_fresh_blocks_and_trims_nothing():
    # glibc mmaps any block above its mmap threshold, at most 32 MiB on 64-bit (mallopt(3)),
    # so a 64 MiB tensor is mmap-ed by default and must come from the heap while kept.
    nbytes = 64 << 20
    before = _mmapped_bytes()
    with measure_mod.kept_memory() as kept:
        assert kept
        with measure_mod.kept_memory():  # nested: the outer context still keeps memory
            pass
        t = torch.empty(nbytes // 4)
        inside = _mmapped_bytes() - before
        del t
        # freed, not trimmed: the heap still holds the block for the next call
        free_kept = _mallinfo().fordblks
    assert inside < nbytes
    assert free_kept >= nbytes


def test_kept_memory_sets_once_and_restores_glibcs_defaults(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(measure_mod, "_glibc", lambda: FakeLibc())
    with measure_mod.kept_memory(), measure_mod.kept_memory():
        assert calls == [(-4, 0), (-1, 2**31 - 1)]  # M_MMAP_MAX 0, M_TRIM_THRESHOLD INT_MAX
    # mallopt(3): glibc's defaults are 65536 mmap-ed blocks and a 128 KiB trim threshold
    assert calls[2:] == [(-4, 65536), (-1, 128 * 1024)]


def test_tables_record_how_memory_was_treated():
    from fasterseg.latency.table import COMPARED_FIELDS, device_fingerprint

    fp = device_fingerprint("torch", "cpu", 1, 64, 64)
    assert fp["memory"] == measure_mod.memory_mode()
    assert "memory" not in COMPARED_FIELDS  # tables built before it still load

"""Build (or complete) a latency table on this device, resumably, and check it against whole
networks."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from ..config import LatencyConfig, SpaceConfig
from ..errors import ConfigError
from ..genotype import Branch, Genotype
from ..models.network import Network
from ..progress import progress_bar
from .enumerate import check_resolution, genotype_kernels, random_genotype, space_kernels
from .estimate import genotype_latency
from .measure import (
    Timing,
    check_backend,
    network_input,
    resolve_threads,
    time_interleaved,
    wait_for_quiet,
)
from .spec import OpSpec, build_module, example_input
from .table import CHECK_TOLERANCE, LatencyTable, SelfCheck, device_fingerprint

log = logging.getLogger(__name__)

#: A kernel this much slower than a strictly larger sibling is re-measured once.
INVERSION_TOLERANCE = 0.1
#: Kinds whose cost need not grow with the channels: a skip is an identity at c_in == c_out
#: and a convolution otherwise; a concatenation copies.
_NOT_MONOTONE = ("skip", "concat")
#: Kernels timed together in interleaved rounds and then saved: a killed build loses at most
#: one chunk, and a chunk's rounds lie far enough apart (tens of seconds at the defaults) that
#: a load of a few seconds touches one round of each kernel.
CHUNK = 60
#: A self-check network gets this many times a kernel's timing budget (``min_time``).
NETWORK_BUDGET = 10


def check_genotypes(space: SpaceConfig, count: int, prefix: str = "check") -> list[Genotype]:
    """The ``count`` networks a build's self-check times, named ``{prefix}{i}``, the same for
    every build of that space: the first two are the smallest and the largest kind of
    network of ``space`` (student stem and head, every layer at the narrowest width,
    down-sampling as early as it can, the second branch ending at 1/16; teacher, the widest,
    down-sampling as late as it can, ending at 1/8; operators drawn at random), the others
    random architectures (seeded, alternately student- and teacher-wide, two or three
    branches' ends). The two ends make the check span the sizes a table is asked about, so
    that its calibration's offset is measured rather than extrapolated."""
    rng = random.Random("fasterseg latency self-check")
    out = []
    for i in range(count):
        role = ("student", "teacher")[i % 2]
        last = (1, 0)[i % 2] if i < 2 else rng.choice((0, 1))
        geno = random_genotype(space, rng, role=role, lasts=(2, last), name=f"{prefix}{i}")
        if i < 2:
            ends = tuple(_extreme(b, space, large=i == 1) for b in geno.branches)
            geno = replace(geno, branches=ends)
        out.append(geno.validate())
    return out


def _extreme(branch: Branch, space: SpaceConfig, *, large: bool) -> Branch:
    """``branch`` with every layer but the head at the widest (``large``) or narrowest width
    and its down-sampling layers as late (``large``) or as early as they can be."""
    layers, downs = len(branch.widths), branch.path[-1]
    first = layers - 1 - downs if large else 0
    path = [0]
    for i in range(layers - 1):
        path.append(path[-1] + (first <= i < first + downs))
    width = max(space.width_choices) if large else min(space.width_choices)
    return Branch(branch.ops, tuple(path), (width,) * (layers - 1) + branch.widths[-1:])


def paper_check_spaces(space: SpaceConfig) -> tuple[SpaceConfig, ...]:
    """The extra ``check_spaces`` of :func:`build_table` for a table of ``space`` that also
    predicts the published networks (a relative latency window, the pipeline's report): the
    paper's space (with ``space``'s classes), unless ``space`` is that space."""
    paper = replace(SpaceConfig(), num_classes=space.num_classes)
    return () if replace(space, gumbel_temperature=paper.gumbel_temperature) == paper else (paper,)


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
    save_every: int = CHUNK,
    recheck: bool = True,
    progress: bool = True,
    check_spaces: Sequence[SpaceConfig] = (),
) -> LatencyTable:
    """Measure every kernel of ``space`` that the table file ``settings.table`` lacks, check
    the table against whole networks; save and return it.

    ``settings`` (a config's ``latency`` section) says where the table lives, the resolution
    (``height`` x ``width``, multiples of 32, else ConfigError), the backend, device, thread
    count (0: this process's), the timing per kernel (``min_time`` seconds in ``rounds``
    interleaved rounds, :func:`~fasterseg.latency.measure.time_interleaved`) and the statistic
    kept. The kernels are :func:`space_kernels` ``(space, height, width, resize_mode)``
    (``space`` defaults to the paper's), or exactly ``specs`` when given, plus
    ``extra_specs``, plus those of the self-check's networks (``settings.check_networks``
    of ``space`` and as many of each of ``check_spaces``, for a table that also predicts
    networks of other spaces: the pipeline's report profiles the paper's). An existing table at
    ``settings.table`` is loaded first (its fingerprint must match this device, backend, thread
    count, resolution and statistic, else LatencyTableError) and only missing entries, and those
    marked disturbed (timed before only while other processes were busy), are measured,
    ``save_every`` kernels at a time, each batch saved atomically, so a killed build resumes
    where it stopped. ``progress`` shows a bar on a terminal, a log line per tenth elsewhere.

    With ``recheck`` every kernel measured in this build that is slower than a strictly larger
    sibling (:func:`inverted_siblings`) is measured once more and keeps the faster time.

    Then, when kernels were added or the table has no passing self-check, the
    ``settings.check_networks`` networks of :func:`check_genotypes` are timed end to end with
    the same protocol (``NETWORK_BUDGET`` x ``min_time`` each), the table's calibration is
    fitted on them and the leave-one-out error stored (:class:`~.table.SelfCheck`). When a
    held-out prediction is off by more than ``CHECK_TOLERANCE``, the kernels of the networks
    it was wrong on are timed again and the check repeated once; when the networks could only
    be timed while other processes were busy, the table keeps no calibration. Either failure
    is logged as a warning that says how to rebuild.
    """
    height, width, backend = settings.height, settings.width, settings.backend
    check_resolution(height, width)
    dev = check_backend(backend, settings.device)
    n_threads = resolve_threads(settings.threads or None)
    n_check = settings.check_networks
    if (
        not isinstance(n_check, int)
        or isinstance(n_check, bool)
        or n_check in (1, 2)
        or n_check < 0
    ):
        raise ConfigError(f"latency.check_networks must be 0 or at least 3, got {n_check!r}")
    fingerprint = device_fingerprint(
        backend, dev, n_threads, height, width, statistic=settings.statistic
    )
    out = Path(settings.table)
    if out.exists():
        table = LatencyTable.load(out, expect_fingerprint=fingerprint)
    else:
        table = LatencyTable(fingerprint, path=out)
    space = space if space is not None else SpaceConfig()
    wanted = list(specs) if specs is not None else space_kernels(space, height, width, resize_mode)
    checked = check_genotypes(space, n_check)
    for k, other in enumerate(check_spaces):
        checked += check_genotypes(other, n_check, prefix=f"check-space{k + 1}-")
    classes = space.num_classes
    check_specs = [s for g in checked for s in genotype_kernels(g, height, width, classes)]
    wanted = [*wanted, *extra_specs, *check_specs]
    missing = table.missing(wanted)
    # timed before only while other processes were busy: time them again, keep the faster
    retry = [s for s in dict.fromkeys(wanted) if s in table and table.get(s).disturbed]
    todo = [*missing, *retry]
    log.info(
        "latency table %s: %d kernels wanted, %d present, %d to measure%s", out,
        len(dict.fromkeys(wanted)), len(table), len(todo),
        f" ({len(retry)} of them timed before only while other processes were busy)"
        if retry else "",
    )  # fmt: skip

    def timed(factories: dict, budget: float, step: Callable[[object], None] | None) -> Timing:
        return time_interleaved(
            factories, backend=backend, device=dev, threads=n_threads, min_time=budget,
            rounds=settings.rounds, statistic=settings.statistic, on_round=step,
        )  # fmt: skip

    def measure(batch: list[OpSpec], step: Callable[[object], None] | None = None) -> Timing:
        factories = {s: (lambda s=s: (build_module(s), example_input(s))) for s in batch}
        timing = timed(factories, settings.min_time, step)
        for spec, m in timing.measurements.items():
            old = table.entries.get(spec.key())
            # another process only slows a call: of two disturbed timings the faster is truer
            keep_old = old is not None and old.disturbed and m.disturbed and old.ms < m.ms
            table.add(spec, old if keep_old else m)
        return timing

    steps = iter(range(len(todo) * settings.rounds))
    bar = progress_bar(
        steps, desc="measuring kernels", unit="kernel-round", enabled=progress,
        total=len(todo) * settings.rounds,
    )  # fmt: skip
    ticks = iter(bar)
    for start in range(0, len(todo), max(1, save_every)):
        measure(todo[start : start + max(1, save_every)], lambda _: next(ticks, None))
        table.save(out)
    for _ in ticks:  # the bar's last step is reported when it is left
        pass
    bar.close()
    disturbed = [s for s in todo if table.get(s).disturbed]
    if disturbed and settings.quiet_wait > 0:
        log.warning(
            "latency table %s: %d kernels could only be timed while other processes were busy; "
            "waiting up to %g s for the machine to quiet down to time them again",
            out, len(disturbed), settings.quiet_wait,
        )  # fmt: skip
        if wait_for_quiet(settings.quiet_wait):
            measure(disturbed)
            table.save(out)
            disturbed = [s for s in disturbed if table.get(s).disturbed]
    if disturbed:
        log.warning(
            "latency table %s: %d of %d kernels could only be timed while other processes "
            "were busy (each kept its fastest round, and is marked so in the table); on a "
            "quieter machine run the same command again to time those again",
            out, len(disturbed), len(todo),
        )  # fmt: skip
    if recheck and todo:
        new = set(todo)
        suspects = sorted(
            {s for s, _ in inverted_siblings(table, wanted) if s in new}, key=OpSpec.key
        )
        if suspects:
            before = {s: table.get(s) for s in suspects}
            measure(suspects)
            faster = 0
            for spec, old in before.items():
                if old.ms <= table.get(spec).ms:
                    table.add(spec, old)
                else:
                    faster += 1
            log.info(
                "latency table %s: re-measured %d kernels slower than a larger sibling; "
                "%d of them faster the second time",
                out, len(suspects), faster,
            )  # fmt: skip
    stale = (
        table.self_check is None
        or not table.self_check.passed
        or [n.name for n in table.self_check.networks] != [g.name for g in checked]
    )
    if checked and (todo or stale):
        budget = NETWORK_BUDGET * settings.min_time
        check = _self_check(
            table, checked, height, width, classes, lambda f: timed(f, budget, None)
        )
        if not check.passed and not check.disturbed:
            wrong = [
                g for g, n in zip(checked, check.networks) if n.heldout_error > CHECK_TOLERANCE
            ]
            measure(
                list(
                    dict.fromkeys(
                        s for g in wrong for s in genotype_kernels(g, height, width, classes)
                    )
                )
            )
            check = _self_check(
                table, checked, height, width, classes, lambda f: timed(f, budget, None)
            )
        table.self_check = check
        table.calibration = None if check.disturbed else check.calibration()
        (log.info if check.passed else log.warning)("latency table %s: %s", out, check.describe())
        if not check.passed:
            log.warning(
                "latency table %s: the self-check failed; on a quieter machine run the same "
                "command again (it times the kernels marked disturbed again and repeats the "
                "check), or delete the file to rebuild it all", out,
            )  # fmt: skip
    table.save(out)
    return table


def _self_check(
    table: LatencyTable,
    genotypes: list[Genotype],
    height: int,
    width: int,
    classes: int,
    timed: Callable[[dict], Timing],
) -> SelfCheck:
    """Time ``genotypes`` end to end and judge the table's predictions of them."""
    x = network_input(height, width)
    factories = {g.name: (lambda g=g: (Network(g, classes), x)) for g in genotypes}
    timing = timed(factories)
    sums = [genotype_latency(g, table, height=height, width=width, num_classes=classes,
                             calibrated=False) for g in genotypes]  # fmt: skip
    meas = [timing.measurements[g.name] for g in genotypes]
    return SelfCheck.of(
        [g.name for g in genotypes], sums, [m.ms for m in meas], [m.disturbed for m in meas],
        timing.others_cores_max,
    )  # fmt: skip

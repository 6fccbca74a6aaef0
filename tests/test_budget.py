"""The latency window in its three forms (ms, FPS, relative to an architecture), lambda's
bound, and what a search records about the window."""

import json
import logging
from pathlib import Path

import pytest
from conftest import REFERENCE_DIR
from test_search import KIND_COST, H, W, _cfg, fake_table

from fasterseg.config import BudgetConfig, config_from_dict, load_config
from fasterseg.data.synth import generate_dataset
from fasterseg.engine.search import resolve_window, search
from fasterseg.errors import ConfigError
from fasterseg.latency import Measurement, genotype_kernels
from fasterseg.models import load_genotype
from fasterseg.reference import import_reference_table

ROOT = Path(__file__).resolve().parents[1]
NPY = REFERENCE_DIR / "latency_lookup_table.npy"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, train=6, val=2, size=(H, W), seed=2)
    return root


def _budget(**keys):
    return config_from_dict({"budget": keys}, "b.yaml").budget


def _student_table(space):
    """``fake_table(space)`` plus the published student's kernels (19 classes), priced alike;
    returns the table and the student's latency summed by hand from the same price rule."""
    table = fake_table(space)
    specs = genotype_kernels(load_genotype("fasterseg-student"), H, W, 19)
    ms = 0.0
    for spec in specs:
        cost = KIND_COST.get(spec.kind, 1.0) * spec.c_in * spec.c_out * spec.h * spec.w
        table.add(spec, Measurement(ms=cost / 1e5 + 0.01, std=0.0, n=1))
        ms += cost / 1e5 + 0.01
    return table, ms


@pytest.fixture(scope="module")
def student_table():
    return _student_table(_cfg(Path("unused")).space)


def test_ms_and_fps_windows_resolve_by_hand(student_table):
    table, _ = student_table
    assert resolve_window(_budget(min_ms=10, max_ms=20), table, H, W, 19) == (10.0, 20.0)
    # 100 FPS is 10 ms (the upper edge), 200 FPS is 5 ms (the lower edge)
    assert resolve_window(_budget(min_fps=100, max_fps=200), table, H, W, 19) == (5.0, 10.0)
    # nothing given: the paper's 155-175 FPS
    assert resolve_window(BudgetConfig(), table, H, W, 19) == (1000 / 175, 1000 / 155)


def test_relative_window_scales_the_named_architectures_latency(student_table, tmp_path):
    table, student_ms = student_table
    budget = _budget(relative_to="fasterseg-student", relative_min=0.9, relative_max=1.1)
    low, high = resolve_window(budget, table, H, W, 19)
    assert low == pytest.approx(0.9 * student_ms, rel=1e-12)
    assert high == pytest.approx(1.1 * student_ms, rel=1e-12)
    # a genotype file names the same architecture just as well
    path = tmp_path / "student.json"
    load_genotype("fasterseg-student").save(path)
    by_file = _budget(relative_to=str(path), relative_min=0.9, relative_max=1.1)
    assert resolve_window(by_file, table, H, W, 19) == (low, high)


def test_relative_window_errors_name_the_key(student_table):
    table, _ = student_table
    missing = _budget(relative_to="no-such-arch.json", relative_min=0.9, relative_max=1.1)
    with pytest.raises(ConfigError, match=r"^budget\.relative_to: no-such-arch\.json: no such"):
        resolve_window(missing, table, H, W, 19)
    # a table without the architecture's kernels (another resolution)
    published = _budget(relative_to="fasterseg-student", relative_min=0.9, relative_max=1.1)
    with pytest.raises(ConfigError, match=r"^budget\.relative_to 'fasterseg-student': the latency"):
        resolve_window(published, table, 2 * H, 2 * W, 19)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"min_ms": 5, "max_ms": 6, "min_fps": 150, "max_fps": 170},
            "budget: the latency window is given twice (budget.min_ms/budget.max_ms and "
            "budget.min_fps/budget.max_fps); keep one",
        ),
        (
            {"max_ms": 6, "relative_to": "fasterseg-student", "relative_min": 0.9},
            "budget: the latency window is given twice (budget.min_ms/budget.max_ms and "
            "budget.relative_to/budget.relative_min/budget.relative_max); keep one",
        ),
        (
            {"min_fps": 150},
            "budget: budget.min_fps/budget.max_fps go together; got min_fps=150.0, max_fps=None",
        ),
        (
            {"relative_min": 0.9, "relative_max": 1.1},
            "budget: budget.relative_to/budget.relative_min/budget.relative_max go together; "
            "got relative_to='', relative_min=0.9, relative_max=1.1",
        ),
        (
            {"min_ms": 6, "max_ms": 5},
            "budget: expected 0 <= budget.min_ms < budget.max_ms, got 6.0 and 5.0",
        ),
        (
            {"min_fps": 0, "max_fps": 5},
            "budget: expected 0 < budget.min_fps < budget.max_fps, got 0.0 and 5.0",
        ),
        (
            {"latency_weight": 2.0, "max_latency_weight": 1.0},
            "budget: expected 0 <= budget.latency_weight <= budget.max_latency_weight, "
            "got 2.0 and 1.0",
        ),
    ],
)
def test_window_forms_are_one_at_a_time_and_whole(keys, message):
    with pytest.raises(ConfigError) as err:
        _budget(**keys)
    assert str(err.value) == f"b.yaml: {message}"  # the file, then the keys


def test_cityscapes_recipe_window_on_the_1080ti_table_is_the_papers():
    cfg = load_config(ROOT / "search" / "cityscapes.yaml")
    table = import_reference_table(NPY)
    low, high = resolve_window(
        cfg.budget, table, cfg.latency.height, cfg.latency.width, cfg.space.num_classes
    )
    # the paper's 155-175 FPS, within 1%
    assert low == pytest.approx(1000 / 175, rel=0.01)
    assert high == pytest.approx(1000 / 155, rel=0.01)


def test_camvid_recipe_factors_give_its_window_on_the_pixel_scaled_student():
    """The arithmetic of search/camvid.yaml's comment: the student's 1080Ti latency scaled by
    the pixel count to 704x960, times the recipe's factors, is 2.5-3.0 ms (within 1%)."""
    cfg = load_config(ROOT / "search" / "camvid.yaml")
    table = import_reference_table(NPY)
    full = resolve_window(
        BudgetConfig(relative_to="fasterseg-student", relative_min=1.0, relative_max=2.0),
        table,
        1024,
        2048,
        19,
    )[0]
    estimate = full * (cfg.latency.height * cfg.latency.width) / (1024 * 2048)
    assert cfg.budget.relative_min * estimate == pytest.approx(2.5, rel=0.01)
    assert cfg.budget.relative_max * estimate == pytest.approx(3.0, rel=0.01)


def test_search_records_the_window_caps_lambda_and_says_it_was_never_reached(
    data, tmp_path, student_table, caplog
):
    """A relative window no candidate can be inside (far below the student's latency):
    lambda doubles from 0.01 to its cap 0.02 and stays; every epoch records the resolved
    window; the history and the log say that the window was never reached."""
    table, student_ms = student_table
    budget = {
        "latency_weight": 0.01,
        "max_latency_weight": 0.02,
        "relative_to": "fasterseg-student",
        "relative_min": 1e-9,
        "relative_max": 2e-9,
    }
    cfg = _cfg(data, {"budget": budget}, epochs=3, iters_per_epoch=1)
    with caplog.at_level(logging.WARNING, logger="fasterseg.engine.search"):
        search(cfg, tmp_path, table, progress=False)
    history = json.loads((tmp_path / "history.json").read_text())
    rows = history["epochs"]
    assert [r["lambda"] for r in rows] == [0.01, 0.02, 0.02]
    for row in rows:
        assert row["window_ms"] == pytest.approx([1e-9 * student_ms, 2e-9 * student_ms])
        assert row["in_window"] is False
    assert history["window_reached"] is False
    assert "never entered the window" in caplog.text


def test_search_says_when_the_window_was_reached(data, tmp_path, student_table, caplog):
    table, _ = student_table
    budget = {"min_ms": 0.0, "max_ms": 1e9}
    cfg = _cfg(data, {"budget": budget}, epochs=1, iters_per_epoch=1)
    with caplog.at_level(logging.WARNING, logger="fasterseg.engine.search"):
        search(cfg, tmp_path, table, progress=False)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["epochs"][0]["window_ms"] == [0.0, 1e9]
    assert history["epochs"][0]["in_window"] is True and history["window_reached"] is True
    assert "never entered the window" not in caplog.text


def test_the_latency_term_moves_a_slow_student_into_its_window(data, tmp_path):
    """Seed 0, arch lr 0.05, four search epochs of five iterations, the window (0, 12.5) ms on
    the priced table: with lambda 100 the chosen student is predicted above the window after
    the first epoch and inside it from the second on; with the term off (lambda 0) the same
    search never enters it. Seeds 0, 1 and 2 gave 11.07-11.85 ms at the end of five epochs with
    the term and 13.76 ms at the lowest of any epoch without it (the upper edge: 12.5)."""
    runs = {}
    for lam in (100.0, 0.0):
        budget = {"latency_weight": lam, "min_ms": 0.0, "max_ms": 12.5}
        sections = {"arch": {"lr": 0.05}, "budget": budget, "runtime": {"seed": 0}}
        cfg = _cfg(data, sections, epochs=4, iters_per_epoch=5)
        runs[lam] = search(cfg, tmp_path / str(lam), fake_table(cfg.space), progress=False)

    def chosen_ms(row):
        return row["student"]["candidates"][row["student"]["chosen"]]["latency_ms"]

    with_term, without = runs[100.0]["epochs"], runs[0.0]["epochs"]
    assert chosen_ms(with_term[0]) >= 12.5 and not with_term[0]["in_window"]
    assert all(r["in_window"] and chosen_ms(r) < 12.5 for r in with_term[1:])
    assert runs[100.0]["window_reached"]
    assert not runs[0.0]["window_reached"]
    assert all(chosen_ms(r) >= 12.5 for r in without)
    # the term pulls the student down: every epoch after the first is faster than without it
    assert all(chosen_ms(a) < chosen_ms(b) for a, b in zip(with_term[1:], without[1:]))


def test_a_relative_window_checks_its_table_on_the_papers_space_too():
    """The table of a search with a relative window predicts a published network: its
    self-check then also times networks of the paper's space; an ms window adds none, and
    neither does a search of the paper's space itself."""
    from dataclasses import replace

    from fasterseg.config import SpaceConfig
    from fasterseg.engine.search import table_check_spaces

    cfg = load_config(ROOT / "fasterseg" / "recipes" / "search_demo.yaml")
    assert cfg.budget.relative_to and cfg.space != SpaceConfig()
    assert table_check_spaces(cfg) == (replace(SpaceConfig(), num_classes=cfg.space.num_classes),)
    window = {"relative_to": "", "relative_min": None, "relative_max": None}
    absolute = replace(cfg, budget=replace(cfg.budget, **window, min_ms=10.0, max_ms=20.0))
    assert table_check_spaces(absolute) == ()
    paper = replace(cfg, space=SpaceConfig(num_classes=cfg.space.num_classes))
    assert table_check_spaces(paper) == ()

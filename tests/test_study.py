"""`fasterseg study` end to end at tiny sizes: every statistic recomputed here with scipy from
the per-run metrics the study wrote; a killed study resumes to the same numbers; the
matched-latency sampler; the sentences that draw conclusions follow the numbers."""

import json
import math
import random
import shutil

import numpy as np
import pytest
from scipy import stats
from test_pipeline import TINY as PIPELINE_TINY

from fasterseg.cli import main
from fasterseg.config import SpaceConfig, load_pipeline_config
from fasterseg.decode import encode, random_one_hot, trace
from fasterseg.errors import ConfigError
from fasterseg.study import sample_matched
from fasterseg.study.run import random_student
from fasterseg.study.stats import conclusions, paired_effect, rank_correlation, search_vs_random

# the reduced pipeline of test_pipeline.py, with a study section
TINY = PIPELINE_TINY + "study: {{random_archs: 2, seeds: [0, 1], latency_tolerance: 0.5}}\n"


def _final(out, model, seed):
    path = out / "study" / "runs" / model / f"seed{seed}" / "metrics.json"
    return json.loads(path.read_text())["final"]["miou"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    cfg = tmp / "study.yaml"
    cfg.write_text(TINY.format(root=tmp / "data"))
    out = tmp / "out"
    assert main(["study", "--config", str(cfg), "--out", str(out)]) == 0
    return cfg, out, json.loads((out / "study.json").read_text())


def test_every_statistic_matches_scipy_from_the_runs(study):
    _, out, result = study
    seeds = [0, 1]
    models = result["models"]
    randoms = sorted(m for m in models if m.startswith("random-"))
    assert set(models) == {"searched", "searched_distilled", "published", *randoms}
    assert len(randoms) == 2
    runs = {m: [_final(out, m, s) for s in seeds] for m in models}
    for m, values in runs.items():
        mi = models[m]["miou"]
        assert mi["values"] == pytest.approx(values, abs=0)
        mean = float(np.mean(values))
        low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=stats.sem(values))
        assert mi["mean"] == pytest.approx(mean, rel=1e-12)
        assert mi["std"] == pytest.approx(float(np.std(values, ddof=1)), rel=1e-9, abs=1e-15)
        if mi["std"] > 0:
            assert mi["ci"] == pytest.approx([low, high], rel=1e-9)
        assert models[m]["latency_ms_predicted"] > 0 and models[m]["latency_ms_measured"] > 0
    # rank: 1 + the random architectures whose mean is strictly higher
    s_mean = np.mean(runs["searched"])
    r_means = [np.mean(runs[m]) for m in randoms]
    search = result["search"]
    assert search["rank"] == 1 + sum(r > s_mean for r in r_means)
    assert search["of"] == 3
    assert search["rank_p"] == pytest.approx((1 + sum(r >= s_mean for r in r_means)) / 3)
    welch = stats.ttest_ind(runs["searched"], r_means, equal_var=False, alternative="greater")
    if math.isfinite(welch.pvalue):
        assert search["welch_p"] == pytest.approx(welch.pvalue, rel=1e-9)
    # distillation, paired by seed
    d = np.array(runs["searched_distilled"]) - np.array(runs["searched"])
    dist = result["distillation"]
    assert dist["differences"] == pytest.approx(list(d), abs=1e-15)
    assert dist["mean"] == pytest.approx(d.mean(), abs=1e-15)
    t = stats.ttest_rel(runs["searched_distilled"], runs["searched"])
    if math.isfinite(t.pvalue):
        assert dist["t_p"] == pytest.approx(t.pvalue, rel=1e-9)
    if np.any(d != 0):
        w = stats.wilcoxon(runs["searched_distilled"], runs["searched"])
        assert dist["wilcoxon_p"] == pytest.approx(w.pvalue, rel=1e-9)
    # spread among the random architectures
    within = np.sqrt(np.mean([np.var(runs[m], ddof=1) for m in randoms]))
    assert result["spread"]["seed_std"] == pytest.approx(within, rel=1e-9, abs=1e-15)
    assert result["spread"]["between_std"] == pytest.approx(np.std(r_means, ddof=1), abs=1e-12)
    # the sampled architectures lie in the window they were sampled for
    low, high = result["sampling"]["window_ms"]
    searched_ms = models["searched"]["latency_ms_predicted"]
    assert (low, high) == pytest.approx((0.5 * searched_ms, 1.5 * searched_ms), rel=1e-9)
    for m in randoms:
        assert low <= models[m]["latency_ms_predicted"] <= high
    assert result["sampling"]["draws"] >= 2
    assert 0 <= result["chance_miou"] < 1
    # one-shot ranking: every random architecture is a single path of the supernet, the
    # published student (other layers) is not; tau and rho from the numbers the study wrote
    o = result["one_shot"]
    assert set(randoms) <= set(o["models"]) and "searched_distilled" not in o["models"]
    assert "published" in o["not_scored"] and models["published"]["one_shot_miou"] is None
    shot = [models[m]["one_shot_miou"] for m in o["models"]]
    trained = [np.mean(runs[m]) for m in o["models"]]
    assert all(0 <= v <= 1 for v in shot) and o["bn_images"] > 0
    tau, rho = stats.kendalltau(shot, trained), stats.spearmanr(shot, trained)
    if math.isfinite(tau.pvalue):
        assert o["kendall_tau"] == pytest.approx(tau.statistic, rel=1e-9)
        assert o["kendall_p"] == pytest.approx(tau.pvalue, rel=1e-9)
        assert o["spearman_rho"] == pytest.approx(rho.statistic, rel=1e-9)
        assert o["spearman_p"] == pytest.approx(rho.pvalue, rel=1e-9)


def test_the_report_and_plots_are_written(study):
    _, out, result = study
    md = (out / "study.md").read_text()
    assert "95% interval" in md and "## Searched student against random" in md
    for line in result["conclusions"]:
        assert line in md
    for rel in result["plots"].values():
        assert (out / rel).stat().st_size > 10_000


def test_a_killed_study_resumes_to_the_same_numbers(study, capsys):
    cfg, out, result = study
    # a run lost mid-way: its folder gone, as if the study had been killed while it trained
    shutil.rmtree(out / "study" / "runs" / "random-01" / "seed1")
    capsys.readouterr()
    assert main(["study", "--config", str(cfg), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "random-01 seed 1: training" in said
    assert said.count(": training") == 1  # every other run was complete and skipped
    again = json.loads((out / "study.json").read_text())
    for key in ("models", "search", "distillation", "spread", "sampling", "one_shot"):
        a, b = again[key], result[key]
        if key == "models":  # measured latency is timed anew; everything else is equal
            for m in a:
                a[m].pop("latency_ms_measured"), b[m].pop("latency_ms_measured")
        assert a == b, key


def test_matched_sampling_keeps_only_the_window_and_counts_draws():
    space = SpaceConfig(layers=6, fch=4, width_choices=(0.5, 1.0))

    def macs_like(g):  # any deterministic latency: here the summed widths of every layer
        return sum(sum(b.widths) for b in g.branches)

    rng = random.Random(1)
    values = [macs_like(random_student(space, rng, (2, rng.choice((0, 1))))) for _ in range(200)]
    low, high = np.percentile(values, [40, 60])
    kept, draws = sample_matched(space, macs_like, (low, high), 5, seed=3)
    assert len(kept) == 5 and draws >= 5
    assert all(low <= macs_like(g) <= high for g in kept)
    assert [g.name for g in kept] == [f"random-{i:02d}" for i in range(5)]
    again, draws_again = sample_matched(space, macs_like, (low, high), 5, seed=3)
    assert again == kept and draws_again == draws
    with pytest.raises(ConfigError, match=r"only 0 of 2 random architectures.*study.max_draws"):
        sample_matched(space, macs_like, (-2.0, -1.0), 2, max_draws=50)


def test_random_students_are_single_paths_of_the_supernet():
    """Every random student runs one operator per cell and one width per output, so it
    encodes onto the supernet without a disagreement; no layer is a skip; its branches end
    where asked; its down layers are spread over the layers (not all late)."""
    space = SpaceConfig(layers=8, fch=4, width_choices=(0.5, 0.75, 1.0))
    rng = random.Random(0)
    firsts = []
    for n in range(60):
        lasts = (2, n % 2)
        g = random_student(space, rng, lasts)
        assert tuple(b.last_scale for b in g.branches) == lasts
        assert all(op != "skip" for b in g.branches for op in b.ops)
        base = random_one_hot(8, space.ops, space.width_choices, random.Random(n))
        pinned = encode(g, base, ops=space.ops, width_choices=space.width_choices)
        back = trace(pinned, lasts, name=g.name, ops=space.ops, fch=space.fch,
                     stem_width=g.stem_width, head_width=g.head_width,
                     width_choices=space.width_choices)  # fmt: skip
        assert back.branches == g.branches
        firsts.append(g.branches[0].strides().index(2))
    assert min(firsts) <= 1 and max(firsts) >= 5


def test_conclusions_follow_the_numbers():
    # the searched model far above eight random ones, ranked first: significant by both tests
    strong = search_vs_random([0.50, 0.51, 0.52], [0.30, 0.31, 0.29, 0.32, 0.30, 0.28, 0.31, 0.30,
                                                   0.29, 0.33, 0.30, 0.31, 0.32, 0.30, 0.29,
                                                   0.31, 0.30, 0.28, 0.30, 0.31])  # fmt: skip
    assert strong["rank"] == 1 and strong["rank_p"] == pytest.approx(1 / 21)
    text = conclusions({"search": strong})
    assert text[0].startswith("The searched student beats random architectures")
    # with 8 random architectures the rank test cannot reach 5%, whatever the numbers
    weak = search_vs_random([0.50, 0.51, 0.52], [0.30] * 4 + [0.31] * 4)
    text = conclusions({"search": weak})
    assert text[0].startswith("No significant evidence at the 5% level")
    assert "cannot go below p = 0.111" in text[1]
    # a paired effect the tests cannot tell from noise
    noisy = {**paired_effect([0.30, 0.32, 0.31], [0.31, 0.30, 0.32]), "alpha": 0.05}
    assert "no significant difference at the 5% level" in conclusions({"distillation": noisy})[0]
    # one-shot ranking: the verdict follows Kendall's p-value against alpha
    x, y = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.2, 0.3, 0.35, 0.5, 0.55, 0.7]
    agree = {"one_shot": rank_correlation(x, y), "alpha": 0.05}
    assert "a significant positive rank correlation at the 5% level" in conclusions(agree)[0]
    assert "trained mIoU of the 6 architectures" in conclusions(agree)[0]
    reverse = {"one_shot": rank_correlation(x, y[::-1]), "alpha": 0.05}
    assert "a significant negative rank correlation" in conclusions(reverse)[0]
    mixed = {"one_shot": rank_correlation(x, [0.3, 0.1, 0.5, 0.2, 0.4, 0.35]), "alpha": 0.05}
    assert "no significant rank correlation at the 5% level" in conclusions(mixed)[0]


def test_the_demo_study_recipe_loads():
    cfg = load_pipeline_config(None, default="study_demo.yaml")
    assert cfg.study.random_archs >= 8 and len(cfg.study.seeds) >= 3
    assert cfg.search == load_pipeline_config().search  # the demo pipeline's own search
    with pytest.raises(ConfigError, match=r"study\.seeds must be at least two"):
        load_pipeline_config(None, ["study.seeds=[1]"], default="study_demo.yaml")


def test_the_pipeline_report_carries_the_study(study):
    cfg, out, result = study
    assert main(["pipeline", "--config", str(cfg), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["study"]["conclusions"] == result["conclusions"]
    md = (out / "report.md").read_text()
    assert "## Searched student against random architectures" in md
    assert all(line in md for line in result["conclusions"])


def test_without_the_supernet_checkpoint_no_architecture_gets_a_one_shot_score(study, capsys):
    cfg, out, result = study
    ckpt = out / "search" / "checkpoint.pt"
    kept = ckpt.with_suffix(".kept")
    ckpt.rename(kept)
    (out / "study" / "one_shot.json").unlink()
    try:
        assert main(["study", "--config", str(cfg), "--out", str(out)]) == 0
    finally:
        kept.rename(ckpt)
    assert "checkpoint.pt is missing, so no architecture gets a one-shot score" in (
        capsys.readouterr().out
    )
    again = json.loads((out / "study.json").read_text())
    assert set(again["one_shot"]["not_scored"]) == set(result["models"]) - {"searched_distilled"}
    assert all(m["one_shot_miou"] is None for m in again["models"].values())
    assert again["one_shot"]["kendall_tau"] is None
    assert not (out / "study" / "one_shot.json").exists()

"""The study's statistics, from numbers alone (scipy): no training, no files.

Every function takes per-run figures (one mIoU per seed) and returns plain dicts that go
into ``study.json`` as they are; a value a test cannot give (a spread of one number, a
Wilcoxon test of differences that are all zero) is ``None`` with the reason beside it,
never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats


def _num(x: float) -> float | None:
    """``x`` as a float, or None when it is not finite (JSON has no NaN)."""
    x = float(x)
    return x if math.isfinite(x) else None


def summary(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean, sample standard deviation (seed to seed) and the two-sided Student-t interval
    of the mean at ``confidence`` of one model's per-seed figures."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else None
    ci = None
    if n > 1:
        half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
        ci = [mean - half, mean + half]
    return {"n": n, "values": [float(x) for x in v], "mean": mean, "std": std, "ci": ci}


def spread(per_arch: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Seed-to-seed against architecture-to-architecture spread of a group of models.

    ``seed_std`` pools the within-architecture variances (their mean, each with ddof 1);
    ``between_std`` is the standard deviation (ddof 1) of the architectures' means. A study
    can tell architectures apart only when the first is clearly below the second.
    """
    groups = [np.asarray(v, dtype=float) for v in per_arch.values()]
    within = [g.var(ddof=1) for g in groups if len(g) > 1]
    means = np.array([g.mean() for g in groups])
    return {
        "seed_std": _num(math.sqrt(np.mean(within))) if within else None,
        "between_std": _num(means.std(ddof=1)) if len(means) > 1 else None,
    }


def search_vs_random(
    searched: Sequence[float], random_means: Sequence[float], alpha: float = 0.05
) -> dict[str, Any]:
    """Is the searched architecture better than random ones of the same latency?

    Two one-sided answers, because each makes a different assumption:

    * the **rank test**: under the null hypothesis the searched architecture is one more
      draw from the matched random distribution, so its rank among the K + 1 means is
      uniform and ``P(rank <= r) = r / (K + 1)`` exactly, with no assumption on the shape of
      mIoU; ties count against the searched one. Its smallest possible p is ``1 / (K + 1)``
      (``rank_p_min``), so K must be at least ``1 / alpha - 1`` for it to reach ``alpha``.
    * **Welch's t-test** (``alternative="greater"``) of the searched architecture's per-seed
      figures against the random architectures' means: is its expected mIoU above the mean
      of the matched random population, assuming both are roughly normal, with unequal
      variances (seed noise on one side, architecture spread on the other).
    """
    s = np.asarray(searched, dtype=float)
    r = np.asarray(random_means, dtype=float)
    m = float(s.mean())
    k = len(r)
    rank = 1 + int((r > m).sum())
    rank_p = (1 + int((r >= m).sum())) / (k + 1)
    welch = stats.ttest_ind(s, r, equal_var=False, alternative="greater")
    return {
        "searched_mean": m,
        "random_mean": float(r.mean()),
        "rank": rank,
        "of": k + 1,
        "rank_p": rank_p,
        "rank_p_min": 1 / (k + 1),
        "welch_t": _num(welch.statistic),
        "welch_p": _num(welch.pvalue),
        "alpha": alpha,
    }


def paired_effect(
    treated: Sequence[float], control: Sequence[float], confidence: float = 0.95
) -> dict[str, Any]:
    """The effect of a treatment (distillation) paired by seed: the mean of the differences
    ``treated - control`` with its two-sided t-interval at ``confidence``, the paired t-test
    and the Wilcoxon signed-rank test (both two-sided: distillation could also hurt)."""
    a = np.asarray(treated, dtype=float)
    b = np.asarray(control, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired figures must have one per seed each, got {len(a)} and {len(b)}")
    d = a - b
    out: dict[str, Any] = {"differences": [float(x) for x in d], **_ci_of(d, confidence)}
    t = stats.ttest_rel(a, b)
    out["t"], out["t_p"] = _num(t.statistic), _num(t.pvalue)
    if np.all(d == 0):
        out["wilcoxon"], out["wilcoxon_p"] = None, None
        out["wilcoxon_note"] = "every difference is zero"
    else:
        w = stats.wilcoxon(a, b)
        out["wilcoxon"], out["wilcoxon_p"] = _num(w.statistic), _num(w.pvalue)
        # with n pairs the exact two-sided test cannot go below 2 / 2^n
        out["wilcoxon_p_min"] = 2 / 2 ** int((d != 0).sum())
    return out


def _ci_of(d: np.ndarray, confidence: float) -> dict[str, Any]:
    s = summary(d, confidence)
    return {"mean": s["mean"], "std": s["std"], "ci": s["ci"]}


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Kendall's tau and Spearman's rho of two rankings, with their two-sided p-values; all
    None below two pairs, where no ranking is defined."""
    if len(x) < 2:
        return {k: None for k in ("kendall_tau", "kendall_p", "spearman_rho", "spearman_p")} | {
            "n": len(x)
        }
    tau = stats.kendalltau(x, y)
    rho = stats.spearmanr(x, y)
    return {
        "kendall_tau": _num(tau.statistic),
        "kendall_p": _num(tau.pvalue),
        "spearman_rho": _num(rho.statistic),
        "spearman_p": _num(rho.pvalue),
        "n": len(x),
    }


def conclusions(result: Mapping[str, Any], confidence: float = 0.95) -> list[str]:
    """The report's sentences that draw conclusions, written from the numbers of a study
    result (``search``, ``distillation``, ``one_shot``, ``spread``, ``chance_miou``,
    ``models``)."""
    pct = f"{100 * confidence:g}%"
    lines = []
    s = result.get("search")
    if s:
        level = f"{100 * s['alpha']:g}%"
        welch_ok = s["welch_p"] is not None and s["welch_p"] <= s["alpha"]
        wins = s["rank_p"] <= s["alpha"] and welch_ok
        verdict = (
            f"The searched student beats random architectures of the same predicted latency "
            f"at the {level} level"
            if wins
            else f"No significant evidence at the {level} level that the searched student "
            "beats random architectures of the same predicted latency"
        )
        lines.append(
            f"{verdict}: it ranks {s['rank']} of {s['of']} by mean mIoU "
            f"({100 * s['searched_mean']:.2f} against a random mean of "
            f"{100 * s['random_mean']:.2f}); rank test p = {s['rank_p']:.3f}, Welch's one-sided "
            f"t-test p = {_p(s['welch_p'])}."
        )
        if s["rank_p_min"] > s["alpha"]:
            lines.append(
                f"With {s['of'] - 1} random architectures the rank test cannot go below "
                f"p = {s['rank_p_min']:.3f}; at least {math.ceil(1 / s['alpha']) - 1} are needed "
                f"to reach {level}."
            )
    d = result.get("distillation")
    if d:
        level = f"{100 * d['alpha']:g}%"
        sig = (d["t_p"] is not None and d["t_p"] <= d["alpha"]) and (
            d["wilcoxon_p"] is not None and d["wilcoxon_p"] <= d["alpha"]
        )
        ci = d["ci"]
        span = f" ({pct} interval {100 * ci[0]:+.2f} to {100 * ci[1]:+.2f})" if ci else ""
        lines.append(
            f"Distillation changes the searched student's mIoU by {100 * d['mean']:+.2f} points "
            f"on average over {len(d['differences'])} seeds{span}: "
            + (
                f"a significant {'gain' if d['mean'] > 0 else 'loss'} at the {level} level"
                if sig
                else f"no significant difference at the {level} level"
            )
            + f" (paired t-test p = {_p(d['t_p'])}, Wilcoxon signed-rank p = "
            f"{_p(d['wilcoxon_p'])})."
        )
    o = result.get("one_shot")
    if o and o.get("kendall_tau") is not None:
        level = f"{100 * result['alpha']:g}%"
        sig = o["kendall_p"] is not None and o["kendall_p"] <= result["alpha"]
        sign = "positive" if o["kendall_tau"] > 0 else "negative"
        lines.append(
            f"The supernet's one-shot mIoU against the trained mIoU of the {o['n']} "
            f"architectures it scored: Kendall tau = {o['kendall_tau']:.2f} "
            f"(p = {_p(o['kendall_p'])}), "
            + (
                f"a significant {sign} rank correlation at the {level} level"
                if sig
                else f"no significant rank correlation at the {level} level"
            )
            + "."
        )
    sp = result.get("spread")
    if sp and sp.get("seed_std") is not None and sp.get("between_std") is not None:
        relation = "smaller" if sp["seed_std"] < sp["between_std"] else "not smaller"
        lines.append(
            f"Among the random architectures the seed-to-seed spread of mIoU (pooled std "
            f"{100 * sp['seed_std']:.2f} points) is {relation} than the spread between "
            f"architectures (std of their means {100 * sp['between_std']:.2f} points)."
        )
    chance = result.get("chance_miou")
    models = result.get("models") or {}
    if chance is not None and models:
        worst = min(m["miou"]["mean"] for m in models.values())
        above = sum(m["miou"]["ci"] is not None and m["miou"]["ci"][0] > chance
                    for m in models.values())  # fmt: skip
        lines.append(
            f"{above} of {len(models)} models lie above chance ({100 * chance:.2f} mIoU, every "
            f"pixel the most frequent class) with their whole {pct} interval; the lowest "
            f"mean is {100 * worst:.2f}."
        )
    return lines


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"

"""``study.json`` / ``study.md`` and the study's plots; the section the pipeline report adds
when a study exists. Every sentence that draws a conclusion comes from
:func:`fasterseg.study.stats.conclusions`, i.e. from the numbers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, atomic_write_text
from ..report import _json_safe, _new_figure, _num, _save_png, _table
from .stats import conclusions

PLOTS = {
    "study_latency_vs_miou": "plots/study_latency_vs_miou.png",
    "study_distillation": "plots/study_distillation.png",
    "study_one_shot": "plots/study_one_shot.png",
}


def _order(result: Mapping[str, Any]) -> list[str]:
    rank = {"searched": 0, "searched (distilled)": 1, "published": 2, "random": 3}
    return sorted(result["models"], key=lambda m: (rank[result["models"][m]["kind"]], m))


def _interval(m: Mapping[str, Any]) -> str:
    ci = m["miou"]["ci"]
    return "-" if ci is None else f"{100 * ci[0]:.2f} to {100 * ci[1]:.2f}"


def render_section(result: Mapping[str, Any], level: int = 2, prefix: str = "") -> list[str]:
    """Markdown lines of a study: its table (like the study's Table 1, with intervals), the
    tests and the conclusions drawn from them; plot paths are relative to ``prefix``."""
    h = "#" * level
    pct = f"{100 * result['confidence']:g}%"
    samp = result["sampling"]
    lines = [f"{h} Searched student against random architectures and the published one", ""]
    lines += [
        f"Every model was trained with the same recipe once per seed "
        f"({', '.join(map(str, result['seeds']))}); mIoU is the {result['metric']}. "
        f"The {samp['accepted']} random architectures were drawn from the search space "
        f"{samp['matched']} ({samp['window_ms'][0]:.2f}-{samp['window_ms'][1]:.2f} ms "
        f"predicted at {result['resolution'][0]}x{result['resolution'][1]}): "
        f"{samp['draws']} draws, {samp['draws_per_accepted']:.1f} per accepted one.",
        "",
    ]
    rows = []
    for key in _order(result):
        m = result["models"][key]
        rows.append(
            [
                key,
                m["kind"],
                _num(m["miou"]["mean"], 2, 100),
                _interval(m),
                _num(m["miou"]["std"], 2, 100),
                str(m["miou"]["n"]),
                _num(m["latency_ms_predicted"]),
                _num(m["latency_ms_measured"]),
                _num(m["params"], 2, 1e-6),
                _num(m.get("one_shot_miou"), 2, 100),
            ]
        )
    lines += _table(
        ["model", "kind", "mIoU (%)", f"{pct} interval", "seed std", "seeds",
         "predicted ms", "measured ms", "params (M)", "one-shot mIoU (%)"],
        rows,
        "llrrrrrrrr",
    )  # fmt: skip
    s = result.get("search")
    if s:
        lines += [
            "",
            f"Searched student: rank {s['rank']} of {s['of']} by mean mIoU; rank test "
            f"p = {s['rank_p']:.3f} (exact under the hypothesis that it is one more random "
            f"draw; at least {s['rank_p_min']:.3f}); Welch's one-sided t-test of its seeds "
            f"against the random means: t = {_num(s['welch_t'])}, p = {_num(s['welch_p'], 3)}.",
        ]
    d = result.get("distillation")
    if d:
        diffs = ", ".join(f"{100 * x:+.2f}" for x in d["differences"])
        ci = d["ci"]
        lines += [
            "",
            f"Distillation, paired by seed (distilled - alone, points): {diffs}; mean "
            f"{100 * d['mean']:+.2f}"
            + (f", {pct} interval {100 * ci[0]:+.2f} to {100 * ci[1]:+.2f}" if ci else "")
            + f"; paired t-test t = {_num(d['t'])}, p = {_num(d['t_p'], 3)}; Wilcoxon "
            f"signed-rank W = {_num(d['wilcoxon'], 1)}, p = {_num(d['wilcoxon_p'], 3)}.",
        ]
    o = result.get("one_shot")
    if o:
        lines += [
            "",
            f"One-shot scores: {o['weights']}, each architecture run as one single path"
            + (
                f" after re-estimating its batch-norm statistics on {o['bn_images']} training "
                "images"
                if o["bn_images"]
                else ""
            )
            + f", on the {o['split']} split; against the trained mean mIoU of the {o['n']} "
            f"architectures scored: Kendall tau = {_num(o['kendall_tau'])} "
            f"(p = {_num(o['kendall_p'], 3)}), Spearman rho = {_num(o['spearman_rho'])} "
            f"(p = {_num(o['spearman_p'], 3)}).",
        ]
        lines += [f"- {m}: {'; '.join(v)}." for m, v in o.get("overruled", {}).items()]
        lines += [f"- {m}: not scored, {why}." for m, why in o.get("not_scored", {}).items()]
    sp = result.get("spread") or {}
    lines += [
        "",
        f"Chance (every pixel the most frequent class): {_num(result['chance_miou'], 2, 100)} "
        f"mIoU. Random architectures: seed-to-seed std {_num(sp.get('seed_std'), 2, 100)}, "
        f"between-architecture std {_num(sp.get('between_std'), 2, 100)} points.",
        "",
        f"{h}# Conclusions",
        "",
    ]
    lines += [f"- {c}" for c in conclusions(result, result["confidence"])]
    lines += [""]
    for key, rel in result.get("plots", {}).items():
        lines += [f"![{key}]({prefix}{rel})", ""]
    return lines


def plot_study_latency(result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Mean mIoU (with its interval) against predicted latency: the random cloud, the
    searched and published students marked."""
    fig = _new_figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    style = {
        "random": ("o", "tab:gray", "random (matched latency)"),
        "searched": ("*", "tab:red", "searched student"),
        "searched (distilled)": ("P", "tab:orange", "searched, distilled"),
        "published": ("D", "tab:blue", "published student"),
    }
    seen = set()
    for key in _order(result):
        m = result["models"][key]
        marker, color, label = style[m["kind"]]
        mean = 100 * m["miou"]["mean"]
        ci = m["miou"]["ci"]
        err = None if ci is None else [[mean - 100 * ci[0]], [100 * ci[1] - mean]]
        ax.errorbar(
            [m["latency_ms_predicted"]], [mean], yerr=err, fmt=marker, color=color,
            markersize=10 if m["kind"] != "random" else 6, capsize=3,
            label=None if m["kind"] in seen else label,
        )  # fmt: skip
        seen.add(m["kind"])
    low, high = result["sampling"]["window_ms"]
    ax.axvspan(low, high, color="tab:green", alpha=0.08, label="sampling window")
    chance = result.get("chance_miou")
    if chance is not None:
        ax.axhline(100 * chance, color="black", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel(f"predicted latency (ms) at {result['resolution'][0]}x{result['resolution'][1]}")
    ax.set_ylabel(f"validation mIoU (%), mean and {100 * result['confidence']:g}% interval")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_png(fig, path)


def plot_distillation(result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Per seed, the searched student trained alone and distilled, joined by a line."""
    fig = _new_figure(4.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    alone = result["models"]["searched"]["miou"]["values"]
    distilled = result["models"]["searched_distilled"]["miou"]["values"]
    for seed, a, d in zip(result["seeds"], alone, distilled):
        ax.plot([0, 1], [100 * a, 100 * d], "-o", color="tab:red" if d > a else "tab:blue")
        ax.annotate(f"seed {seed}", (1, 100 * d), textcoords="offset points", xytext=(6, 0),
                    fontsize=8, va="center")  # fmt: skip
    ax.set_xticks([0, 1], ["trained alone", "distilled"])
    ax.set_xlim(-0.3, 1.5)
    ax.set_ylabel("validation mIoU (%)")
    ax.set_title("searched student, paired by seed", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_png(fig, path)


def plot_one_shot(result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Each scored architecture's one-shot mIoU against its trained mean mIoU (with its
    interval), the searched and published students marked."""
    fig = _new_figure(5.2, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    o = result["one_shot"]
    colors = {"random": "tab:gray", "searched": "tab:red", "published": "tab:blue"}
    for key in o["models"]:
        m = result["models"][key]
        mean, ci = 100 * m["miou"]["mean"], m["miou"]["ci"]
        err = None if ci is None else [[mean - 100 * ci[0]], [100 * ci[1] - mean]]
        ax.errorbar(
            [100 * m["one_shot_miou"]], [mean], yerr=err, fmt="o" if m["kind"] == "random"
            else "*", color=colors.get(m["kind"], "black"), capsize=3,
            markersize=6 if m["kind"] == "random" else 11,
        )  # fmt: skip
        if m["kind"] != "random":
            ax.annotate(key, (100 * m["one_shot_miou"], mean), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)  # fmt: skip
    ax.set_xlabel("one-shot mIoU (%), supernet weights")
    ax.set_ylabel(f"trained mIoU (%), mean and {100 * result['confidence']:g}% interval")
    ax.set_title(
        f"Kendall tau {_num(o['kendall_tau'])}, Spearman rho {_num(o['spearman_rho'])}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_png(fig, path)


def write_study(result: dict[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write the plots, ``study.json`` and ``study.md`` in ``out_dir`` (atomically); the
    result gains ``plots`` and ``conclusions``. Returns (json path, md path)."""
    out = Path(out_dir)
    plots = {"study_latency_vs_miou": PLOTS["study_latency_vs_miou"]}
    plot_study_latency(result, out / plots["study_latency_vs_miou"])
    if result.get("distillation"):
        plots["study_distillation"] = PLOTS["study_distillation"]
        plot_distillation(result, out / plots["study_distillation"])
    if (result.get("one_shot") or {}).get("models"):
        plots["study_one_shot"] = PLOTS["study_one_shot"]
        plot_one_shot(result, out / plots["study_one_shot"])
    result["plots"] = plots
    result["conclusions"] = conclusions(result, result["confidence"])
    text = "\n".join(["# fasterseg study", "", *render_section(result, level=2)]) + "\n"
    json_path = atomic_write_json(out / "study.json", _json_safe(result))
    md_path = atomic_write_text(out / "study.md", text)
    return json_path, md_path

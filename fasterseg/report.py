"""Run reports: architecture drawings, latency/mIoU and search plots, report.md and report.json.

The drawings use matplotlib's Agg canvas on a standalone ``Figure`` (no pyplot), so they need
no display and leave the caller's matplotlib backend and open figures alone. matplotlib is
imported inside the plotting functions: importing this module costs nothing.

mIoU and pixel accuracy are fractions in [0, 1] everywhere in the data; plots and tables show
them in percent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arch import stem_channels
from .genotype import Genotype, nf
from .io import atomic_write, atomic_write_json, atomic_write_text

#: Node ids of the stem and of the fusion/head in :class:`LayoutEdge` records.
STEM = -1
HEAD = -2

#: Short operator names as in the paper's Figure 6 (an unknown operator keeps its own name).
OP_SHORT = {
    "skip": "skip",
    "conv": "conv",
    "conv_downup": "zoom",
    "conv_2x": "2x",
    "conv_2x_downup": "zoom2x",
}
_OP_LONG = {
    "skip": "identity",
    "conv": "3x3 conv",
    "conv_downup": "zoomed 3x3 conv",
    "conv_2x": "two 3x3 convs",
    "conv_2x_downup": "zoomed two 3x3 convs",
}
_OP_COLORS = {
    "skip": "#d9d9d9",
    "conv": "#ffed6f",
    "conv_2x": "#fdb462",
    "conv_downup": "#bebada",
    "conv_2x_downup": "#80b1d3",
}
# Fill colours for operators registered by extensions, in order of first appearance.
_EXTRA_OP_COLORS = ("#b3de69", "#fccde5", "#8dd3c7", "#bc80bd", "#ccebc5")
_BRANCH_COLORS = ("#c0392b", "#1e8449", "#6c3483", "#b9770e", "#1a5276")
_SHARED_COLOR = "#303030"
_SCALE_LABELS = ("1/8", "1/16", "1/32")
_KIND_STYLE = {
    "searched": ("o", "#c0392b", "searched here"),
    "reference": ("s", "#1f618d", "published FasterSeg architecture"),
    "peer": ("^", "#1e8449", "peer model"),
}
_MODEL_NAMES = {
    "teacher": "teacher",
    "student_distilled": "student (distilled)",
    "student_trained": "student (trained alone)",
}
_PLOT_TITLES = {
    "latency_vs_miou": "Measured latency vs mIoU",
    "search": "Search trajectory",
    "teacher": "Teacher architecture",
    "student": "Student architecture",
}


@dataclass(frozen=True)
class LayoutNode:
    """One layer of a genotype drawing, placed at its input scale.

    ``node`` is the node id; ``branches`` the branches that run this layer (several when it is
    a shared prefix layer), ``branch`` the first of them; ``x`` the layer index and ``y`` the
    vertical position (lane ``-scale``, plus a per-branch offset inside the lane);
    ``stride`` 2 means the branch goes down one lane after this layer.
    """

    node: int
    branch: int
    branches: tuple[int, ...]
    layer: int
    x: float
    y: float
    scale: int
    op: str
    width: float
    stride: int

    @property
    def shared(self) -> bool:
        """Whether several branches run this layer (it is drawn, and computed, once)."""
        return len(self.branches) > 1


@dataclass(frozen=True)
class LayoutEdge:
    """A connection of the drawing: ``src`` feeds ``dst`` (node ids, or STEM / HEAD).

    ``branches`` are the branches it belongs to; ``down`` marks a stride-2 layer's output.
    """

    src: int
    dst: int
    branches: tuple[int, ...]
    down: bool


@dataclass(frozen=True)
class LayoutTap:
    """A finer feature that branch ``branch`` fuses into its output in the head.

    The feature is the input of node ``node`` (a stride-2 layer) at scale ``scale``; it is the
    branch's last feature at that scale, which the aggregation up to 1/8 concatenates.
    """

    branch: int
    node: int
    scale: int


@dataclass(frozen=True)
class GenotypeLayout:
    """Everything :func:`draw_genotype` draws, as plain records.

    ``branch_nodes[b]`` lists the node ids branch ``b`` runs, in layer order; ``lane_offsets[b]``
    is branch ``b``'s vertical offset inside a lane; ``box_height`` the node height that keeps
    nodes of different branches in one lane apart.
    """

    nodes: tuple[LayoutNode, ...]
    edges: tuple[LayoutEdge, ...]
    taps: tuple[LayoutTap, ...]
    branch_nodes: tuple[tuple[int, ...], ...]
    lane_offsets: tuple[float, ...]
    box_height: float
    num_layers: int


def layout_genotype(genotype: Genotype) -> GenotypeLayout:
    """Place a genotype's layers for drawing: the data part of :func:`draw_genotype`.

    Leading layers that branches have in common (operator, input scale, stride, width) become
    one shared node, as in the network (``fasterseg.models.network.plan_layers``); a branch's
    last layer is never shared. Node ``x`` is the layer index, ``y`` is ``-scale`` plus the
    branch's lane offset (the mean offset of its branches for a shared node).
    """
    genotype.validate()
    nb = len(genotype.branches)
    # Branches keep their own row inside a lane so that parallel layers never overlap.
    spacing = 0.34 if nb <= 2 else min(0.27, 0.8 / nb)
    offsets = tuple((nb - 1) / 2 * spacing - b * spacing for b in range(nb))
    box_height = min(0.26, 0.8 * spacing) if nb > 1 else 0.26

    keys: dict[tuple[Any, ...], int] = {}
    raw: list[dict[str, Any]] = []
    branch_nodes: list[tuple[int, ...]] = []
    for b, branch in enumerate(genotype.branches):
        strides = branch.strides()
        parent, nodes = STEM, []
        for i, (op, scale, width) in enumerate(zip(branch.ops, branch.path, branch.widths)):
            key = (parent, op, scale, strides[i], round(width, 6))
            shareable = i < len(branch.ops) - 1
            if shareable and key in keys:
                node = keys[key]
                raw[node]["branches"].append(b)
            else:
                node = len(raw)
                raw.append(
                    {
                        "layer": i,
                        "scale": scale,
                        "op": op,
                        "width": width,
                        "stride": strides[i],
                        "parent": parent,
                        "branches": [b],
                    }
                )
                if shareable:
                    keys[key] = node
            nodes.append(node)
            parent = node
        branch_nodes.append(tuple(nodes))

    nodes_out = tuple(
        LayoutNode(
            node=n,
            branch=r["branches"][0],
            branches=tuple(r["branches"]),
            layer=r["layer"],
            x=float(r["layer"]),
            y=-r["scale"] + sum(offsets[b] for b in r["branches"]) / len(r["branches"]),
            scale=r["scale"],
            op=r["op"],
            width=r["width"],
            stride=r["stride"],
        )
        for n, r in enumerate(raw)
    )
    edges = [
        LayoutEdge(
            r["parent"],
            n,
            tuple(r["branches"]),
            r["parent"] >= 0 and raw[r["parent"]]["stride"] == 2,
        )
        for n, r in enumerate(raw)
    ]
    edges += [LayoutEdge(nodes[-1], HEAD, (b,), False) for b, nodes in enumerate(branch_nodes)]
    taps = []
    for b, branch in enumerate(genotype.branches):
        for i, stride in enumerate(branch.strides()):
            if stride == 2:
                taps.append(LayoutTap(b, branch_nodes[b][i], branch.path[i]))
    return GenotypeLayout(
        nodes=nodes_out,
        edges=tuple(edges),
        taps=tuple(taps),
        branch_nodes=tuple(branch_nodes),
        lane_offsets=offsets,
        box_height=box_height,
        num_layers=max(len(b.ops) for b in genotype.branches),
    )


def format_width(width: float) -> str:
    """A width multiplier as twelfths ("4/12") when it is one, else with 2 decimals."""
    twelfths = width * 12
    if abs(twelfths - round(twelfths)) < 1e-6:
        return f"{round(twelfths)}/12"
    return f"{width:.2f}"


def _branch_name(b: int) -> str:
    return chr(ord("A") + b) if b < 26 else f"#{b}"


def _new_figure(width_in: float, height_in: float) -> Any:
    """A standalone figure on an Agg canvas (no pyplot state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def draw_genotype(genotype: Genotype, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Draw a genotype like the paper's Figure 6 and save it as a PNG (1600 x 700 pixels).

    Three lanes (1/8, 1/16, 1/32 from top to bottom), the layer index along x. Each layer is a
    box at its input scale, filled by operator and labelled with its short name and output
    width; a branch's line goes down one lane after a stride-2 layer. Shared prefix layers are
    drawn once (dark line); each branch has its own line colour. The stem is a box before
    layer 0, the fusion/head a box after the last layer; dotted lines mark the finer features
    each branch fuses on its way up to 1/8. Returns ``path``.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch, Patch

    lay = layout_genotype(genotype)
    g = genotype
    n_layers = lay.num_layers
    nodes = {n.node: n for n in lay.nodes}
    used_scales = {n.scale for n in lay.nodes}
    deepest = max(used_scales)
    box_w, box_h = 0.78, lay.box_height
    # Stem and head boxes keep a fixed size in pixels whatever the number of layers: the
    # 1472 axes pixels hold the layers plus 380 pixels of boxes and arrows, and a layer gets
    # at most 110 pixels (short genotypes are centred).
    axes_px, fixed_px = 1472, 380
    units_per_px = max((n_layers + 0.4) / (axes_px - fixed_px), 1 / 110)
    stem_w, head_w, gap = 120 * units_per_px, 140 * units_per_px, 60 * units_per_px
    stem_x = -0.5 - gap - stem_w / 2
    head_x = n_layers - 0.5 + gap + head_w / 2
    margin = (axes_px * units_per_px - (n_layers + fixed_px * units_per_px)) / 2

    fig = _new_figure(16, 7)
    ax = fig.add_axes((0.06, 0.2, 0.92, 0.7))

    for s in range(3):
        ax.axhspan(-s - 0.5, -s + 0.5, color="#f4f6f7" if s % 2 == 0 else "#e9edf0", zorder=0)
    ax.set_yticks([0, -1, -2], [f"{lab}\n(/{8 * 2**s})" for s, lab in enumerate(_SCALE_LABELS)])
    ax.set_ylabel("feature scale (input of each layer)")
    ax.set_xticks(range(n_layers))
    ax.set_xlabel("layer")
    ax.set_xlim(stem_x - stem_w / 2 - margin, head_x + head_w / 2 + margin)
    ax.set_ylim(-2.55, 0.55)
    ax.tick_params(axis="y", length=0, labelsize=11)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)

    def color_of(branches: Sequence[int]) -> str:
        return _SHARED_COLOR if len(branches) > 1 else _BRANCH_COLORS[branches[0] % 5]

    op_colors: dict[str, str] = {}
    for n in lay.nodes:
        if n.op not in op_colors:
            extra = len([o for o in op_colors if o not in _OP_COLORS])
            op_colors[n.op] = _OP_COLORS.get(n.op, _EXTRA_OP_COLORS[extra % 5])

    def anchor(node: int, side: str) -> tuple[float, float]:
        if node == STEM:
            return stem_x + (stem_w / 2 if side == "out" else -stem_w / 2), 0.0
        n = nodes[node]
        return n.x + (box_w / 2 if side == "out" else -box_w / 2), n.y

    arrow = {"arrowstyle": "-|>", "mutation_scale": 12, "shrinkA": 0, "shrinkB": 1}
    for e in lay.edges:
        x0, y0 = anchor(e.src, "out")
        if e.dst == HEAD:
            x1, y1 = head_x - head_w / 2, y0
        else:
            x1, y1 = anchor(e.dst, "in")
        ax.annotate(
            "",
            (x1, y1),
            (x0, y0),
            zorder=2,
            arrowprops={**arrow, "color": color_of(e.branches), "lw": 2.4},
        )
        if e.down:
            ax.text(
                (x0 + x1) / 2 + 0.08,
                (y0 + y1) / 2,
                "s2",
                fontsize=8,
                color=color_of(e.branches),
                ha="left",
                va="center",
                zorder=3,
            )

    for n in lay.nodes:
        ax.add_patch(
            FancyBboxPatch(
                (n.x - box_w / 2, n.y - box_h / 2),
                box_w,
                box_h,
                boxstyle="round,pad=0,rounding_size=0.05",
                mutation_aspect=1 / 4,
                facecolor=op_colors[n.op],
                edgecolor=color_of(n.branches),
                lw=2.2 if n.shared else 1.6,
                zorder=4,
            )
        )
        ax.text(
            n.x,
            n.y,
            f"{OP_SHORT.get(n.op, n.op)}\n{format_width(n.width)}",
            ha="center",
            va="center",
            fontsize=8.5,
            linespacing=1.0,
            zorder=5,
        )

    # Fusion taps: dotted lines along the top of the lane (above every node), into the head.
    node_top = lay.lane_offsets[0] + box_h / 2
    bus_step = min(0.05, (0.47 - node_top) / len(g.branches))
    for t in lay.taps:
        n = nodes[t.node]
        color = _BRANCH_COLORS[t.branch % 5]
        x0 = n.x - box_w / 2 - 0.12
        y_bus = -t.scale + 0.48 - bus_step * t.branch
        ax.plot([x0], [n.y], marker="o", ms=5, color=color, zorder=6)
        ax.plot([x0, x0], [n.y, y_bus], ls=":", lw=1.6, color=color, zorder=1)
        ax.annotate(
            "",
            (head_x - head_w / 2, y_bus),
            (x0, y_bus),
            zorder=1,
            arrowprops={**arrow, "color": color, "lw": 1.6, "linestyle": ":"},
        )

    stem_ch = stem_channels(g.stem_width, g.fch)
    ax.add_patch(
        FancyBboxPatch(
            (stem_x - stem_w / 2, -0.3),
            stem_w,
            0.6,
            boxstyle="round,pad=0.02",
            facecolor="white",
            edgecolor="black",
            lw=1.5,
            zorder=4,
        )
    )
    ax.text(
        stem_x,
        0,
        "stem\n3→{}→{}→{}\nwidth {}".format(*stem_ch, format_width(g.stem_width)),
        ha="center",
        va="center",
        fontsize=8.5,
        zorder=5,
    )

    head_top = 0.5 if deepest > 0 else 0.3
    head_bottom = -deepest - (0.45 if deepest > 0 else 0.3)
    ax.add_patch(
        FancyBboxPatch(
            (head_x - head_w / 2, head_bottom),
            head_w,
            head_top - head_bottom,
            boxstyle="round,pad=0.02",
            facecolor="white",
            edgecolor="black",
            lw=1.5,
            zorder=4,
        )
    )
    for s in range(deepest, 0, -1):
        arrow_x = head_x - head_w / 4
        ax.annotate(
            "",
            (arrow_x, -s + 0.62),
            (arrow_x, -s + 0.12),
            zorder=5,
            arrowprops={**arrow, "color": "black", "lw": 1.6},
        )
        ax.text(
            arrow_x + 0.1 * head_w,
            -s + 0.37,
            "up ×2\n+ concat",
            fontsize=8.5,
            ha="left",
            va="center",
            zorder=5,
        )
    c8 = nf(8, g.head_width, g.fch)
    ax.text(
        head_x,
        0.05 if deepest > 0 else 0.0,
        f"fusion + head\nwidth {format_width(g.head_width)}\n"
        f"{len(g.branches)}×{c8} ch at 1/8\n→ logits ×8 up",
        ha="center",
        va="center",
        fontsize=8.5,
        zorder=5,
    )

    total = len(lay.nodes)
    lengths = [len(b.ops) for b in g.branches]
    shared = sum(n.shared for n in lay.nodes)
    detail = (
        f"branches of {' and '.join(map(str, lengths))} layers, {shared} shared"
        if len(lengths) > 1
        else "1 branch"
    )
    ax.set_title(
        title
        or f"{g.name}: stem {format_width(g.stem_width)}, head {format_width(g.head_width)}, "
        f"{total} layers ({detail})",
        fontsize=14,
    )

    handles = [
        Patch(
            facecolor=op_colors[o],
            edgecolor="black",
            label=f"{OP_SHORT.get(o, o)} = {o} ({_OP_LONG.get(o, 'extension')})",
        )
        for o in op_colors
    ]
    for b, branch in enumerate(g.branches):
        handles.append(
            Line2D(
                [],
                [],
                color=_BRANCH_COLORS[b % 5],
                lw=2.4,
                label=f"branch {_branch_name(b)}: {len(branch.ops)} layers, "
                f"ends at {_SCALE_LABELS[branch.last_scale]}",
            )
        )
    if shared:
        handles.append(Line2D([], [], color=_SHARED_COLOR, lw=2.4, label="shared layers"))
    handles.append(
        Line2D(
            [],
            [],
            color="gray",
            lw=1.6,
            ls=":",
            marker="o",
            ms=5,
            label="finer feature fused in the head",
        )
    )
    handles.append(Line2D([], [], color="none", label="box: operator, output width; s2: stride 2"))
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=4,
        fontsize=9.5,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    return _save_png(fig, path)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot_latency_vs_miou(
    points: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Scatter measured latency (ms, x) against mIoU (%, y) and save it as a PNG.

    Each point is ``{"name": str, "latency_ms": float, "miou": float | None, "kind": "searched"
    | "reference" | "peer"}`` with mIoU as a fraction. Points without an mIoU go on a separate
    marker row under the plot; points without a latency are listed in a note. Returns ``path``.
    """
    for p in points:
        if p.get("kind") not in _KIND_STYLE:
            raise ValueError(
                f"point {p.get('name')!r}: 'kind' must be one of {sorted(_KIND_STYLE)}, "
                f"got {p.get('kind')!r}"
            )
    timed = [p for p in points if _finite(p.get("latency_ms"))]
    untimed = [p["name"] for p in points if not _finite(p.get("latency_ms"))]
    scored = [p for p in timed if _finite(p.get("miou"))]
    unscored = [p for p in timed if not _finite(p.get("miou"))]

    fig = _new_figure(10, 6.5)
    if unscored:
        grid = fig.add_gridspec(2, 1, height_ratios=(5, 1), hspace=0.08)
        ax = fig.add_subplot(grid[0])
        ax_row = fig.add_subplot(grid[1], sharex=ax)
    else:
        ax, ax_row = fig.add_subplot(), None
    fig.subplots_adjust(left=0.1, right=0.96, top=0.92, bottom=0.16 if untimed else 0.11)

    kinds_used: dict[str, Any] = {}
    span = max((p["latency_ms"] for p in scored), default=1.0)
    for p in scored:
        marker, color, _ = _KIND_STYLE[p["kind"]]
        kinds_used[p["kind"]] = ax.scatter(
            p["latency_ms"], 100 * p["miou"], marker=marker, s=80, color=color, zorder=3
        )
        # A point with a better neighbour at about the same latency (the distilled and the
        # trained student share one architecture) is labelled below, the neighbour above.
        below = any(
            abs(q["latency_ms"] - p["latency_ms"]) < 0.03 * span and q["miou"] > p["miou"]
            for q in scored
        )
        ax.annotate(
            p["name"],
            (p["latency_ms"], 100 * p["miou"]),
            xytext=(8, -12 if below else 6),
            textcoords="offset points",
            fontsize=9,
        )
    ax.set_ylabel("mIoU (%)")
    ax.grid(True, alpha=0.3)
    if scored:
        ys = [100 * p["miou"] for p in scored]
        pad = max(2.0, 0.15 * (max(ys) - min(ys)))
        ax.set_ylim(max(0.0, min(ys) - pad), min(100.0, max(ys) + pad))
    else:
        ax.text(
            0.5,
            0.5,
            "no mIoU available",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
    if timed:
        ax.set_xlim(0, 1.15 * max(p["latency_ms"] for p in timed))

    if ax_row is not None:
        # Labels alternate above and below the row (in latency order) so that points with
        # similar latencies, such as the published student and LR-ASPP, stay readable.
        for i, p in enumerate(sorted(unscored, key=lambda q: q["latency_ms"])):
            marker, color, _ = _KIND_STYLE[p["kind"]]
            kinds_used[p["kind"]] = ax_row.scatter(
                p["latency_ms"], 0, marker=marker, s=80, color=color, zorder=3
            )
            ax_row.annotate(
                p["name"],
                (p["latency_ms"], 0),
                xytext=(6, 6 if i % 2 == 0 else -14),
                textcoords="offset points",
                fontsize=9,
            )
        ax_row.set_yticks([0], ["no mIoU"])
        ax_row.set_ylim(-1, 1.5)
        ax_row.grid(True, axis="x", alpha=0.3)
        ax.tick_params(labelbottom=False)
        ax_row.set_xlabel("measured latency (ms, lower is better)")
    else:
        ax.set_xlabel("measured latency (ms, lower is better)")
    if kinds_used:
        ax.legend(
            [kinds_used[k] for k in _KIND_STYLE if k in kinds_used],
            [_KIND_STYLE[k][2] for k in _KIND_STYLE if k in kinds_used],
            loc="lower right",
            fontsize=9,
        )
    if untimed:
        fig.text(
            0.02, 0.02, "not measured (left out): " + ", ".join(untimed), fontsize=9, color="gray"
        )
    ax.set_title(title or "Measured latency vs mIoU (up and left is better)")
    return _save_png(fig, path)


def _pair_label(key: str) -> str:
    """ "20" -> "[2,0] (1/32 + 1/8)": a candidate branch pair by the branches' last scales."""
    scales = " + ".join(_SCALE_LABELS[int(c)] for c in key if c.isdigit() and int(c) < 3)
    return "[" + ",".join(key) + "]" + (f" ({scales})" if scales else "")


def plot_search_trajectory(history: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Plot a search's ``history.json`` (``{"epochs": [rows], "best": ...}``) as a PNG.

    Four stacked panels over the epoch: lambda (log scale); the predicted latency of both
    student candidate pairs ("[2,0]", "[2,1]"; a ring marks the chosen one); the mIoU of the
    chosen student pair and of the teacher's best head; the weight loss of every epoch,
    pretraining included (shaded). The epoch the architecture files hold
    (``history["selected"]``, the best one in histories without it) is a dashed line.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    rows = list(history["epochs"])
    search_rows = [r for r in rows if r.get("phase") == "search"]
    pre = [r["epoch"] for r in rows if r.get("phase") == "pretrain"]

    fig = _new_figure(10, 10)
    axes = fig.subplots(4, 1, sharex=True)
    fig.subplots_adjust(left=0.12, right=0.75, top=0.94, bottom=0.06, hspace=0.12)
    ax_lam, ax_lat, ax_miou, ax_loss = axes
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        if pre:
            ax.axvspan(min(pre) - 0.5, max(pre) + 0.5, color="#eeeeee", zorder=0)
        ax.grid(True, alpha=0.3)
    selected = history.get("selected") or history.get("best") or {}
    rule = history.get("select", "best")
    if "epoch" in selected:
        for ax in axes:
            ax.axvline(selected["epoch"], color="gray", ls="--", lw=1)

    epochs = [r["epoch"] for r in search_rows]
    lams = [r["lambda"] for r in search_rows]
    ax_lam.plot(epochs, lams, marker="o", color="black")
    if lams and all(v > 0 for v in lams):
        ax_lam.set_yscale("log")
    ax_lam.set_ylabel("lambda (latency\nloss weight)")

    keys = sorted({k for r in search_rows for k in r["student"]["candidates"]})
    for i, key in enumerate(keys):
        color = _BRANCH_COLORS[i % 5]
        pts = [
            (r["epoch"], r["student"]["candidates"][key]["latency_ms"], r["student"]["chosen"])
            for r in search_rows
            if key in r["student"]["candidates"]
        ]
        ax_lat.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="o",
            ms=4,
            color=color,
            label=f"student {_pair_label(key)}",
        )
        chosen = [p for p in pts if p[2] == key]
        ax_lat.scatter(
            [p[0] for p in chosen],
            [p[1] for p in chosen],
            s=120,
            facecolors="none",
            edgecolors=color,
            lw=1.8,
            zorder=3,
        )
    ax_lat.scatter([], [], s=120, facecolors="none", edgecolors="black", label="chosen pair")
    ax_lat.set_ylabel("predicted student\nlatency (ms)")
    if keys:
        ax_lat.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)

    def pct(v: Any) -> float:
        return 100 * v if _finite(v) else math.nan

    student = [pct(r["student"]["candidates"][r["student"]["chosen"]]["miou"]) for r in search_rows]
    teacher = [
        max((pct(v) for v in r["teacher"]["miou"].values() if _finite(v)), default=math.nan)
        for r in search_rows
    ]
    ax_miou.plot(
        epochs, student, marker="o", color=_BRANCH_COLORS[0], label="student (chosen pair)"
    )
    ax_miou.plot(epochs, teacher, marker="s", color=_BRANCH_COLORS[2], label="teacher (best head)")
    ax_miou.set_ylabel("held-out mIoU (%)")
    if search_rows:
        ax_miou.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)

    losses = [(r["epoch"], r["loss_weight"]) for r in rows if _finite(r.get("loss_weight"))]
    ax_loss.plot(
        [e for e, _ in losses],
        [v for _, v in losses],
        marker="o",
        color="#555555",
        label="weight loss",
    )
    ax_loss.set_ylabel("weight loss\n(train)")
    ax_loss.set_xlabel("epoch")
    extra, labels = ax_loss.get_legend_handles_labels()
    if pre:
        extra.append(Patch(color="#eeeeee"))
        labels.append("pretraining")
    if "epoch" in selected:
        extra.append(Line2D([], [], color="gray", ls="--"))
        labels.append(f"{rule} epoch ({selected['epoch']}), selected")
    ax_loss.legend(extra, labels, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)
    if not search_rows:
        ax_lam.text(
            0.5,
            0.5,
            "no search epochs yet",
            transform=ax_lam.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
    fig.suptitle("Search trajectory", fontsize=14)
    return _save_png(fig, path)


def _num(v: Any, digits: int = 2, scale: float = 1.0) -> str:
    """A number for a table: ``v * scale`` with ``digits`` decimals, "-" for None or NaN."""
    return f"{v * scale:.{digits}f}" if _finite(v) else "-"


def _duration(seconds: Any) -> str:
    """Seconds as "12.3 s", "4 min 05 s" or "2 h 07 min"; "-" for None."""
    if not _finite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds % 60):02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str) -> list[str]:
    """A markdown table; ``align`` holds "l" or "r" per column."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _model_name(key: str) -> str:
    return _MODEL_NAMES.get(key, key)


def _json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None, so that report.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _summary_paragraph(report: Mapping[str, Any]) -> str:
    dev, data = report["device"], report["dataset"]
    h, w = report["resolution"]
    text = (
        f"Created {report['created']} on {dev['cpu']} ({dev['threads']} threads, "
        f"torch {dev['torch']}), at {h}x{w} pixels, on the dataset at `{data['root']}` "
        f"({data['train']} training and {data['val']} validation images, "
        f"{len(data['classes'])} classes)."
    )
    search = report.get("search")
    if search:
        rule = {"last": "the last epoch", "best": "the epoch of the best student objective"}
        text += (
            f" The search ran {search['epochs']} epochs in {_duration(search['seconds'])}; "
            f"the architectures come from epoch {search['selected_epoch']}, "
            f"{rule.get(search['select'], search['select'])} (`search.select: "
            f"{search['select']}`)"
        )
        scored = search.get("scored_on")
        if scored:
            text += (
                f", with branch pairs and epochs scored on {scored['images']} "
                f"{scored['split']!r} images held out of the architecture half, not on the "
                "validation split"
            )
        text += f" (final latency weight lambda {search['lambda_final']:.3g})."
        window = search.get("window_ms")
        if window is not None:
            low, high = window
            reached = search.get("window_reached")
            text += f" The student's latency window was {low:.2f}-{high:.2f} ms"
            if reached is None:
                text += "."
            elif reached:
                text += "; a chosen student was inside it."
            else:
                text += "; **no chosen student was ever inside it**."
    models = report["models"]
    if models:
        names = "; ".join(f"{_model_name(k)}: `{m['arch']}`" for k, m in models.items())
        text += f" Models trained and evaluated: {names}."
        scored = {k: m for k, m in models.items() if _finite(m.get("miou"))}
        if scored:
            best = max(scored, key=lambda k: scored[k]["miou"])
            text += (
                f" The best validation mIoU is {100 * scored[best]['miou']:.1f}% "
                f"({_model_name(best)})."
            )
    return text


def render_report_markdown(report: Mapping[str, Any]) -> str:
    """The report.md text of a report dict (see :func:`write_report` for its shape)."""
    models: Mapping[str, Any] = report["models"]
    refs: Mapping[str, Any] = report.get("references") or {}
    classes: Sequence[str] = report["dataset"]["classes"]
    lines = [f"# {report['title']}", "", _summary_paragraph(report), ""]

    lines += ["## Table 1: accuracy (validation set)", ""]
    lines += _table(
        ["model", "architecture", "mIoU (%)", "pixel accuracy (%)", "training time"],
        [
            [
                _model_name(k),
                f"`{m['arch']}`",
                _num(m.get("miou"), 1, 100),
                _num(m.get("pixel_accuracy"), 1, 100),
                _duration(m.get("train_seconds")),
            ]
            for k, m in models.items()
        ],
        "llrrr",
    )
    lines += ["", "Per-class IoU (%):", ""]
    lines += _table(
        ["class", *(_model_name(k) for k in models)],
        [
            [c, *(_num((m.get("per_class_iou") or {}).get(c), 1, 100) for m in models.values())]
            for c in classes
        ],
        "l" + "r" * len(models),
    )

    lines += ["", "## Table 2: size and speed", ""]
    cost_rows = [
        [
            name,
            _num(e.get("params"), 2, 1e-6),
            _num(e.get("macs"), 2, 1e-9),
            _num(e.get("latency_ms_predicted")),
            _num(e.get("latency_ms_measured")),
            _num(e.get("fps"), 1),
        ]
        for name, e in [
            *((_model_name(k), m) for k, m in models.items()),
            *((f"{k} (reference)", r) for k, r in refs.items()),
        ]
    ]
    lines += _table(
        [
            "model",
            "params (M)",
            "MACs (G)",
            "predicted latency (ms)",
            "measured latency (ms)",
            "FPS",
        ],
        cost_rows,
        "lrrrrr",
    )
    h, w = report["resolution"]
    lines += [
        "",
        f"MACs and latency at {h}x{w}; predicted latency is the lookup-table sum (calibrated "
        'when the table has a calibration: see the notes below), measured latency the timed '
        'forward pass; "-": not available.',
    ]

    plots: Mapping[str, str] = report.get("plots") or {}
    if plots:
        lines += ["", "## Plots", ""]
        for key, rel in plots.items():
            label = _PLOT_TITLES.get(key, key)
            lines += [f"### {label}", "", f"![{label}]({rel})", ""]
        lines.pop()
    for section in report.get("sections") or []:
        lines += [section]
    notes: Sequence[str] = report.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out_dir/report.json`` (the dict) and ``out_dir/report.md``, both atomically.

    ``report`` holds ``title``, ``created``, ``device`` {cpu, threads, torch}, ``resolution``
    [H, W], ``dataset`` {root, train, val, classes}, ``models`` {key: {arch, miou,
    pixel_accuracy, per_class_iou, train_seconds, params, macs, latency_ms_predicted,
    latency_ms_measured, fps}}, ``references`` {name: {params, macs, latency_ms_predicted,
    latency_ms_measured, fps}}, ``search`` ({epochs, seconds, select, selected_epoch,
    scored_on, lambda_final, window_ms, window_reached} or None), ``plots`` {key: path
    relative to out_dir}, ``sections`` [markdown text added after the plots, e.g. a study's]
    and ``notes`` [str]. mIoU, pixel accuracy and IoU are fractions;
    None means not available (written "-" in the tables; NaN is written to the JSON as
    null). Returns ``(json_path, md_path)``.
    """
    out = Path(out_dir)
    text = render_report_markdown(report)
    json_path = atomic_write_json(out / "report.json", _json_safe(report))
    md_path = atomic_write_text(out / "report.md", text)
    return json_path, md_path


def format_report_summary(report: Mapping[str, Any]) -> str:
    """A few plain-text lines for the terminal: each model's mIoU and speed, the references'."""
    lines = [report["title"]]
    entries = [(_model_name(k), m) for k, m in report["models"].items()]
    entries += [(f"{k} (reference)", r) for k, r in (report.get("references") or {}).items()]
    width = max((len(name) for name, _ in entries), default=0)
    for name, e in entries:
        pct = _num(e.get("miou"), 1, 100) + ("%" if _finite(e.get("miou")) else " ")
        miou = f"mIoU {pct:>6}" if "miou" in e else " " * 11
        lines.append(
            f"  {name:<{width}}  {miou}  {_num(e.get('latency_ms_measured')):>7} ms measured"
            f"  {_num(e.get('latency_ms_predicted')):>7} ms predicted"
            f"  {_num(e.get('fps'), 1):>6} FPS"
        )
    return "\n".join(lines)

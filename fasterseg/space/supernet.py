"""The multi-resolution supernet (method sections 1.2-1.4 and 2).

Cells at scales /8, /16, /32 over ``L`` layers hold a *keep* and a *down* MixedOp sharing one
alpha row; the two inputs of a cell (from the coarser-by-one scale's down op and from the same
scale's keep op) are run separately and mixed with softmax(beta). Cell weights are shared by
both roles; each role has its own stem, refine modules, five heads and architecture
parameters: ``alpha`` (ops), ``beta`` (paths) and, for the student, ``ratio`` (widths).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..arch import (
    NUM_SCALES,
    cell_inputs,
    cell_scales,
    channels,
    has_down,
    ratio_row,
    ratio_rows,
    role_widths,
    stem_channels,
)
from ..config import SpaceConfig
from ..decode import ArchParams, DecodeOptions, decode
from ..errors import ConfigError
from ..genotype import Genotype
from ..nn.blocks import FusionBlock, Head, Stem
from ..nn.ops import OPS, build_op
from .roles import Role, WidthMode

HEAD_NAMES = ("8s", "16s", "32s", "8s_32s", "16s_32s")


def check_space(space: SpaceConfig) -> None:
    """Raise ConfigError naming the first ``space.*`` key a supernet cannot be built from."""
    if space.layers < 6:
        raise ConfigError(f"space.layers must be at least 6, got {space.layers}")
    if space.fch < 1:
        raise ConfigError(f"space.fch must be positive, got {space.fch}")
    if not space.ops:
        raise ConfigError("space.ops must list at least one operator")
    for i, name in enumerate(space.ops):
        if name not in OPS:
            raise ConfigError(
                f"space.ops[{i}]: unknown operator {name!r}; registered: {', '.join(OPS)}"
            )
    if not space.width_choices or not all(0 < w <= 1 for w in space.width_choices):
        raise ConfigError(
            f"space.width_choices must be numbers in (0, 1], got {list(space.width_choices)}"
        )
    for key in ("teacher_stem_width", "teacher_head_width", "student_stem_width",
                "student_head_width"):  # fmt: skip
        if not 0 < getattr(space, key) <= 1:
            raise ConfigError(f"space.{key} must be in (0, 1], got {getattr(space, key)}")
    if space.num_classes < 1:
        raise ConfigError(f"space.num_classes must be positive, got {space.num_classes}")


@dataclass(frozen=True)
class WidthSample:
    """Output widths of one forward pass.

    ``index[s][row]`` is the chosen entry of ``width_choices`` for the output at scale ``s``
    (row as in ``ratio_s``); ``gate[s]`` holds the matching straight-through factors (value 1,
    gradient to the ratio logits) or None when widths are not sampled.
    """

    index: tuple[tuple[int, ...], ...]
    gate: tuple[Tensor | None, ...]


class MixedOp(nn.Module):
    """Softmax(alpha)-weighted sum of every candidate operator, slimmable in its output width."""

    def __init__(
        self,
        op_names: Sequence[str],
        c_in: int,
        c_out: int,
        stride: int,
        out_choices: Sequence[int],
        resize_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        self.ops = nn.ModuleList(
            build_op(n, c_in, c_out, stride, out_choices=out_choices, resize_mode=resize_mode)
            for n in op_names
        )

    def forward(self, x: Tensor, weights: Tensor | Sequence[float], c_out: int) -> Tensor:
        """x (N, C, H, W), weights (P,) -> (N, c_out, H/stride, W/stride)."""
        return sum(w * op(x, c_out) for w, op in zip(weights, self.ops) if not _inactive(w))


def _inactive(weight: Tensor | float) -> bool:
    """Whether a mixing weight is exactly zero outside autograd: its term adds nothing and no
    gradient is wanted, so it is not computed. Softmax weights are never exactly zero; the
    one-hot weights of a single path (one-shot scoring) are, and skipping them runs one
    operator per cell instead of all."""
    return not torch.is_grad_enabled() and weight == 0.0


class Cell(nn.Module):
    """A keep MixedOp (stride 1) and, except at /32 and in the last layer, a down MixedOp."""

    def __init__(
        self,
        op_names: Sequence[str],
        c: int,
        keep_choices: Sequence[int],
        down_choices: Sequence[int] | None,
        resize_mode: str,
    ) -> None:
        super().__init__()
        self.keep = MixedOp(op_names, c, max(keep_choices), 1, keep_choices, resize_mode)
        self.down = (
            MixedOp(op_names, c, max(down_choices), 2, down_choices, resize_mode)
            if down_choices is not None
            else None
        )


class _RoleModules(nn.Module):
    """Stem, refine modules and the five heads of one role."""

    def __init__(self, fch: int, stem_w: float, head_w: float, num_classes: int) -> None:
        super().__init__()
        self.stem = Stem(*stem_channels(stem_w, fch))
        c8, c16, c32 = (channels(s, head_w, fch) for s in range(NUM_SCALES))
        self.refine16 = FusionBlock(c16, c8, c8)
        self.refine32_16 = FusionBlock(c32, c16, c16)
        self.refine32_8 = FusionBlock(c16, c8, c8)
        self.heads = nn.ModuleDict(
            {
                "8s": Head(c8, num_classes),
                "16s": Head(c8, num_classes),
                "32s": Head(c8, num_classes),
                "8s_32s": Head(2 * c8, num_classes),
                "16s_32s": Head(2 * c8, num_classes),
            }
        )


class SuperNet(nn.Module):
    """The differentiable search space for a teacher and a student.

    ``forward(x, role, widths_or_mode)`` maps (N, 3, H, W) to five logit maps
    (N, num_classes, H/8, W/8), in the order of :data:`HEAD_NAMES`.
    """

    def __init__(self, space: SpaceConfig | None = None, *, resize_mode: str = "bilinear"):
        super().__init__()
        space = space if space is not None else SpaceConfig()
        check_space(space)
        self.space = space
        self.resize_mode = resize_mode
        self.layers = space.layers
        self.op_names = tuple(space.ops)
        self.width_choices = tuple(space.width_choices)
        self.role_widths = {r: role_widths(space, r) for r in Role}
        fch = space.fch
        head_ws = {hw for _, hw in self.role_widths.values()}

        def choices(scale: int) -> list[int]:
            ws = set(self.width_choices) | head_ws
            return sorted({channels(scale, w, fch) for w in ws})

        self.cells = nn.ModuleList()
        for i in range(self.layers):
            row = nn.ModuleList()
            for s in cell_scales(i):
                row.append(
                    Cell(
                        self.op_names,
                        channels(s, 1.0, fch),
                        choices(s),
                        choices(s + 1) if has_down(s, i, self.layers) else None,
                        resize_mode,
                    )
                )
            self.cells.append(row)
        self.roles = nn.ModuleDict(
            {r.value: _RoleModules(fch, *self.role_widths[r], space.num_classes) for r in Role}
        )
        L, P, K = self.layers, len(self.op_names), len(self.width_choices)
        self.arch = nn.ParameterDict()
        for r in Role:
            for s in range(NUM_SCALES):
                self.arch[f"{r.value}_alpha_{s}"] = nn.Parameter(torch.full((L - s, P), 1e-3))
            for s in (1, 2):
                self.arch[f"{r.value}_beta_{s}"] = nn.Parameter(torch.full((L - 1 - s, 2), 1e-3))
        for s in range(NUM_SCALES):
            self.arch[f"student_ratio_{s}"] = nn.Parameter(torch.full((ratio_rows(s, L), K), 1e-3))

    # ------------------------------------------------------------ parameters
    def arch_parameters(self, role: Role | str) -> list[nn.Parameter]:
        """The architecture parameters of ``role`` (alphas, betas and, for the student, ratios)."""
        prefix = f"{Role(role).value}_"
        return [p for k, p in self.arch.items() if k.startswith(prefix)]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""
        arch = {id(p) for p in self.arch.parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def alphas(self, role: Role | str) -> list[Tensor]:
        """Op logits per scale: shapes (L, P), (L-1, P), (L-2, P)."""
        return [self.arch[f"{Role(role).value}_alpha_{s}"] for s in range(NUM_SCALES)]

    def betas(self, role: Role | str) -> list[Tensor]:
        """Path logits of the /16 and /32 cells: (L-2, 2), (L-3, 2); [from-down, from-keep]."""
        return [self.arch[f"{Role(role).value}_beta_{s}"] for s in (1, 2)]

    def ratios(self, role: Role | str) -> list[Tensor] | None:
        """Student width logits per scale: (L-1, K), (L-1, K), (L-2, K); None for the teacher."""
        if Role(role) is Role.TEACHER:
            return None
        return [self.arch[f"student_ratio_{s}"] for s in range(NUM_SCALES)]

    def export_arch(self, role: Role | str) -> ArchParams:
        """A detached copy of ``role``'s architecture parameters for decoding."""

        def np_(ts: Sequence[Tensor]) -> tuple:
            return tuple(t.detach().cpu().double().numpy().copy() for t in ts)

        ratios = self.ratios(role)
        return ArchParams(
            alphas=np_(self.alphas(role)),
            betas=np_(self.betas(role)),
            ratios=None if ratios is None else np_(ratios),
        )

    def genotype(
        self,
        role: Role | str,
        lasts: Sequence[int] = (2, 1),
        *,
        name: str | None = None,
        options: DecodeOptions | None = None,
        meta: dict | None = None,
    ) -> Genotype:
        """Decode ``role``'s current architecture parameters into a Genotype (section 5).

        The teacher is decoded with ``skip`` forbidden; stem and head widths are the role's.
        """
        role = Role(role)
        stem_w, head_w = self.role_widths[role]
        return decode(
            self.export_arch(role),
            lasts,
            name=name or f"{role.value}-{''.join(map(str, lasts))}",
            ops=self.op_names,
            fch=self.space.fch,
            stem_width=stem_w,
            head_width=head_w,
            width_choices=self.width_choices,
            forbid_skip=role is Role.TEACHER,
            options=options or DecodeOptions(),
            meta=meta,
        )

    # ------------------------------------------------------------ widths
    def sample_widths(
        self, role: Role | str, mode: WidthMode | str = WidthMode.SAMPLED
    ) -> WidthSample:
        """Choose every searched output width for one forward pass of ``role``.

        ``sampled`` draws a hard Gumbel-softmax sample at ``space.gumbel_temperature`` with
        straight-through gates; the teacher has no width parameters, so for it ``sampled``
        means maximum width (``min`` and ``random`` serve the pretraining sandwich).
        """
        role, mode = Role(role), WidthMode(mode)
        if role is Role.TEACHER and mode in (WidthMode.SAMPLED, WidthMode.ARGMAX):
            mode = WidthMode.MAX
        K = len(self.width_choices)
        index, gate = [], []
        order = sorted(range(K), key=lambda k: self.width_choices[k])
        for s in range(NUM_SCALES):
            if mode is WidthMode.SAMPLED:
                onehot = F.gumbel_softmax(
                    self.arch[f"student_ratio_{s}"], tau=self.space.gumbel_temperature, hard=True
                )
                idx = onehot.argmax(dim=-1)
                index.append(tuple(int(v) for v in idx.tolist()))
                gate.append(onehot.gather(1, idx[:, None]).squeeze(1))
                continue
            if mode is WidthMode.ARGMAX:
                idx = self.arch[f"student_ratio_{s}"].argmax(dim=-1).tolist()
            elif mode is WidthMode.MAX:
                idx = [order[-1]] * ratio_rows(s, self.layers)
            elif mode is WidthMode.MIN:
                idx = [order[0]] * ratio_rows(s, self.layers)
            else:
                idx = torch.randint(K, (ratio_rows(s, self.layers),)).tolist()
            index.append(tuple(idx))
            gate.append(None)
        return WidthSample(tuple(index), tuple(gate))

    def out_width(
        self, widths: WidthSample, role: Role | str, scale: int, layer: int
    ) -> tuple[int, Tensor | float]:
        """Channels and gate of layer ``layer``'s output at ``scale`` under ``widths``: the
        role's head width in the last layer, else the sampled choice (gate: a 0-dim tensor, or
        1.0 when widths are not sampled)."""
        if layer == self.layers - 1:
            return channels(scale, self.role_widths[Role(role)][1], self.space.fch), 1.0
        row = ratio_row(scale, layer)
        w = self.width_choices[widths.index[scale][row]]
        g = widths.gate[scale]
        return channels(scale, w, self.space.fch), (1.0 if g is None else g[row])

    # ------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,
        role: Role | str,
        widths: WidthSample | WidthMode | str = WidthMode.SAMPLED,
    ) -> list[Tensor]:
        """(N, 3, H, W) -> five logit maps (N, num_classes, H/8, W/8) of ``role``'s heads."""
        role = Role(role)
        if not isinstance(widths, WidthSample):
            widths = self.sample_widths(role, widths)
        mods = self.roles[role.value]
        alphas = [F.softmax(a, dim=-1) for a in self.alphas(role)]
        betas = [F.softmax(b, dim=-1) for b in self.betas(role)]
        if not torch.is_grad_enabled():
            # plain numbers: one transfer per forward, not one per term, to tell the zero
            # weights (:func:`_inactive`); a float scales a tensor exactly as its 0-dim twin
            alphas = [a.tolist() for a in alphas]
            betas = [b.tolist() for b in betas]

        # keep[s] / down[s]: previous layer's outputs at scale s, with their width gates.
        keep: dict[int, tuple[Tensor, Tensor | float]] = {0: (mods.stem(x), 1.0)}
        down: dict[int, tuple[Tensor, Tensor | float]] = {}
        for i, row in enumerate(self.cells):
            new_keep: dict[int, tuple[Tensor, Tensor | float]] = {}
            new_down: dict[int, tuple[Tensor, Tensor | float]] = {}
            for s, cell in enumerate(row):
                inputs = cell_inputs(i, s, keep, down, betas)
                weights = alphas[s][i - s]
                c_keep, g_keep = self.out_width(widths, role, s, i)
                out_keep = out_down = 0.0
                if cell.down is not None:
                    c_down, g_down = self.out_width(widths, role, s + 1, i)
                for (feat, g_in), mix in inputs:
                    if _inactive(mix):
                        continue
                    out_keep = out_keep + mix * cell.keep(feat, weights, c_keep) * (g_in * g_keep)
                    if cell.down is not None:
                        out_down = out_down + mix * cell.down(feat, weights, c_down) * (
                            g_in * g_down
                        )
                new_keep[s] = (out_keep, g_keep)
                if cell.down is not None:
                    new_down[s + 1] = (out_down, g_down)
            keep, down = new_keep, new_down

        out0, out1, out2 = keep[0][0], keep[1][0], keep[2][0]
        r16 = mods.refine16(out1, out0)
        r32 = mods.refine32_8(mods.refine32_16(out2, out1), out0)
        h = mods.heads
        return [
            h["8s"](out0),
            h["16s"](r16),
            h["32s"](r32),
            h["8s_32s"](torch.cat([out0, r32], dim=1)),
            h["16s_32s"](torch.cat([r16, r32], dim=1)),
        ]

"""The derived network of a Genotype (method section 1.5): what training, distillation and
deployment use. Built from the same operators as the supernet, at fixed widths."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..arch import channels, layer_channels, stem_channels
from ..genotype import Branch, Genotype
from ..nn.blocks import FusionBlock, Head, Stem
from ..nn.layers import ConvNorm, resize
from ..nn.ops import OPS, build_op


@dataclass(frozen=True)
class LayerKey:
    """What makes two branches' layers identical (and therefore shared)."""

    op: str
    scale: int
    stride: int
    c_in: int
    c_out: int


def _layer_specs(geno: Genotype, branch: Branch) -> list[LayerKey]:
    strides = branch.strides()
    specs = []
    for i, (op, s) in enumerate(zip(branch.ops, branch.path)):
        in_width = geno.stem_width if i == 0 else branch.widths[i - 1]
        c_in, c_out = layer_channels(s, strides[i], in_width, branch.widths[i], geno.fch)
        specs.append(LayerKey(op, s, strides[i], c_in, c_out))
    return specs


def _output_scales(branch: Branch) -> list[int]:
    """Scale index of every layer's output."""
    return [*branch.path[1:], branch.path[-1]]


def _last_feature_at(branch: Branch, scale: int) -> int:
    """Index of the branch's last layer whose output is at ``scale``; -1 means the stem."""
    found = -1
    for i, s in enumerate(_output_scales(branch)):
        if s == scale:
            found = i
    return found


@dataclass(frozen=True)
class LayerPlan:
    """The layer nodes of a genotype's network after prefix sharing.

    ``layers[n]`` is node ``n``'s operator and channels, ``parents[n]`` the node whose output
    it reads (-1: the stem), ``branch_nodes[b]`` the nodes branch ``b`` runs, in order. A node
    used by several branches appears once: it runs once and is registered once.
    """

    layers: tuple[LayerKey, ...]
    parents: tuple[int, ...]
    branch_nodes: tuple[tuple[int, ...], ...]


def plan_layers(geno: Genotype) -> LayerPlan:
    """Share the leading layers that branches have in common (op, scales, widths); a branch's
    last layer is never shared."""
    layers: list[LayerKey] = []
    parents: list[int] = []
    branch_nodes = []
    index: dict[tuple[int, LayerKey], int] = {}
    for branch in geno.branches:
        nodes, parent = [], -1
        specs = _layer_specs(geno, branch)
        for i, spec in enumerate(specs):
            shareable = i < len(specs) - 1
            key = (parent, spec)
            if shareable and key in index:
                node = index[key]
            else:
                node = len(layers)
                layers.append(spec)
                parents.append(parent)
                if shareable:
                    index[key] = node
            nodes.append(node)
            parent = node
        branch_nodes.append(tuple(nodes))
    return LayerPlan(tuple(layers), tuple(parents), tuple(branch_nodes))


def fusion_channels(
    geno: Genotype, branch: Branch, stem_out: int
) -> tuple[list[int], list[tuple[int, int, int]]]:
    """The per-branch aggregation to /8 (section 1.5).

    Returns ``(sources, blocks)``: ``sources[s]`` is the layer whose output is the branch's
    last feature at scale ``s`` (-1: the stem, whose output has ``stem_out`` channels), for
    every scale finer than the branch's last; ``blocks`` holds ``(c_coarse, c_fine, c_out)``
    of each FusionBlock in the order they run (coarsest first; block ``k`` fuses into scale
    ``last - 1 - k``).
    """
    specs = _layer_specs(geno, branch)
    last = branch.last_scale
    sources = [_last_feature_at(branch, s) for s in range(last)]
    fine = [stem_out if f < 0 else specs[f].c_out for f in sources]
    h = geno.head_width
    blocks = [
        (channels(s + 1, h, geno.fch), fine[s], channels(s, h, geno.fch))
        for s in range(last - 1, -1, -1)
    ]
    return sources, blocks


class Network(nn.Module):
    """Derived segmentation network of a genotype.

    ``forward(x)`` maps (N, 3, H, W) to logits (N, num_classes, H, W). In training mode with
    ``aux=True`` it returns a tuple ``(main, aux16, aux32)`` whose auxiliary entries exist only
    where the genotype has a /16 feature (aux16) or a /32 branch (aux32); all at (H, W).

    Branches whose leading layers agree (op, scales, widths) share those layers: they run once
    and are registered once. ``resize_mode`` is ``bilinear`` (as published) or ``nearest``.
    """

    def __init__(
        self,
        genotype: Genotype,
        num_classes: int = 19,
        *,
        aux: bool = False,
        resize_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        genotype.validate(OPS.keys())
        if resize_mode not in ("bilinear", "nearest"):
            raise ValueError(f"resize_mode must be 'bilinear' or 'nearest', got {resize_mode!r}")
        self.genotype = genotype
        self.num_classes = num_classes
        self.resize_mode = resize_mode
        g, h = genotype, genotype.head_width
        self.stem = Stem(*stem_channels(g.stem_width, g.fch))

        # Layers as a prefix tree: a node is shared by every branch that reaches it through
        # identical layers; a branch's last layer is never shared.
        plan = plan_layers(g)
        self.layers = nn.ModuleList(
            build_op(spec.op, spec.c_in, spec.c_out, spec.stride, resize_mode=resize_mode)
            for spec in plan.layers
        )
        self.branch_nodes: list[list[int]] = [list(nodes) for nodes in plan.branch_nodes]
        self._parents: list[int] = list(plan.parents)

        # Per-branch aggregation to /8 (section 1.5), using the branch's own finer features.
        self.aggregate = nn.ModuleList()
        self._agg_sources: list[list[int]] = []
        c8 = channels(0, h, g.fch)
        for branch in g.branches:
            sources, blocks = fusion_channels(g, branch, self.stem.out_channels)
            self.aggregate.append(
                nn.ModuleList(
                    FusionBlock(c_coarse, c_fine, c_out, resize_mode=resize_mode)
                    for c_coarse, c_fine, c_out in blocks
                )
            )
            self._agg_sources.append(sources)

        c_fused = c8 * len(g.branches)
        self.ffm = ConvNorm(c_fused, c_fused, 1)
        self.head = Head(c_fused, num_classes)

        self.aux16 = self.aux32 = None
        self._aux16_sources: list[tuple[int, int]] = []
        if aux:
            c32 = [channels(2, h, g.fch) for b in g.branches if b.last_scale == 2]
            if c32:
                self.aux32 = Head(c32[0], num_classes)
            c16 = 0
            for b, (branch, specs) in enumerate(
                zip(g.branches, (_layer_specs(g, x) for x in g.branches))
            ):
                if branch.last_scale == 1:
                    self._aux16_sources.append((b, len(branch.ops) - 1))
                    c16 += specs[-1].c_out
                elif branch.last_scale == 2:
                    f = _last_feature_at(branch, 1)
                    self._aux16_sources.append((b, f))
                    c16 += specs[f].c_out
            if c16:
                self.aux16 = Head(c16, num_classes)

    def _run_layers(self, x: Tensor) -> list[list[Tensor]]:
        """Run every layer node once; return each branch's per-layer outputs."""
        cache: dict[int, Tensor] = {}
        outs = []
        for nodes in self.branch_nodes:
            feats = []
            for node in nodes:
                if node not in cache:
                    parent = self._parents[node]
                    inp = x if parent < 0 else cache[parent]
                    cache[node] = self.layers[node](inp)
                feats.append(cache[node])
            outs.append(feats)
        return outs

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        """(N, 3, H, W) -> logits (N, C, H, W); a tuple with auxiliary logits when training."""
        size = x.shape[-2:]
        stem = self.stem(x)
        feats = self._run_layers(stem)
        fused = []
        for b, blocks in enumerate(self.aggregate):
            out = feats[b][-1]
            sources = self._agg_sources[b]
            for block, s in zip(blocks, range(len(sources) - 1, -1, -1)):
                fine = stem if sources[s] < 0 else feats[b][sources[s]]
                out = block(out, fine)
            fused.append(out)
        y = self.head(self.ffm(torch.cat(fused, dim=1)))
        main = resize(y, size, self.resize_mode)
        if not (self.training and (self.aux16 is not None or self.aux32 is not None)):
            return main
        outputs = [main]
        if self.aux16 is not None:
            f16 = torch.cat([feats[b][i] for b, i in self._aux16_sources], dim=1)
            outputs.append(resize(self.aux16(f16), size, self.resize_mode))
        if self.aux32 is not None:
            b32 = next(b for b, br in enumerate(self.genotype.branches) if br.last_scale == 2)
            outputs.append(resize(self.aux32(feats[b32][-1]), size, self.resize_mode))
        return tuple(outputs)

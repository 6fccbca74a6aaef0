"""Which kernels a search space can produce, and which ones a derived network runs."""

from __future__ import annotations

import random

from ..arch import NUM_SCALES, channels, role_widths, side_problem, stem_channels
from ..config import SpaceConfig
from ..errors import ConfigError
from ..genotype import Branch, Genotype, scale_rate
from ..models.network import fusion_channels, plan_layers
from .spec import CONCAT, FFM, FUSION, HEAD, STEM, OpSpec


def check_resolution(height: int, width: int) -> None:
    """Raise ConfigError unless both sizes can enter the networks
    (:func:`~fasterseg.arch.side_problem`)."""
    for name, value in (("height", height), ("width", width)):
        problem = side_problem(value)
        if problem:
            raise ConfigError(f"latency {name} {problem}")


def stem_spec(
    fch: int,
    stem_width: float,
    height: int,
    width: int,
    resize_mode: str = "bilinear",
    dtype: str = "float32",
) -> OpSpec:
    """The stem of stem width ``stem_width`` on a (height, width) image."""
    c1, c2, c3 = stem_channels(stem_width, fch)
    return OpSpec(STEM, 3, c3, height, width, dtype=dtype, resize_mode=resize_mode, c_mid=(c1, c2))


def output_specs(
    c8: int,
    branches: int,
    num_classes: int,
    height: int,
    width: int,
    resize_mode: str = "bilinear",
    dtype: str = "float32",
) -> list[OpSpec]:
    """Concatenation of ``branches`` /8 outputs of ``c8`` channels, the FFM 1x1 ConvNorm and
    the head (with the resize of its logits to the image size)."""
    h8, w8 = height // 8, width // 8
    c = c8 * branches
    return [
        OpSpec(CONCAT, c8, c, h8, w8, dtype=dtype, resize_mode=resize_mode),
        OpSpec(FFM, c, c, h8, w8, dtype=dtype, resize_mode=resize_mode),
        OpSpec(HEAD, c, num_classes, h8, w8, dtype=dtype, resize_mode=resize_mode),
    ]


def _size(height: int, width: int, scale: int) -> tuple[int, int]:
    rate = scale_rate(scale)
    return height // rate, width // rate


def space_kernels(
    space: SpaceConfig,
    height: int,
    width: int,
    resize_mode: str = "bilinear",
    dtype: str = "float32",
) -> list[OpSpec]:
    """Every kernel that a network of ``space`` (searched or derived) can run at this size.

    * every operator x scale x (C_in, C_out) pair: at stride 1 C_in is any width choice
      (or, at /8, a role's stem output) and C_out any width choice or a role's head width;
      at stride 2 (scales /8 and /16) C_out is any width choice at the next scale;
    * the stems of both roles;
    * the derived network's fusion blocks (per head width, every finer feature width);
    * concatenation, FFM and head for one and two branches at every head width.

    The list has no duplicates; the order is deterministic.
    """
    check_resolution(height, width)
    fch = space.fch
    stems = sorted({space.teacher_stem_width, space.student_stem_width})
    heads = sorted({space.teacher_head_width, space.student_head_width})
    choices = sorted(set(space.width_choices))
    stem_out = sorted({stem_channels(w, fch)[2] for w in stems})
    specs: list[OpSpec] = [stem_spec(fch, w, height, width, resize_mode, dtype) for w in stems]
    for s in range(NUM_SCALES):
        h, w = _size(height, width, s)
        c_ins = sorted(
            {channels(s, x, fch) for x in choices} | (set(stem_out) if s == 0 else set())
        )
        keep_outs = sorted({channels(s, x, fch) for x in (*choices, *heads)})
        down_outs = sorted({channels(s + 1, x, fch) for x in choices}) if s < NUM_SCALES - 1 else []
        for op in space.ops:
            for c_in in c_ins:
                specs += [OpSpec(op, c_in, c, h, w, 1, dtype, resize_mode) for c in keep_outs]
                specs += [OpSpec(op, c_in, c, h, w, 2, dtype, resize_mode) for c in down_outs]
    for hw in heads:
        for s in range(NUM_SCALES - 1):
            h, w = _size(height, width, s + 1)
            fines = {channels(s, x, fch) for x in choices}
            if s == 0:
                fines |= set(stem_out)
            c_coarse, c_out = channels(s + 1, hw, fch), channels(s, hw, fch)
            specs += [
                OpSpec(
                    FUSION, c_coarse, c_out, h, w, dtype=dtype, resize_mode=resize_mode, c_fine=f
                )
                for f in sorted(fines)
            ]
        for branches in (1, 2):
            specs += output_specs(
                channels(0, hw, fch), branches, space.num_classes, height, width, resize_mode, dtype
            )
    return list(dict.fromkeys(specs))


def genotype_kernels(
    genotype: Genotype,
    height: int,
    width: int,
    num_classes: int = 19,
    resize_mode: str = "bilinear",
    dtype: str = "float32",
) -> list[OpSpec]:
    """The kernels the derived :class:`~fasterseg.models.Network` of ``genotype`` runs in one
    eval forward at (height, width), one entry per call: stem, every layer node once (layers
    shared by branches appear once), each branch's fusion blocks, concatenation, FFM, head.

    Equal specs repeat when the network calls the same kernel shape twice; the predicted
    latency of the network is the sum of the entries of this list.
    """
    check_resolution(height, width)
    g = genotype
    stem = stem_spec(g.fch, g.stem_width, height, width, resize_mode, dtype)
    specs = [stem]
    for layer in plan_layers(g).layers:
        h, w = _size(height, width, layer.scale)
        specs.append(
            OpSpec(layer.op, layer.c_in, layer.c_out, h, w, layer.stride, dtype, resize_mode)
        )
    for branch in g.branches:
        _, blocks = fusion_channels(g, branch, stem.c_out)
        for k, (c_coarse, c_fine, c_out) in enumerate(blocks):
            h, w = _size(height, width, branch.last_scale - k)
            specs.append(
                OpSpec(
                    FUSION,
                    c_coarse,
                    c_out,
                    h,
                    w,
                    dtype=dtype,
                    resize_mode=resize_mode,
                    c_fine=c_fine,
                )
            )
    c8 = channels(0, g.head_width, g.fch)
    specs += output_specs(c8, len(g.branches), num_classes, height, width, resize_mode, dtype)
    return specs


def random_genotype(
    space: SpaceConfig,
    rng: random.Random,
    *,
    role: str = "student",
    lasts: tuple[int, ...] = (2, 1),
    share_prefix: bool = True,
    name: str = "random",
) -> Genotype:
    """A random valid derived architecture of ``space`` (to check latency predictors).

    Every branch has ``space.layers`` layers and ends at the scale given in ``lasts``; its down
    layers, operators (never ``skip``: a derived network has none) and widths are drawn with
    ``rng``. Stem and head widths are the role's. With ``share_prefix`` the later branches may
    copy a random number of the first branch's leading layers, as decoded branches often do.
    """
    L = space.layers
    stem_w, head_w = role_widths(space, role)
    ops = [op for op in space.ops if op != "skip"] or list(space.ops)
    choices = list(space.width_choices)
    branches: list[Branch] = []
    for b, last in enumerate(lasts):
        if not 0 <= last < NUM_SCALES:
            raise ValueError(f"lasts[{b}] must be 0, 1 or 2, got {last!r}")
        first = branches[0] if branches else None
        keep = rng.randint(0, L // 2) if first is not None and share_prefix else 0
        first_downs = [] if first is None else [i for i, s in enumerate(first.strides()) if s == 2]
        while keep and sum(d < keep for d in first_downs) > last:
            keep -= 1
        fixed = [d for d in first_downs if d < keep]
        downs = sorted(fixed + rng.sample(range(keep, L - 1), last - len(fixed)))
        path = [0]
        for i in range(L - 1):
            path.append(path[-1] + (i in downs))
        layer_ops = [rng.choice(ops) for _ in range(L)]
        widths = [rng.choice(choices) for _ in range(L - 1)] + [head_w]
        if first is not None:
            layer_ops[:keep] = first.ops[:keep]
            widths[:keep] = first.widths[:keep]
        branches.append(Branch(tuple(layer_ops), tuple(path), tuple(widths)))
    return Genotype(
        name=name,
        fch=space.fch,
        stem_width=stem_w,
        head_width=head_w,
        width_choices=tuple(choices),
        branches=tuple(branches),
    ).validate()

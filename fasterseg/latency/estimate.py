"""Latency estimates from a lookup table: of a derived network, and of a SuperNet role
(differentiable in its architecture parameters, method section 3.3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..arch import NUM_SCALES, cell_inputs, channels
from ..genotype import Genotype, scale_rate
from ..space.roles import Role, WidthMode
from ..space.supernet import SuperNet, WidthSample
from .enumerate import check_resolution, genotype_kernels, stem_spec
from .spec import OpSpec
from .table import LatencyTable, LatencyTableError

#: Weights of the decoupled latency loss (reference ``search/architect.py``): alpha free,
#: beta free, widths sampled; with a single width choice only the first two, 1/500 and 499/500.
LOSS_WEIGHTS = (1 / 500, 497 / 500, 2 / 500)
LOSS_WEIGHTS_SINGLE_WIDTH = (1 / 500, 499 / 500)
_MODES = ("free", "uniform")


def genotype_latency(
    genotype: Genotype,
    table: LatencyTable,
    *,
    height: int,
    width: int,
    num_classes: int = 19,
    resize_mode: str = "bilinear",
    calibrated: bool | None = None,
) -> float:
    """Predicted latency (ms) of ``genotype``'s network at (height, width): the sum of the table
    entries of :func:`genotype_kernels`, corrected by the table's
    :class:`~fasterseg.latency.table.Calibration` when it has one (the default, ``calibrated``
    None; see :func:`prediction_kind`). ``calibrated`` False gives the plain sum, True requires
    the calibration (LatencyTableError if the table has none). Missing kernels raise KeyError
    listing them all and how to fill them."""
    dtype = table.fingerprint.get("dtype", "float32")
    specs = genotype_kernels(genotype, height, width, num_classes, resize_mode, dtype)
    table.require(specs)
    total = sum(table.lookup(s) for s in specs)
    if calibrated is False or (calibrated is None and table.calibration is None):
        return total
    if table.calibration is None:
        raise LatencyTableError(
            f"{table.path or 'latency table'} has no calibration; `fasterseg lut build` fits "
            "one when it checks the table against whole networks (latency.check_networks)"
        )
    return table.calibration.apply(total)


def prediction_kind(table: LatencyTable) -> str:
    """What :func:`genotype_latency` predicts by default on ``table``, in words."""
    c = table.calibration
    if c is None:
        return "the sum of the table's kernels (the table has no calibration)"
    return (
        f"the sum of the table's kernels calibrated on {c.fitted_on} networks timed end to end "
        f"({c.describe()})"
    )


def _check_mode(name: str, mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"{name} must be 'free' or 'uniform', got {mode!r}")


def expected_latency(
    net: SuperNet,
    role: Role | str,
    widths: WidthSample,
    table: LatencyTable,
    *,
    height: int,
    width: int,
    alpha_mode: str = "free",
    beta_mode: str = "free",
    reference_quirks: bool = False,
) -> Tensor:
    """Differentiable expected latency (ms, a 0-dim tensor) of ``role``'s supernet at
    (height, width), from its alpha, beta and the widths of ``widths``.

    Each MixedOp contributes ``E = sum_k softmax(alpha)_k * lat_k(C_in, C_out) * g_in * g_out``
    where C_in/C_out are the widths picked in ``widths`` and g the straight-through gates
    (value 1, gradient to the width logits); ``lat_k`` is the table entry of operator k as a
    fixed-width kernel (what the derived network would run). Path latencies are accumulated
    per scale from the stem: ``keep[s]`` (to produce the scale-s keep output of a layer) and
    ``down[s+1]`` (its down output). The result is ``keep[0] + keep[1] + keep[2]`` after the
    last layer (no head). ``alpha_mode``/``beta_mode`` ``"uniform"`` replace the softmax by
    constant 1/P and 1/2 (the decoupled loss, :func:`latency_loss`).

    Default (the formula the paper describes), layer i, scale s, with the previous layer's
    path latencies and ``b = softmax(beta_s)[i - s - 1]``::

        base = keep[0]                                  s == 0
             = down[s]                                  s == i (first cell at scale s)
             = b[1] * keep[s] + b[0] * down[s]          otherwise
        keep'[s] = base + E_keep;  down'[s+1] = base + E_down

    ``reference_quirks=True`` reproduces ``Network_Multi_Path.forward_latency`` of the
    reference: the path latencies are updated in place, scale by scale, so the down latency is
    added onto the keep latency already updated in the same layer (and a scale's input from
    the finer scale already includes this layer's down op); the beta row is
    ``betas[j][i - j - 1]`` with ``j`` the last cell index of the layer (at layer 2 that is
    row -1 of the /32 betas) for every scale; and ``conv_2x_downup`` is charged
    ``conv_2x``'s latency.
    """
    _check_mode("alpha_mode", alpha_mode)
    _check_mode("beta_mode", beta_mode)
    check_resolution(height, width)
    role = Role(role)
    fch = net.space.fch
    dtype = table.fingerprint.get("dtype", "float32")
    stem_w, _ = net.role_widths[role]
    device = net.alphas(role)[0].device

    alphas = [
        F.softmax(a, dim=-1) if alpha_mode == "free" else torch.full_like(a, 1 / a.shape[-1])
        for a in net.alphas(role)
    ]
    betas = [
        F.softmax(b, dim=-1) if beta_mode == "free" else torch.full_like(b, 0.5)
        for b in net.betas(role)
    ]
    ops = ["conv_2x" if reference_quirks and op == "conv_2x_downup" else op for op in net.op_names]
    # Latencies of every operator for one (scale, stride, C_in, C_out); cells repeat them.
    vectors: dict[tuple[int, int, int, int], Tensor] = {}

    def op_latencies(s: int, stride: int, c_in: int, c_out: int) -> Tensor:
        key = (s, stride, c_in, c_out)
        if key not in vectors:
            h, w = height // scale_rate(s), width // scale_rate(s)
            vectors[key] = torch.tensor(
                [
                    table.lookup(OpSpec(op, c_in, c_out, h, w, stride, dtype, net.resize_mode))
                    for op in ops
                ],
                dtype=alphas[s].dtype,
                device=device,
            )
        return vectors[key]

    def mixed(i: int, s: int, stride: int) -> Tensor:
        """Expected latency of the keep (stride 1) or down (stride 2) MixedOp of cell (i, s)."""
        if i == 0:
            c_in, g_in = channels(0, stem_w, fch), 1.0
        else:
            c_in, g_in = net.out_width(widths, role, s, i - 1)
        c_out, g_out = net.out_width(widths, role, s + (stride == 2), i)
        lat = op_latencies(s, stride, c_in, c_out)
        return (alphas[s][i - s] * lat).sum() * g_in * g_out

    stem = torch.tensor(
        table.lookup(stem_spec(fch, stem_w, height, width, net.resize_mode, dtype)),
        dtype=alphas[0].dtype,
        device=device,
    )
    if reference_quirks:
        return _accumulate_reference(net, betas, mixed, stem)
    keep: dict[int, Tensor] = {0: stem}
    down: dict[int, Tensor] = {}
    for i, row in enumerate(net.cells):
        new_keep: dict[int, Tensor] = {}
        new_down: dict[int, Tensor] = {}
        for s, cell in enumerate(row):
            base = sum(w * lat for lat, w in cell_inputs(i, s, keep, down, betas))
            new_keep[s] = base + mixed(i, s, 1)
            if cell.down is not None:
                new_down[s + 1] = base + mixed(i, s, 2)
        keep, down = new_keep, new_down
    return sum(keep[s] for s in range(NUM_SCALES))


def _accumulate_reference(
    net: SuperNet,
    betas: Sequence[Tensor],
    mixed: Callable[[int, int, int], Tensor],
    stem: Tensor,
) -> Tensor:
    """The reference's in-place accumulation (see :func:`expected_latency`)."""
    total: list[list[Tensor | float]] = [[stem, 0.0], [0.0, 0.0], [0.0, 0.0]]
    for i, row in enumerate(net.cells):
        lats = [
            (mixed(i, s, 1), mixed(i, s, 2) if cell.down is not None else None)
            for s, cell in enumerate(row)
        ]
        j = len(row) - 1  # the reference reuses the last cell index of the layer here
        for s, (lat_keep, lat_down) in enumerate(lats):
            if s == 0:
                total[0][0] = total[0][0] + lat_keep
                if lat_down is not None:
                    total[0][1] = total[0][0] + lat_down
            elif i == s:
                total[s][0] = total[s - 1][1] + lat_keep
                if lat_down is not None:
                    total[s][1] = total[s - 1][1] + lat_down
            else:
                b = betas[j - 1][i - j - 1]
                total[s][0] = b[1] * total[s][0] + b[0] * total[s - 1][1] + lat_keep
                if lat_down is not None:
                    total[s][1] = b[1] * total[s][0] + b[0] * total[s - 1][1] + lat_down
    return total[0][0] + total[1][0] + total[2][0]


def latency_loss(
    net: SuperNet,
    role: Role | str,
    widths: WidthSample,
    table: LatencyTable,
    *,
    height: int,
    width: int,
    reference_quirks: bool = False,
) -> Tensor:
    """The decoupled ("fine-grained") latency term of the architecture loss (section 3.3), ms:

    ``1/500 * L(alpha free, beta uniform, widths max) + 497/500 * L(alpha uniform, beta free,
    widths max) + 2/500 * L(alpha and beta uniform, widths = widths)``; with a single width
    choice the last term is dropped and the weights are 1/500 and 499/500. Each part isolates
    the gradient of one kind of architecture parameter.
    """
    widest = net.sample_widths(role, WidthMode.MAX)

    def part(alpha: str, beta: str, w: WidthSample) -> Tensor:
        return expected_latency(
            net,
            role,
            w,
            table,
            height=height,
            width=width,
            alpha_mode=alpha,
            beta_mode=beta,
            reference_quirks=reference_quirks,
        )

    if len(net.width_choices) == 1:
        r0, r1 = LOSS_WEIGHTS_SINGLE_WIDTH
        return r0 * part("free", "uniform", widest) + r1 * part("uniform", "free", widest)
    r0, r1, r2 = LOSS_WEIGHTS
    return (
        r0 * part("free", "uniform", widest)
        + r1 * part("uniform", "free", widest)
        + r2 * part("uniform", "uniform", widths)
    )

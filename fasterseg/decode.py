"""Decoding: architecture parameters of one supernet role -> :class:`~fasterseg.genotype.Genotype`.

A pure function module (numpy only): it follows the reference decoder (``train/model_seg.py``:
``betas2path``, ``path2widths``, ``alphas2ops_path_width``, ``network_metas``) generalised from
16 to any number of layers ``L >= 6``. One branch ending at scale index ``last`` (0 = /8,
1 = /16, 2 = /32) is decoded in three steps:

1. **Path.** A stride vector ``downs`` (length ``L``; ``downs[l] = 1`` means layer ``l`` has
   stride 2) is read from the softmaxed betas; ``path[l] = sum(downs[:l])`` is the *input*
   scale of layer ``l``.
2. **Widths.** ``width[l-1]`` is the width choice with the largest ratio logit at the output of
   layer ``l-1`` (scale ``path[l]``); the last layer uses ``head_width``.
3. **Ops and skip compaction.** Each layer takes the argmax of its alpha row. Stride-1 ``skip``
   layers are deleted (at most ``L - min_len`` of them, ``min_len = round(L/3) + 2*last``, the
   most probable first); every other skip is replaced by the next-best op. A segment after a
   down layer (up to the next down layer or the end) that would consist only of skips keeps
   its least probable skip, forbidden, as a real op.

The reference has a few quirks (down layer one layer early for last=1, betas re-softmaxed once
per decode call, alpha edits shared between the branches, forbidden skips still counting
towards the removal quota); :class:`DecodeOptions` reproduces each one by default and turns on
the corrected behaviour when set to False.

Ties are broken as in the reference (first maximum for argmax and the beta search, the later
layer for the least probable skip, layer order for equal skip probabilities). Probabilities are
computed in the parameters' own float dtype; values equal in exact arithmetic can still differ
by one rounding step, and numpy's ``exp`` rounds differently from torch's, so such exact ties
(which trained, continuous parameters practically never produce) may resolve differently from
the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .arch import NUM_SCALES, ratio_row, ratio_rows
from .errors import ConfigError, GenotypeError
from .genotype import Branch, Genotype

SKIP = "skip"
MIN_LAYERS = 6


@dataclass(frozen=True)
class ArchParams:
    """Architecture parameters (logits) of one supernet role, as the supernet exports them.

    ``L`` = number of layers, ``P`` = number of ops, ``K`` = number of width choices.

    * ``alphas``: shapes (L, P), (L-1, P), (L-2, P); row ``r`` of ``alphas[s]`` is the cell at
      scale ``s`` in layer ``r + s``; column order = the op list.
    * ``betas``: shapes (L-2, 2) for scale 1 (cells at layers 2..L-1) and (L-3, 2) for scale 2
      (cells at layers 3..L-1); column 0 = from-down, column 1 = from-keep.
    * ``ratios``: shapes (L-1, K), (L-1, K), (L-2, K); ``ratios[s][k]`` is the output width at
      scale ``s`` of layer ``k`` (s = 0, 1) or of layer ``k + 1`` (s = 2). None for a role that
      runs at full width (the teacher).

    Arrays may be numpy arrays or torch tensors (read through ``.detach().cpu()``).
    """

    alphas: tuple[Any, Any, Any]
    betas: tuple[Any, Any]
    ratios: tuple[Any, Any, Any] | None = None

    @property
    def num_layers(self) -> int:
        """Number of layers ``L`` (rows of ``alphas[0]``)."""
        return len(self.alphas[0])


@dataclass(frozen=True)
class DecodeOptions:
    """Each field reproduces a documented quirk of the reference (True, default) or turns on the
    corrected behaviour (False).

    * ``reference_last1_offset``: for last=1 the down layer is read from beta1 row ``r*`` (the
      scale-16 cell at layer ``r* + 2``, whose from-down weight says layer ``r* + 1`` was the
      down layer). The reference sets ``downs[r*] = 1``, one layer early; corrected:
      ``downs[r* + 1] = 1``.
    * ``reference_resoftmax``: the reference softmaxes the same betas list in place once per
      decode call, in the order last = 0, 1, 2, so branch ``last`` sees betas softmaxed
      ``last + 1`` times. This keeps the last=1 argmax (two columns: a monotone map) but can
      reorder the last=2 products. Corrected: softmax applied once.
    * ``reference_shared_alpha_edits``: the reference decodes last = 0, 1, 2 in that order on the
      same alpha arrays and sets a skip logit to -inf in place whenever it forbids or replaces
      a skip, so the bans made for one branch persist into the later ones. Corrected: every
      branch is decoded from the original alphas.
    * ``reference_stale_skip_quota``: the reference ranks the removable skips for the
      ``L - min_len`` quota *including* a skip it has just forbidden in an all-skip segment;
      that skip is then kept (as its next-best op) but still uses one slot of the quota, so
      fewer skips may be removed than allowed. Corrected: forbidden skips leave the ranking.
    """

    reference_last1_offset: bool = True
    reference_resoftmax: bool = True
    reference_shared_alpha_edits: bool = True
    reference_stale_skip_quota: bool = True


@dataclass(frozen=True)
class _Decoded:
    """One decoded branch plus what decode records about it in ``Genotype.meta``."""

    branch: Branch
    full_path: tuple[int, ...]
    removed: tuple[int, ...]


@dataclass(frozen=True)
class _Params:
    """Validated numpy copies of an :class:`ArchParams`."""

    alphas: tuple[np.ndarray, np.ndarray, np.ndarray]
    betas: tuple[np.ndarray, np.ndarray]
    ratios: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    num_layers: int


def decode_branch(
    arch: ArchParams,
    last: int,
    *,
    ops: Sequence[str],
    width_choices: Sequence[float],
    head_width: float,
    forbid_skip: bool,
    options: DecodeOptions = DecodeOptions(),
) -> Branch:
    """Decode the branch ending at scale index ``last`` (0 = /8, 1 = /16, 2 = /32).

    ``ops`` names the alpha columns (P entries); ``width_choices`` the ratio columns (K
    entries); ``forbid_skip`` (the teacher) never picks the op named ``"skip"``. With
    ``options.reference_shared_alpha_edits`` the branches last = 0 .. ``last`` - 1 are decoded
    first on the same alpha copy, so the result equals the reference's branch ``last``.
    The caller's arrays are never modified. Returns a Branch with ``n <= L`` layers.
    """
    params = _prepare(arch, ops, width_choices)
    _check_last(last)
    if options.reference_shared_alpha_edits:
        decoded = _decode_in_reference_order(
            params, last, ops, width_choices, head_width, forbid_skip, options
        )
        return decoded[last].branch
    alphas = [a.copy() for a in params.alphas]
    return _decode_one(
        params, alphas, last, ops, width_choices, head_width, forbid_skip, options
    ).branch


def decode(
    arch: ArchParams,
    lasts: Sequence[int] = (2, 1),
    *,
    name: str,
    ops: Sequence[str],
    fch: int,
    stem_width: float,
    head_width: float,
    width_choices: Sequence[float],
    forbid_skip: bool,
    options: DecodeOptions = DecodeOptions(),
    meta: dict | None = None,
) -> Genotype:
    """Decode the branches ending at the scale indices ``lasts`` into a validated Genotype.

    Branches come in the order of ``lasts`` (``(2, 1)``: the /32 branch first, then /16).
    ``meta`` is copied into ``Genotype.meta``; decode adds a ``"decode"`` entry with the lasts,
    the options, and per branch the full L-layer path before skip removal and the removed
    layer indices. Raises GenotypeError for malformed parameters, ConfigError for bad lasts or
    ops, and GenotypeError when the result fails validation (e.g. 1.0 not among
    ``width_choices`` for a role without ratios).
    """
    params = _prepare(arch, ops, width_choices)
    lasts = tuple(lasts)
    if not lasts:
        raise ConfigError("decode: 'lasts' must name at least one branch (0, 1 or 2)")
    for last in lasts:
        _check_last(last)
    if meta is not None and "decode" in meta:
        raise GenotypeError("decode: meta key 'decode' is reserved for the decoding record")
    if options.reference_shared_alpha_edits:
        decoded = _decode_in_reference_order(
            params, max(lasts), ops, width_choices, head_width, forbid_skip, options
        )
    else:
        decoded = {
            last: _decode_one(
                params,
                [a.copy() for a in params.alphas],
                last,
                ops,
                width_choices,
                head_width,
                forbid_skip,
                options,
            )
            for last in set(lasts)
        }
    record = {
        "lasts": [int(last) for last in lasts],
        "options": asdict(options),
        "forbid_skip": bool(forbid_skip),
        "num_layers": params.num_layers,
        "branches": [
            {
                "last": int(last),
                "full_path": list(decoded[last].full_path),
                "removed_layers": list(decoded[last].removed),
            }
            for last in lasts
        ],
    }
    return Genotype(
        name=name,
        fch=fch,
        stem_width=stem_width,
        head_width=head_width,
        width_choices=tuple(float(w) for w in width_choices),
        branches=tuple(decoded[last].branch for last in lasts),
        meta={**(meta or {}), "decode": record},
    ).validate()


def _decode_in_reference_order(
    params: _Params,
    up_to: int,
    ops: Sequence[str],
    width_choices: Sequence[float],
    head_width: float,
    forbid_skip: bool,
    options: DecodeOptions,
) -> dict[int, _Decoded]:
    """Decode last = 0 .. ``up_to`` in order on one alpha copy, as the reference does."""
    alphas = [a.copy() for a in params.alphas]
    return {
        last: _decode_one(
            params, alphas, last, ops, width_choices, head_width, forbid_skip, options
        )
        for last in range(up_to + 1)
    }


def _decode_one(
    params: _Params,
    alphas: list[np.ndarray],
    last: int,
    ops: Sequence[str],
    width_choices: Sequence[float],
    head_width: float,
    forbid_skip: bool,
    options: DecodeOptions,
) -> _Decoded:
    """Decode one branch; skip bans are written into ``alphas`` (the caller's working copy)."""
    n_layers = params.num_layers
    times = last + 1 if options.reference_resoftmax else 1
    beta1 = _softmax(params.betas[0], times)
    beta2 = _softmax(params.betas[1], times)
    downs = _downs(beta1, beta2, last, n_layers, options.reference_last1_offset)
    path = _path(downs)
    widths = _widths(path, params.ratios, width_choices, head_width)
    skip = list(ops).index(SKIP) if SKIP in ops else None
    if skip is not None and forbid_skip:
        for a in alphas:
            a[:, skip] = -np.inf
    op_ids, kept = _ops_and_compaction(
        alphas, path, downs, skip, last, options.reference_stale_skip_quota
    )
    kept_downs = [downs[k] for k in kept]
    branch = Branch(
        ops=tuple(ops[i] for i in op_ids),
        path=tuple(_path(kept_downs)),
        widths=(*(widths[k] for k in kept[:-1]), float(head_width)),
    )
    kept_set = set(kept)
    removed = tuple(k for k in range(n_layers) if k not in kept_set)
    return _Decoded(branch=branch, full_path=tuple(path), removed=removed)


def _downs(
    beta1: np.ndarray, beta2: np.ndarray, last: int, n_layers: int, last1_offset: bool
) -> list[int]:
    """Stride vector (length L) from softmaxed betas: ``downs[l] = 1`` where layer l has stride 2.

    ``beta1``: (L-2, 2), row r = scale-16 cell at layer r+2; ``beta2``: (L-3, 2), row r =
    scale-32 cell at layer r+3. A from-down weight at a cell in layer c says layer c-1 went down.
    """
    downs = [0] * n_layers
    if last == 1:
        # rows 1..L-4 only, as the reference (betas[1][1:-1]); first maximum wins
        r_star = 1 + int(np.argmax(beta1[1:-1, 0]))
        downs[r_star if last1_offset else r_star + 1] = 1
    elif last == 2:
        # exhaustive search over the reference's ranges; strict > keeps the first maximum and
        # the (0, 1) fallback when every product is 0
        best, best_ij = 0.0, (0, 1)
        for j in range(n_layers - 4):
            for i in range(1, j - 1):
                prob = beta1[i, 0] * beta2[j, 0]
                if prob > best:
                    best, best_ij = prob, (i, j)
        downs[best_ij[0] + 1] = 1
        downs[best_ij[1] + 2] = 1
    return downs


def _path(downs: Sequence[int]) -> list[int]:
    """Input scale of every layer: ``path[l] = sum(downs[:l])``."""
    return [int(sum(downs[:layer])) for layer in range(len(downs))]


def _widths(
    path: Sequence[int],
    ratios: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    width_choices: Sequence[float],
    head_width: float,
) -> list[float]:
    """Output width of every layer of the full path (length L; the last is ``head_width``)."""
    widths = []
    for layer in range(1, len(path)):
        scale = path[layer]
        if ratios is None:
            widths.append(1.0)
        else:
            row = ratio_row(scale, layer - 1)
            widths.append(float(width_choices[int(np.argmax(ratios[scale][row]))]))
    return [*widths, float(head_width)]


def _ops_and_compaction(
    alphas: list[np.ndarray],
    path: Sequence[int],
    downs: Sequence[int],
    skip: int | None,
    last: int,
    stale_quota: bool,
) -> tuple[list[int], list[int]]:
    """Op index per kept layer and the kept layer indices (ascending); edits ``alphas``.

    Mirrors ``alphas2ops_path_width``: removable = stride-1 layers whose argmax is skip.
    """
    n_layers = len(path)

    def row(layer: int) -> np.ndarray:
        return alphas[path[layer]][layer - path[layer]]

    if skip is None:
        return [int(np.argmax(row(k))) for k in range(n_layers)], list(range(n_layers))
    min_len = int(np.round(n_layers / 3)) + 2 * last
    candidates = [
        (k, _softmax(row(k), 1)[skip])
        for k in range(n_layers)
        if not downs[k] and int(np.argmax(row(k))) == skip
    ]
    removable = {k for k, _ in candidates}
    banned = set()
    down_layers = [k for k in range(n_layers) if downs[k]]
    if down_layers:
        # segments: after each down layer up to the next down layer, and after the last down
        # layer up to the end (the layers before the first down layer form no segment)
        bounds = [*down_layers, n_layers]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            segment = range(start + 1, stop)
            if len(segment) and all(k in removable for k in segment):
                # least probable skip; on ties the later layer, like the reference's <=
                scores = [_softmax(row(k), 1)[skip] for k in segment]
                least = segment[len(scores) - 1 - int(np.argmin(scores[::-1]))]
                row(least)[skip] = -np.inf
                banned.add(least)
    if not stale_quota:
        candidates = [c for c in candidates if c[0] not in banned]
    quota = n_layers - min_len
    if len(candidates) > quota:
        # stable sort, most probable first; equal probabilities keep layer order
        candidates = sorted(candidates, key=lambda c: c[1], reverse=True)[:quota]
    removable = {k for k, _ in candidates}
    op_ids, kept = [], []
    for k in range(n_layers):
        r = row(k)
        op = int(np.argmax(r))
        if op == skip:
            if k in removable:
                continue
            r[skip] = -np.inf
            op = int(np.argmax(r))
        op_ids.append(op)
        kept.append(k)
    return op_ids, kept


def _softmax(x: np.ndarray, times: int) -> np.ndarray:
    """Softmax over the last axis, applied ``times`` times, in the array's own float dtype."""
    for _ in range(times):
        e = np.exp(x - np.max(x, axis=-1, keepdims=True))
        x = e / e.sum(axis=-1, keepdims=True)
    return x


def _check_last(last: Any) -> None:
    if (
        not isinstance(last, (int, np.integer))
        or isinstance(last, bool)
        or last not in range(NUM_SCALES)
    ):
        raise ConfigError(f"decode: a branch 'last' must be 0, 1 or 2 (/8, /16, /32), got {last!r}")


def _to_numpy(value: Any, key: str) -> np.ndarray:
    """A float copy of a numpy array or torch tensor (float32 stays float32, like the reference)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.array(value, copy=True)
    if not np.issubdtype(array.dtype, np.floating):
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(
            array.dtype, np.complexfloating
        ):
            raise GenotypeError(f"arch params: {key} must hold real numbers, got {array.dtype}")
        array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise GenotypeError(f"arch params: {key} contains non-finite values (NaN or inf)")
    return array


def _prepare(arch: ArchParams, ops: Sequence[str], width_choices: Sequence[float]) -> _Params:
    """Validate shapes against ``ops`` / ``width_choices`` and return numpy copies."""
    ops = list(ops)
    if not ops or not all(isinstance(o, str) for o in ops) or len(set(ops)) != len(ops):
        raise ConfigError(f"decode: 'ops' must be a non-empty list of distinct names, got {ops!r}")
    if SKIP in ops and len(ops) < 2:
        raise ConfigError("decode: 'ops' holds only 'skip'; a replacement op is needed")
    if not len(width_choices):
        raise ConfigError("decode: 'width_choices' must not be empty")
    if len(arch.alphas) != NUM_SCALES or len(arch.betas) != NUM_SCALES - 1:
        raise GenotypeError(
            f"arch params: expected {NUM_SCALES} alphas and {NUM_SCALES - 1} betas, got "
            f"{len(arch.alphas)} and {len(arch.betas)}"
        )
    alphas = tuple(_to_numpy(a, f"alphas[{s}]") for s, a in enumerate(arch.alphas))
    n_layers = alphas[0].shape[0] if alphas[0].ndim == 2 else -1
    if n_layers < MIN_LAYERS:
        raise GenotypeError(
            f"arch params: alphas[0] must have shape (L, {len(ops)}) with L >= {MIN_LAYERS}, "
            f"got {alphas[0].shape}"
        )
    betas = tuple(_to_numpy(b, f"betas[{s}]") for s, b in enumerate(arch.betas))
    expected = {
        **{f"alphas[{s}]": (a, (n_layers - s, len(ops))) for s, a in enumerate(alphas)},
        "betas[0]": (betas[0], (n_layers - 2, 2)),
        "betas[1]": (betas[1], (n_layers - 3, 2)),
    }
    ratios = None
    if arch.ratios is not None:
        if len(arch.ratios) != NUM_SCALES:
            raise GenotypeError(
                f"arch params: expected {NUM_SCALES} ratios, got {len(arch.ratios)}"
            )
        ratios = tuple(_to_numpy(r, f"ratios[{s}]") for s, r in enumerate(arch.ratios))
        k = len(width_choices)
        for s in range(NUM_SCALES):
            expected[f"ratios[{s}]"] = (ratios[s], (ratio_rows(s, n_layers), k))
    for key, (array, shape) in expected.items():
        if array.shape != shape:
            raise GenotypeError(
                f"arch params: {key} has shape {array.shape}, expected {shape} "
                f"(L = {n_layers}, {len(ops)} ops, {len(width_choices)} width choices)"
            )
    return _Params(alphas=alphas, betas=betas, ratios=ratios, num_layers=n_layers)


# ------------------------------------------------------------------ single paths
#
# A one-hot assignment of a role's architecture parameters (one operator per cell, one input
# per cell, one width per searched output) is a single path through the supernet: the
# supernet's forward with it computes exactly one operator per cell. ``trace`` reads the
# branches such an assignment runs; ``encode`` writes a genotype's branches into one, so that
# the supernet can score any genotype of its space with its shared weights (a one-shot score).

#: The logit of every choice a one-hot assignment does not make: its softmax weight is 0.0
#: exactly in float32 and float64 (exp(-1e4) underflows), so no other operator leaks in.
OFF = -1e4


def one_hot(arch: ArchParams, ops: Sequence[str], width_choices: Sequence[float]) -> ArchParams:
    """The argmax of every row of ``arch`` as one-hot logits (0 for the choice, :data:`OFF`
    for the others); ties go to the first maximum, as everywhere in decoding."""
    p = _hot(arch, ops, width_choices)
    return ArchParams(alphas=p.alphas, betas=p.betas, ratios=p.ratios)


def _hot(arch: ArchParams, ops: Sequence[str], width_choices: Sequence[float]) -> _Params:
    """:func:`one_hot` of the validated ``arch``, as fresh arrays a caller may edit."""
    p = _prepare(arch, ops, width_choices)

    def hot(a: np.ndarray) -> np.ndarray:
        out = np.full(a.shape, OFF, dtype=np.float64)
        out[np.arange(len(a)), np.argmax(a, axis=-1)] = 0.0
        return out

    return _Params(
        alphas=tuple(hot(a) for a in p.alphas),
        betas=tuple(hot(b) for b in p.betas),
        ratios=None if p.ratios is None else tuple(hot(r) for r in p.ratios),
        num_layers=p.num_layers,
    )


def _entered(path: Sequence[int]) -> list[tuple[int, int, int]]:
    """(layer, scale, column) of every cell on ``path`` (input scales per layer) that has a
    path weight: its beta row ``betas[scale - 1][layer - scale - 1]`` and the column the path
    enters by (0 from the finer scale's down output, 1 from the same scale's keep)."""
    return [
        (i, s, 0 if path[i - 1] < s else 1)
        for i, s in enumerate(path)
        if 0 < s < i  # /8 cells and each scale's first cell read one input only
    ]


def random_one_hot(
    num_layers: int,
    ops: Sequence[str],
    width_choices: Sequence[float],
    rng: Any,
    *,
    allowed_ops: Sequence[str] | None = None,
) -> ArchParams:
    """A uniformly random one-hot assignment for ``num_layers`` layers drawn with ``rng`` (a
    ``random.Random``): each cell's operator among ``allowed_ops`` (default: all of ``ops``),
    each cell's input and each searched output's width."""
    allowed = [list(ops).index(o) for o in (allowed_ops if allowed_ops is not None else ops)]
    if not allowed:
        raise ConfigError("random_one_hot: no operator allowed")
    L = num_layers

    def rows(n: int, k: int, pick: Sequence[int]) -> np.ndarray:
        out = np.full((n, k), OFF)
        for r in range(n):
            out[r, rng.choice(list(pick))] = 0.0
        return out

    K = len(width_choices)
    return ArchParams(
        alphas=tuple(rows(L - s, len(ops), allowed) for s in range(NUM_SCALES)),
        betas=(rows(L - 2, 2, (0, 1)), rows(L - 3, 2, (0, 1))),
        ratios=tuple(rows(ratio_rows(s, L), K, range(K)) for s in range(NUM_SCALES)),
    )


def with_paths(
    arch: ArchParams,
    paths: Sequence[Sequence[int]],
    *,
    ops: Sequence[str],
    width_choices: Sequence[float],
) -> ArchParams:
    """``arch`` as one-hot logits whose cells on ``paths`` (full input-scale paths of the
    supernet's ``L`` layers, each starting at /8 and rising by at most one per layer) read the
    input their path comes from, so that :func:`trace` follows them. Raises GenotypeError
    naming the cell where two paths arrive from different inputs."""
    p = _hot(arch, ops, width_choices)
    betas = p.betas
    chosen: dict[tuple[int, int], int] = {}
    for n, path in enumerate(paths):
        path = list(path)
        steps_ok = all(0 <= b - a <= 1 for a, b in zip(path, path[1:]))
        if len(path) != p.num_layers or not path or path[0] != 0 or not steps_ok:
            raise GenotypeError(f"path {n}: {path} is no path of {p.num_layers} layers from /8")
        for i, s, col in _entered(path):
            if chosen.setdefault((i, s), col) != col:
                raise GenotypeError(
                    f"path {n} enters the cell of layer {i} at /{8 * 2**s} from another input "
                    "than an earlier path"
                )
            betas[s - 1][i - s - 1] = OFF
            betas[s - 1][i - s - 1, col] = 0.0
    return ArchParams(alphas=p.alphas, betas=betas, ratios=p.ratios)


def _input_from_down(betas: tuple[np.ndarray, np.ndarray], layer: int, scale: int) -> bool:
    """Whether the one-hot cell (``layer``, ``scale``) reads the finer scale's down output."""
    if scale == 0:
        return False
    if layer == scale:
        return True
    return int(np.argmax(betas[scale - 1][layer - scale - 1])) == 0


def trace(
    arch: ArchParams,
    lasts: Sequence[int],
    *,
    name: str,
    ops: Sequence[str],
    fch: int,
    stem_width: float,
    head_width: float,
    width_choices: Sequence[float],
    meta: dict | None = None,
) -> Genotype:
    """The genotype that the single path of ``arch`` (read through its argmax) runs into the
    heads at ``lasts``: each branch followed back from its last cell along each cell's input,
    its operators and widths those of the cells and outputs it passes. No layer is removed
    (a ``skip`` stays a layer), so ``encode`` of the result reproduces the path exactly."""
    p = _hot(arch, ops, width_choices)
    L = p.num_layers
    branches = []
    for last in lasts:
        _check_last(last)
        scales = [last]  # the cell each layer runs in, collected from the last layer back
        for layer in range(L - 1, 0, -1):
            s = scales[-1]
            scales.append(s - 1 if _input_from_down(p.betas, layer, s) else s)
        path = scales[::-1]
        if path[0] != 0:
            raise GenotypeError(f"trace: branch {last} does not start at /8")  # by construction
        out_scales = [*path[1:], path[-1]]
        widths = [
            1.0 if p.ratios is None
            else float(width_choices[int(np.argmax(p.ratios[s][ratio_row(s, layer)]))])
            for layer, s in enumerate(out_scales[:-1])
        ]  # fmt: skip
        branches.append(
            Branch(
                ops=tuple(ops[int(np.argmax(p.alphas[s][layer - s]))] for layer, s in
                          enumerate(path)),
                path=tuple(path),
                widths=(*widths, float(head_width)),
            )
        )  # fmt: skip
    return Genotype(
        name=name,
        fch=fch,
        stem_width=stem_width,
        head_width=head_width,
        width_choices=tuple(float(w) for w in width_choices),
        branches=tuple(branches),
        meta=dict(meta or {}),
    ).validate()


def _full_layers(geno: Genotype, b: int, num_layers: int) -> list[tuple[int, int, str | None]]:
    """(layer, input scale, op) of every supernet layer branch ``b`` runs, ``op`` None for a
    layer its decoding removed (a stride-1 ``skip``): the genotype's own layers when it has
    ``num_layers`` of them, else the full path its ``meta['decode']`` recorded."""
    branch = geno.branches[b]
    if len(branch.ops) == num_layers:
        return [(i, s, op) for i, (s, op) in enumerate(zip(branch.path, branch.ops))]
    record = geno.meta.get("decode") or {}
    rows = record.get("branches") or []
    if record.get("num_layers") != num_layers or b >= len(rows):
        raise GenotypeError(
            f"genotype {geno.name!r}: branch {b} has {len(branch.ops)} layers and no decoding "
            f"record of a {num_layers}-layer supernet, so it is no path of this supernet"
        )
    full, removed = rows[b]["full_path"], set(rows[b]["removed_layers"])
    kept = iter(branch.ops)
    return [(i, s, None if i in removed else next(kept)) for i, s in enumerate(full)]


def encode(
    geno: Genotype,
    base: ArchParams,
    *,
    ops: Sequence[str],
    width_choices: Sequence[float],
    overruled: list[str] | None = None,
) -> ArchParams:
    """One-hot architecture parameters whose single path runs ``geno``'s branches: the cells,
    inputs and widths the branches pass are pinned to theirs (a removed layer to ``skip``),
    every other row is the argmax of ``base``. The supernet's forward with the result computes
    each branch exactly; its heads also read the last layer's other scales, which come from
    ``base``.

    Two branches may disagree on a cell (its operator, input or width): the reference's
    decoding bans a skip for one branch that another then drops. Without ``overruled`` that
    raises GenotypeError naming the cell; with a list, the earlier branch's choice stands
    and a line naming the cell is appended. A branch that is no path of a supernet with
    ``base``'s layers always raises GenotypeError."""
    p = _hot(base, ops, width_choices)
    L = p.num_layers
    alphas, betas, ratios = p.alphas, p.betas, p.ratios
    if ratios is None and any(w != 1.0 for br in geno.branches for w in br.widths[:-1]):
        raise GenotypeError(f"genotype {geno.name!r}: widths below 1.0 need width parameters")
    pinned: dict[tuple[str, int, int], tuple[int, int]] = {}  # (kind, s, row) -> (choice, b)

    def pin(array: np.ndarray, kind: str, s: int, row: int, choice: int, b: int, what: str):
        old = pinned.setdefault((kind, s, row), (choice, b))
        if old[0] != choice:
            clash = f"branches {old[1]} and {b} disagree on {what}"
            if overruled is None:
                raise GenotypeError(
                    f"genotype {geno.name!r}: {clash}, so no single path of the supernet runs both"
                )
            overruled.append(f"{clash}: branch {old[1]}'s stands")
            return
        array[row] = OFF
        array[row, choice] = 0.0

    op_index = {o: i for i, o in enumerate(ops)}
    for b, branch in enumerate(geno.branches):
        layers = _full_layers(geno, b, L)
        if len(layers) != L:
            raise GenotypeError(
                f"genotype {geno.name!r}: branch {b} runs {len(layers)} of {L} layers"
            )
        path = [s for _, s, _ in layers]
        entered = {i: col for i, _, col in _entered(path)}
        for i, s, op in layers:
            name = SKIP if op is None else op
            if name not in op_index:
                raise GenotypeError(
                    f"genotype {geno.name!r}: operator {name!r} is not in the space"
                )
            at = f"layer {i} at /{8 * 2**s}"
            pin(alphas[s], "alpha", s, i - s, op_index[name], b, f"the operator of {at}")
            if i in entered:
                pin(betas[s - 1], "beta", s, i - s - 1, entered[i], b, f"the input of {at}")
            out = path[i + 1] if i + 1 < L else s
            if ratios is not None and i < L - 1:
                k = _width_index(branch, layers, i, width_choices, geno)
                if k is not None:
                    pin(ratios[out], "ratio", out, ratio_row(out, i), k, b,
                        f"the width of layer {i}'s output at /{8 * 2 ** out}")  # fmt: skip
    return ArchParams(alphas=alphas, betas=betas, ratios=ratios)


def _width_index(
    branch: Branch,
    layers: list[tuple[int, int, str | None]],
    i: int,
    width_choices: Sequence[float],
    geno: Genotype,
) -> int | None:
    """Index in ``width_choices`` of supernet layer ``i``'s output width on ``branch``; None
    for a layer its decoding removed, whose width the branch does not hold (decoding read it
    from the width parameters, so ``base`` keeps it)."""
    if layers[i][2] is None:
        return None
    width = float(branch.widths[sum(op is not None for _, _, op in layers[:i])])
    choices = [float(w) for w in width_choices]
    if width not in choices:
        raise GenotypeError(
            f"genotype {geno.name!r}: width {width} of layer {i} is not among {choices}"
        )
    return choices.index(width)

"""Tests for fasterseg.decode: architecture parameters -> Genotype (method doc section 5)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from fasterseg.decode import ArchParams, DecodeOptions, decode, decode_branch
from fasterseg.errors import ConfigError, GenotypeError
from fasterseg.genotype import Genotype

OPS = ("skip", "conv", "conv_downup", "conv_2x", "conv_2x_downup")
SKIP, CONV, DOWNUP, CONV2X, CONV2X_DOWNUP = range(5)
WIDTHS = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)
HEAD = 8 / 12
REFERENCE = DecodeOptions()
CORRECTED = DecodeOptions(
    reference_last1_offset=False,
    reference_resoftmax=False,
    reference_shared_alpha_edits=False,
    reference_stale_skip_quota=False,
)


def beta_rows(probs) -> np.ndarray:
    """Beta logits whose softmax has ``probs`` in column 0 (from-down): shape (len(probs), 2)."""
    p = np.asarray(probs, dtype=np.float64)
    return np.stack([np.log(p), np.log1p(-p)], axis=1)


def make_arch(n_layers: int, *, ratios: bool = False, background: float = 0.1) -> ArchParams:
    """Arch with argmax op ``conv`` everywhere and every from-down probability ``background``."""
    alphas = []
    for s in range(3):
        a = np.zeros((n_layers - s, len(OPS)))
        a[:, CONV] = 1.0
        alphas.append(a)
    betas = (
        beta_rows([background] * (n_layers - 2)),
        beta_rows([background] * (n_layers - 3)),
    )
    rat = None
    if ratios:
        rat = tuple(
            np.zeros((rows, len(WIDTHS))) for rows in (n_layers - 1, n_layers - 1, n_layers - 2)
        )
    return ArchParams(alphas=tuple(alphas), betas=betas, ratios=rat)


def set_skip(arch: ArchParams, scale: int, layer: int, strength: float, runner_up: int) -> None:
    """Make skip the argmax of the cell (scale, layer), ``runner_up`` second; larger ``strength``
    = more probable skip."""
    row = arch.alphas[scale][layer - scale]
    row[:] = 0.0
    row[runner_up] = 2.0
    row[SKIP] = 3.0 + strength


def branch(arch: ArchParams, last: int, options: DecodeOptions = REFERENCE, **kw):
    kw.setdefault("forbid_skip", False)
    return decode_branch(
        arch, last, ops=OPS, width_choices=WIDTHS, head_width=HEAD, options=options, **kw
    )


def genotype(arch: ArchParams, lasts, options: DecodeOptions = REFERENCE, **kw) -> Genotype:
    kw.setdefault("forbid_skip", False)
    kw.setdefault("head_width", HEAD)
    return decode(
        arch,
        lasts,
        name="t",
        ops=OPS,
        fch=12,
        stem_width=8 / 12,
        width_choices=WIDTHS,
        options=options,
        **kw,
    )


def full_path(downs) -> list[int]:
    return [int(sum(downs[:k])) for k in range(len(downs))]


# --- rule 1: paths -------------------------------------------------------------------------


def test_last0_has_no_down_layer():
    arch = make_arch(8, background=0.9)
    b = branch(arch, 0)
    assert b.path == (0,) * 8
    assert b.ops == ("conv",) * 8


def test_last1_reference_offset_vs_corrected():
    arch = make_arch(8)
    # rows 0 and L-3 = 5 are outside the searched range 1..L-4 even though they are larger
    arch.betas[0][:] = beta_rows([0.99, 0.2, 0.3, 0.8, 0.4, 0.99])
    ref = branch(arch, 1)
    fixed = branch(arch, 1, DecodeOptions(reference_last1_offset=False))
    # row 3 = scale-16 cell at layer 5 coming from down => layer 4 is the down layer
    assert ref.path == (0, 0, 0, 0, 1, 1, 1, 1)  # reference: downs[3]
    assert fixed.path == (0, 0, 0, 0, 0, 1, 1, 1)  # corrected: downs[4]
    assert ref.strides().index(2) + 1 == fixed.strides().index(2)


def test_last1_first_maximum_wins():
    arch = make_arch(8)
    arch.betas[0][:] = beta_rows([0.1, 0.2, 0.7, 0.7, 0.1, 0.1])
    assert branch(arch, 1).path == (0, 0, 0, 1, 1, 1, 1, 1)


def test_last2_exhaustive_search():
    arch = make_arch(16)
    arch.betas[0][:] = beta_rows([0.1] * 5 + [0.8] + [0.1] * 8)  # beta1 row i = 5
    arch.betas[1][:] = beta_rows([0.1] * 9 + [0.7] + [0.1] * 3)  # beta2 row j = 9
    b = branch(arch, 2)
    assert b.path == tuple(full_path([1 if k in (6, 11) else 0 for k in range(16)]))
    assert b.strides() == tuple(2 if k in (6, 11) else 1 for k in range(16))


def test_last2_ties_and_fallback():
    # uniform betas: every product equal, the first candidate (j = 3, i = 1) wins
    assert branch(make_arch(16), 2).path == tuple(
        full_path([1 if k in (2, 5) else 0 for k in range(16)])
    )
    # L = 6: the ranges hold no candidate, the reference keeps its initial (i, j) = (0, 1)
    assert branch(make_arch(6), 2).path == (0, 0, 1, 1, 2, 2)


def test_section8_published_full_paths():
    arch = make_arch(16)
    probs1 = [0.1] * 14
    probs1[12] = 0.95  # last=1: r* = 12 -> downs[12] (reference offset)
    probs1[8] = 0.9  # last=2: i = 8 -> downs[9]
    probs2 = [0.1] * 13
    probs2[11] = 0.9  # last=2: j = 11 -> downs[13]
    arch.betas[0][:] = beta_rows(probs1)
    arch.betas[1][:] = beta_rows(probs2)
    geno = genotype(arch, (2, 1))
    a, b = geno.branches
    assert list(a.path) == [0] * 10 + [1] * 4 + [2] * 2
    assert list(b.path) == [0] * 13 + [1] * 3
    record = geno.meta["decode"]["branches"]
    assert [r["last"] for r in record] == [2, 1]
    assert record[0]["full_path"] == [0] * 10 + [1] * 4 + [2] * 2
    assert record[1]["removed_layers"] == []


# --- rule 2: widths ------------------------------------------------------------------------


def test_widths_from_ratios_index_rule_per_scale():
    arch = make_arch(8, ratios=True)
    k = len(WIDTHS)
    for s, offset in enumerate((0, 1, 2)):
        for row in range(arch.ratios[s].shape[0]):
            arch.ratios[s][row, (row + offset) % k] = 1.0
    # L = 8, last = 2: downs at layers 2 and 5, path [0,0,0,1,1,1,2,2]
    b = branch(arch, 2)
    assert b.path == (0, 0, 0, 1, 1, 1, 2, 2)
    # width[l-1] from ratios[s][l-1] (s = 0, 1) or ratios[2][l-2], s = path[l]:
    # l=1: r0[0]->0  l=2: r0[1]->1  l=3: r1[2]->3  l=4: r1[3]->4  l=5: r1[4]->0
    # l=6: r2[4]->1  l=7: r2[5]->2
    expected = [WIDTHS[i] for i in (0, 1, 3, 4, 0, 1, 2)] + [HEAD]
    assert b.widths == pytest.approx(expected)
    b0 = branch(arch, 0)  # all at scale 0: ratios[0][l-1]
    assert b0.widths == pytest.approx([WIDTHS[i] for i in (0, 1, 2, 3, 4, 0, 1)] + [HEAD])


def test_widths_without_ratios_are_full():
    b = branch(make_arch(8), 1)
    assert b.widths == (1.0,) * 7 + (HEAD,)


# --- rule 3: ops and skips -----------------------------------------------------------------


def test_teacher_forbids_skip_and_removes_nothing():
    arch = make_arch(16)
    for a in arch.alphas:
        a[:] = 0.0
        a[:, SKIP] = 5.0
        a[:, CONV2X] = 2.0
    geno = genotype(arch, (2, 1), forbid_skip=True, head_width=1.0)
    for b in geno.branches:
        assert len(b.ops) == 16
        assert set(b.ops) == {"conv_2x"}
        assert b.widths == (1.0,) * 16
    # without forbid_skip the same alphas shrink to min_len
    student = genotype(arch, (2, 1), CORRECTED)
    assert [len(b.ops) for b in student.branches] == [9, 7]


def test_all_skip_segment_keeps_least_probable_skip():
    arch = make_arch(8)
    arch.betas[0][:] = beta_rows([0.1, 0.1, 0.1, 0.1, 0.9, 0.1])  # down at layer 4 (reference)
    # segment after the down: layers 5, 6, 7 (scale 1), all skip; layer 6 least probable
    set_skip(arch, 1, 5, 0.9, CONV2X)
    set_skip(arch, 1, 6, 0.1, DOWNUP)
    set_skip(arch, 1, 7, 0.5, CONV2X_DOWNUP)
    b = branch(arch, 1)
    assert b.ops == ("conv",) * 5 + ("conv_downup",)
    assert b.path == (0, 0, 0, 0, 0, 1)
    assert b.widths == (1.0,) * 5 + (HEAD,)
    # equal probabilities: the reference's <= bans the last one (layer 7)
    for layer in (5, 6, 7):
        arch.alphas[1][layer - 1, SKIP] = 3.5
    assert branch(arch, 1).ops == ("conv",) * 5 + ("conv_2x_downup",)


def test_layers_before_first_down_form_no_segment():
    arch = make_arch(16)
    probs = [0.1] * 14
    probs[12] = 0.9
    arch.betas[0][:] = beta_rows(probs)  # last=1: down at layer 12
    for layer in range(12):  # every layer before the down is skip: 12 > quota 9
        set_skip(arch, 0, layer, layer / 10, CONV2X)
    b = branch(arch, 1)
    # nothing is forbidden there: the 9 most probable (layers 3..11) go, 0..2 become conv_2x
    assert b.ops == ("conv_2x",) * 3 + ("conv",) * 4
    assert b.path == (0, 0, 0, 0, 1, 1, 1)
    assert len(b.ops) == 7  # min_len for last=1 at L=16


def test_quota_keeps_only_most_probable_skips_removable():
    arch = make_arch(8)
    strengths = [0.3, 0.8, 0.1, 0.6, 0.7, 0.2, 0.5, 0.4]
    runner_up = [CONV2X, DOWNUP, CONV2X_DOWNUP, CONV2X, DOWNUP, CONV2X, CONV2X, DOWNUP]
    for layer in range(8):
        set_skip(arch, 0, layer, strengths[layer], runner_up[layer])
    geno = genotype(arch, (0,))
    b = geno.branches[0]
    # last=0: min_len = round(8/3) = 3, quota 5: layers 1, 4, 3, 6, 7 go; 0, 2, 5 stay
    assert len(b.ops) == 3
    assert b.ops == ("conv_2x", "conv_2x_downup", "conv_2x")
    assert geno.meta["decode"]["branches"][0]["removed_layers"] == [1, 3, 4, 6, 7]


def test_stale_quota_quirk_counts_the_forbidden_skip():
    arch = make_arch(8)
    arch.betas[0][:] = beta_rows([0.1, 0.1, 0.1, 0.1, 0.9, 0.1])  # down at layer 4
    set_skip(arch, 0, 0, 0.7, CONV2X)
    set_skip(arch, 0, 1, 0.6, CONV2X)
    set_skip(arch, 1, 5, 0.95, CONV2X)
    set_skip(arch, 1, 6, 0.8, DOWNUP)  # least probable of the all-skip segment 5..7
    set_skip(arch, 1, 7, 0.85, CONV2X)
    # 5 candidates > quota 3 (min_len 5)
    ref = genotype(arch, (1,)).meta["decode"]["branches"][0]["removed_layers"]
    fixed = genotype(arch, (1,), DecodeOptions(reference_stale_skip_quota=False))
    # reference ranks 5, 7, 6 first; 6 is forbidden, so only 5 and 7 are removed
    assert ref == [5, 7]
    assert fixed.meta["decode"]["branches"][0]["removed_layers"] == [0, 5, 7]
    assert fixed.branches[0].ops == ("conv_2x", "conv", "conv", "conv", "conv_downup")


def test_skip_at_stride2_layer_is_replaced_by_next_best():
    arch = make_arch(8)
    arch.betas[0][:] = beta_rows([0.1, 0.1, 0.1, 0.1, 0.9, 0.1])  # down at layer 4
    set_skip(arch, 0, 4, 1.0, CONV2X)
    b = branch(arch, 1)
    assert len(b.ops) == 8
    assert b.ops[4] == "conv_2x"
    assert b.strides()[4] == 2


# --- reference quirks across branches ------------------------------------------------------


def test_resoftmax_constructed_case():
    arch = make_arch(9)
    # candidates at L=9: (i, j) in {(1, 3), (1, 4), (2, 4)}
    arch.betas[0][1:3] = beta_rows([0.55, 0.99])
    arch.betas[1][3:5] = beta_rows([0.55, 0.30])
    once = branch(arch, 2, DecodeOptions(reference_resoftmax=False))
    thrice = branch(arch, 2)
    # once: 0.55*0.55 = 0.3025 > 0.99*0.30 = 0.297 -> (1, 3) -> downs 2, 5
    assert once.path == tuple(full_path([1 if k in (2, 5) else 0 for k in range(9)]))
    # three times: 0.5125**2 = 0.263 < 0.6116*0.4508 = 0.276 -> (2, 4) -> downs 3, 6
    assert thrice.path == tuple(full_path([1 if k in (3, 6) else 0 for k in range(9)]))


def _expected_last2_downs(arch: ArchParams, times: int) -> list[int]:
    """Independent last=2 choice: masked outer product, first maximum in (j, i) order."""
    n = arch.num_layers

    def col0(b):
        p = b
        for _ in range(times):
            p = np.exp(p) / np.exp(p).sum(axis=1, keepdims=True)
        return p[:, 0]

    p1, p2 = col0(arch.betas[0]), col0(arch.betas[1])
    prod = np.outer(p2[: n - 4], p1)  # [j, i]
    j_idx, i_idx = np.indices(prod.shape)
    prod[~((i_idx >= 1) & (i_idx < j_idx - 1))] = -1.0
    j, i = np.unravel_index(np.argmax(prod), prod.shape)
    return [1 if k in (i + 1, j + 2) else 0 for k in range(n)]


def test_resoftmax_seeded_search_matches_independent_choice():
    rng = np.random.default_rng(0)
    differ = 0
    for _ in range(200):
        arch = make_arch(9)
        arch.betas[0][:] = rng.normal(0, 3, arch.betas[0].shape)
        arch.betas[1][:] = rng.normal(0, 3, arch.betas[1].shape)
        ref = branch(arch, 2).path
        fixed = branch(arch, 2, DecodeOptions(reference_resoftmax=False)).path
        assert list(ref) == full_path(_expected_last2_downs(arch, 3))
        assert list(fixed) == full_path(_expected_last2_downs(arch, 1))
        differ += ref != fixed
    assert differ >= 1


def test_shared_alpha_edits_carry_a_last0_ban_into_last2():
    arch = make_arch(8)
    # scale-0 skips at layers 0, 3..7; layer 0 the least probable. last=0 (quota 5) keeps
    # layer 0 and bans its skip; last=2 (downs 2, 5; quota 1) only has layer 0 as a skip.
    for layer, strength in ((0, 0.1), (3, 0.5), (4, 0.6), (5, 0.7), (6, 0.8), (7, 0.9)):
        set_skip(arch, 0, layer, strength, DOWNUP)
    ref = genotype(arch, (2, 0))
    fixed = genotype(arch, (2, 0), DecodeOptions(reference_shared_alpha_edits=False))
    assert ref.branches[1] == fixed.branches[1]
    assert ref.branches[1].ops == ("conv_downup", "conv", "conv")
    assert ref.branches[0].ops == ("conv_downup",) + ("conv",) * 7
    assert ref.branches[0].path == (0, 0, 0, 1, 1, 1, 2, 2)
    assert fixed.branches[0].ops == ("conv",) * 7
    assert fixed.branches[0].path == (0, 0, 1, 1, 1, 2, 2)
    # decode_branch reproduces the reference sequence on its own
    assert branch(arch, 2) == ref.branches[0]
    assert branch(arch, 2, DecodeOptions(reference_shared_alpha_edits=False)) == fixed.branches[0]


# --- robustness ----------------------------------------------------------------------------


def _random_arch(rng: np.random.Generator, n_layers: int, with_ratios: bool) -> ArchParams:
    alphas = []
    for s in range(3):
        a = rng.normal(0, 1, (n_layers - s, len(OPS)))
        a[:, SKIP] += rng.uniform(-1, 3)  # often make skip dominant
        alphas.append(a)
    betas = tuple(rng.normal(0, 2, (n_layers - k, 2)) for k in (2, 3))
    ratios = None
    if with_ratios:
        ratios = tuple(
            rng.normal(0, 1, (r, len(WIDTHS))) for r in (n_layers - 1, n_layers - 1, n_layers - 2)
        )
    return ArchParams(alphas=tuple(alphas), betas=betas, ratios=ratios)


def test_never_mutates_inputs():
    rng = np.random.default_rng(1)
    arch = _random_arch(rng, 16, True)
    for a in arch.alphas:
        a[:, SKIP] += 4.0
    before = [x.copy() for x in (*arch.alphas, *arch.betas, *arch.ratios)]
    for options in (REFERENCE, CORRECTED):
        for forbid in (False, True):
            genotype(arch, (2, 1), options, forbid_skip=forbid)
            branch(arch, 2, options, forbid_skip=forbid)
    after = (*arch.alphas, *arch.betas, *arch.ratios)
    assert all(np.array_equal(x, y) for x, y in zip(before, after))


def test_torch_tensors_give_the_same_genotype():
    rng = np.random.default_rng(2)
    arch = _random_arch(rng, 8, True)
    as32 = ArchParams(
        *(
            tuple(x.astype(np.float32) for x in part)
            for part in (arch.alphas, arch.betas, arch.ratios)
        )
    )
    tensors = ArchParams(
        *(
            tuple(torch.tensor(x, requires_grad=True) for x in part)
            for part in (as32.alphas, as32.betas, as32.ratios)
        )
    )
    assert genotype(tensors, (2, 1)) == genotype(as32, (2, 1))
    assert tensors.num_layers == 8


@pytest.mark.parametrize("n_layers", [6, 8, 16])
@pytest.mark.parametrize("with_ratios", [False, True])
def test_random_parameters_always_validate(n_layers: int, with_ratios: bool):
    rng = np.random.default_rng(n_layers * 2 + with_ratios)
    all_lasts = [(2, 1), (2, 0), (0,), (1,), (1, 0, 2)]
    for draw in range(200):
        arch = _random_arch(rng, n_layers, with_ratios)
        options = DecodeOptions(*(bool(v) for v in rng.integers(0, 2, 4)))
        forbid = bool(rng.integers(0, 2))
        lasts = all_lasts[draw % len(all_lasts)]
        geno = genotype(arch, lasts, options, forbid_skip=forbid)
        Genotype.from_dict(json.loads(json.dumps(geno.to_dict())))  # validates, JSON-safe
        for last, b in zip(lasts, geno.branches):
            min_len = round(n_layers / 3) + 2 * last
            assert b.path[-1] == last
            assert "skip" not in b.ops
            assert min_len <= len(b.ops) <= n_layers
            if forbid:
                assert len(b.ops) == n_layers
            if not with_ratios:
                assert set(b.widths[:-1]) <= {1.0}


def test_meta_passes_through():
    geno = genotype(make_arch(8), (2, 1), meta={"epoch": 7, "mIoU": 0.5})
    assert geno.meta["epoch"] == 7
    assert geno.meta["mIoU"] == 0.5
    assert geno.meta["decode"]["lasts"] == [2, 1]
    assert geno.meta["decode"]["options"]["reference_resoftmax"] is True
    with pytest.raises(GenotypeError, match="decode"):
        genotype(make_arch(8), (2, 1), meta={"decode": 1})


def test_errors_name_the_problem():
    arch = make_arch(8)
    with pytest.raises(ConfigError, match="got 3"):
        genotype(arch, (3,))
    bad = ArchParams(alphas=arch.alphas, betas=(arch.betas[0][:-1], arch.betas[1]))
    with pytest.raises(GenotypeError, match=r"betas\[0\] has shape \(5, 2\), expected \(6, 2\)"):
        genotype(bad, (2,))
    with pytest.raises(GenotypeError, match="L >= 6"):
        genotype(make_arch(5), (0,))
    nan = make_arch(8)
    nan.alphas[1][0, 0] = np.nan
    with pytest.raises(GenotypeError, match=r"alphas\[1\] contains non-finite"):
        genotype(nan, (1,))
    with pytest.raises(GenotypeError, match=r"ratios\[0\] has shape"):
        decode_branch(
            make_arch(8, ratios=True),
            0,
            ops=OPS,
            width_choices=WIDTHS[:3],
            head_width=HEAD,
            forbid_skip=False,
        )


# ------------------------------------------------------------------ single paths

def _space(layers=8):
    from fasterseg.config import SpaceConfig

    return SpaceConfig(layers=layers, fch=4, width_choices=(0.5, 0.75, 1.0))


def _trace(arch, lasts, sp):
    from fasterseg.decode import trace

    return trace(arch, lasts, name="t", ops=sp.ops, fch=sp.fch, stem_width=0.5,
                 head_width=0.5, width_choices=sp.width_choices)  # fmt: skip


def test_trace_follows_each_cells_input_and_encode_gives_the_path_back():
    """Hand-made path: every /16 and /32 cell reads its keep input except the cells that a
    chosen down layer feeds; the traced branches run exactly those scales, the cells' ops
    and widths; encoding the genotype on the same logits returns them unchanged."""
    import random

    from fasterseg.decode import OFF, encode, random_one_hot

    sp, L = _space(), 8
    arch = random_one_hot(L, sp.ops, sp.width_choices, random.Random(1))
    downs = {2, 5}  # the /32 branch goes down at layers 2 and 5
    b1, b2 = arch.betas
    for r in range(L - 2):  # scale-16 cell at layer r + 2 reads down iff layer r + 1 went down
        b1[r] = [0.0, OFF] if r + 1 == 2 else [OFF, 0.0]
    for r in range(L - 3):  # scale-32 cell at layer r + 3
        b2[r] = [0.0, OFF] if r + 2 == 5 else [OFF, 0.0]
    geno = _trace(arch, (2, 1, 0), sp)
    expected_path = [0, 0, 0, 1, 1, 1, 2, 2]
    assert list(geno.branches[0].path) == expected_path
    assert list(geno.branches[1].path) == [0, 0, 0, 1, 1, 1, 1, 1]  # shares the /16 cells
    assert list(geno.branches[2].path) == [0] * L
    for layer, s in enumerate(expected_path):
        op = sp.ops[int(np.argmax(arch.alphas[s][layer - s]))]
        assert geno.branches[0].ops[layer] == op
    out = [*expected_path[1:], 2]
    for layer in range(L - 1):
        row = layer - 1 if out[layer] == 2 else layer
        k = int(np.argmax(arch.ratios[out[layer]][row]))
        assert geno.branches[0].widths[layer] == sp.width_choices[k]
    again = encode(geno, arch, ops=sp.ops, width_choices=sp.width_choices)
    for a, b in zip((*again.alphas, *again.betas, *again.ratios),
                    (*arch.alphas, *arch.betas, *arch.ratios)):  # fmt: skip
        assert np.array_equal(a, b)
    assert downs == {i for i, st in enumerate(geno.branches[0].strides()) if st == 2}


def test_encode_names_the_cell_two_branches_disagree_on():
    import random

    from fasterseg.decode import encode, random_one_hot
    from fasterseg.genotype import Branch

    sp, L = _space(), 8
    arch = random_one_hot(L, sp.ops, sp.width_choices, random.Random(2))
    geno = _trace(arch, (2, 0), sp)
    b0, b1 = geno.branches
    other = next(o for o in sp.ops if o not in (b1.ops[3], "skip"))
    clash = replace(geno, branches=(b0, Branch((*b1.ops[:3], other, *b1.ops[4:]), b1.path,
                                               b1.widths)))  # fmt: skip
    if b0.path[3] == 0:  # both branches run the /8 cell of layer 3
        with pytest.raises(GenotypeError, match="disagree on the operator of layer 3 at /8"):
            encode(clash, arch, ops=sp.ops, width_choices=sp.width_choices)
        overruled = []
        pinned = encode(clash, arch, ops=sp.ops, width_choices=sp.width_choices,
                        overruled=overruled)  # fmt: skip
        assert overruled == ["branches 0 and 1 disagree on the operator of layer 3 at /8: "
                             "branch 0's stands"]  # fmt: skip
        assert sp.ops[int(np.argmax(pinned.alphas[0][3]))] == b0.ops[3]
    short = replace(geno, branches=(Branch(b0.ops[1:], b0.path[1:], b0.widths[1:]), b1))
    with pytest.raises(GenotypeError, match="no decoding record"):
        encode(short, arch, ops=sp.ops, width_choices=sp.width_choices)


def test_encode_runs_a_decoded_branch_with_its_removed_layers_as_skips():
    """A decoded genotype whose skip layers were removed, encoded and traced back: the
    decoded ops once the recorded removed layers are dropped, skips at those layers, the
    recorded full path, and the widths decoding read at the removed layers."""
    from fasterseg.decode import encode

    rng = np.random.default_rng(5)
    sp, L = _space(), 8
    skip = sp.ops.index("skip")
    alphas = [rng.normal(size=(L - s, len(sp.ops))) for s in range(3)]
    for a in alphas:
        a[::2, skip] += 5.0  # many skips, so that decoding removes some
    arch = ArchParams(
        alphas=tuple(alphas),
        betas=(rng.normal(size=(L - 2, 2)), rng.normal(size=(L - 3, 2))),
        ratios=tuple(rng.normal(size=(L - 1 - (s == 2), 3)) for s in range(3)),
    )
    geno = decode(arch, (2,), name="d", ops=sp.ops, fch=4, stem_width=0.5, head_width=0.5,
                  width_choices=sp.width_choices, forbid_skip=False)  # fmt: skip
    removed = geno.meta["decode"]["branches"][0]["removed_layers"]
    assert removed, "the test needs a branch with removed layers"
    pinned = encode(geno, arch, ops=sp.ops, width_choices=sp.width_choices, overruled=[])
    back = _trace(pinned, (2,), sp).branches[0]
    assert [op for i, op in enumerate(back.ops) if i not in removed] == list(geno.branches[0].ops)
    assert all(back.ops[i] == "skip" for i in removed)
    full = geno.meta["decode"]["branches"][0]["full_path"]
    assert list(back.path) == full
    # a removed layer's output width is the one decoding read: the width logits' argmax
    for i in removed:
        if i < L - 1:
            out = full[i + 1]
            row = i - 1 if out == 2 else i
            assert np.argmax(pinned.ratios[out][row]) == np.argmax(arch.ratios[out][row])

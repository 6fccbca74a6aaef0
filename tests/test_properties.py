"""Property tests (hypothesis): genotype files, decoding, metric invariants."""

import json

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fasterseg.decode import ArchParams, DecodeOptions, decode
from fasterseg.errors import GenotypeError
from fasterseg.genotype import Branch, Genotype
from fasterseg.metrics import ConfusionMatrix
from fasterseg.nn import OPS

OP_NAMES = ["conv", "conv_downup", "conv_2x", "conv_2x_downup"]
WIDTHS = (4 / 12, 6 / 12, 8 / 12, 10 / 12, 1.0)


@st.composite
def branches(draw, head=8 / 12):
    n = draw(st.integers(1, 12))
    downs = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    path, scale = [], 0
    for i in range(n):
        path.append(scale)
        if i < n - 1 and downs[i] and scale < 2:
            scale += 1
    ops = draw(st.lists(st.sampled_from(OP_NAMES), min_size=n, max_size=n))
    widths = draw(st.lists(st.sampled_from(WIDTHS), min_size=n - 1, max_size=n - 1))
    return Branch(tuple(ops), tuple(path), (*widths, head))


@st.composite
def genotypes(draw):
    bs = draw(st.lists(branches(), min_size=1, max_size=3))
    return Genotype("g", draw(st.integers(1, 16)), 8 / 12, 8 / 12, WIDTHS, tuple(bs))


@settings(max_examples=60, deadline=None)
@given(genotypes())
def test_valid_genotypes_round_trip_through_json(geno):
    geno.validate(OPS.keys())
    text = json.dumps(geno.to_dict())
    assert Genotype.from_dict(json.loads(text), op_names=OPS.keys()) == geno


@settings(max_examples=80, deadline=None)
@given(genotypes(), st.sampled_from(["ops", "path", "widths"]), st.integers(0, 20),
       st.one_of(st.integers(-3, 5), st.floats(-1, 2), st.text(max_size=4), st.none()))  # fmt: skip
def test_any_edit_is_valid_or_a_named_genotype_error(geno, field, index, value):
    data = geno.to_dict()
    branch = data["branches"][0][field]
    branch[index % len(branch)] = value
    try:
        Genotype.from_dict(data, source="edited", op_names=OPS.keys())
    except GenotypeError as exc:
        assert str(exc).startswith("edited: ")
        assert "branches[0]" in str(exc)


@settings(max_examples=40, deadline=None)
@given(st.integers(6, 12), st.booleans(), st.sampled_from([(2, 0), (2, 1), (2, 1, 0)]),
       st.booleans(), st.integers(0, 2**31 - 1))  # fmt: skip
def test_decoding_random_parameters_always_gives_a_valid_genotype(L, student, lasts, quirks, seed):
    rng = np.random.default_rng(seed)
    P, K = 5, len(WIDTHS)
    arch = ArchParams(
        alphas=tuple(rng.normal(size=(L - s, P)) * 3 for s in range(3)),
        betas=(rng.normal(size=(L - 2, 2)) * 3, rng.normal(size=(L - 3, 2)) * 3),
        ratios=tuple(rng.normal(size=(n, K)) for n in (L - 1, L - 1, L - 2)) if student else None,
    )
    options = DecodeOptions() if quirks else DecodeOptions(False, False, False, False)
    geno = decode(
        arch, lasts, name="r", ops=["skip", *OP_NAMES], fch=4, stem_width=1.0,
        head_width=8 / 12 if student else 1.0, width_choices=WIDTHS,
        forbid_skip=not student, options=options,
    )  # fmt: skip
    geno.validate(OPS.keys())
    assert [b.last_scale for b in geno.branches] == list(lasts)
    assert all("skip" not in b.ops for b in geno.branches)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_miou_ignores_image_order_and_perfect_predictions_score_one(n, classes, seed):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, (n, 4, 5), generator=gen)
    target[target == 0] = 255  # some ignored pixels
    pred = torch.randint(0, classes, (n, 4, 5), generator=gen)
    a, b = ConfusionMatrix(classes), ConfusionMatrix(classes)
    for i in range(n):
        a.update(pred[i], target[i])
    for i in reversed(range(n)):
        b.update(pred[i], target[i])
    assert torch.equal(a.matrix, b.matrix)
    perfect = ConfusionMatrix(classes)
    perfect.update(torch.where(target == 255, 0, target), target)
    scores = perfect.compute()
    if (target != 255).any():
        assert scores["miou"] == 1.0 and scores["pixel_accuracy"] == 1.0

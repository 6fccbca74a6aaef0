"""Genotype files: JSON round trips and validation errors that name the field."""

import json

import pytest

from fasterseg.errors import GenotypeError
from fasterseg.genotype import Genotype
from fasterseg.models import PUBLISHED, load_genotype
from fasterseg.nn import OPS


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_round_trip(name, tmp_path):
    geno = load_genotype(name)
    path = geno.save(tmp_path / "g.json")
    again = Genotype.load(path, op_names=OPS.keys())
    assert again == geno and again.to_dict() == geno.to_dict()


def test_published_student_is_section_8():
    g = load_genotype("fasterseg-student")
    a, b = g.branches
    assert a.path == (0, 0, 0, 0, 1, 1, 1, 1, 2, 2)
    assert [i for i, s in enumerate(a.strides()) if s == 2] == [3, 7]
    assert [i for i, s in enumerate(b.strides()) if s == 2] == [5]
    assert len(a.widths) == 10 and a.widths[-1] == g.head_width == 8 / 12
    assert b.widths[7] == 1.0
    assert a.ops[3] == "conv_downup" and b.ops[:3] == a.ops[:3]


def _student():
    return load_genotype("fasterseg-student").to_dict()


def _edit(fn):
    d = _student()
    fn(d)
    return d


BAD = [
    ("format", lambda d: d.update(format="other"), "'format' must be 'fasterseg-genotype'"),
    ("version", lambda d: d.update(version=2), "'version' 2 is not supported"),
    ("missing", lambda d: d.pop("fch"), "missing field 'fch'"),
    ("unknown", lambda d: d.update(colour="red"), "unknown field 'colour'"),
    ("fch", lambda d: d.update(fch=-3), "'fch' must be a positive integer"),
    ("stem", lambda d: d.update(stem_width=1.5), "'stem_width' must be a number in (0, 1]"),
    ("no branches", lambda d: d.update(branches=[]), "'branches' must hold at least one"),
    (
        "lengths",
        lambda d: d["branches"][0]["path"].pop(),
        "branches[0].path: has 9 entries, 'ops' has 10",
    ),
    (
        "op",
        lambda d: d["branches"][1]["ops"].__setitem__(2, "conv9"),
        "branches[1].ops[2]: unknown operator 'conv9'",
    ),
    (
        "start",
        lambda d: d["branches"][0]["path"].__setitem__(0, 1),
        "branches[0].path[0]: a branch starts at scale 0",
    ),
    (
        "jump",
        lambda d: d["branches"][0]["path"].__setitem__(4, 2),
        "branches[0].path[4]: the scale may stay or go down by one per layer",
    ),
    (
        "scale",
        lambda d: d["branches"][0]["path"].__setitem__(9, 3),
        "branches[0].path[9]: expected 0, 1 or 2",
    ),
    (
        "width",
        lambda d: d["branches"][0]["widths"].__setitem__(1, 0.7),
        "branches[0].widths[1]: 0.7 is not one of width_choices",
    ),
    (
        "head",
        lambda d: d["branches"][1]["widths"].__setitem__(8, 1.0),
        "branches[1].widths[8]: the last width must equal head_width",
    ),
]


@pytest.mark.parametrize("case, edit, message", BAD, ids=[b[0] for b in BAD])
def test_invalid_file_names_the_field(case, edit, message, tmp_path):
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(_edit(edit)))
    with pytest.raises(GenotypeError) as err:
        Genotype.load(path, op_names=OPS.keys())
    assert str(path) in str(err.value) and message in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(GenotypeError, match="genotype file not found"):
        Genotype.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenotypeError, match=r"bad\.json: not valid JSON"):
        Genotype.load(bad)
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    with pytest.raises(GenotypeError, match="expected a JSON object"):
        Genotype.load(arr)


def test_strides_follow_the_path():
    b = load_genotype("fasterseg-teacher").branches[0]
    assert b.strides()[5] == 2 and b.strides()[13] == 2 and sum(s == 2 for s in b.strides()) == 2
    assert b.strides()[-1] == 1

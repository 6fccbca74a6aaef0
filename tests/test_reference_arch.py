"""Released FasterSeg architecture files: safe loading and decoding as the reference's train/
network does (tests/data/reference/README.md)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REFERENCE_ARCH, REFERENCE_DIR, WritesMarker

from fasterseg.config import PAPER_WIDTHS
from fasterseg.errors import ConfigError, UserError
from fasterseg.genotype import Genotype
from fasterseg.models import load_genotype
from fasterseg.reference import (
    ReferenceFileError,
    branch_pair,
    genotype_from_arch_file,
    load_arch_file,
)

DATA, ARCH = REFERENCE_DIR, REFERENCE_ARCH


def _save_like_arch(data: dict, path: Path, legacy: bool = True) -> Path:
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return path


def test_arch_files_load_on_the_cpu_with_only_their_numpy_globals():
    # A plain weights-only load refuses the numpy scalars, so the allowlist is needed ...
    with pytest.raises(pickle.UnpicklingError, match=r"GLOBAL numpy\.core\.multiarray\.scalar"):
        torch.load(ARCH["student"], map_location="cpu", weights_only=True)
    data = load_arch_file(ARCH["student"])
    # ... and it lasts for the one call only.
    assert not any("numpy" in repr(g) for g in torch.serialization.get_safe_globals())
    assert sorted(data) == sorted(
        [f"alpha_1_{s}" for s in range(3)]
        + ["beta_1_1", "beta_1_2"]
        + [f"ratio_1_{s}" for s in range(3)]
        + ["mIoU02", "mIoU12", "latency02", "latency12"]
    )
    assert [tuple(data[f"alpha_1_{s}"].shape) for s in range(3)] == [(16, 5), (15, 5), (14, 5)]
    assert [tuple(data[f"ratio_1_{s}"].shape) for s in range(3)] == [(15, 5), (15, 5), (14, 5)]
    assert all(data[k].device.type == "cpu" for k in data if isinstance(data[k], torch.Tensor))
    assert data["latency02"] == 6.260467391822158
    assert data["latency12"] == 6.4139770511337275
    assert isinstance(data["mIoU12"], np.float64)
    assert data["mIoU12"] == 0.06233587477048027
    teacher = load_arch_file(ARCH["teacher"])
    assert [tuple(teacher[f"ratio_0_{s}"].shape) for s in range(3)] == [(15, 1), (15, 1), (14, 1)]


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_decoded_arch_files_equal_the_shipped_genotypes(role, tmp_path):
    ours = genotype_from_arch_file(ARCH[role])
    shipped = load_genotype(f"fasterseg-{role}")
    assert ours.fch == shipped.fch == 12
    assert ours.stem_width == shipped.stem_width
    assert ours.head_width == shipped.head_width
    assert ours.width_choices == shipped.width_choices == PAPER_WIDTHS
    assert len(ours.branches) == len(shipped.branches) == 2
    for b, (mine, theirs) in enumerate(zip(ours.branches, shipped.branches)):
        assert mine.ops == theirs.ops, f"branch {b} ops"
        assert mine.path == theirs.path, f"branch {b} path"
        assert mine.widths == theirs.widths, f"branch {b} widths"
    assert ours.meta["role"] == role
    assert ours.meta["pair"]["lasts"] == [2, 1]
    assert ours.meta["pair"]["chosen_by"] == "objective"
    assert ours.name == ARCH[role].stem
    again = Genotype.load(ours.save(tmp_path / "g.json"))
    assert again == ours
    assert again.meta["arch_file"]["latency12"] == 6.4139770511337275


def test_branch_pair_is_chosen_by_the_reference_objective():
    data = load_arch_file(ARCH["student"])
    manifest = json.loads((DATA / "manifest_student.json").read_text())["selection"]
    geno = genotype_from_arch_file(ARCH["student"])
    assert geno.meta["pair"]["objective02"] == pytest.approx(manifest["obj02"], rel=1e-12)
    assert geno.meta["pair"]["objective12"] == pytest.approx(manifest["obj12"], rel=1e-12)
    assert branch_pair(data) == (2, 1)
    # mIoU02 above 0.06347 * (6.2605 / 8.3) ** 0.07 = 0.0622 makes [2, 0] win
    assert branch_pair({**data, "mIoU02": np.float64(0.0623)}) == (2, 0)
    assert branch_pair({**data, "mIoU02": np.float64(0.0621)}) == (2, 1)


def test_an_explicit_pair_overrides_the_objective():
    default = genotype_from_arch_file(ARCH["student"])
    geno = genotype_from_arch_file(ARCH["student"], pair=(2, 0))
    assert [b.last_scale for b in geno.branches] == [2, 0]
    assert geno.meta["pair"] == {**default.meta["pair"], "lasts": [2, 0], "chosen_by": "argument"}
    # the /32 branch does not depend on its partner
    assert geno.branches[0] == default.branches[0]
    assert set(geno.branches[1].path) == {0}
    assert genotype_from_arch_file(ARCH["student"], pair=[2, 1]).branches == default.branches


def test_the_role_sets_skip_and_stem_head_width():
    student = genotype_from_arch_file(ARCH["student"])
    as_teacher = genotype_from_arch_file(ARCH["student"], role="teacher")
    # the student's decode deletes its stride-1 skips; a teacher keeps every layer, none skip
    assert [len(b.ops) for b in student.branches] == [10, 9]
    assert [len(b.ops) for b in as_teacher.branches] == [16, 16]
    assert all("skip" not in b.ops for b in as_teacher.branches)
    assert (as_teacher.stem_width, as_teacher.head_width) == (1.0, 1.0)
    assert genotype_from_arch_file(ARCH["student"], role="student").branches == student.branches
    # a one-column ratio without a forbidden skip is the reference's fixed 4/12 width
    as_student = genotype_from_arch_file(ARCH["teacher"], role="student")
    assert {w for b in as_student.branches for w in b.widths[:-1]} == {4 / 12}
    assert (as_student.stem_width, as_student.head_width) == (8 / 12, 8 / 12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "pupil"}, "role must be 'teacher' or 'student', got 'pupil'"),
        ({"pair": (1, 0)}, r"pair must be one of \(2, 0\), \(2, 1\).*got \(1, 0\)"),
        ({"pair": "2,1"}, "pair must be one of"),
    ],
)
def test_bad_role_or_pair_is_a_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        genotype_from_arch_file(ARCH["student"], **kwargs)


def _error(path: Path) -> str:
    with pytest.raises(ReferenceFileError) as info:
        load_arch_file(path)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_missing_and_truncated_arch_files_name_the_file(tmp_path):
    assert "arch file not found" in _error(tmp_path / "arch_9.pt")
    raw = ARCH["student"].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(raw[:1500])  # inside the object pickle
    assert "truncated arch file" in _error(cut)
    cut.write_bytes(raw[:-50])  # inside the raw storages
    assert "corrupt or truncated arch file (unexpected EOF" in _error(cut)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all" * 10)
    assert "(not a weights-only file, or corrupt; nothing in it was executed)" in _error(junk)


def test_files_without_arch_keys_are_not_arch_files(tmp_path):
    other = _save_like_arch({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    assert "not an arch file (no 'alpha_<i>_0' key; keys: weight)" in _error(other)
    listed = _save_like_arch([torch.zeros(2)], tmp_path / "list.pt")
    assert "not an arch file (holds a list" in _error(listed)
    data = load_arch_file(ARCH["student"])
    del data["ratio_1_2"]
    assert "not an arch file (no 'ratio_1_2')" in _error(_save_like_arch(data, tmp_path / "a.pt"))
    both = {**load_arch_file(ARCH["student"]), **load_arch_file(ARCH["teacher"])}
    assert "several indices [0, 1]" in _error(_save_like_arch(both, tmp_path / "both.pt"))


def test_wrong_shapes_and_figures_name_the_key(tmp_path):
    data = load_arch_file(ARCH["student"])
    data["alpha_1_1"] = torch.zeros(14, 5)
    message = _error(_save_like_arch(data, tmp_path / "shape.pt"))
    assert "alpha_1_1 has shape [14, 5], expected [15, 5] (L = 16 layers" in message
    data = load_arch_file(ARCH["student"])
    data["ratio_1_0"] = torch.zeros(15, 3)
    assert "K = 1 or 5" in _error(_save_like_arch(data, tmp_path / "k.pt"))
    data = load_arch_file(ARCH["student"])
    data["beta_1_2"] = data["beta_1_2"].clone()
    data["beta_1_2"][0, 0] = float("nan")
    assert "beta_1_2 holds NaN or infinite values" in _error(
        _save_like_arch(data, tmp_path / "n.pt")
    )
    data = load_arch_file(ARCH["student"])
    data["latency12"] = "fast"
    assert "latency12 must be a number, got str" in _error(_save_like_arch(data, tmp_path / "l.pt"))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_an_arch_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path, legacy):
    marker = tmp_path / "marker"
    data = {**load_arch_file(ARCH["student"]), "mIoU02": WritesMarker(marker)}
    evil = _save_like_arch(data, tmp_path / "evil.pt", legacy=legacy)
    # the payload is live: an unrestricted load runs it
    torch.load(shutil.copy(evil, tmp_path / "copy.pt"), map_location="cpu", weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    message = _error(evil)
    assert "refused to load the arch file: it would import exec" in message
    assert "nothing in it was executed" in message
    assert not marker.exists()

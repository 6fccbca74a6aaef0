"""Released FasterSeg weights converted into checkpoints of this project, checked against the
1/8 logits the reference's own networks compute (tests/data/reference/README.md).

The reference state dicts are rebuilt from the manifests' seeded fill rule instead of being
committed (the student's is 17.7 MB, the teacher's 94 MB).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REFERENCE_ARCH, REFERENCE_DIR, WritesMarker

from fasterseg.config import Config
from fasterseg.data.datasets import build_dataset
from fasterseg.data.synth import generate_dataset
from fasterseg.data.transforms import eval_transforms
from fasterseg.engine.checkpoint import load_checkpoint, load_trained_model
from fasterseg.engine.evaluate import evaluate_checkpoint
from fasterseg.engine.train import teacher_from_checkpoint
from fasterseg.errors import UserError
from fasterseg.reference import (
    ReferenceFileError,
    convert_weights,
    genotype_from_arch_file,
    reference_key_map,
)

DATA, ARCH = REFERENCE_DIR, REFERENCE_ARCH


def manifest(role: str) -> dict:
    return json.loads((DATA / f"manifest_{role}.json").read_text())


def rebuild_state_dict(role: str) -> dict[str, torch.Tensor]:
    """The reference's ``weights{0,1}.pt`` state dict from its manifest's fill rule."""
    keys = manifest(role)["keys"]
    g = torch.Generator().manual_seed(0)

    def ternary(shape):
        return torch.sign(torch.randn(shape, generator=g)) * (torch.rand(shape, generator=g) > 0.5)

    drawn: dict[str, torch.Tensor] = {}
    for entry in sorted((k for k in keys if "fill_index" in k), key=lambda k: k["fill_index"]):
        shape, rule = entry["shape"], entry["fill_rule"]
        if rule == "conv_weight":
            value = ternary(shape).double() * (2.0 / math.sqrt(entry["fan_in"]))
        elif rule == "bn_weight":
            value = 1 + 0.1 * ternary(shape).double()
        elif rule in ("bias", "bn_running_mean"):
            value = 0.1 * ternary(shape).double()
        elif rule == "bn_running_var":
            value = 1 + 0.5 * (torch.rand(shape, generator=g) > 0.5).double()
        else:
            raise AssertionError(f"unknown fill rule {rule!r}")
        drawn[entry["key"]] = value.float()
    state = {}
    for entry in keys:
        own = entry["alias_of"] or entry["key"]
        if entry["key"].endswith("num_batches_tracked"):
            drawn.setdefault(own, torch.tensor(0, dtype=torch.int64))
        state[entry["key"]] = drawn[own]
    return state


@pytest.fixture(scope="module")
def states():
    return {role: rebuild_state_dict(role) for role in ("student", "teacher")}


@pytest.fixture(scope="module")
def genotypes():
    return {role: genotype_from_arch_file(path) for role, path in ARCH.items()}


@pytest.fixture(scope="module")
def converted(states, genotypes, tmp_path_factory):
    """Both networks' weights saved as the reference saves them (zip) and converted."""
    folder = tmp_path_factory.mktemp("converted")
    out = {}
    for role in ("student", "teacher"):
        torch.save(states[role], folder / f"weights_{role}.pt")
        report = convert_weights(
            folder / f"weights_{role}.pt", genotypes[role], folder / f"{role}.pt"
        )
        out[role] = (folder / f"{role}.pt", report)
    return out


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _logits(model, x):
    """(1/8 logits from the head, full-size output) of an eval forward."""
    seen = {}
    hook = model.head.register_forward_hook(lambda m, i, out: seen.setdefault("pred8", out))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        hook.remove()
    return seen["pred8"], y


def test_rebuilt_state_dicts_match_the_manifests(states):
    for role in ("student", "teacher"):
        counts = manifest(role)["counts"]
        state = states[role]
        assert len(state) == counts["state_dict_keys"]
        assert len({t.data_ptr() for t in state.values()}) == counts["unique_tensors"]
        expected = {k["key"]: k["shape"] for k in manifest(role)["keys"]}
        assert {k: list(v.shape) for k, v in state.items()} == expected


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_converted_networks_compute_the_reference_logits(converted, role, one_thread):
    x = torch.randn(1, 3, 256, 512, generator=torch.Generator().manual_seed(1))
    recipe = json.loads((DATA / "outputs.json").read_text())["input"]
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == recipe["sha256_float32_bytes"]
    model = load_trained_model(converted[role][0])
    assert not model.training
    pred8, y = _logits(model, x)
    ref8 = torch.load(DATA / f"io_{role}_logits8.pt", weights_only=True)["pred8"]
    assert pred8.shape == ref8.shape == (1, 19, 32, 64)
    assert (pred8 - ref8).abs().max().item() < 1e-5
    # the full-size output is the x8 bilinear (align_corners) upsample of the 1/8 logits
    up = F.interpolate(pred8, scale_factor=8, mode="bilinear", align_corners=True)
    assert torch.equal(y, up)
    ref_up = F.interpolate(ref8, scale_factor=8, mode="bilinear", align_corners=True)
    assert (y - ref_up).abs().max().item() < 1e-5
    # the weights matter: a perturbed network misses the reference by far more than 1e-5
    with torch.no_grad():
        model.head.classifier.bias.add_(1e-3)
    assert (_logits(model, x)[0] - ref8).abs().max().item() > 5e-4


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_the_report_accounts_for_every_key(converted, states, genotypes, role):
    report = converted[role][1]
    keys = manifest(role)["keys"]
    assert report["keys"] == len(states[role])
    assert report["format"] == "zip"
    assert report["genotype"] == genotypes[role].name
    assert set(report["loaded"]) | set(report["aliased"]) | set(report["dropped"]) == set(
        states[role]
    )
    assert report["aliased"] == {k["key"]: k["alias_of"] for k in keys if k["alias_of"]}
    unused = {k["key"] for k in keys if not k["used_in_eval_forward"]}
    assert set(report["dropped"]) == unused
    assert len(unused) == 18
    for key, reason in report["dropped"].items():
        expected = "never called" if key.startswith("ffm.channel_attention") else "auxiliary"
        assert expected in reason, key
    # the deployable parameters: the reference's minus its unused ones
    counts = manifest(role)["counts"]
    assert (
        report["parameters"] == counts["parameters"] - counts["parameters_unused_in_eval_forward"]
    )
    # a shared layer of two branches is one tensor here (conv_2x in the student, conv_downup
    # in the teacher)
    first = {"student": "layers.0.conv1.conv.weight", "teacher": "layers.0.conv.conv.weight"}
    assert report["loaded"]["cells.0-0._op._op.conv1.weight"] == first[role]
    assert report["aliased"]["cells.0-1._op._op.conv1.weight"] == "cells.0-0._op._op.conv1.weight"


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_key_map_covers_exactly_what_the_eval_forward_uses(genotypes, role):
    used = {k["key"] for k in manifest(role)["keys"] if k["used_in_eval_forward"]}
    assert set(reference_key_map(genotypes[role])) == used


def test_the_checkpoint_is_an_ordinary_one(converted, genotypes):
    path, _ = converted["teacher"]
    state = load_checkpoint(path)
    assert state["genotype"] == genotypes["teacher"].to_dict()
    assert state["num_classes"] == 19
    assert state["kind"] == "convert"
    assert state["source"]["format"] == "zip"
    # it is accepted as a distillation teacher for the default (Cityscapes, full size) recipe
    teacher = teacher_from_checkpoint(path, Config())
    assert not teacher.training
    assert teacher.state_dict().keys() == state["model"].keys()
    assert all(torch.equal(v, state["model"][k]) for k, v in teacher.state_dict().items())


def test_evaluate_scores_the_converted_network(converted, tmp_path):
    generate_dataset(tmp_path, train=0, val=2, size=(64, 128), seed=0)
    path, _ = converted["student"]
    result = evaluate_checkpoint(path, tmp_path, device="cpu", progress=False)
    model = load_trained_model(path)
    dataset = build_dataset("cityscapes", tmp_path, "val", eval_transforms(1))
    correct = total = 0
    for i in range(len(dataset)):
        image, mask = dataset[i]
        with torch.no_grad():
            pred = model(image.unsqueeze(0))[0].argmax(0)
        valid = mask != 255
        correct += int((pred[valid] == mask[valid]).sum())
        total += int(valid.sum())
    assert result["images"] == 2
    assert total > 0
    assert result["pixel_accuracy"] == pytest.approx(correct / total, abs=1e-12)


def test_legacy_format_weights_convert_alike(converted, states, genotypes, tmp_path):
    legacy = tmp_path / "weights1.pt"
    torch.save(states["student"], legacy, _use_new_zipfile_serialization=False)
    report = convert_weights(legacy, genotypes["student"], tmp_path / "c.pt")
    assert report["format"] == "legacy"
    assert report["sha256"] == hashlib.sha256(legacy.read_bytes()).hexdigest()
    ours = load_checkpoint(tmp_path / "c.pt")["model"]
    zipped = load_checkpoint(converted["student"][0])["model"]
    assert ours.keys() == zipped.keys()
    assert all(torch.equal(ours[k], zipped[k]) for k in ours)


def _error(weights: Path, genotype, out: Path) -> str:
    with pytest.raises(ReferenceFileError) as info:
        convert_weights(weights, genotype, out)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in message
    assert message.startswith(str(weights))
    assert not out.exists()
    return message


def test_weights_of_the_other_architecture_name_a_key_and_both_shapes(states, genotypes, tmp_path):
    teacher = tmp_path / "weights0.pt"
    torch.save(states["teacher"], teacher)
    message = _error(teacher, genotypes["student"], tmp_path / "c.pt")
    assert "stem.0.conv.0.weight has shape [48, 3, 3, 3]" in message
    assert "genotype 'arch_1' (19 classes) needs [32, 3, 3, 3]" in message
    assert "more mismatches" in message


def test_keys_that_do_not_fit_are_errors(states, genotypes, tmp_path):
    geno, out = genotypes["student"], tmp_path / "c.pt"
    state = dict(states["student"])
    del state["heads8.conv_1x1.bias"]
    torch.save(state, tmp_path / "missing.pt")
    message = _error(tmp_path / "missing.pt", geno, out)
    assert message.endswith("no heads8.conv_1x1.bias [19], which the network of genotype "
                            "'arch_1' (19 classes) needs")  # fmt: skip
    state = {**states["student"], "extra.weight": torch.zeros(3, 4)}
    torch.save(state, tmp_path / "extra.pt")
    assert "extra.weight [3, 4] has no place in" in _error(tmp_path / "extra.pt", geno, out)
    state = dict(states["student"])
    state["cells.1-1._op._op.bn1.bias"] = state["cells.1-0._op._op.bn1.bias"] + 1
    torch.save(state, tmp_path / "split.pt")
    assert (
        "cells.1-1._op._op.bn1.bias and cells.1-0._op._op.bn1.bias are one shared layer "
        "(layers.1.conv1.bn.bias) but hold different values"
    ) in _error(tmp_path / "split.pt", geno, out)
    torch.save({"format": "fasterseg-checkpoint"}, tmp_path / "ckpt.pt")
    assert "already a fasterseg checkpoint" in _error(tmp_path / "ckpt.pt", geno, out)
    torch.save({"a": [1, 2]}, tmp_path / "list.pt")
    assert "entry 'a' holds a list, expected a tensor" in _error(tmp_path / "list.pt", geno, out)


def test_thop_leftovers_are_dropped(states, genotypes, tmp_path):
    state = {
        **states["student"],
        "total_ops": torch.zeros(1, dtype=torch.float64),
        "stem.0.total_params": torch.zeros(1, dtype=torch.float64),
    }
    torch.save(state, tmp_path / "thop.pt")
    report = convert_weights(tmp_path / "thop.pt", genotypes["student"], tmp_path / "c.pt")
    assert "thop" in report["dropped"]["total_ops"]
    assert "thop" in report["dropped"]["stem.0.total_params"]
    assert len(report["dropped"]) == 20


def test_missing_and_truncated_weights_name_the_file(states, genotypes, tmp_path):
    geno, out = genotypes["student"], tmp_path / "c.pt"
    assert "weights file not found" in _error(tmp_path / "none.pt", geno, out)
    torch.save(states["student"], tmp_path / "full.pt")
    raw = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    assert "corrupt or truncated weights file" in _error(tmp_path / "cut.pt", geno, out)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_weights_that_would_run_code_are_refused_and_nothing_runs(genotypes, tmp_path, legacy):
    marker = tmp_path / "marker"
    evil = tmp_path / "weights1.pt"
    payload = {"stem.0.conv.0.weight": torch.zeros(32, 3, 3, 3), "x": WritesMarker(marker)}
    torch.save(payload, evil, _use_new_zipfile_serialization=not legacy)
    # the payload is live: an unrestricted load runs it
    torch.load(shutil.copy(evil, tmp_path / "copy.pt"), map_location="cpu", weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    message = _error(evil, genotypes["student"], tmp_path / "c.pt")
    assert "refused to load the weights file: it would import exec" in message
    assert not marker.exists()

"""The synthetic street-scene generator: Cityscapes layout, labels, determinism, difficulty."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torchvision
from PIL import Image

from fasterseg.cli import main
from fasterseg.data.labels import IGNORE_INDEX, get_label_table
from fasterseg.data.synth import INSTANCE_IDS, generate_dataset
from fasterseg.errors import DataError

SIZE = (128, 256)
NAME = re.compile(r"^(synth[A-F])_(\d{6})_000019_leftImg8bit\.png$")
# sha256 of every file the generator wrote with PIN_COUNTS at PIN_SIZE, per seed; taken from
# the generator before it was split into a package, so any drift in the drawing shows up here
PINNED = Path(__file__).parent / "data" / "synth_sha256.json"
PIN_COUNTS = {"train": 4, "val": 2, "test": 1}
PIN_SIZE = (64, 128)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(root, train=8, val=4, size=SIZE, seed=0)
    return root, summary


def _label_path(image: Path, kind: str) -> Path:
    parts = list(image.parts)
    parts[-4] = "gtFine"
    return Path(*parts).with_name(image.name.replace("leftImg8bit.png", f"gtFine_{kind}.png"))


def _images(root: Path, split: str) -> list[Path]:
    return sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _train_ids(root: Path, splits: tuple[str, ...] = ("train", "val")) -> list[np.ndarray]:
    lut = get_label_table("cityscapes").lut()
    return [lut[_read(_label_path(p, "labelIds"))] for s in splits for p in _images(root, s)]


def test_torchvision_reads_the_layout(small_set: tuple[Path, dict]) -> None:
    root, summary = small_set
    ds = torchvision.datasets.Cityscapes(
        str(root), split="val", mode="fine", target_type="semantic"
    )
    assert len(ds) == 4
    image, target = ds[0]
    assert isinstance(image, Image.Image) and image.size == (256, 128)
    assert target.size == (256, 128) and target.mode == "L"
    assert len(torchvision.datasets.Cityscapes(str(root), split="train", mode="fine")) == 8
    assert summary["images"] == 12 and summary["splits"] == {"train": 8, "val": 4, "test": 0}
    assert summary["size"] == [128, 256] and summary["seed"] == 0 and summary["seconds"] > 0
    assert summary["root"] == str(root)
    assert not (root / "leftImg8bit" / "test").exists()


def test_file_names_and_formats(small_set: tuple[Path, dict]) -> None:
    root, _ = small_set
    seen_cities = set()
    for split in ("train", "val"):
        for image in _images(root, split):
            match = NAME.match(image.name)
            assert match and match.group(1) == image.parent.name
            seen_cities.add((split, match.group(1)))
            with Image.open(image) as im:
                assert im.mode == "RGB" and im.size == (256, 128)
            with Image.open(_label_path(image, "labelIds")) as im:
                assert im.mode == "L"
            with Image.open(_label_path(image, "instanceIds")) as im:
                assert im.mode in ("I", "I;16")
            with Image.open(_label_path(image, "color")) as im:
                assert im.mode == "RGBA"
    assert {c for s, c in seen_cities if s == "train"} == {"synthA", "synthB"}
    assert {c for s, c in seen_cities if s == "val"} == {"synthC", "synthD"}
    # nothing but the Cityscapes folders at the top
    assert sorted(p.name for p in root.iterdir()) == ["gtFine", "leftImg8bit"]


def test_all_19_classes_occur(small_set: tuple[Path, dict]) -> None:
    root, summary = small_set
    present = set()
    for ids in _train_ids(root):
        present |= set(np.unique(ids).tolist())
        assert ids.min() >= 0, "a label file holds an id outside the Cityscapes table"
    assert set(range(19)) <= present
    assert all(
        summary["class_pixel_fraction"][n] > 0 for n in get_label_table("cityscapes").class_names
    )


def test_class_frequencies_like_cityscapes(small_set: tuple[Path, dict]) -> None:
    root, summary = small_set
    table = get_label_table("cityscapes")
    ids = np.concatenate([a.ravel() for a in _train_ids(root)])
    counts = np.bincount(ids[(ids >= 0) & (ids != IGNORE_INDEX)], minlength=19)
    fraction = counts / ids.size
    top3 = [table.class_names[k] for k in np.argsort(-counts)[:3]]
    assert top3 == ["road", "building", "vegetation"]
    assert 0.25 < fraction[0] < 0.45 and 0.12 < fraction[2] < 0.35
    assert 0.02 < fraction[10] < 0.15  # sky
    assert fraction[5] < 0.03 and fraction[6] < 0.01 and fraction[7] < 0.01  # thin classes
    # the summary reports the same shares as the files hold
    for k, name in enumerate(table.class_names):
        assert summary["class_pixel_fraction"][name] == pytest.approx(fraction[k], abs=1e-5)


def test_instance_ids_match_label_ids(small_set: tuple[Path, dict]) -> None:
    root, _ = small_set
    car_instances = 0
    for image in _images(root, "train") + _images(root, "val"):
        labels = _read(_label_path(image, "labelIds")).astype(np.int64)
        inst = _read(_label_path(image, "instanceIds")).astype(np.int64)
        grouped = inst >= 1000
        assert np.array_equal(inst[grouped] // 1000, labels[grouped])
        assert np.array_equal(inst[~grouped], labels[~grouped])
        # instance classes always carry an instance number; other classes never do
        is_instance_class = np.isin(labels, sorted(INSTANCE_IDS))
        assert np.array_equal(grouped, is_instance_class)
        car_instances = max(car_instances, len(np.unique(inst[labels == 26])))
        color = _read(_label_path(image, "color"))
        assert (color[labels == 7][:, :3] == (128, 64, 128)).all()
        assert (color[labels == 26][:, :3] == (0, 0, 142)).all()
    assert car_instances >= 2  # separate cars get separate instance numbers


def test_colour_alone_does_not_solve_it(small_set: tuple[Path, dict]) -> None:
    root, _ = small_set
    lut = get_label_table("cityscapes").lut()

    def pixels(split: str) -> tuple[np.ndarray, np.ndarray]:
        codes, labels = [], []
        for image in _images(root, split):
            q = _read(image).astype(np.int64) >> 4  # 4 bits per channel
            lab = lut[_read(_label_path(image, "labelIds"))]
            keep = (lab >= 0) & (lab != IGNORE_INDEX)
            codes.append(((q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2])[keep])
            labels.append(lab[keep])
        return np.concatenate(codes), np.concatenate(labels)

    x_train, y_train = pixels("train")
    x_val, y_val = pixels("val")
    votes = np.zeros((4096, 19), np.int64)
    np.add.at(votes, (x_train, y_train), 1)
    accuracy = float((votes.argmax(1)[x_val] == y_val).mean())
    chance = float((y_val == np.bincount(y_train).argmax()).mean())
    assert chance + 0.05 < accuracy < 0.9


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    kwargs = {"train": 2, "val": 1, "test": 1, "size": (48, 96)}
    a = generate_dataset(tmp_path / "a", seed=5, **kwargs)
    generate_dataset(tmp_path / "b", seed=5, **kwargs)
    generate_dataset(tmp_path / "c", seed=6, **kwargs)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 4 * 4 and a["images"] == 4
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for rel in files:
        if rel.name.endswith("_leftImg8bit.png") or "test" not in rel.parts:
            assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes(), rel
    # no temporary files left behind by the atomic writes
    assert not [p for p in (tmp_path / "a").rglob("*") if p.name.startswith(".")]


def test_test_split_has_unlabeled_targets(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path, train=0, val=0, test=2, size=(40, 64), seed=1)
    assert summary["splits"] == {"train": 0, "val": 0, "test": 2}
    assert all(v == 0 for v in summary["class_pixel_fraction"].values())
    images = _images(tmp_path, "test")
    assert len(images) == 2
    for image in images:
        assert _read(image).std() > 5  # a real picture
        assert not _read(_label_path(image, "labelIds")).any()
        assert not _read(_label_path(image, "instanceIds")).any()
    ds = torchvision.datasets.Cityscapes(str(tmp_path), split="test", target_type="semantic")
    assert len(ds) == 2 and ds[1][0].size == (64, 40)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (31, 64)}, "size height=31"),
        ({"size": (64, 16)}, "size width=16"),
        ({"size": (64,)}, "expected (height, width)"),
        ({"train": 0, "val": 0}, "train+val+test is 0"),
        ({"train": -1}, "train=-1"),
        ({"val": 1.5}, "val=1.5"),
        ({"seed": -3}, "seed=-3"),
    ],
)
def test_bad_inputs_raise_data_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"train": 1, "val": 1, "size": (64, 64), "seed": 0, **kwargs}
    with pytest.raises(DataError, match=re.escape(message)):
        generate_dataset(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def _sha256_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("seed", [0, 7])
def test_files_match_pinned_hashes(tmp_path: Path, seed: int) -> None:
    # seed 0 through the function, seed 7 through `fasterseg data synth`: both paths are pinned
    if seed == 0:
        generate_dataset(tmp_path, size=PIN_SIZE, seed=seed, **PIN_COUNTS)
    else:
        counts = [a for k, v in PIN_COUNTS.items() for a in (f"--{k}", str(v))]
        size = f"{PIN_SIZE[0]}x{PIN_SIZE[1]}"
        argv = ["data", "synth", "--out", str(tmp_path), *counts, "--size", size]
        assert main([*argv, "--seed", str(seed)]) == 0
    pinned = json.loads(PINNED.read_text())[str(seed)]
    written = _sha256_tree(tmp_path)
    assert len(written) == 4 * sum(PIN_COUNTS.values())
    assert sorted(written) == sorted(pinned)
    changed = [rel for rel in pinned if written[rel] != pinned[rel]]
    assert not changed, f"{len(changed)} files differ from {PINNED.name}, e.g. {changed[:3]}"

"""Tests for fasterseg.data.datasets and labels: tiny Cityscapes- and CamVid-layout folders,
id -> train id mapping, tensor types, and one test per bad input checking that the DataError
names the offending file(s)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from fasterseg.data.datasets import (
    CAMVID_LAYOUT,
    CITYSCAPES_LAYOUT,
    SegmentationFolder,
    build_dataset,
)
from fasterseg.data.labels import IGNORE_INDEX, get_label_table
from fasterseg.errors import DataError, UserError

H, W = 16, 32
CITY_KEYS = ("aachen_000000_000019", "aachen_000001_000019", "bremen_000000_000019")
CAMVID_KEYS = ("0001TP_006690", "Seq05VD_f00000")
# labelId -> trainId pairs checked pixel by pixel (ids from the Cityscapes definition).
CITY_IDS = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    24: 11,  # person
    26: 13,  # car
    33: 18,  # bicycle
    0: 255,  # unlabeled
    1: 255,  # ego vehicle
    9: 255,  # parking
    30: 255,  # trailer
}


def image_array(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def city_label(seed: int) -> np.ndarray:
    ids = np.array(sorted(CITY_IDS), dtype=np.uint8)
    return np.random.default_rng(100 + seed).choice(ids, size=(H, W)).astype(np.uint8)


def city_paths(root: Path, split: str, key: str) -> tuple[Path, Path]:
    city = key.split("_")[0]
    return (
        root / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png",
        root / "gtFine" / split / city / f"{key}_gtFine_labelIds.png",
    )


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_cityscapes(root: Path, split: str = "train", labels: bool = True) -> Path:
    for i, key in enumerate(CITY_KEYS):
        img, lab = city_paths(root, split, key)
        save(img, image_array(i))
        if labels:
            save(lab, city_label(i))
    return root


def make_camvid(root: Path, split: str = "train") -> Path:
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(CAMVID_KEYS):
        save(root / split / f"{key}.png", image_array(i))
        label = np.random.default_rng(200 + i).integers(0, 12, (H, W), dtype=np.uint8)
        save(root / f"{split}annot" / f"{key}.png", label)
    return root


def load_all(name: str, root: Path, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ds = build_dataset(name, root, split)
    return [ds[i] for i in range(len(ds))]


# ---------------------------------------------------------------- label tables
def test_cityscapes_label_table() -> None:
    table = get_label_table("cityscapes")
    assert table.num_classes == 19
    assert table.class_names[0] == "road" and table.class_names[13] == "car"
    assert table.class_names[18] == "bicycle"
    lut = table.lut()
    assert lut.shape == (256,) and lut.dtype == np.int16
    for label_id, train_id in CITY_IDS.items():
        assert lut[label_id] == train_id
    assert lut[34] == -1 and lut[40] == -1 and lut[255] == -1
    assert table.valid_ids() == list(range(34))
    assert table.train_to_id[13] == 26 and table.train_to_id[0] == 7
    pal = table.palette()
    assert pal.shape == (20, 3) and pal.dtype == np.uint8
    assert tuple(pal[0]) == (128, 64, 128) and tuple(pal[-1]) == (0, 0, 0)


def test_camvid_label_table() -> None:
    table = get_label_table("camvid")
    assert table.num_classes == 11
    assert table.valid_ids() == list(range(12))
    assert table.lut()[:12].tolist() == [*range(11), IGNORE_INDEX]
    assert table.lut()[12] == -1
    assert table.palette().shape == (12, 3)


def test_unknown_label_table() -> None:
    with pytest.raises(KeyError, match="unknown label table 'kitti'; known: cityscapes, camvid"):
        get_label_table("kitti")


# ---------------------------------------------------------------- good folders
def test_cityscapes_ids_map_to_train_ids(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs")
    ds = build_dataset("cityscapes", root, "train")
    assert isinstance(ds, SegmentationFolder)
    assert len(ds) == 3
    assert [s.name for s in ds.samples] == list(CITY_KEYS)
    assert ds.num_classes == 19 and ds.class_names[13] == "car"
    for i in range(3):
        image, mask = ds[i]
        assert type(image) is tv_tensors.Image and type(mask) is tv_tensors.Mask
        assert image.dtype == torch.uint8 and image.shape == (3, H, W)
        assert mask.dtype == torch.int64 and mask.shape == (H, W)
        assert torch.equal(image, torch.from_numpy(image_array(i)).permute(2, 0, 1))
        raw = city_label(i)
        expected = np.vectorize(CITY_IDS.__getitem__)(raw)
        assert np.array_equal(mask.numpy(), expected)
        # every id used in the file occurs, so each mapping was really exercised
        assert set(np.unique(raw)) == set(CITY_IDS)
        assert set(mask.unique().tolist()) == {0, 1, 2, 11, 13, 18, 255}


def test_camvid_void_is_ignored(tmp_path: Path) -> None:
    root = make_camvid(tmp_path / "camvid")
    ds = build_dataset("camvid", root, "train")
    assert len(ds) == 2 and ds.num_classes == 11
    for i, key in enumerate(CAMVID_KEYS):
        image, mask = ds[i]
        assert ds.samples[i].name == key
        assert type(image) is tv_tensors.Image and image.dtype == torch.uint8
        assert image.shape == (3, H, W)
        assert type(mask) is tv_tensors.Mask and mask.dtype == torch.int64
        with Image.open(root / "trainannot" / f"{key}.png") as im:
            raw = np.array(im, dtype=np.int64)
        assert (raw == 11).any()
        assert np.array_equal(mask.numpy(), np.where(raw == 11, IGNORE_INDEX, raw))


def test_test_split_without_labels_is_all_ignore(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="test", labels=False)
    ds = build_dataset("cityscapes", root, "test")
    assert len(ds) == 3
    assert all(s.label is None for s in ds.samples)
    image, mask = ds[1]
    assert image.shape == (3, H, W)
    assert type(mask) is tv_tensors.Mask and mask.dtype == torch.int64
    assert mask.shape == (H, W) and bool((mask == IGNORE_INDEX).all())


def test_transforms_are_applied(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs")
    seen = []

    def flip_both(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append((type(image), type(mask)))
        return image.flip(-1), mask.flip(-1)

    plain = build_dataset("cityscapes", root, "train")
    flipped = build_dataset("cityscapes", root, "train", transforms=flip_both)
    image, mask = flipped[0]
    assert seen == [(tv_tensors.Image, tv_tensors.Mask)]
    assert torch.equal(image, plain[0][0].flip(-1))
    assert torch.equal(mask, plain[0][1].flip(-1))


def test_palette_label_file_is_read_as_ids(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs")
    _, lab = city_paths(root, "train", CITY_KEYS[0])
    Image.fromarray(city_label(0)).convert("P").save(lab)
    with Image.open(lab) as im:
        assert im.mode == "P"
    _, mask = build_dataset("cityscapes", root, "train")[0]
    assert np.array_equal(mask.numpy(), np.vectorize(CITY_IDS.__getitem__)(city_label(0)))


# ---------------------------------------------------------------- bad inputs
# Each case breaks a good folder and returns (dataset, root, split, expected message parts).
Case = Callable[[Path], tuple[str, Path, str, list[str]]]


def _missing_root(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = tmp / "nowhere"
    return "cityscapes", root, "train", [f"{root}: dataset root not found", CITYSCAPES_LAYOUT]


def _missing_split(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    return (
        "cityscapes",
        root,
        "val",
        [
            f"{root / 'leftImg8bit' / 'val'}: split 'val' not found",
            CITYSCAPES_LAYOUT,
        ],
    )


def _missing_label_folder(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs", labels=False)
    return (
        "cityscapes",
        root,
        "train",
        [
            f"{root / 'gtFine' / 'train'}: label folder not found",
            CITYSCAPES_LAYOUT,
        ],
    )


def _image_without_label(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    img, lab = city_paths(root, "train", CITY_KEYS[1])
    lab.unlink()
    return "cityscapes", root, "train", [f"{img}: no label file; expected {lab}"]


def _label_without_image(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    img, lab = city_paths(root, "train", CITY_KEYS[2])
    img.unlink()
    return "cityscapes", root, "train", [f"{lab}: label without an image; expected {img}"]


def _size_mismatch(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    img, lab = city_paths(root, "train", CITY_KEYS[1])
    save(lab, np.full((8, 16), 7, dtype=np.uint8))
    return "cityscapes", root, "train", [f"{img} is 16x32 but its label {lab} is 8x16"]


def _value_outside_table(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    _, lab = city_paths(root, "train", CITY_KEYS[0])
    label = city_label(0)
    label[0, :3] = [40, 200, 40]
    save(lab, label)
    return (
        "cityscapes",
        root,
        "train",
        [
            f"{lab}: label values [40, 200] are not in the cityscapes label table",
            "valid ids: 0-33",
        ],
    )


def _sixteen_bit_value(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    _, lab = city_paths(root, "train", CITY_KEYS[0])
    Image.fromarray(np.full((H, W), 300, dtype=np.uint16)).save(lab)
    return "cityscapes", root, "train", [f"{lab}: label values [300] are outside the label table"]


def _garbage_image(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    img, _ = city_paths(root, "train", CITY_KEYS[2])
    img.write_bytes(b"this is not a png at all")
    return "cityscapes", root, "train", [f"{img}: cannot read image"]


def _truncated_image(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    img, _ = city_paths(root, "train", CITY_KEYS[0])
    img.write_bytes(img.read_bytes()[:60])
    return "cityscapes", root, "train", [f"{img}: cannot read image"]


def _garbage_label(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    _, lab = city_paths(root, "train", CITY_KEYS[0])
    lab.write_bytes(b"\x89PNG garbage")
    return "cityscapes", root, "train", [f"{lab}: cannot read label image"]


def _rgb_label(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    _, lab = city_paths(root, "train", CITY_KEYS[1])
    save(lab, np.stack([city_label(1)] * 3, axis=-1))
    return (
        "cityscapes",
        root,
        "train",
        [
            f"{lab}: label image must be single-channel (mode L or P) holding label ids, "
            "got mode RGB"
        ],
    )


def _unknown_dataset(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_cityscapes(tmp / "cs")
    return "kitti", root, "train", ["unknown dataset 'kitti'; known: cityscapes, camvid"]


def _empty_split(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = tmp / "cs"
    (root / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    (root / "gtFine" / "train" / "aachen").mkdir(parents=True)
    return (
        "cityscapes",
        root,
        "train",
        [
            f"{root / 'leftImg8bit' / 'train'}: no *_leftImg8bit.png images",
            CITYSCAPES_LAYOUT,
        ],
    )


def _camvid_missing_root(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = tmp / "camvid"
    return "camvid", root, "train", [f"{root}: dataset root not found", CAMVID_LAYOUT]


def _camvid_missing_split(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_camvid(tmp / "camvid")
    return "camvid", root, "test", [f"{root / 'test'}: split 'test' not found", CAMVID_LAYOUT]


def _camvid_missing_annot(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_camvid(tmp / "camvid")
    for p in (root / "trainannot").iterdir():
        p.unlink()
    (root / "trainannot").rmdir()
    return (
        "camvid",
        root,
        "train",
        [
            f"{root / 'trainannot'}: label folder of split 'train' not found",
            CAMVID_LAYOUT,
        ],
    )


def _camvid_image_without_label(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_camvid(tmp / "camvid")
    (root / "trainannot" / f"{CAMVID_KEYS[0]}.png").unlink()
    return (
        "camvid",
        root,
        "train",
        [
            f"{root / 'train' / CAMVID_KEYS[0]}.png: no label file; "
            f"expected {root / 'trainannot' / CAMVID_KEYS[0]}.png"
        ],
    )


def _camvid_label_without_image(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_camvid(tmp / "camvid")
    (root / "train" / f"{CAMVID_KEYS[1]}.png").unlink()
    return (
        "camvid",
        root,
        "train",
        [
            f"{root / 'trainannot' / CAMVID_KEYS[1]}.png: label without an image; "
            f"expected {root / 'train' / CAMVID_KEYS[1]}.png"
        ],
    )


def _camvid_value_outside_table(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = make_camvid(tmp / "camvid")
    lab = root / "trainannot" / f"{CAMVID_KEYS[1]}.png"
    save(lab, np.full((H, W), 12, dtype=np.uint8))
    return (
        "camvid",
        root,
        "train",
        [f"{lab}: label values [12] are not in the camvid label table (valid ids: 0-11)"],
    )


def _camvid_empty_split(tmp: Path) -> tuple[str, Path, str, list[str]]:
    root = tmp / "camvid"
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    return "camvid", root, "val", [f"{root / 'val'}: no .png images", CAMVID_LAYOUT]


BAD_INPUTS: dict[str, Case] = {
    "missing_root": _missing_root,
    "missing_split": _missing_split,
    "missing_label_folder": _missing_label_folder,
    "image_without_label": _image_without_label,
    "label_without_image": _label_without_image,
    "size_mismatch": _size_mismatch,
    "value_outside_table": _value_outside_table,
    "sixteen_bit_value": _sixteen_bit_value,
    "garbage_image": _garbage_image,
    "truncated_image": _truncated_image,
    "garbage_label": _garbage_label,
    "rgb_label": _rgb_label,
    "unknown_dataset": _unknown_dataset,
    "empty_split": _empty_split,
    "camvid_missing_root": _camvid_missing_root,
    "camvid_missing_split": _camvid_missing_split,
    "camvid_missing_annot": _camvid_missing_annot,
    "camvid_image_without_label": _camvid_image_without_label,
    "camvid_label_without_image": _camvid_label_without_image,
    "camvid_value_outside_table": _camvid_value_outside_table,
    "camvid_empty_split": _camvid_empty_split,
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_names_the_file(tmp_path: Path, case: Case) -> None:
    name, root, split, parts = case(tmp_path)
    with pytest.raises(DataError) as info:
        load_all(name, root, split)
    msg = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_several_missing_labels_are_counted(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs")
    for key in CITY_KEYS[:2]:
        city_paths(root, "train", key)[1].unlink()
    img, lab = city_paths(root, "train", CITY_KEYS[0])
    with pytest.raises(DataError) as info:
        build_dataset("cityscapes", root, "train")
    assert str(info.value) == f"{img}: no label file; expected {lab} (and 1 more)"


def test_good_samples_still_load_beside_a_bad_one(tmp_path: Path) -> None:
    # Content errors surface when the broken sample is read, not for its neighbours.
    name, root, split, _ = _size_mismatch(tmp_path)
    ds = build_dataset(name, root, split)
    assert ds[0][0].shape == (3, H, W)
    with pytest.raises(DataError):
        ds[1]


def test_skip_corrupt_leaves_out_unreadable_images_with_a_count(tmp_path, caplog):
    from fasterseg.data.synth import generate_dataset

    generate_dataset(tmp_path, train=0, val=3, size=(32, 64), seed=0)
    bad = sorted((tmp_path / "leftImg8bit" / "val").rglob("*.png"))[1]
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=str(bad)):
        ds = build_dataset("cityscapes", tmp_path, "val")
        [ds[i] for i in range(len(ds))]
    with caplog.at_level("WARNING"):
        ds = build_dataset("cityscapes", tmp_path, "val", skip_corrupt=True)
    assert len(ds) == 2
    assert "skipped 1 of 3 samples" in caplog.text and str(bad) in caplog.text

"""Tests for fasterseg.metrics: the confusion matrix, its scores, and scoring prediction PNGs
(checked against cityscapesscripts' own evaluator)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_scores, cityscapes_args
from PIL import Image

from fasterseg.cli import main
from fasterseg.data.labels import get_label_table
from fasterseg.errors import DataError
from fasterseg.metrics import ConfusionMatrix, score_folder, scores_dict

TABLE = get_label_table("cityscapes")
KEYS = ("aachen_000000_000019", "aachen_000001_000019", "bremen_000000_000019")
SIZE = (64, 128)
TRAIN_LABEL_ID = 31  # class "train": kept out of gt and predictions, so its IoU is undefined
LABEL_IDS = np.array([i for i in range(34) if i != TRAIN_LABEL_ID])  # incl. ignored 0, 4, 9, ...


# ---------------------------------------------------------------- ConfusionMatrix
def test_hand_computed_matrix_and_scores() -> None:
    # 4 classes; class 3 occurs in neither target nor prediction.
    target = torch.tensor([[0, 0, 1, 255], [1, 2, 9, 2]])
    pred = torch.tensor([[0, 1, 1, 3], [7, 2, 0, -1]])
    # pixels: (t0,p0) (t0,p1) (t1,p1) ignored | (t1,other) (t2,p2) t9 skipped (t2,other)
    conf = ConfusionMatrix(4)
    conf.update(pred, target)
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0],
            [0, 1, 0, 0, 1],
            [0, 0, 1, 0, 1],
            [0, 0, 0, 0, 0],
        ]
    )
    assert torch.equal(conf.matrix, expected)
    result = conf.compute()
    # class 0: tp 1 fp 0 fn 1; class 1: tp 1 fp 1 fn 1; class 2: tp 1 fp 0 fn 1
    assert result["iou"][0] == pytest.approx(1 / 2)
    assert result["iou"][1] == pytest.approx(1 / 3)
    assert result["iou"][2] == pytest.approx(1 / 2)
    assert result["iou"][3] is None
    assert result["miou"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert result["pixel_accuracy"] == pytest.approx(3 / 6)
    assert conf.images == 1


def test_false_positive_only_class_has_zero_iou() -> None:
    conf = ConfusionMatrix(3)
    conf.update(torch.tensor([[2, 2]]), torch.tensor([[0, 1]]))
    result = conf.compute()
    assert result["iou"] == [0.0, 0.0, 0.0]
    assert result["miou"] == 0.0
    assert result["pixel_accuracy"] == 0.0


def test_ignore_index_inside_class_range() -> None:
    conf = ConfusionMatrix(3, ignore_index=0)
    conf.update(torch.tensor([1, 1, 2]).view(1, 3), torch.tensor([0, 1, 2]).view(1, 3))
    assert conf.matrix.sum().item() == 2
    assert conf.compute()["iou"] == [None, 1.0, 1.0]


def test_perfect_prediction() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (3, 8, 8), generator=g)
    target[:, 0] = 255
    pred = target.clone()
    pred[:, 0] = 4  # anything on ignored pixels does not count
    conf = ConfusionMatrix(5)
    conf.update(pred, target)
    result = conf.compute()
    assert result["miou"] == 1.0
    assert result["pixel_accuracy"] == 1.0
    assert conf.images == 3


def test_streaming_equals_one_shot() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 6, (6, 5, 7), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    pred = torch.randint(-1, 8, (6, 5, 7), generator=g)  # includes out-of-range -1, 6, 7

    whole = ConfusionMatrix(6)
    whole.update(pred, target)
    parts = ConfusionMatrix(6)
    parts.update(pred[:2], target[:2])
    parts.update(pred[2:5].to(torch.uint8).long(), target[2:5].to(torch.int32))
    parts.update(pred[5], target[5])
    assert torch.equal(whole.matrix, parts.matrix)
    assert whole.compute() == parts.compute()
    assert whole.images == parts.images == 6
    assert whole.matrix.sum().item() == int((target != 255).sum())


def test_empty_and_reset() -> None:
    conf = ConfusionMatrix(2)
    result = conf.compute()
    assert result["iou"] == [None, None]
    assert math.isnan(result["miou"]) and math.isnan(result["pixel_accuracy"])
    conf.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    assert conf.compute()["miou"] == 1.0
    conf.reset()
    assert conf.matrix.sum().item() == 0 and conf.images == 0


def test_update_rejects_bad_inputs() -> None:
    conf = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="shapes differ"):
        conf.update(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        conf.update(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        conf.update(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_scores_dict() -> None:
    conf = ConfusionMatrix(3)
    conf.update(torch.tensor([[[0, 1], [1, 1]]]), torch.tensor([[[0, 1], [2, 255]]]))
    out = scores_dict(conf, ["a", "b", "c"])
    assert set(out) == {"miou", "pixel_accuracy", "per_class_iou", "images"}
    assert out["per_class_iou"] == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert out["miou"] == pytest.approx(0.5)
    assert out["pixel_accuracy"] == pytest.approx(2 / 3)
    assert out["images"] == 1
    with pytest.raises(ValueError, match="2 class names"):
        scores_dict(conf, ["a", "b"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 19, (2, 32, 32), generator=g)
    pred = torch.randint(0, 21, (2, 32, 32), generator=g)
    cpu = ConfusionMatrix(19)
    cpu.update(pred, target)
    gpu = ConfusionMatrix(19)
    device = torch.device("cuda")
    gpu.update(pred.to(device), target.to(device))
    assert gpu.matrix.device.type == "cuda"
    assert torch.equal(gpu.matrix.cpu(), cpu.matrix)
    assert gpu.compute() == cpu.compute()


# ---------------------------------------------------------------- score_folder
def _write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def _make_dataset(tmp_path: Path, seed: int = 0) -> tuple[Path, Path, list[str], list[str]]:
    """A gtFine/val folder with three images in two cities and predictions in a separate folder
    (nested, with an unrelated extra PNG). Returns (root, pred_dir, gt_list, pred_list)."""
    rng = np.random.default_rng(seed)
    root, pred_dir = tmp_path / "data", tmp_path / "pred"
    gt_list, pred_list = [], []
    for i, key in enumerate(KEYS):
        city = key.split("_")[0]
        gt = rng.choice(LABEL_IDS, size=SIZE)
        pred = np.where(rng.random(SIZE) < 0.5, gt, rng.choice(LABEL_IDS, size=SIZE))
        gt_path = root / "gtFine" / "val" / city / f"{key}_gtFine_labelIds.png"
        # one prediction at the top level, the others nested: the search is recursive
        sub = pred_dir if i == 0 else pred_dir / city
        gt_list.append(str(_write_png(gt_path, gt)))
        pred_list.append(str(_write_png(sub / f"{key}_leftImg8bit.png", pred)))
    _write_png(pred_dir / "berlin_000000_000019_leftImg8bit.png", np.zeros(SIZE))
    return root, pred_dir, gt_list, pred_list


def test_score_folder_agrees_with_cityscapesscripts(tmp_path: Path) -> None:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval

    root, pred_dir, gt_list, pred_list = _make_dataset(tmp_path)
    ours = score_folder(pred_dir, root, split="val")

    args = cityscapes_args(evalPixelAccuracy=False)
    ref = cs_eval.evaluateImgLists(pred_list, gt_list, args)

    assert ours["images"] == 3
    assert list(ours["per_class_iou"]) == list(TABLE.class_names)
    assert_same_scores(ours, ref)
    assert ours["per_class_iou"]["train"] is None
    assert sum(v is not None for v in ours["per_class_iou"].values()) == 18
    assert ours["miou"] == pytest.approx(ref["averageScoreClasses"], abs=1e-6)
    assert 0.2 < ours["miou"] < 0.9  # random but correlated: neither trivial end

    lut = TABLE.lut()
    gt = lut[np.stack([np.asarray(Image.open(p)) for p in gt_list])]
    pred = lut[np.stack([np.asarray(Image.open(p)) for p in pred_list])]
    labelled = gt != 255
    assert ours["pixel_accuracy"] == pytest.approx((pred == gt)[labelled].mean(), abs=1e-12)


def test_unknown_predicted_ids_count_as_wrong(tmp_path: Path) -> None:
    """Predicted labelIds outside the Cityscapes table (200) score like ignored ones (0)."""
    root, pred_dir, _, pred_list = _make_dataset(tmp_path)
    before = score_folder(pred_dir, root)
    for p in pred_list:
        arr = np.asarray(Image.open(p)).copy()
        arr[arr == 0] = 200
        _write_png(Path(p), arr)
    assert score_folder(pred_dir, root) == before


def test_perfect_predictions_score_one(tmp_path: Path) -> None:
    root, pred_dir, gt_list, pred_list = _make_dataset(tmp_path)
    for gt, pred in zip(gt_list, pred_list):
        shutil.copyfile(gt, pred)
    out = score_folder(pred_dir, root)
    assert out["miou"] == 1.0 and out["pixel_accuracy"] == 1.0


def _bad_input(case: str, tmp_path: Path) -> tuple[Path, Path, str, list[str]]:
    """Break a valid dataset as ``case`` says; returns (pred_dir, root, split, words that the
    error message must contain)."""
    root, pred_dir, gt_list, pred_list = _make_dataset(tmp_path)
    if case == "pred_dir_missing":
        return tmp_path / "nowhere", root, "val", [str(tmp_path / "nowhere")]
    if case == "split_missing":
        return pred_dir, root, "test", [str(root / "gtFine" / "test"), "CITY/*_gtFine_labelIds.png"]
    if case == "no_gt_files":
        for p in gt_list:
            Path(p).unlink()
        return pred_dir, root, "val", [str(root / "gtFine" / "val")]
    if case == "missing_prediction":
        Path(pred_list[1]).unlink()
        return pred_dir, root, "val", [gt_list[1], f"{KEYS[1]}*.png"]
    if case == "duplicate_prediction":
        copy_path = pred_dir / "again" / f"{KEYS[2]}_copy.png"
        copy_path.parent.mkdir()
        shutil.copyfile(pred_list[2], copy_path)
        return pred_dir, root, "val", [gt_list[2], pred_list[2], str(copy_path)]
    if case == "size_mismatch":
        _write_png(Path(pred_list[0]), np.zeros((32, 64)))
        return pred_dir, root, "val", [pred_list[0], gt_list[0], "32x64", "64x128"]
    if case == "truncated_prediction":
        data = Path(pred_list[0]).read_bytes()
        Path(pred_list[0]).write_bytes(data[: len(data) // 2])
        return pred_dir, root, "val", [pred_list[0]]
    if case == "garbage_gt":
        Path(gt_list[1]).write_bytes(b"not a png at all")
        return pred_dir, root, "val", [gt_list[1]]
    if case == "rgb_prediction":
        Image.new("RGB", SIZE[::-1]).save(pred_list[0])
        return pred_dir, root, "val", [pred_list[0], "3 channels"]
    if case == "unknown_gt_label":
        _write_png(Path(gt_list[0]), np.full(SIZE, 40))
        return pred_dir, root, "val", [gt_list[0], "labelId 40"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "pred_dir_missing",
        "split_missing",
        "no_gt_files",
        "missing_prediction",
        "duplicate_prediction",
        "size_mismatch",
        "truncated_prediction",
        "garbage_gt",
        "rgb_prediction",
        "unknown_gt_label",
    ],
)
def test_bad_input_names_the_file(case: str, tmp_path: Path) -> None:
    pred_dir, root, split, words = _bad_input(case, tmp_path)
    with pytest.raises(DataError) as info:
        score_folder(pred_dir, root, split=split)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


# ---------------------------------------------------------------- CLI
def test_cli_score_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, pred_dir, _, _ = _make_dataset(tmp_path)
    assert main(["score", str(pred_dir), "--gt", str(root), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"miou", "pixel_accuracy", "per_class_iou", "images"}
    assert printed == score_folder(pred_dir, root)
    assert printed["images"] == 3


def test_cli_score_missing_pred_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _, _, _ = _make_dataset(tmp_path)
    missing = tmp_path / "missing"
    assert main(["score", str(missing), "--gt", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("fasterseg: error: ") and str(missing) in err[0]

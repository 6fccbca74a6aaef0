"""Tests for fasterseg.data.transforms: shapes, dtypes and padding of the training pipeline,
image/mask alignment under flips, crops and rescaling, nearest-neighbour masks, and determinism of
the transforms and of seeded loaders."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from fasterseg.data.datasets import build_dataset
from fasterseg.data.labels import IGNORE_INDEX
from fasterseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SeededDataLoader,
    build_loader,
    endless_loader,
    eval_transforms,
    train_transforms,
)
from fasterseg.errors import ConfigError

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
STEP = 20  # image channel 0 = STEP * label: the image "shows" its mask


def normalise(image: torch.Tensor) -> torch.Tensor:
    return (image.float() / 255 - MEAN) / STD


def unnormalise_channel0(image: torch.Tensor) -> torch.Tensor:
    """Back to the uint8 value of channel 0, rounded: (H, W) int64."""
    return ((image[0] * STD[0] + MEAN[0]) * 255).round().long()


def random_pair(h: int, w: int, seed: int = 0) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    values = torch.tensor([0, 5, 13, 18])
    mask = values[torch.randint(0, 4, (h, w), generator=g)]
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def column_pair(h: int, w: int, bucket: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Mask = column bucket index; image channel 0 = STEP * mask, so each pixel names its label."""
    labels = (torch.arange(w) // bucket).expand(h, w).clone()
    image = torch.stack([labels * STEP, torch.full((h, w), 77), labels * 3]).to(torch.uint8)
    return tv_tensors.Image(image), tv_tensors.Mask(labels.to(torch.int64))


# ---------------------------------------------------------------- train_transforms
def test_train_output_types_shapes_and_dtypes() -> None:
    image, mask = random_pair(24, 40)
    torch.manual_seed(0)
    out_image, out_mask = train_transforms((16, 24))(image, mask)
    assert type(out_image) is tv_tensors.Image and type(out_mask) is tv_tensors.Mask
    assert out_image.shape == (3, 16, 24) and out_image.dtype == torch.float32
    assert out_mask.shape == (16, 24) and out_mask.dtype == torch.int64
    # normalised: roughly zero-centred, well outside [0, 1]
    assert out_image.min() < -1.5 and out_image.max() > 1.5


def test_uint8_mask_becomes_int64() -> None:
    image, mask = random_pair(16, 16)
    mask8 = tv_tensors.Mask(mask.to(torch.uint8))
    _, out = train_transforms((8, 8), scales=(1.0,))(image, mask8)
    assert out.dtype == torch.int64 and type(out) is tv_tensors.Mask


@pytest.mark.parametrize("seed", range(4))
def test_crop_larger_than_image_pads_image_zero_and_label_ignore(seed: int) -> None:
    image, mask = random_pair(8, 12, seed)
    torch.manual_seed(seed)
    out_image, out_mask = train_transforms((16, 32), scales=(1.0,), flip=False)(image, mask)
    assert out_image.shape == (3, 16, 32) and out_mask.shape == (16, 32)
    valid = out_mask != IGNORE_INDEX
    assert int(valid.sum()) == 8 * 12
    # the valid pixels form one 8x12 block holding exactly the normalised input
    rows = valid.any(1).nonzero().flatten()
    cols = valid.any(0).nonzero().flatten()
    r0, c0 = int(rows[0]), int(cols[0])
    assert len(rows) == 8 and len(cols) == 12
    assert torch.equal(out_mask[r0 : r0 + 8, c0 : c0 + 12], mask)
    torch.testing.assert_close(out_image[:, r0 : r0 + 8, c0 : c0 + 12], normalise(image))
    # padding: 0 after normalisation (the mean colour), label 255
    assert bool((out_image[:, ~valid] == 0).all())


def test_crop_larger_in_one_dimension_only() -> None:
    image, mask = random_pair(8, 40)
    torch.manual_seed(1)
    out_image, out_mask = train_transforms((16, 16), scales=(1.0,))(image, mask)
    assert out_image.shape == (3, 16, 16)
    assert int((out_mask != IGNORE_INDEX).sum()) == 8 * 16
    assert bool((out_mask != IGNORE_INDEX).any(0).all())  # every column has image content


@pytest.mark.parametrize("stride", [2, 8])
def test_label_stride_shrinks_only_the_mask(stride: int) -> None:
    image, mask = random_pair(40, 72)
    torch.manual_seed(0)
    out_image, out_mask = train_transforms((32, 64), label_stride=stride)(image, mask)
    assert out_image.shape == (3, 32, 64)
    assert out_mask.shape == (32 // stride, 64 // stride)
    assert type(out_mask) is tv_tensors.Mask and out_mask.dtype == torch.int64
    assert set(out_mask.unique().tolist()) <= {0, 5, 13, 18, IGNORE_INDEX}


def test_label_stride_picks_labels_of_the_crop() -> None:
    image, mask = column_pair(8, 64, bucket=8)
    torch.manual_seed(0)
    out_image, out_mask = train_transforms((8, 64), scales=(1.0,), flip=False, label_stride=8)(
        image, mask
    )
    assert torch.equal(out_mask, torch.arange(8).expand(1, 8))
    assert torch.equal(unnormalise_channel0(out_image), (mask * STEP).long())


def test_downsample_halves_before_cropping() -> None:
    image, mask = column_pair(16, 64, bucket=8)
    torch.manual_seed(0)
    out_image, out_mask = train_transforms((8, 32), scales=(1.0,), flip=False, downsample=2)(
        image, mask
    )
    # (16, 64) / 2 == crop, so the whole down-sampled image is returned: 4-column buckets
    assert out_image.shape == (3, 8, 32)
    assert torch.equal(out_mask, (torch.arange(32) // 4).expand(8, 32))


@pytest.mark.parametrize("seed", range(12))
def test_flip_and_crop_keep_image_and_mask_aligned(seed: int) -> None:
    image, mask = column_pair(12, 48, bucket=6)
    torch.manual_seed(seed)
    out_image, out_mask = train_transforms((10, 20), scales=(1.0,))(image, mask)
    assert torch.equal(unnormalise_channel0(out_image), out_mask * STEP)


def test_flips_happen_in_both_directions() -> None:
    image, mask = column_pair(4, 48, bucket=6)
    t = train_transforms((4, 48), scales=(1.0,))
    directions = set()
    for seed in range(12):
        torch.manual_seed(seed)
        _, out_mask = t(image, mask)
        row = out_mask[0]
        directions.add(bool((row[1:] >= row[:-1]).all()))
    assert directions == {True, False}
    _, never = train_transforms((4, 48), scales=(1.0,), flip=False)(image, mask)
    assert torch.equal(never, mask)


@pytest.mark.parametrize("seed", range(8))
def test_rescale_keeps_alignment_inside_label_regions(seed: int) -> None:
    image, mask = column_pair(24, 96, bucket=12)
    torch.manual_seed(seed)
    out_image, out_mask = train_transforms((16, 48), scales=(0.75, 1.25, 1.5))(image, mask)
    value = unnormalise_channel0(out_image)
    valid = out_mask != IGNORE_INDEX
    # away from label boundaries (bilinear image vs nearest mask), the image still shows the mask
    interior = valid.clone()
    for shift in (-2, -1, 1, 2):
        interior[:, 2:-2] &= out_mask[:, 2:-2] == out_mask.roll(shift, dims=1)[:, 2:-2]
    interior[:, :2] = interior[:, -2:] = False
    assert int(interior.sum()) > 100
    diff = (value - out_mask * STEP).abs()[interior]
    assert int(diff.max()) <= 1


@pytest.mark.parametrize("scale", [0.5, 0.75, 1.25, 1.5])
def test_rescale_is_nearest_for_masks(scale: float) -> None:
    image, mask = random_pair(20, 30)
    torch.manual_seed(0)
    crop = (int(20 * scale + 0.5), int(30 * scale + 0.5))
    out_image, out_mask = train_transforms(crop, scales=(scale,), flip=False)(image, mask)
    assert out_mask.shape == crop  # the whole rescaled image, no padding
    assert set(out_mask.unique().tolist()) == {0, 5, 13, 18}
    # the bilinear image does take new in-between values
    assert len(unnormalise_channel0(out_image).unique()) > 4 * 4


def test_same_seed_same_output_and_seeds_differ() -> None:
    image, mask = random_pair(24, 40)
    t = train_transforms((16, 24), scales=(0.75, 1.0, 1.25))
    outputs = []
    for seed in (3, 3, 4, 5, 6):
        torch.manual_seed(seed)
        outputs.append(t(image, mask))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert torch.equal(outputs[0][1], outputs[1][1])
    assert any(not torch.equal(outputs[0][0], o[0]) for o in outputs[2:])


# ---------------------------------------------------------------- eval_transforms
def test_eval_keeps_full_size_and_exact_values() -> None:
    image, mask = random_pair(17, 33)
    out_image, out_mask = eval_transforms()(image, mask)
    assert type(out_image) is tv_tensors.Image and out_image.shape == (3, 17, 33)
    assert out_image.dtype == torch.float32
    torch.testing.assert_close(out_image, normalise(image))
    assert type(out_mask) is tv_tensors.Mask and out_mask.dtype == torch.int64
    assert torch.equal(out_mask, mask)
    _, from_uint8 = eval_transforms()(image, tv_tensors.Mask(mask.to(torch.uint8)))
    assert from_uint8.dtype == torch.int64 and torch.equal(from_uint8, mask)


def test_eval_is_deterministic_and_downsamples() -> None:
    image, mask = column_pair(16, 64, bucket=8)
    t = eval_transforms(downsample=2)
    first = t(image, mask)
    second = t(image, mask)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].shape == (3, 8, 32)
    assert torch.equal(first[1], (torch.arange(32) // 4).expand(8, 32))


# ---------------------------------------------------------------- loaders
class Indexed(torch.utils.data.Dataset):
    """Wraps a dataset so each sample also carries its index (module level: picklable)."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        image, mask = self.dataset[i]
        return i, image, mask


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Cityscapes-layout folder with 6 random 16x32 images."""
    root = tmp_path_factory.mktemp("cs")
    rng = np.random.default_rng(0)
    for i in range(6):
        key = f"city_{i:06d}_000019"
        img = root / "leftImg8bit" / "train" / "city" / f"{key}_leftImg8bit.png"
        lab = root / "gtFine" / "train" / "city" / f"{key}_gtFine_labelIds.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        lab.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)).save(img)
        Image.fromarray(rng.choice(np.array([0, 7, 8, 26], np.uint8), (16, 32))).save(lab)
    return root


def epochs(root: Path, seed: int, workers: int, n: int = 2) -> list[list[tuple]]:
    ds = build_dataset("cityscapes", root, "train", train_transforms((8, 24), scales=(0.75, 1.0)))
    loader = build_loader(Indexed(ds), batch_size=2, shuffle=True, seed=seed, workers=workers)
    assert isinstance(loader, SeededDataLoader) and len(loader) == 3
    return [list(loader) for _ in range(n)]


def same_epoch(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(ba, bb)) for ba, bb in zip(a, b)
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_same_seed_same_batches_and_order(folder: Path, workers: int) -> None:
    torch.manual_seed(1)
    first = epochs(folder, seed=7, workers=workers)
    torch.manual_seed(2)  # the global RNG must not matter
    random.seed(2)
    np.random.seed(2)
    second = epochs(folder, seed=7, workers=workers)
    for a, b in zip(first, second):
        assert same_epoch(a, b)
    _, image, mask = first[0][0]
    assert image.shape == (2, 3, 8, 24) and image.dtype == torch.float32
    assert mask.shape == (2, 8, 24) and mask.dtype == torch.int64
    # each epoch is a permutation of all samples, and the second epoch reshuffles
    orders = [torch.cat([b[0] for b in ep]).tolist() for ep in first]
    assert all(sorted(o) == list(range(6)) for o in orders)
    assert not same_epoch(first[0], first[1])
    other = epochs(folder, seed=8, workers=workers, n=1)
    assert not same_epoch(first[0], other[0])


@pytest.mark.parametrize("workers", [0, 2])
def test_endless_loader_passes_are_fresh_loaders_passes(folder: Path, workers: int) -> None:
    """Pass p of the endless loader holds the batches, augmentations included, of a fresh
    loader seeded seed_of_pass(p); a fourth of the way into a third pass it is still going."""
    ds = Indexed(
        build_dataset("cityscapes", folder, "train", train_transforms((8, 24), scales=(0.75, 1.0)))
    )
    seed_of_pass = lambda p: 40 + 3 * p  # noqa: E731
    endless = endless_loader(ds, batch_size=2, seed_of_pass=seed_of_pass, workers=workers)
    got = list(itertools.islice(endless, 7))  # 3 batches per pass
    fresh = [
        b
        for p in range(3)
        for b in build_loader(ds, batch_size=2, shuffle=True, seed=seed_of_pass(p), workers=0)
    ]
    assert same_epoch(got, fresh[:7])
    assert not same_epoch(got[:3], got[3:6])  # the second pass reshuffles


def test_endless_loader_of_an_empty_pass_is_an_error(folder: Path) -> None:
    ds = Indexed(build_dataset("cityscapes", folder, "train"))
    endless = endless_loader(ds, batch_size=8, seed_of_pass=int, drop_last=True)
    with pytest.raises(ConfigError, match="produced no batch"):
        next(endless)


def test_in_process_loader_leaves_global_rng_alone(folder: Path) -> None:
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    epochs(folder, seed=7, workers=0, n=1)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])


def test_unshuffled_loader_keeps_dataset_order(folder: Path) -> None:
    ds = Indexed(build_dataset("cityscapes", folder, "train"))
    loader = build_loader(ds, batch_size=4, shuffle=False, seed=0, drop_last=True)
    batches = list(loader)
    assert len(batches) == 1 and batches[0][0].tolist() == [0, 1, 2, 3]
    assert batches[0][1].dtype == torch.uint8 and batches[0][2].dtype == torch.int64


@pytest.mark.parametrize("workers", [0, 2])
def test_process_shares_of_a_global_batch_rebuild_the_single_process_batch(
    folder: Path, workers: int
) -> None:
    ds = Indexed(
        build_dataset("cityscapes", folder, "train", train_transforms((8, 24), scales=(0.5, 1.0)))
    )

    def batches(rank: int, world: int, w: int) -> list[tuple]:
        loader = build_loader(
            ds, batch_size=4, shuffle=True, seed=3, workers=w, drop_last=True,
            rank=rank, world_size=world,
        )  # fmt: skip
        return list(loader)

    whole = batches(0, 1, 0)
    shares = [batches(r, 2, workers) for r in range(2)]
    assert len(whole) == 1 and all(len(s) == 1 for s in shares)
    ranks = [s[0] for s in shares]
    assert ranks[0][0].numel() == 2 and set(ranks[0][0].tolist()).isdisjoint(ranks[1][0].tolist())
    for k in range(3):  # index, image and mask alike
        assert torch.equal(torch.cat([ranks[0][k], ranks[1][k]]), whole[0][k])


def test_a_global_batch_that_does_not_split_evenly_is_refused(folder: Path) -> None:
    ds = build_dataset("cityscapes", folder, "train")
    with pytest.raises(ValueError, match="global batch of 3 cannot be split evenly over 2"):
        build_loader(ds, batch_size=3, shuffle=True, seed=0, drop_last=True, world_size=2)

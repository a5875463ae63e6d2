from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from optuna_epnas.data import datasets
from optuna_epnas.data.device import (
    DatasetNotFoundError,
    DeviceData,
    available_datasets,
    load_dataset,
    make_generator,
    read_idx,
)

try:  # tests/ on sys.path (rootdir-relative "prepend" import, no tests/__init__.py)
    from fixtures_data import write_cifar10, write_fashion_mnist, write_idx
except ImportError:  # tests/ imported as a package
    from tests.fixtures_data import write_cifar10, write_fashion_mnist, write_idx


@pytest.fixture(scope="module")
def digits() -> DeviceData:
    return load_dataset("digits", device="cpu")


def pixels(d: DeviceData, x: torch.Tensor, scale: float) -> np.ndarray:
    """Undo the normalisation and return integer pixel values (scale 16 for digits, 255 otherwise)."""
    mean = torch.tensor(d.mean)[None, :, None, None]
    std = torch.tensor(d.std)[None, :, None, None]
    return torch.round((x.cpu() * std + mean) * scale).to(torch.int64).numpy()


def sorted_rows(a: np.ndarray) -> list[bytes]:
    return sorted(np.ascontiguousarray(r).tobytes() for r in a.reshape(len(a), -1))


# ----------------------------------------------------------------------------- digits


def test_available_datasets():
    assert available_datasets() == ("digits", "fashion-mnist", "cifar10")


def test_digits_shapes_dtypes_devices(digits):
    d = digits
    assert d.name == "digits" and d.num_classes == 10
    assert (d.crop_padding, d.flip) == (1, False)
    assert d.device == torch.device("cpu") and d.in_channels == 1 and d.image_size == 8
    for x, y in [(d.train_x, d.train_y), (d.val_x, d.val_y), (d.test_x, d.test_y)]:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 8, 8) and x.shape[0] == y.shape[0] > 0
        assert x.device == y.device == d.device
    assert len(d.train_y) + len(d.val_y) + len(d.test_y) == 1797
    assert len(d.test_y) == 359  # fixed 20% hold-out
    assert len(d.val_y) == 144  # 10% of the remaining 1438
    assert set(d.val_y.tolist()) == set(range(10))  # stratified


def test_digits_splits_partition_the_data(digits):
    from sklearn.datasets import load_digits

    d = digits
    everything = np.concatenate([pixels(d, x, 16) for x in (d.train_x, d.val_x, d.test_x)])
    labels = torch.cat([d.train_y, d.val_y, d.test_y]).numpy()
    ref = load_digits()
    ref_x = ref.images.astype(np.int64)[:, None]
    # Same multiset of (label, image) rows: every image is used exactly once across the splits.
    ours = np.concatenate([labels[:, None], everything.reshape(len(labels), -1)], axis=1)
    theirs = np.concatenate([ref.target[:, None].astype(np.int64), ref_x.reshape(len(ref_x), -1)], axis=1)
    assert sorted_rows(ours) == sorted_rows(theirs)


def test_digits_normalised_with_train_statistics(digits):
    d = digits
    assert abs(d.train_x.mean().item()) < 1e-5
    assert abs(d.train_x.std(unbiased=False).item() - 1.0) < 1e-4
    raw_train = pixels(d, d.train_x, 16) / 16.0
    assert d.mean[0] == pytest.approx(raw_train.mean(), abs=1e-5)
    # val/test use the same (train) statistics, so their means are close to but not exactly 0.
    assert abs(d.test_x.mean().item()) < 0.2 and d.test_x.mean().item() != 0.0


def test_digits_seeded_reproducibility(digits):
    same = load_dataset("digits", device="cpu", seed=0)
    for f in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(same, f), getattr(digits, f)), f
    other = load_dataset("digits", device="cpu", seed=1)
    assert not torch.equal(other.val_y, digits.val_y) or not torch.equal(other.val_x, digits.val_x)
    # The test split is fixed regardless of seed (same images; normalisation may differ slightly).
    assert torch.equal(other.test_y, digits.test_y)
    assert np.array_equal(pixels(other, other.test_x, 16), pixels(digits, digits.test_x, 16))


def test_digits_max_train_subsamples_only_train(digits):
    small = load_dataset("digits", device="cpu", max_train=100)
    assert len(small.train_y) == 100
    assert torch.equal(small.val_y, digits.val_y) and torch.equal(small.test_y, digits.test_y)
    assert set(small.train_y.tolist()) == set(range(10))
    assert abs(small.train_x.mean().item()) < 1e-5  # stats of the subsampled train part
    assert len(load_dataset("digits", device="cpu", max_train=10**6).train_y) == len(digits.train_y)


def test_image_size_shrinks_every_split_by_area_averaging(tmp_path):
    ref = write_fashion_mnist(tmp_path, n_train=60, n_test=20)
    full = load_dataset("fashion-mnist", root=tmp_path, device="cpu")
    small = load_dataset("fashion-mnist", root=tmp_path, device="cpu", image_size=14)
    assert small.image_size == 14 and small.crop_padding == 1 and full.crop_padding == 2
    for split in ("train", "val", "test"):
        assert getattr(small, f"{split}_x").shape[2:] == (14, 14)
        assert torch.equal(getattr(small, f"{split}_y"), getattr(full, f"{split}_y"))  # same images, same order
    # 2x2 means of the raw test pixels, normalised with the shrunk train statistics
    raw = torch.from_numpy(ref["test_images"]).float().div(255).reshape(20, 1, 14, 2, 14, 2).mean((3, 5))
    expect = (raw - small.mean[0]) / small.std[0]
    assert torch.allclose(small.test_x, expect, atol=1e-5)
    assert abs(small.train_x.mean().item()) < 1e-5
    assert load_dataset("fashion-mnist", root=tmp_path, device="cpu", image_size=28).crop_padding == 2


@pytest.mark.parametrize("size, message", [(9, r"larger than the digits images \(8x8\)"), (0, "positive integer")])
def test_bad_image_size(size, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("digits", device="cpu", image_size=size)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_val_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", device="cpu", val_fraction=fraction)


def test_unknown_name_lists_available():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet")
    for name in available_datasets():
        assert name in str(info.value)


def test_to_keeps_metadata(digits):
    moved = digits.to("cpu")
    assert isinstance(moved, DeviceData) and moved.device == torch.device("cpu")
    assert (moved.name, moved.crop_padding, moved.flip, moved.mean) == (
        digits.name, digits.crop_padding, digits.flip, digits.mean)


def test_make_generator_default_device():
    g = make_generator(seed=3)
    assert g.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert g.initial_seed() == 3


# ----------------------------------------------------------------------------- augmentation


def test_augment_shape_changes_and_reproducible(digits):
    x = digits.train_x[:256]
    out = digits.augment(x, make_generator("cpu", 0))
    assert out.shape == x.shape and out.dtype == x.dtype
    changed = (out != x).flatten(1).any(1)
    assert 0 < changed.sum() < len(x)  # offset (0, 0) is one of 9, so some stay identical
    assert torch.equal(out, digits.augment(x, make_generator("cpu", 0)))
    assert not torch.equal(out, digits.augment(x, make_generator("cpu", 1)))


@pytest.mark.parametrize("padding", [1, 3])
def test_augment_crop_is_shifted_copy(digits, padding):
    d = dataclasses.replace(digits, crop_padding=padding)
    x = d.train_x[:128]
    out = d.augment(x, make_generator("cpu", 0))
    h, w = x.shape[2:]
    padded = F.pad(x, (padding,) * 4)
    shifts = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]
    used = set()
    for i in range(len(x)):
        matches = [s for s in shifts if torch.equal(out[i], padded[i, :, s[0]:s[0] + h, s[1]:s[1] + w])]
        assert matches, f"image {i} is not a shifted crop of its padded original"
        used.update(matches)
    assert len(used) > len(shifts) // 2  # offsets are really random, not one fixed shift


def test_augment_flip_rate(digits):
    x = digits.train_x  # 1294 images
    no_crop = dataclasses.replace(digits, crop_padding=0, flip=True)
    out = no_crop.augment(x, make_generator("cpu", 0))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    assert bool((same | flipped).all())
    rate = (flipped & ~same).float().mean().item()
    assert 0.4 < rate < 0.6, rate
    # flip=False: never flipped (digits' default)
    assert torch.equal(dataclasses.replace(digits, crop_padding=0).augment(x, make_generator("cpu", 0)), x)


def test_augment_flip_and_crop_together(digits):
    d = dataclasses.replace(digits, crop_padding=1, flip=True)
    x = d.train_x[:64]
    out = d.augment(x, make_generator("cpu", 0))
    padded = F.pad(x, (1, 1, 1, 1))
    for i in range(len(x)):
        crops = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)


# ----------------------------------------------------------------------------- batches


def test_train_batches_cover_epoch_once(digits):
    g = make_generator("cpu", 0)
    batches = list(digits.train_batches(100, g, augment=False))
    n = len(digits.train_y)
    assert [len(y) for _, y in batches] == [100] * (n // 100) + [n % 100]  # last partial batch kept
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    rows = torch.cat([ys[:, None].float(), xs.flatten(1)], 1).numpy()
    ref = torch.cat([digits.train_y[:, None].float(), digits.train_x.flatten(1)], 1).numpy()
    assert sorted_rows(rows) == sorted_rows(ref)
    assert not torch.equal(ys, digits.train_y)  # shuffled
    # next epoch from the same generator: a different order
    ys2 = torch.cat([y for _, y in digits.train_batches(100, g, augment=False)])
    assert not torch.equal(ys, ys2)


def test_train_batches_augmented(digits):
    batches = list(digits.train_batches(512, make_generator("cpu", 0)))
    assert sum(len(y) for _, y in batches) == len(digits.train_y)
    assert all(x.shape[1:] == (1, 8, 8) and x.shape[0] == y.shape[0] for x, y in batches)


def test_train_batches_rejects_bad_batch_size(digits):
    with pytest.raises(ValueError):
        next(digits.train_batches(0, make_generator("cpu", 0)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_roundtrip(digits):
    d = digits.to("cuda")
    g = make_generator(d.device, 0)
    x, y = next(d.train_batches(64, g))
    assert x.is_cuda and y.is_cuda and x.shape == (64, 1, 8, 8)
    with pytest.raises(ValueError, match="make_generator"):
        next(d.train_batches(64, make_generator("cpu", 0)))


# ----------------------------------------------------------------------------- fashion-mnist


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", [".", "FashionMNIST/raw", "fashion-mnist"])
def test_fashion_mnist_fixture(tmp_path, gz, layout):
    ref = write_fashion_mnist(tmp_path / layout, n_train=60, n_test=20, gz=gz)
    d = load_dataset("fashion-mnist", root=tmp_path, device="cpu", val_fraction=0.1)
    assert (d.name, d.in_channels, d.image_size, d.crop_padding, d.flip) == ("fashion-mnist", 1, 28, 2, True)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (54, 6, 20)
    # test split untouched and in order; train+val is exactly the official training set
    assert np.array_equal(pixels(d, d.test_x, 255)[:, 0], ref["test_images"])
    assert np.array_equal(d.test_y.numpy(), ref["test_labels"])
    train_val = np.concatenate([pixels(d, d.train_x, 255), pixels(d, d.val_x, 255)])[:, 0]
    assert sorted_rows(train_val) == sorted_rows(ref["train_images"].astype(np.int64))
    assert sorted(torch.cat([d.train_y, d.val_y]).tolist()) == sorted(ref["train_labels"].tolist())
    assert abs(d.train_x.mean().item()) < 1e-5


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (False, True):
        assert np.array_equal(read_idx(write_idx(tmp_path / f"a{gz}", a, gz=gz)), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 8)
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "bad")


def test_fashion_mnist_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root=tmp_path, device="cpu")
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path.resolve()) in msg and str((tmp_path / "FashionMNIST" / "raw").resolve()) in msg


def test_fashion_mnist_missing_default_search(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIRS", (tmp_path / "system",))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", device="cpu")
    msg = str(info.value)
    assert str(tmp_path / "system") in msg
    assert str((tmp_path / "data" / "FashionMNIST" / "raw").resolve()) in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_fashion_mnist_default_search_uses_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIRS", (tmp_path / "system",))
    monkeypatch.chdir(tmp_path)
    write_fashion_mnist(tmp_path / "data" / "FashionMNIST" / "raw", n_train=30, n_test=10, gz=True)
    d = load_dataset("fashion-mnist", device="cpu")
    assert len(d.train_y) + len(d.val_y) == 30 and len(d.test_y) == 10


_DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (_DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_debian_fashion_mnist():
    d = load_dataset("fashion-mnist", device="cpu")
    assert len(d.train_y) + len(d.val_y) == 60000 and len(d.val_y) == 6000
    assert len(d.test_y) == 10000 and d.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.test_y).tolist() == [1000] * 10
    assert torch.bincount(d.val_y).tolist() == [600] * 10  # stratified


# ----------------------------------------------------------------------------- cifar10


@pytest.mark.parametrize("point_at", ["parent", "batches-folder"])
def test_cifar10_fixture(tmp_path, point_at):
    ref = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=2, n_test=4)
    root = tmp_path if point_at == "parent" else tmp_path / "cifar-10-batches-py"
    d = load_dataset("cifar10", root=root, device="cpu", val_fraction=0.2)
    assert (d.name, d.in_channels, d.image_size, d.crop_padding, d.flip) == ("cifar10", 3, 32, 4, True)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (8, 2, 4)
    assert len(d.mean) == len(d.std) == 3
    # channel-planar layout: pixel (c, i, j) is data[c * 1024 + i * 32 + j]
    assert np.array_equal(pixels(d, d.test_x, 255), ref["test_x"])
    assert np.array_equal(d.test_y.numpy(), ref["test_y"])
    train_val = np.concatenate([pixels(d, d.train_x, 255), pixels(d, d.val_x, 255)])
    assert sorted_rows(train_val) == sorted_rows(ref["train_x"].astype(np.int64))
    assert torch.allclose(d.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    out = d.augment(d.train_x, make_generator("cpu", 0))
    assert out.shape == d.train_x.shape


def test_cifar10_missing(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path / "nowhere", device="cpu")
    msg = str(info.value)
    assert "cifar-10-python.tar.gz" in msg and str((tmp_path / "nowhere").resolve()) in msg
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz") as info:
        load_dataset("cifar10", device="cpu")
    assert str((tmp_path / "data").resolve()) in str(info.value)


# ----------------------------------------------------------------------------- uint8 storage


FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


@pytest.fixture(scope="module")
def cifar_pair(tmp_path_factory):
    """A CIFAR-10 fixture loaded twice: float32 storage and uint8 storage of every split."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root / "cifar-10-batches-py", per_batch=40, n_test=30)
    return (load_dataset("cifar10", root=root, device="cpu"),
            load_dataset("cifar10", root=root, device="cpu", uint8=True), root)


def test_uint8_storage_dtypes_bytes_and_metadata(cifar_pair):
    full, small, root = cifar_pair
    assert small.uint8_splits == ("train", "val", "test") and full.uint8_splits == ()
    for f in FIELDS:
        a, b = getattr(full, f), getattr(small, f)
        assert a.shape == b.shape
        assert b.dtype == (torch.uint8 if f.endswith("_x") else torch.int64)
    assert torch.equal(full.train_y, small.train_y) and torch.equal(full.val_y, small.val_y)
    assert (small.mean, small.std, small.pixel_scale) == (full.mean, full.std, 255.0)
    assert (small.in_channels, small.image_size, small.crop_padding) == (3, 32, 4)
    assert small.storage_bytes() == {s: len(getattr(full, f"{s}_y")) * 3 * 32 * 32 for s in ("train", "val", "test")}
    assert {s: 4 * b for s, b in small.storage_bytes().items()} == full.storage_bytes()
    # the stored pixels are the file's pixels
    assert torch.equal(small.test_x.to(torch.int64), torch.from_numpy(pixels(full, full.test_x, 255)))
    only_train = load_dataset("cifar10", root=root, device="cpu", uint8=("train",))
    assert only_train.uint8_splits == ("train",) and only_train.val_x.dtype == torch.float32
    assert torch.equal(only_train.val_x, full.val_x) and torch.equal(only_train.test_x, full.test_x)


def test_uint8_train_batches_bit_identical_to_float_storage(cifar_pair):
    full, small, _ = cifar_pair  # crop padding 4 and flips: the padding is the mean pixel in both
    for augment in (True, False):
        a = list(full.train_batches(13, make_generator("cpu", 5), augment=augment))
        b = list(small.train_batches(13, make_generator("cpu", 5), augment=augment))
        assert len(a) == len(b) == -(-len(full.train_y) // 13)
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xb.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)


def test_uint8_digits_scale_16_bit_identical(digits):
    small = load_dataset("digits", device="cpu", uint8=True)
    assert small.pixel_scale == 16.0 and int(small.train_x.max()) == 16
    assert torch.equal(small.images("train"), digits.train_x)
    assert torch.equal(small.images("test"), digits.test_x)
    xa = torch.cat([x for x, _ in digits.train_batches(100, make_generator("cpu", 1))])
    xb = torch.cat([x for x, _ in small.train_batches(100, make_generator("cpu", 1))])
    assert torch.equal(xa, xb)


def test_eval_batches_and_images(cifar_pair):
    full, small, _ = cifar_pair
    for d in (full, small):
        batches = list(d.eval_batches("val", 3, limit=7))
        assert [len(y) for _, y in batches] == [3, 3, 1]
        assert torch.equal(torch.cat([x for x, _ in batches]), full.val_x[:7])
        assert torch.equal(torch.cat([y for _, y in batches]), full.val_y[:7])
        assert torch.equal(d.images("test", limit=5), full.test_x[:5])
        assert len(list(d.eval_batches("test", 1000))) == 1
    assert full.images("val") is not None and full.normalise(full.val_x) is full.val_x  # float: as it is
    with pytest.raises(ValueError, match="unknown split"):
        small.images("validation")
    with pytest.raises(ValueError, match="batch_size"):
        next(small.eval_batches("val", 0))
    with pytest.raises(TypeError, match="uint8 pixels"):
        small.normalise(small.val_y)


def test_uint8_survives_to_and_replace(cifar_pair):
    full, small, _ = cifar_pair
    moved = small.to("cpu")
    assert moved.uint8_splits == small.uint8_splits and moved._stats == {}  # rebuilt from mean/std
    assert torch.equal(moved.images("val"), full.val_x)  # the float32 values survive the tuple round trip
    copy = dataclasses.replace(small, flip=False)
    assert torch.equal(copy.images("train"), full.train_x)


def test_uint8_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="split names"):
        load_dataset("digits", device="cpu", uint8=("training",))
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", device="cpu", uint8=True, image_size=4)
    assert load_dataset("digits", device="cpu", uint8=True, image_size=8).uint8_splits == ("train", "val", "test")
    assert load_dataset("digits", device="cpu", uint8="val").uint8_splits == ("val",)
    x = np.zeros((4, 1, 8, 8), np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="uint8 array"):
        DeviceData.from_pixels("x", x, y, x, y, x, y, num_classes=2, crop_padding=1, flip=False, device="cpu")


def test_from_pixels_normalises_with_train_statistics():
    rng = np.random.RandomState(0)
    tx = rng.randint(0, 256, (20, 3, 6, 6)).astype(np.uint8)
    vx = rng.randint(0, 256, (5, 3, 6, 6)).astype(np.uint8)
    ty, vy = rng.randint(0, 4, 20), rng.randint(0, 4, 5)
    d = DeviceData.from_pixels("synthetic", tx, ty, vx, vy, vx, vy, num_classes=4, crop_padding=1,
                               flip=True, device="cpu", uint8=("train",))
    ref = torch.from_numpy(tx).double() / 255
    mean, std = ref.mean((0, 2, 3)), ref.std((0, 2, 3), unbiased=False)
    assert np.allclose(d.mean, mean.numpy(), atol=1e-6) and np.allclose(d.std, std.numpy(), atol=1e-6)
    expect = (torch.from_numpy(vx).double() / 255 - mean[None, :, None, None]) / std[None, :, None, None]
    assert torch.allclose(d.val_x.double(), expect, atol=1e-5)
    assert d.train_x.dtype == torch.uint8 and d.images("train").mean().abs() < 1e-5


def test_objective_trains_uint8_train_split_identically(digits):
    """SupernetObjective as it stands reads ``val_x`` as float: uint8=("train",) must give the very
    same training and accuracy as float32 storage."""
    from optuna_epnas import MacroSpace, SupernetObjective, SupernetTrainer

    space = MacroSpace(num_layers=2)
    small = load_dataset("digits", device="cpu", uint8=("train",), max_train=300)
    full = load_dataset("digits", device="cpu", max_train=300)
    arch = space.child(space.child(space.root(), 3), 7)
    results = []
    for d in (full, small):
        obj = SupernetObjective(SupernetTrainer(space, d, epochs=1, channels=4), checkpoint=False)
        obj.trainer.train(arch, step=0)
        results.append((obj.trainer.evaluate(arch), obj.trainer.net.state_dict()))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(results[0][1][k], results[1][1][k]) for k in results[0][1])

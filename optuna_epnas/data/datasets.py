"""Data-set readers: each supported data set's files as uint8 pixel arrays, and the seeded splits.

:func:`optuna_epnas.data.device.load_dataset` puts what these read on a device (:class:`~optuna_epnas.data.device.DeviceData`).

Supported data sets (see :func:`available_datasets`):

* ``digits`` -- scikit-learn's bundled 8x8 digits (1797 images, no download).
  It has no official test split, so a fixed 20% (always drawn with seed 0,
  independent of ``seed``) is held out as test.
* ``fashion-mnist`` -- IDX files (optionally gzipped).  Debian/Ubuntu ship them
  in the ``dataset-fashion-mnist`` package under /usr/share/datasets/fashion-mnist;
  torchvision's ``<root>/FashionMNIST/raw`` layout also works.
* ``cifar10`` -- the python pickle version (``cifar-10-batches-py``) as
  torchvision extracts it.  Read directly, without torchvision's md5 checks.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_DATASETS = ("digits", "fashion-mnist", "cifar10")

# Where the Debian package ``dataset-fashion-mnist`` installs the four .gz files (flat).
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CIFAR_DIRNAME = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_DEFAULT_ROOT = "./data"
# The digits test split must not move when the search seed changes.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files were not found; the message says where we looked and how to get them."""


def available_datasets() -> tuple[str, ...]:
    return _DATASETS


@dataclass(frozen=True)
class Pixels:
    """A data set's official train and test splits as N x C x H x W uint8 pixels (x in [0, 1] = pixel /
    ``pixel_scale``) and integer labels, with the augmentation that suits it."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    crop_padding: int
    flip: bool
    pixel_scale: float


def read_dataset(key: str, root: str | os.PathLike | None = None) -> Pixels:
    """The data set ``key`` (one of :func:`available_datasets`), from ``root`` or where it usually is."""
    if key == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.images.astype(np.uint8)[:, None]  # 0..16 integers, scaled by pixel_scale=16
        y = digits.target.astype(np.int64)
        test_idx, rest_idx = stratified_take(
            y, held_count(len(y), _DIGITS_TEST_FRACTION), np.random.RandomState(_DIGITS_TEST_SEED)
        )
        return Pixels(x[rest_idx], y[rest_idx], x[test_idx], y[test_idx], 10, 1, False, 16.0)
    if key == "fashion-mnist":
        return Pixels(*_load_fashion_mnist(root), 10, 2, True, 255.0)
    return Pixels(*_load_cifar10(root), 10, 4, True, 255.0)


# --------------------------------------------------------------------------- splits


def stratified_take(labels: np.ndarray, k: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (taken, rest) with ``len(taken) == k``, each class represented in proportion.

    Every sample gets the key (rank within its class + 0.5) / class size, ranks drawn at
    random; taking the k smallest keys gives each class floor/ceil of its share, with
    exactly k in total (which a per-class rounding would not guarantee on tiny sets).
    """
    n = len(labels)
    perm = rng.permutation(n)
    _, inv, counts = np.unique(labels[perm], return_inverse=True, return_counts=True)
    by_class = np.argsort(inv, kind="stable")
    rank = np.empty(n)
    rank[by_class] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    order = perm[np.argsort((rank + 0.5) / counts[inv], kind="stable")]
    return np.sort(order[:k]), np.sort(order[k:])


def held_count(n: int, fraction: float) -> int:
    # At least one sample on each side, so neither split is ever empty.
    return min(n - 1, max(1, int(np.floor(fraction * n + 0.5))))


def train_val_indices(labels: np.ndarray, val_fraction: float, max_train: int | None,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into the official training set: a stratified ``val_fraction`` held out with
    ``numpy.random.RandomState(seed)``, then (same RNG) what is left subsampled to ``max_train``."""
    rng = np.random.RandomState(seed)
    val_idx, tr_idx = stratified_take(labels, held_count(len(labels), val_fraction), rng)
    if max_train is not None and max_train < len(tr_idx):
        keep, _ = stratified_take(labels[tr_idx], max_train, rng)
        tr_idx = tr_idx[keep]
    return tr_idx, val_idx


# --------------------------------------------------------------------------- readers

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped if the name ends in .gz."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes) but has {len(raw) - offset}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_fashion_mnist(root: str | os.PathLike | None) -> tuple[np.ndarray, ...]:
    if root is None:
        default = Path(_DEFAULT_ROOT)
        dirs = [*FASHION_MNIST_SYSTEM_DIRS, default / "FashionMNIST" / "raw", default / "fashion-mnist"]
    else:
        root = Path(root)
        dirs = [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    for d in dirs:
        found = {key: _find_idx(d, stem) for key, stem in _FASHION_FILES.items()}
        if all(found.values()):
            arrays = {key: read_idx(p) for key, p in found.items()}
            return (
                arrays["train_images"][:, None],
                arrays["train_labels"],
                arrays["test_images"][:, None],
                arrays["test_labels"],
            )
    looked = "\n".join(f"  {d.resolve()}" for d in dirs)
    raise DatasetNotFoundError(
        "fashion-mnist not found: need train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz) in one of:\n"
        f"{looked}\n"
        "Get it with `sudo apt-get install dataset-fashion-mnist` (installs into "
        f"{FASHION_MNIST_SYSTEM_DIRS[0]}), or put the four files from "
        "https://github.com/zalandoresearch/fashion-mnist into ROOT or ROOT/FashionMNIST/raw "
        "and pass root=ROOT."
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # The official files are pickles written by Python 2 (bytes keys, hence encoding="bytes").
    # Only load files you trust: unpickling can run code.
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path}: not a CIFAR-10 batch (no data/labels entries)")
    data = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)  # stored as R, G, B planes
    return data, np.asarray(labels, dtype=np.int64)


def _load_cifar10(root: str | os.PathLike | None) -> tuple[np.ndarray, ...]:
    root = Path(_DEFAULT_ROOT if root is None else root)
    dirs = [root / _CIFAR_DIRNAME, root]
    for d in dirs:
        if all((d / name).is_file() for name in _CIFAR_FILES):
            train = [_read_cifar_batch(d / name) for name in _CIFAR_FILES[:-1]]
            test_x, test_y = _read_cifar_batch(d / "test_batch")
            train_x = np.concatenate([x for x, _ in train])
            train_y = np.concatenate([y for _, y in train])
            return train_x, train_y, test_x, test_y
    looked = "\n".join(f"  {d.resolve()}" for d in dirs)
    raise DatasetNotFoundError(
        f"cifar10 not found: need {', '.join(_CIFAR_FILES)} in one of:\n{looked}\n"
        f"Download cifar-10-python.tar.gz ({_CIFAR_URL}) on a machine with internet and extract it "
        f"under {root.resolve()} (`tar -xzf cifar-10-python.tar.gz -C {root.resolve()}`, which creates "
        f"{_CIFAR_DIRNAME}/), or pass root= pointing at the folder that holds it."
    )

"""Data sets as device-resident tensors, with on-device batch augmentation.

The data sets used by the search are small enough to live entirely in (GPU)
memory, so instead of a ``DataLoader`` with worker processes every epoch is a
random permutation of indices into tensors that already sit on the device, and
augmentation (random crop + horizontal flip) is done for the whole batch at once
with tensor indexing.  This removes the host->device copy and the Python
per-image work that would otherwise dominate short NAS training runs.

Randomness: every random draw takes an explicit ``torch.Generator``.  CUDA
random functions only accept a generator on the same device as the tensors they
produce, so the generator passed to :meth:`DeviceData.augment` and
:meth:`DeviceData.train_batches` must live on the data's device; use
``make_generator(data.device, seed)``.

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

import dataclasses
import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DatasetNotFoundError",
    "DeviceData",
    "available_datasets",
    "default_device",
    "load_dataset",
    "make_generator",
    "read_idx",
]

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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_generator(device: str | torch.device | None = None, seed: int = 0) -> torch.Generator:
    """A seeded generator on ``device`` (default: :func:`default_device`), usable with DeviceData."""
    device = default_device() if device is None or device == "auto" else torch.device(device)
    return torch.Generator(device=device).manual_seed(int(seed))


@dataclass
class DeviceData:
    """Train/val/test tensors on one device, normalised with the train split's per-channel stats."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    crop_padding: int
    flip: bool
    # Per-channel statistics used for normalisation (x_norm = (x - mean) / std, x in [0, 1];
    # digits: x = pixel / 16).  Kept so images can be de-normalised for inspection.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[2])

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop (zero padding ``crop_padding``) and, if ``flip``, random horizontal flip.

        One offset and one flip decision per image, applied to the whole batch with a
        single gather; ``generator`` must be on ``x``'s device.
        """
        if x.dim() != 4:
            raise ValueError(f"augment expects an N x C x H x W batch, got shape {tuple(x.shape)}")
        _check_generator(generator, x.device)
        n, c, h, w = x.shape
        p = self.crop_padding
        if n == 0 or (p == 0 and not self.flip):
            return x
        dev = x.device
        rows = torch.arange(h, device=dev).expand(n, h)
        cols = torch.arange(w, device=dev).expand(n, w)
        if p > 0:
            x = F.pad(x, (p, p, p, p))
            # Offsets in [0, 2p] into the padded image == shifts in [-p, p].
            rows = rows + torch.randint(0, 2 * p + 1, (n, 1), device=dev, generator=generator)
            cols = cols + torch.randint(0, 2 * p + 1, (n, 1), device=dev, generator=generator)
        if self.flip:
            # Reversing the column index of the crop is the same as flipping the cropped image.
            flip = torch.rand((n, 1), device=dev, generator=generator) < 0.5
            cols = torch.where(flip, cols.flip(1), cols)
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chan = torch.arange(c, device=dev)[None, :, None, None]
        return x[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]

    def train_batches(
        self, batch_size: int, generator: torch.Generator, augment: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch over the training split in random order; the last partial batch is kept."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_generator(generator, self.device)
        n = self.train_x.shape[0]
        perm = torch.randperm(n, generator=generator, device=self.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            x = self.train_x[idx]
            if augment:
                x = self.augment(x, generator)
            yield x, self.train_y[idx]

    def to(self, device: str | torch.device) -> "DeviceData":
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the data is on {device}; "
            f"create it with make_generator({str(device)!r}, seed)"
        )


# --------------------------------------------------------------------------- splits


def _stratified_take(labels: np.ndarray, k: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
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


def _held_count(n: int, fraction: float) -> int:
    # At least one sample on each side, so neither split is ever empty.
    return min(n - 1, max(1, int(np.floor(fraction * n + 0.5))))


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


# --------------------------------------------------------------------------- loading


def load_dataset(
    name: str = "digits",
    root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_train: int | None = None,
    image_size: int | None = None,
) -> DeviceData:
    """Load ``name`` onto ``device`` (default or ``"auto"``: cuda if available, else cpu).

    Validation is a stratified ``val_fraction`` of the official training set, drawn with
    ``numpy.random.RandomState(seed)``; ``max_train`` then (stratified, same RNG) subsamples
    what is left for training.  The test split is never touched by ``seed``/``max_train``.
    ``image_size`` shrinks every split to that many pixels a side (area averaging): a proxy
    task a CPU can search on; it never enlarges.
    """
    key = str(name).lower().replace("_", "-")
    if key not in _DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(_DATASETS)}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if max_train is not None and max_train < 1:
        raise ValueError(f"max_train must be a positive integer or None, got {max_train}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be a positive integer or None, got {image_size}")
    device = default_device() if device is None or device == "auto" else torch.device(device)

    if key == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[:, None]  # 0..16 -> [0, 1]
        y = digits.target.astype(np.int64)
        test_idx, rest_idx = _stratified_take(
            y, _held_count(len(y), _DIGITS_TEST_FRACTION), np.random.RandomState(_DIGITS_TEST_SEED)
        )
        train_x, train_y, test_x, test_y = x[rest_idx], y[rest_idx], x[test_idx], y[test_idx]
        num_classes, crop_padding, flip = 10, 1, False
    elif key == "fashion-mnist":
        train_x, train_y, test_x, test_y = _load_fashion_mnist(root)
        num_classes, crop_padding, flip = 10, 2, True
    else:
        train_x, train_y, test_x, test_y = _load_cifar10(root)
        num_classes, crop_padding, flip = 10, 4, True

    native = int(train_x.shape[-1])
    if image_size is not None and image_size > native:
        raise ValueError(f"image_size {image_size} is larger than the {key} images ({native}x{native}); "
                         f"give a size of at most {native} (images are only ever shrunk)")
    size = native if image_size is None else int(image_size)
    # The crop shift is a fraction of the image: scale it with the image, at least one pixel.
    crop_padding = max(1, round(crop_padding * size / native))

    rng = np.random.RandomState(seed)
    val_idx, tr_idx = _stratified_take(train_y, _held_count(len(train_y), val_fraction), rng)
    if max_train is not None and max_train < len(tr_idx):
        keep, _ = _stratified_take(train_y[tr_idx], max_train, rng)
        tr_idx = tr_idx[keep]

    def put(a: np.ndarray) -> torch.Tensor:
        # Copy uint8 to the device first (4x less traffic than float32), convert there.
        # Always a fresh tensor, so normalising in place below cannot touch the source arrays.
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device)
        t = t.float().div_(255.0) if t.dtype == torch.uint8 else t.to(torch.float32, copy=True)
        return t if size == native else torch.nn.functional.interpolate(t, size=(size, size), mode="area")

    tx, vx, sx = put(train_x[tr_idx]), put(train_x[val_idx]), put(test_x)
    var, mean = torch.var_mean(tx, dim=(0, 2, 3), correction=0)
    std = var.sqrt().clamp_min(1e-6)  # guard against a constant channel
    m, s = mean[None, :, None, None], std[None, :, None, None]
    for t in (tx, vx, sx):
        t.sub_(m).div_(s)  # in place: CIFAR-10 as float32 is ~0.7 GB, avoid a second copy

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)

    return DeviceData(
        name=key,
        train_x=tx,
        train_y=labels(train_y[tr_idx]),
        val_x=vx,
        val_y=labels(train_y[val_idx]),
        test_x=sx,
        test_y=labels(test_y),
        num_classes=num_classes,
        crop_padding=crop_padding,
        flip=flip,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )

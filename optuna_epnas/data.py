"""Data sets as device-resident tensors, with on-device batch augmentation.

The data sets used by the search are small enough to live entirely in (GPU)
memory, so instead of a ``DataLoader`` with worker processes every epoch is a
random permutation of indices into tensors that already sit on the device, and
augmentation (random crop + horizontal flip) is done for the whole batch at once
with tensor indexing.  This removes the host->device copy and the Python
per-image work that would otherwise dominate short NAS training runs.

Storage: by default every split is a normalised float32 tensor (``train_x`` etc. are what a
network takes).  ``load_dataset(..., uint8=...)`` keeps the chosen splits as the 8-bit pixels they
are -- a quarter of the memory (CIFAR-10: 3,072 bytes an image instead of 12,288) -- and normalises
each batch as it is taken: :meth:`DeviceData.train_batches` and :meth:`DeviceData.eval_batches`
yield float32 batches bit-identical to the float32 storage's (the same operations, in the same
order, on the same values).  A split stored as uint8 must then be read through those, or
:meth:`DeviceData.normalise` / :meth:`DeviceData.images`: its ``*_x`` tensor holds raw pixels.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

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
SPLITS = ("train", "val", "test")

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
    """Train/val/test tensors on one device, normalised with the train split's per-channel stats.

    A split whose ``*_x`` is a uint8 tensor holds raw pixels (``load_dataset(..., uint8=...)``):
    x_norm = (pixel / pixel_scale - mean) / std, computed per batch by :meth:`normalise`.
    """

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
    # x in [0, 1] = stored pixel / pixel_scale, for the splits kept as uint8 (digits: 16).
    pixel_scale: float = 255.0
    # mean and std as 1 x C x 1 x 1 float32 tensors, per device: made once, so that normalising a
    # batch copies nothing from the host (a host->device copy would synchronise every batch).
    _stats: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    @property
    def uint8_splits(self) -> tuple[str, ...]:
        """The splits whose images are stored as uint8 pixels (read them normalised via
        :meth:`images`, :meth:`eval_batches` or :meth:`train_batches`)."""
        return tuple(s for s in SPLITS if getattr(self, f"{s}_x").dtype == torch.uint8)

    def storage_bytes(self) -> dict[str, int]:
        """Bytes each split's images take on the device."""
        return {s: getattr(self, f"{s}_x").numel() * getattr(self, f"{s}_x").element_size() for s in SPLITS}

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as the network takes it: uint8 pixels are normalised (a new float32 tensor,
        bit-identical to what float32 storage holds); a floating tensor is returned as it is."""
        if x.dtype == torch.uint8:
            mean, std = self._stats_on(x.device)
            # The very operations load_dataset applies to float32 storage, in the same order.
            return x.float().div_(self.pixel_scale).sub_(mean).div_(std)
        if not x.is_floating_point():
            raise TypeError(f"expected uint8 pixels or normalised floating images, got {x.dtype}")
        return x

    def _stats_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._stats:
            if not self.mean or not self.std:
                raise ValueError("uint8 images need the data set's mean and std to be normalised")
            shape = (1, len(self.mean), 1, 1)
            self._stats[key] = tuple(torch.tensor(v, dtype=torch.float32).reshape(shape).to(device)
                                     for v in (self.mean, self.std))
        return self._stats[key]

    def images(self, split: str = "val", limit: int | None = None) -> torch.Tensor:
        """The first ``limit`` (all: None) normalised images of a split, as one float32 tensor.
        For a uint8 split this makes a float copy of that many images: prefer :meth:`eval_batches`."""
        return self.normalise(self._split_x(split)[:limit])

    def eval_batches(
        self, split: str = "val", batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``limit`` (all: None) images of a split, in order, as normalised batches."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x_all, y_all = self._split_x(split)[:limit], getattr(self, f"{split}_y")[:limit]
        for start in range(0, x_all.shape[0], batch_size):
            yield self.normalise(x_all[start : start + batch_size]), y_all[start : start + batch_size]

    def _split_x(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        return getattr(self, f"{split}_x")

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
        """One epoch over the training split in random order; the last partial batch is kept.

        Batches are normalised float32 whatever the storage (uint8 pixels are converted per batch,
        before augmentation: the crop's zero padding is the mean pixel either way). Nothing here
        waits for the device: the batch bounds are Python ints, the gathers take device indices.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_generator(generator, self.device)
        n = self.train_x.shape[0]
        if self.train_x.dtype == torch.uint8:
            self._stats_on(self.device)  # before the first batch, not inside the loop
        perm = torch.randperm(n, generator=generator, device=self.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            x = self.normalise(torch.index_select(self.train_x, 0, idx))
            if augment:
                x = self.augment(x, generator)
            yield x, torch.index_select(self.train_y, 0, idx)

    @classmethod
    def from_pixels(
        cls,
        name: str,
        train_x: np.ndarray,
        train_y: np.ndarray,
        val_x: np.ndarray,
        val_y: np.ndarray,
        test_x: np.ndarray,
        test_y: np.ndarray,
        num_classes: int,
        crop_padding: int,
        flip: bool,
        device: str | torch.device | None = None,
        pixel_scale: float = 255.0,
        image_size: int | None = None,
        uint8: bool | Iterable[str] = False,
    ) -> "DeviceData":
        """A :class:`DeviceData` from N x C x H x W uint8 pixel arrays (x in [0, 1] = pixel / pixel_scale)
        and integer labels: what :func:`load_dataset` does after reading and splitting a data set.

        Normalised with the train split's per-channel mean and std; ``crop_padding`` is given for the
        native size and scaled with ``image_size`` (at least one pixel); ``uint8`` as in load_dataset.
        """
        device = default_device() if device is None or device == "auto" else torch.device(device)
        compact = _uint8_splits(uint8)
        arrays = {"train": train_x, "val": val_x, "test": test_x}
        for split, a in arrays.items():
            if a.dtype != np.uint8 or a.ndim != 4:
                raise ValueError(f"{split} images must be an N x C x H x W uint8 array, got {a.dtype} {a.shape}")
        native = int(train_x.shape[-1])
        size = native if image_size is None else int(image_size)
        if compact and size != native:
            raise ValueError(f"uint8 storage needs the native image size {native}, got image_size {size}")
        # The crop shift is a fraction of the image: scale it with the image, at least one pixel.
        crop_padding = max(1, round(crop_padding * size / native))

        def pixels(a: np.ndarray) -> torch.Tensor:  # uint8 to the device: 4x less traffic than float32
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        def put(t: torch.Tensor) -> torch.Tensor:
            # Always a fresh tensor, so normalising in place below cannot touch the source arrays.
            t = t.float().div_(pixel_scale)
            return t if size == native else torch.nn.functional.interpolate(t, size=(size, size), mode="area")

        raw = {split: pixels(a) for split, a in arrays.items()}
        tx = put(raw["train"])
        var, mean = torch.var_mean(tx, dim=(0, 2, 3), correction=0)
        std = var.sqrt().clamp_min(1e-6)  # guard against a constant channel
        m, s = mean[None, :, None, None], std[None, :, None, None]
        xs = {}
        for split in SPLITS:
            if split in compact:
                xs[split] = raw[split]
            else:
                # in place: CIFAR-10 as float32 is ~0.7 GB, avoid a second copy
                xs[split] = (tx if split == "train" else put(raw[split])).sub_(m).div_(s)
        del tx, raw

        def labels(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)

        data = cls(
            name=name,
            train_x=xs["train"],
            train_y=labels(train_y),
            val_x=xs["val"],
            val_y=labels(val_y),
            test_x=xs["test"],
            test_y=labels(test_y),
            num_classes=num_classes,
            crop_padding=crop_padding,
            flip=flip,
            mean=tuple(mean.tolist()),
            std=tuple(std.tolist()),
            pixel_scale=float(pixel_scale),
        )
        if compact:  # the statistics normalise() uses: these very float32 values, no host round trip
            data._stats[str(m.device)] = (m.contiguous(), s.contiguous())
        return data

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
    uint8: bool | Iterable[str] = False,
) -> DeviceData:
    """Load ``name`` onto ``device`` (default or ``"auto"``: cuda if available, else cpu).

    Validation is a stratified ``val_fraction`` of the official training set, drawn with
    ``numpy.random.RandomState(seed)``; ``max_train`` then (stratified, same RNG) subsamples
    what is left for training.  The test split is never touched by ``seed``/``max_train``.
    ``image_size`` shrinks every split to that many pixels a side (area averaging): a proxy
    task a CPU can search on; it never enlarges.

    ``uint8``: the splits (True: all three; or names from ``("train", "val", "test")``) kept on
    the device as 8-bit pixels, a quarter of float32's memory, normalised per batch; the batches are
    bit-identical to the default float32 storage's. Code that reads ``val_x``/``test_x`` as network
    input must then go through :meth:`DeviceData.eval_batches` (``SupernetObjective.evaluate`` and
    ``train.evaluate`` still read them directly: with those, keep only ``("train",)`` as uint8).
    Not with ``image_size`` below the native size (area-averaged pixels are not 8-bit).
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
    compact = _uint8_splits(uint8)

    if key == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = digits.images.astype(np.uint8)[:, None]  # 0..16 integers, scaled by pixel_scale=16 below
        y = digits.target.astype(np.int64)
        test_idx, rest_idx = _stratified_take(
            y, _held_count(len(y), _DIGITS_TEST_FRACTION), np.random.RandomState(_DIGITS_TEST_SEED)
        )
        train_x, train_y, test_x, test_y = x[rest_idx], y[rest_idx], x[test_idx], y[test_idx]
        num_classes, crop_padding, flip, scale = 10, 1, False, 16.0
    elif key == "fashion-mnist":
        train_x, train_y, test_x, test_y = _load_fashion_mnist(root)
        num_classes, crop_padding, flip, scale = 10, 2, True, 255.0
    else:
        train_x, train_y, test_x, test_y = _load_cifar10(root)
        num_classes, crop_padding, flip, scale = 10, 4, True, 255.0

    native = int(train_x.shape[-1])
    if image_size is not None and image_size > native:
        raise ValueError(f"image_size {image_size} is larger than the {key} images ({native}x{native}); "
                         f"give a size of at most {native} (images are only ever shrunk)")
    if compact and image_size is not None and image_size < native:
        raise ValueError(f"uint8 storage keeps 8-bit pixels, but image_size {image_size} < {native} averages "
                         "them into fractions: use the float32 storage (uint8=False) with image_size")

    rng = np.random.RandomState(seed)
    val_idx, tr_idx = _stratified_take(train_y, _held_count(len(train_y), val_fraction), rng)
    if max_train is not None and max_train < len(tr_idx):
        keep, _ = _stratified_take(train_y[tr_idx], max_train, rng)
        tr_idx = tr_idx[keep]

    return DeviceData.from_pixels(
        key, train_x[tr_idx], train_y[tr_idx], train_x[val_idx], train_y[val_idx], test_x, test_y,
        num_classes=num_classes, crop_padding=crop_padding, flip=flip, device=device, pixel_scale=scale,
        image_size=image_size, uint8=compact,
    )


def _uint8_splits(uint8: bool | Iterable[str]) -> tuple[str, ...]:
    if isinstance(uint8, bool):
        return SPLITS if uint8 else ()
    if isinstance(uint8, str):
        uint8 = (uint8,)
    chosen = tuple(uint8)
    unknown = [s for s in chosen if s not in SPLITS]
    if unknown:
        raise ValueError(f"uint8 takes True, False or split names from {SPLITS}, got {unknown}")
    return tuple(s for s in SPLITS if s in chosen)

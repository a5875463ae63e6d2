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

The readers of the supported data sets (digits, Fashion-MNIST, CIFAR-10) and their splits are
:mod:`optuna_epnas.data.datasets`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from optuna_epnas._checks import check_positive_int
from optuna_epnas.data.datasets import DatasetNotFoundError, available_datasets, read_dataset, read_idx, train_val_indices

__all__ = [
    "DatasetNotFoundError",
    "DeviceData",
    "available_datasets",
    "default_device",
    "load_dataset",
    "make_generator",
    "read_idx",
]

SPLITS = ("train", "val", "test")


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
    input must then go through :meth:`DeviceData.eval_batches` (``SupernetTrainer.evaluate`` and
    ``train.evaluate`` still read them directly: with those, keep only ``("train",)`` as uint8).
    Not with ``image_size`` below the native size (area-averaged pixels are not 8-bit).
    """
    key = str(name).lower().replace("_", "-")
    if key not in available_datasets():
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(available_datasets())}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    check_positive_int("max_train", max_train, optional=True)
    check_positive_int("image_size", image_size, optional=True)
    compact = _uint8_splits(uint8)
    raw = read_dataset(key, root)
    native = int(raw.train_x.shape[-1])
    if image_size is not None and image_size > native:
        raise ValueError(f"image_size {image_size} is larger than the {key} images ({native}x{native}); "
                         f"give a size of at most {native} (images are only ever shrunk)")
    if compact and image_size is not None and image_size < native:
        raise ValueError(f"uint8 storage keeps 8-bit pixels, but image_size {image_size} < {native} averages "
                         "them into fractions: use the float32 storage (uint8=False) with image_size")
    tr_idx, val_idx = train_val_indices(raw.train_y, val_fraction, max_train, seed)
    return DeviceData.from_pixels(
        key, raw.train_x[tr_idx], raw.train_y[tr_idx], raw.train_x[val_idx], raw.train_y[val_idx], raw.test_x,
        raw.test_y, num_classes=raw.num_classes, crop_padding=raw.crop_padding, flip=raw.flip, device=device,
        pixel_scale=raw.pixel_scale, image_size=image_size, uint8=compact,
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

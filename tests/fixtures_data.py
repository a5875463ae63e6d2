"""Writers of tiny data-set fixtures in the exact on-disk formats that optuna_epnas.data.device reads."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

FASHION_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write a uint8 array as IDX: magic 0x00 0x00 0x08 ndim, big-endian int32 dims, raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    path = Path(path)
    if gz:
        path = path.with_name(path.name + ".gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def write_fashion_mnist(
    directory: Path, n_train: int = 60, n_test: int = 20, gz: bool = False, seed: int = 0
) -> dict[str, np.ndarray]:
    """Four IDX files with random 28x28 images and balanced labels 0..9 in ``directory``."""
    rng = np.random.RandomState(seed)
    arrays = {
        "train_images": rng.randint(0, 256, size=(n_train, 28, 28)).astype(np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.randint(0, 256, size=(n_test, 28, 28)).astype(np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, stem in FASHION_STEMS.items():
        write_idx(Path(directory) / stem, arrays[key], gz=gz)
    return arrays


def write_cifar10(directory: Path, per_batch: int = 2, n_test: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """``directory`` laid out like an extracted cifar-10-python.tar.gz folder (cifar-10-batches-py).

    Like the official Python-2 pickles: dicts with bytes keys, b"data" a uint8 N x 3072 array
    (1024 R, then G, then B values, row-major), b"labels" a list of ints, plus batches.meta.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    train_x, train_y = [], []
    for i in range(1, 6):
        data = rng.randint(0, 256, size=(per_batch, 3072)).astype(np.uint8)
        labels = [int(v) for v in rng.randint(0, 10, size=per_batch)]
        _dump(directory / f"data_batch_{i}", {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"train_{i}_{j}.png".encode() for j in range(per_batch)],
        })
        train_x.append(data)
        train_y.extend(labels)
    test_x = rng.randint(0, 256, size=(n_test, 3072)).astype(np.uint8)
    test_y = [int(v) for v in rng.randint(0, 10, size=n_test)]
    _dump(directory / "test_batch", {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": test_y,
        b"data": test_x,
        b"filenames": [f"test_{j}.png".encode() for j in range(n_test)],
    })
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(directory / "batches.meta", {
        b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072,
    })
    return {
        "train_x": np.concatenate(train_x).reshape(-1, 3, 32, 32),
        "train_y": np.asarray(train_y, dtype=np.int64),
        "test_x": test_x.reshape(-1, 3, 32, 32),
        "test_y": np.asarray(test_y, dtype=np.int64),
    }


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are Python-2 pickles

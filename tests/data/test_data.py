import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from aignet.data import build_data, load_arrays
from aignet.data.cifar import read_cifar10
from aignet.data.mnist import read_idx, read_mnist
from aignet.data.safe_pickle import UnsafePickleError, safe_load
from aignet.data.tensor_loader import Augment, TensorLoader
from aignet.data.transforms import random_crop_flip
from data_factory import write_cifar_binary, write_cifar_python, write_idx_dataset

SHARED_CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar-10-batches-bin"


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch):
    monkeypatch.setenv("AIGNET_CACHE", "off")
    # The generated CIFAR files hold 20 records each instead of the official 10,000.
    monkeypatch.setattr("aignet.data.cifar.CIFAR_BATCH_RECORDS", 20)


def test_cifar_binary_reader(tmp_path):
    folder = write_cifar_binary(tmp_path / "cifar-10-batches-bin")
    arrays = read_cifar10(tmp_path)
    assert arrays.train_images.shape == (100, 3, 32, 32) and arrays.test_images.shape[0] == 20
    assert arrays.classes[0] == "class0"
    raw = (folder / "data_batch_1.bin").read_bytes()
    assert (arrays.train_images[0].reshape(-1) == np.frombuffer(raw[1:3073], np.uint8)).all()
    assert arrays.train_labels[0] == raw[0]


def test_cifar_binary_file_cut_at_a_record_boundary_is_refused(tmp_path):
    folder = write_cifar_binary(tmp_path / "cifar-10-batches-bin")
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:3073 * 19])
    with pytest.raises(ValueError, match="19 records, expected 20"):
        read_cifar10(tmp_path)


def test_cifar_binary_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 found.*data_batch_1.bin"):
        read_cifar10(tmp_path)
    folder = write_cifar_binary(tmp_path / "c")
    (folder / "data_batch_3.bin").write_bytes(b"\x00" * 5000)
    with pytest.raises(ValueError, match="not a whole number of 3073-byte"):
        read_cifar10(folder)


def test_cifar_python_reader_matches_binary(tmp_path):
    write_cifar_python(tmp_path / "cifar-10-batches-py", seed=3)
    write_cifar_binary(tmp_path / "bin" / "cifar-10-batches-bin", seed=3)
    py, binary = read_cifar10(tmp_path), read_cifar10(tmp_path / "bin")
    assert np.array_equal(py.train_images, binary.train_images)
    assert np.array_equal(py.test_labels, binary.test_labels)
    assert py.classes == [f"c{i}" for i in range(10)]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="refusing to load (posix|os).system"):
        safe_load(path)
    ok = tmp_path / "ok"
    ok.write_bytes(pickle.dumps({b"x": np.arange(4), b"y": [1, 2.5, "s", b"b"]}, protocol=2))
    loaded = safe_load(ok)
    assert np.array_equal(loaded[b"x"], np.arange(4)) and loaded[b"y"][2] == "s"
    (tmp_path / "bad").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="corrupt or not a pickle"):
        safe_load(tmp_path / "bad")


def test_idx_reader_and_errors(tmp_path):
    folder = write_idx_dataset(tmp_path / "fm", n_train=30, n_test=10)
    arrays = read_mnist(folder)
    assert arrays.train_images.shape == (30, 1, 28, 28) and arrays.test_labels.shape == (10,)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="corrupt gzip"):
        read_mnist(folder)
    bad = tmp_path / "x.gz"
    bad.write_bytes(gzip.compress((2051).to_bytes(4, "big") + (5).to_bytes(4, "big") * 3 + b"x"))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(bad)
    with pytest.raises(FileNotFoundError, match="MNIST directory not found"):
        read_mnist(tmp_path / "missing")


def test_fashion_mnist_default_dir_message(monkeypatch):
    from aignet.data import mnist

    monkeypatch.setattr(mnist, "FASHION_MNIST_DIR", "/nonexistent/fashion-mnist")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        mnist.read_fashion_mnist()


def test_decoded_arrays_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGNET_CACHE", str(tmp_path / "cache"))
    folder = write_idx_dataset(tmp_path / "m", n_train=20, n_test=10)
    first = load_arrays("mnist", folder)
    assert len(list((tmp_path / "cache").glob("mnist-*.npz"))) == 1
    second = load_arrays("mnist", folder)
    assert np.array_equal(first.train_images, second.train_images)


def test_tensor_loader_is_deterministic_and_resumable():
    images = torch.randint(0, 255, (40, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(40)
    make = lambda: TensorLoader(images, labels, 8, (0.5,) * 3, (0.25,) * 3, train=True,  # noqa: E731
                                augment=Augment(pad=2), seed=5)
    a, b = make(), make()
    a.set_epoch(2), b.set_epoch(2)
    full = list(a)
    tail = list(b.iter_from(3))
    assert len(full) == 5
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(full[3:], tail, strict=True))
    b.set_epoch(3)
    assert not torch.equal(next(iter(b))[1], full[0][1])  # another epoch, another order


def test_rank_slices_concatenate_to_the_global_batch():
    images = torch.randint(0, 255, (48, 1, 6, 6), dtype=torch.uint8)
    labels = torch.arange(48)
    kw = dict(mean=(0.5,), std=(0.5,), train=True, augment=Augment(pad=1), seed=1)
    single = list(TensorLoader(images, labels, 16, **kw))
    ranks = [list(TensorLoader(images, labels, 16, rank=r, world=2, **kw)) for r in range(2)]
    for step, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][step][0], ranks[1][step][0]]), x)
        assert torch.equal(torch.cat([ranks[0][step][1], ranks[1][step][1]]), y)


def test_crop_flip_is_a_translation_or_mirror():
    x = torch.arange(2 * 1 * 5 * 5).view(2, 1, 5, 5)
    assert torch.equal(random_crop_flip(x, 0, False, torch.Generator().manual_seed(0)), x)
    out = random_crop_flip(x, 2, True, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):
        found = any(torch.equal(out[i, 0, 2:3, 2:3], v) for v in x[i, 0].reshape(-1, 1, 1))
        assert found  # every output pixel comes from the input or the zero padding


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(),
                    reason=f"real CIFAR-10 not found at {SHARED_CIFAR} (../shared/data)")
def test_real_cifar10_statistics(monkeypatch):
    monkeypatch.setattr("aignet.data.cifar.CIFAR_BATCH_RECORDS", 10000)  # the official files
    arrays = read_cifar10(SHARED_CIFAR)
    assert arrays.train_images.shape == (50000, 3, 32, 32)
    assert arrays.test_images.shape == (10000, 3, 32, 32)
    assert np.bincount(arrays.train_labels).tolist() == [5000] * 10
    assert np.bincount(arrays.test_labels).tolist() == [1000] * 10
    means = arrays.train_images.reshape(50000, 3, -1).mean(axis=(0, 2)) / 255
    assert np.allclose(means, [0.4914, 0.4822, 0.4465], atol=5e-4)
    assert arrays.classes[0] == "airplane" and arrays.classes[-1] == "truck"


def test_build_data_shapes_and_normalisation(tmp_path):
    folder = write_idx_dataset(tmp_path / "m", n_train=64, n_test=32)
    data = build_data("mnist", folder, 16, val_batch_size=10)
    assert data.info.in_chans == 1 and data.info.input_size == 28 and data.info.num_classes == 10
    assert len(data.train) == 4 and len(data.val) == 4  # 32 / 10 rounded up
    x, y = next(iter(data.val))
    assert x.shape == (10, 1, 28, 28) and x.dtype == torch.float32
    with pytest.raises(ValueError, match="unknown data set 'svhn'"):
        build_data("svhn", folder, 16)


def test_imagefolder_decodes_and_skips_bad_images(tmp_path):
    from PIL import Image

    from aignet.data.imagefolder import ImageFolder, collate_skipping, scan_folder

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (300, 260), (40 * i, 80, 120)).save(d / f"{i}.png")
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"not an image")
    data = build_data("imagefolder", tmp_path, 4, workers=0)
    assert data.info.classes == ["cat", "dog"] and data.info.train_size == 5
    data.train.set_epoch(0)
    seen = sum(len(y) for _, y in data.train)
    assert seen + data.train.skipped == 4  # one batch of 4 (drop_last), broken ones skipped
    x, _ = next(iter(data.val))
    assert x.shape[1:] == (3, 224, 224)
    strict = ImageFolder(*scan_folder(tmp_path / "train"), train=True, strict=True)
    broken = [i for i, (p, _) in enumerate(strict.samples) if p.name == "broken.jpg"][0]
    with pytest.raises(ValueError, match="cannot decode"):
        strict[broken]
    assert collate_skipping([None, None])[2] == 2
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        build_data("imagefolder", tmp_path, 4, workers=0)

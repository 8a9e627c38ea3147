"""MNIST in its standard on-disk format (LeCun's IDX files, as torchvision lays them out),
written small by the test, through the same loader path as CIFAR; LeNet-300-100 on it."""

import gzip
import struct

import numpy as np
import pytest
import torch

from trainers import data, models
from trainers.config import TrainConfig
from trainers.data import DatasetError
from trainers.train import train


def _idx(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    return struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape) + array.tobytes()


def write_mnist(root, *, train=64, test=32, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        payload = _idx(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return arrays


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_mnist_files_load_pixel_for_pixel(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    ds = data.load("mnist", tmp_path)
    assert ds.train_images.shape == (64, 1, 28, 28) and ds.train_images.dtype == torch.uint8
    assert torch.equal(ds.train_images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(ds.test_labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    assert ds.num_classes == 10 and ds.mean == data.MNIST_MEAN and ds.input_shape == (1, 28, 28)


def test_label_noise_and_subsets_work_on_mnist_as_on_cifar(tmp_path):
    write_mnist(tmp_path, train=100)
    ds = data.load("mnist", tmp_path, train_size=80, label_noise=0.25, seed=3)
    assert len(ds.train_labels) == 80 and int(ds.noisy.sum()) == 20
    assert bool((ds.train_labels[ds.noisy] != ds.clean_train_labels[ds.noisy]).all())


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.unlink(), "missing MNIST file"),
    (lambda f: f.write_bytes(f.read_bytes()[:100]), "data bytes"),
    (lambda f: f.write_bytes(b"\x00\x00\x08\x01" + f.read_bytes()[4:]), "not an IDX file"),
])
def test_a_missing_or_corrupt_file_is_one_line_naming_it(tmp_path, damage, message):
    write_mnist(tmp_path)
    victim = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    damage(victim)
    with pytest.raises(DatasetError) as info:
        data.load("mnist", tmp_path)
    text = str(info.value)
    assert "train-images-idx3-ubyte" in text and message in text and "\n" not in text
    assert "genzoo data download mnist" in text


def test_lenet_300_100_has_the_benchmark_parameter_count_and_trains_on_mnist(tmp_path, one_thread):
    model = models.build("lenet_300_100", 10, input_shape=(1, 28, 28))
    assert sum(p.numel() for p in model.parameters()) == 266_610
    write_mnist(tmp_path, train=96, test=32)
    config = TrainConfig(dataset="mnist", model="lenet_300_100", augment=False, epochs=2, batch_size=32, lr=0.1)
    result = train(config, device="cpu", data_root=tmp_path)
    assert [r["epoch"] for r in result.records] == [1, 2] and result.models[0]["model_id"] == "final"


def test_a_conv_model_refuses_mnist_shaped_inputs_in_one_line():
    with pytest.raises(models.ModelError, match="takes 3×32×32 inputs, the dataset's are 1×28×28"):
        models.build("resnet20", 10, input_shape=(1, 28, 28))


@pytest.mark.parametrize("name, count", [("resnet20", 272_474), ("resnet32", 466_906), ("resnet56", 855_770)])
def test_cifar_resnet_depths(name, count):
    assert sum(p.numel() for p in models.build(name, 10).parameters()) == count

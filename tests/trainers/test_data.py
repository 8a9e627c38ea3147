"""Tests of trainers/data/: CIFAR files, the digits dataset, label noise, the device loader."""

from __future__ import annotations

import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from scipy.special import logsumexp

from trainers import data
from trainers.data import DatasetError

PIXELS = 3 * 32 * 32


# --------------------------------------------------------------------------- helpers


def _batch_dict(rng: np.random.RandomState, n: int, label_key: bytes, num_classes: int) -> dict:
    return {
        b"batch_label": b"testing batch",
        b"data": rng.randint(0, 256, size=(n, PIXELS)).astype(np.uint8),
        label_key: [int(v) for v in rng.randint(0, num_classes, size=n)],
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def _dump(path: pathlib.Path, obj: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def write_cifar10(root: pathlib.Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> dict:
    """A tiny CIFAR-10 in the standard python layout; returns what was written, by file."""
    rng = np.random.RandomState(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = _batch_dict(rng, test if name == "test_batch" else per_batch, b"labels", 10)
        _dump(folder / name, batch)
        written[name] = batch
    return written


def write_cifar100(root: pathlib.Path, train: int = 30, test: int = 10, seed: int = 1) -> dict:
    rng = np.random.RandomState(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for name, n in (("train", train), ("test", test)):
        batch = _batch_dict(rng, n, b"fine_labels", 100)
        batch[b"coarse_labels"] = [v // 5 for v in batch[b"fine_labels"]]
        _dump(folder / name, batch)
        written[name] = batch
    return written


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load("digits")


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_loads_shapes_dtypes_and_labels_as_written(tmp_path):
    written = write_cifar10(tmp_path)
    ds = data.load("cifar10", tmp_path)
    assert ds.train_images.shape == (100, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (20, 3, 32, 32) and ds.test_images.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64 and ds.num_classes == 10
    expected = sum((written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert ds.train_labels.tolist() == expected
    assert ds.test_labels.tolist() == written["test_batch"][b"labels"]
    assert ds.mean == data.CIFAR10_MEAN and ds.std == data.CIFAR10_STD
    assert not ds.noisy.any() and torch.equal(ds.clean_train_labels, ds.train_labels)


def test_cifar_pixel_layout_is_rgb_planes_row_major(tmp_path):
    written = write_cifar10(tmp_path)
    # Example 21 is the second image of data_batch_2; green plane, row 5, column 7.
    written["data_batch_2"][b"data"][1, 1024 + 5 * 32 + 7] = 200
    written["data_batch_2"][b"data"][1, 2 * 1024 + 31 * 32 + 0] = 17  # blue, bottom-left
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_2", written["data_batch_2"])
    ds = data.load("cifar10", tmp_path)
    assert int(ds.train_images[21, 1, 5, 7]) == 200
    assert int(ds.train_images[21, 2, 31, 0]) == 17
    rows = written["test_batch"][b"data"]
    for i, c, r, col in [(0, 0, 0, 0), (3, 2, 10, 31), (19, 1, 31, 4), (7, 0, 16, 16)]:
        assert int(ds.test_images[i, c, r, col]) == int(rows[i, c * 1024 + r * 32 + col])


def test_cifar100_loads_fine_labels(tmp_path):
    written = write_cifar100(tmp_path)
    ds = data.load("cifar100", tmp_path)
    assert ds.num_classes == 100
    assert ds.train_images.shape == (30, 3, 32, 32) and ds.test_images.shape == (10, 3, 32, 32)
    assert ds.train_labels.tolist() == written["train"][b"fine_labels"]
    assert ds.test_labels.tolist() == written["test"][b"fine_labels"]
    assert int(ds.train_images[4, 0, 2, 3]) == int(written["train"][b"data"][4, 2 * 32 + 3])
    assert ds.mean == data.CIFAR100_MEAN and ds.std == data.CIFAR100_STD


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_cifar_folder_prints_the_download_command(tmp_path, name):
    with pytest.raises(DatasetError) as info:
        data.load(name, tmp_path)
    message = str(info.value)
    assert f"genzoo data download {name} --root {tmp_path}" in message
    assert "\n" not in message


def test_missing_cifar_file_is_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match="data_batch_4.*genzoo data download cifar10"):
        data.load("cifar10", tmp_path)


def test_corrupt_cifar_file_is_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(DatasetError, match="corrupt file .*data_batch_3"):
        data.load("cifar10", tmp_path)


def test_truncated_cifar_file_is_named(tmp_path):
    write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "test"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetError, match="corrupt file .*cifar-100-python.test.*genzoo data download cifar100"):
        data.load("cifar100", tmp_path)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        (b"data", np.zeros((20, 3000), dtype=np.uint8), "uint8 N×3072"),
        (b"data", np.zeros((20, PIXELS), dtype=np.float32), "uint8 N×3072"),
        (b"labels", [0] * 19, "20 images"),
        (b"labels", [10] * 20, r"outside \[0, 10\)"),
    ],
)
def test_wrong_shape_or_labels_in_cifar_file_is_named(tmp_path, field, value, fragment):
    written = write_cifar10(tmp_path)
    written["test_batch"][field] = value
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", written["test_batch"])
    with pytest.raises(DatasetError, match=f"test_batch.*{fragment}"):
        data.load("cifar10", tmp_path)


def test_genzoo_data_env_var_is_the_default_root(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "elsewhere")
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path / "elsewhere"))
    assert data.data_root() == tmp_path / "elsewhere"
    assert data.load("cifar10").train_images.shape[0] == 100
    assert data.data_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_data_root_falls_back_to_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("GENZOO_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.data_root() == tmp_path / ".cache" / "genzoo"


# --------------------------------------------------------------------------- registry


def test_registry_names_and_unknown_name():
    assert data.names() == ("digits", "digits_large_test", "cifar10", "cifar100", "mnist")
    assert data.get("cifar10") is data.sources.load_cifar10
    assert data.get_spec("cifar100").classes == 100
    with pytest.raises(DatasetError, match="svhn.*allowed: digits, digits_large_test, cifar10, cifar100, mnist"):
        data.get("svhn")
    with pytest.raises(DatasetError, match="allowed"):
        data.load("svhn")


def test_download_rejects_unknown_names_and_digits_needs_no_network(tmp_path):
    with pytest.raises(DatasetError, match="allowed: digits, digits_large_test, cifar10, cifar100"):
        data.download("imagenet", tmp_path)
    path = data.download("digits", tmp_path)
    assert path.is_file() and path.name == "digits.csv.gz"
    assert list(tmp_path.iterdir()) == []


def test_digits_large_test_splits_the_same_images_with_100_test_images_per_class():
    small, large = data.load("digits"), data.load("digits_large_test")
    assert (len(large.train_labels), len(large.test_labels)) == (797, 1000)
    assert torch.bincount(large.test_labels).tolist() == [100] * 10
    every = lambda d: sorted(map(bytes, torch.cat([d.train_images, d.test_images]).flatten(1).numpy()))  # noqa: E731
    assert every(small) == every(large)  # the same 1,797 images, split otherwise
    assert data.download("digits_large_test").name == "digits.csv.gz"


def test_every_public_name_of_the_lazy_package_resolves():
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        data.nope  # noqa: B018


def test_module_import_does_not_import_torchvision():
    code = "import sys, trainers.data; print('torchvision' in sys.modules, 'sklearn' in sys.modules)"
    root = pathlib.Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- digits


def _bilinear_reference(images: np.ndarray, size: int) -> np.ndarray:
    """Half-pixel bilinear upsampling (align_corners=False, edges clamped), in float64."""
    n, h, w = images.shape

    def taps(out_size: int, in_size: int):
        src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, src - low

    r0, r1, wr = taps(size, h)
    c0, c1, wc = taps(size, w)
    rows = images[:, r0, :] * (1 - wr)[None, :, None] + images[:, r1, :] * wr[None, :, None]
    return rows[:, :, c0] * (1 - wc)[None, None, :] + rows[:, :, c1] * wc[None, None, :]


def test_digits_shapes_classes_dtype_and_stratified_split(digits):
    assert digits.train_images.shape == (1437, 3, 32, 32) and digits.test_images.shape == (360, 3, 32, 32)
    assert digits.train_images.dtype == torch.uint8 and digits.train_labels.dtype == torch.int64
    assert digits.num_classes == 10
    assert digits.test_labels.bincount(minlength=10).tolist() == [36] * 10
    assert torch.equal(digits.train_images[:, 0], digits.train_images[:, 2])  # gray in RGB
    assert int(digits.train_images.max()) == 255 and int(digits.train_images.min()) == 0


def test_digits_pixels_match_sklearn_upsampled_independently(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    reference = np.round(_bilinear_reference(bunch.images, 32) * 255 / 16).astype(np.uint8)
    expected = sorted((int(y), x.tobytes()) for x, y in zip(reference, bunch.target))
    got = sorted(
        (int(y), x[0].numpy().tobytes())
        for images, labels in ((digits.train_images, digits.train_labels), (digits.test_images, digits.test_labels))
        for x, y in zip(images, labels)
    )
    assert got == expected


def test_digits_split_is_fixed_whatever_the_trial_seed(digits):
    other = data.load("digits", seed=7, label_noise=0.1)
    assert torch.equal(other.test_images, digits.test_images)
    assert torch.equal(other.test_labels, digits.test_labels)
    assert torch.equal(other.train_images, digits.train_images)
    assert torch.equal(other.clean_train_labels, digits.train_labels)
    assert other.mean == digits.mean and other.std == digits.std


def test_digits_mean_std_are_train_split_statistics(digits):
    values = digits.train_images[:, 0].double().numpy() / 255
    assert digits.mean == pytest.approx((values.mean(),) * 3, abs=1e-12)
    assert digits.std == pytest.approx((values.std(),) * 3, abs=1e-12)


# --------------------------------------------------------------------------- label noise


def test_label_noise_changes_exactly_round_pn_labels_never_to_the_same_class():
    labels = torch.arange(1000) % 10
    for fraction, count in [(0.0, 0), (0.15, 150), (0.3, 300), (0.6, 600), (0.0125, 12)]:
        new, noisy = data.corrupt_labels(labels, 10, fraction, seed=3)
        assert int(noisy.sum()) == count
        assert torch.equal(noisy, new != labels)
        assert torch.equal(new[~noisy], labels[~noisy])
        assert int(new.min()) >= 0 and int(new.max()) < 10
    assert torch.equal(labels, torch.arange(1000) % 10)  # input untouched


def test_label_noise_is_seeded():
    labels = torch.arange(500) % 7
    a = data.corrupt_labels(labels, 7, 0.4, seed=1)
    b = data.corrupt_labels(labels, 7, 0.4, seed=1)
    c = data.corrupt_labels(labels, 7, 0.4, seed=2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_label_noise_new_labels_are_uniform_over_the_other_classes():
    labels = torch.zeros(20000, dtype=torch.int64)
    new, noisy = data.corrupt_labels(labels, 5, 0.5, seed=0)
    counts = new[noisy].bincount(minlength=5).numpy()
    assert counts[0] == 0
    assert stats.chisquare(counts[1:]).pvalue > 1e-3


def test_label_noise_rejects_bad_fraction():
    with pytest.raises(DatasetError, match="label_noise.*\\[0, 1\\)"):
        data.corrupt_labels(torch.zeros(4, dtype=torch.int64), 10, 1.0, seed=0)


def test_load_with_label_noise_leaves_test_set_and_clean_labels_alone(tmp_path):
    write_cifar10(tmp_path, per_batch=40)
    clean = data.load("cifar10", tmp_path)
    noisy = data.load("cifar10", tmp_path, label_noise=0.25, seed=5)
    assert torch.equal(noisy.test_labels, clean.test_labels) and torch.equal(noisy.test_images, clean.test_images)
    assert torch.equal(noisy.clean_train_labels, clean.train_labels)
    assert int(noisy.noisy.sum()) == 50
    assert torch.equal(noisy.noisy, noisy.train_labels != clean.train_labels)
    expected, _ = data.corrupt_labels(clean.train_labels, 10, 0.25, seed=5)
    assert torch.equal(noisy.train_labels, expected)


# --------------------------------------------------------------------------- subsets


def test_train_size_keeps_a_seeded_subset_and_noise_applies_after(tmp_path):
    write_cifar10(tmp_path)
    full = data.load("cifar10", tmp_path)
    sub = data.load("cifar10", tmp_path, train_size=30, label_noise=0.1, seed=4)
    assert sub.train_images.shape == (30, 3, 32, 32) and int(sub.noisy.sum()) == 3
    # Each kept image is a distinct training example with its clean label.
    flat_full = full.train_images.reshape(100, -1)
    positions = [int((flat_full == row).all(dim=1).nonzero()) for row in sub.train_images.reshape(30, -1)]
    assert len(set(positions)) == 30 and positions == sorted(positions)
    assert sub.clean_train_labels.tolist() == [int(full.train_labels[p]) for p in positions]
    assert torch.equal(sub.test_images, full.test_images)
    again = data.load("cifar10", tmp_path, train_size=30, label_noise=0.1, seed=4)
    other = data.load("cifar10", tmp_path, train_size=30, seed=5)
    assert torch.equal(again.train_images, sub.train_images) and torch.equal(again.train_labels, sub.train_labels)
    assert not torch.equal(other.train_images, sub.train_images)
    assert torch.equal(data.load("cifar10", tmp_path, train_size=100).train_images, full.train_images)


def test_train_size_larger_than_available_is_rejected(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DatasetError, match=r"train_size: got 101, allowed: an integer in \[1, 100\]"):
        data.load("cifar10", tmp_path, train_size=101)


def test_tiled_repeats_the_training_split_with_its_labels_and_noise_flags(tmp_path):
    write_cifar10(tmp_path, per_batch=10)
    noisy = data.load("cifar10", tmp_path, label_noise=0.2, seed=1)
    tiled = noisy.tiled(3)
    assert tiled.train_images.shape == (150, 3, 32, 32)
    for part in range(3):
        window = slice(50 * part, 50 * (part + 1))
        assert torch.equal(tiled.train_images[window], noisy.train_images)
        assert torch.equal(tiled.train_labels[window], noisy.train_labels)
        assert torch.equal(tiled.clean_train_labels[window], noisy.clean_train_labels)
        assert torch.equal(tiled.noisy[window], noisy.noisy)
    assert torch.equal(tiled.test_images, noisy.test_images) and tiled.mean == noisy.mean
    assert torch.equal(noisy.tiled(1).train_images, noisy.train_images)
    with pytest.raises(DatasetError, match=r"repeat: got 0, allowed: an integer >= 1"):
        noisy.tiled(0)


# --------------------------------------------------------------------------- loader


MEAN = (0.5, 0.25, 0.75)
STD = (0.2, 0.4, 0.1)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)


def _loader(n: int = 50, **kwargs) -> data.DeviceLoader:
    options = dict(batch_size=16, mean=MEAN, std=STD, augment=True, seed=3)
    options.update(kwargs)
    return data.DeviceLoader(_images(n), torch.arange(n), **options)


def test_normalize_matches_a_hand_computation():
    images = _images(3)
    out = data.normalize(images, MEAN, STD)
    assert out.dtype == torch.float32 and out.device == images.device
    value = int(images[2, 1, 4, 9])
    assert float(out[2, 1, 4, 9]) == pytest.approx((value / 255 - 0.25) / 0.4, rel=1e-6)
    expected = (images.double().numpy() / 255 - np.array(MEAN)[None, :, None, None]) / np.array(STD)[None, :, None, None]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_loader_length_and_batch_sizes():
    assert len(_loader(50)) == 4 and len(_loader(50, drop_last=True)) == 3
    sizes = [len(y) for _, y in _loader(50).batches(0)]
    assert sizes == [16, 16, 16, 2]
    assert [len(y) for _, y in _loader(50, drop_last=True).batches(0)] == [16, 16, 16]
    with pytest.raises(DatasetError, match="batch_size"):
        _loader(10, batch_size=16, drop_last=True)


def test_each_epoch_is_a_permutation_of_all_examples():
    loader = _loader(50)
    for epoch in range(3):
        seen = torch.cat([y for _, y in loader.batches(epoch)])
        assert sorted(seen.tolist()) == list(range(50))


def test_same_seed_and_epoch_give_identical_batches_even_after_other_epochs():
    straight = _loader()
    for epoch in range(3):
        list(straight.batches(epoch))
    resumed = _loader()  # a fresh process resuming at epoch 3
    for (xa, ya), (xb, yb) in zip(straight.batches(3), resumed.batches(3), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_different_epochs_and_seeds_give_different_orders():
    loader = _loader()
    order = lambda ld, e: torch.cat([y for _, y in ld.batches(e)])  # noqa: E731
    assert not torch.equal(order(loader, 0), order(loader, 1))
    assert not torch.equal(order(loader, 0), order(_loader(seed=4), 0))


def test_no_shuffle_no_augment_yields_exact_normalized_images_in_order():
    images = _images(40)
    loader = data.DeviceLoader(images, torch.arange(40), batch_size=16, mean=MEAN, std=STD, augment=False, shuffle=False)
    x = torch.cat([x for x, _ in loader.batches(5)])
    y = torch.cat([y for _, y in loader.batches(5)])
    assert torch.equal(x, data.normalize(images, MEAN, STD)) and y.tolist() == list(range(40))
    assert torch.equal(torch.cat([x for x, _ in loader.eval_batches(batch_size=7)]), x)


def test_shuffle_without_augment_yields_the_planned_examples_unchanged():
    images = _images(40)
    loader = data.DeviceLoader(images, torch.arange(40), batch_size=16, mean=MEAN, std=STD, augment=False, seed=9)
    plan = loader.epoch_plan(2)
    assert plan.dy is None
    x = torch.cat([x for x, _ in loader.batches(2)])
    assert torch.equal(x, data.normalize(images[plan.order], MEAN, STD))


def _reference_augment(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    padded = torch.zeros(3, 40, 40, dtype=image.dtype)
    padded[:, 4:36, 4:36] = image
    crop = padded[:, dy:dy + 32, dx:dx + 32]
    return crop.flip(-1) if flip else crop


def test_augmented_batches_match_a_per_example_reference():
    images = _images(50)
    loader = data.DeviceLoader(images, torch.arange(50), batch_size=16, mean=MEAN, std=STD, augment=True, seed=1)
    plan = loader.epoch_plan(4)
    x = torch.cat([x for x, _ in loader.batches(4)])
    for position in [0, 1, 15, 16, 31, 49]:
        example = int(plan.order[position])
        reference = _reference_augment(
            images[example], int(plan.dy[position]), int(plan.dx[position]), bool(plan.flip[position])
        )
        assert torch.equal(x[position], data.normalize(reference[None], MEAN, STD)[0])


def test_crop_flip_covers_extreme_offsets_like_the_reference():
    images = _images(4)
    dy = torch.tensor([0, 8, 4, 8])
    dx = torch.tensor([0, 8, 4, 0])
    flip = torch.tensor([False, True, False, True])
    out = data.crop_flip(images, dy, dx, flip)
    for i in range(4):
        assert torch.equal(out[i], _reference_augment(images[i], int(dy[i]), int(dx[i]), bool(flip[i])))
    assert torch.equal(out[2], images[2])  # centre crop, no flip
    assert int(out[0, :, :4, :].max()) == 0 and int(out[0, :, :, :4].max()) == 0  # padded corner


def test_augmentation_draws_cover_all_offsets_and_flip_half_the_time():
    plan = _loader(4000).epoch_plan(0)
    assert set(plan.dy.tolist()) == set(range(9)) and set(plan.dx.tolist()) == set(range(9))
    assert stats.binomtest(int(plan.flip.sum()), 4000, 0.5).pvalue > 1e-3


def test_without_flip_the_crops_are_the_flipping_loaders_and_nothing_is_mirrored():
    images = _images(50)
    flipping = data.DeviceLoader(images, torch.arange(50), batch_size=16, mean=MEAN, std=STD, augment=True, seed=1)
    cropping = data.DeviceLoader(images, torch.arange(50), batch_size=16, mean=MEAN, std=STD, augment=True, seed=1,
                                 flip=False)
    with_flip, without = flipping.epoch_plan(4), cropping.epoch_plan(4)
    assert torch.equal(with_flip.order, without.order) and torch.equal(with_flip.dy, without.dy)
    assert torch.equal(with_flip.dx, without.dx) and bool(with_flip.flip.any()) and not bool(without.flip.any())
    x = torch.cat([x for x, _ in cropping.batches(4)])
    for position in [0, 15, 16, 49]:
        example = int(without.order[position])
        reference = _reference_augment(images[example], int(without.dy[position]), int(without.dx[position]), False)
        assert torch.equal(x[position], data.normalize(reference[None], MEAN, STD)[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches():
    cpu, gpu = _loader(), _loader(device="cuda")
    for (xc, yc), (xg, yg) in zip(cpu.batches(2), gpu.batches(2), strict=True):
        assert xg.device.type == "cuda"
        assert torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xc, xg.cpu(), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_matches_a_manual_computation():
    torch.manual_seed(0)
    images, labels = _images(37, seed=2), torch.randint(0, 4, (37,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(3072, 4))
    model.train()
    loss, accuracy = data.evaluate(model, images, labels, mean=MEAN, std=STD, batch_size=8)
    assert model.training  # mode restored
    linear = model[2]
    x = data.normalize(images, MEAN, STD).reshape(37, -1).double().numpy()
    logits = x @ linear.weight.detach().double().numpy().T + linear.bias.detach().double().numpy()
    log_probs = logits - logsumexp(logits, axis=1, keepdims=True)
    expected_loss = -log_probs[np.arange(37), labels.numpy()].mean()
    expected_accuracy = (logits.argmax(axis=1) == labels.numpy()).mean()
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert accuracy == pytest.approx(expected_accuracy, abs=1e-12)


def test_examples_per_pass_caps_only_the_cpu():
    assert data.examples_per_pass(1024, "cpu") == data.CPU_PASS_LIMIT == 256
    assert data.examples_per_pass(100, torch.device("cpu")) == 100
    # No GPU is needed to build a device object; an accelerator keeps the asked batch.
    assert data.examples_per_pass(1024, "cuda") == 1024
    assert data.examples_per_pass(1024, "mps") == 1024
    assert list(data.pass_slices(600, 1024, "cpu")) == [slice(0, 256), slice(256, 512), slice(512, 768)]
    assert list(data.pass_slices(600, 1024, "cuda")) == [slice(0, 1024)]


def test_evaluate_on_the_cpu_runs_large_batches_as_passes_of_the_limit():
    torch.manual_seed(4)
    count = 2 * data.CPU_PASS_LIMIT + 37
    images, labels = _images(count, seed=5), torch.randint(0, 3, (count,))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    loss, accuracy = data.evaluate(model, images, labels, mean=MEAN, std=STD, batch_size=1024)
    assert seen == [256, 256, 37]
    with torch.no_grad():
        logits = model(data.normalize(images, MEAN, STD)).double()
    assert loss == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)
    assert accuracy == int((logits.argmax(1) == labels).sum()) / count


def test_evaluate_agrees_with_torch_cross_entropy_on_one_batch():
    torch.manual_seed(1)
    images, labels = _images(20, seed=3), torch.randint(0, 3, (20,))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    with torch.no_grad():
        logits = model(data.normalize(images, MEAN, STD))
    loss, accuracy = data.evaluate(model, images, labels, mean=MEAN, std=STD, batch_size=6)
    assert loss == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-5)
    assert accuracy == int((logits.argmax(1) == labels).sum()) / 20


def test_a_smaller_crop_padding_shifts_by_at_most_that_many_pixels():
    images = _images(40)
    loader = data.DeviceLoader(images, torch.arange(40), batch_size=40, mean=MEAN, std=STD, augment=True, seed=3,
                               flip=False, padding=1)
    plan = loader.epoch_plan(0)
    assert set(plan.dy.tolist()) <= {0, 1, 2} and set(plan.dx.tolist()) <= {0, 1, 2}
    (x, _), = loader.batches(0)
    for position in range(40):
        crop = data.crop_flip(images[plan.order[position]][None], plan.dy[position:position + 1],
                              plan.dx[position:position + 1], plan.flip[position:position + 1], padding=1)
        assert torch.equal(x[position], data.normalize(crop, MEAN, STD)[0])

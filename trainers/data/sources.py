"""Where datasets come from: the offline ``digits`` default (scikit-learn's bundled
handwritten digits, upsampled to 32×32), CIFAR-10, CIFAR-100 and MNIST in their standard
layouts, the loaders and downloads their specs name (:mod:`trainers.data.registry`), the data
root and the seed derivation every randomness of genzoo uses.

Every dataset is held as uint8 images ``N×3×32×32`` on the CPU. Nothing here touches the
network except :func:`download`, and torchvision and scikit-learn are imported only inside
the functions that need them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import pickle
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from trainers.data import registry
from trainers.data.spec import DatasetError
from trainers.registry import resolve

PathLike = Union[str, os.PathLike]
Triple = Tuple[float, float, float]

ENV_DATA_ROOT = "GENZOO_DATA"
IMAGE_SIZE = 32
AUGMENT_PADDING = 4
EVAL_BATCH_SIZE = 1024
# At most this many examples per evaluation forward pass on the CPU (see ``examples_per_pass``).
CPU_PASS_LIMIT = 256

# Per-channel mean and standard deviation of the 50,000 training images, in [0, 1] pixel
# units (the population std over all pixels of a channel, not the per-image average std).
CIFAR10_MEAN: Triple = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Triple = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: Triple = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: Triple = (0.2673, 0.2564, 0.2762)

# The digits split is part of the dataset, not of the trial: a fixed seed and 36 test
# images per class (360 test, 1437 train).
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_PER_CLASS = 36
# digits_large_test: the same images split 797 train / 1,000 test (100 per class), for zoos
# whose models differ in test accuracy by less than 360 test images can resolve.
DIGITS_LARGE_TEST_PER_CLASS = 100


@dataclass(frozen=True)
class Dataset:
    """One dataset as used by one trial, all tensors on the CPU.

    Images are uint8 ``N×3×32×32``; labels are int64. ``train_labels`` are the labels the
    model is trained on (after label noise), ``clean_train_labels`` the original ones and
    ``noisy`` is True exactly where the two differ. ``mean``/``std`` are per-channel, in
    [0, 1] pixel units, for :func:`normalize`.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    noisy: torch.Tensor
    clean_train_labels: torch.Tensor
    mean: Triple
    std: Triple

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """One example's (C, H, W)."""
        return tuple(int(v) for v in self.train_images.shape[1:])  # type: ignore[return-value]

    def tiled(self, times: int) -> "Dataset":
        """The same dataset with its training split repeated ``times`` times (labels, clean
        labels and noise flags with it; the test split unchanged). Benchmarks use it to get a
        CIFAR-sized epoch (``digits`` tiled 35 times: 50,295 images) where CIFAR cannot be
        downloaded."""
        if times < 1:
            raise DatasetError(f"repeat: got {times}, allowed: an integer >= 1")
        return dataclasses.replace(
            self,
            train_images=self.train_images.repeat(times, 1, 1, 1),
            train_labels=self.train_labels.repeat(times),
            clean_train_labels=self.clean_train_labels.repeat(times),
            noisy=self.noisy.repeat(times),
        )


class RawDataset(NamedTuple):
    """What a registered loader returns: the full, uncorrupted train and test splits."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: Triple
    std: Triple


# --------------------------------------------------------------------------- locations


def data_root(root: Optional[PathLike] = None) -> pathlib.Path:
    """The data folder: ``root`` if given, else ``$GENZOO_DATA``, else ``~/.cache/genzoo``."""
    if root is not None:
        return pathlib.Path(root).expanduser()
    from_env = os.environ.get(ENV_DATA_ROOT)
    if from_env:
        return pathlib.Path(from_env).expanduser()
    return pathlib.Path.home() / ".cache" / "genzoo"


# --------------------------------------------------------------------------- seeds


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the trial seed and a purpose tag (sha256 of ``"/".join(parts)``).

    Distinct purposes (subset, label noise, each loader epoch) get unrelated streams even
    when they share the trial seed.
    """
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generator(*parts: object) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(derive_seed(*parts))
    return generator


# --------------------------------------------------------------------------- digits


def load_digits(root: pathlib.Path, test_per_class: int = DIGITS_TEST_PER_CLASS) -> RawDataset:
    """scikit-learn's bundled UCI handwritten digits, shaped like CIFAR; ``root`` is unused.

    The 1797 8×8 images (values 0..16) are upsampled to 32×32 with bilinear interpolation
    (``torch.nn.functional.interpolate``, ``align_corners=False``, so every output pixel is
    a convex combination of input pixels and stays in 0..16), scaled by 255/16, rounded to
    uint8 and replicated to 3 channels. The split is stratified and fixed
    (``DIGITS_SPLIT_SEED`` = 0, ``DIGITS_TEST_PER_CLASS`` = 36 test images of each class:
    360 test, 1437 train), both splits in the original order. ``mean``/``std`` are the
    per-channel statistics of the train split.

    ``digits_large_test`` is the same with ``test_per_class`` =
    ``DIGITS_LARGE_TEST_PER_CLASS`` = 100 (1,000 test, 797 train): one model's test accuracy
    then has a binomial standard error of about 0.009 at 90% instead of 0.016, which a zoo of
    easy-to-fit digits models needs before its rank correlations mean anything.
    """
    del root
    from sklearn.datasets import load_digits  # lazy: only the offline dataset needs it

    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float32)  # 1797×8×8, 0..16
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    images = digits_to_images(pixels)
    train_idx, test_idx = stratified_split(bunch.target, test_per_class, DIGITS_SPLIT_SEED)
    train_images = images[torch.as_tensor(train_idx)]
    mean, std = channel_stats(train_images)
    return RawDataset(
        train_images=train_images,
        train_labels=labels[torch.as_tensor(train_idx)],
        test_images=images[torch.as_tensor(test_idx)],
        test_labels=labels[torch.as_tensor(test_idx)],
        num_classes=10,
        mean=mean,
        std=std,
    )


def load_digits_large_test(root: pathlib.Path) -> RawDataset:
    """``digits_large_test``: :func:`load_digits` with 100 test images per class."""
    return load_digits(root, test_per_class=DIGITS_LARGE_TEST_PER_CLASS)


def digits_to_images(pixels: torch.Tensor, size: int = IMAGE_SIZE, max_value: float = 16.0) -> torch.Tensor:
    """``N×h×w`` gray images with values in ``[0, max_value]`` -> uint8 ``N×3×size×size``.

    Bilinear upsampling (``align_corners=False``), then ``round(v * 255 / max_value)``, the
    gray channel copied to R, G and B.
    """
    upsampled = F.interpolate(pixels[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)
    scaled = torch.round(upsampled * (255.0 / max_value)).clamp_(0, 255).to(torch.uint8)
    return scaled.expand(-1, 3, -1, -1).contiguous()


def stratified_split(labels: Sequence[int], test_per_class: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``, each sorted, with ``test_per_class`` test examples per class.

    Uses ``numpy.random.RandomState(seed)``, whose stream numpy guarantees never to change,
    so the split is the same on every numpy version; classes are visited in sorted order.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    test = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) <= test_per_class:
            raise DatasetError(f"test_per_class: got {test_per_class}, class {cls} has only {len(members)} examples")
        test.append(rng.permutation(members)[:test_per_class])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def channel_stats(images: torch.Tensor) -> Tuple[Triple, Triple]:
    """Per-channel mean and (population) std of uint8 ``N×C×H×W`` images in [0, 1] units."""
    values = images.double().div(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    mean = values.mean(dim=1)
    std = values.std(dim=1, unbiased=False)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]


# --------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarLayout:
    name: str
    folder: str
    train_files: Tuple[str, ...]
    test_file: str
    label_key: str
    num_classes: int
    mean: Triple
    std: Triple


_CIFAR10 = _CifarLayout(
    name="cifar10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    label_key="labels",
    num_classes=10,
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
)
_CIFAR100 = _CifarLayout(
    name="cifar100",
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    label_key="fine_labels",
    num_classes=100,
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
)


def _fix_command(name: str, root: pathlib.Path) -> str:
    return f"run `genzoo data download {name} --root {root}`"


def read_cifar_batch(path: pathlib.Path, label_key: str, num_classes: int, *, fix: str = "") -> Tuple[torch.Tensor, torch.Tensor]:
    """One file of the python-pickle CIFAR layout -> uint8 ``N×3×32×32`` images, int64 labels.

    The file is a pickled dict with ``b"data"`` (uint8 ``N×3072``: each row is the 1024 red,
    then 1024 green, then 1024 blue values of a 32×32 image in row-major order) and
    ``label_key`` (``b"labels"`` for CIFAR-10, ``b"fine_labels"`` for CIFAR-100): N ints in
    ``[0, num_classes)``. Any N is accepted. A missing file, an unpickling failure or a wrong
    shape raises :class:`DatasetError` naming the file, followed by ``fix``.
    """
    suffix = f"; {fix}" if fix else ""
    if not path.is_file():
        raise DatasetError(f"missing file {path}{suffix}")
    try:
        with open(path, "rb") as handle:
            # The standard files are Python-2 pickles: bytes keys need encoding="bytes".
            batch = pickle.load(handle, encoding="bytes")
    except Exception as error:  # a corrupt pickle can raise almost any exception type
        raise DatasetError(f"corrupt file {path}: cannot unpickle ({type(error).__name__}){suffix}") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"corrupt file {path}: expected a dict, got {type(batch).__name__}{suffix}")
    data = _lookup(batch, "data")
    labels = _lookup(batch, label_key)
    pixels = IMAGE_SIZE * IMAGE_SIZE * 3
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"corrupt file {path}: 'data' must be uint8 N×{pixels}, got {got}{suffix}")
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DatasetError(f"corrupt file {path}: '{label_key}' is not a list of integers{suffix}") from None
    if label_array.shape != (data.shape[0],):
        raise DatasetError(
            f"corrupt file {path}: {data.shape[0]} images but '{label_key}' has shape {label_array.shape}{suffix}"
        )
    if label_array.size and (label_array.min() < 0 or label_array.max() >= num_classes):
        raise DatasetError(f"corrupt file {path}: '{label_key}' outside [0, {num_classes}){suffix}")
    images = torch.from_numpy(data.copy()).reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)
    return images, torch.from_numpy(label_array)


def _lookup(batch: dict, key: str) -> object:
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def _load_cifar(layout: _CifarLayout, root: pathlib.Path) -> RawDataset:
    folder = root / layout.folder
    fix = _fix_command(layout.name, root)
    if not folder.is_dir():
        raise DatasetError(f"{layout.name}: missing folder {folder}; {fix}")
    parts = [read_cifar_batch(folder / f, layout.label_key, layout.num_classes, fix=fix) for f in layout.train_files]
    test_images, test_labels = read_cifar_batch(folder / layout.test_file, layout.label_key, layout.num_classes, fix=fix)
    return RawDataset(
        train_images=torch.cat([images for images, _ in parts]),
        train_labels=torch.cat([labels for _, labels in parts]),
        test_images=test_images,
        test_labels=test_labels,
        num_classes=layout.num_classes,
        mean=layout.mean,
        std=layout.std,
    )


def load_cifar10(root: pathlib.Path) -> RawDataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (data_batch_1..5, test_batch).

    mean = ``CIFAR10_MEAN`` = (0.4914, 0.4822, 0.4465), std = ``CIFAR10_STD`` =
    (0.2470, 0.2435, 0.2616): the statistics of the standard 50,000 training images.
    """
    return _load_cifar(_CIFAR10, root)


def load_cifar100(root: pathlib.Path) -> RawDataset:
    """CIFAR-100 (fine labels) from ``<root>/cifar-100-python`` (train, test).

    mean = ``CIFAR100_MEAN`` = (0.5071, 0.4865, 0.4409), std = ``CIFAR100_STD`` =
    (0.2673, 0.2564, 0.2762): the statistics of the standard 50,000 training images.
    """
    return _load_cifar(_CIFAR100, root)


# --------------------------------------------------------------------------- MNIST

MNIST_FOLDER = "MNIST/raw"
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
# Per-channel mean and std of the 60,000 MNIST training images in [0, 1] units (the constants
# of torchvision's and open_lth's MNIST normalization).
MNIST_MEAN: Tuple[float] = (0.1307,)
MNIST_STD: Tuple[float] = (0.3081,)
_IDX_MAGIC = {1: 2049, 3: 2051}  # labels (N), images (N × rows × cols), unsigned bytes


def read_idx(path: pathlib.Path, dims: int, *, fix: str = "") -> torch.Tensor:
    """One file of LeCun's IDX format (the on-disk MNIST), plain or gzipped (``<path>.gz``):
    a big-endian int32 magic number (2049 for labels, 2051 for images: unsigned bytes with 1
    or 3 dimensions), one big-endian int32 size per dimension, then the bytes. Returns a
    uint8 tensor of that shape. A missing, truncated or foreign file raises
    :class:`DatasetError` naming it, followed by ``fix``."""
    import gzip

    suffix = f"; {fix}" if fix else ""
    candidates = [path, path.with_name(path.name + ".gz")]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise DatasetError(f"{path}: missing MNIST file{suffix}")
    try:
        raw = gzip.decompress(found.read_bytes()) if found.suffix == ".gz" else found.read_bytes()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{found}: not a readable gzip file ({exc}){suffix}") from None
    header = 4 + 4 * dims
    if len(raw) < header or int.from_bytes(raw[:4], "big") != _IDX_MAGIC[dims]:
        raise DatasetError(f"{found}: not an IDX file of {dims} dimension(s) (magic {_IDX_MAGIC[dims]}){suffix}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    if len(raw) != header + int(np.prod(shape)):
        raise DatasetError(f"{found}: has {len(raw) - header} data bytes, its header says {int(np.prod(shape))}{suffix}")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).copy()).reshape(shape)


def load_mnist(root: pathlib.Path) -> RawDataset:
    """MNIST from ``<root>/MNIST/raw`` (torchvision's layout of the four IDX files, plain or
    gzipped): 60,000 training and 10,000 test images as uint8 ``N×1×28×28``, 10 classes.

    mean = ``MNIST_MEAN`` = (0.1307,), std = ``MNIST_STD`` = (0.3081,).
    """
    folder = root / MNIST_FOLDER
    fix = _fix_command("mnist", root)
    arrays = {key: read_idx(folder / name, 3 if key.endswith("images") else 1, fix=fix)
              for key, name in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DatasetError(f"{folder / MNIST_FILES[split + '_labels']}: {len(labels)} labels for "
                               f"{len(images)} images; {fix}")
        if len(labels) and int(labels.max()) > 9:
            raise DatasetError(f"{folder / MNIST_FILES[split + '_labels']}: labels must be in [0, 10); {fix}")
    return RawDataset(
        train_images=arrays["train_images"].unsqueeze(1),
        train_labels=arrays["train_labels"].to(torch.int64),
        test_images=arrays["test_images"].unsqueeze(1),
        test_labels=arrays["test_labels"].to(torch.int64),
        num_classes=10,
        mean=MNIST_MEAN,
        std=MNIST_STD,
    )


# --------------------------------------------------------------------------- registry

Loader = Callable[[pathlib.Path], RawDataset]


def names() -> Tuple[str, ...]:
    """The registered dataset names (:mod:`trainers.data.registry`)."""
    return registry.names()


def get(name: str) -> Loader:
    """The loader of the dataset registered as ``name``; an unknown name raises :class:`DatasetError`."""
    return resolve(registry.get(name).loader)


# --------------------------------------------------------------------------- downloads


def _folders(root: pathlib.Path) -> set:
    """Every folder at or under ``root`` (empty when it does not exist)."""
    if not root.is_dir():
        return set()
    return {root, *(p for p in root.rglob("*") if p.is_dir())}


def _remove_empty_folders(root: pathlib.Path, keep: set) -> None:
    """Remove the folders at or under ``root`` that are empty and not in ``keep``, deepest first."""
    for folder in sorted(_folders(root) - keep, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: it holds something the attempt fetched, or a user's file


def download(name: str, root: Optional[PathLike] = None) -> pathlib.Path:
    """Download ``name`` into ``data_root(root)`` with its spec's ``download`` and return its
    folder (a dataset without one is a :class:`DatasetError`)."""
    spec = registry.get(name)
    if spec.download is None:
        allowed = ", ".join(n for n in registry.names() if registry.get(n).download)
        raise DatasetError(f"dataset: {name} has nothing to download, allowed: {allowed}")
    return resolve(spec.download)(data_root(root))


def bundled_digits(root: pathlib.Path) -> pathlib.Path:
    """``digits`` ships with scikit-learn: nothing is downloaded and the path of the bundled
    file is returned (``root`` is unused)."""
    del root
    import sklearn.datasets  # lazy, as everywhere in this module

    return pathlib.Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"


def download_cifar10(root: pathlib.Path) -> pathlib.Path:
    return _torchvision_download("cifar10", "CIFAR10", _CIFAR10.folder, root, _MANUAL_CIFAR10)


def download_cifar100(root: pathlib.Path) -> pathlib.Path:
    return _torchvision_download("cifar100", "CIFAR100", _CIFAR100.folder, root, _MANUAL_CIFAR100)


def download_mnist(root: pathlib.Path) -> pathlib.Path:
    return _torchvision_download("mnist", "MNIST", MNIST_FOLDER, root, _MANUAL_MNIST)


# What to copy by hand where `genzoo data download` cannot reach the network: the folder
# layout each loader reads (the standard layouts, as torchvision unpacks them).
_MANUAL_CIFAR10 = (f"fetch https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz elsewhere and unpack it "
                   f"into the data root, giving <root>/{_CIFAR10.folder}/data_batch_1..5 and test_batch")
_MANUAL_CIFAR100 = (f"fetch https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz elsewhere and unpack it "
                    f"into the data root, giving <root>/{_CIFAR100.folder}/train and test")
_MANUAL_MNIST = (f"fetch the four MNIST IDX files ({', '.join(MNIST_FILES.values())}; plain or .gz) from "
                 f"https://ossci-datasets.s3.amazonaws.com/mnist/ elsewhere and put them in <root>/{MNIST_FOLDER}/")


def _torchvision_download(name: str, class_name: str, folder: str, target: pathlib.Path, manual: str) -> pathlib.Path:
    """torchvision's downloader, which verifies the archive's MD5 checksum and skips the
    download when the files are already there; ``manual`` says what to do without network."""
    import torchvision.datasets  # lazy: never needed to train or to run the tests

    before = _folders(target)
    target.mkdir(parents=True, exist_ok=True)
    dataset_class = getattr(torchvision.datasets, class_name)
    try:
        dataset_class(str(target), train=True, download=True)
        dataset_class(str(target), train=False, download=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; torchvision's MNIST raises RuntimeError
        _remove_empty_folders(target, before)  # e.g. the MNIST/raw/ torchvision made before failing
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__
        raise DatasetError(f"{name}: download failed ({reason}); without network, {manual} "
                           f"(root {target}: --root, --data-root or ${ENV_DATA_ROOT})") from None
    return target / folder

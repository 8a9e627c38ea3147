"""Datasets (the offline ``digits`` default, CIFAR-10, CIFAR-100), label noise, and a loader
that keeps the whole dataset on the training device: one package, three modules of one job
each (:mod:`~trainers.data.sources`, :mod:`~trainers.data.views`,
:mod:`~trainers.data.device`), whose public names are importable from here.

Every dataset is held as uint8 images ``N×3×32×32`` on the CPU; conversion to float and
normalization happen per batch on the device (the airbench recipe: Jordan, *94% on CIFAR-10
in 3.29 seconds on a single GPU*, 2024). All randomness is drawn from CPU
``torch.Generator`` objects whose seeds are derived from the trial seed and a purpose tag, so
a trial gives the same data on every device and after every resume.

Nothing here touches the network except :func:`download`, and torchvision and scikit-learn
are imported only inside the functions that need them.
"""

from trainers.data.device import DeviceLoader, EpochPlan, crop_flip, evaluate, examples_per_pass, normalize, pass_slices
from trainers.data.sources import (
    AUGMENT_PADDING,
    CPU_PASS_LIMIT,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATASETS,
    DIGITS_SPLIT_SEED,
    DIGITS_LARGE_TEST_PER_CLASS,
    DIGITS_TEST_PER_CLASS,
    ENV_DATA_ROOT,
    EVAL_BATCH_SIZE,
    IMAGE_SIZE,
    MNIST_MEAN,
    MNIST_STD,
    Dataset,
    DatasetError,
    RawDataset,
    channel_stats,
    data_root,
    derive_seed,
    digits_to_images,
    download,
    get,
    names,
    read_cifar_batch,
    read_idx,
    stratified_split,
)
from trainers.data.views import corrupt_labels, load, subset_indices

__all__ = [
    "AUGMENT_PADDING", "CPU_PASS_LIMIT", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "DATASETS",
    "DIGITS_LARGE_TEST_PER_CLASS", "DIGITS_SPLIT_SEED", "DIGITS_TEST_PER_CLASS", "ENV_DATA_ROOT", "EVAL_BATCH_SIZE", "IMAGE_SIZE", "MNIST_MEAN", "MNIST_STD",
    "Dataset", "DatasetError", "DeviceLoader", "EpochPlan", "RawDataset", "channel_stats", "corrupt_labels",
    "crop_flip", "data_root", "derive_seed", "digits_to_images", "download", "evaluate", "examples_per_pass", "get", "load",
    "names", "normalize", "pass_slices", "read_cifar_batch", "read_idx", "stratified_split", "subset_indices",
]

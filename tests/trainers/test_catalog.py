"""trainers/catalog.py, what `genzoo sweep plan` checks without torch, against the real thing:
each model's parameter count against the built model, each dataset's sizes against its loader."""

import pytest

from trainers import catalog, data, models


@pytest.mark.parametrize("name", catalog.MODELS)
def test_the_parameter_count_is_the_built_models(name):
    shape = (1, 28, 28) if name == "lenet_300_100" else catalog.IMAGE_SHAPE
    for width in (None, 3, 10):
        for depth in ((None, 1, 4) if "depth" in catalog.MODEL_HYPERPARAMETERS[name] else (None,)):
            for classes in (10, 100):
                extra = {"input_shape": shape} if name in catalog.ANY_INPUT_SHAPE else {}
                model = models.build(name, classes, width=width, depth=depth, **extra)
                expected = sum(p.numel() for p in model.parameters())
                got = catalog.parameter_count(name, classes, width=width, depth=depth, input_shape=shape)
                assert got == expected, (name, width, depth, classes)


def test_the_hyperparameters_are_the_registrys():
    for name in catalog.MODELS:
        assert list(catalog.MODEL_HYPERPARAMETERS[name]) == models.supported_hyperparameters(name), name


@pytest.mark.parametrize("name", ["digits", "digits_large_test"])
def test_the_offline_datasets_sizes_are_their_loaders(name):
    dataset = data.load(name)
    info = catalog.DATASET_INFO[name]
    assert (len(dataset.train_labels), len(dataset.test_labels), dataset.num_classes, dataset.input_shape) == info


def test_every_dataset_has_its_sizes():
    assert sorted(catalog.DATASET_INFO) == sorted(catalog.DATASETS)
    assert catalog.DATASET_INFO["mnist"].shape == (1, 28, 28) and catalog.DATASET_INFO["cifar100"].classes == 100

"""trainers/catalog.py, what `genzoo sweep plan` checks without torch, against the real thing:
each model's parameter count against the built model, each dataset's sizes against its loader."""

import pytest

from trainers import catalog, data, models


@pytest.mark.parametrize("name", models.names())
def test_the_parameter_count_is_the_built_models(name):
    spec = models.get(name)
    shape = (1, 28, 28) if spec.input_shapes is None else spec.input_shapes[0]
    for width in (None, 3, 10):
        for depth in ((None, 1, 4) if "depth" in spec.hyperparameters else (None,)):
            for classes in (10, 100):
                model = models.build(name, classes, width=width, depth=depth, input_shape=shape)
                expected = sum(p.numel() for p in model.parameters())
                got = catalog.parameter_count(name, classes, width=width, depth=depth, input_shape=shape)
                assert got == expected, (name, width, depth, classes)


@pytest.mark.parametrize("name", ["digits", "digits_large_test"])
def test_the_offline_datasets_sizes_are_their_loaders(name):
    dataset = data.load(name)
    info = catalog.dataset_info(name)
    assert (len(dataset.train_labels), len(dataset.test_labels), dataset.num_classes, dataset.input_shape) == info


def test_every_dataset_has_its_sizes():
    assert catalog.dataset_info("mnist").shape == (1, 28, 28) and catalog.dataset_info("cifar100").classes == 100
    with pytest.raises(data.DatasetError, match="^dataset: got 'svhn', allowed: digits, digits_large_test"):
        catalog.dataset_info("svhn")

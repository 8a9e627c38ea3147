"""The names of the registered datasets and models, torch-free, so that a sweep file is
validated (``genzoo sweep plan``) without importing torch. A test keeps them equal to the
registries (``trainers.data.DATASETS``, ``trainers.models.MODELS``)."""

DATASETS = ("digits", "digits_large_test", "cifar10", "cifar100", "mnist")
MODELS = ("lenet_300_100", "mcnn", "nin", "resnet18", "resnet18k", "resnet20", "resnet32", "resnet56", "vgg11", "vgg16")

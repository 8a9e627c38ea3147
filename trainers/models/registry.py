"""The model registry: one :class:`~trainers.models.spec.ModelSpec` per model, the built-in
ones listed here. Torch-free: a builder is a ``"module:attr"`` string imported only when
:func:`trainers.models.build` builds it.

Adding a model: its implementation file (with a builder function), one ``register(ModelSpec(...))``
line (here for a built-in model, in the extension module for any other) and its test.
"""

from __future__ import annotations

from typing import Tuple

from trainers.models.spec import ModelError, ModelSpec
from trainers.registry import Registry, is_reference

_MODELS: Registry[ModelSpec] = Registry("model", ModelSpec, ModelError)


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model; an equal spec again is a no-op, another spec under its name a ModelError."""
    return _MODELS.register(spec)


def get(name: str) -> ModelSpec:
    """The spec of model ``name``; an unknown name is a ModelError listing the registered ones.

    A ``"package.module:function"`` name is a factory model: the first time it is asked for,
    its spec is made from the function's signature and registered
    (:func:`trainers.models.factory.factory_spec`), in whichever process asks."""
    if is_reference(name) and name not in _MODELS.names():
        from trainers.models.factory import factory_spec

        register(factory_spec(name))
    return _MODELS.get(name)


def known(name: str) -> bool:
    """Whether ``name`` is a registered model or a factory reference that resolves to one
    (a reference that does not import raises its ModelError: the user wants to know why)."""
    return isinstance(name, str) and (name in names() or (is_reference(name) and bool(get(name))))


def names() -> Tuple[str, ...]:
    """The registered model names, in registration order (the built-ins, alphabetically, first);
    factory models (``package.module:function``) a process has resolved are not names to list."""
    return tuple(name for name in _MODELS.names() if not is_reference(name))


_COUNTS = "trainers.models.counts"
register(ModelSpec("lenet_300_100", "trainers.models.lenet:build_lenet_300_100", f"{_COUNTS}:lenet_300_100",
                   width=300, input_shapes=None, openlth_exempts_output=True))
register(ModelSpec("mcnn", "trainers.models.mcnn:build_mcnn", f"{_COUNTS}:mcnn", width=64))
register(ModelSpec("nin", "trainers.models.nin:build_nin", f"{_COUNTS}:nin", width=192, depth=3, dropout=True))
register(ModelSpec("resnet18", "trainers.models.resnet18:build_resnet18", f"{_COUNTS}:resnet18", width=64))
register(ModelSpec("resnet18k", "trainers.models.resnet:build_resnet18k", f"{_COUNTS}:resnet18k", width=64))
register(ModelSpec("resnet20", "trainers.models.resnet:build_resnet20", f"{_COUNTS}:resnet20", width=16))
register(ModelSpec("resnet32", "trainers.models.resnet:build_resnet32", f"{_COUNTS}:resnet32", width=16))
register(ModelSpec("resnet56", "trainers.models.resnet:build_resnet56", f"{_COUNTS}:resnet56", width=16))
register(ModelSpec("vgg11", "trainers.models.vgg:build_vgg11", f"{_COUNTS}:vgg11", width=64, openlth_exempts_output=True))
register(ModelSpec("vgg16", "trainers.models.vgg:build_vgg16", f"{_COUNTS}:vgg16", width=64, openlth_exempts_output=True))

"""The model registry: ``build(name, num_classes, width=..., depth=..., dropout=...)``.

Every model returns logits of shape (batch, num_classes) and has
``margin_layers()``: the named modules whose outputs are the hidden representations of its
blocks (for the margin signature of Jiang et al. 2019; the input layer is the measure's
business). The convolutional models take 3×32×32 inputs; ``lenet_300_100`` takes any input
shape (``input_shape``, which the training loop reads from the dataset: 1×28×28 for MNIST).
Weights start from PyTorch's default initialization.

| name          | width (default)                | depth      | dropout |
|---------------|--------------------------------|------------|---------|
| ``nin``       | channels of every block (192)  | blocks (3) | yes     |
| ``mcnn``      | c of mCNN(c) (64)              | no         | no      |
| ``resnet18``  | first-stage channels (64)      | no         | no      |
| ``resnet18k`` | k of ResNet18k (64)            | no         | no      |
| ``resnet20``  | first-stage channels (16)      | no         | no      |
| ``resnet32``  | first-stage channels (16)      | no         | no      |
| ``resnet56``  | first-stage channels (16)      | no         | no      |
| ``lenet_300_100`` | first hidden layer (300; the second has width/3) | no | no |
| ``vgg11``     | first-stage channels (64)      | no         | no      |
| ``vgg16``     | first-stage channels (64)      | no         | no      |
"""

from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from torch import nn

from trainers.models.lenet import build_lenet_300_100
from trainers.models.mcnn import build_mcnn
from trainers.models.nin import build_nin
from trainers.models.resnet18 import build_resnet18
from trainers.models.resnet import build_resnet18k, build_resnet20, build_resnet32, build_resnet56
from trainers.models.vgg import build_vgg11, build_vgg16

HYPERPARAMETERS = ("width", "depth", "dropout")
IMAGE_SHAPE = (3, 32, 32)


class ModelError(ValueError):
    """An unknown model name or a bad/unsupported hyperparameter; the message is one line."""


# Read-only: the registry is fixed at import time.
MODELS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(
    {
        "nin": build_nin,
        "mcnn": build_mcnn,
        "resnet18": build_resnet18,
        "resnet18k": build_resnet18k,
        "resnet20": build_resnet20,
        "resnet32": build_resnet32,
        "resnet56": build_resnet56,
        "lenet_300_100": build_lenet_300_100,
        "vgg11": build_vgg11,
        "vgg16": build_vgg16,
    }
)


def names() -> List[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def get(name: str) -> Callable[..., nn.Module]:
    """The builder ``fn(num_classes, **hyperparameters) -> nn.Module`` registered as ``name``."""
    if not isinstance(name, str) or name not in MODELS:
        raise ModelError(f"model: unknown name {name!r}, allowed: {', '.join(names())}")
    return MODELS[name]


def supported_hyperparameters(name: str) -> List[str]:
    """The hyperparameters (of ``width``, ``depth``, ``dropout``) that model ``name`` accepts."""
    parameters = inspect.signature(get(name)).parameters
    return [h for h in HYPERPARAMETERS if h in parameters]


def build(
    name: str,
    num_classes: int,
    *,
    width: Optional[int] = None,
    depth: Optional[int] = None,
    dropout: float = 0.0,
    input_shape: Optional[Sequence[int]] = None,
) -> nn.Module:
    """A freshly initialized model ``name`` with ``num_classes`` outputs.

    Only the hyperparameters that are set (``width``/``depth`` not None, ``dropout`` != 0)
    are passed on; the others take the model's defaults. Setting one the model does not
    support, or a value out of range, raises ``ModelError``. ``input_shape`` (C, H, W) of one
    example goes to the models that take it; the others accept only 3×32×32.
    """
    builder = get(name)
    if not _is_int(num_classes) or num_classes < 1:
        raise ModelError(f"model {name}: num_classes must be a positive integer, got {num_classes!r}")
    given: Dict[str, Any] = {}
    for key, value in (("width", width), ("depth", depth)):
        if value is not None:
            if not _is_int(value) or value < 1:
                raise ModelError(f"model {name}: hyperparameter {key!r} must be a positive integer, got {value!r}")
            given[key] = value
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise ModelError(f"model {name}: hyperparameter 'dropout' must be a rate in [0, 1), got {dropout!r}")
    if dropout != 0:
        given["dropout"] = float(dropout)
    allowed = supported_hyperparameters(name)
    for key in given:
        if key not in allowed:
            raise ModelError(
                f"model {name}: hyperparameter {key!r} is not supported (allowed: {', '.join(allowed) or 'none'})"
            )
    if input_shape is not None:
        input_shape = tuple(int(v) for v in input_shape)
        if "input_shape" in inspect.signature(builder).parameters:
            given["input_shape"] = input_shape
        elif input_shape != IMAGE_SHAPE:
            raise ModelError(f"model {name}: takes {'×'.join(map(str, IMAGE_SHAPE))} inputs, the dataset's are "
                             f"{'×'.join(map(str, input_shape))} (lenet_300_100 takes any shape)")
    return builder(num_classes, **given)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

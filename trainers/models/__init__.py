"""Building a registered model: ``build(name, num_classes, width=..., depth=..., dropout=...)``.

The models are registered in :mod:`trainers.models.registry` (one torch-free
:class:`ModelSpec` each); a model's implementation is imported only when it is built, so
importing this package imports no torch.

A model may also be named ``package.module:function``, the function that builds it (a factory
model, :mod:`trainers.models.factory`: its spec is read from the function's signature).

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
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from trainers.models import registry
from trainers.models.factory import takes_classes_first
from trainers.models.spec import HYPERPARAMETERS, IMAGE_SHAPE, ModelError, ModelSpec
from trainers.registry import resolve
from trainers.values import is_int

if TYPE_CHECKING:
    from torch import nn

__all__ = ["HYPERPARAMETERS", "IMAGE_SHAPE", "ModelError", "ModelSpec", "build", "get", "names", "register",
           "supported_hyperparameters"]

register = registry.register


def names() -> List[str]:
    """Registered model names, sorted."""
    return sorted(registry.names())


def get(name: str) -> ModelSpec:
    """The spec of the model registered as ``name`` (its builder is ``spec.builder``)."""
    return registry.get(name)


def supported_hyperparameters(name: str) -> List[str]:
    """The hyperparameters (of ``width``, ``depth``, ``dropout``) that model ``name`` accepts."""
    return list(get(name).hyperparameters)


def build(
    name: str,
    num_classes: int,
    *,
    width: Optional[int] = None,
    depth: Optional[int] = None,
    dropout: float = 0.0,
    input_shape: Optional[Sequence[int]] = None,
) -> "nn.Module":
    """A freshly initialized model ``name`` with ``num_classes`` outputs.

    Only the hyperparameters that are set (``width``/``depth`` not None, ``dropout`` != 0)
    are passed on; the others take the model's defaults. Setting one the model does not
    support, or a value out of range, raises ``ModelError``. ``input_shape`` (C, H, W) of one
    example goes to the builders that take it; it must be one of the spec's ``input_shapes``.
    """
    spec = get(name)
    if not is_int(num_classes) or num_classes < 1:
        raise ModelError(f"model {name}: num_classes must be a positive integer, got {num_classes!r}")
    spec.check(width=width, depth=depth, dropout=dropout)
    given: Dict[str, Any] = {key: value for key, value in (("width", width), ("depth", depth)) if value is not None}
    if dropout != 0:
        given["dropout"] = float(dropout)
    builder = resolve(spec.builder)
    parameters = inspect.signature(builder).parameters
    if input_shape is not None:
        input_shape = tuple(int(v) for v in input_shape)
        if not spec.takes_shape(input_shape):
            raise ModelError(f"model {name}: takes {_shapes(spec)} inputs, the dataset's are {_shape(input_shape)} "
                             f"(any shape: {', '.join(n for n in names() if get(n).input_shapes is None) or 'none'})")
        if "input_shape" in parameters:
            given["input_shape"] = input_shape
    if takes_classes_first(list(parameters.values())):
        return builder(num_classes, **given)
    return builder(num_classes=num_classes, **given)  # a factory such as torchvision.models:resnet18


def _shape(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape))


def _shapes(spec: ModelSpec) -> str:
    return " or ".join(_shape(shape) for shape in spec.input_shapes or ())

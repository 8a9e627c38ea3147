"""What a model is, without torch: :class:`ModelSpec`, one per registered model
(:mod:`trainers.models.registry`), enough for ``genzoo sweep plan`` to validate a sweep file,
count each model's parameters and check its input shape without building it.

A leaf: imports none of the model implementations, so it stays torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

from trainers.registry import is_reference
from trainers.values import is_int, is_number

HYPERPARAMETERS = ("width", "depth", "dropout")
# The CIFAR-shaped images every convolutional model of genzoo takes: one example's (C, H, W).
IMAGE_SHAPE = (3, 32, 32)

Shape = Tuple[int, ...]


class ModelError(ValueError):
    """An unknown model name or a bad/unsupported hyperparameter; the message is one line."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry.

    ``builder``: ``"module:attr"`` of ``fn(num_classes, *, <its hyperparameters>) -> nn.Module``
    (given ``input_shape=`` too when its signature has it); imported only to build.
    ``parameter_count``: ``"module:attr"`` of a torch-free
    ``fn(classes, *, width, depth, input_shape) -> int`` (weights, biases, BatchNorm scales and
    shifts; not buffers), given the defaults below for the unset hyperparameters; None: counted
    on a built model (a ``module:function`` factory model, :mod:`trainers.models.factory`, whose
    count genzoo cannot know without building it).
    ``width`` / ``depth``: the default of each hyperparameter the model takes (None: it has
    none; both are integers >= 1 when set); ``dropout``: whether it takes a dropout rate (in
    [0, 1), default 0). ``input_shapes``: the one-example (C, H, W) shapes it takes, None for any.
    ``openlth_exempts_output``: whether OpenLTH's default hyperparameters for this architecture
    leave its output layer unpruned (``pruning_layers_to_ignore='fc.weight'`` in its
    models/mnist_lenet.py and models/cifar_vgg.py; its CIFAR ResNets prune it): what IMP's
    ``output_layer: openlth`` does with the model.
    """

    name: str
    builder: str
    parameter_count: Optional[str]
    width: Optional[int] = None
    depth: Optional[int] = None
    dropout: bool = False
    input_shapes: Optional[Tuple[Shape, ...]] = (IMAGE_SHAPE,)
    openlth_exempts_output: bool = False

    def __post_init__(self) -> None:
        where = f"model {self.name}"
        for name in ("builder", "parameter_count"):
            if not is_reference(getattr(self, name)) and not (name == "parameter_count" and self.parameter_count is None):
                raise ModelError(f"{where}: {name} got {getattr(self, name)!r}, allowed: a 'package.module:attr' string")
        for name in ("width", "depth"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise ModelError(f"{where}: {name} got {value!r}, allowed: its default (an integer >= 1) or None")
        for name in ("dropout", "openlth_exempts_output"):
            if not isinstance(getattr(self, name), bool):
                raise ModelError(f"{where}: {name} got {getattr(self, name)!r}, allowed: true or false")
        if self.input_shapes is not None:
            shapes = tuple(tuple(shape) for shape in self.input_shapes) if isinstance(self.input_shapes, (list, tuple)) else ()
            if not shapes or not all(shape and all(is_int(v) and v >= 1 for v in shape) for shape in shapes):
                raise ModelError(f"{where}: input_shapes got {self.input_shapes!r}, allowed: a list of (C, H, W) or None")
            object.__setattr__(self, "input_shapes", shapes)

    @property
    def hyperparameters(self) -> Tuple[str, ...]:
        """The hyperparameters (of ``width``, ``depth``, ``dropout``) the model takes."""
        taken = {"width": self.width is not None, "depth": self.depth is not None, "dropout": self.dropout}
        return tuple(h for h in HYPERPARAMETERS if taken[h])

    def takes_shape(self, shape: Sequence[int]) -> bool:
        return self.input_shapes is None or tuple(shape) in self.input_shapes

    def check(self, *, width: Any = None, depth: Any = None, dropout: Any = 0.0) -> None:
        """Raise :class:`ModelError` for a value out of range or a hyperparameter the model does
        not take (None for width/depth and 0 for dropout mean "not set": always accepted)."""
        where = f"model {self.name}"
        for key, value in (("width", width), ("depth", depth)):
            if value is not None and (not is_int(value) or value < 1):
                raise ModelError(f"{where}: hyperparameter {key!r} must be a positive integer, got {value!r}")
        if not is_number(dropout) or not 0.0 <= dropout < 1.0:
            raise ModelError(f"{where}: hyperparameter 'dropout' must be a rate in [0, 1), got {dropout!r}")
        for key, value in (("width", width), ("depth", depth), ("dropout", dropout or None)):
            if value is not None and key not in self.hyperparameters:
                raise ModelError(f"{where}: hyperparameter {key!r} is not supported "
                                 f"(allowed: {', '.join(self.hyperparameters) or 'none'})")

    def with_defaults(self, width: Optional[int], depth: Optional[int]) -> Tuple[Optional[int], Optional[int]]:
        """``(width, depth)`` with the model's defaults for the unset ones."""
        return (self.width if width is None else width), (self.depth if depth is None else depth)

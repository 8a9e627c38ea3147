"""Factory models: a model named ``"package.module:function"`` instead of a registry name, for
a zoo whose architecture genzoo does not have (``genzoo import``'s ``model`` column, or a sweep
file's ``model:``), without writing a module that registers it.

The function is the model's builder, ``fn(num_classes, *, ...) -> nn.Module``, and its spec is
read from its signature (:func:`factory_spec`):

- it takes the number of classes: positionally as its first parameter, or else by keyword as
  ``num_classes`` (a parameter of that name, or ``**kwargs``: torchvision's builders, such as
  ``torchvision.models:resnet18``, pass it on to the model);
- a parameter ``width`` or ``depth`` makes that a hyperparameter of the model, with the
  parameter's default (an integer >= 1) as the model's default; ``dropout`` makes the dropout
  rate one (its default must be 0: genzoo passes the rate only when it is set);
- ``input_shape``, when it has one, receives the dataset's (C, H, W), and any shape is taken;
- every other parameter must have a default (genzoo passes nothing else).

Its number of parameters is counted on a built model (:func:`built_parameter_count`): genzoo
cannot know it without torch, as it does for its own models. The module must be importable
wherever the model is built (driver, Tune trials, measure tasks): installed, on ``PYTHONPATH``,
or in the folder ``genzoo`` runs from (docs/import.md, "Another architecture").
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from typing import Optional, Tuple

from trainers.models.spec import ModelError, ModelSpec
from trainers.values import is_int


def factory_spec(reference: str) -> ModelSpec:
    """The spec of the factory model ``reference`` (``"package.module:function"``), read from
    the function's signature; one-line ModelError when it does not import or does not fit."""
    module_name, _, attr = reference.partition(":")
    where = f"model: {reference}"
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # as sweep.extensions.load: after everything else, never shadowing
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of a user's module is reported the same way
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise ModelError(f"{where}: the module does not import ({detail}); allowed: a module importable where "
                         "genzoo runs (installed, on PYTHONPATH, or in the folder genzoo runs from)") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ModelError(f"{where}: {module_name} has no function {attr!r}; allowed: a function "
                         "fn(num_classes, ...) -> nn.Module")
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        raise ModelError(f"{where}: its signature cannot be read; allowed: a Python function") from None
    by_keyword = not takes_classes_first(parameters)
    if by_keyword and not any(p.name == "num_classes" or p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
        raise ModelError(f"{where}: it does not take the number of classes; allowed: fn(num_classes, ...), "
                         "fn(*, num_classes, ...) or fn(..., **kwargs)")
    defaults = {}
    for parameter in parameters[0 if by_keyword else 1:]:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if parameter.name in ("input_shape", "num_classes"):
            continue
        if parameter.default is inspect.Parameter.empty:
            raise ModelError(f"{where}: parameter {parameter.name!r} has no default; allowed: defaults for every "
                             "parameter but the first (width and depth: the model's default, an integer >= 1)")
        defaults[parameter.name] = parameter.default
    for name in ("width", "depth"):
        if name in defaults and (not is_int(defaults[name]) or defaults[name] < 1):
            raise ModelError(f"{where}: {name} defaults to {defaults[name]!r}; allowed: an integer >= 1")
    if "dropout" in defaults and defaults["dropout"] not in (0, 0.0):
        raise ModelError(f"{where}: dropout defaults to {defaults['dropout']!r}; allowed: 0 (a rate is passed only "
                         "when a trial sets one)")
    return ModelSpec(name=reference, builder=reference, parameter_count=None, width=defaults.get("width"),
                     depth=defaults.get("depth"), dropout="dropout" in defaults, input_shapes=None)


def takes_classes_first(parameters) -> bool:
    """Whether a builder with these ``inspect`` parameters takes the number of classes as its
    first positional argument (every registered builder does); else it is passed as the keyword
    ``num_classes``."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return bool(parameters) and parameters[0].kind in positional


@functools.lru_cache(maxsize=256)
def built_parameter_count(model: str, classes: int, width: Optional[int], depth: Optional[int],
                          input_shape: Tuple[int, ...]) -> int:
    """The parameters of ``model`` built with these values (weights, biases, BatchNorm scales
    and shifts; not buffers): what the registry's counting functions give for its own models.
    Cached: a sweep or an import asks once per architecture, not once per trial."""
    from trainers import models

    built = models.build(model, classes, width=width, depth=depth, input_shape=input_shape)
    return sum(p.numel() for p in built.parameters())

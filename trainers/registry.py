"""The one registry pattern of trainers: a table name -> spec per kind of extension point
(models in :mod:`trainers.models.registry`, datasets in :mod:`trainers.data.registry`,
training modes in :mod:`trainers.modes.registry`), and the lazy ``"module:attr"``
references that keep the specs torch-free.

A spec is a frozen dataclass that says everything the plan and the validation need without
importing its implementation; the implementation is named by a ``"module:attr"`` string and
imported only when it is built or run. An extension module (the ``extensions:`` list of a
sweep file) calls ``register(spec)`` at import; importing it again, or in another process of
the same sweep, registers an equal spec again, which changes nothing.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Generic, Tuple, Type, TypeVar

Spec = TypeVar("Spec")


class Registry(Generic[Spec]):
    """The specs of one kind, in registration order, keyed by ``spec.name``.

    ``field`` is the config field that names a spec (``model``, ``dataset``, ``mode``): every
    error is one line that starts with it, of type ``error`` (the kind's own ValueError)."""

    def __init__(self, field: str, spec_type: Type[Spec], error: Type[ValueError]):
        self.field = field
        self.spec_type = spec_type
        self.error = error
        self._specs: Dict[str, Spec] = {}

    def register(self, spec: Spec) -> Spec:
        """Add ``spec``; the same spec again is a no-op, another spec under a taken name an error."""
        if not isinstance(spec, self.spec_type):
            raise self.error(f"{self.field}: register got {type(spec).__name__}, allowed: a {self.spec_type.__name__}")
        name = getattr(spec, "name")
        # A factory model is named by its own builder reference (trainers.models.factory).
        named_by_builder = is_reference(name) and getattr(spec, "builder", None) == name
        if not isinstance(name, str) or not (name.isidentifier() or named_by_builder):
            raise self.error(f"{self.field}: got the name {name!r}, allowed: a Python identifier (letters, digits, _)")
        known = self._specs.get(name)
        if known is not None and known != spec:
            raise self.error(f"{self.field}: {name!r} is registered already with another spec; "
                             f"allowed: a new name, or the same spec again")
        self._specs.setdefault(name, spec)
        return spec

    def get(self, name: Any) -> Spec:
        """The spec registered as ``name``; any other value is a one-line error naming the field."""
        if not isinstance(name, str) or name not in self._specs:
            raise self.error(f"{self.field}: got {name!r}, allowed: {', '.join(self.names())}")
        return self._specs[name]

    def names(self) -> Tuple[str, ...]:
        """The registered names, in registration order (the built-ins first)."""
        return tuple(self._specs)


def resolve(reference: str) -> Any:
    """The object a ``"package.module:attr"`` reference names, importing its module."""
    module, _, attr = reference.partition(":")
    return getattr(importlib.import_module(module), attr)


def is_reference(value: Any) -> bool:
    """Whether ``value`` is spelled like a ``"package.module:attr"`` reference."""
    if not isinstance(value, str) or value.count(":") != 1:
        return False
    module, attr = value.split(":")
    return all(part.isidentifier() for part in module.split(".")) and attr.isidentifier()

"""A registered measure family (torch-free: the registry and ``genzoo sweep plan`` use it
without importing the measures themselves)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Family:
    """A registered measure family.

    ``target`` is where its function lives, ``"module:function"``; :attr:`fn` imports it on
    first use. The function is ``fn(ctx: TrialContext, **settings) -> MeasureOutput``.
    ``measures`` names the scalar measures the family yields (a trailing ``/*`` stands for a
    group of features such as ``margin/*``); ``defaults`` are its settings, every one of which
    can be overridden per run and is stored with each result row; ``needs`` is what the
    context must hold besides the model: ``"init"``, ``"early"``, ``"epochs"``; ``tables``
    names the long tables it writes (one file per model under ``<table>/``), which the
    measures job commits before the family's rows.
    """

    name: str
    target: str
    measures: tuple
    defaults: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple = ()
    tables: tuple = ()

    @property
    def fn(self) -> Callable[..., Any]:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

"""A sweep's extensions: the modules its sweep file lists under ``extensions:``, imported
before anything is validated, on the driver, in every Tune trial and in every measure task.

An extension module defines a model, dataset, training mode, measure family or report section
and registers its spec with the registry of that kind (docs/architecture.md, "How to add ...");
importing it is all genzoo does with it. A module is named as Python imports it (``my_zoo.models``),
and must be importable on every node of the cluster: installed, on ``PYTHONPATH``, or in the
folder ``genzoo`` runs from (Ray adds the driver's working folder to its workers' path for each
job; this module adds it to the driver's, as ``python`` does for a script).

Registering a spec is idempotent (an equal spec again is a no-op), so importing an extension in
a process that already imported it changes nothing.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, Sequence, Tuple

# A dotted Python module name: what `import` accepts, and nothing a shell or a path could smuggle in.
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ExtensionError(ValueError):
    """A bad ``extensions:`` entry or a module that does not import; the message is one line."""


def parse(value: Any) -> Tuple[str, ...]:
    """The ``extensions:`` field as a tuple of module names (None: none)."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and _MODULE_NAME.match(v) for v in value):
        raise ExtensionError(f"extensions: got {value!r}, allowed: a list of Python module names (my_zoo.models)")
    files = [v for v in value if v.endswith(".py")]
    if files:
        raise ExtensionError(f"extensions: got {files[0]!r}, allowed: a module name, not a file "
                             f"({files[0][:-3]!r} for {files[0]!r} in the folder genzoo runs from)")
    if len(set(value)) != len(value):
        raise ExtensionError(f"extensions: got {list(value)!r}, allowed: each module once")
    return tuple(value)


def load(names: Sequence[str]) -> None:
    """Import every module of ``names`` in order; a module that does not import is one line
    naming it, what failed, and where genzoo looks."""
    if not names:
        return
    here = os.getcwd()
    if here not in sys.path:
        sys.path.append(here)  # after everything else: a local file never shadows an installed module
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of a user's module is reported the same way
            detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            raise ExtensionError(
                f"extensions: {name!r} does not import ({detail}); allowed: a module importable on every node "
                "(installed, on PYTHONPATH, or in the folder genzoo runs from)"
            ) from None

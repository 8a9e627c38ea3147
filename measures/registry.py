"""The registry of measure families: :func:`register`, :func:`get`, :func:`names`, and the
resolution of a family's settings (:func:`settings_for`).

The built-in families (:data:`measures.specs.BUILTIN`) are registered on import; an extension
module defines its function and its :class:`~measures.spec.MeasureSpec` and calls
:func:`register`. Importing this module imports no measure and no torch.

Every setting is checked for its kind and range as its settings dataclass declares
(:mod:`measures.spec`); settings that bound each other by the class's ``conflicts`` (flatness:
``eps_max >= eps_step``, ``lanczos_steps >= top_k``). A bad value is one line naming
``measures.<family>.<setting>``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional

from measures.spec import MeasureError, MeasureSpec, setting_fields
from measures.specs import BUILTIN
from trainers import yamlio

__all__ = ["FAMILIES", "MeasureError", "MeasureSpec", "check_value", "get", "help_text", "names", "parse_value",
           "register", "settings_for"]

_SPECS: Dict[str, MeasureSpec] = {}
# Every registered family by name, in registration order (a read-only view: use register).
FAMILIES: Mapping[str, MeasureSpec] = MappingProxyType(_SPECS)


def register(spec: MeasureSpec) -> MeasureSpec:
    """Add a family. Registering an equal spec again is a no-op (a module imported twice); a
    different spec under a registered name is an error."""
    if not isinstance(spec, MeasureSpec):
        raise MeasureError(f"measures: register got {spec!r}, allowed: a measures.spec.MeasureSpec")
    known = _SPECS.get(spec.name)
    if known is not None:
        if known.identity() != spec.identity():
            raise MeasureError(f"measures.{spec.name}: already registered as {known.function}, "
                               f"allowed: one spec per family name")
        return known
    _SPECS[spec.name] = spec
    return spec


for _spec in BUILTIN:
    register(_spec)


def names() -> List[str]:
    return list(_SPECS)


def get(name: str) -> MeasureSpec:
    if name not in _SPECS:
        raise MeasureError(f"measures: unknown family {name!r}, allowed: {', '.join(_SPECS)}")
    return _SPECS[name]


def parse_value(text: str) -> Any:
    """A setting typed on a command line, read as YAML with numbers as people type them
    (``1e-3`` and ``.5`` are numbers: :mod:`trainers.yamlio`); an empty text is None."""
    try:
        return yamlio.parse_value(text, source="--set value")
    except yamlio.YamlError as exc:
        raise MeasureError(str(exc)) from None


def check_value(family: str, key: str, value: Any) -> Any:
    """``value`` for setting ``key`` of ``family``, checked against its declared kind and
    range; an int where a number is expected becomes a float."""
    return setting_fields(get(family).settings)[key].checked(f"measures.{family}.{key}", value)


def settings_for(name: str, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The family's defaults updated with ``overrides`` (the dict stored with every row); an
    unknown key or a value of the wrong kind is an error naming ``measures.<family>.<key>``."""
    return get(name).resolve(overrides)


def help_text() -> str:
    """Every family with its settings, defaults and what each allows (``genzoo measure --help``)."""
    lines = []
    for spec in _SPECS.values():
        needs = f" (needs {', '.join(spec.needs)})" if spec.needs else ""
        lines.append(f"{spec.name}{needs}: {', '.join(spec.measures)}")
        defaults = spec.defaults
        for key, setting in setting_fields(spec.settings).items():
            lines.append(f"    {key} = {_shown(defaults[key])}  [{setting.describe()}]")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    """A default as typed on a command line (YAML words for true, false and null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown_table() -> str:
    """Every family's settings as the Markdown table of ``docs/measures.md`` (a test checks
    that the file holds this text)."""
    lines = ["| family | yields | needs | setting | default | allowed |", "|---|---|---|---|---|---|"]
    for spec in _SPECS.values():
        defaults = spec.defaults
        for i, (key, setting) in enumerate(setting_fields(spec.settings).items()):
            head = (f"`{spec.name}`", ", ".join(f"`{m}`" for m in spec.measures), ", ".join(spec.needs)) if i == 0 \
                else ("", "", "")
            allowed = setting.describe().replace("|", "\\|")
            lines.append(f"| {' | '.join(head)} | `{key}` | `{_shown(defaults[key])}` | {allowed} |")
    return "\n".join(lines)

"""The one YAML reader of genzoo: sweep files, ``sweep.yaml``, ``genzoo train FIELD=VALUE``,
``genzoo sweep run PRESET a.b=VALUE`` and ``genzoo measure --set``.

PyYAML implements YAML 1.1, whose floats need a dot: it reads ``1e-3`` and ``5E-4`` as
strings. :class:`Loader` is PyYAML's ``SafeLoader`` with the float rule of YAML 1.2 (``1e-3``,
``1E-3``, ``.5``, ``1.``, ``-2.5e+3``, ``.inf``, ``.nan``) and with duplicate mapping keys
refused (PyYAML keeps the last one silently). Written here rather than taken from a YAML 1.2
library (ruamel.yaml) because it is one resolver and one check on top of the PyYAML genzoo
already depends on, and every other rule (booleans, nulls, ints) stays as people know it.

Errors are :class:`YamlError`: one line naming the source, the line and the column.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

FLOAT_TAG = "tag:yaml.org,2002:float"
MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.2 (core schema) floats: a dot or an exponent is required, so ints stay ints.
FLOAT_PATTERN = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class YamlError(ValueError):
    """Text that is not valid YAML for genzoo; the message is one line with its position."""


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 floats and no duplicate keys."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: PyYAML reports it itself
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(FLOAT_TAG, FLOAT_PATTERN, list("-+0123456789."))


def load(text: str, source: str, *, allow_empty: bool = False) -> Any:
    """The document in ``text``; ``source`` names it in errors (a path, ``sweep.yaml``, an
    argument). An empty document is an error unless ``allow_empty`` (then None)."""
    try:
        document = yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise YamlError(f"{source}: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if document is None and not allow_empty:
        raise YamlError(f"{source}: empty, allowed: a YAML mapping of fields")
    return document


def parse_value(text: str, source: str = "value") -> Any:
    """One value typed on a command line (``1e-3``, ``[8, 16]``, ``true``, ``nin``); an empty
    text is None."""
    if not text.strip():
        return None
    return load(text, source, allow_empty=True)

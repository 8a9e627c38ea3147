"""What a measure family is, without its implementation: :class:`MeasureSpec` and the typed
settings it declares.

Torch-free and importing no measure module, so that ``genzoo sweep plan`` validates a sweep's
``measures:`` block and ``genzoo measure --help`` lists the families without loading torch.
The built-in specs are in :mod:`measures.specs`; the registry is :mod:`measures.registry`.

A family's settings are a frozen dataclass whose fields ARE its defaults, each declared with
its kind and range by one of :func:`flag`, :func:`integer`, :func:`number`, :func:`numbers`,
:func:`choice`, :func:`text` or :func:`custom` (the kind's check lives in the field's
metadata). Settings that bound each other are checked by the class's :meth:`conflicts`, like
a training mode's ``validate``. A bad value is one line naming ``measures.<family>.<setting>``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Type

from trainers.values import is_int, is_number

# Kinds of setting (each checks a value and says what is allowed in an error message).
FLAG, INTEGER, OPTIONAL_INTEGER, NUMBER, NUMBERS, CHOICE, TEXT, CUSTOM = (
    "flag", "integer", "optional integer", "number", "numbers", "choice", "text", "custom")
# What a family may need in its context besides the final model.
NEEDS = ("init", "early", "epochs")


class MeasureError(ValueError):
    """An unknown family or setting, or a bad spec; the message names it and what is allowed."""


class Range:
    """The numbers a setting allows: ``low`` and ``high`` bounds (None: unbounded), each
    inclusive unless ``open_low``/``open_high``; a list setting's every element, and at least
    one of them."""

    def __init__(self, low: Optional[float] = None, high: Optional[float] = None, *, open_low: bool = False,
                 open_high: bool = False) -> None:
        self.low, self.high, self.open_low, self.open_high = low, high, open_low, open_high

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Range) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"Range({self.low}, {self.high}, open_low={self.open_low}, open_high={self.open_high})"

    def __hash__(self) -> int:
        return hash(tuple(vars(self).values()))

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"{'<' if self.open_high else '<='} {self.high:g}"


POSITIVE = Range(0, open_low=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
FRACTION = Range(0, 1, open_low=True)  # (0, 1]
UNIT_INTERVAL = Range(0, 1)  # [0, 1]


@dataclass(frozen=True)
class Setting:
    """How one setting is checked: its ``kind``, the ``range`` of a numeric kind, the
    ``choices`` of a :data:`CHOICE`, the ``check`` of a :data:`CUSTOM` (None when fine, else
    what is allowed) and its ``allows`` (for the help text)."""

    kind: str
    range: Optional[Range] = None
    choices: Tuple[str, ...] = ()
    check: Optional[Callable[[Any], Optional[str]]] = None
    allows: str = ""

    def checked(self, where: str, value: Any) -> Any:
        """``value`` if allowed (a number as a float), else :class:`MeasureError`
        ``<where>: got <value>, allowed: <what>``."""
        if self.kind == CUSTOM:
            allowed = self.check(value)
        elif self.kind == FLAG:
            allowed = None if isinstance(value, bool) else "true or false"
        elif self.kind == INTEGER:
            allowed = None if is_int(value) else "an integer"
        elif self.kind == NUMBER:
            allowed = None if is_number(value) else "a finite number"
            value = float(value) if allowed is None else value
        elif self.kind == CHOICE:
            allowed = None if value in self.choices else ", ".join(self.choices)
        elif self.kind == TEXT:
            allowed = None if isinstance(value, str) else "a string"
        elif self.kind == NUMBERS:
            allowed = None if isinstance(value, (list, tuple)) and all(is_number(v) for v in value) else "a list of numbers"
        else:  # OPTIONAL_INTEGER
            allowed = None if value is None or is_int(value) else "an integer or null"
        if allowed is None and value is not None and self.range is not None:
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if not values or not all(self.range.contains(v) for v in values):
                allowed = self._out_of_range()
        if allowed is not None:
            raise MeasureError(f"{where}: got {value!r}, allowed: {allowed}")
        return value

    def _out_of_range(self) -> str:
        if self.kind == NUMBERS:
            return f"a non-empty list of numbers {self.range.text()}"
        if self.kind == NUMBER:
            return f"a number {self.range.text()}"
        return f"an integer {self.range.text()}" + (" or null" if self.kind == OPTIONAL_INTEGER else "")

    def describe(self) -> str:
        """What the setting allows, for ``genzoo measure --help`` and the docs."""
        if self.kind == CHOICE:
            return " | ".join(self.choices)
        what = {FLAG: "true or false", INTEGER: "integer", OPTIONAL_INTEGER: "integer or null", NUMBER: "number",
                NUMBERS: "list of numbers", TEXT: "string", CUSTOM: self.allows}[self.kind]
        return f"{what} {self.range.text()}" if self.range is not None else what


def _field(default: Any, setting: Setting) -> Any:
    return dataclasses.field(default=default, metadata={"setting": setting})


def flag(default: bool) -> Any:
    """A true/false setting."""
    return _field(default, Setting(FLAG))


def integer(default: Optional[int], range: Optional[Range] = None, *, optional: bool = False) -> Any:
    """An integer setting (``optional``: null allowed too) in ``range``."""
    return _field(default, Setting(OPTIONAL_INTEGER if optional else INTEGER, range))


def number(default: float, range: Optional[Range] = None) -> Any:
    """A finite number (an integer given is stored as a float) in ``range``."""
    return _field(default, Setting(NUMBER, range))


def numbers(default: Tuple[float, ...], range: Optional[Range] = None) -> Any:
    """A list of finite numbers, each in ``range`` (and at least one when there is a range).
    The default is a tuple (a dataclass default must be immutable); the settings dict holds a list."""
    return _field(tuple(default), Setting(NUMBERS, range))


def choice(default: str, choices: Tuple[str, ...]) -> Any:
    """One of ``choices`` (each family module's constant in :mod:`measures.constants`)."""
    return _field(default, Setting(CHOICE, choices=tuple(choices)))


def text(default: str) -> Any:
    """Any string."""
    return _field(default, Setting(TEXT))


def custom(default: Any, check: Callable[[Any], Optional[str]], allows: str) -> Any:
    """A setting that takes more than one kind of value: ``check(value)`` is None when fine,
    else what is allowed; ``allows`` says what is allowed in the help text."""
    return _field(default, Setting(CUSTOM, check=check, allows=allows))


@dataclass(frozen=True)
class MeasureSettings:
    """Base of every family's settings dataclass."""

    def conflicts(self) -> Optional[Tuple[str, str]]:
        """(setting, what is allowed) for settings that bound each other and disagree; None when fine."""
        return None


def setting_fields(settings: Type[MeasureSettings]) -> Dict[str, Setting]:
    """Every setting of a settings class, in declaration order, with its check."""
    return {f.name: f.metadata["setting"] for f in dataclasses.fields(settings)}


@dataclass(frozen=True)
class MeasureSpec:
    """A measure family.

    ``name``: the family's name (``measures.<name>`` in a sweep file, ``--set <name>.x=...``).
    ``function``: where its function lives, ``"module:attr"``, imported on first use by
    :attr:`fn`; it is ``fn(ctx: TrialContext, **settings) -> MeasureOutput``.
    ``measures``: the scalar measures it yields (a trailing ``/*`` stands for a group of
    features such as ``margin/*``). ``settings``: its settings dataclass (fields are the
    defaults; every one can be overridden per run and is stored with each result row).
    ``needs``: what the context must hold besides the model (:data:`NEEDS`). ``tables``: the
    long tables it writes (one file per model under ``<table>/``), committed before its rows.
    """

    name: str
    function: str
    measures: Tuple[str, ...]
    settings: Type[MeasureSettings]
    needs: Tuple[str, ...] = ()
    tables: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"measures.{self.name}"
        module, _, attribute = self.function.partition(":")
        if not module or not attribute:
            raise MeasureError(f"{where}: function {self.function!r}, allowed: 'module:attribute'")
        if not (isinstance(self.settings, type) and issubclass(self.settings, MeasureSettings)
                and dataclasses.is_dataclass(self.settings)):
            raise MeasureError(f"{where}: settings {self.settings!r}, allowed: a MeasureSettings dataclass")
        untyped = [f.name for f in dataclasses.fields(self.settings) if "setting" not in f.metadata]
        if untyped:
            raise MeasureError(f"{where}.{untyped[0]}: no kind, allowed: declared with measures.spec "
                               f"flag/integer/number/numbers/choice/text/custom")
        unknown = [need for need in self.needs if need not in NEEDS]
        if unknown:
            raise MeasureError(f"{where}: needs {unknown[0]!r}, allowed: {', '.join(NEEDS)}")

    @property
    def defaults(self) -> Dict[str, Any]:
        """The defaults as the settings dict every row stores: declaration order, a list
        setting as a list (a fresh dict each call)."""
        return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
                for f in dataclasses.fields(self.settings)}

    def identity(self) -> Tuple[Any, ...]:
        """What makes two specs the same family: everything but the settings class's identity
        (its module, name and every field's default and kind), so a module imported again
        (a reload, a second import path) registers the same spec."""
        fields = tuple((f.name, repr(f.default), f.metadata["setting"].kind, repr(f.metadata["setting"].range),
                        f.metadata["setting"].choices) for f in dataclasses.fields(self.settings))
        return (self.name, self.function, self.measures, self.needs, self.tables, self.settings.__module__,
                self.settings.__qualname__, fields)

    @property
    def fn(self) -> Callable[..., Any]:
        module, _, attribute = self.function.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def resolve(self, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """The defaults updated with ``overrides``, each checked; an unknown key, a value of
        the wrong kind or settings in conflict is an error naming ``measures.<family>.<key>``."""
        fields = setting_fields(self.settings)
        overrides = dict(overrides or {})
        for key in overrides:
            if key not in fields:
                raise MeasureError(
                    f"measures.{self.name}.{key}: unknown setting, allowed: {', '.join(fields) or 'none'}")
            overrides[key] = fields[key].checked(f"measures.{self.name}.{key}", overrides[key])
        settings = {**self.defaults, **overrides}
        bad = self.settings(**settings).conflicts()
        if bad is not None:
            key, allowed = bad
            raise MeasureError(f"measures.{self.name}.{key}: got {settings[key]!r}, allowed: {allowed}")
        return settings

"""The typed settings of every training mode, and the registry of mode names.

Torch-free on purpose: a sweep file is validated (``genzoo sweep plan``) without importing
torch. The callbacks that implement each mode live in :mod:`trainers.modes.callbacks`.

A mode's settings are a frozen dataclass. Like :class:`trainers.config.TrainConfig`, only
the fields that differ from their defaults enter the trial id, so adding a defaulted setting
renames no trial.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Dict, Mapping, Type


class ModeError(ValueError):
    """A bad mode name or setting: one line naming the field and what is allowed."""


@dataclass(frozen=True)
class StandardSettings:
    """``standard``: plain training; one model per trial, ``final``. No settings."""

    def validate(self, prefix: str) -> None:
        return None


@dataclass(frozen=True)
class EmaSettings:
    """``ema``: plain training that also keeps an exponential moving average of the weights.

    After every optimizer step from epoch ``start_epoch`` (0-based) on,
    ``ema ← decay·ema + (1 − decay)·w`` for every floating-point tensor of the state dict
    (parameters and BatchNorm running statistics, as timm's ``ModelEmaV2`` does); integer
    buffers are copied. The average starts as a copy of the weights at the first step it is
    updated. The trial yields two models: ``final`` (the trained weights) and ``ema``.
    The averaged weights are the mode's own state, saved in ``state.pt`` every epoch.
    """

    decay: float = 0.99
    start_epoch: int = 0

    def validate(self, prefix: str) -> None:
        if not _is_number(self.decay) or not 0.0 < self.decay < 1.0:
            raise ModeError(f"{prefix}decay: got {self.decay!r}, allowed: a number in (0, 1)")
        if not _is_int(self.start_epoch) or self.start_epoch < 0:
            raise ModeError(f"{prefix}start_epoch: got {self.start_epoch!r}, allowed: an integer >= 0")


SETTINGS: Mapping[str, Type] = MappingProxyType({
    "standard": StandardSettings,
    "ema": EmaSettings,
})


def names() -> list:
    return list(SETTINGS)


def parse_settings(mode: Any, values: Any, *, prefix: str = "mode_settings.") -> Any:
    """The settings dataclass of ``mode`` built from a mapping (a YAML block), validated.

    An unknown mode, an unknown key or a bad value is a :class:`ModeError` naming it.
    """
    if mode not in SETTINGS:
        raise ModeError(f"mode: got {mode!r}, allowed: {', '.join(SETTINGS)}")
    cls = SETTINGS[mode]
    if isinstance(values, cls):
        values.validate(prefix)
        return values
    values = {} if values is None else values
    if not isinstance(values, Mapping):
        raise ModeError(f"{prefix.rstrip('.')}: got {values!r}, allowed: a mapping of {mode} settings")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in known:
            raise ModeError(f"{prefix}{key}: unknown setting of mode {mode}, allowed: {', '.join(known) or 'none'}")
    converted = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            value = values[f.name]
            # YAML reads "decay: 1" as an int; the id must not depend on the spelling.
            if isinstance(f.default, float) and _is_int(value):
                value = float(value)
            converted[f.name] = value
    settings = cls(**converted)
    settings.validate(prefix)
    return settings


def non_default(settings: Any) -> Dict[str, Any]:
    """The settings fields that differ from their defaults (what enters the trial id)."""
    return {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if getattr(settings, f.name) != f.default
    }


def to_dict(settings: Any) -> Dict[str, Any]:
    return dataclasses.asdict(settings)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

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


@dataclass(frozen=True)
class ImpSettings:
    """``imp``: iterative magnitude pruning with learning-rate rewinding (Renda et al. 2020, as
    used by Paul et al. 2022, "Pruning's effect on generalization through the lens of
    training and regularization", Section 2).

    Level 0 trains the dense network for ``epochs``. Each level k = 1..``levels`` then
    removes ``prune_fraction`` of the *remaining* conv and linear weights by global magnitude
    (so the model keeps round((1 − prune_fraction)^k · N) of the N weights), resets the
    learning-rate schedule to its value at epoch ``rewind_epoch`` (t; the paper's t = 10, and
    0 for LeNet on MNIST) and retrains from the current weights for ``epochs − t`` epochs with
    a fresh optimizer state. Every level is a model of the zoo (``level_00`` is dense).
    ``levels = 20`` at 20% reaches 1.2% of the weights, about where the paper stops.
    """

    levels: int = 20
    prune_fraction: float = 0.2
    rewind_epoch: int = 10

    def validate(self, prefix: str) -> None:
        if not _is_int(self.levels) or self.levels < 1:
            raise ModeError(f"{prefix}levels: got {self.levels!r}, allowed: an integer >= 1")
        if not _is_number(self.prune_fraction) or not 0.0 < self.prune_fraction < 1.0:
            raise ModeError(f"{prefix}prune_fraction: got {self.prune_fraction!r}, allowed: a fraction in (0, 1)")
        if not _is_int(self.rewind_epoch) or self.rewind_epoch < 0:
            raise ModeError(f"{prefix}rewind_epoch: got {self.rewind_epoch!r}, allowed: an integer >= 0")

    def check_against(self, epochs: int, prefix: str) -> None:
        if self.rewind_epoch >= epochs:
            raise ModeError(f"{prefix}rewind_epoch: got {self.rewind_epoch}, allowed: an epoch in [0, {epochs}) "
                            f"(train.epochs is {epochs})")


@dataclass(frozen=True)
class ExtendedDenseSettings:
    """``extended_dense`` (Paul et al. 2022, Section 5.1): the control of ``imp`` that trains
    exactly as long, with the same replayed (cyclic) learning-rate schedule and the same
    optimizer resets, but removes no weight. Level k ends after as many optimizer steps as
    ``imp``'s level k; every level is a model (``level_00`` ... ``level_<levels>``)."""

    levels: int = 20
    rewind_epoch: int = 10

    def validate(self, prefix: str) -> None:
        ImpSettings(levels=self.levels, rewind_epoch=self.rewind_epoch).validate(prefix)

    def check_against(self, epochs: int, prefix: str) -> None:
        ImpSettings(levels=self.levels, rewind_epoch=self.rewind_epoch).check_against(epochs, prefix)


SETTINGS: Mapping[str, Type] = MappingProxyType({
    "standard": StandardSettings,
    "ema": EmaSettings,
    "imp": ImpSettings,
    "extended_dense": ExtendedDenseSettings,
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

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
from typing import Any, Dict, Mapping, Tuple, Type


class ModeError(ValueError):
    """A bad mode name or setting: one line naming the field and what is allowed."""


@dataclass(frozen=True)
class StandardSettings:
    """``standard``: plain training; one model per trial, ``final``. No settings."""

    def validate(self, prefix: str) -> None:
        return None

    def total_epochs(self, epochs: int) -> int:
        """How many epochs the loop runs in all for a config of ``epochs`` epochs."""
        return epochs


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

    def total_epochs(self, epochs: int) -> int:
        """Level 0 trains ``epochs``; each of the ``levels`` levels retrains ``epochs − t``."""
        return epochs + self.levels * (epochs - self.rewind_epoch)

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

    def total_epochs(self, epochs: int) -> int:
        return ImpSettings(levels=self.levels, rewind_epoch=self.rewind_epoch).total_epochs(epochs)


PDT_SCORES = ("l2", "l1", "activation", "ebn")
PDT_TARGETS = ("S", "R", "L")
PDT_INTERVENTIONS = ("prune", "zero_return_zero", "zero_return_saved", "gaussian")


@dataclass(frozen=True)
class PruneDuringTrainingSettings:
    """``prune_during_training``: structured (filter) pruning during training, or pruning-like
    noise injection, with the instability of every event (Bartoldson et al. 2020, "The
    generalization-stability tradeoff in neural network pruning"; callbacks and every formula
    in :mod:`trainers.modes.prune_during_training`).

    ``layers``: conv module names, or one selector: ``last_conv:K`` (the last K conv layers
    outside shortcuts) or ``block_convs`` (every conv layer of every block of ``blocks``,
    shortcuts excluded). Schedule of layer i: events after ``start_epochs[i]``,
    ``start_epochs[i] + period``, ... up to ``end_epochs[i]`` (epochs done at the event), or
    the explicit ``event_epochs`` for every layer; a one-value tuple holds for every layer.
    Amount: ``fractions`` (total fraction of the layer's filters removed by its last event,
    the paper's p_i) or ``rates`` (fraction of the layer's *original* filters removed per
    event; when given they replace ``fractions``). The defaults are the paper's VGG11 setting (Appendix B.1,
    r = 40; needs at least 276 epochs). ``score``: l2, l1 (filter norms), activation
    (moving average of the mean |activation| after BatchNorm, decay ``activation_decay``,
    updated every ``activation_every`` batches: the paper's 0.9 and 10) or ebn (E[BN],
    Appendix B.2.1). ``target``: S (smallest), R (random, seeded), L (largest). ``scratch``:
    the final masks from the first step. ``intervention``: prune, or noise for
    ``noise_batches`` batches instead (Section 3.3): zero_return_zero, zero_return_saved,
    gaussian (the first batch of an epoch gets ``epoch_noise_factor`` times the variance).
    ``prune_batchnorm``: zero a removed filter's bias and BatchNorm scale and shift too.
    """

    layers: Tuple[str, ...] = ("last_conv:4",)
    fractions: Tuple[float, ...] = (0.3, 0.3, 0.3, 0.9)
    rates: Tuple[float, ...] = ()
    start_epochs: Tuple[int, ...] = (3, 4, 5, 6)
    end_epochs: Tuple[int, ...] = (150, 150, 150, 275)
    period: int = 40
    event_epochs: Tuple[int, ...] = ()
    score: str = "l2"
    target: str = "S"
    activation_decay: float = 0.9
    activation_every: int = 10
    scratch: bool = False
    intervention: str = "prune"
    noise_batches: int = 1
    epoch_noise_factor: float = 79.0
    prune_batchnorm: bool = True

    def __post_init__(self) -> None:
        for name in ("layers", "fractions", "rates", "start_epochs", "end_epochs", "event_epochs"):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
            if isinstance(value, tuple) and name in ("fractions", "rates"):
                value = tuple(float(v) if _is_int(v) else v for v in value)
            object.__setattr__(self, name, value)

    def validate(self, prefix: str) -> None:
        def bad(name: str, allowed: str) -> ModeError:
            return ModeError(f"{prefix}{name}: got {getattr(self, name)!r}, allowed: {allowed}")

        if not isinstance(self.layers, tuple) or not self.layers or \
                not all(isinstance(v, str) and v for v in self.layers) or len(set(self.layers)) != len(self.layers):
            raise bad("layers", "a non-empty list of distinct conv layer names, or [last_conv:K] or [block_convs]")
        selector = self.layers[0]
        if selector.startswith("last_conv:"):
            count = selector.split(":", 1)[1]
            if len(self.layers) != 1 or not count.isdigit() or int(count) < 1:
                raise bad("layers", "last_conv:K with K an integer >= 1, alone in the list")
        if selector == "block_convs" and len(self.layers) != 1:
            raise bad("layers", "block_convs alone in the list")
        for name in ("fractions", "rates"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(_is_number(v) and 0.0 < v < 1.0 for v in value):
                raise bad(name, "a list of fractions in (0, 1)")
        if not self.fractions and not self.rates:
            raise bad("fractions", "a non-empty list of fractions in (0, 1) (or give rates)")
        for name in ("start_epochs", "end_epochs", "event_epochs"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(_is_int(v) and v >= 1 for v in value):
                raise bad(name, "a list of epochs >= 1")
        if self.event_epochs:
            if list(self.event_epochs) != sorted(set(self.event_epochs)):
                raise bad("event_epochs", "increasing epochs >= 1")
        elif not self.start_epochs:
            raise bad("start_epochs", "a non-empty list of epochs >= 1 (or give event_epochs)")
        if not _is_int(self.period) or self.period < 1:
            raise bad("period", "an integer >= 1")
        explicit = not self.layers[0].startswith("last_conv:") and self.layers[0] != "block_convs"
        count = len(self.layers) if explicit else (
            int(self.layers[0].split(":", 1)[1]) if self.layers[0].startswith("last_conv:") else None)
        schedule = () if self.event_epochs else ("start_epochs", "end_epochs")
        for name in ("rates" if self.rates else "fractions", *schedule):
            value = getattr(self, name)
            if len(value) > 1 and count is not None and len(value) != count:
                raise bad(name, f"one value, or one per layer ({count})")
            if len(value) > 1 and count is None:
                raise bad(name, "one value (block_convs selects a model-dependent number of layers)")
        if not self.event_epochs:
            ends = self.end_epochs or self.start_epochs
            width = max(len(self.start_epochs), len(ends))
            for i in range(width):
                start = self.start_epochs[i if len(self.start_epochs) > 1 else 0]
                end = ends[i if len(ends) > 1 else 0]
                if end < start:
                    raise bad("end_epochs", f"epochs >= the start epochs {list(self.start_epochs)}")
        if self.score not in PDT_SCORES:
            raise bad("score", ", ".join(PDT_SCORES))
        if self.target not in PDT_TARGETS:
            raise bad("target", ", ".join(PDT_TARGETS))
        if not _is_number(self.activation_decay) or not 0.0 <= self.activation_decay < 1.0:
            raise bad("activation_decay", "a number in [0, 1)")
        if not _is_int(self.activation_every) or self.activation_every < 1:
            raise bad("activation_every", "an integer >= 1")
        if not isinstance(self.scratch, bool):
            raise bad("scratch", "true or false")
        if self.intervention not in PDT_INTERVENTIONS:
            raise bad("intervention", ", ".join(PDT_INTERVENTIONS))
        if self.scratch and self.intervention != "prune":
            raise bad("scratch", "false unless intervention is prune")
        if not _is_int(self.noise_batches) or self.noise_batches < 1:
            raise bad("noise_batches", "an integer >= 1")
        if not _is_number(self.epoch_noise_factor) or self.epoch_noise_factor < 1.0:
            raise bad("epoch_noise_factor", "a number >= 1")
        if not isinstance(self.prune_batchnorm, bool):
            raise bad("prune_batchnorm", "true or false")

    def all_event_epochs(self) -> Tuple[int, ...]:
        """Every epoch (epochs done) at which some layer has an event, increasing."""
        if self.event_epochs:
            return self.event_epochs
        ends = self.end_epochs or self.start_epochs
        width = max(len(self.start_epochs), len(ends))
        epochs = set()
        for i in range(width):
            epochs.update(self.layer_event_epochs(i))
        return tuple(sorted(epochs))

    def layer_event_epochs(self, index: int) -> Tuple[int, ...]:
        """The event epochs of the index-th selected layer."""
        if self.event_epochs:
            return self.event_epochs
        ends = self.end_epochs or self.start_epochs
        start = self.start_epochs[index if len(self.start_epochs) > 1 else 0]
        end = ends[index if len(ends) > 1 else 0]
        return tuple(range(start, end + 1, self.period))

    def check_against(self, epochs: int, prefix: str) -> None:
        last = max(self.all_event_epochs())
        if last >= epochs:
            name = "event_epochs" if self.event_epochs else "end_epochs"
            raise ModeError(f"{prefix}{name}: an event after epoch {last}, allowed: events after epochs in "
                            f"[1, {epochs - 1}] (train.epochs is {epochs})")


SETTINGS: Mapping[str, Type] = MappingProxyType({
    "standard": StandardSettings,
    "ema": EmaSettings,
    "imp": ImpSettings,
    "extended_dense": ExtendedDenseSettings,
    "prune_during_training": PruneDuringTrainingSettings,
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


def total_epochs(settings: Any, epochs: int) -> int:
    """The epochs a mode runs in all (``epochs`` for modes that do not say otherwise)."""
    return settings.total_epochs(epochs) if hasattr(settings, "total_epochs") else epochs


def to_dict(settings: Any) -> Dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(settings).items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

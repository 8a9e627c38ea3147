"""The typed settings of every built-in training mode, and the helpers every mode's settings share.

Torch-free on purpose: a sweep file is validated (``genzoo sweep plan``) without importing
torch. The modes are registered in :mod:`trainers.modes.registry`; the callbacks that
implement them live in :mod:`trainers.modes.callbacks` and the modules next to it.

A mode's settings are a frozen dataclass. Like :class:`trainers.config.TrainConfig`, only
the fields that differ from their defaults enter the trial id, so adding a defaulted setting
renames no trial.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from trainers.models import registry as models
from trainers.modes.spec import ModeError
from trainers.values import is_int, is_number

__all__ = ["ModeError", "StandardSettings", "EmaSettings", "ImpSettings", "ExtendedDenseSettings",
           "PruneDuringTrainingSettings", "non_default", "total_epochs", "to_dict"]


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
        if not is_number(self.decay) or not 0.0 < self.decay < 1.0:
            raise ModeError(f"{prefix}decay: got {self.decay!r}, allowed: a number in (0, 1)")
        if not is_int(self.start_epoch) or self.start_epoch < 0:
            raise ModeError(f"{prefix}start_epoch: got {self.start_epoch!r}, allowed: an integer >= 0")


IMP_OUTPUT_LAYER = ("openlth", "prune", "exempt")


@dataclass(frozen=True)
class ImpSettings:
    """``imp``: iterative magnitude pruning with learning-rate rewinding (Renda et al. 2020, as
    used by Jin, Carbin, Roy, Frankle and Dziugaite 2022, "Pruning's effect on generalization
    through the lens of training and regularization", Section 2).

    Level 0 trains the dense network for ``epochs``. Each level k = 1..``levels`` then
    removes ``prune_fraction`` of the *remaining* prunable weights by global magnitude
    (so the model keeps round((1 − prune_fraction)^k · N) of the N prunable weights), resets
    the learning-rate schedule to its value at epoch ``rewind_epoch`` (t; the paper's t = 10,
    and 0 for LeNet on MNIST) and retrains from the current weights for ``epochs − t`` epochs
    with a fresh optimizer state. Every level is a model of the zoo (``level_00`` is dense).
    ``levels = 20`` at 20% reaches 1.2% of the weights, about where the paper stops.

    Prunable weights: every conv and linear weight, except the output layer (the model's last
    linear layer) when ``output_layer`` says so: ``openlth`` (default; the paper ran OpenLTH,
    whose default hyperparameters exempt the output layer of LeNet and VGG,
    ``pruning_layers_to_ignore='fc.weight'``, and prune it in its ResNets: here the models whose
    spec says ``openlth_exempts_output``, lenet_300_100, vgg11 and vgg16, exempt it, every other
    model prunes it), ``exempt`` or ``prune``
    (every model; ``prune`` is genzoo before issue 22). At level 20 an exempt output layer
    leaves LeNet-300-100 with 4,058 of its 266,200 weights, against 3,070 when it is pruned.
    """

    levels: int = 20
    prune_fraction: float = 0.2
    rewind_epoch: int = 10
    output_layer: str = "openlth"

    def validate(self, prefix: str) -> None:
        if not is_int(self.levels) or self.levels < 1:
            raise ModeError(f"{prefix}levels: got {self.levels!r}, allowed: an integer >= 1")
        if not is_number(self.prune_fraction) or not 0.0 < self.prune_fraction < 1.0:
            raise ModeError(f"{prefix}prune_fraction: got {self.prune_fraction!r}, allowed: a fraction in (0, 1)")
        if not is_int(self.rewind_epoch) or self.rewind_epoch < 0:
            raise ModeError(f"{prefix}rewind_epoch: got {self.rewind_epoch!r}, allowed: an integer >= 0")
        if self.output_layer not in IMP_OUTPUT_LAYER:
            raise ModeError(f"{prefix}output_layer: got {self.output_layer!r}, allowed: {', '.join(IMP_OUTPUT_LAYER)}")

    def exempts_output_layer(self, model: str) -> bool:
        """Whether the output layer of a model named ``model`` stays unpruned."""
        if self.output_layer == "openlth":
            return models.get(model).openlth_exempts_output
        return self.output_layer == "exempt"

    def total_epochs(self, epochs: int) -> int:
        """Level 0 trains ``epochs``; each of the ``levels`` levels retrains ``epochs − t``."""
        return epochs + self.levels * (epochs - self.rewind_epoch)

    def check_against(self, epochs: int, prefix: str) -> None:
        if self.rewind_epoch >= epochs:
            raise ModeError(f"{prefix}rewind_epoch: got {self.rewind_epoch}, allowed: an epoch in [0, {epochs}) "
                            f"(train.epochs is {epochs})")


@dataclass(frozen=True)
class ExtendedDenseSettings:
    """``extended_dense`` (Jin et al. 2022, Section 5.1): the control of ``imp`` that trains
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
PDT_COUNT_RULES = ("ceil", "round")
PDT_EVENT_AFTER = ("epoch_index", "epochs_done")


@dataclass(frozen=True)
class PruneDuringTrainingSettings:
    """``prune_during_training``: structured (filter) pruning during training, or pruning-like
    noise injection, with the instability of every event (Bartoldson et al. 2020, "The
    generalization-stability tradeoff in neural network pruning"; callbacks and every formula
    in :mod:`trainers.modes.prune_during_training`).

    ``layers``: conv module names, or one selector: ``last_conv:K`` (the last K conv layers
    outside shortcuts) or ``block_convs`` (every conv layer of every block of ``blocks``,
    shortcuts excluded).

    Schedule of layer i (Appendix A): events at ``start_epochs[i]``, ``start_epochs[i] +
    period``, ... up to ``end_epochs[i]`` (the authors' ``range(s, e + 1, r)``), or the explicit
    ``event_epochs`` for every layer; a one-value tuple holds for every layer. ``event_after``
    says what such an epoch e means: ``epoch_index`` (default; the paper's s_i and e_i as the
    authors' code reads them): e is the 0-based index of a training epoch and the event comes
    right after it, after e + 1 epochs of training (s = 3: after 4 epochs); ``epochs_done``:
    the event comes after e epochs (genzoo before issue 22, one epoch earlier).

    Amount: ``fractions`` (total fraction of the layer's filters removed by its last event,
    the paper's p_i) or ``rates`` (fraction of the layer's *original* filters removed per
    event; when given they replace ``fractions``). ``count_rule`` (how many filters each event
    removes): ``ceil`` (default; Appendix A and the authors' code: of n filters, m = ⌈(1 − p)·n⌉
    remain at the end and ⌈m + (n − m)(K − j)/K⌉ after event j of K) or ``round`` (genzoo
    before issue 22: round(j·(n − m)/K) removed after event j, Python's rounding). The defaults
    are the paper's VGG11 setting (Appendix B.1, r = 40; the last event comes after 247 epochs, so at least 248).

    ``score``: l2, l1 (filter norms), activation (moving average of the mean |activation| after
    BatchNorm, decay ``activation_decay``, updated every ``activation_every`` batches: the
    paper's 0.9 and 10) or ebn (E[BN], Appendix B.2.1). ``target``: S (smallest), R (random,
    seeded), L (largest). ``scratch``: the final masks from the first step.
    ``prune_batchnorm``: zero a removed filter's bias and BatchNorm scale and shift too.

    ``intervention``: prune, or noise instead (Section 3.3, Appendix D), on filters chosen
    like pruning targets among those never chosen before (the authors' mask): for
    ``noise_batches`` = N training batches (the paper's "Zeroing N", "Gaussian N"):
    zero_return_zero (Figure 5 top: the new targets' weights zeroed, they train on from zero),
    zero_return_saved (Figure D.2: every filter ever targeted, with its BatchNorm scale and
    shift, zeroed; then weights, scale, shift and running statistics restored), gaussian
    (Figure 5 bottom: N(0, σ²) added to the new targets before each batch, σ the standard
    deviation of the layer's first never-targeted filter; "Gaussian 1" is one draw).
    ``eval_noise_batches`` = T (default 79, the authors' Figure 5 runs: 10,000 CIFAR-10 test
    images at batch 128): in the authors' code the noise is also added before every *test*
    batch of the window, which with the weights fixed is one draw of T·σ² after the event and
    one of 2T·σ² at each later epoch boundary (their loop tests before and after its pruning
    step every epoch); Appendix D.1. "Gaussian 1" is the exception the paper states: one draw,
    whatever T. 0 leaves out the test batches.
    """

    layers: Tuple[str, ...] = ("last_conv:4",)
    fractions: Tuple[float, ...] = (0.3, 0.3, 0.3, 0.9)
    rates: Tuple[float, ...] = ()
    start_epochs: Tuple[int, ...] = (3, 4, 5, 6)
    end_epochs: Tuple[int, ...] = (150, 150, 150, 275)
    period: int = 40
    event_epochs: Tuple[int, ...] = ()
    event_after: str = "epoch_index"
    count_rule: str = "ceil"
    score: str = "l2"
    target: str = "S"
    activation_decay: float = 0.9
    activation_every: int = 10
    scratch: bool = False
    intervention: str = "prune"
    noise_batches: int = 1
    eval_noise_batches: int = 79
    prune_batchnorm: bool = True

    def __post_init__(self) -> None:
        for name in ("layers", "fractions", "rates", "start_epochs", "end_epochs", "event_epochs"):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
            if isinstance(value, tuple) and name in ("fractions", "rates"):
                value = tuple(float(v) if is_int(v) else v for v in value)
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
            if not isinstance(value, tuple) or not all(is_number(v) and 0.0 < v < 1.0 for v in value):
                raise bad(name, "a list of fractions in (0, 1)")
        if not self.fractions and not self.rates:
            raise bad("fractions", "a non-empty list of fractions in (0, 1) (or give rates)")
        if self.event_after not in PDT_EVENT_AFTER:
            raise bad("event_after", ", ".join(PDT_EVENT_AFTER))
        if self.count_rule not in PDT_COUNT_RULES:
            raise bad("count_rule", ", ".join(PDT_COUNT_RULES))
        first = self._first_epoch()
        for name in ("start_epochs", "end_epochs", "event_epochs"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(is_int(v) and v >= first for v in value):
                raise bad(name, f"a list of epochs >= {first} (event_after: {self.event_after})")
        if self.event_epochs:
            if list(self.event_epochs) != sorted(set(self.event_epochs)):
                raise bad("event_epochs", f"increasing epochs >= {first}")
        elif not self.start_epochs:
            raise bad("start_epochs", f"a non-empty list of epochs >= {first} (or give event_epochs)")
        if not is_int(self.period) or self.period < 1:
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
        if not is_number(self.activation_decay) or not 0.0 <= self.activation_decay < 1.0:
            raise bad("activation_decay", "a number in [0, 1)")
        if not is_int(self.activation_every) or self.activation_every < 1:
            raise bad("activation_every", "an integer >= 1")
        if not isinstance(self.scratch, bool):
            raise bad("scratch", "true or false")
        if self.intervention not in PDT_INTERVENTIONS:
            raise bad("intervention", ", ".join(PDT_INTERVENTIONS))
        if self.scratch and self.intervention != "prune":
            raise bad("scratch", "false unless intervention is prune")
        if not is_int(self.noise_batches) or self.noise_batches < 1:
            raise bad("noise_batches", "an integer >= 1")
        if not is_int(self.eval_noise_batches) or self.eval_noise_batches < 0:
            raise bad("eval_noise_batches", "an integer >= 0")
        if not isinstance(self.prune_batchnorm, bool):
            raise bad("prune_batchnorm", "true or false")

    def _first_epoch(self) -> int:
        """The smallest schedule value: 0 (after the first epoch) with ``epoch_index``, 1 with
        ``epochs_done``; an event before any training would measure nothing."""
        return 0 if self.event_after == "epoch_index" else 1

    def _offset(self) -> int:
        """Epochs done at an event minus its schedule value (1 with ``epoch_index``)."""
        return 1 if self.event_after == "epoch_index" else 0

    def all_event_epochs(self) -> Tuple[int, ...]:
        """Every number of epochs done at which some layer has an event, increasing (the loop
        runs an event at the start of the 0-based epoch with that index)."""
        if self.event_epochs:
            return self.layer_event_epochs(0)
        ends = self.end_epochs or self.start_epochs
        width = max(len(self.start_epochs), len(ends))
        epochs = set()
        for i in range(width):
            epochs.update(self.layer_event_epochs(i))
        return tuple(sorted(epochs))

    def layer_schedule(self, index: int) -> Tuple[int, ...]:
        """The index-th selected layer's schedule as written (``range(s, e + 1, r)`` or
        ``event_epochs``), in the convention ``event_after`` names."""
        if self.event_epochs:
            return self.event_epochs
        ends = self.end_epochs or self.start_epochs
        start = self.start_epochs[index if len(self.start_epochs) > 1 else 0]
        end = ends[index if len(ends) > 1 else 0]
        return tuple(range(start, end + 1, self.period))

    def layer_event_epochs(self, index: int) -> Tuple[int, ...]:
        """The epochs done at each event of the index-th selected layer."""
        return tuple(epoch + self._offset() for epoch in self.layer_schedule(index))

    def check_against(self, epochs: int, prefix: str) -> None:
        last = max(self.all_event_epochs())
        if last >= epochs:
            name = "event_epochs" if self.event_epochs else "end_epochs"
            largest = epochs - 1 - self._offset()
            raise ModeError(f"{prefix}{name}: an event after {last} epochs of training, allowed: schedule epochs "
                            f"up to {largest} (event_after: {self.event_after}; train.epochs is {epochs}, and an "
                            f"event needs an epoch of training after it)")


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

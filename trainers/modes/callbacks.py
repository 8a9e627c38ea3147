"""The base class of every training mode's callbacks, ``standard``'s and ``ema``'s, and
:func:`build`, which finds a mode's callbacks through its spec (:mod:`trainers.modes.registry`).

The training loop (:func:`trainers.train.train`) calls a mode at fixed points and saves the
mode's own state (:meth:`ModeCallbacks.state_dict`, tensors and plain containers only) in
every ``state.pt``, so a run stopped after any epoch and resumed is the run that never
stopped. A mode also says which models the run yields (:meth:`ModeCallbacks.models`): every
model is a ``(trial_id, model_id)`` of the zoo, with its own checkpoint ``<model_id>.pt``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from trainers.config import TrainConfig
from trainers.modes import registry, settings as mode_settings
from trainers.registry import resolve

FINAL = "final"

Weights = Dict[str, torch.Tensor]


def cpu_weights(model: torch.nn.Module) -> Weights:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


class ModeCallbacks:
    """``standard``: plain training, one model (``final``) after the last epoch.

    Subclasses override what they need. ``state`` is the loop's :class:`trainers.train.TrainState`
    (model, optimizer, epoch, step, masks, records).
    """

    def __init__(self, config: TrainConfig):
        self.config = config
        self.settings = config.mode_settings

    # the schedule ----------------------------------------------------------------------
    def total_epochs(self) -> int:
        """How many epochs the loop runs in all (defined by the mode's settings)."""
        return mode_settings.total_epochs(self.settings, self.config.epochs)

    def lr_epoch(self, epoch: int) -> int:
        """The epoch of ``config``'s learning-rate schedule that epoch ``epoch`` (0-based) uses."""
        return epoch

    # state ---------------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None

    # hooks ---------------------------------------------------------------------------------
    def on_epoch_start(self, state) -> None:
        return None

    def on_step_end(self, state) -> None:
        return None

    def on_epoch_end(self, state, record: Dict[str, Any]) -> None:
        return None

    def run_ends(self, state) -> bool:
        """Whether the epoch just trained (``state.epoch`` done) is the run's last: the mode's
        last epoch, or the one whose training loss reached ``stop_at_train_loss``."""
        return state.epoch == self.total_epochs() or state.stopping

    def produces_model_after(self, epochs_done: int) -> bool:
        """Whether :meth:`models` yields a model once ``epochs_done`` epochs are done (the loop
        evaluates such epochs on the full sets whatever the evaluation cadence)."""
        return epochs_done == self.total_epochs()

    def models(self, state) -> Dict[str, Weights]:
        """The models completed at the end of the epoch just trained (``state.epoch`` done),
        as model_id -> CPU state dict; empty when none is."""
        if self.run_ends(state):
            return {FINAL: cpu_weights(state.model)}
        return {}

    def model_info(self, model_id: str) -> Dict[str, Any]:
        """Extra columns of a model's row in the models table (columns of ``MODEL_SCHEMA``
        in ``sweep/store.py``; e.g. a pruning-during-training run's mean stability)."""
        return {}

    def tables(self) -> Dict[str, list]:
        """The mode's own per-trial tables so far (table name -> rows as dicts of plain
        values), e.g. one row per pruning event. They must be derivable from the mode's state
        (so a resumed run has the same rows); the store writes each as
        ``<table>/<trial_id>.parquet`` with every epoch's commit, before ``state.pt``."""
        return {}


class Ema(ModeCallbacks):
    """``ema``: see :class:`trainers.modes.settings.EmaSettings`."""

    EMA = "ema"

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.average: Dict[str, torch.Tensor] = {}

    def state_dict(self) -> Dict[str, Any]:
        return {"average": {k: v.detach().cpu() for k, v in self.average.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.average = dict(state.get("average", {}))

    @torch.no_grad()
    def on_step_end(self, state) -> None:
        if state.epoch < self.settings.start_epoch:
            return
        current = state.model.state_dict()
        if not self.average:
            self.average = {k: v.detach().clone() for k, v in current.items()}
            return
        decay = self.settings.decay
        for name, value in current.items():
            average = self.average[name]
            if average.device != value.device:
                average = self.average[name] = average.to(value.device)
            if value.is_floating_point():
                average.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                average.copy_(value)

    def models(self, state) -> Dict[str, Weights]:
        if not self.run_ends(state):
            return {}
        final = cpu_weights(state.model)
        averaged = {k: v.detach().to("cpu", copy=True) for k, v in self.average.items()} or dict(final)
        return {FINAL: final, self.EMA: averaged}


def build(config: TrainConfig) -> ModeCallbacks:
    """The callbacks of ``config.mode``, fresh (no state): the class its spec names
    (:mod:`trainers.modes.registry`), imported here, when a run starts, so that no mode
    module is imported by another's import (they all subclass :class:`ModeCallbacks`)."""
    return resolve(registry.get(config.mode).callbacks)(config)

"""The callbacks of ``imp`` (iterative magnitude pruning with learning-rate rewinding) and of
its control ``extended_dense``; their settings and the paper behind them are in
:class:`trainers.modes.settings.ImpSettings` and :class:`~trainers.modes.settings.ExtendedDenseSettings`.

The run is one flat sequence of epochs: level 0 is epochs ``0 .. E−1`` (E = ``config.epochs``);
level k ≥ 1 is the next ``E − t`` epochs (t = ``rewind_epoch``), which replay the schedule's
epochs ``t .. E−1`` (:meth:`Imp.lr_epoch`). At the start of level k the optimizer state
(momentum, Adam moments) is reset, as a fresh optimizer per level does in OpenLTH's lottery
runner, and ``imp`` prunes. The masks live in the loop's state (saved in ``state.pt``), so a
run stopped in the middle of a level resumes bit-for-bit; the level is a function of the epoch.
"""

from __future__ import annotations

from typing import Dict, Optional

from trainers import pruning
from trainers.config import TrainConfig
from trainers.modes.callbacks import ModeCallbacks, Weights, cpu_weights


def level_name(level: int) -> str:
    return f"level_{level:02d}"


class ExtendedDense(ModeCallbacks):
    """``extended_dense``: the schedule of ``imp`` without pruning."""

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.rewind = self.settings.rewind_epoch
        self.retrain = config.epochs - self.rewind  # epochs of every level after the first

    def lr_epoch(self, epoch: int) -> int:
        if epoch < self.config.epochs:
            return epoch
        return self.rewind + (epoch - self.config.epochs) % self.retrain

    def level_starting_at(self, epoch: int) -> Optional[int]:
        """The level k >= 1 whose first epoch is ``epoch`` (0-based), else None."""
        offset = epoch - self.config.epochs
        if offset >= 0 and offset % self.retrain == 0 and offset // self.retrain < self.settings.levels:
            return offset // self.retrain + 1
        return None

    def level_ending_after(self, epochs_done: int) -> Optional[int]:
        """The level that ends when ``epochs_done`` epochs are done, else None."""
        if epochs_done == self.config.epochs:
            return 0
        offset = epochs_done - self.config.epochs
        if offset > 0 and offset % self.retrain == 0:
            return offset // self.retrain
        return None

    def on_epoch_start(self, state) -> None:
        level = self.level_starting_at(state.epoch)
        if level is not None:
            state.optimizer.state.clear()
            self.start_level(state, level)

    def start_level(self, state, level: int) -> None:
        return None

    def produces_model_after(self, epochs_done: int) -> bool:
        return self.level_ending_after(epochs_done) is not None

    def models(self, state) -> Dict[str, Weights]:
        level = self.level_ending_after(state.epoch)
        return {} if level is None else {level_name(level): cpu_weights(state.model)}


class Imp(ExtendedDense):
    """``imp``: at the start of level k, keep the round((1 − p)^k · N) largest-magnitude
    prunable weights among those still kept (global ranking, ties broken by position, see
    :func:`trainers.pruning.global_magnitude_masks`); N counts the conv and linear weights
    but the output layer's when the settings exempt it (``output_layer``, OpenLTH's default
    for LeNet and VGG), which then has no mask; removed weights stay zero (the loop re-applies
    the masks after every optimizer step)."""

    def keep_fraction(self, level: int) -> float:
        return (1.0 - self.settings.prune_fraction) ** level

    def exempt(self, model) -> tuple:
        """The weight names IMP never prunes in ``model``."""
        if self.settings.exempts_output_layer(self.config.model):
            return (pruning.output_layer_weight(model),)
        return ()

    def start_level(self, state, level: int) -> None:
        state.masks = pruning.global_magnitude_masks(
            state.model, self.keep_fraction(level), existing_masks=state.masks or None,
            exclude=self.exempt(state.model))
        pruning.apply_masks(state.model, state.masks)

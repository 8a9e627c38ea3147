"""Measures read off the training run: the negative sum of training losses and the final
train loss.

- ``sum_of_train_losses`` (Ru et al. 2020, "Speedy performance estimation for neural
  architecture search", SoTL; used negated by the prunability paper, section 5.1):
  −Σ_t L_t over every training epoch t, L_t the epoch's mean minibatch train loss (the
  ``minibatch_loss`` of each per-epoch record, i.e. the loss the optimizer saw, with
  augmentation and the model in train mode). Negative, so larger means "trained faster".
- ``train_loss`` (prunability paper, A.2): the mean cross-entropy of the final model over the
  full training set, no augmentation, model in eval mode with the BatchNorm running statistics
  as trained (``measures.common.evaluate``). ``recalibrate_bn=True`` first re-estimates the
  running statistics on the training set (``recalibrated_copy``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Sequence

import torch

from measures.common import EVAL_BATCH_SIZE, evaluate, recalibrated_copy
from measures.context import MeasureOutput, TrialContext


class TrainingMeasureError(ValueError):
    """Epoch records or settings the training measures cannot use."""


def sum_of_train_losses(epochs: Sequence[Mapping[str, Any]]) -> float:
    """−Σ_t ``minibatch_loss`` over the per-epoch records (Ru et al. 2020, SoTL, negated as in
    the prunability paper). A diverged run (non-finite loss) gives a non-finite value."""
    if not epochs:
        raise TrainingMeasureError("epochs: empty; sum_of_train_losses needs the per-epoch records of the run")
    seen: set = set()
    losses: List[float] = []
    for position, record in enumerate(epochs):
        if "minibatch_loss" not in record or record["minibatch_loss"] is None:
            raise TrainingMeasureError(f"epochs: record {position} has no 'minibatch_loss'")
        epoch = record.get("epoch", position)
        if epoch in seen:
            raise TrainingMeasureError(f"epochs: epoch {epoch} appears twice; records must be one per epoch")
        seen.add(epoch)
        losses.append(float(record["minibatch_loss"]))
    if not all(math.isfinite(loss) for loss in losses):
        return math.nan
    return -math.fsum(losses)


@torch.no_grad()
def training(ctx: TrialContext, *, recalibrate_bn: bool = False, batch_size: int = EVAL_BATCH_SIZE) -> MeasureOutput:
    """The training family: ``sum_of_train_losses`` from ``ctx.epochs`` and ``train_loss`` of
    ``ctx.model`` on ``(ctx.train_x, ctx.train_y)`` (definitions in the module docstring)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise TrainingMeasureError(f"batch_size: got {batch_size!r}, allowed: a positive int")
    model = recalibrated_copy(ctx.model, ctx.train_x, batch_size) if recalibrate_bn else ctx.model
    loss, accuracy = evaluate(model, ctx.train_x, ctx.train_y, batch_size)
    values = {"sum_of_train_losses": sum_of_train_losses(ctx.epochs), "train_loss": loss}
    info: Dict[str, Any] = {"train_acc": accuracy, "num_epochs": len(ctx.epochs)}
    return MeasureOutput(values=values, info=info)

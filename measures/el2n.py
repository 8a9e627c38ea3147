"""EL2N scores (Paul, Ganguli & Dziugaite 2021, "Deep learning on a data diet", the Error L2
Norm), used by "Pruning's effect on generalization through the lens of training and
regularization" (Jin, Carbin, Roy, Frankle & Dziugaite 2022, section 3, Method) to group training examples by their influence on generalization.

For each training example, with p = softmax(f(x)) under the model at the early checkpoint
(``ctx.early_state``, the earliest saved early epoch) and y the label it was trained on (the
noisy label where the label was corrupted):

    EL2N(x, y) = ||p − onehot(y)||₂.

Paul, Ganguli & Dziugaite average the score over several independent runs; a zoo member has one run, so the
score is that run's. The model is in eval mode (BatchNorm running statistics, no dropout) and
the training set is not augmented.

Outputs: the scalar ``el2n`` (mean score over the training set) and the table ``el2n`` with
one row per training example: ``index`` (position in the training set), ``score``, ``noisy``
(whether its label was corrupted; all false when the context has no noise mask) and ``loss``,
its cross-entropy under the final model, so the analysis can average the final train loss per
EL2N percentile group (the paper's figures 2 and 5).
"""

from __future__ import annotations

from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from measures.common import EVAL_BATCH_SIZE
from measures.context import MeasureOutput, TrialContext
from trainers.data import pass_slices


class EL2NError(ValueError):
    """A context or input the EL2N measure cannot use."""


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in float32; float32 and float64 as they are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _check(x: torch.Tensor, y: torch.Tensor, batch_size: Any) -> None:
    if len(x) == 0 or len(x) != len(y):
        raise EL2NError(f"x, y: got {len(x)} inputs and {len(y)} labels, allowed: the same positive number")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise EL2NError(f"batch_size: got {batch_size!r}, allowed: a positive int")


@torch.inference_mode()
def el2n_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """||softmax(f(x)) − onehot(y)||₂ per example (Paul, Ganguli & Dziugaite 2021), model in eval mode,
    in float32 or the logits' wider dtype, on the inputs' device."""
    _check(x, y, batch_size)
    model.eval()
    scores: List[torch.Tensor] = []
    for part in pass_slices(len(x), batch_size, x.device):
        logits = _at_least_float32(model(x[part]))
        error = logits.softmax(dim=1) - F.one_hot(y[part], logits.shape[1]).to(logits.dtype)
        scores.append(error.norm(dim=1))
    return torch.cat(scores)


@torch.inference_mode()
def per_example_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Cross-entropy of every example, model in eval mode, float32 or the logits' wider dtype."""
    _check(x, y, batch_size)
    model.eval()
    return torch.cat([
        F.cross_entropy(_at_least_float32(model(x[part])), y[part], reduction="none")
        for part in pass_slices(len(x), batch_size, x.device)
    ])


def el2n(ctx: TrialContext, *, batch_size: int = EVAL_BATCH_SIZE) -> MeasureOutput:
    """The el2n family: scalar ``el2n`` and table ``el2n`` (module docstring) from the model at
    ``ctx.early_state`` and, for the ``loss`` column, the final ``ctx.model``."""
    if ctx.early_state is None:
        raise EL2NError("el2n needs an early checkpoint: set checkpoint_epochs in the sweep")
    scores = el2n_scores(ctx.model_with(ctx.early_state), ctx.train_x, ctx.train_y, batch_size)
    losses = per_example_loss(ctx.model, ctx.train_x, ctx.train_y, batch_size)
    n = len(scores)
    if ctx.noisy is None:
        noisy = [False] * n
    elif len(ctx.noisy) != n:
        raise EL2NError(f"noisy: has {len(ctx.noisy)} entries, allowed: one per training example ({n})")
    else:
        noisy = [bool(v) for v in ctx.noisy.tolist()]
    table = {
        "index": list(range(n)),
        "score": scores.double().cpu().tolist(),
        "noisy": noisy,
        "loss": losses.double().cpu().tolist(),
    }
    info: Dict[str, Any] = {"early_epoch": ctx.early_epoch, "num_examples": n}
    return MeasureOutput(values={"el2n": float(scores.double().mean())}, tables={"el2n": table}, info=info)

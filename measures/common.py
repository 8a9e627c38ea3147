"""Helpers shared by the measures: which tensors are "weights", seeded generators, losses.

Conventions every measure follows (see the measures issue):

- "Weights" are the ``weight`` tensors of ``nn.Conv2d`` and ``nn.Linear`` layers: no biases,
  no BatchNorm parameters.
- "Train loss" is the mean cross-entropy over the given examples, no augmentation, the model
  in eval mode (BatchNorm uses the running statistics it was trained with).
- Inputs ``x`` are float tensors already normalized the way the model was trained, ``y`` are
  int64 labels, both on the model's device.
- Every random draw comes from a ``torch.Generator`` seeded from the trial id and the
  measure's name, so a measure is reproducible.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Tuple

import torch
from torch import nn

from measures.constants import EVAL_BATCH_SIZE  # noqa: F401 (defined once, torch-free)
from trainers import data
from trainers.pruning import prunable_parameters


def weight_parameters(model: nn.Module) -> List[Tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs of the weight tensors of every conv and linear layer (the
    same tensors that pruning masks cover)."""
    return prunable_parameters(model)


def seed_for(trial_id: str, purpose: str) -> int:
    """A 63-bit seed derived from the trial id and what the randomness is for
    (:func:`trainers.data.derive_seed`, the one seed derivation of genzoo)."""
    return data.derive_seed(trial_id, purpose)


def generator_for(trial_id: str, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed_for(trial_id, purpose))
    return generator


def seeded_indices(trial_id: str, purpose: str, count: int, size: Optional[int]) -> torch.Tensor:
    """Sorted CPU indices of ``size`` of ``count`` examples, drawn without replacement: the
    first ``size`` entries of one ``torch.randperm(count)`` from ``generator_for(trial_id,
    purpose)`` on the CPU, so the same examples whatever device the data is on. All of them
    (``arange(count)``) when ``size`` is None or at least ``count``. Callers check ``size``
    themselves, so that an error names their own setting."""
    if size is None or size >= count:
        return torch.arange(count)
    return torch.randperm(count, generator=generator_for(trial_id, purpose))[:size].sort().values


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> Tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on prepared inputs ``(x, y)``, leaving the
    model in eval mode: :func:`trainers.data.evaluate`, the one evaluation of genzoo."""
    model.eval()
    return data.evaluate(model, x, y, batch_size=batch_size)


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> None:
    """Re-estimate every BatchNorm's running mean and variance on ``x`` (no augmentation).

    The running statistics are reset and replaced by the cumulative average over the batches
    of ``x`` (``momentum=None``); only the BatchNorm layers run in train mode, so dropout
    stays off. Leaves the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    model.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                chunk = x[start:start + batch_size]
                if len(chunk) >= 2:  # a batch variance needs two examples
                    model(chunk)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()


def recalibrated_copy(model: nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on ``x``.

    The statistics are reset and recomputed as the cumulative average over the batches of
    ``x`` (``momentum=None``; each batch's mean and unbiased variance weigh equally). Only
    the BatchNorm layers are in train mode during the pass, so dropout stays off. The copy is
    returned in eval mode; ``model`` is not changed.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size: got {batch_size}, allowed: an int >= 2 (BatchNorm needs a batch variance)")
    copy_ = copy.deepcopy(model)
    recalibrate_batchnorm(copy_, x, batch_size)
    return copy_

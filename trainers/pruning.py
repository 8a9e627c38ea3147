"""Pruning masks over the weights of conv and linear layers.

A mask set is a ``dict[str, BoolTensor]`` keyed by parameter name (as in
``model.named_parameters()``), ``True`` where a weight is kept. Only the ``weight`` tensors of
``nn.Conv2d`` and ``nn.Linear`` layers are prunable: biases and BatchNorm parameters never are
(the convention of the measures issue and of magnitude pruning in Blalock et al., 2020).

Used by the prunability measures (one-shot global magnitude pruning, Definition 1 of
*Robustness to pruning predicts generalization*) and by the training loop (pruning during
training, iterative magnitude pruning). Torch only; never imports ``measures`` or Ray.
"""

from __future__ import annotations

from typing import Collection, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

Masks = Dict[str, torch.Tensor]


class PruningError(ValueError):
    """A bad pruning argument: the message is one line naming it and what is allowed."""


def prunable_parameters(model: nn.Module) -> List[Tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs of the ``weight`` of every ``nn.Conv2d`` and ``nn.Linear``.

    Names are those of ``model.named_parameters()``; the order is ``model.named_modules()``
    order, which fixes the order of the concatenated weight vector (and so tie-breaking).
    """
    return [
        (f"{module_name}.weight" if module_name else "weight", module.weight)
        for module_name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]


def _check_fraction(keep_fraction: float) -> None:
    if not 0.0 <= float(keep_fraction) <= 1.0:
        raise PruningError(f"keep_fraction must be in [0, 1], got {keep_fraction!r}")


def kept_target(keep_fraction: float, total: int) -> int:
    """How many weights a mask keeping ``keep_fraction`` of ``total`` keeps: round(f·n).

    Python's ``round`` (half to even) so that the count is a pure function of (f, n).
    """
    _check_fraction(keep_fraction)
    return int(round(float(keep_fraction) * total))


def _split_flat(flat: torch.Tensor, params: List[Tuple[str, nn.Parameter]]) -> Masks:
    masks: Masks = {}
    start = 0
    for name, param in params:
        masks[name] = flat[start:start + param.numel()].view(param.shape).to(param.device)
        start += param.numel()
    return masks


def _check_mask_names(masks: Mapping[str, torch.Tensor], names: List[str], argument: str) -> None:
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise PruningError(f"{argument} has keys that are not conv/linear weights: {unknown[:3]}")


def output_layer_weight(model: nn.Module) -> str:
    """The parameter name of the output layer's weight: the last ``nn.Linear`` in
    ``named_modules`` order (LeNet's ``fc3``, VGG's ``fc``); an error for a model without one."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        raise PruningError("the model has no linear output layer to exempt")
    return f"{linear[-1]}.weight" if linear[-1] else "weight"


def global_magnitude_masks(
    model: nn.Module,
    keep_fraction: float,
    *,
    existing_masks: Optional[Mapping[str, torch.Tensor]] = None,
    exclude: Collection[str] = (),
) -> Masks:
    """One-shot global magnitude pruning: keep the round(f·n) largest |w| over all weights.

    All prunable weights (conv and linear ``weight`` tensors) are ranked together by absolute
    value, as in the magnitude pruning of *Robustness to pruning predicts generalization*
    (Section 4, Definition 1: "the parameters with the smallest absolute magnitude are set to
    0"). ``n`` is the total number of prunable weights and ``f = keep_fraction``.

    Ties are broken deterministically by position: among equal magnitudes the weight that
    comes first in the concatenation of the flattened weights (``prunable_parameters`` order,
    row-major inside a tensor) is kept first.

    ``existing_masks`` (for iterative pruning): weights already pruned stay pruned and are
    never chosen; ``keep_fraction`` is still a fraction of all ``n`` weights, so it must not
    ask for more weights than the existing masks keep. Weights without an entry count as kept.

    ``exclude``: weight names that are not pruned at all (OpenLTH's
    ``pruning_layers_to_ignore``): they are left out of the ranking and of ``n``, and the
    masks have no entry for them.
    """
    unknown = sorted(set(exclude) - {name for name, _ in prunable_parameters(model)})
    if unknown:
        raise PruningError(f"exclude has names that are not conv/linear weights: {unknown[:3]}")
    params = [(name, param) for name, param in prunable_parameters(model) if name not in exclude]
    names = [name for name, _ in params]
    if not params:
        raise PruningError("model has no conv or linear weights to prune")
    with torch.no_grad():
        scores = torch.cat([param.detach().abs().flatten().float() for _, param in params])
        if existing_masks is not None:
            _check_mask_names(existing_masks, names, "existing_masks (the excluded weights have none)")
            alive = torch.cat([
                existing_masks[name].to(scores.device).flatten().bool()
                if name in existing_masks else torch.ones(param.numel(), dtype=torch.bool, device=scores.device)
                for name, param in params
            ])
            # |w| >= 0, so -1 ranks every already-pruned weight below every surviving one.
            scores = torch.where(alive, scores, torch.full_like(scores, -1.0))
            available = int(alive.sum())
        else:
            available = scores.numel()
        keep = kept_target(keep_fraction, scores.numel())
        if keep > available:
            raise PruningError(
                f"keep_fraction {keep_fraction} keeps {keep} weights but existing_masks keep only {available}")
        order = torch.sort(scores, descending=True, stable=True).indices
        flat = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
        flat[order[:keep]] = True
    return _split_flat(flat, params)


def random_masks(model: nn.Module, keep_fraction: float, *, generator: torch.Generator) -> Masks:
    """Keep round(f·n) prunable weights chosen uniformly at random (random pruning).

    The weights kept are the first round(f·n) entries of ``torch.randperm(n, generator)``
    drawn on the generator's device, so the same generator state gives the same mask on any
    model device, and masks drawn from equally seeded generators are nested across fractions.
    """
    params = prunable_parameters(model)
    if not params:
        raise PruningError("model has no conv or linear weights to prune")
    total = sum(param.numel() for _, param in params)
    keep = kept_target(keep_fraction, total)
    order = torch.randperm(total, generator=generator, device=generator.device)
    flat = torch.zeros(total, dtype=torch.bool, device=generator.device)
    flat[order[:keep]] = True
    return _split_flat(flat, params)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero, in place, every weight whose mask entry is ``False``.

    Equivalent to multiplying by the mask, but a pruned weight becomes exactly 0 even if it
    was inf or NaN. Parameters without a mask entry are left alone; a key that is not a
    conv/linear weight is an error.
    """
    params = dict(prunable_parameters(model))
    _check_mask_names(masks, list(params), "masks")
    with torch.no_grad():
        for name, mask in masks.items():
            param = params[name]
            if mask.shape != param.shape:
                raise PruningError(f"masks[{name!r}] has shape {tuple(mask.shape)}, the weight {tuple(param.shape)}")
            param.masked_fill_(~mask.to(device=param.device, dtype=torch.bool), 0.0)


def kept_count(masks: Mapping[str, torch.Tensor]) -> int:
    """The number of weights the masks keep."""
    return int(sum(int(mask.sum()) for mask in masks.values()))


def total_count(masks: Mapping[str, torch.Tensor]) -> int:
    """The number of weights the masks cover (kept or pruned)."""
    return int(sum(mask.numel() for mask in masks.values()))

"""Random perturbation robustness: ``pac_bayes_mag_flat`` and ``pac_bayes_flat``.

Source: Jiang et al. 2020, *Fantastic generalization measures and where to find them*,
Section C (sharpness-based measures: "pac-bayes-flatness" and the magnitude-aware
"pac-bayes-mag-flatness"), in the form used by *Robustness to pruning predicts
generalization* (Section 5.1): the measure is 1/σ², σ the largest value such that

    E_u[L(f_{w+u})] ≤ (1 + β)·L(f_w),   β = 0.1,

with u_i ~ N(0, σ²·w_i² + ε²) (magnitude-aware) or u_i ~ N(0, σ²) (plain), L the mean
cross-entropy, ε = 1e-3. The noise standard deviation is sqrt(σ²·w_i² + ε²) or σ: never σ²
(the robust-measures code passes σ² as the standard deviation; that slip is not copied).

ε² versus ε: the first paper and the measures issue print the variance as σ²·w_i² + ε;
Jiang et al. 2020 and the robust-measures code add ε² (``magnitude_eps ** 2``). With
ε = 1e-3 read as a variance the noise floor has standard deviation 0.032, as large as the
weights of a trained conv layer of width 192 (PyTorch's default initialization gives std
0.014 there), so σ = 0 would already fail for every model and the measure would be ∞
everywhere. genzoo therefore uses ε² with ε = 1e-3 (``epsilon`` is a standard deviation);
``epsilon = sqrt(1e-3)`` reproduces the printed reading.

Which parameters: Jiang et al. 2020 perturb the vector w of *all* parameters, and so does
the robust-measures reference code, so ``parameters="all"`` (every tensor of
``model.parameters()``: conv/linear weights and biases, BatchNorm scales and shifts; not the
BatchNorm running statistics, which are buffers) is the default; ``parameters="weights"``
perturbs only the conv and linear weights.

Estimation: σ is found by bisection on [0, σ_max] (σ_max = 2 and 15 steps as in the
robust-measures code); at each step the expectation is the mean over M = 10 draws. The draws
are common random numbers: draw m uses standard normals z from a generator seeded with
``seed + m``, the same z at every σ, and u = std(σ)·z. The Monte-Carlo mean is then a
deterministic, continuous function of σ, so the bisection brackets where its condition
flips. The loss is measured in eval mode on a fixed seeded subset of the training set
(10,000 examples by default), and L(f_w) is the unperturbed loss on that same subset.
Noise is drawn on the model's device: values reproduce on the same kind of device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from measures.constants import PARAMETER_SETS  # noqa: F401 (defined once, torch-free)
from measures.common import EVAL_BATCH_SIZE, evaluate, recalibrated_copy, seed_for, seeded_indices
from measures.context import MeasureOutput, TrialContext
from trainers.pruning import prunable_parameters

KINDS = ("magnitude", "flat")
SEED_MODULUS = 2 ** 63


class PerturbationError(ValueError):
    """A bad setting of a perturbation measure: one line naming it and what is allowed."""


@dataclass
class SigmaSearch:
    """Result of the bisection: ``sigma`` (the largest σ that passed, 0 if none did),
    ``sigma_upper`` (the smallest σ that failed, or σ_max if none did), the unperturbed loss
    on the subset, the threshold (1 + β)·loss, the Monte-Carlo mean loss at ``sigma``, and
    ``loss_evaluations`` (passes over the subset, the unperturbed one included)."""

    sigma: float
    sigma_upper: float
    base_loss: float
    threshold: float
    loss_at_sigma: float
    loss_evaluations: int

    @property
    def measure(self) -> float:
        """1/σ²; ``inf`` when no σ > 0 passed (sharper than the search can resolve)."""
        return math.inf if self.sigma == 0.0 else 1.0 / self.sigma ** 2


def _selected(model: nn.Module, parameters: str) -> List[nn.Parameter]:
    if parameters == "all":
        return list(model.parameters())
    if parameters == "weights":
        return [param for _, param in prunable_parameters(model)]
    raise PerturbationError(f"parameters must be one of {PARAMETER_SETS}, got {parameters!r}")


def noise_std(weight: torch.Tensor, sigma: float, kind: str, epsilon: float) -> torch.Tensor:
    """Per-coordinate standard deviation: sqrt(σ²·w² + ε²) (``magnitude``) or σ (``flat``)."""
    if kind == "magnitude":
        return torch.sqrt(sigma ** 2 * weight.square() + epsilon ** 2)
    if kind == "flat":
        return torch.full_like(weight, sigma)
    raise PerturbationError(f"kind must be one of {KINDS}, got {kind!r}")


def _standard_normals(params: List[nn.Parameter], seed: int) -> List[torch.Tensor]:
    device = params[0].device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed % SEED_MODULUS)
    return [torch.randn(p.shape, generator=generator, device=device, dtype=p.dtype) for p in params]


def perturbed_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    *,
    kind: str = "magnitude",
    draws: int = 10,
    seed: int = 0,
    epsilon: float = 1e-3,
    parameters: str = "all",
    batch_size: int = EVAL_BATCH_SIZE,
    stop_above: Optional[float] = None,
) -> float:
    """Monte-Carlo estimate of E_u[L(f_{w+u})]: the mean over ``draws`` draws of the loss
    (:func:`measures.common.evaluate` on ``(x, y)``) with u = std(σ)·z, z ~ N(0, I) from a
    generator seeded ``seed + m`` for draw m (see the module docstring). The model's
    parameters, buffers and mode are restored exactly afterwards (copied back, not
    subtracted).

    With ``stop_above``, the draws stop as soon as the losses so far, divided by ``draws``,
    exceed it: every loss is >= 0, so the mean over all draws would exceed it too, and that
    partial sum / ``draws`` (a lower bound of the mean, above ``stop_above``) is returned.
    Whether the mean is at most ``stop_above`` is then decided exactly, with fewer passes."""
    return _perturbed_mean(model, x, y, sigma, kind=kind, draws=draws, seed=seed, epsilon=epsilon,
                           parameters=parameters, batch_size=batch_size, stop_above=stop_above)[0]


def _perturbed_mean(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, *, kind: str, draws: int,
                    seed: int, epsilon: float, parameters: str, batch_size: int,
                    stop_above: Optional[float]) -> Tuple[float, int]:
    """:func:`perturbed_loss` and the number of draws it evaluated."""
    params = _selected(model, parameters)
    if not params:
        raise PerturbationError("model has no parameters to perturb")
    originals = [p.detach().clone() for p in params]
    was_training = model.training
    losses = []
    try:
        for m in range(draws):
            normals = _standard_normals(params, seed + m)
            with torch.no_grad():
                for p, w, z in zip(params, originals, normals):
                    p.copy_(w + noise_std(w, sigma, kind, epsilon) * z)
            losses.append(evaluate(model, x, y, batch_size)[0])
            if stop_above is not None and sum(losses) / draws > stop_above:
                return sum(losses) / draws, len(losses)
    finally:
        with torch.no_grad():
            for p, w in zip(params, originals):
                p.copy_(w)
        model.train(was_training)
    return sum(losses) / len(losses), len(losses)


def _check(beta: float, draws: int, steps: int, sigma_max: float, epsilon: float, kind: str) -> None:
    if not (beta >= 0 and math.isfinite(beta)):
        raise PerturbationError(f"beta must be a finite number >= 0, got {beta!r}")
    if int(draws) != draws or draws < 1:
        raise PerturbationError(f"draws must be an integer >= 1, got {draws!r}")
    if int(steps) != steps or steps < 1:
        raise PerturbationError(f"steps must be an integer >= 1, got {steps!r}")
    if not (sigma_max > 0 and math.isfinite(sigma_max)):
        raise PerturbationError(f"sigma_max must be a finite number > 0, got {sigma_max!r}")
    if not epsilon >= 0:
        raise PerturbationError(f"epsilon must be >= 0, got {epsilon!r}")
    if kind not in KINDS:
        raise PerturbationError(f"kind must be one of {KINDS}, got {kind!r}")


def sigma_search(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kind: str = "magnitude",
    beta: float = 0.1,
    draws: int = 10,
    steps: int = 15,
    sigma_max: float = 2.0,
    epsilon: float = 1e-3,
    seed: int = 0,
    parameters: str = "all",
    batch_size: int = EVAL_BATCH_SIZE,
) -> SigmaSearch:
    """Bisection for the largest σ in [0, σ_max] with :func:`perturbed_loss` ≤ (1 + β)·L(f_w)
    (Jiang et al. 2020, Section C; constants in the module docstring). After ``steps``
    halvings, σ passed and σ + σ_max/2^steps failed (or is beyond σ_max). A failing step stops
    drawing as soon as the losses so far prove that the mean exceeds the threshold (losses are
    >= 0), so ``loss_evaluations`` is at most ``1 + steps · draws`` and σ is the same as with
    every draw evaluated."""
    _check(beta, draws, steps, sigma_max, epsilon, kind)
    model_was_training = model.training
    base_loss, _ = evaluate(model, x, y, batch_size)
    model.train(model_was_training)
    if not math.isfinite(base_loss):
        raise ValueError(f"the unperturbed train loss is {base_loss}: the σ search is undefined")
    threshold = (1.0 + beta) * base_loss
    lower, upper = 0.0, float(sigma_max)
    loss_at_lower = base_loss
    evaluations = 1
    for _ in range(steps):
        middle = (lower + upper) / 2.0
        # A step that fails stops drawing once the losses so far prove it (same decision, same σ).
        loss, drawn = _perturbed_mean(model, x, y, middle, kind=kind, draws=draws, seed=seed, epsilon=epsilon,
                                      parameters=parameters, batch_size=batch_size, stop_above=threshold)
        evaluations += drawn
        if loss <= threshold:
            lower, loss_at_lower = middle, loss
        else:
            upper = middle
    model.train(model_was_training)
    return SigmaSearch(sigma=lower, sigma_upper=upper, base_loss=base_loss, threshold=threshold,
                       loss_at_sigma=loss_at_lower, loss_evaluations=evaluations)


def seeded_subset(ctx: TrialContext, size: int, purpose: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``size`` training examples chosen by a permutation seeded from the trial id and
    ``purpose`` (kept in their original order); all of them if there are at most ``size``."""
    n = len(ctx.train_x)
    if size >= n:
        return ctx.train_x, ctx.train_y
    index = seeded_indices(ctx.trial_id, purpose, n, size).to(ctx.train_x.device)
    return ctx.train_x[index], ctx.train_y[index]


def pac_bayes_family(
    ctx: TrialContext,
    *,
    beta: float = 0.1,
    draws: int = 10,
    steps: int = 15,
    sigma_max: float = 2.0,
    epsilon: float = 1e-3,
    subset_size: int = 10_000,
    parameters: str = "all",
    batch_size: int = EVAL_BATCH_SIZE,
    recalibrate_bn: bool = False,
) -> MeasureOutput:
    """``pac_bayes_mag_flat`` and ``pac_bayes_flat`` = 1/σ² (Jiang et al. 2020, Section C;
    first paper, Section 5.1), with the constants of the module docstring: β = 0.1, M = 10
    draws, 15 bisection steps on [0, 2], ε = 1e-3 (u_i ~ N(0, σ²·w_i² + ε²)), on a
    subset of 10,000 training examples seeded by ``"pac_bayes/subset"``; the noise of each
    kind is seeded by ``"pac_bayes_mag_flat"`` / ``"pac_bayes_flat"``. A value is ``inf``
    when even σ_max/2^steps raises the loss too much. ``ctx.model`` is left as it was. The
    model is in eval mode with its trained BatchNorm statistics, or, with ``recalibrate_bn``,
    statistics re-estimated on the whole training set before perturbing (on a copy)."""
    if int(subset_size) != subset_size or subset_size < 1:
        raise PerturbationError(f"subset_size must be an integer >= 1, got {subset_size!r}")
    x, y = seeded_subset(ctx, int(subset_size), "pac_bayes/subset")
    model = recalibrated_copy(ctx.model, ctx.train_x, batch_size) if recalibrate_bn else ctx.model
    values, info = {}, {}
    for kind, name in (("magnitude", "pac_bayes_mag_flat"), ("flat", "pac_bayes_flat")):
        found = sigma_search(model, x, y, kind=kind, beta=beta, draws=draws, steps=steps, sigma_max=sigma_max,
                             epsilon=epsilon, seed=seed_for(ctx.trial_id, name), parameters=parameters,
                             batch_size=batch_size)
        values[name] = found.measure
        info[name] = {"sigma": found.sigma, "sigma_upper": found.sigma_upper, "base_loss": found.base_loss,
                      "loss_at_sigma": found.loss_at_sigma, "loss_evaluations": found.loss_evaluations}
    info["subset_size"] = len(x)
    return MeasureOutput(values=values, info=info)

"""Margin-distribution signatures (Jiang et al. 2019, "Predicting the generalization gap in
deep networks with margin distributions", DEMOGEN), used by the prunability paper's
``normalized_margins`` and ``best_margin_variable`` baselines and, at the logits, by its
double-descent margins baseline (A.4).

For a training example (x, y) and a layer with activation h (the input itself, then the
output of every module in ``model.margin_layers()``), with f the logits and c the highest
class other than y (the top class when x is misclassified):

    d = (f_y − f_c) / (||∇_h (f_y − f_c)||₂ + ε),     ε = 1e-6,

the first-order distance to the decision boundary between y and c.
``epsilon_placement="sqrt"`` uses sqrt(ε + ||∇_h||²) instead, as the DEMOGEN code does; the two
differ only for vanishing gradients. The distance is divided by the layer's total variation
sqrt(trace Cov(h)) = sqrt(Σ_features Var(h)), the variances over the examples used
(population variances, ddof = 0). The DEMOGEN code also divides that by the number of
examples; that constant is the same for every model measured on the same number of
examples and is left out.

Signature per layer (Jiang et al. 2019, the quartile signature): over the positive
normalized distances only, Q1, median, Q3 (``numpy.percentile``, linear interpolation), the upper fence
Q3 + 1.5·IQR and the lower fence Q1 − 1.5·IQR, each log-transformed. The lower fence is often
≤ 0, where its log is undefined; by default (``lower_fence_floor="min"``) it is clipped to the
smallest positive distance, which is where a Tukey box plot's lower whisker ends when the fence
lies below the data, so it equals Q1 − 1.5·IQR whenever that lies inside the data and is
always positive. ``"none"`` keeps the raw fence (log → NaN when ≤ 0); a positive number is
used as the floor instead. A layer with no positive distance gives NaN statistics.

The model is in eval mode (BatchNorm running statistics, no dropout), so every example's
distance depends on that example alone and a batch's gradients are per-example gradients.
Everything is computed on a seeded subset of the training set (``num_examples``, default
5,000, drawn with ``generator_for(trial_id, "margins")``; the whole set if it is smaller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from measures.constants import STATS, EPSILON_PLACEMENTS, DEFAULT_NUM_EXAMPLES, DEFAULT_BATCH_SIZE, DEFAULT_EPSILON  # noqa: F401 (defined once, torch-free)
from measures.common import seeded_indices
from measures.context import MeasureOutput, TrialContext
from trainers.data import pass_slices

INPUT_LAYER = "input"
FENCE_FACTOR = 1.5  # Tukey's fences


class MarginError(ValueError):
    """A model, input or setting the margin measures cannot handle."""


@dataclass
class MarginPass:
    """What one pass over the examples yields.

    ``distances[layer]``: the unnormalized distances d (not divided by total variation), one
    per example, layers in order (``"input"`` first). ``total_variation[layer]``:
    sqrt(Σ_features Var(h)) over the examples. ``output_margins``: f_y − f_c per example.
    """

    distances: Dict[str, np.ndarray]
    total_variation: Dict[str, float]
    output_margins: np.ndarray


class _RunningVariance:
    """Per-feature mean and sum of squared deviations over batches (Chan et al.'s pairwise
    update), in float64, so the total variation needs one pass and O(features) memory."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Optional[torch.Tensor] = None
        self.m2: Optional[torch.Tensor] = None

    def update(self, batch: torch.Tensor) -> None:
        batch = batch.detach().reshape(len(batch), -1).double()
        n_b = len(batch)
        mean_b = batch.mean(dim=0)
        m2_b = (batch - mean_b).pow(2).sum(dim=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self.m2 = self.m2 + m2_b + delta.pow(2) * (self.count * n_b / total)
        self.count = total

    def total_variation(self) -> float:
        """sqrt(Σ_features population variance)."""
        if self.m2 is None:
            raise MarginError("x: empty; total variation needs at least one example")
        return math.sqrt(float(self.m2.sum()) / self.count)


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in float32; float32 and float64 as they are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def total_variation(activations: torch.Tensor) -> float:
    """sqrt(trace Cov(h)) = sqrt(Σ_features Var(h)) of activations of shape (examples, ...),
    population variances (Jiang et al. 2019, margin normalization)."""
    running = _RunningVariance()
    running.update(activations)
    return running.total_variation()


def runner_up(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """c = argmax_{k ≠ y} f_k per row: the runner-up when the example is classified correctly,
    the top class when it is not."""
    masked = logits.detach().clone()
    masked[torch.arange(len(y), device=y.device), y] = -math.inf
    return masked.argmax(dim=1)


def logit_margins(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f_y − max_{k ≠ y} f_k per row (differentiable in ``logits``)."""
    rows = torch.arange(len(y), device=y.device)
    return logits[rows, y] - logits[rows, runner_up(logits, y)]


def _check_examples(x: torch.Tensor, y: torch.Tensor) -> None:
    if len(x) == 0 or len(x) != len(y):
        raise MarginError(f"x, y: got {len(x)} inputs and {len(y)} labels, allowed: the same positive number")


def _check_batch_size(batch_size: Any) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise MarginError(f"batch_size: got {batch_size!r}, allowed: a positive int")


def model_margin_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``model.margin_layers()``, checked: names unique, none called ``"input"``."""
    if not callable(getattr(model, "margin_layers", None)):
        raise MarginError(f"model: {type(model).__name__} has no margin_layers() method; margins need the block outputs")
    layers = list(model.margin_layers())
    names = [name for name, _ in layers]
    if len(set(names)) != len(names) or INPUT_LAYER in names:
        raise MarginError(f"model.margin_layers(): names {names} must be unique and not {INPUT_LAYER!r}")
    return layers


def _capture_hook(name: str, store: Dict[str, torch.Tensor]) -> Callable:
    def hook(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise MarginError(f"margin layer {name!r}: outputs a {type(output).__name__}, allowed: a tensor")
        if name in store:
            raise MarginError(f"margin layer {name!r}: ran twice in one forward pass; a margin layer must be used once")
        store[name] = output
        # The rest of the network gets a copy, so an in-place operation after the layer (a
        # ReLU(inplace=True)) cannot overwrite the activation the gradient is taken against.
        return output.clone()

    return hook


def margin_distances(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    layers: Optional[Sequence[Tuple[str, nn.Module]]] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    epsilon: float = DEFAULT_EPSILON,
    epsilon_placement: str = "add",
) -> MarginPass:
    """The unnormalized distances d = (f_y − f_c)/(||∇_h(f_y − f_c)||₂ + ε) at the input and at
    the output of every module of ``layers`` (default ``model.margin_layers()``), the layers'
    total variations and the logit margins, in one batched pass (Jiang et al. 2019's
    first-order distance; see the module docstring). ``model`` is put in eval mode; gradients
    come from autograd on the activations captured by forward hooks.
    """
    _check_examples(x, y)
    _check_batch_size(batch_size)
    if epsilon_placement not in EPSILON_PLACEMENTS:
        raise MarginError(f"epsilon_placement: got {epsilon_placement!r}, allowed: {', '.join(EPSILON_PLACEMENTS)}")
    if not (isinstance(epsilon, (int, float)) and epsilon >= 0):
        raise MarginError(f"epsilon: got {epsilon!r}, allowed: a number >= 0")
    layers = model_margin_layers(model) if layers is None else list(layers)
    names = [INPUT_LAYER] + [name for name, _ in layers]
    model.eval()
    captured: Dict[str, torch.Tensor] = {}
    handles = [module.register_forward_hook(_capture_hook(name, captured)) for name, module in layers]
    variances = {name: _RunningVariance() for name in names}
    distances: Dict[str, List[torch.Tensor]] = {name: [] for name in names}
    gaps: List[torch.Tensor] = []
    try:
        for start in range(0, len(x), batch_size):
            captured.clear()
            xb = x[start:start + batch_size].detach().clone().requires_grad_(True)
            yb = y[start:start + batch_size]
            with torch.enable_grad():
                logits = _at_least_float32(model(xb))
                numerator = logit_margins(logits, yb)
                missing = [name for name, _ in layers if name not in captured]
                if missing:
                    raise MarginError(f"margin layers {missing}: did not run in the forward pass")
                activations = [xb] + [captured[name] for name, _ in layers]
                grads = torch.autograd.grad(numerator.sum(), activations, allow_unused=True)
            for name, activation, grad in zip(names, activations, grads):
                if grad is None:
                    raise MarginError(f"margin layer {name!r}: the logits do not depend on its output")
                squared_norm = grad.detach().reshape(len(grad), -1).double().pow(2).sum(dim=1)
                if epsilon_placement == "add":
                    denominator = squared_norm.sqrt() + epsilon
                else:
                    denominator = (squared_norm + epsilon).sqrt()
                distances[name].append((numerator.detach().double() / denominator).cpu())
                variances[name].update(activation)
            gaps.append(numerator.detach().double().cpu())
    finally:
        for handle in handles:
            handle.remove()
        captured.clear()
    return MarginPass(
        distances={name: torch.cat(distances[name]).numpy() for name in names},
        total_variation={name: variances[name].total_variation() for name in names},
        output_margins=torch.cat(gaps).numpy(),
    )


def quartile_signature(
    distances: np.ndarray, *, lower_fence_floor: Union[str, float] = "min", log: bool = True
) -> Dict[str, float]:
    """Q1, median, Q3, upper fence Q3 + 1.5·IQR and lower fence Q1 − 1.5·IQR of the positive
    finite entries of ``distances`` (Jiang et al. 2019, quartile signature), natural log of each when
    ``log``. ``lower_fence_floor``: ``"min"`` clips the lower fence to the smallest positive
    distance, ``"none"`` keeps it raw, a positive number clips it to that number. All NaN
    when no entry is positive.
    """
    if not (lower_fence_floor in ("min", "none") or (
        isinstance(lower_fence_floor, (int, float)) and not isinstance(lower_fence_floor, bool) and lower_fence_floor > 0
    )):
        raise MarginError(f"lower_fence_floor: got {lower_fence_floor!r}, allowed: 'min', 'none' or a positive number")
    values = np.asarray(distances, dtype=np.float64).ravel()
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return {stat: math.nan for stat in STATS}
    q1, median, q3 = np.percentile(positive, [25, 50, 75])
    iqr = q3 - q1
    lower_fence = q1 - FENCE_FACTOR * iqr
    if lower_fence_floor == "min":
        lower_fence = max(lower_fence, float(positive.min()))
    elif lower_fence_floor != "none":
        lower_fence = max(lower_fence, float(lower_fence_floor))
    stats = {"q1": q1, "median": median, "q3": q3, "upper_fence": q3 + FENCE_FACTOR * iqr, "lower_fence": lower_fence}
    if not log:
        return {stat: float(value) for stat, value in stats.items()}
    return {stat: math.log(value) if value > 0 else math.nan for stat, value in stats.items()}


def seeded_subset(trial_id: str, n: int, num_examples: Optional[int]) -> torch.Tensor:
    """Sorted indices of ``num_examples`` of ``n`` examples drawn without replacement with
    ``generator_for(trial_id, "margins")``; all of them when ``num_examples`` is None or >= n."""
    if num_examples is not None and (not isinstance(num_examples, int) or isinstance(num_examples, bool) or num_examples < 1):
        raise MarginError(f"num_examples: got {num_examples!r}, allowed: a positive int or None (all)")
    return seeded_indices(trial_id, "margins", n, num_examples)


def _subset(ctx: TrialContext, num_examples: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    _check_examples(ctx.train_x, ctx.train_y)
    index = seeded_subset(ctx.trial_id, len(ctx.train_x), num_examples).to(ctx.train_x.device)
    return ctx.train_x[index], ctx.train_y[index]


def _normalized(distances: np.ndarray, variation: float) -> np.ndarray:
    if not variation > 0:
        return np.full_like(distances, math.nan)
    return distances / variation


def margins(
    ctx: TrialContext,
    *,
    num_examples: Optional[int] = DEFAULT_NUM_EXAMPLES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    epsilon: float = DEFAULT_EPSILON,
    epsilon_placement: str = "add",
    lower_fence_floor: Union[str, float] = "min",
) -> MeasureOutput:
    """The margins family: ``margin/<layer>/<stat>`` for layer in ``"input"`` and the names of
    ``ctx.model.margin_layers()``, stat in ``STATS``: the log quartile signature of the
    distances divided by the layer's total variation (Jiang et al. 2019; module docstring)."""
    x, y = _subset(ctx, num_examples)
    result = margin_distances(
        ctx.model, x, y, batch_size=batch_size, epsilon=epsilon, epsilon_placement=epsilon_placement
    )
    values: Dict[str, float] = {}
    positives: Dict[str, int] = {}
    for layer, distances in result.distances.items():
        normalized = _normalized(distances, result.total_variation[layer])
        positives[layer] = int(np.sum(normalized > 0))
        for stat, value in quartile_signature(normalized, lower_fence_floor=lower_fence_floor).items():
            values[f"margin/{layer}/{stat}"] = value
    info: Dict[str, Any] = {
        "num_examples": len(x),
        "num_positive": positives,
        "total_variation": dict(result.total_variation),
    }
    return MeasureOutput(values=values, info=info)


@torch.inference_mode()
def output_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> Tuple[np.ndarray, float]:
    """(f_y − max_{k≠y} f_k per example, total variation of the logits), model in eval mode."""
    _check_examples(x, y)
    _check_batch_size(batch_size)
    model.eval()
    variance = _RunningVariance()
    margins_: List[torch.Tensor] = []
    for part in pass_slices(len(x), batch_size, x.device):
        logits = _at_least_float32(model(x[part]))
        margins_.append(logit_margins(logits, y[part]).double().cpu())
        variance.update(logits)
    return torch.cat(margins_).numpy(), variance.total_variation()


def output_margin_stats(
    ctx: TrialContext,
    *,
    num_examples: Optional[int] = DEFAULT_NUM_EXAMPLES,
    batch_size: int = 1024,
    normalize: bool = True,
    lower_fence_floor: Union[str, float] = "min",
) -> MeasureOutput:
    """The output_margin_stats family: ``output_margin/<stat>``, the log quartile signature of
    the logit margins γ = f_y − max_{k≠y} f_k on the same seeded subset as ``margins``.

    The prunability paper's double-descent margins baseline (A.4) regresses on "the statistics
    of the margin distribution at the output layer" following Jiang et al. 2019, who normalize
    every layer's margins by its total variation; so by default (``normalize=True``) γ is
    divided by the total variation of the logits. Unnormalized logit margins grow with the
    scale of the weights, which is why Jiang et al. normalize. The gradient of γ with respect
    to the logits is e_y − e_c, of norm √2 for every example, so this signature differs from
    Jiang's distance at the logits by the constant log √2 only.
    """
    if not isinstance(normalize, bool):
        raise MarginError(f"normalize: got {normalize!r}, allowed: true or false")
    x, y = _subset(ctx, num_examples)
    gammas, variation = output_margins(ctx.model, x, y, batch_size)
    scaled = _normalized(gammas, variation) if normalize else gammas
    signature = quartile_signature(scaled, lower_fence_floor=lower_fence_floor)
    info: Dict[str, Any] = {
        "num_examples": len(x),
        "num_positive": int(np.sum(gammas > 0)),
        "logit_total_variation": variation,
    }
    return MeasureOutput(values={f"output_margin/{stat}": value for stat, value in signature.items()}, info=info)

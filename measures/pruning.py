"""Prunability, random prunability and pruning versus random perturbation.

Source: *Robustness to pruning predicts generalization in deep neural networks* (the "first
paper"): Definition 1 (prunability; found by default with a coarse-then-fine scan from the
sparse end that does not assume the condition monotone in α, see ``prunability``),
Algorithm 1 (appendix A.6.1, the linear search),
appendix A.2 (``pruned_parameter_count``, ``sum_two_norms_pruned``), Section 5.4 / Figure 2
and appendix A.5 (pruning versus perturbing the same weights by a random vector of the same
norm).

Conventions (``measures.common``): the weights pruned are the conv and linear ``weight``
tensors; the train loss is the mean cross-entropy over the full given set, model in eval mode
with the BatchNorm running statistics it was trained with. ``recalibrate_bn=True``
re-estimates the running statistics of every pruned model on the given inputs instead (off
by default, as in the paper). Every function restores the model's parameters, buffers and
train/eval mode before returning, also on error.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Sequence, Tuple

import torch
from torch import nn

from measures.constants import SEARCHES, DEFAULT_SEARCH, DEFAULT_RESOLUTION, DEFAULT_COARSE_STEP, DEFAULT_FRACTIONS  # noqa: F401 (defined once, torch-free)
from measures.common import EVAL_BATCH_SIZE, evaluate, generator_for, recalibrate_batchnorm
from measures.context import MeasureOutput, TrialContext
from trainers.pruning import (
    Masks,
    apply_masks,
    global_magnitude_masks,
    kept_count,
    prunable_parameters,
    random_masks,
)

MaskFn = Callable[[nn.Module, float], Masks]


class PruningMeasureError(ValueError):
    """A bad setting of a pruning measure: one line naming it and what is allowed."""


@dataclass
class PrunabilityResult:
    """What a prunability search found.

    ``alpha`` is the nominal kept fraction α of Definition 1; the mask keeps
    ``kept_weights = round(α·total_weights)`` weights. ``loss_evaluations`` counts every
    full pass over the training set, the unpruned loss included. ``pruned_parameter_count``
    is the number of parameters of the model (all of ``model.parameters()``: weights, biases,
    BatchNorm) minus the weights pruned; ``sum_two_norms_pruned`` is Σ_i ||W_i ⊙ M_i||_F² over
    the conv/linear weights of the pruned model.
    """

    alpha: float
    loss_evaluations: int
    kept_weights: int
    total_weights: int
    pruned_parameter_count: int
    sum_two_norms_pruned: float
    unpruned_loss: float
    pruned_loss: float
    masks: Masks


@contextmanager
def preserved(model: nn.Module) -> Iterator[Dict[str, torch.Tensor]]:
    """Yield a copy of ``model``'s state dict (not to be modified); afterwards restore the
    model's parameters, buffers and train/eval mode from it."""
    snapshot = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    was_training = model.training
    try:
        yield snapshot
    finally:
        model.load_state_dict(snapshot)
        model.train(was_training)


@torch.no_grad()
def _pruned_loss(
    model: nn.Module,
    original: Mapping[str, torch.Tensor],
    mask_fn: MaskFn,
    keep_fraction: float,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    recalibrate_bn: bool,
) -> Tuple[Masks, float]:
    model.load_state_dict(original)
    masks = mask_fn(model, keep_fraction)
    apply_masks(model, masks)
    if recalibrate_bn:
        recalibrate_batchnorm(model, x, batch_size)
    loss, _ = evaluate(model, x, y, batch_size)
    return masks, loss


def _check_settings(beta: float, search: str, resolution: float, coarse_step: float, step_size: float,
                    start_remove: float) -> None:
    if not (isinstance(beta, (int, float)) and beta >= 0 and math.isfinite(beta)):
        raise PruningMeasureError(f"beta must be a finite number >= 0, got {beta!r}")
    if search not in SEARCHES:
        raise PruningMeasureError(f"search must be one of {SEARCHES}, got {search!r}")
    if not 0 < resolution <= 1:
        raise PruningMeasureError(f"resolution must be in (0, 1], got {resolution!r}")
    if not 0 < coarse_step <= 1:
        raise PruningMeasureError(f"coarse_step must be in (0, 1], got {coarse_step!r}")
    if not 0 < step_size <= 1:
        raise PruningMeasureError(f"step_size must be in (0, 1], got {step_size!r}")
    if not 0 <= start_remove <= 1:
        raise PruningMeasureError(f"start_remove must be in [0, 1], got {start_remove!r}")


def prunability(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    beta: float = 0.1,
    search: str = DEFAULT_SEARCH,
    resolution: float = DEFAULT_RESOLUTION,
    coarse_step: float = DEFAULT_COARSE_STEP,
    step_size: float = 0.02,
    start_remove: float = 0.98,
    mask_fn: MaskFn = global_magnitude_masks,
    batch_size: int = EVAL_BATCH_SIZE,
    recalibrate_bn: bool = False,
) -> PrunabilityResult:
    """Prunability (first paper, Definition 1): the smallest kept fraction α of the weights
    such that L(φ(f_w, α)) ≤ (1 + β)·L(f_w), φ one-shot pruning by ``mask_fn``.

    L is the mean cross-entropy over all of ``(x, y)`` in eval mode (``recalibrate_bn``:
    re-estimate BatchNorm statistics of each pruned model on ``x`` first). Masks are always
    computed from the unpruned weights (one-shot pruning, not iterative). β = 0.1 as in the
    paper. α = 1 (nothing pruned) satisfies the condition by definition and is not evaluated.

    The condition need not be monotone in α: on small trained NiNs a model can fail at some α and
    pass at a smaller one, so a search that assumes monotonicity can stop far above the
    smallest passing fraction. Three searches, all on the grid α_k = k/K, k = 0..K,
    K = ceil(1/resolution) (resolution 0.005 → K = 200), except "linear":

    ``search="scan"`` (default): no monotonicity assumed. Coarse scan from the sparse end (the
    order of the paper's Algorithm 1): α = 0, m/K, 2m/K, ... with m = max(1, round(coarse_step·K))
    grid steps (coarse_step 0.05 and resolution 0.005 → m = 10: α = 0, 0.05, ..., 0.95, then
    1), stopping at the first coarse point c* that passes. Then refine: the fine points
    between the last failing coarse point c* − m/K and c*, again from the sparse end
    (c* − (m−1)/K, ..., c* − 1/K); the result is the first of them that passes, else c*. So
    the result is the smallest passing grid point of (c* − m/K, c*]; it equals the exhaustive
    scan of the whole grid unless a grid point below c* − m/K passes while every coarse point
    up to c* − m/K fails (a passing region narrower than the coarse step, below the first
    passing coarse point). Cost: at most ceil(K/m) coarse + (m − 1) fine + 1 unpruned loss
    evaluations, 20 + 9 + 1 = 30 with the defaults (25 at resolution 0.01). Candidates are
    evaluated one after the other, never in batches: each is only another mask of the same
    weights, but on the CPU a ``torch.func.vmap`` of ``functional_call`` over 4 stacked
    masked weight sets of a demo NiN (width 32, depth 2, 1437 digits) took 5.2–6.8 s against
    1.5–1.8 s for the 4 sequential passes (vmap turns each conv into a grouped conv), and a
    batch would also evaluate candidates past the first pass. Each evaluation is one full
    pass over ``(x, y)``.
    ``coarse_step`` ≤ ``resolution`` (m = 1) makes it the exhaustive scan from the sparse end:
    exactly the smallest passing grid point, at up to K + 1 evaluations.

    On the demo zoo (32 NiNs on digits, widths 16/32, depths 2/3, β = 0.1, resolution
    0.005; script kept outside the repository, it rebuilds each trial as the measures job
    does and runs every search plus the exhaustive scan of α = k/200): bisection differs
    from the scan on 4 of 32 models, mean |Δα| 0.004 over all 32 (0.034 over the 4), max
    0.055; the scan is lower on 2 of them (0.755 vs 0.78, 0.55 vs 0.57) and higher on 2
    (0.755 vs 0.72, 0.73 vs 0.675). The scan used 18–28 loss evaluations (mean 23.3),
    bisection 8–9 (mean 8.75). Against the exhaustive scan, whose pass/fail pattern is not
    monotone on 11 of the 32: the scan misses the smallest passing α on 5 models (mean
    |Δα| 0.014, max 0.175), bisection on 4 (mean 0.012, max 0.175). The misses are narrow
    passing islands (1–6 grid points) below a failing coarse point, e.g. passes at 0.62–0.635,
    fails from 0.64 to 0.75. At the demo's resolution 0.01 the two differ on 1 model
    (0.76 vs 0.72); the scan misses the exhaustive answer on 4, bisection on 3. So the scan
    removes bisection's dependence on monotonicity above the first passing coarse point but
    is not exact: only the exhaustive scan is.

    ``search="bisection"``: binary search for the smallest passing α on the grid. It assumes the
    condition is monotone in α (if it holds at α it holds at every larger α); then the result
    equals a scan of the whole grid, in at most ceil(log2(K + 1)) + 1 = 9 loss evaluations.
    Without monotonicity it returns some passing α whose grid neighbour below fails, which
    can be far above the smallest passing one.

    ``search="linear"``: Algorithm 1 of the paper (appendix A.6.1) exactly as written, with
    ``start_remove`` = 0.98 and ``step_size`` = 0.02::

        r = 0.98; W' = prune(W, r)
        while L(W') > (1 + β)·L(W):  W' = prune(W, r); r -= step_size
        return W'

    Its first loop iteration re-prunes at 0.98, so the 98%-pruned model is evaluated twice
    when it fails; the result is the first of α = 0.02, 0.04, ... that passes. The fraction
    is decremented in floating point as written; a fraction to remove below 0 prunes nothing
    (the unpruned model, which always passes, so the loop ends). At worst it evaluates every
    α = 0.02, 0.04, ..., 0.98 (about 50 loss evaluations), and it never looks between its
    0.02 steps (nor at α = 0).

    A NaN pruned loss fails the condition in every search; a non-finite unpruned loss is
    an error.
    """
    _check_settings(beta, search, resolution, coarse_step, step_size, start_remove)
    params = prunable_parameters(model)
    total_weights = sum(param.numel() for _, param in params)
    total_parameters = sum(param.numel() for param in model.parameters())
    with preserved(model) as original:
        unpruned_loss, _ = evaluate(model, x, y, batch_size)
        if not math.isfinite(unpruned_loss):
            raise ValueError(f"the unpruned train loss is {unpruned_loss}: prunability is undefined")
        threshold = (1.0 + beta) * unpruned_loss
        evaluations = 1
        unpruned = ({name: torch.ones_like(param, dtype=torch.bool) for name, param in params}, unpruned_loss)

        def loss_at(alpha: float) -> Tuple[Masks, float]:
            nonlocal evaluations
            if alpha >= 1.0:
                return unpruned
            evaluations += 1
            return _pruned_loss(model, original, mask_fn, alpha, x, y, batch_size, recalibrate_bn)

        grid = grid_size(resolution)
        if search == "scan":
            alpha, masks, pruned_loss = _scan(loss_at, threshold, grid, coarse_grid_steps(coarse_step, grid))
        elif search == "bisection":
            alpha, masks, pruned_loss = _bisect(loss_at, threshold, grid)
        else:
            alpha, masks, pruned_loss = _algorithm_1(loss_at, threshold, start_remove, step_size)
    kept = kept_count(masks)
    sum_two_norms = float(sum(
        (original[name].double() * masks[name]).square().sum() for name, _ in params
    ))
    return PrunabilityResult(
        alpha=alpha,
        loss_evaluations=evaluations,
        kept_weights=kept,
        total_weights=total_weights,
        pruned_parameter_count=total_parameters - (total_weights - kept),
        sum_two_norms_pruned=sum_two_norms,
        unpruned_loss=unpruned_loss,
        pruned_loss=pruned_loss,
        masks=masks,
    )


def grid_size(resolution: float) -> int:
    """K = ceil(1/resolution): the searches' grid is α_k = k/K, k = 0..K (the 1e-9 keeps
    resolution 0.005 at K = 200 despite rounding)."""
    return math.ceil(1.0 / resolution - 1e-9)


def coarse_grid_steps(coarse_step: float, grid: int) -> int:
    """m, the coarse step of the scan in grid steps: ``coarse_step``·K rounded to the nearest
    integer, at least 1 (0.05 on K = 200 → 10; on K = 100 → 5)."""
    return max(1, int(round(coarse_step * grid)))


def _scan(
    loss_at: Callable[[float], Tuple[Masks, float]], threshold: float, grid: int, coarse: int
) -> Tuple[float, Masks, float]:
    # Coarse points 0, m, 2m, ... < K, then K (α = 1, passes without an evaluation).
    last_failing = -1
    for k in [*range(0, grid, coarse), grid]:
        masks, loss = loss_at(k / grid)
        if loss <= threshold:  # a NaN loss fails
            break
        last_failing = k
    # Refine strictly between the last failing coarse point and the first passing one.
    for j in range(last_failing + 1, k):
        fine_masks, fine_loss = loss_at(j / grid)
        if fine_loss <= threshold:
            return j / grid, fine_masks, fine_loss
    return k / grid, masks, loss


def _bisect(loss_at: Callable[[float], Tuple[Masks, float]], threshold: float, grid: int) -> Tuple[float, Masks, float]:
    # Invariant: index `hi` passes (k = grid is α = 1), index `lo` fails (-1 is a sentinel).
    lo, hi = -1, grid
    best_masks, best_loss = loss_at(1.0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        masks, loss = loss_at(mid / grid)
        if loss <= threshold:
            hi, best_masks, best_loss = mid, masks, loss
        else:
            lo = mid
    return hi / grid, best_masks, best_loss


def _algorithm_1(
    loss_at: Callable[[float], Tuple[Masks, float]], threshold: float, start_remove: float, step_size: float
) -> Tuple[float, Masks, float]:
    remove = start_remove
    used = remove
    masks, loss = loss_at(max(0.0, 1.0 - used))
    while not loss <= threshold:  # "loss > threshold", with a NaN loss failing as in bisection
        used = remove
        masks, loss = loss_at(min(1.0, max(0.0, 1.0 - used)))
        remove -= step_size
    return round(min(1.0, max(0.0, 1.0 - used)), 10), masks, loss


def _prunability_output(result: PrunabilityResult, name: str, search: str) -> MeasureOutput:
    values = {name: result.alpha}
    if name == "prunability":
        values["pruned_parameter_count"] = float(result.pruned_parameter_count)
        values["sum_two_norms_pruned"] = result.sum_two_norms_pruned
    return MeasureOutput(values=values, info={
        "search": search,
        "loss_evaluations": result.loss_evaluations,
        "train_loss": result.unpruned_loss,
        "pruned_train_loss": result.pruned_loss,
        "kept_weights": result.kept_weights,
        "total_weights": result.total_weights,
    })


def prunability_family(
    ctx: TrialContext,
    *,
    beta: float = 0.1,
    search: str = DEFAULT_SEARCH,
    resolution: float = DEFAULT_RESOLUTION,
    coarse_step: float = DEFAULT_COARSE_STEP,
    step_size: float = 0.02,
    batch_size: int = EVAL_BATCH_SIZE,
    recalibrate_bn: bool = False,
) -> MeasureOutput:
    """``prunability`` with global magnitude pruning, plus ``pruned_parameter_count`` and
    ``sum_two_norms_pruned`` of the model it finds (first paper, Definition 1, appendix A.2).

    See :func:`prunability` for the search and every constant. ``ctx.model`` is left as it was.
    """
    result = prunability(ctx.model, ctx.train_x, ctx.train_y, beta=beta, search=search, resolution=resolution,
                         coarse_step=coarse_step, step_size=step_size, batch_size=batch_size,
                         recalibrate_bn=recalibrate_bn)
    return _prunability_output(result, "prunability", search)


def random_prunability_family(
    ctx: TrialContext,
    *,
    beta: float = 0.1,
    search: str = DEFAULT_SEARCH,
    resolution: float = DEFAULT_RESOLUTION,
    coarse_step: float = DEFAULT_COARSE_STEP,
    step_size: float = 0.02,
    batch_size: int = EVAL_BATCH_SIZE,
    recalibrate_bn: bool = False,
) -> MeasureOutput:
    """``random_prunability``: prunability (first paper, Definition 1) with random pruning.

    One random order of the weights, from ``generator_for(trial_id, "random_prunability")``,
    serves every α (each call re-seeds a fresh generator), so the masks are nested: keeping
    more weights only adds weights. See :func:`prunability` for the search.
    """
    def mask_fn(model: nn.Module, keep_fraction: float) -> Masks:
        return random_masks(model, keep_fraction, generator=generator_for(ctx.trial_id, "random_prunability"))

    result = prunability(ctx.model, ctx.train_x, ctx.train_y, beta=beta, search=search, resolution=resolution,
                         coarse_step=coarse_step, step_size=step_size, mask_fn=mask_fn, batch_size=batch_size,
                         recalibrate_bn=recalibrate_bn)
    return _prunability_output(result, "random_prunability", search)


def same_norm_perturbation(
    weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], generator: torch.Generator
) -> Dict[str, torch.Tensor]:
    """A random perturbation of exactly the weights the masks prune, with the norm of the
    part pruning removes (first paper, appendix A.5: "perturb the same set of weights by a
    random vector of the same size").

    The direction is an isotropic Gaussian on the pruned coordinates (drawn on the
    generator's device in ``weights`` order), scaled so that ||δ||₂ = ||W ⊙ (1 − M)||₂ over
    all weights together. No pruned weight, or a removed part of norm 0, gives δ = 0.
    """
    names = list(weights)
    removed = torch.cat([(weights[n].detach().double() * ~masks[n]).flatten() for n in names])
    support = torch.cat([(~masks[n]).flatten() for n in names]).to(generator.device)
    direction = torch.randn(support.numel(), generator=generator, device=generator.device, dtype=torch.float64)
    direction = direction * support
    target = removed.norm()
    length = direction.norm()
    scale = (target.to(length.device) / length) if float(length) > 0 else torch.zeros((), dtype=torch.float64)
    delta = direction * scale
    out: Dict[str, torch.Tensor] = {}
    start = 0
    for n in names:
        size = weights[n].numel()
        out[n] = delta[start:start + size].view(weights[n].shape).to(device=weights[n].device, dtype=weights[n].dtype)
        start += size
    return out


def _area_between(fractions: Sequence[float], upper: Sequence[float], lower: Sequence[float]) -> float:
    points = sorted(zip(fractions, upper, lower))
    area = 0.0
    for (f0, u0, l0), (f1, u1, l1) in zip(points, points[1:]):
        area += (f1 - f0) * ((u0 - l0) + (u1 - l1)) / 2.0
    return area


def pruning_vs_perturbation(
    ctx: TrialContext,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    batch_size: int = EVAL_BATCH_SIZE,
    recalibrate_bn: bool = False,
) -> MeasureOutput:
    """Pruning versus random perturbation of the same weights (first paper, Figure 2, A.5).

    For each kept fraction f (default 1.0, 0.9, ..., 0.0): global magnitude masks keeping f
    of the weights; "prune" zeroes the others; "perturb" instead adds to those same weights
    a random vector of the norm of the removed part (:func:`same_norm_perturbation`, seeded by
    ``generator_for(trial_id, "pruning_vs_perturbation/<f>")`` so each fraction's draw does
    not depend on the others). Train and test loss and accuracy per :func:`evaluate`.

    Table ``pruning_curves``: kept_fraction, intervention ("prune"/"perturb"), split
    ("train"/"test"), loss, accuracy, change_norm (||W' − W||₂ actually applied).

    Scalar summaries (not measures of the paper, a compact record of the figure):
    ``pruning_vs_perturbation/train_area`` and ``/test_area`` = ∫ (L_prune − L_perturb) df
    by the trapezoid rule over the given fractions; positive when pruning hurts more.
    """
    if len(fractions) == 0 or any(not 0.0 <= float(f) <= 1.0 for f in fractions):
        raise PruningMeasureError(f"fractions must be a non-empty list of numbers in [0, 1], got {fractions!r}")
    model = ctx.model
    table: Dict[str, list] = {k: [] for k in ("kept_fraction", "intervention", "split", "loss", "accuracy",
                                                "change_norm")}
    curves: Dict[Tuple[str, str], List[float]] = {}
    splits = (("train", ctx.train_x, ctx.train_y), ("test", ctx.test_x, ctx.test_y))
    with preserved(model) as original:
        weights = {name: original[name] for name, _ in prunable_parameters(model)}
        for fraction in fractions:
            fraction = float(fraction)
            model.load_state_dict(original)
            masks = global_magnitude_masks(model, fraction)
            generator = generator_for(ctx.trial_id, f"pruning_vs_perturbation/{fraction:.6g}", ctx.device)
            delta = same_norm_perturbation(weights, masks, generator)
            for intervention in ("prune", "perturb"):
                model.load_state_dict(original)
                with torch.no_grad():
                    if intervention == "prune":
                        apply_masks(model, masks)
                    else:
                        params = dict(model.named_parameters())
                        for name, d in delta.items():
                            params[name].add_(d)
                change = math.sqrt(sum(
                    float((p.detach().double() - weights[name].double()).square().sum())
                    for name, p in prunable_parameters(model)))
                if recalibrate_bn and fraction < 1.0:
                    recalibrate_batchnorm(model, ctx.train_x, batch_size)
                for split, x, y in splits:
                    loss, accuracy = evaluate(model, x, y, batch_size)
                    for key, value in (("kept_fraction", fraction), ("intervention", intervention), ("split", split),
                                       ("loss", loss), ("accuracy", accuracy), ("change_norm", change)):
                        table[key].append(value)
                    curves.setdefault((intervention, split), []).append(loss)
    fs = [float(f) for f in fractions]
    values = {
        f"pruning_vs_perturbation/{split}_area": _area_between(fs, curves[("prune", split)], curves[("perturb", split)])
        for split in ("train", "test")
    }
    return MeasureOutput(values=values, tables={"pruning_curves": table}, info={"fractions": fs})

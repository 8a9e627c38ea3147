"""Flatness measures: Hessian spectrum and trace, effective dimensionality, gradient covariance,
a TIC proxy and the perturbation distance along Hessian eigenvectors.

Sources: *The generalization-stability tradeoff in neural network pruning* (Bartoldson et al.
2020), Section 2 "Computing flatness" and Appendix E; Maddox, Benton & Wilson 2020 for the
effective dimensionality, normalized by the parameter count as in *Robustness to pruning
predicts generalization* (Section 5.4.2).

Every quantity is computed on one fixed subset of the training set (default 5,000 examples,
drawn without replacement with the generator ``generator_for(trial_id, "flatness")``), with
the labels the model was trained on (ε-flatness can use other examples: ``eps_split``), the
model in eval mode (BatchNorm running statistics;
see ``measures.hessian``), over the parameters chosen by ``params`` (default all, as
PyHessian). The second paper used 512 *test* examples instead; ``split="test"`` and
``subset=512`` reproduce that. The family leaves ``ctx.model`` in eval mode and never changes
its parameters; it offers no BatchNorm recalibration (the running statistics are used as
trained).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from measures.constants import (  # noqa: F401 (defined once, torch-free)
    EPS_REPORTS, EPS_SEARCHES, EPS_SPLITS, METHODS, SPLITS, TIC_TRACES, TRACE_METHODS,
)
from measures.common import generator_for, recalibrated_copy, seeded_indices
from measures.context import MeasureOutput, TrialContext
from measures.hessian import (
    HVP_MODES,
    PARAMS_CHOICES,
    HessianError,
    Matvec,
    ParamsChoice,
    deflated_hutchinson_trace,
    default_lanczos_steps,
    hutchinson_trace,
    hvp_operator,
    lanczos,
    mean_loss_function,
    parameter_space,
    power_iteration_top_eigenvalues,
)


class FlatnessError(ValueError):
    """A bad flatness setting; the message is one line naming the setting."""


# How close the family's values at its default settings are to the exact values of the dense
# Hessian (relative errors; ε-flatness in grid steps of ``eps_step``). Chosen with a margin over
# the errors measured by bench/flatness_accuracy.py (bench/README.md: a trained 1,708-parameter
# NiN on digits against its dense Hessian, the 9,578-parameter NiN of bench/measure_seconds.py
# against a 400-step Lanczos run) and tested on an 899-parameter conv net against its dense
# Hessian (tests/measures/test_flatness_defaults.py). ``gradient_covariance_trace`` is exact up
# to rounding; ``tic_proxy`` inherits the trace's tolerance (``tic_trace="hutchinson"``).
TOLERANCES: Dict[str, float] = {
    "hessian_top_eigenvalue": 1e-5,
    "hessian_top_k_sum": 0.01,
    "effective_dimensionality": 0.05,
    "hessian_trace": 0.01,
    "eps_flatness": 1,
}


def effective_dimensionality(eigenvalues: torch.Tensor, num_parameters: int, *, z: float = 1.0) -> float:
    """``N_eff(H, z) / k = Σ_i λ_i / (λ_i + z) / k`` (Maddox et al. 2020, definition of N_eff; normalized by
    the number of parameters ``k``, the Hessian's dimension, as in the first paper, Sec. 5.4.2).

    The sum runs over the given (top) eigenvalues; ``z = 1`` by default (Maddox et al.).
    Negative eigenvalues, which the definition (for a positive semi-definite Hessian) does not
    cover, are clamped to 0 and so contribute nothing.
    """
    if not z > 0:
        raise FlatnessError(f"z: must be positive, got {z!r}")
    if not isinstance(num_parameters, int) or num_parameters < 1:
        raise FlatnessError(f"num_parameters: must be a positive integer, got {num_parameters!r}")
    lam = eigenvalues.double().clamp(min=0.0)
    return float((lam / (lam + z)).sum()) / num_parameters


def gradient_covariance_trace(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    params: ParamsChoice = "all",
) -> float:
    """Trace of the uncentered gradient covariance ``C = (1/n) Σ_i g_i g_iᵀ``, i.e. the mean
    over examples of ``||g_i||²``, ``g_i`` the gradient of example i's cross-entropy with
    respect to the selected parameters (second paper, Appendix E.1, after Thomas et al. 2019).

    Per-example gradients come from ``torch.func.vmap(grad)`` over chunks of ``batch_size``
    examples (memory: ``batch_size ×`` the number of parameters); model in eval mode, so each
    example's gradient does not depend on the others.
    """
    if len(x) == 0 or len(x) != len(y):
        raise FlatnessError(f"x, y: need the same, nonzero number of examples, got {len(x)} and {len(y)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise FlatnessError(f"batch_size: must be a positive integer, got {batch_size!r}")
    model.eval()
    space = parameter_space(model, params)

    def example_loss(p: Dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, {**space.fixed, **p}, (xi[None],))
        return F.cross_entropy(logits, yi[None])

    per_example_grad = vmap(grad(example_loss), in_dims=(None, 0, 0))
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), batch_size):
        grads = per_example_grad(dict(space.base), x[start:start + batch_size], y[start:start + batch_size])
        total += sum(g.double().pow(2).flatten(1).sum(1) for g in grads.values()).sum()
    return float(total) / len(x)


def _check_eps_settings(step: float, loss_increase: float, eps_max: float, search: str) -> None:
    if search not in EPS_SEARCHES:
        raise FlatnessError(f"eps_search: got {search!r}, allowed: {', '.join(EPS_SEARCHES)}")
    if not step > 0:
        raise FlatnessError(f"eps_step: must be positive, got {step!r}")
    if not eps_max >= step:
        raise FlatnessError(f"eps_max: must be >= eps_step={step}, got {eps_max!r}")
    if not loss_increase > 0:
        raise FlatnessError(f"eps_loss_increase: must be positive, got {loss_increase!r}")


def eps_flatness(
    loss_at: Callable[[torch.Tensor], float],
    directions: torch.Tensor,
    *,
    step: float = 0.01,
    loss_increase: float = 0.1,
    eps_max: float = 10.0,
    search: str = "bisect",
) -> Tuple[float, int, bool]:
    """The perturbation distance ε along Hessian eigenvectors (second paper, Appendix E.3):
    the largest ε on the grid ``step, 2·step, …`` (default 0.01, at most ``eps_max``, default
    10) such that moving the parameters by ``±ε·v_i`` (``v_i`` the unit columns of
    ``directions``, both signs) raises the loss by at most ``loss_increase`` (default 0.1,
    an absolute increase over ``loss_at(0)``), for every ``v_i`` and every grid ε' ≤ ε.

    ``search="scan"`` is the paper's procedure: increase ε by ``step`` until some direction
    exceeds the threshold; the answer is the last ε before that (0 if the first step fails).
    ``search="bisect"`` (default) gives the same answer when the loss increase along each
    direction is monotone in ε, with far fewer loss evaluations: per direction, one check at
    the current answer, and a bisection over grid points below it only if that fails.
    Directions are visited in the given order (sharpest first is fastest).

    Returns ``(eps, loss evaluations, capped)``, ``capped`` true when no direction reached the
    threshold up to ``eps_max``.
    """
    _check_eps_settings(step, loss_increase, eps_max, search)
    base = loss_at(torch.zeros(directions.shape[0], dtype=directions.dtype, device=directions.device))
    evaluations = 1
    # The grid is integer multiples of ``step``; a small slack keeps e.g. 10 / 0.01 at 1000.
    best = int(math.floor(eps_max / step + 1e-9))
    capped_at = best

    def within(direction: torch.Tensor, n: int) -> bool:
        nonlocal evaluations
        evaluations += 1
        return loss_at(n * step * direction) - base <= loss_increase

    for column in range(directions.shape[1]):
        for sign in (1.0, -1.0):
            direction = sign * directions[:, column]
            if best == 0:
                break
            if search == "scan":
                for n in range(1, best + 1):
                    if not within(direction, n):
                        best = n - 1
                        break
            elif not within(direction, best):
                low, high = 0, best  # within at ``low`` (0 is the base point), not at ``high``
                while high - low > 1:
                    middle = (low + high) // 2
                    if within(direction, middle):
                        low = middle
                    else:
                        high = middle
                best = low
    return best * step, evaluations, best == capped_at


def _eps_examples(ctx: TrialContext, split: str, subset: Optional[int], x: torch.Tensor,
                  y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The examples of the ε-flatness loss: the Hessian's (``hessian``), or ``subset`` (None:
    all) of the ``train`` or ``test`` split, seeded by ``"flatness/eps"``."""
    if split == "hessian":
        return x, y
    x_all, y_all = (ctx.train_x, ctx.train_y) if split == "train" else (ctx.test_x, ctx.test_y)
    if subset is None or subset >= len(x_all):
        return x_all, y_all
    indices = seeded_indices(ctx.trial_id, "flatness/eps", len(x_all), subset).to(x_all.device)
    return x_all[indices], y_all[indices]


def _counting(matvec: Matvec) -> Tuple[Matvec, Callable[[], int]]:
    calls = [0]

    def counted(v: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return matvec(v)

    return counted, lambda: calls[0]


def _check_settings(
    method: str, top_k: int, hutchinson_samples: int, batch_size: int, per_example_batch_size: int,
    z: float, params: str, mode: str, tic_trace: str, split: str, trace_method: str,
) -> None:
    choices = {"method": (method, METHODS), "params": (params, PARAMS_CHOICES), "hvp_mode": (mode, HVP_MODES),
               "tic_trace": (tic_trace, TIC_TRACES), "split": (split, SPLITS),
               "trace_method": (trace_method, TRACE_METHODS)}
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise FlatnessError(f"{name}: got {value!r}, allowed: {', '.join(allowed)}")
    positive = {"top_k": top_k, "batch_size": batch_size, "per_example_batch_size": per_example_batch_size}
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise FlatnessError(f"{name}: must be a positive integer, got {value!r}")
    if not isinstance(hutchinson_samples, int) or hutchinson_samples < 2:
        raise FlatnessError(f"hutchinson_samples: must be an integer >= 2, got {hutchinson_samples!r}")
    if not z > 0:
        raise FlatnessError(f"z: must be positive, got {z!r}")


def _check_eps_data(directions: Optional[int], split: str, subset: Optional[int], report: str) -> None:
    if directions is not None and (not isinstance(directions, int) or isinstance(directions, bool) or directions < 1):
        raise FlatnessError(f"eps_directions: got {directions!r}, allowed: a positive integer or null (all top_k)")
    if split not in EPS_SPLITS:
        raise FlatnessError(f"eps_split: got {split!r}, allowed: {', '.join(EPS_SPLITS)}")
    if subset is not None and (not isinstance(subset, int) or isinstance(subset, bool) or subset < 1):
        raise FlatnessError(f"eps_subset: got {subset!r}, allowed: a positive integer or null (the whole split)")
    if subset is not None and split == "hessian":
        raise FlatnessError(f"eps_subset: got {subset!r}, allowed: null with eps_split hessian (its examples are "
                            f"the Hessian's)")
    if report not in EPS_REPORTS:
        raise FlatnessError(f"eps_report: got {report!r}, allowed: {', '.join(EPS_REPORTS)}")


def reported_eps(last_passing: float, step: float, capped: bool, report: str) -> float:
    """The ε ``eps_report`` asks for, from the search's last passing grid point: itself
    (``last_passing``), or the next grid point, the first that fails (``first_failing``, the
    authors' Figure E.3: the smallest |ε| at which some direction's loss increase reached the
    threshold). When nothing failed up to ``eps_max`` (``capped``) both are ``eps_max``, a
    lower bound."""
    if report == "first_failing" and not capped:
        return last_passing + step
    return last_passing


def _check_eigen_settings(top_k: int, lanczos_steps: Optional[int], power_max_iter: int, power_tol: float) -> None:
    if lanczos_steps is not None and (not isinstance(lanczos_steps, int) or lanczos_steps < top_k):
        raise FlatnessError(f"lanczos_steps: must be None or an integer >= top_k={top_k}, got {lanczos_steps!r}")
    if not isinstance(power_max_iter, int) or power_max_iter < 1:
        raise FlatnessError(f"power_max_iter: must be a positive integer, got {power_max_iter!r}")
    if not power_tol > 0:
        raise FlatnessError(f"power_tol: must be positive, got {power_tol!r}")


def flatness(
    ctx: TrialContext,
    *,
    subset: Optional[int] = 5000,
    split: str = "train",
    top_k: int = 100,
    method: str = "lanczos",
    lanczos_steps: Optional[int] = None,
    power_max_iter: int = 100,
    power_tol: float = 1e-3,
    trace_method: str = "deflated",
    hutchinson_samples: int = 10,
    eps_step: float = 0.01,
    eps_loss_increase: float = 0.1,
    eps_max: float = 10.0,
    eps_search: str = "bisect",
    eps_directions: Optional[int] = None,
    eps_split: str = "hessian",
    eps_subset: Optional[int] = None,
    eps_report: str = "last_passing",
    batch_size: int = 1000,
    per_example_batch_size: int = 256,
    z: float = 1.0,
    params: str = "all",
    hvp_mode: str = "reverse_over_reverse",
    hvp_cache: bool = True,
    tic_trace: str = "hutchinson",
    recalibrate_bn: bool = False,
) -> MeasureOutput:
    """The flatness family (second paper, Section 2 and Appendix E; Maddox et al. 2020).

    On a fixed seeded subset of ``subset`` training examples (module docstring), with the
    Hessian H of the mean cross-entropy there:

    - ``hessian_top_eigenvalue``: λ₁, the largest of the top ``top_k`` (default 100)
      eigenvalues, by ``method="lanczos"`` (full reorthogonalization, ``lanczos_steps``
      defaulting to ``max(2k, k+20)``) or ``"power"`` (power iteration with deflation,
      ``power_max_iter`` 100, ``power_tol`` 1e-3, as PyHessian). ``top_k`` is capped at the
      number of parameters. The spectrum is the table ``hessian_eigenvalues``.
    - ``hessian_top_k_sum``: the sum of those eigenvalues, the paper's approximation of Tr(H)
      (Appendix E.1).
    - ``hessian_trace``: Tr(H). ``trace_method="deflated"`` (default) reuses the Lanczos run:
      Tr(QᵀHQ) over its basis Q exactly (the tridiagonal's diagonal, no extra products) plus
      Hutchinson on the orthogonal complement with ``hutchinson_samples`` (10) Rademacher
      vectors projected onto it (:func:`measures.hessian.deflated_hutchinson_trace`; with
      ``method="power"`` Q is the k eigenvectors and Tr(QᵀHQ) costs k more products).
      ``"hutchinson"`` is plain Hutchinson with ``hutchinson_samples`` vectors (before issue
      15: 100 of them, a root-mean-square error of 9% on the benchmark model, against 0.1%
      for the deflated estimate with 10). Both are unbiased; the standard error is
      ``info["hutchinson_stderr"]``, and ``info["basis_trace"]`` is Tr(QᵀHQ).
    - ``effective_dimensionality``: Σ λᵢ/(λᵢ + z) over the top-k eigenvalues, z = 1, divided
      by the number of parameters of the Hessian (see :func:`effective_dimensionality`).
    - ``gradient_covariance_trace``: mean over examples of the squared per-example gradient
      norm (uncentered covariance).
    - ``tic_proxy``: Tr(C)/Tr(H) (Appendix E.3), with Tr(H) the ``hessian_trace`` estimate
      (``tic_trace="hutchinson"``, whichever ``trace_method``) or the top-k sum as in the
      paper (``"top_k"``); NaN if that trace is 0.
    - ``eps_flatness``: :func:`eps_flatness` along the top ``eps_directions`` eigenvectors
      (default null: all top-k) with ``eps_step`` 0.01, ``eps_loss_increase`` 0.1, ``eps_max``
      10, ``eps_search`` "bisect", on the loss over ``eps_split`` examples: ``hessian``
      (default, the Hessian's subset), or ``eps_subset`` examples of ``train`` or ``test``
      (null: all of them; drawn with ``generator_for(trial_id, "flatness/eps")``);
      ``eps_report``: ``last_passing`` (default, the largest ε that passes) or
      ``first_failing`` (the next grid point). The second paper (Appendix E.3 and the
      authors' Figure_Ei.py): the top 10 eigenvectors of the Hessian on 512 test examples,
      the loss on the whole test set, the grid 0.01 ... 0.4 scanned, the first failing ε:
      ``eps_directions: 10, eps_split: test, eps_report: first_failing, eps_search: scan,
      eps_max: 0.4`` (the stability presets set them).

    Random draws: the subset from ``generator_for(trial_id, "flatness")``, the Lanczos/power
    start vectors from ``"flatness/eigen"`` and the Rademacher vectors from
    ``"flatness/hutchinson"`` (separate streams: changing ``top_k`` or ``lanczos_steps``
    leaves the Rademacher vectors the same; the deflated estimate still changes with them,
    through the basis it projects them against, the plain one does not). Hessian-vector
    products run over batches of ``batch_size`` examples (at most 256 on the CPU, where larger
    passes are slower: ``trainers.data.examples_per_pass``; ``hvp_mode``
    "reverse_over_reverse" by default: exact like "forward_over_reverse", and 10 to 20% faster
    with less memory on the CPU benchmark of bench/README.md), per-example gradients over
    ``per_example_batch_size``. ``hvp_cache`` (default true, reverse-over-reverse only) keeps
    each batch's forward and backward graph from the first product to the last, so that the
    other products run only the second backward pass: the same numbers bit for bit, about 1.5
    times faster per product on the CPU benchmark, and memory for several times the subset's
    activations (on running out of it the family falls back to recomputing;
    ``info["hvp_cached"]``); see :func:`measures.hessian.hvp_operator`.

    Accuracy and cost at the defaults (``TOLERANCES``, bench/README.md
    "flatness_accuracy.py"): λ₁ converges long before the other eigenvalues (relative error
    below 1e-9 even at ``lanczos_steps = k``); the top-k sum within 1% and the effective
    dimensionality within 5% of the exact values (measured: at most 0.2% and 1.7%); the
    deflated trace within 1% (measured: root-mean-square error 0.08%, one estimate 0.1%
    off); ε-flatness within one grid step (measured: equal). The cost is ``lanczos_steps + hutchinson_samples``
    Hessian-vector products (210 at the defaults; 300 before issue 15, whose 100 plain
    Hutchinson vectors went to the trace alone), plus one loss evaluation per ε-search step.
    ``top_k = 100`` is the paper's and stays; ``lanczos_steps`` stays ``2k`` because the
    bottom of the top-k converges last: with fewer steps the Ritz values there fall short, and
    the effective dimensionality, which counts every eigenvalue near z = 1, falls with them
    (measured at 1.5k steps: top-k sum 1.2 to 1.3% low, N_eff 12 to 14% low; at k steps: 7 to
    12% and 31 to 34% low). Lower ``lanczos_steps`` in a preset to trade that for time.

    The model is in eval mode: BatchNorm uses the running statistics it was trained with, or,
    with ``recalibrate_bn``, statistics re-estimated on the whole training set (on a copy).
    """
    _check_settings(method, top_k, hutchinson_samples, batch_size, per_example_batch_size,
                    z, params, hvp_mode, tic_trace, split, trace_method)
    _check_eigen_settings(top_k, lanczos_steps, power_max_iter, power_tol)
    if not isinstance(hvp_cache, bool):
        raise FlatnessError(f"hvp_cache: must be true or false, got {hvp_cache!r}")
    _check_eps_settings(eps_step, eps_loss_increase, eps_max, eps_search)
    _check_eps_data(eps_directions, eps_split, eps_subset, eps_report)
    model = recalibrated_copy(ctx.model, ctx.train_x) if recalibrate_bn else ctx.model.eval()
    x_all, y_all = (ctx.train_x, ctx.train_y) if split == "train" else (ctx.test_x, ctx.test_y)
    if subset is not None and (not isinstance(subset, int) or subset < 1):
        raise FlatnessError(f"subset: must be a positive integer or None, got {subset!r}")
    indices = seeded_indices(ctx.trial_id, "flatness", len(x_all), subset).to(x_all.device)
    x, y = x_all[indices], y_all[indices]

    try:
        operator, dim = hvp_operator(model, x, y, batch_size=batch_size, params=params, mode=hvp_mode,
                                     cache=hvp_cache)
    except HessianError as error:
        raise FlatnessError(str(error)) from None
    matvec, hvp_count = _counting(operator)
    k = min(top_k, dim)
    eigen_generator = generator_for(ctx.trial_id, "flatness/eigen")
    steps = min(default_lanczos_steps(k) if lanczos_steps is None else lanczos_steps, dim)
    if method == "lanczos":
        run = lanczos(matvec, dim, steps, generator=eigen_generator, device=ctx.device)
        eigenvalues, eigenvectors = run.ritz(k)
        basis, basis_trace = run.basis, run.tridiagonal_trace()
    else:
        eigenvalues, eigenvectors = power_iteration_top_eigenvalues(
            matvec, dim, k, max_iter=power_max_iter, tol=power_tol, generator=eigen_generator, device=ctx.device)
        basis = eigenvectors.T
    eigen_hvps = hvp_count()
    probe_generator = generator_for(ctx.trial_id, "flatness/hutchinson")
    if trace_method == "deflated":
        if method == "power":  # Tr(QᵀHQ) over the power-iteration eigenvectors: k more products
            basis_trace = sum(float(torch.dot(q, matvec(q).to(q))) for q in basis)
        trace = deflated_hutchinson_trace(matvec, basis, basis_trace=basis_trace, samples=hutchinson_samples,
                                          generator=probe_generator, device=ctx.device)
    else:
        basis_trace = None
        trace = hutchinson_trace(matvec, dim, samples=hutchinson_samples, generator=probe_generator,
                                 device=ctx.device)

    covariance_trace = gradient_covariance_trace(model, x, y, batch_size=per_example_batch_size, params=params)
    top_k_sum = float(eigenvalues.sum())
    tic_denominator = trace.mean if tic_trace == "hutchinson" else top_k_sum
    tic = covariance_trace / tic_denominator if tic_denominator != 0 else float("nan")

    x_eps, y_eps = _eps_examples(ctx, eps_split, eps_subset, x, y)
    loss_at, space = mean_loss_function(model, x_eps, y_eps, batch_size=batch_size, params=params)
    directions = eigenvectors[:, :k if eps_directions is None else min(eps_directions, k)].to(dtype=space.dtype)
    last_passing, loss_evaluations, eps_capped = eps_flatness(
        loss_at, directions, step=eps_step, loss_increase=eps_loss_increase, eps_max=eps_max, search=eps_search)
    eps = reported_eps(last_passing, eps_step, eps_capped, eps_report)

    eigenvalue_list = [float(value) for value in eigenvalues]
    return MeasureOutput(
        values={
            "hessian_top_eigenvalue": eigenvalue_list[0],
            "hessian_top_k_sum": top_k_sum,
            "hessian_trace": trace.mean,
            "effective_dimensionality": effective_dimensionality(eigenvalues, dim, z=z),
            "gradient_covariance_trace": covariance_trace,
            "tic_proxy": tic,
            "eps_flatness": eps,
        },
        tables={"hessian_eigenvalues": {"rank": list(range(1, k + 1)), "eigenvalue": eigenvalue_list}},
        info={
            "examples": len(indices),
            "split": split,
            "params": params,
            "num_parameters": dim,
            "top_k": k,
            "method": method,
            "lanczos_steps": steps if method == "lanczos" else None,
            "power_max_iter": power_max_iter if method == "power" else None,
            "power_tol": power_tol if method == "power" else None,
            "hvp_mode": hvp_mode,
            "hvp_cache": hvp_cache,
            "hvp_cached": operator.cached,
            "eigen_hvps": eigen_hvps,
            "trace_method": trace_method,
            "hutchinson_samples": hutchinson_samples,
            "hutchinson_stderr": trace.stderr,
            "basis_trace": basis_trace,
            "hvps": hvp_count(),
            "z": z,
            "tic_trace": tic_trace,
            "eps_step": eps_step,
            "eps_loss_increase": eps_loss_increase,
            "eps_max": eps_max,
            "eps_search": eps_search,
            "eps_directions": int(directions.shape[1]),
            "eps_split": eps_split,
            "eps_examples": len(x_eps),
            "eps_report": eps_report,
            "eps_last_passing": last_passing,
            "eps_capped": eps_capped,
            "eps_loss_evaluations": loss_evaluations,
            "batch_size": batch_size,
            "per_example_batch_size": per_example_batch_size,
            "model_mode": "eval",
        },
    )

"""Data-free spectral measures of the weight matrices: WeightWatcher's heavy-tailed
self-regularization metrics (Martin & Mahoney, "Implicit self-regularization in deep neural
networks: evidence from random matrix theory and implications for learning", JMLR 22(165),
2021; Martin, Peng & Mahoney, "Predicting trends in the quality of state-of-the-art neural
networks without access to training or testing data", Nature Communications 12, 4122, 2021),
computed as the ``weightwatcher`` package (version 0.7.7) computes them with
``WeightWatcher(model).analyze(mp_fit=True)`` and otherwise its defaults. Everything below
cites the function of weightwatcher 0.7.7 it follows; the tests compare with the package.

Which layers. The weight tensors of every conv and linear layer
(``measures.common.weight_parameters``: no biases, no BatchNorm, BatchNorms not folded, as
WeightWatcher reads the raw ``weight`` tensors). A linear weight (out, in) is one matrix. A
conv kernel (c_out, c_in, k_h, k_w) is k_h·k_w matrices, one per kernel position, each the
(c_out × c_in) slice ``W[:, :, i, j]`` (WeightWatcher's ``conv2D_Wmats`` with its default
``conv2d_fft=False``; when c_out + c_in < k_h + k_w it reads the tensor as channels-first and
takes the (k_h × k_w) kernel of every channel pair instead, and so does this module). Every
matrix is taken as N × M with N >= M (transposed if needed), and ``rf`` is the number of
matrices (k_h·k_w; 1 for a linear layer). A layer is analysed when its number of
eigenvalues M·rf is in [``min_evals``, ``max_evals``] and N <= ``max_n`` (``layer_supported``
with ``pool=True``; defaults 8, 15000 and 50000, WeightWatcher's ``DEFAULT_MIN_EVALS``,
``DEFAULT_MAX_EVALS`` and ``DEFAULT_MAX_N``; its docstring says 10 but the constant is 8).

Eigenvalues (the empirical spectral density, ESD). λ = σ², the squared singular values of
each matrix, pooled over the layer's rf matrices and sorted (``combined_eigenvalues``). There
is no 1/N: WeightWatcher's ``normalize`` option (X = WᵀW/N) was removed in 0.6.5. With
``conv2d_norm`` (default true, WeightWatcher's default) every conv matrix is first multiplied by
sqrt(1/2) (``apply_normalize_Wmats``: ``np.sqrt(conv2d_count/2.0)`` with ``conv2d_count = 1``
when pooling), so a conv layer's eigenvalues are halved; linear layers are left as they are.

Power-law fit (``fit_powerlaw`` with its default ``pl_package='ww'``, ``WW_powerlaw.WWFit``,
which replaces the ``powerlaw`` package's fit by the same method, Clauset, Shalizi & Newman
2009, "Power-law distributions in empirical data", SIAM Review 51(4), eqs. 3.1 and 3.9):
the data are the eigenvalues > 1e-5 (``EVALS_THRESH``), sorted, n of them. For each
candidate x_min = x_i (every data point but the largest) the tail x_i..x_{n-1} (n_i = n − i
points) gets the continuous maximum-likelihood exponent

    α_i = 1 + n_i / Σ_{j>=i} ln(x_j / x_i)                         (Clauset et al., eq. 3.1)

and the Kolmogorov–Smirnov distance between the tail's empirical CDF, k/n_i at its k-th
point (k = 0..n_i−1: the fraction of tail points below it, as the ``powerlaw`` package
counts), and the fitted CDF 1 − (x/x_i)^(1−α_i):

    D_i = max_k |1 − (x_{i+k}/x_i)^(1−α_i) − k/n_i|                 (eq. 3.9)

(D_i = 1 when α_i <= 1). α and x_min are those of the smallest D_i (the first on ties); the
fit's σ is (α − 1)/sqrt(n_i). With fewer than 20 data points (``SMALL_N_CUTOFF``) WeightWatcher
0.7.7 switches to its small-sample fit (``fit_powerlaw_smallN``), and so does this module:
tails of fewer than 8 points are not candidates, the exponent is the bias-corrected
α_i = 1 + (n_i − 1)/Σ ln(x_j/x_i), and x_min minimizes D_i − 0.868/sqrt(n_i) (no prior);
when no candidate remains, the whole data set is the tail. The tail size is ``num_pl_spikes``
(the eigenvalues >= x_min, counted over all eigenvalues). The ``powerlaw`` package 2.0
bounds α to [0, 3] by default (``Power_Law.DEFAULT_PARAMETER_RANGES``) and takes the x_min of
least D among the fits inside that range, so it agrees with this fit exactly where the best
fit has α <= 3 and not elsewhere; WeightWatcher 0.7.7's default fit, followed here, has no
bound (its ``pl_package='powerlaw'`` fails with powerlaw 2.0, which no longer takes the
``distribution`` keyword it passes, and reports α = −1).

Per layer (``apply_norm_metrics``; logs are base 10, over all of the layer's eigenvalues):

- ``alpha``: α of the fit above.
- ``alpha_weighted``: α̂ = α·log10 λ_max (Martin, Peng & Mahoney 2021, eq. 4).
- ``log_alpha_norm``: log10 Σ_i λ_i^α, the log of the Schatten α-norm to the power α (eq. 5).
- ``log_norm``: log10 Σ_i λ_i = log10 ||W||_F² (of the scaled conv slices).
- ``log_spectral_norm``: log10 λ_max = log10 ||W||_2².
- ``stable_rank``: Σ_i λ_i / λ_max = ||W||_F²/||W||_2².
- ``num_spikes`` (with ``num_spikes=true``): the eigenvalues above the Marchenko–Pastur bulk
  edge fitted as WeightWatcher's ``mp_fit`` does (``analyze(mp_fit=True)``), see
  :func:`mp_fit`; ``mp_softrank`` = λ+/λ_max from the same fit.

A layer whose fit fails (fewer than two eigenvalues above 1e-5) has NaN α and α-derived
values (WeightWatcher reports α = −1 and computes α̂ and the α-norm from it); a layer whose
MP fit raises (no kernel-density point above 0.01) has NaN ``num_spikes`` and ``mp_softrank``
(WeightWatcher: −1). ``info`` lists both.

Aggregates (``get_summary``): ``spectral/<quantity>`` is the mean over the analysed layers
(NaN values left out, as pandas' mean does) of each per-layer quantity, ``num_spikes`` and
``mp_softrank`` included (``get_summary`` averages ``mp_softrank`` but not ``num_spikes``;
this family averages both; with ``num_spikes=false`` neither is yielded, the table's columns
are NaN). A model with no analysable layer is an error. Every analysed layer is a row of the long table
``spectral_layers``; ``info`` names the layers skipped and why.

Difference from WeightWatcher 0.7.7 (only in ``num_spikes``/``mp_softrank``): its
``conv2D_Wmats`` swaps N and M once per kernel position when c_out < c_in, so a conv layer
with an even number of kernel positions and c_out < c_in ends with N and M swapped (N = c_out,
M = c_in) and its MP fit uses the aspect ratio Q = c_out/c_in < 1 and M = c_in. This module
always uses N = max(c_out, c_in), M = min(c_out, c_in). α and the norms do not depend on it.

Cost: one batched SVD per layer in float64 on the weights' device, a fit over at most
``max_evals`` eigenvalues (O(n²) numpy) and, with ``num_spikes``, a kernel density on a
1000-point grid and ~200 residual evaluations per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import optimize

from measures.common import weight_parameters
from measures.context import MeasureOutput, TrialContext
from measures.specs import SPECTRAL_QUANTITIES

# weightwatcher 0.7.7 constants (constants.py, WW_powerlaw.py, RMT_Util.py).
EVALS_THRESH = 1e-5  # eigenvalues at or below it are left out of the power-law fit
CONV2D_NORM = math.sqrt(1 / 2.0)  # a conv matrix's scale with conv2d_norm (conv2d_count = 1)
SMALL_N_CUTOFF = 20  # fewer data points: the small-sample fit
SMALL_N_K_MIN = 8  # its smallest tail
SMALL_N_TAIL_BONUS = 0.868  # its objective: D − 0.868/sqrt(n_tail)
KDE_BANDWIDTH = 0.1  # mp_fit: linear-kernel density of the rescaled eigenvalues
KDE_GRID = 1000  # ... on 1000 points of [0, max + KDE_PAD]
KDE_PAD = 0.5
KDE_FLOOR = 0.01  # grid points of density below it are left out of the residual
MISFIT = 1000.0  # residual of a σ whose bulk misses the density's peak or range
SIGMA_GRID = (0.05, 2.0, 0.01)  # σ scanned over [0.05, 2)·σ₀ in steps of 0.01·σ₀

TABLE = "spectral_layers"
MP_QUANTITIES = ("num_spikes", "mp_softrank")  # yielded only with num_spikes=true


class SpectralError(ValueError):
    """A model or setting the spectral measures cannot handle."""


@dataclass
class LayerMatrices:
    """One layer as WeightWatcher sees it: its ``matrices`` (each N × M, N >= M, float64
    numpy), ``kind`` ("dense" or "conv2d"), N, M and ``rf`` (number of matrices)."""

    name: str
    kind: str
    matrices: List[np.ndarray]
    n: int
    m: int
    rf: int

    @property
    def num_evals(self) -> int:
        return self.m * self.rf


def layer_matrices(name: str, weight: torch.Tensor) -> LayerMatrices:
    """The matrices of one weight tensor (module docstring, "Which layers"): a linear weight
    is one matrix; a conv kernel (c_out, c_in, k_h, k_w) is its k_h·k_w slices W[:, :, i, j]
    (the channel pair's k_h × k_w kernels when c_out + c_in < k_h + k_w), each transposed
    to N >= M."""
    w = weight.detach().to(torch.float64).cpu()
    if w.dim() == 2:
        slices, kind = w.unsqueeze(0), "dense"
    elif w.dim() == 4:
        c_out, c_in, k_h, k_w = w.shape
        if c_out + c_in >= k_h + k_w:
            slices = w.permute(2, 3, 0, 1).reshape(k_h * k_w, c_out, c_in)
        else:
            slices = w.reshape(c_out * c_in, k_h, k_w)
        kind = "conv2d"
    else:
        raise SpectralError(f"model: {name} has a {w.dim()}-d weight; spectral handles linear (2-d) and conv2d (4-d)")
    if slices.shape[1] < slices.shape[2]:
        slices = slices.transpose(1, 2)
    matrices = [s.numpy() for s in slices]
    return LayerMatrices(name, kind, matrices, int(slices.shape[1]), int(slices.shape[2]), len(matrices))


def eigenvalues(layer: LayerMatrices, conv2d_norm: bool = True) -> np.ndarray:
    """The layer's ESD: the squared singular values of all its matrices, sorted ascending
    (float64); a conv layer's scaled by 1/2 with ``conv2d_norm`` (module docstring)."""
    stack = torch.from_numpy(np.stack(layer.matrices))
    if conv2d_norm and layer.kind == "conv2d":
        stack = stack * CONV2D_NORM
    sv = torch.linalg.svdvals(stack).numpy().ravel()
    return np.sort(sv * sv)


def mle_alpha(tail: np.ndarray, bias_corrected: bool = False) -> float:
    """The continuous power-law MLE exponent of ``tail`` with x_min = min(tail):
    1 + n/Σ ln(x/x_min) (Clauset, Shalizi & Newman 2009, eq. 3.1), or with ``bias_corrected``
    1 + (n − 1)/Σ ln(x/x_min) (WeightWatcher's small-sample fit)."""
    tail = np.sort(np.asarray(tail, dtype=np.float64))
    n = float(len(tail))
    s = float(np.sum(np.log(tail)) - n * np.log(tail[0]))
    return 1.0 + (n - 1.0 if bias_corrected else n) / s


def ks_distance(tail: np.ndarray, alpha: float) -> float:
    """max_k |1 − (x_k/x_min)^(1−α) − k/n| over the sorted ``tail`` (x_min = its smallest):
    the KS distance of the power law with exponent α, as ``powerlaw``/WeightWatcher count it."""
    tail = np.sort(np.asarray(tail, dtype=np.float64))
    n = len(tail)
    return float(np.max(np.abs(1 - (tail / tail[0]) ** (1 - alpha) - np.arange(n) / n)))


def _ks_distances(data: np.ndarray, alphas: np.ndarray, block: int = 256) -> np.ndarray:
    """:func:`ks_distance` of the tail data[i:] with exponent alphas[i], for every candidate
    i < n − 1 (1 where alphas[i] <= 1), computed in blocks of candidates."""
    n = len(data)
    ds = np.ones(n - 1)
    for start in range(0, n - 1, block):
        rows = np.arange(start, min(start + block, n - 1))
        cols = np.arange(start, n)
        k = cols[None, :] - rows[:, None]  # position in the tail; < 0 before it
        tail_sizes = (n - rows)[:, None].astype(np.float64)
        exponent = (1 - alphas[rows])[:, None]
        fitted = 1 - (data[None, cols] / data[rows][:, None]) ** exponent
        distance = np.where(k >= 0, np.abs(fitted - k / tail_sizes), 0.0)
        block_ds = distance.max(axis=1)
        ds[rows] = np.where(alphas[rows] > 1, block_ds, 1.0)
    return ds


@dataclass
class PowerLawFit:
    """The fit's α, x_min, KS distance D, σ = (α − 1)/sqrt(tail size), and ``tail``: the
    number of fitted points >= x_min; ``method`` "standard" or "small_n"."""

    alpha: float
    xmin: float
    D: float
    sigma: float
    tail: int
    method: str


def fit_power_law(evals: np.ndarray) -> Optional[PowerLawFit]:
    """WeightWatcher 0.7.7's power-law fit of the eigenvalues > 1e-5 (module docstring): the
    x_min among the data minimizing the KS distance, α its MLE. None when fewer than two
    eigenvalues are above 1e-5 (WeightWatcher's failed fit)."""
    data = np.sort(np.asarray(evals, dtype=np.float64))
    data = data[data > EVALS_THRESH]
    n = len(data)
    if n < 2:
        return None
    log_data = np.log(data)
    # Σ_{j>=i} ln x_j for every i, accumulated from the top (as np.sum(log_data[i:]) does, up to rounding).
    suffix = np.cumsum(log_data[::-1])[::-1]
    candidates = np.arange(n - 1)
    tails = (n - candidates).astype(np.float64)
    s = suffix[:-1] - tails * log_data[:-1]
    small = n < SMALL_N_CUTOFF
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        alphas = 1.0 + (tails - 1.0 if small else tails) / s
        ds = _ks_distances(data, alphas)
        if small:
            ds[(tails < SMALL_N_K_MIN) | (s <= 1e-12)] = 1.0
    if not small:
        best = int(np.argmin(ds))
    else:
        valid = np.array([n - i >= SMALL_N_K_MIN and s[i] > 1e-12 and alphas[i] > 1 for i in candidates])
        objective = np.where(valid, ds - SMALL_N_TAIL_BONUS / np.sqrt(tails), np.inf)
        if np.isfinite(objective).any():
            best = int(np.argmin(objective))
        else:  # no candidate: the whole data set is the tail
            best = 0
            if s[0] <= 1e-12:
                return PowerLawFit(1.0, float(data[0]), 1.0, 0.0, n, "small_n")
            alphas[0] = 1.0 + (n - 1.0) / s[0]
            ds[0] = ks_distance(data, alphas[0])
    alpha = float(alphas[best])
    if not np.isfinite(alpha):
        return None
    return PowerLawFit(alpha, float(data[best]), float(ds[best]), (alpha - 1.0) / math.sqrt(n - best), n - best,
                       "small_n" if small else "standard")


def linear_kde(samples: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """The density of ``samples`` with the linear kernel at ``grid``: (1/(n·h))·Σ max(0, 1 − |x − s|/h)
    (scikit-learn's ``KernelDensity(kernel='linear')`` in one dimension, which WeightWatcher uses)."""
    samples = np.asarray(samples, dtype=np.float64)
    density = np.zeros(len(grid))
    for start in range(0, len(samples), 1024):
        block = samples[start:start + 1024]
        density += np.maximum(0.0, 1.0 - np.abs(grid[:, None] - block[None, :]) / bandwidth).sum(axis=1)
    return density / (len(samples) * bandwidth)


@dataclass
class MarchenkoPasturFit:
    """``mp_fit``'s result: ``num_spikes`` (rescaled eigenvalues above λ+ + sqrt(TW)),
    ``sigma`` (σ_mp), ``bulk_max`` λ+ (in the layer's own scale), ``softrank`` λ+/λ_max."""

    num_spikes: int
    sigma: float
    bulk_max: float
    softrank: float


def mp_fit(evals: np.ndarray, n: int, m: int) -> MarchenkoPasturFit:
    """The Marchenko–Pastur bulk fitted as WeightWatcher 0.7.7's ``mp_fit`` (its
    ``fit_density_with_range`` and ``resid_mp``; Martin & Mahoney 2021, Section 3 and
    eq. 9 for the MP density):

    1. Q = N/M; the eigenvalues are rescaled to mean 1: x = λ·K/Σλ (K of them).
    2. Their linear-kernel density (bandwidth 0.1) on 1000 points of [0, max x + 0.5] (of
       sqrt(x) when Q = 1); grid points of density below 0.01 are dropped.
    3. σ is scanned over [0.05, 2)·σ₀ in steps of 0.01·σ₀, σ₀ = sqrt(max x)/(1 + 1/sqrt(Q)),
       then refined by Nelder–Mead (``scipy.optimize.brute`` with its default finish), each σ
       scored by the squared distance between the MP density ρ(x) = sqrt((λ+ − x)(x − λ−))/
       (2πσ²x/Q), λ± = σ²(1 ± 1/sqrt(Q))², and the kernel density on the kept points
       (a residual of 1000 per point when λ+ lies below the density's peak or beyond its last
       kept point, or λ− beyond its peak). For Q = 1 the quarter circle
       sqrt(4 − x²)/(πσ²) on the singular values instead.
    4. λ+ = (σ(1 + 1/sqrt(Q)))², the Tracy–Widom allowance TW = λ+^(2/3)·M^(−2/3)/sqrt(Q);
       the spikes are the x > λ+ + sqrt(TW); softrank = λ+/max x.
    """
    evals = np.asarray(evals, dtype=np.float64)
    q = n / m
    scale = len(evals) / np.sum(evals)  # Wscale² = K/||W||_F²
    x = evals * scale
    to_fit = np.sqrt(x) if q == 1 else x
    grid = np.linspace(0, np.max(to_fit) + KDE_PAD, KDE_GRID)
    density = linear_kde(to_fit, grid, KDE_BANDWIDTH)
    keep = density > KDE_FLOOR
    xde, yde = grid[keep], density[keep]
    peak = xde[np.where(yde == np.max(yde))[0][0]]
    last = np.max(xde)

    def residuals(sigma: np.ndarray) -> np.ndarray:
        """``resid_mp``'s sum of squares for every σ of ``sigma`` (a 1-d array)."""
        sigma = sigma[:, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if q == 1:
                resid = np.nan_to_num((1 / (np.pi * sigma * sigma)) * np.sqrt(4 - xde ** 2)) - yde
            else:
                b = np.power(sigma * (1 + np.sqrt(1 / q)), 2)
                a = np.power(sigma * (1 - np.sqrt(1 / q)), 2)
                model = np.nan_to_num((1 / (2 * np.pi * sigma * sigma * xde * (1 / q)))
                                      * np.sqrt((b - xde) * (xde - a)))
                resid = np.where((b < peak) | (b > last) | (a > peak), MISFIT, model - yde)
        return np.sum(resid ** 2, axis=1)

    # scipy.optimize.brute(resid_mp, (slice(...),)) as WeightWatcher calls it: the grid's
    # first minimum, refined by optimize.fmin (brute's default finish).
    sigma0 = math.sqrt(np.max(x) / np.square(1 + 1.0 / np.sqrt(q)))
    low, high, step = SIGMA_GRID
    grid_sigma = np.mgrid[slice(low * sigma0, high * sigma0, step * sigma0)]
    start = grid_sigma[int(np.argmin(residuals(grid_sigma)))]
    refined = optimize.fmin(lambda s: float(residuals(np.asarray(s, dtype=np.float64).ravel())[0]), start,
                            full_output=True, disp=False)
    sigma = float(np.asarray(refined[0]).ravel()[0])
    bulk_max = (sigma * (1 + 1 / np.sqrt(q))) ** 2
    tw = 1 / np.sqrt(q) * np.power(bulk_max, 2 / 3) * np.power(m, -2 / 3)
    spikes = int(np.sum(x > bulk_max + np.sqrt(tw)))
    return MarchenkoPasturFit(spikes, sigma, float(bulk_max / scale), float(bulk_max / np.max(x)))


def layer_metrics(evals: np.ndarray, fit: Optional[PowerLawFit]) -> Dict[str, float]:
    """The per-layer quantities of ``apply_norm_metrics`` (module docstring) from all of the
    layer's eigenvalues and its power-law fit (α-derived values NaN without a fit)."""
    evals = np.asarray(evals, dtype=np.float64)
    total, top = float(np.sum(evals)), float(np.max(evals))
    alpha = fit.alpha if fit is not None else math.nan
    log_spectral_norm = math.log10(top)
    return {
        "alpha": alpha,
        "alpha_weighted": alpha * log_spectral_norm,
        "log_alpha_norm": math.log10(float(np.sum(evals ** alpha))) if fit is not None else math.nan,
        "log_norm": math.log10(total),
        "log_spectral_norm": log_spectral_norm,
        "stable_rank": total / top,
    }


@dataclass
class SpectralResult:
    """Per-layer rows (``rows``: one dict per analysed layer, the long table's columns),
    the means over them (``values``, without the ``spectral/`` prefix) and the ``skipped``
    layers (name → why)."""

    rows: List[Dict[str, Any]] = field(default_factory=list)
    values: Dict[str, float] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)
    failed_mp_fits: Dict[str, str] = field(default_factory=dict)


def analyze(
    named_weights: Sequence[Tuple[str, torch.Tensor]],
    *,
    min_evals: int = 8,
    max_evals: int = 15000,
    max_n: int = 50000,
    conv2d_norm: bool = True,
    num_spikes: bool = True,
) -> SpectralResult:
    """Every layer's spectral quantities and their means (module docstring), for the
    (name, weight) pairs given in order."""
    result = SpectralResult()
    for index, (name, weight) in enumerate(named_weights):
        layer = layer_matrices(name, weight)
        if layer.num_evals < min_evals or layer.num_evals > max_evals:
            result.skipped[name] = (f"{layer.num_evals} eigenvalues, outside [min_evals, max_evals] = "
                                    f"[{min_evals}, {max_evals}]")
            continue
        if layer.n > max_n:
            result.skipped[name] = f"N = {layer.n} > max_n = {max_n}"
            continue
        evals = eigenvalues(layer, conv2d_norm)
        if np.max(evals) <= 0:
            result.skipped[name] = "all eigenvalues are zero"
            continue
        fit = fit_power_law(evals)
        row: Dict[str, Any] = {"layer": name, "layer_index": index, "kind": layer.kind, "n": layer.n, "m": layer.m,
                               "rf": layer.rf, "num_evals": len(evals), "lambda_max": float(np.max(evals))}
        row.update(layer_metrics(evals, fit))
        row["xmin"] = fit.xmin if fit is not None else math.nan
        row["ks_distance"] = fit.D if fit is not None else math.nan
        row["alpha_sigma"] = fit.sigma if fit is not None else math.nan
        row["num_pl_spikes"] = int(np.sum(evals >= fit.xmin)) if fit is not None else 0
        row["fit"] = fit.method if fit is not None else "failed"
        row["num_spikes"], row["mp_softrank"] = math.nan, math.nan
        if num_spikes:
            try:
                mp = mp_fit(evals, layer.n, layer.m)
                row["num_spikes"], row["mp_softrank"] = float(mp.num_spikes), mp.softrank
            except (ValueError, FloatingPointError) as exc:  # as WeightWatcher's apply_mp_fit, which reports -1
                result.failed_mp_fits[name] = f"{type(exc).__name__}: {exc}"
        result.rows.append(row)
    for quantity in SPECTRAL_QUANTITIES:
        if not num_spikes and quantity in MP_QUANTITIES:
            continue
        column = [row[quantity] for row in result.rows if not math.isnan(row[quantity])]
        result.values[quantity] = math.fsum(column) / len(column) if column else math.nan
    return result


def spectral(
    ctx: TrialContext,
    *,
    min_evals: int = 8,
    max_evals: int = 15000,
    max_n: int = 50000,
    conv2d_norm: bool = True,
    num_spikes: bool = True,
) -> MeasureOutput:
    """The spectral family of ``ctx.model``: ``spectral/<quantity>``, the mean over the
    analysed conv and linear layers of each quantity of the module docstring, and the
    per-layer long table ``spectral_layers``. Data-free: reads only the weights."""
    named = [(name[: -len(".weight")] if name.endswith(".weight") else name, p)
             for name, p in weight_parameters(ctx.model)]
    if not named:
        raise SpectralError("model: has no conv or linear weight tensors; spectral measures need at least one")
    result = analyze(named, min_evals=min_evals, max_evals=max_evals, max_n=max_n, conv2d_norm=conv2d_norm,
                     num_spikes=num_spikes)
    if not result.rows:
        raise SpectralError(f"model: no layer has between min_evals={min_evals} and max_evals={max_evals} "
                            f"eigenvalues ({'; '.join(f'{k}: {v}' for k, v in result.skipped.items())})")
    table = {column: [row[column] for row in result.rows] for column in result.rows[0]}
    info = {"layers": len(result.rows), "skipped": result.skipped,
            "small_n_fits": [row["layer"] for row in result.rows if row["fit"] == "small_n"],
            "failed_power_law_fits": [row["layer"] for row in result.rows if row["fit"] == "failed"],
            "failed_mp_fits": result.failed_mp_fits}
    return MeasureOutput(values={f"spectral/{q}": v for q, v in result.values.items()}, tables={TABLE: table},
                         info=info)

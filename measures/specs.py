"""The built-in measure families: each one's settings (fields are the defaults, with kind and
range) and its :class:`~measures.spec.MeasureSpec`. Torch-free; imports no measure module.

Families and what they yield (see each module's docstrings for definitions and constants):

- ``prunability``: prunability, pruned_parameter_count, sum_two_norms_pruned (first paper)
- ``random_prunability``: random_prunability
- ``pac_bayes``: pac_bayes_mag_flat, pac_bayes_flat (Jiang et al. 2020)
- ``norms``: parameter_count, sum_of_fro, sum_two_norms, log_prod_of_spec, distance_from_init, path_norm
- ``training``: sum_of_train_losses, train_loss
- ``margins``: margin/<layer>/<stat> (Jiang et al. 2019); ``output_margin_stats``: output_margin/<stat>
- ``flatness``: Hessian spectrum and trace, effective dimensionality, gradient-covariance trace,
  TIC proxy, eps-flatness (second paper, Appendix E)
- ``el2n``: el2n (Paul, Ganguli & Dziugaite 2021) at the early checkpoint
- ``pruning_vs_perturbation``: the first paper's Figure 2 curves
- ``spectral``: spectral/<quantity>, WeightWatcher's data-free heavy-tailed metrics (Martin & Mahoney 2021)

The field order is the order of the settings stored with every result row: the measures job
recomputes a row whose stored settings text differs, so reordering or retyping a field makes
every stored zoo stale (``tests/measures/test_specs.py`` pins the text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from measures.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_COARSE_STEP,
    DEFAULT_EPSILON,
    DEFAULT_FRACTIONS,
    DEFAULT_NUM_EXAMPLES,
    DEFAULT_RESOLUTION,
    DEFAULT_SEARCH,
    EPS_REPORTS,
    EPS_SEARCHES,
    EPS_SPLITS,
    EPSILON_PLACEMENTS,
    EVAL_BATCH_SIZE,
    HVP_MODES,
    METHODS,
    PARAMETER_COUNT_OF,
    PARAMETER_SETS,
    PARAMS_CHOICES,
    SEARCHES,
    SPLITS,
    STATS,
    TIC_TRACES,
    TRACE_METHODS,
)
from measures.spec import (
    AT_LEAST_1,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    UNIT_INTERVAL,
    MeasureSettings,
    MeasureSpec,
    Range,
    choice,
    custom,
    flag,
    integer,
    number,
    numbers,
)
from trainers.values import is_number


FENCE_FLOOR = "min, none or a positive number"


def _fence_floor(value: Any) -> Optional[str]:
    """``lower_fence_floor``: a word or a positive number (measures.margins)."""
    if value in ("min", "none") or (is_number(value) and value > 0):
        return None
    return FENCE_FLOOR


@dataclass(frozen=True)
class PrunabilitySettings(MeasureSettings):
    """prunability and random_prunability (measures/pruning.py)."""

    beta: float = number(0.1, NON_NEGATIVE)
    search: str = choice(DEFAULT_SEARCH, SEARCHES)
    resolution: float = number(DEFAULT_RESOLUTION, FRACTION)
    coarse_step: float = number(DEFAULT_COARSE_STEP, FRACTION)
    step_size: float = number(0.02, FRACTION)
    batch_size: int = integer(EVAL_BATCH_SIZE, AT_LEAST_1)
    recalibrate_bn: bool = flag(False)


@dataclass(frozen=True)
class PruningVsPerturbationSettings(MeasureSettings):
    """pruning_vs_perturbation (measures/pruning.py)."""

    fractions: Tuple[float, ...] = numbers(DEFAULT_FRACTIONS, UNIT_INTERVAL)
    batch_size: int = integer(EVAL_BATCH_SIZE, AT_LEAST_1)
    recalibrate_bn: bool = flag(False)


@dataclass(frozen=True)
class PacBayesSettings(MeasureSettings):
    """pac_bayes (measures/perturbation.py)."""

    beta: float = number(0.1, NON_NEGATIVE)
    draws: int = integer(10, AT_LEAST_1)
    steps: int = integer(15, AT_LEAST_1)
    sigma_max: float = number(2.0, POSITIVE)
    epsilon: float = number(1e-3, NON_NEGATIVE)
    subset_size: int = integer(10_000, AT_LEAST_1)
    parameters: str = choice("all", PARAMETER_SETS)
    batch_size: int = integer(EVAL_BATCH_SIZE, AT_LEAST_1)
    recalibrate_bn: bool = flag(False)


@dataclass(frozen=True)
class NormsSettings(MeasureSettings):
    """norms (measures/norms.py)."""

    parameter_count_of: str = choice("all", PARAMETER_COUNT_OF)
    fold_batchnorm: bool = flag(True)


@dataclass(frozen=True)
class TrainingSettings(MeasureSettings):
    """training (measures/training.py)."""

    recalibrate_bn: bool = flag(False)
    batch_size: int = integer(EVAL_BATCH_SIZE, AT_LEAST_1)


@dataclass(frozen=True)
class MarginsSettings(MeasureSettings):
    """margins (measures/margins.py)."""

    num_examples: int = integer(DEFAULT_NUM_EXAMPLES, AT_LEAST_1)
    batch_size: int = integer(DEFAULT_BATCH_SIZE, AT_LEAST_1)
    epsilon: float = number(DEFAULT_EPSILON, NON_NEGATIVE)
    epsilon_placement: str = choice("add", EPSILON_PLACEMENTS)
    lower_fence_floor: Any = custom("min", _fence_floor, FENCE_FLOOR)


@dataclass(frozen=True)
class OutputMarginSettings(MeasureSettings):
    """output_margin_stats (measures/margins.py)."""

    num_examples: int = integer(DEFAULT_NUM_EXAMPLES, AT_LEAST_1)
    batch_size: int = integer(1024, AT_LEAST_1)
    normalize: bool = flag(True)
    lower_fence_floor: Any = custom("min", _fence_floor, FENCE_FLOOR)


@dataclass(frozen=True)
class FlatnessSettings(MeasureSettings):
    """flatness (measures/flatness.py, measures/hessian.py)."""

    subset: int = integer(5000, AT_LEAST_1)
    split: str = choice("train", SPLITS)
    top_k: int = integer(100, AT_LEAST_1)
    method: str = choice("lanczos", METHODS)
    lanczos_steps: Optional[int] = integer(None, AT_LEAST_1, optional=True)
    power_max_iter: int = integer(100, AT_LEAST_1)
    power_tol: float = number(1e-3, POSITIVE)
    trace_method: str = choice("deflated", TRACE_METHODS)
    hutchinson_samples: int = integer(10, Range(2))
    eps_step: float = number(0.01, POSITIVE)
    eps_loss_increase: float = number(0.1, POSITIVE)
    eps_max: float = number(10.0, POSITIVE)
    eps_search: str = choice("bisect", EPS_SEARCHES)
    eps_directions: Optional[int] = integer(None, AT_LEAST_1, optional=True)
    eps_split: str = choice("hessian", EPS_SPLITS)
    eps_subset: Optional[int] = integer(None, AT_LEAST_1, optional=True)
    eps_report: str = choice("last_passing", EPS_REPORTS)
    batch_size: int = integer(1000, AT_LEAST_1)
    per_example_batch_size: int = integer(256, AT_LEAST_1)
    z: float = number(1.0, POSITIVE)
    params: str = choice("all", PARAMS_CHOICES)
    recalibrate_bn: bool = flag(False)
    hvp_mode: str = choice("reverse_over_reverse", HVP_MODES)
    hvp_cache: bool = flag(True)
    tic_trace: str = choice("hutchinson", TIC_TRACES)

    def conflicts(self) -> Optional[Tuple[str, str]]:
        if self.eps_max < self.eps_step:
            return "eps_max", f"a number >= eps_step ({self.eps_step:g})"
        if self.lanczos_steps is not None and self.lanczos_steps < self.top_k:
            return "lanczos_steps", f"null or an integer >= top_k ({self.top_k})"
        if self.eps_subset is not None and self.eps_split == "hessian":
            return "eps_subset", "null with eps_split hessian (its examples are the Hessian's subset)"
        return None


@dataclass(frozen=True)
class El2nSettings(MeasureSettings):
    """el2n (measures/el2n.py)."""

    batch_size: int = integer(EVAL_BATCH_SIZE, AT_LEAST_1)


# spectral (measures/spectral.py): the per-layer quantities averaged into spectral/<quantity>.
SPECTRAL_QUANTITIES: Tuple[str, ...] = ("alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm",
                                        "stable_rank", "num_spikes", "mp_softrank")


@dataclass(frozen=True)
class SpectralSettings(MeasureSettings):
    """spectral (measures/spectral.py); defaults are weightwatcher 0.7.7's."""

    min_evals: int = integer(8, AT_LEAST_1)
    max_evals: int = integer(15000, AT_LEAST_1)
    max_n: int = integer(50000, AT_LEAST_1)
    conv2d_norm: bool = flag(True)
    num_spikes: bool = flag(True)

    def conflicts(self) -> Optional[Tuple[str, str]]:
        if self.max_evals < self.min_evals:
            return "max_evals", f"an integer >= min_evals ({self.min_evals})"
        return None


BUILTIN: Tuple[MeasureSpec, ...] = (
    MeasureSpec("prunability", "measures.pruning:prunability_family",
                ("prunability", "pruned_parameter_count", "sum_two_norms_pruned"), PrunabilitySettings),
    MeasureSpec("random_prunability", "measures.pruning:random_prunability_family", ("random_prunability",),
                PrunabilitySettings),
    MeasureSpec("pruning_vs_perturbation", "measures.pruning:pruning_vs_perturbation",
                ("pruning_vs_perturbation/train_area", "pruning_vs_perturbation/test_area"),
                PruningVsPerturbationSettings, tables=("pruning_curves",)),
    MeasureSpec("pac_bayes", "measures.perturbation:pac_bayes_family", ("pac_bayes_mag_flat", "pac_bayes_flat"),
                PacBayesSettings),
    MeasureSpec("norms", "measures.norms:norms",
                ("parameter_count", "sum_of_fro", "sum_two_norms", "log_prod_of_spec", "distance_from_init",
                 "path_norm"), NormsSettings, needs=("init",)),
    MeasureSpec("training", "measures.training:training", ("sum_of_train_losses", "train_loss"), TrainingSettings,
                needs=("epochs",)),
    MeasureSpec("margins", "measures.margins:margins", ("margin/*",), MarginsSettings),
    MeasureSpec("output_margin_stats", "measures.margins:output_margin_stats",
                tuple(f"output_margin/{stat}" for stat in STATS), OutputMarginSettings),
    MeasureSpec("flatness", "measures.flatness:flatness",
                ("hessian_top_eigenvalue", "hessian_top_k_sum", "hessian_trace", "effective_dimensionality",
                 "gradient_covariance_trace", "tic_proxy", "eps_flatness"), FlatnessSettings,
                tables=("hessian_eigenvalues",)),
    MeasureSpec("el2n", "measures.el2n:el2n", ("el2n",), El2nSettings, needs=("early",), tables=("el2n",)),
    MeasureSpec("spectral", "measures.spectral:spectral", tuple(f"spectral/{q}" for q in SPECTRAL_QUANTITIES),
                SpectralSettings, tables=("spectral_layers",)),
)

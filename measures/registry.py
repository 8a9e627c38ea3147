"""Every measure family by name (a read-only mapping and a ``get``), and settings resolution.

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
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

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
from measures.family import Family
from trainers import yamlio

_PRUNABILITY_DEFAULTS = {"beta": 0.1, "search": DEFAULT_SEARCH, "resolution": DEFAULT_RESOLUTION,
                         "coarse_step": DEFAULT_COARSE_STEP, "step_size": 0.02, "batch_size": EVAL_BATCH_SIZE,
                         "recalibrate_bn": False}

# Every family, its function, what it yields, its settings' defaults (the one place they are
# defined) and what it needs. Importing this module imports no measure and no torch.
FAMILIES: Mapping[str, Family] = MappingProxyType({family.name: family for family in (
    Family("prunability", "measures.pruning:prunability_family",
           ("prunability", "pruned_parameter_count", "sum_two_norms_pruned"), dict(_PRUNABILITY_DEFAULTS)),
    Family("random_prunability", "measures.pruning:random_prunability_family", ("random_prunability",),
           dict(_PRUNABILITY_DEFAULTS)),
    Family("pruning_vs_perturbation", "measures.pruning:pruning_vs_perturbation",
           ("pruning_vs_perturbation/train_area", "pruning_vs_perturbation/test_area"),
           {"fractions": list(DEFAULT_FRACTIONS), "batch_size": EVAL_BATCH_SIZE, "recalibrate_bn": False},
           tables=("pruning_curves",)),
    Family("pac_bayes", "measures.perturbation:pac_bayes_family", ("pac_bayes_mag_flat", "pac_bayes_flat"),
           {"beta": 0.1, "draws": 10, "steps": 15, "sigma_max": 2.0, "epsilon": 1e-3, "subset_size": 10_000,
            "parameters": "all", "batch_size": EVAL_BATCH_SIZE, "recalibrate_bn": False}),
    Family("norms", "measures.norms:norms",
           ("parameter_count", "sum_of_fro", "sum_two_norms", "log_prod_of_spec", "distance_from_init", "path_norm"),
           {"parameter_count_of": "all", "fold_batchnorm": True}, needs=("init",)),
    Family("training", "measures.training:training", ("sum_of_train_losses", "train_loss"),
           {"recalibrate_bn": False, "batch_size": EVAL_BATCH_SIZE}, needs=("epochs",)),
    Family("margins", "measures.margins:margins", ("margin/*",),
           {"num_examples": DEFAULT_NUM_EXAMPLES, "batch_size": DEFAULT_BATCH_SIZE, "epsilon": DEFAULT_EPSILON,
            "epsilon_placement": "add", "lower_fence_floor": "min"}),
    Family("output_margin_stats", "measures.margins:output_margin_stats",
           tuple(f"output_margin/{stat}" for stat in STATS),
           {"num_examples": DEFAULT_NUM_EXAMPLES, "batch_size": 1024, "normalize": True, "lower_fence_floor": "min"}),
    Family("flatness", "measures.flatness:flatness",
           ("hessian_top_eigenvalue", "hessian_top_k_sum", "hessian_trace", "effective_dimensionality",
            "gradient_covariance_trace", "tic_proxy", "eps_flatness"),
           {"subset": 5000, "split": "train", "top_k": 100, "method": "lanczos", "lanczos_steps": None,
            "power_max_iter": 100, "power_tol": 1e-3, "trace_method": "deflated", "hutchinson_samples": 10, "eps_step": 0.01,
            "eps_loss_increase": 0.1, "eps_max": 10.0, "eps_search": "bisect", "eps_directions": None,
            "eps_split": "hessian", "eps_subset": None, "eps_report": "last_passing", "batch_size": 1000,
            "per_example_batch_size": 256, "z": 1.0, "params": "all", "recalibrate_bn": False,
            "hvp_mode": "reverse_over_reverse", "hvp_cache": True, "tic_trace": "hutchinson"},
           tables=("hessian_eigenvalues",)),
    Family("el2n", "measures.el2n:el2n", ("el2n",), {"batch_size": EVAL_BATCH_SIZE}, needs=("early",),
           tables=("el2n",)),
)})


class MeasureError(ValueError):
    """An unknown family or setting; the message names it and what is allowed."""


def names() -> List[str]:
    return list(FAMILIES)


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise MeasureError(f"measures: unknown family {name!r}, allowed: {', '.join(FAMILIES)}")
    return FAMILIES[name]


# Settings whose string values come from a fixed list (each module's own constant).
CHOICES: Mapping[Tuple[str, str], Tuple[str, ...]] = MappingProxyType({
    ("prunability", "search"): SEARCHES,
    ("random_prunability", "search"): SEARCHES,
    ("pac_bayes", "parameters"): PARAMETER_SETS,
    ("norms", "parameter_count_of"): PARAMETER_COUNT_OF,
    ("margins", "epsilon_placement"): EPSILON_PLACEMENTS,
    ("flatness", "split"): SPLITS,
    ("flatness", "method"): METHODS,
    ("flatness", "eps_search"): EPS_SEARCHES,
    ("flatness", "eps_split"): EPS_SPLITS,
    ("flatness", "eps_report"): EPS_REPORTS,
    ("flatness", "tic_trace"): TIC_TRACES,
    ("flatness", "params"): PARAMS_CHOICES,
    ("flatness", "hvp_mode"): HVP_MODES,
    ("flatness", "trace_method"): TRACE_METHODS,
})


def _fence_floor(value: Any) -> Optional[str]:
    if value in ("min", "none") or (_is_number(value) and value > 0):
        return None
    return "min, none or a positive number"


# Settings that take more than one kind of value: their own check (None when fine, else what is allowed).
SPECIAL: Mapping[Tuple[str, str], Callable[[Any], Optional[str]]] = MappingProxyType({
    ("margins", "lower_fence_floor"): _fence_floor,
    ("output_margin_stats", "lower_fence_floor"): _fence_floor,
})


def parse_value(text: str) -> Any:
    """A setting typed on a command line, read as YAML with numbers as people type them
    (``1e-3`` and ``.5`` are numbers: :mod:`trainers.yamlio`); an empty text is None."""
    try:
        return yamlio.parse_value(text, source="--set value")
    except yamlio.YamlError as exc:
        raise MeasureError(str(exc)) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_value(family: str, key: str, value: Any) -> Any:
    """``value`` for setting ``key`` of ``family``, checked against the kind of its default
    (and its list of choices); an int where a float is expected becomes a float."""
    default = get(family).defaults[key]
    where = f"measures.{family}.{key}"
    special = SPECIAL.get((family, key))
    if special is not None:
        allowed = special(value)
    elif isinstance(default, bool):
        allowed = None if isinstance(value, bool) else "true or false"
    elif isinstance(default, int):
        allowed = None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    elif isinstance(default, float):
        allowed = None if _is_number(value) else "a finite number"
        value = float(value) if allowed is None else value
    elif isinstance(default, str):
        choices = CHOICES.get((family, key))
        if choices is not None:
            allowed = None if value in choices else ", ".join(choices)
        else:
            allowed = None if isinstance(value, str) else "a string"
    elif isinstance(default, (list, tuple)):
        allowed = None if isinstance(value, (list, tuple)) and all(_is_number(v) for v in value) else "a list of numbers"
    else:  # a default of None: an optional number (Lanczos steps)
        allowed = None if value is None or (isinstance(value, int) and not isinstance(value, bool)) else "an integer or null"
    if allowed is not None:
        raise MeasureError(f"{where}: got {value!r}, allowed: {allowed}")
    return value


def settings_for(name: str, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The family's defaults updated with ``overrides``; an unknown key or a value of the
    wrong kind is an error naming ``measures.<family>.<key>``."""
    family = get(name)
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in family.defaults:
            raise MeasureError(
                f"measures.{name}.{key}: unknown setting, allowed: {', '.join(family.defaults) or 'none'}"
            )
        overrides[key] = check_value(name, key, overrides[key])
    return {**family.defaults, **overrides}

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

Every setting is checked by :func:`check_value` for its kind (that of its default: true or
false, an integer, a finite number, a choice of :data:`CHOICES`, a list of numbers) and, for
numbers, its range (:data:`RANGES`: counts and batch sizes >= 1, fractions in [0, 1], ...);
:data:`TOGETHER` checks settings that bound each other (flatness: ``eps_max >= eps_step``,
``lanczos_steps >= top_k``). A bad value is one line naming ``measures.<family>.<setting>``.
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


class Range:
    """The numbers a setting allows: ``low`` and ``high`` bounds (None: unbounded), each
    inclusive unless ``open_low``/``open_high``; a list setting's every element, and at least
    one of them."""

    def __init__(self, low: Optional[float] = None, high: Optional[float] = None, *, open_low: bool = False,
                 open_high: bool = False) -> None:
        self.low, self.high, self.open_low, self.open_high = low, high, open_low, open_high

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"{'<' if self.open_high else '<='} {self.high:g}"


_POSITIVE = Range(0, open_low=True)
_AT_LEAST_1 = Range(1)
_FRACTION = Range(0, 1, open_low=True)  # (0, 1]
_PRUNING_RANGES = {"beta": Range(0), "resolution": _FRACTION, "coarse_step": _FRACTION, "step_size": _FRACTION,
                   "batch_size": _AT_LEAST_1}

# The range of every numeric setting (checked after its kind; None allowed where the default is
# None). The measure functions check the same again when they run.
RANGES: Mapping[Tuple[str, str], Range] = MappingProxyType({
    **{("prunability", key): r for key, r in _PRUNING_RANGES.items()},
    **{("random_prunability", key): r for key, r in _PRUNING_RANGES.items()},
    ("pruning_vs_perturbation", "fractions"): Range(0, 1),
    ("pruning_vs_perturbation", "batch_size"): _AT_LEAST_1,
    ("pac_bayes", "beta"): Range(0),
    ("pac_bayes", "draws"): _AT_LEAST_1,
    ("pac_bayes", "steps"): _AT_LEAST_1,
    ("pac_bayes", "sigma_max"): _POSITIVE,
    ("pac_bayes", "epsilon"): Range(0),
    ("pac_bayes", "subset_size"): _AT_LEAST_1,
    ("pac_bayes", "batch_size"): _AT_LEAST_1,
    ("training", "batch_size"): _AT_LEAST_1,
    ("margins", "num_examples"): _AT_LEAST_1,
    ("margins", "batch_size"): _AT_LEAST_1,
    ("margins", "epsilon"): Range(0),
    ("output_margin_stats", "num_examples"): _AT_LEAST_1,
    ("output_margin_stats", "batch_size"): _AT_LEAST_1,
    ("flatness", "subset"): _AT_LEAST_1,
    ("flatness", "top_k"): _AT_LEAST_1,
    ("flatness", "lanczos_steps"): _AT_LEAST_1,
    ("flatness", "power_max_iter"): _AT_LEAST_1,
    ("flatness", "power_tol"): _POSITIVE,
    ("flatness", "hutchinson_samples"): Range(2),
    ("flatness", "eps_step"): _POSITIVE,
    ("flatness", "eps_loss_increase"): _POSITIVE,
    ("flatness", "eps_max"): _POSITIVE,
    ("flatness", "eps_directions"): _AT_LEAST_1,
    ("flatness", "eps_subset"): _AT_LEAST_1,
    ("flatness", "batch_size"): _AT_LEAST_1,
    ("flatness", "per_example_batch_size"): _AT_LEAST_1,
    ("flatness", "z"): _POSITIVE,
    ("el2n", "batch_size"): _AT_LEAST_1,
})


def _flatness_together(settings: Mapping[str, Any]) -> Optional[Tuple[str, str]]:
    """The flatness settings that bound each other: (setting, what is allowed) when violated."""
    if settings["eps_max"] < settings["eps_step"]:
        return "eps_max", f"a number >= eps_step ({settings['eps_step']:g})"
    if settings["lanczos_steps"] is not None and settings["lanczos_steps"] < settings["top_k"]:
        return "lanczos_steps", f"null or an integer >= top_k ({settings['top_k']})"
    if settings["eps_subset"] is not None and settings["eps_split"] == "hessian":
        return "eps_subset", "null with eps_split hessian (its examples are the Hessian's subset)"
    return None


# Checks of settings that bound each other, per family, on the resolved settings.
TOGETHER: Mapping[str, Callable[[Mapping[str, Any]], Optional[Tuple[str, str]]]] = MappingProxyType({
    "flatness": _flatness_together,
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
    if allowed is None and value is not None and (family, key) in RANGES:
        bounds = RANGES[(family, key)]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values or not all(bounds.contains(v) for v in values):
            kind = "numbers" if isinstance(value, (list, tuple)) else \
                "an integer" if isinstance(default, int) or default is None else "a number"
            allowed = f"{'a non-empty list of ' if kind == 'numbers' else ''}{kind} {bounds.text()}"
            if default is None:
                allowed += " or null"
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
    settings = {**family.defaults, **overrides}
    if name in TOGETHER:
        bad = TOGETHER[name](settings)
        if bad is not None:
            key, allowed = bad
            raise MeasureError(f"measures.{name}.{key}: got {settings[key]!r}, allowed: {allowed}")
    return settings

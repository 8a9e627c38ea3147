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
- ``el2n``: el2n (Paul et al. 2021) at the early checkpoint
- ``pruning_vs_perturbation``: the first paper's Figure 2 curves
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from measures import el2n, flatness, hessian, margins, norms, perturbation, pruning, training
from measures.context import Family
from trainers import yamlio

FAMILIES: Mapping[str, Family] = MappingProxyType({
    **pruning.FAMILIES, **perturbation.FAMILIES, **norms.FAMILIES, **training.FAMILIES,
    **margins.FAMILIES, **flatness.FAMILIES, **el2n.FAMILIES,
})


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
    ("prunability", "search"): pruning.SEARCHES,
    ("random_prunability", "search"): pruning.SEARCHES,
    ("pac_bayes", "parameters"): perturbation.PARAMETER_SETS,
    ("norms", "parameter_count_of"): norms.PARAMETER_COUNT_OF,
    ("margins", "epsilon_placement"): margins.EPSILON_PLACEMENTS,
    ("flatness", "split"): flatness.SPLITS,
    ("flatness", "method"): flatness.METHODS,
    ("flatness", "eps_search"): flatness.EPS_SEARCHES,
    ("flatness", "tic_trace"): flatness.TIC_TRACES,
    ("flatness", "params"): hessian.PARAMS_CHOICES,
    ("flatness", "hvp_mode"): hessian.HVP_MODES,
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

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

from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional

from measures import el2n, flatness, margins, norms, perturbation, pruning, training
from measures.context import Family

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


def settings_for(name: str, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The family's defaults updated with ``overrides``; an unknown key is an error."""
    family = get(name)
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in family.defaults:
            raise MeasureError(
                f"measures.{name}.{key}: unknown setting, allowed: {', '.join(family.defaults) or 'none'}"
            )
    return {**family.defaults, **overrides}

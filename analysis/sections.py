"""Paper-specific sections of a report: analyses that only some zoos have (pruning during
training, iterative magnitude pruning), registered by name and chosen by the caller (a
preset's ``analysis: {sections: [...]}``).

A section is a pure function ``fn(SectionInput) -> SectionOutput``: it gets every model of
the zoo, the measures, and the store's long tables (``epochs``, the mode's own tables such as
``events``, per-example tables such as ``el2n``), and returns Markdown for the report plus the
files (CSV tables, PNG figures) it wants written next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Dict, List, Mapping

import pandas as pd


@dataclass(frozen=True)
class SectionInput:
    """``models``: one row per model (index: the model key; the trial's hyperparameters, the
    model's ``model_id``, ``sparsity``, ``model_epoch`` and final metrics); ``measures``: one
    column per measure, same index; ``tables``: the long tables by name; ``hparams``: the
    names of the grid-axis columns; ``target``: the report's target name."""

    models: pd.DataFrame
    measures: pd.DataFrame
    tables: Mapping[str, pd.DataFrame]
    hparams: List[str]
    target: str


@dataclass
class SectionOutput:
    """``markdown``: the section's lines (starting with its ``## `` heading); ``files``:
    relative path (``figures/x.png``, ``x.csv``) -> bytes; ``notes``: what could not be done."""

    markdown: List[str]
    files: Dict[str, bytes] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


def _registry() -> Mapping[str, Callable[[SectionInput], SectionOutput]]:
    # The section modules import SectionInput/SectionOutput from here, so they load after them.
    from analysis.imp import imp_section
    from analysis.stability import stability_section

    return MappingProxyType({"imp": imp_section, "stability": stability_section})


SECTIONS = _registry()


def names() -> List[str]:
    return sorted(SECTIONS)

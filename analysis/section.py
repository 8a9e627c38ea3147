"""What a report section is: :class:`SectionSpec`, and what a section function is given and
returns (:class:`SectionInput`, :class:`SectionOutput`).

A leaf module (pandas only): the section implementations import these types from here and
the registry (:mod:`analysis.sections`) names the implementations as ``"module:attr"``
strings, so no import circle runs through a section.

A section is a pure function ``fn(SectionInput) -> SectionOutput``. The report's main
sections (Tables 1–3 and the figures) run for every zoo, in registry order, each seeing the
frames of those before it; the optional ones (a preset's ``analysis: {sections: [...]}``) get
every model of the zoo, the measures and the store's long tables, and their Markdown goes
after the settings.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Tuple

import pandas as pd

from analysis.errors import AnalysisError

if TYPE_CHECKING:  # only for the annotation: the options import the paper claims
    from analysis.options import AnalysisOptions


@dataclass(frozen=True)
class Zoo:
    """The zoo the statistics are computed on: ``models`` (the completed models with a finite
    target, one row per model, indexed like :class:`SectionInput` ``models``), ``measures``
    (one column per measure of Tables 1–3, same index), ``target_series``, the grid ``axes``,
    what granulated Kendall holds fixed (``hold_fixed``), the fits of the regression-derived
    measures (``joint_fits``: name -> (adjusted R², cross-validated R²)) and the extra
    targets of a double-descent zoo (``extra_targets``)."""

    models: pd.DataFrame
    measures: pd.DataFrame
    target_series: pd.Series
    axes: List[str]
    hold_fixed: List[str]
    joint_fits: Mapping[str, Tuple[float, float]] = field(default_factory=dict)
    extra_targets: Mapping[str, pd.Series] = field(default_factory=dict)


@dataclass(frozen=True)
class SectionInput:
    """``models``: one row per model (index: the model's label, :func:`analysis.data.model_label`
    of its ``trial_id`` and ``model_id``; the trial's hyperparameters, the model's
    ``model_id``, ``sparsity``, ``model_epoch`` and final metrics); ``measures``: one column per
    measure, same index; ``tables``: the long tables by name; ``hparams``: the names of the
    grid-axis columns; ``target``: the report's target name.

    For the main sections also: ``zoo`` (what the statistics see), ``options`` (the
    :class:`analysis.options.AnalysisOptions`) and ``results`` (the frames the sections before
    this one returned, such as ``table1``)."""

    models: pd.DataFrame
    measures: pd.DataFrame
    tables: Mapping[str, pd.DataFrame]
    hparams: List[str]
    target: str
    zoo: Optional[Zoo] = None
    options: Optional["AnalysisOptions"] = None
    results: Mapping[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class SectionOutput:
    """``markdown``: the section's lines for the report; ``files``: relative path
    (``figures/x.png``, ``x.csv``) -> bytes, written in order; ``notes``: what could not be
    done; ``frames``: results for the sections after it and the report (``table1``, ...);
    ``figures``: (title, relative path of the PNG) of each figure drawn."""

    markdown: List[str]
    files: Dict[str, bytes] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    frames: Dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: List[Tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class SectionSpec:
    """A report section.

    ``name``: how a preset chooses it (``analysis: {sections: [name]}``) or, for a ``main``
    section, the name of what it adds to every report. ``function``: ``"module:attr"`` of
    ``fn(SectionInput) -> SectionOutput``, imported on first use (:attr:`fn`). ``tables``:
    the store's long tables it reads (``genzoo analyze`` reads them for it). ``columns``: the
    columns of ``models`` it needs (a zoo without them is a one-line error). ``main``: part of
    every report (Tables 1–3, the figures), run in registration order before the optional ones.
    """

    name: str
    function: str
    tables: Tuple[str, ...] = ()
    columns: Tuple[str, ...] = ()
    main: bool = False

    def __post_init__(self) -> None:
        module, _, attribute = self.function.partition(":")
        if not self.name or not module or not attribute:
            raise AnalysisError(f"sections.{self.name}: function {self.function!r}, allowed: 'module:attribute'")

    @property
    def fn(self) -> Callable[[SectionInput], SectionOutput]:
        module, _, attribute = self.function.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def run(self, section: SectionInput) -> SectionOutput:
        """The section's output; a one-line error when ``models`` lacks a column it needs."""
        missing = [c for c in self.columns if c not in section.models.columns]
        if missing:
            raise AnalysisError(f"sections.{self.name}: the models lack column(s) {', '.join(missing)}")
        return self.fn(section)

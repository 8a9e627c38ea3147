"""The registry of report sections: :func:`register`, :func:`get`, :func:`names`,
:func:`main_sections`.

The report is a list of sections (:class:`analysis.section.SectionSpec`): the main ones,
Tables 1–3, the robust sign error and the figures, in every report in the order registered here; the optional
ones, analyses that only some zoos have (pruning during training, iterative magnitude
pruning), chosen by name (a preset's ``analysis: {sections: [...]}``). An extension module
defines its section function and calls :func:`register` with its spec.

A leaf module: the implementations are named as ``"module:attr"`` and imported when a
report runs them, so importing the registry (``genzoo sweep plan`` validating a sweep file)
imports no section, scikit-learn or matplotlib.
"""

from __future__ import annotations

from typing import Dict, List

from analysis.errors import AnalysisError
from analysis.section import SectionInput, SectionOutput, SectionSpec  # noqa: F401 (the section types, re-exported)

_SPECS: Dict[str, SectionSpec] = {}


def register(spec: SectionSpec) -> SectionSpec:
    """Add a section. Registering an equal spec again is a no-op (a module imported twice); a
    different spec under a registered name is an error."""
    if not isinstance(spec, SectionSpec):
        raise AnalysisError(f"sections: register got {spec!r}, allowed: an analysis.section.SectionSpec")
    known = _SPECS.get(spec.name)
    if known is not None:
        if known != spec:
            raise AnalysisError(f"sections.{spec.name}: already registered as {known.function}, "
                                f"allowed: one spec per section name")
        return known
    _SPECS[spec.name] = spec
    return spec


for _spec in (
    # Main sections, in the order they run and write their files.
    SectionSpec("table1", "analysis.main_sections:table1_section", main=True),
    SectionSpec("table2", "analysis.main_sections:table2_section", main=True),
    SectionSpec("table3", "analysis.main_sections:table3_section", main=True),
    # The robust sign error over coupled environments (Dziugaite et al. 2020), beside Tables 1–2.
    SectionSpec("sign_error", "analysis.sign_error_report:sign_error_section", main=True),
    SectionSpec("figures", "analysis.main_sections:figures_section", main=True,
                tables=("pruning_curves", "hessian_eigenvalues", "el2n", "epochs")),
    # Optional sections, chosen by a preset.
    SectionSpec("imp", "analysis.imp:imp_section", tables=("el2n",), columns=("model_id", "mode")),
    SectionSpec("stability", "analysis.stability:stability_section", tables=("events", "epochs")),
):
    register(_spec)


def get(name: str) -> SectionSpec:
    if name not in _SPECS:
        raise AnalysisError(f"sections: unknown section {name!r}, allowed: {', '.join(names()) or 'none'}")
    return _SPECS[name]


def names() -> List[str]:
    """The optional sections a preset may choose, sorted."""
    return sorted(name for name, spec in _SPECS.items() if not spec.main)


def main_sections() -> List[SectionSpec]:
    """The sections of every report, in registration order."""
    return [spec for spec in _SPECS.values() if spec.main]

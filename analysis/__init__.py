"""Statistics, tables, figures and the report. pandas, numpy, scipy, matplotlib only.

The names below are loaded on first use, so that importing one module of the package (the
claims of ``analysis.paper_claims``, read when a sweep file is validated) does not import the
others (scikit-learn, matplotlib).
"""

import importlib

_EXPORTS = {
    "AnalysisError": "analysis.errors",
    "AnalysisOptions": "analysis.options",
    "AnalysisResult": "analysis.report",
    "GranulatedKendall": "analysis.kendall",
    "adjusted_r2": "analysis.regression",
    "analyze": "analysis.report",
    "cmi_by_set": "analysis.cmi",
    "conditional_mutual_information": "analysis.cmi",
    "cv_predict": "analysis.regression",
    "cv_r2": "analysis.regression",
    "fit_feature_group": "analysis.regression",
    "granulated_kendall": "analysis.kendall",
    "kendall_tau": "analysis.kendall",
    "kendall_tau_se": "analysis.kendall",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

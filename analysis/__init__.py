"""Statistics, tables, figures and the report. pandas, numpy, scipy, matplotlib only."""

from analysis.cmi import cmi_by_set, conditional_mutual_information
from analysis.errors import AnalysisError
from analysis.kendall import GranulatedKendall, granulated_kendall, kendall_tau, kendall_tau_se
from analysis.regression import adjusted_r2, cv_predict, cv_r2, fit_feature_group
from analysis.report import AnalysisResult, analyze

__all__ = [
    "AnalysisError",
    "AnalysisResult",
    "GranulatedKendall",
    "adjusted_r2",
    "analyze",
    "cmi_by_set",
    "conditional_mutual_information",
    "cv_predict",
    "cv_r2",
    "fit_feature_group",
    "granulated_kendall",
    "kendall_tau",
    "kendall_tau_se",
]

"""The options of one analysis, in one frozen dataclass: the one place their defaults live.

:func:`analysis.report.analyze` takes an :class:`AnalysisOptions`; ``genzoo analyze``
(:mod:`sweep.analyze`) builds it from the sweep file's ``analysis:`` block and the command
line. Leaf module: it imports nothing of the analysis but the paper claims' type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from analysis.paper_claims import PaperComparison

# target name -> (description for the report, trials columns it needs)
TARGETS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "gap": ("generalization gap g = train_acc − test_acc", ("train_acc", "test_acc")),
    "test_loss": ("test loss (cross-entropy)", ("test_loss",)),
    "test_error": ("test error = 1 − test_acc", ("test_acc",)),
}

# The measure Table 3 conditions on: the first paper's prunability.
ANCHOR_MEASURE = "prunability"

# (feature prefix, derived measure, derived best-single-variable measure or None):
# the per-layer margin signature of Jiang et al. 2019 gives the first paper's "Normalized
# Margins" and "Best Margin Variable"; the logit-margin statistics give the double-descent
# "Margins" baseline (first paper, Appendix A.4).
FEATURE_GROUPS: Tuple[Tuple[str, str, Optional[str]], ...] = (
    ("margin/", "normalized_margins", "best_margin_variable"),
    ("output_margin/", "output_margins", None),
)


@dataclass(frozen=True)
class AnalysisOptions:
    """What to analyse and how.

    About the zoo: ``experiment`` (its name in the report), ``hparams`` (the names of the
    grid-axis columns; ``seed`` is never an axis, see :func:`analysis.data.grid_axes`),
    ``settings`` (the run's settings stated in the report, nested dicts flattened to dotted
    keys), ``test_examples`` (the test-set size, for the warning that the target's spread is
    below one model's test-set noise).

    Choices of the paper being reproduced (a preset's ``analysis:`` block): ``target`` (gap,
    test_loss or test_error); ``double_descent`` (also implied by ``target="test_loss"``) adds
    Table 1's τ with the test loss and test error; ``anchor`` is the measure Table 3
    conditions on; ``feature_groups`` are the regressions of :data:`FEATURE_GROUPS`;
    ``sections`` names the optional report sections to add (:mod:`analysis.sections`);
    ``colour_by`` the hyperparameter that colours the scatter plots (None: the grid axis that
    ranks the target best); ``paper`` adds the section "Against the paper".

    ``include_partial`` keeps in Tables 1–3 the measures computed on fewer models than the zoo holds.

    The robust sign error (:mod:`analysis.sign_error`, Dziugaite et al. 2020), defaults the
    paper's: ``sign_error_min_weight`` (0.5): a coupled pair weighs (p − 0.5)₊, p the Hoeffding
    probability that its targets are in their true order, so pairs within the test-set noise
    are left out; ``sign_error_min_ess`` (12): the smallest effective sample size of an
    environment that enters the summaries.
    """

    target: str = "gap"  # one of TARGETS
    hparams: Tuple[str, ...] = ()
    experiment: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    double_descent: bool = False
    anchor: str = ANCHOR_MEASURE
    feature_groups: Tuple[Tuple[str, str, Optional[str]], ...] = FEATURE_GROUPS
    sections: Tuple[str, ...] = ()
    test_examples: Optional[int] = None
    colour_by: Optional[str] = None
    paper: Optional[PaperComparison] = None
    include_partial: bool = False
    # The paper's values; analysis.sign_error.MIN_WEIGHT and MIN_ESS (tests check they agree).
    sign_error_min_weight: float = 0.5
    sign_error_min_ess: float = 12.0

    def __post_init__(self) -> None:
        # Sequences given as lists (a YAML block, a test) are stored as tuples: the options are frozen.
        object.__setattr__(self, "hparams", tuple(self.hparams))
        object.__setattr__(self, "sections", tuple(self.sections))
        object.__setattr__(self, "feature_groups", tuple(tuple(group) for group in self.feature_groups))

    @property
    def with_double_descent(self) -> bool:
        """Whether Table 1 gets τ with the test loss and test error (asked for, or implied by the target)."""
        return self.double_descent or self.target == "test_loss"

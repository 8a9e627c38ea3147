"""The first paper's tables as DataFrames, and their Markdown / terminal text.

- Table 1: per measure, Kendall's τ with the target (and its standard error), adjusted R²,
  10-fold cross-validated R², and the conditional mutual information K (Jiang variant and
  PGDL variant); for double-descent zoos also τ against test loss and test error (Figure 1b).
- Table 2: per measure, τ along each hyperparameter axis (ψ_i), the overall τ and ψ.
- Table 3: K between prunability and every other measure.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.bootstrap import adjusted_r2_ci, kendall_tau_ci, psi_ci
from analysis.cmi import conditional_mutual_information
from analysis.kendall import granulated_kendall, kendall_tau, kendall_tau_se
from analysis.options import ANCHOR_MEASURE  # noqa: F401 (defined once, with the other defaults)
from analysis.regression import CV_FOLDS, CV_SEED, adjusted_r2, cv_r2

MEASURE = "_measure"
TARGET = "_target"
# Bootstrap interval columns, appended after the paper's columns (which keep their order).
CI_COLUMNS = ("kendall_tau_ci_low", "kendall_tau_ci_high", "adjusted_r2_ci_low", "adjusted_r2_ci_high")
PSI_CI_COLUMNS = ("psi_ci_low", "psi_ci_high")


def model_frame(
    hparams: pd.DataFrame, measure: pd.Series, target: pd.Series, columns: Sequence[str]
) -> pd.DataFrame:
    """The models (rows of ``hparams``, indexed by trial_id) with a finite measure and target:
    the hyperparameter ``columns`` plus ``_measure`` and ``_target``. Fixed column names keep
    a measure called like a trials column (``train_loss``) from colliding with it."""
    frame = hparams[list(columns)].copy()
    frame[MEASURE] = measure.reindex(frame.index).astype(float)
    frame[TARGET] = target.reindex(frame.index).astype(float)
    finite = np.isfinite(frame[MEASURE].to_numpy()) & np.isfinite(frame[TARGET].to_numpy())
    return frame[finite]


def _varies(values: np.ndarray) -> bool:
    return len(values) > 0 and not np.all(values == values[0])


def table1(
    measures: pd.DataFrame,
    target: pd.Series,
    hparams: pd.DataFrame,
    axes: Sequence[str],
    *,
    extra_targets: Optional[Mapping[str, pd.Series]] = None,
    joint_fits: Optional[Mapping[str, Tuple[float, float]]] = None,
    folds: int = CV_FOLDS,
    seed: int = CV_SEED,
) -> pd.DataFrame:
    """One row per column of ``measures`` (index trial_id) with at least two models.

    Columns: ``measure``, ``n_models``, ``kendall_tau``, ``kendall_tau_se``
    (:func:`kendall_tau_se`), ``adjusted_r2`` (univariate fit, p = 1), ``cv_r2``, ``cmi``
    (Jiang variant), ``cmi_pgdl`` and one ``kendall_tau_<name>`` per ``extra_targets``.
    ``joint_fits`` replaces (adjusted R², cv R²) of regression-derived measures by those of
    their joint fit on all features. A statistic that is undefined for the models at hand
    (too few models, constant target) is NaN.

    Last come the 95% percentile bootstrap intervals over models (:mod:`analysis.bootstrap`):
    ``kendall_tau_ci_low``/``_high`` and ``adjusted_r2_ci_low``/``_high`` (NaN for a joint
    fit, whose interval would need the whole regression refitted per resample). Unlike
    ``kendall_tau_se`` (the paper's null-hypothesis s_τ, the same for every measure), they
    say how precisely this zoo pins down each measure's τ and R̄².
    """
    extra_targets = dict(extra_targets or {})
    joint_fits = dict(joint_fits or {})
    records = []
    for name in measures.columns:
        frame = model_frame(hparams, measures[name], target, axes)
        n = len(frame)
        if n < 2:
            continue
        mu = frame[MEASURE].to_numpy()
        g = frame[TARGET].to_numpy()
        record: Dict[str, object] = {"measure": name, "n_models": n}
        record["kendall_tau"] = kendall_tau(mu, g)
        record["kendall_tau_se"] = kendall_tau_se(n)
        if name in joint_fits:
            record["adjusted_r2"], record["cv_r2"] = joint_fits[name]
        elif n >= 3 and _varies(g):
            record["adjusted_r2"] = adjusted_r2(mu, g)
            record["cv_r2"] = cv_r2(mu, g, folds=folds, seed=seed)
        else:
            record["adjusted_r2"] = record["cv_r2"] = math.nan
        record["cmi"] = conditional_mutual_information(frame, MEASURE, TARGET, axes, variant="jiang")
        record["cmi_pgdl"] = conditional_mutual_information(frame, MEASURE, TARGET, axes, variant="pgdl")
        for extra_name, extra in extra_targets.items():
            other = model_frame(hparams, measures[name], extra, [])
            record[f"kendall_tau_{extra_name}"] = (
                kendall_tau(other[MEASURE], other[TARGET]) if len(other) >= 2 else math.nan
            )
        record["kendall_tau_ci_low"], record["kendall_tau_ci_high"] = kendall_tau_ci(mu, g)
        if name in joint_fits or not math.isfinite(record["adjusted_r2"]):
            record["adjusted_r2_ci_low"] = record["adjusted_r2_ci_high"] = math.nan
        else:
            record["adjusted_r2_ci_low"], record["adjusted_r2_ci_high"] = adjusted_r2_ci(mu, g)
        records.append(record)
    columns = ["measure", "n_models", "kendall_tau", "kendall_tau_se", "adjusted_r2", "cv_r2", "cmi", "cmi_pgdl"]
    columns += [f"kendall_tau_{e}" for e in extra_targets]
    columns += list(CI_COLUMNS)
    return pd.DataFrame.from_records(records, columns=columns)


def table2(
    measures: pd.DataFrame,
    target: pd.Series,
    hparams: pd.DataFrame,
    axes: Sequence[str],
    hold_fixed: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per measure: ``measure``, ``n_models``, one column per axis (ψ_axis, the mean τ
    when only that hyperparameter varies; :func:`granulated_kendall`), ``kendall_tau``,
    ``psi`` and its 95% percentile bootstrap interval over models ``psi_ci_low``/``_high``
    (:func:`analysis.bootstrap.psi_ci`)."""
    records = []
    for name in measures.columns:
        frame = model_frame(hparams, measures[name], target, [*axes, *hold_fixed])
        if len(frame) < 2:
            continue
        granulated = granulated_kendall(frame, MEASURE, TARGET, axes, hold_fixed=hold_fixed)
        record: Dict[str, object] = {"measure": name, "n_models": len(frame)}
        record.update(granulated.per_axis)
        record["kendall_tau"] = kendall_tau(frame[MEASURE], frame[TARGET])
        record["psi"] = granulated.psi
        record["psi_ci_low"], record["psi_ci_high"] = psi_ci(frame, MEASURE, TARGET, axes, hold_fixed=hold_fixed)
        records.append(record)
    return pd.DataFrame.from_records(records, columns=["measure", "n_models", *axes, "kendall_tau", "psi",
                                                       *PSI_CI_COLUMNS])


def table3(
    measures: pd.DataFrame,
    hparams: pd.DataFrame,
    axes: Sequence[str],
    anchor: str = ANCHOR_MEASURE,
) -> pd.DataFrame:
    """K (Jiang variant) between ``anchor`` (prunability) and every other measure, over the
    models that have both (first paper, §5.4.3 and Table 3).

    The anchor plays the role of g: Î = I(V_other; V_anchor | U_S) / H(V_anchor | U_S), so
    every entry is normalized by the same entropy and the row is comparable across measures.
    Empty (no rows) when the anchor was not measured.
    """
    columns = ["measure", "n_models", "cmi"]
    if anchor not in measures.columns:
        return pd.DataFrame(columns=columns)
    records = []
    for name in measures.columns:
        if name == anchor:
            continue
        frame = model_frame(hparams, measures[name], measures[anchor], axes)
        if len(frame) < 2 or not _varies(frame[TARGET].to_numpy()):
            continue
        records.append({
            "measure": name,
            "n_models": len(frame),
            "cmi": conditional_mutual_information(frame, MEASURE, TARGET, axes, variant="jiang"),
        })
    return pd.DataFrame.from_records(records, columns=columns)


def _cell(value: object, digits: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        return f"{float(value):.{digits}f}"
    return str(value)


def to_markdown(table: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub Markdown table; floats with ``digits`` decimals, NaN as "–"."""
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in table.itertuples(index=False):
        cells = [_cell(v, digits).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_text(table: pd.DataFrame, digits: int = 4) -> str:
    """Fixed-width text for the terminal: left-aligned names, right-aligned numbers."""
    header = [str(c) for c in table.columns]
    body = [[_cell(v, digits) for v in row] for row in table.itertuples(index=False)]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in body]) + "\n"


def to_csv_text(table: pd.DataFrame) -> str:
    """CSV with ten significant digits and "\\n" line ends, so equal inputs give equal bytes."""
    return table.to_csv(index=False, float_format="%.10g", lineterminator="\n")

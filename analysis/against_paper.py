"""The report's "Against the paper" section: every published claim of the paper a preset
reproduces (:mod:`analysis.paper_claims`), genzoo's value with its 95% bootstrap interval,
whether the sign is the same, and a verdict.

Verdict rules (:func:`verdict`, constants below):

Signed statistics (Kendall's τ, ψ_i, ψ, correlations, differences; the paper's value, or its
stated direction, gives the sign). A paper's value within ``DETECTABLE_SE`` (2) of the paper's
*own* null standard errors of zero (:func:`paper_se`: its stated s_τ, or one computed from its
number of models and values per axis) is not a sign the paper saw: it is judged as a claim of
no association (rule 2), e.g. Table 1's τ = 0.0201 of the training loss with s_τ = 0.037.

1. No genzoo value (measure not computed, or computed on part of the zoo only; axis not
   varied; runs missing): **inconclusive**, "not tested: <why>".
2. The paper's value is 0 (a structural zero, e.g. parameter count along dropout) or no
   association (above): an interval that contains 0 (or, without one, a value of 0)
   **reproduces** it; an interval that excludes 0 contradicts it (rule 3's protocol clause
   applies).
3. The 95% bootstrap interval excludes 0: the same sign as the paper's is **reproduced**;
   the opposite sign is **contradicted** when the zoo follows the paper's protocol, and
   **inconclusive** ("opposite sign, but the protocol differs: ...") when it does not: a
   different dataset, an axis the paper does not vary, a zoo not trained to a common loss
   on a measure that ranks convergence, or a difference the preset states can explain a
   disagreement, so it does not refute the paper's claim about its own protocol. An
   agreement under a different protocol stays reproduced (its differences are listed).
4. Otherwise (the interval spans 0, or there is none) **inconclusive** with the reason, the
   first that applies: "too few models": the paper's effect |v| is below ``DETECTABLE_SE``
   (2) standard errors of the statistic for this zoo, so an effect of the paper's size cannot
   be seen (standard errors under the null hypothesis: s_τ = sqrt(2(2n+5)/(9n(n−1))) for τ;
   for ψ_i, sqrt(Σ_g s_τ(n_g)²)/G over its G usable groups of n_g models; for ψ, sqrt(Σ_i
   s_i²)/k over its k axes; 1/sqrt(n − 2) for Pearson's r; for a mean over runs its standard
   error sd/√n; for a difference of means sqrt(sd_a²/n_a + sd_b²/n_b)); "no interval" (fewer
   than 3 models or runs, or every resample equal); "interval spans zero".

Magnitude statistics (adjusted R², CMI: no sign): the paper's value v is compared by size.
genzoo's interval overlapping the band [v/F, v·F], ``F`` = ``MAGNITUDE_FACTOR`` = 2, is
**reproduced** (a value of the paper's size); an interval entirely outside the band is
**contradicted** (inconclusive under protocol differences, as in rule 3); without an interval
(CMI has none in genzoo: its pairs of resampled copies are not defined) the verdict is
**inconclusive**, with the ratio of genzoo's value to the paper's.

The comparison uses only the models of Tables 1–3 (completed, finite target; measures
computed on every model unless ``--include-partial``); the τ, ψ, adjusted R² and CMI of the
report's own target are Table 1's and Table 2's numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from analysis.bootstrap import (
    adjusted_r2_ci,
    kendall_tau_ci,
    mean_ci,
    mean_difference_ci,
    pearson_r_ci,
    psi_ci,
)
from analysis.cmi import conditional_mutual_information
from analysis.data import TARGETS, target_values
from analysis.kendall import granulated_kendall, kendall_tau, kendall_tau_se
from analysis.paper_claims import Claim, Experiment, PaperComparison
from analysis.regression import adjusted_r2
from analysis.tables import MEASURE, TARGET, model_frame, to_csv_text, to_markdown

DETECTABLE_SE = 2.0
MAGNITUDE_FACTOR = 2.0
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
CSV_NAME = "against_paper.csv"
# ``too_small``: this zoo cannot see an effect of the paper's size: |value| < DETECTABLE_SE
# null standard errors, or fewer than 3 models or runs (no interval at all).
COLUMNS = ["experiment", "claim", "ref", "paper_row", "statistic", "paper_value", "paper_n", "genzoo_value",
           "ci_low", "ci_high", "n", "se", "detectable", "too_small", "same_sign", "verdict", "reason",
           "differences"]


@dataclass(frozen=True)
class Zoo:
    """What the comparison reads: the models of the tables (index: model label) with their
    trials columns, the measures (one column per measure, same index), the report's target,
    the grid axes and seeds held fixed, Tables 1–3, the long tables (``events``, ``el2n``),
    the measures left out for partial coverage (measure -> models with a value) and the
    convergence check (:func:`analysis.checks.convergence_confounds`)."""

    models: pd.DataFrame
    measures: pd.DataFrame
    target: str
    target_series: pd.Series
    axes: Sequence[str]
    hold_fixed: Sequence[str] = ()
    t1: pd.DataFrame = field(default_factory=pd.DataFrame)
    t2: pd.DataFrame = field(default_factory=pd.DataFrame)
    t3: pd.DataFrame = field(default_factory=pd.DataFrame)
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    partial: Mapping[str, int] = field(default_factory=dict)
    confounds: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class Estimate:
    """genzoo's value of a claim's statistic (NaN when ``untested`` says why), its 95%
    interval, the models or runs it used, its null standard error (NaN: unknown) and, when
    the interval is NaN, why."""

    value: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    se: float = math.nan
    untested: str = ""
    no_interval: str = ""
    measures: Tuple[str, ...] = ()


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(float(v)) for v in values)


def verdict(kind: str, direction: int, paper_value: Optional[float], estimate: Estimate,
            differences: Sequence[str] = ()) -> Tuple[Optional[bool], str, str]:
    """(same sign or None, verdict, reason) of one claim by the rules of the module
    docstring. ``kind`` is "signed" or "magnitude"; ``direction`` the paper's sign (+1, −1,
    0); ``differences`` the protocol differences that apply to the claim."""
    if estimate.untested:
        return None, INCONCLUSIVE, f"not tested: {estimate.untested}"
    value, low, high = estimate.value, estimate.low, estimate.high
    if not _finite(value):
        return None, INCONCLUSIVE, "not tested: genzoo's value is undefined"
    has_interval = _finite(low, high)
    protocol = "; ".join(differences)
    if kind == "magnitude":
        v = float(paper_value)
        band = (v / MAGNITUDE_FACTOR, v * MAGNITUDE_FACTOR)
        ratio = value / v
        if not has_interval:
            inside = band[0] <= value <= band[1]
            return None, INCONCLUSIVE, (f"no interval ({estimate.no_interval or 'none computed'}); genzoo's value is "
                                        f"{ratio:.2g}× the paper's, {'inside' if inside else 'outside'} the "
                                        f"factor-{MAGNITUDE_FACTOR:g} band")
        if high >= band[0] and low <= band[1]:
            return None, REPRODUCED, f"interval overlaps the paper's size [{band[0]:.3g}, {band[1]:.3g}]"
        side = "below" if high < band[0] else "above"
        if differences:
            return None, INCONCLUSIVE, f"interval entirely {side} the paper's size, but the protocol differs: {protocol}"
        return None, CONTRADICTED, f"interval entirely {side} the paper's size [{band[0]:.3g}, {band[1]:.3g}]"
    sign = (value > 0) - (value < 0)
    same = None if direction == 0 or sign == 0 else sign == direction
    if direction == 0:
        contains = (low <= 0 <= high) if has_interval else value == 0
        if contains:
            return same, REPRODUCED, "no association, as in the paper: genzoo's " + (
                "interval contains 0" if has_interval else "value is 0")
        if not has_interval:
            return same, INCONCLUSIVE, f"no interval ({estimate.no_interval or 'none computed'})"
        if differences:
            return same, INCONCLUSIVE, (f"interval excludes 0 where the paper saw no association, but the protocol "
                                        f"differs: {protocol}")
        return same, CONTRADICTED, "interval excludes 0 where the paper saw no association"
    if has_interval and (low > 0 or high < 0):
        interval_sign = 1 if low > 0 else -1
        if interval_sign == direction:
            return True, REPRODUCED, "same sign, interval excludes zero"
        if differences:
            return False, INCONCLUSIVE, f"opposite sign, interval excludes zero, but the protocol differs: {protocol}"
        return False, CONTRADICTED, "opposite sign, interval excludes zero"
    if too_small(paper_value, estimate):
        return same, INCONCLUSIVE, (f"too few models: the paper's effect {abs(float(paper_value)):.3g} is below "
                                    f"{DETECTABLE_SE:g} standard errors ({DETECTABLE_SE * estimate.se:.3g}) with "
                                    f"n = {estimate.n}")
    if not has_interval:
        return same, INCONCLUSIVE, f"no interval ({estimate.no_interval or 'none computed'})"
    return same, INCONCLUSIVE, "interval spans zero"


def too_small(paper_value: Optional[float], estimate: Estimate) -> bool:
    """An effect of the paper's size cannot be seen: |v| < ``DETECTABLE_SE`` × the null
    standard error of the statistic for this zoo (False when either is unknown)."""
    return (paper_value is not None and paper_value != 0 and _finite(estimate.se)
            and abs(float(paper_value)) < DETECTABLE_SE * estimate.se)


# ---------------------------------------------------------------- statistics of the first paper

def _missing_measure(zoo: Zoo, measure: str) -> str:
    if measure in zoo.measures.columns and zoo.measures[measure].notna().sum() >= 2:
        return ""
    if measure in zoo.partial:
        return (f"{measure} was computed on {zoo.partial[measure]} of {len(zoo.models)} models and is left out "
                f"of the tables")
    return f"{measure} was not measured"


def _target(zoo: Zoo, name: str) -> Optional[pd.Series]:
    if name == zoo.target:
        return zoo.target_series
    if all(c in zoo.models.columns for c in TARGETS[name][1]):
        return target_values(zoo.models, name).reindex(zoo.models.index)
    return None


def _table_row(table: pd.DataFrame, measure: str) -> Optional[pd.Series]:
    if table is None or table.empty or "measure" not in table.columns:
        return None
    rows = table[table["measure"] == measure]
    return rows.iloc[0] if len(rows) else None


def _frame(zoo: Zoo, measure: str, target: pd.Series) -> pd.DataFrame:
    return model_frame(zoo.models, zoo.measures[measure], target, [*zoo.axes, *zoo.hold_fixed])


def _group_se(frame: pd.DataFrame, keys: List[str]) -> float:
    """sqrt(Σ_g s_τ(n_g)²)/G over the usable groups (≥ 2 models, varying target)."""
    groups = [g for _, g in frame.groupby(keys, dropna=False, sort=True)] if keys else [frame]
    sizes = [len(g) for g in groups if len(g) >= 2 and g[TARGET].nunique() > 1]
    if not sizes:
        return math.nan
    return math.sqrt(sum(kendall_tau_se(n) ** 2 for n in sizes)) / len(sizes)


def _axis_keys(zoo: Zoo, axis: str) -> List[str]:
    return [a for a in zoo.axes if a != axis] + [c for c in zoo.hold_fixed if c != axis]


def _measure_statistic(claim: Claim, experiment: Experiment, zoo: Zoo) -> Estimate:
    measure = claim.params["measure"]
    target_name = claim.params.get("target", zoo.target)
    missing = _missing_measure(zoo, measure)
    if claim.statistic == "cmi_anchor":
        missing = missing or _missing_measure(zoo, experiment.anchor)
        if missing:
            return Estimate(untested=missing)
        row = _table_row(zoo.t3, measure)
        if row is None or not _finite(row["cmi"]):
            return Estimate(untested=f"Table 3 has no CMI between {experiment.anchor} and {measure}")
        return Estimate(value=float(row["cmi"]), n=int(row["n_models"]), no_interval="CMI has no bootstrap interval",
                        measures=(measure, experiment.anchor))
    if missing:
        return Estimate(untested=missing)
    target = _target(zoo, target_name)
    if target is None:
        return Estimate(untested=f"the trials lack the columns of target {target_name}")
    main = target_name == zoo.target
    frame = _frame(zoo, measure, target)
    n = len(frame)
    if n < 2:
        return Estimate(untested=f"{measure} and {target_name} are finite for fewer than 2 models")
    x, y = frame[MEASURE].to_numpy(), frame[TARGET].to_numpy()
    row1 = _table_row(zoo.t1, measure) if main else None
    row2 = _table_row(zoo.t2, measure) if main else None
    names = (measure,)
    if claim.statistic == "kendall_tau":
        if row1 is not None:
            return Estimate(float(row1["kendall_tau"]), float(row1["kendall_tau_ci_low"]),
                            float(row1["kendall_tau_ci_high"]), int(row1["n_models"]),
                            kendall_tau_se(int(row1["n_models"])), no_interval=_few(n), measures=names)
        low, high = kendall_tau_ci(x, y)
        return Estimate(kendall_tau(x, y), low, high, n, kendall_tau_se(n), no_interval=_few(n), measures=names)
    if claim.statistic == "psi_axis":
        axis = claim.params["axis"]
        if axis not in zoo.axes:
            return Estimate(untested=f"the zoo does not vary {axis}")
        keys = _axis_keys(zoo, axis)
        result = granulated_kendall(frame, MEASURE, TARGET, [axis], hold_fixed=keys)
        low, high = psi_ci(frame, MEASURE, TARGET, [axis], hold_fixed=keys)
        return Estimate(result.per_axis[axis], low, high, n, _group_se(frame, keys),
                        no_interval=_few(n), measures=names)
    if claim.statistic == "psi":
        if not zoo.axes:
            return Estimate(untested="the zoo varies no hyperparameter, so ψ is undefined")
        ses = [_group_se(frame, _axis_keys(zoo, a)) for a in zoo.axes]
        ses = [s for s in ses if math.isfinite(s)]
        se = math.sqrt(sum(s * s for s in ses)) / len(ses) if ses else math.nan
        if row2 is not None:
            return Estimate(float(row2["psi"]), float(row2["psi_ci_low"]), float(row2["psi_ci_high"]),
                            int(row2["n_models"]), se, no_interval=_few(n), measures=names)
        result = granulated_kendall(frame, MEASURE, TARGET, zoo.axes, hold_fixed=zoo.hold_fixed)
        low, high = psi_ci(frame, MEASURE, TARGET, zoo.axes, hold_fixed=zoo.hold_fixed)
        return Estimate(result.psi, low, high, n, se, no_interval=_few(n), measures=names)
    if claim.statistic == "adjusted_r2":
        if row1 is not None:
            low, high = float(row1["adjusted_r2_ci_low"]), float(row1["adjusted_r2_ci_high"])
            why = "a regression-derived measure's joint fit has none" if not _finite(low, high) else ""
            return Estimate(float(row1["adjusted_r2"]), low, high, n, no_interval=why or _few(n), measures=names)
        if n < 3 or np.all(y == y[0]):
            return Estimate(untested=f"adjusted R² needs 3 models and a varying {target_name}")
        low, high = adjusted_r2_ci(x, y)
        return Estimate(adjusted_r2(x, y), low, high, n, no_interval=_few(n), measures=names)
    # cmi
    if row1 is not None:
        value = float(row1["cmi"])
    else:
        value = conditional_mutual_information(frame, MEASURE, TARGET, zoo.axes, variant="jiang")
    if not _finite(value):
        return Estimate(untested="CMI is undefined for this zoo (no conditioning set with varying pairs)")
    return Estimate(value, n=n, no_interval="CMI has no bootstrap interval", measures=names)


def _few(n: int, unit: str = "models") -> str:
    """Why an interval is NaN: too few models or runs, else degenerate resamples."""
    if n < 3:
        return f"{n} {unit}; an interval needs at least 3"
    return f"{n} {unit}: a resample gave an undefined value, or every resample the same"


# ---------------------------------------------------------------- runs of a pruning-during-training zoo

def _settings(text: Any) -> Dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text) if isinstance(text, str) and text.strip() else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def stability_runs(zoo: Zoo) -> pd.DataFrame:
    """One row per pruning-during-training or unpruned (``standard``) run (index: the model label)
    with ``stability``, the paper's generalization measure ``best_test_acc`` and ``best_gap``
    (the best test accuracy at or after the last pruning event), the final ``test_acc`` and
    ``gap``, and the columns a claim selects by (``target``, ``intervention``,
    ``noise_batches``, ``scratch``, ``model``): the stability section's per-run table
    (:func:`analysis.stability.per_model`, from the ``events`` table and the per-epoch
    records) when the zoo has events. Without them, the model rows' stored ``stability`` (no
    ``best_*`` columns; unpruned runs at stability 1). Then every measure column."""
    models = zoo.models
    if "mode" not in models.columns or not (models["mode"] == "prune_during_training").any():
        return pd.DataFrame()
    events = zoo.tables.get("events")
    if events is not None and len(events):
        from analysis.stability import per_model

        runs = per_model(models, events, zoo.tables.get("epochs")).set_index("trial_id")
    else:
        records = []
        for key, row in models[models["mode"].isin(["prune_during_training", "standard"])].iterrows():
            standard = row["mode"] == "standard"
            if not standard and not _finite(row.get("stability")):
                continue
            settings = {} if standard else _settings(row.get("mode_settings"))
            scratch = bool(settings.get("scratch", False))
            records.append({
                "key": key, "model": row.get("model"),
                "target": "none" if standard else ("scratch" if scratch else settings.get("target", "S")),
                "intervention": "none" if standard else settings.get("intervention", "prune"),
                "noise_batches": 0 if standard else int(settings.get("noise_batches", 1)), "scratch": scratch,
                "stability": 1.0 if standard else float(row["stability"]), "test_acc": float(row["test_acc"]),
                "gap": float(row["train_acc"]) - float(row["test_acc"]),
            })
        if not records:
            return pd.DataFrame()
        runs = pd.DataFrame(records).set_index("key")
    runs.index.name = None
    measures = zoo.measures.reindex(runs.index)
    return runs.join(measures[[c for c in measures.columns if c not in runs.columns]])


def _matches(runs: pd.DataFrame, selection: Mapping[str, Any]) -> Tuple[pd.DataFrame, str]:
    """The runs whose every selected column equals the value (or one of the values of a list)."""
    for column, wanted in selection.items():
        if column not in runs.columns:
            return runs.iloc[0:0], f"the runs have no column {column!r}"
        options = wanted if isinstance(wanted, list) else [wanted]
        runs = runs[[any(_same(value, option) for option in options) for value in runs[column]]]
    return runs, ""


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(value, (bool, np.bool_)):
        return bool(value) == bool(wanted) if isinstance(value, (bool, np.bool_, int, float)) else False
    if isinstance(wanted, (int, float)):
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    return str(value) == str(wanted)


def _describe(selection: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in selection.items())


def _run_statistic(claim: Claim, zoo: Zoo, paper_sign) -> Estimate:
    runs = stability_runs(zoo)
    if runs.empty:
        return Estimate(untested="the zoo has no prune_during_training runs with a stability")
    if claim.statistic == "correlation":
        x, y = claim.params["x"], claim.params["y"]
        for name in (x, y):
            why = _run_column_missing(runs, zoo, name)
            if why:
                return Estimate(untested=why)
        selected, why = _matches(runs, claim.params.get("select", {}))
        if why:
            return Estimate(untested=why)
        pair = selected[[x, y]].astype(float)
        pair = pair[np.isfinite(pair.to_numpy()).all(axis=1)]
        n = len(pair)
        if n < 2:
            return Estimate(untested=f"{n} run(s) with {x} and {y}" + (
                f" among {_describe(claim.params['select'])}" if claim.params.get("select") else ""))
        if pair[x].nunique() < 2 or pair[y].nunique() < 2:
            return Estimate(untested=f"{x if pair[x].nunique() < 2 else y} is constant over the {n} runs")
        sign = paper_sign(x) * paper_sign(y)
        if claim.params["method"] == "pearson":
            value = float(np.corrcoef(pair[x], pair[y])[0, 1])
            low, high = pearson_r_ci(pair[x], pair[y])
            se = 1.0 / math.sqrt(n - 2) if n > 2 else math.nan
        else:
            value = kendall_tau(pair[x], pair[y])
            low, high = kendall_tau_ci(pair[x], pair[y])
            se = kendall_tau_se(n)
        measures = tuple(name for name in (x, y) if name in zoo.measures.columns)
        return _signed(Estimate(value, low, high, n, se, no_interval=_few(n, "runs"), measures=measures), sign)
    y = claim.params["y"]
    why = _run_column_missing(runs, zoo, y)
    if why:
        return Estimate(untested=why)
    groups = []
    for key in ("a", "b"):
        selected, why = _matches(runs, claim.params[key])
        if why:
            return Estimate(untested=why)
        values = selected[y].astype(float)
        values = values[np.isfinite(values.to_numpy())].to_numpy()
        if len(values) == 0:
            return Estimate(untested=f"no run with {_describe(claim.params[key])}")
        groups.append(values)
    a, b = groups
    value = float(a.mean() - b.mean())
    low, high = mean_difference_ci(a, b)
    se = (math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if len(a) > 1 and len(b) > 1 else math.nan)
    why = (f"{len(a)} and {len(b)} runs; an interval needs 3 in each group" if min(len(a), len(b)) < 3
           else "every resample gave the same difference")
    return _signed(Estimate(value, low, high, len(a) + len(b), se, no_interval=why), paper_sign(y))


def _run_column_missing(runs: pd.DataFrame, zoo: Zoo, name: str) -> str:
    """Why a run column or measure has no value ("" when it has)."""
    if name in runs.columns and runs[name].notna().any():
        return ""
    if name.startswith("best_"):
        return (f"the runs have no {name} (the best test accuracy after the last pruning event needs the "
                f"events table and the per-epoch records)")
    return _missing_measure(zoo, name) or f"the runs have no {name}"


def _signed(estimate: Estimate, sign: int) -> Estimate:
    if sign == 1:
        return estimate
    return Estimate(-estimate.value, -estimate.high, -estimate.low, estimate.n, estimate.se, estimate.untested,
                    estimate.no_interval, estimate.measures)


# ---------------------------------------------------------------- runs of an IMP zoo (third paper)

def _level(model_id: Any) -> float:
    text = str(model_id)
    return float(text[len("level_"):]) if text.startswith("level_") and text[len("level_"):].isdigit() else math.nan


def _choose(table: pd.DataFrame, seed: Any) -> Any:
    """The column (level or width) with the lowest mean test error over the other seeds
    (ties: the first column); None when no other seed has a value."""
    others = table.drop(index=seed)
    if others.empty:
        return None
    curve = others.mean(axis=0, skipna=True).dropna()
    return None if curve.empty else curve.idxmin()


def imp_runs(models: pd.DataFrame, el2n: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per IMP run (benchmark = model/dataset, label noise, seed) of ``models``:

    - ``level``: the optimal level, chosen as the level with the lowest mean test error over
      the run's *other* seeds (leave one seed out). The paper picks the level on a validation
      set; the zoo has none, and choosing on the run's own test error would make
      "pruning helps" true by construction (the dense model is one of the candidates).
    - ``improvement`` = dense test error − test error at ``level`` (positive: pruning helped);
    - ``train_loss_change`` = training loss at ``level`` − dense training loss;
    - ``noisy_gap_change``: (mean per-example training loss on noisy − on original examples)
      at ``level`` minus the same for the dense model, from the ``el2n`` table;
    - ``extended_minus_imp``: test error of the ``extended_dense`` run of the same seed at the
      same level − IMP's at ``level``;
    - ``width_minus_imp``: test error of the width down-scaling series at its width chosen the
      same way (other seeds) − IMP's at ``level``.
    NaN where a value cannot be had (one seed only, no such runs)."""
    columns = ["benchmark", "label_noise", "seed", "level", "improvement", "train_loss_change", "noisy_gap_change",
               "extended_minus_imp", "width_minus_imp"]
    if "mode" not in models.columns or "model_id" not in models.columns:
        return pd.DataFrame(columns=columns)
    frame = models.copy()
    frame["benchmark"] = frame["model"].astype(str) + "/" + frame["dataset"].astype(str)
    if "label_noise" not in frame.columns:
        frame["label_noise"] = 0.0
    frame["label_noise"] = frame["label_noise"].fillna(0.0).astype(float)
    frame["test_error"] = 1.0 - frame["test_acc"].astype(float)
    frame["level"] = frame["model_id"].map(_level)
    imp = frame[(frame["mode"] == "imp") & frame["level"].notna()]
    extended = frame[(frame["mode"] == "extended_dense") & frame["level"].notna()]
    standard = frame[frame["mode"] == "standard"]
    rows = []
    for (benchmark, noise), group in imp.groupby(["benchmark", "label_noise"], sort=True):
        errors = group.pivot_table(index="seed", columns="level", values="test_error", aggfunc="first").sort_index(axis=1)
        losses = group.pivot_table(index="seed", columns="level", values="train_loss", aggfunc="first")
        trials = group.groupby("seed")["trial_id"].first()
        widths = None
        series = standard[(standard["benchmark"] == benchmark) & (standard["label_noise"] == noise)]
        if "width" in series.columns and series["width"].nunique() > 1:
            widths = series.pivot_table(index="seed", columns="width", values="test_error", aggfunc="first")
        for seed in errors.index:
            row: Dict[str, Any] = {"benchmark": benchmark, "label_noise": noise, "seed": seed}
            level = _choose(errors, seed)
            if level is None or 0.0 not in errors.columns or not _finite(errors.loc[seed, 0.0], errors.loc[seed, level]):
                rows.append(row)
                continue
            error = float(errors.loc[seed, level])
            row.update(level=level, improvement=float(errors.loc[seed, 0.0]) - error,
                       train_loss_change=float(losses.loc[seed, level]) - float(losses.loc[seed, 0.0]))
            row["noisy_gap_change"] = _gap_change(el2n, trials[seed], level)
            match = extended[(extended["benchmark"] == benchmark) & (extended["label_noise"] == noise)
                             & (extended["seed"] == seed) & (extended["level"] == level)]
            if len(match):
                row["extended_minus_imp"] = float(match["test_error"].iloc[0]) - error
            if widths is not None and seed in widths.index:
                width = _choose(widths, seed)
                if width is not None and _finite(widths.loc[seed, width]):
                    row["width_minus_imp"] = float(widths.loc[seed, width]) - error
            rows.append(row)
    return pd.DataFrame.from_records(rows, columns=columns)


def _gap_change(el2n: Optional[pd.DataFrame], trial: str, level: float) -> float:
    if el2n is None or el2n.empty or not {"trial_id", "model_id", "loss", "noisy"} <= set(el2n.columns):
        return math.nan
    mine = el2n[el2n["trial_id"] == trial]

    def gap(model_id: str) -> float:
        rows = mine[mine["model_id"] == model_id]
        noisy = rows["noisy"].astype(bool)
        if not noisy.any() or noisy.all():
            return math.nan
        return float(rows.loc[noisy, "loss"].mean() - rows.loc[~noisy, "loss"].mean())

    return gap(f"level_{int(level):02d}") - gap("level_00")


IMP_COLUMNS = {
    "imp_improvement": "improvement",
    "imp_train_loss_change": "train_loss_change",
    "imp_noisy_gap_change": "noisy_gap_change",
    "imp_extended_minus_imp": "extended_minus_imp",
    "imp_width_minus_imp": "width_minus_imp",
}
IMP_NEEDS = {
    "improvement": "IMP runs of at least 2 seeds per benchmark and noise level (the optimal level is chosen on "
                   "the other seeds)",
    "train_loss_change": "IMP runs of at least 2 seeds per benchmark and noise level",
    "noisy_gap_change": "the el2n family's per-example losses (genzoo measure --measures el2n)",
    "extended_minus_imp": "extended_dense runs of the same seeds",
    "width_minus_imp": "a width down-scaling series of at least 2 seeds",
}


def _imp_statistic(claim: Claim, zoo: Zoo) -> Estimate:
    runs = imp_runs(zoo.models, zoo.tables.get("el2n"))
    if runs.empty:
        return Estimate(untested="the zoo has no imp runs")
    if claim.statistic == "imp_improvement_vs_noise":
        pair = runs[["label_noise", "improvement"]].astype(float).dropna()
        n = len(pair)
        if n < 2 or pair["label_noise"].nunique() < 2:
            return Estimate(untested=f"needs runs at two or more noise levels with an improvement ({n} runs)")
        low, high = kendall_tau_ci(pair["label_noise"], pair["improvement"])
        return Estimate(kendall_tau(pair["label_noise"], pair["improvement"]), low, high, n, kendall_tau_se(n),
                        no_interval=_few(n, "runs"))
    column = IMP_COLUMNS[claim.statistic]
    noisy = claim.params["noise"] == "noisy"
    part = runs[(runs["label_noise"] > 0) if noisy else (runs["label_noise"] == 0)]
    if part.empty:
        return Estimate(untested=f"no IMP run {'with' if noisy else 'without'} label noise")
    values = part[column].astype(float).dropna().to_numpy()
    n = len(values)
    if n == 0:
        return Estimate(untested=f"needs {IMP_NEEDS[column]}")
    low, high = mean_ci(values)
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Estimate(float(values.mean()), low, high, n, se, no_interval=_few(n, "runs"))


# ---------------------------------------------------------------- the comparison

def protocol_differences(experiment: Experiment, zoo: Zoo, stated: Sequence[str]) -> List[str]:
    """The differences between the zoo and the experiment's protocol that can explain a
    disagreement: a dataset or architecture the paper did not use, an axis the paper does
    not vary (or one it varies that the zoo does not), then the preset's own ``stated``
    differences."""
    found: List[str] = []
    protocol = experiment.protocol
    for column, allowed, label in (("dataset", protocol.dataset, "dataset"),
                                   ("model", protocol.architecture, "architecture")):
        if allowed and column in zoo.models.columns:
            used = sorted(set(zoo.models[column].dropna().astype(str)))
            if used and not set(used) <= set(allowed):
                found.append(f"{label} {', '.join(used)} (the paper: {', '.join(allowed)})")
    if protocol.axes is not None:
        extra = [a for a in zoo.axes if a not in protocol.axes]
        if extra:
            found.append(f"varies {', '.join(extra)}, which the paper does not vary")
        missing = [a for a in protocol.axes if a not in zoo.axes]
        if missing:
            found.append(f"does not vary {', '.join(missing)} (the paper does)")
    return found + list(stated)


def _convergence(zoo: Zoo, measures: Sequence[str]) -> List[str]:
    if zoo.confounds is None or zoo.confounds.empty:
        return []
    flagged = zoo.confounds[zoo.confounds["confounded"] & zoo.confounds["measure"].isin(list(measures))]
    return [f"the zoo is not trained to a common loss and {row.measure} follows the final training loss "
            f"(τ = {row.tau_train_loss:.2f})" for row in flagged.itertuples()]


def statistic_label(claim: Claim, experiment: Experiment, target: str) -> str:
    p = claim.params
    if claim.statistic == "kendall_tau":
        return f"τ with {p.get('target', target)}"
    if claim.statistic == "psi_axis":
        return f"ψ {p['axis']}"
    if claim.statistic == "psi":
        return "ψ"
    if claim.statistic == "adjusted_r2":
        return "adjusted R²"
    if claim.statistic == "cmi":
        return "CMI"
    if claim.statistic == "cmi_anchor":
        return f"CMI with {experiment.anchor}"
    if claim.statistic == "correlation":
        where = f" ({_describe(p['select'])})" if p.get("select") else ""
        return f"{'Pearson r' if p['method'] == 'pearson' else 'τ'}({p['x']}, {p['y']}){where}"
    if claim.statistic == "mean_difference":
        return f"mean {p['y']}: [{_describe(p['a'])}] − [{_describe(p['b'])}]"
    if claim.statistic == "imp_improvement_vs_noise":
        return "τ(label noise, dense − optimal test error)"
    labels = {"imp_improvement": "dense − optimal test error", "imp_train_loss_change": "optimal − dense train loss",
              "imp_noisy_gap_change": "change of the noisy − original train-loss gap",
              "imp_extended_minus_imp": "extended dense − IMP test error",
              "imp_width_minus_imp": "width down-scaling − IMP test error"}
    return f"{labels[claim.statistic]} ({p['noise']})"


def evaluate(claim: Claim, experiment: Experiment, comparison: PaperComparison, zoo: Zoo) -> Estimate:
    """genzoo's :class:`Estimate` of one claim, in the paper's orientation."""
    paper = comparison.paper
    if claim.statistic in ("kendall_tau", "psi_axis", "psi", "adjusted_r2", "cmi", "cmi_anchor"):
        estimate = _measure_statistic(claim, experiment, zoo)
        return _signed(estimate, paper.sign(claim.params["measure"])) if claim.kind == "signed" else estimate
    if claim.statistic in ("correlation", "mean_difference"):
        return _run_statistic(claim, zoo, lambda name: paper.sign(name) if name in zoo.measures.columns else 1)
    return _imp_statistic(claim, zoo)


def paper_se(claim: Claim, experiment: Experiment) -> float:
    """The null standard error of the claim's statistic in the paper's own zoo (NaN when the
    paper file does not give what it needs): for τ the s_τ the paper states (``tau_se``), else
    s_τ(n) of its ``paper_n`` or ``models``; for ψ_i, s_τ(k_i)/sqrt(N/k_i) with k_i the axis's
    number of values (``axis_values``) and N the paper's models (its groups of k_i models, one per
    combination of the other axes and seeds); for ψ, sqrt(Σ_i s_i²)/(number of axes); for
    Pearson's r 1/sqrt(n − 2) and for a Kendall correlation s_τ(n) of ``paper_n``."""
    protocol = experiment.protocol
    n = claim.paper_n or protocol.models
    if claim.statistic == "kendall_tau":
        if protocol.tau_se:
            return protocol.tau_se
        return kendall_tau_se(n) if n and n >= 2 else math.nan

    def axis_se(axis: str) -> float:
        k = protocol.axis_values.get(axis)
        if not k or not protocol.models:
            return math.nan
        return kendall_tau_se(k) / math.sqrt(protocol.models / k)

    if claim.statistic == "psi_axis":
        return axis_se(claim.params["axis"])
    if claim.statistic == "psi":
        ses = [axis_se(a) for a in (protocol.axes or ())]
        return math.sqrt(sum(x * x for x in ses)) / len(ses) if ses and all(map(math.isfinite, ses)) else math.nan
    if claim.statistic == "correlation" and claim.paper_n:
        if claim.params["method"] == "pearson":
            return 1.0 / math.sqrt(claim.paper_n - 2) if claim.paper_n > 2 else math.nan
        return kendall_tau_se(claim.paper_n) if claim.paper_n >= 2 else math.nan
    return math.nan


def paper_direction(claim: Claim, experiment: Experiment) -> Tuple[int, str]:
    """The direction the claim is judged by, and a note when it is not the sign of the
    paper's value: a value within ``DETECTABLE_SE`` of the paper's own null standard errors
    (:func:`paper_se`) of zero is a claim of no association (direction 0)."""
    if claim.kind != "signed" or claim.direction == 0 or claim.value is None:
        return claim.direction, ""
    se = paper_se(claim, experiment)
    if math.isfinite(se) and abs(claim.value) < DETECTABLE_SE * se:
        return 0, (f"the paper's {claim.value:.3g} is within {DETECTABLE_SE:g} of its own standard errors "
                   f"({DETECTABLE_SE * se:.3g}) of 0, no association; ")
    return claim.direction, ""


def compare(comparison: PaperComparison, zoo: Zoo) -> pd.DataFrame:
    """One row per claim of the chosen experiments (:data:`COLUMNS`)."""
    records = []
    for name in comparison.experiments:
        experiment = comparison.paper.experiments[name]
        differences = protocol_differences(experiment, zoo, comparison.differences)
        for claim in experiment.claims:
            estimate = evaluate(claim, experiment, comparison, zoo)
            applying = differences + _convergence(zoo, estimate.measures)
            direction, note = paper_direction(claim, experiment)
            same, outcome, reason = verdict(claim.kind, direction, claim.value, estimate, applying)
            if note and not estimate.untested:
                reason = note + reason
            measure = claim.params.get("measure")
            records.append({
                "experiment": name, "claim": claim.id, "ref": claim.ref,
                "paper_row": comparison.paper.paper_name(measure) if measure else claim.statement,
                "statistic": statistic_label(claim, experiment, zoo.target),
                "paper_value": claim.value if claim.value is not None else math.nan,
                "paper_n": claim.paper_n if claim.paper_n is not None else math.nan,
                "genzoo_value": estimate.value, "ci_low": estimate.low, "ci_high": estimate.high,
                "n": estimate.n, "se": estimate.se,
                "detectable": DETECTABLE_SE * estimate.se if _finite(estimate.se) else math.nan,
                "too_small": bool(not estimate.untested and direction != 0
                                  and (too_small(claim.value, estimate) or estimate.n < 3)),
                "same_sign": "" if same is None else ("yes" if same else "no"),
                "verdict": outcome, "reason": reason, "differences": "; ".join(applying),
            })
    return pd.DataFrame.from_records(records, columns=COLUMNS)


def _paper_cell(row: pd.Series, claim: Claim) -> str:
    if claim.value is not None:
        return f"{claim.value:.4g}"
    return {1: "> 0", -1: "< 0", 0: "0"}[claim.direction]


def _genzoo_cell(row: pd.Series) -> str:
    if not _finite(row["genzoo_value"]):
        return "–"
    text = f"{row['genzoo_value']:.3f}"
    if _finite(row["ci_low"], row["ci_high"]):
        text += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    return text


def section(comparison: PaperComparison, zoo: Zoo, results: pd.DataFrame) -> List[str]:
    """The Markdown of the section (its ``## Against the paper`` heading first)."""
    paper = comparison.paper
    claims = {c.id: c for name in comparison.experiments for c in paper.experiments[name].claims}
    counts = results["verdict"].value_counts()
    lines = ["## Against the paper", "",
             f"Compared with *{paper.title}* ({paper.citation}): "
             + ", ".join(f"{int(counts.get(v, 0))} {v}" for v in (REPRODUCED, CONTRADICTED, INCONCLUSIVE))
             + f" of {len(results)} claims. Every claim with its numbers: [{CSV_NAME}]({CSV_NAME}).", ""]
    for name in comparison.experiments:
        experiment = paper.experiments[name]
        part = results[results["experiment"] == name]
        protocol = experiment.protocol
        described = "; ".join(x for x in (
            f"{protocol.models} models" if protocol.models else "",
            ", ".join(protocol.architecture), ", ".join(protocol.dataset),
            f"axes {', '.join(protocol.axes)}" if protocol.axes else "", protocol.training) if x)
        lines += [f"### {experiment.title}", "",
                  f"The paper: {described}. This zoo: {len(zoo.models)} models"
                  + (f" on {', '.join(sorted(set(zoo.models['dataset'].astype(str))))}"
                     if "dataset" in zoo.models.columns else "")
                  + (f", axes {', '.join(zoo.axes)}" if zoo.axes else "") + ".", ""]
        differences = protocol_differences(experiment, zoo, comparison.differences)
        if differences:
            lines += ["Protocol differences (an opposite sign under them is inconclusive, not a contradiction):", ""]
            lines += [f"- {d}" for d in differences] + [""]
        sub = part["verdict"].value_counts()
        lines.append(", ".join(f"{int(sub.get(v, 0))} {v}" for v in (REPRODUCED, CONTRADICTED, INCONCLUSIVE)) + ".")
        lines.append("")
        listed = "; ".join(differences)
        if listed:
            part = part.assign(reason=[r.replace(f"differs: {listed}", "differs (as listed above)")
                                       for r in part["reason"]])
        tested = part[~part["reason"].str.startswith("not tested")]
        untested = part[part["reason"].str.startswith("not tested")]
        if len(tested):
            table = pd.DataFrame({
                "claim": tested["claim"], "paper": [f"{r}: {p}" for r, p in zip(tested["ref"], tested["paper_row"])],
                "statistic": tested["statistic"],
                "paper value": [_paper_cell(row, claims[row["claim"]]) for _, row in tested.iterrows()],
                "genzoo [95% interval]": [_genzoo_cell(row) for _, row in tested.iterrows()],
                "n": tested["n"].astype(int), "same sign": tested["same_sign"], "verdict": tested["verdict"],
                "reason": tested["reason"],
            })
            lines += [to_markdown(table)]
        if len(untested):
            lines += [f"Not tested by this zoo ({len(untested)} claims, each inconclusive):", ""]
            table = pd.DataFrame({
                "claim": untested["claim"], "paper": [f"{r}: {p}" for r, p in zip(untested["ref"], untested["paper_row"])],
                "statistic": untested["statistic"],
                "paper value": [_paper_cell(row, claims[row["claim"]]) for _, row in untested.iterrows()],
                "reason": [r[len("not tested: "):] for r in untested["reason"]],
            })
            lines += [to_markdown(table)]
    lines += [
        "Verdicts: **reproduced** — the 95% bootstrap interval excludes zero with the paper's sign (for adjusted R² "
        f"and CMI: it overlaps [v/{MAGNITUDE_FACTOR:g}, {MAGNITUDE_FACTOR:g}v] around the paper's value v); "
        "**contradicted** — it excludes zero with the opposite sign (lies outside that band), in a zoo that follows the "
        "paper's protocol; **inconclusive** otherwise, with the reason: the interval spans zero; too few models "
        f"(the paper's effect is below {DETECTABLE_SE:g} null standard errors of the statistic for this zoo, "
        "s_τ = sqrt(2(2n+5)/(9n(n−1))) for τ); no interval (CMI has none; fewer than 3 models or runs); a protocol "
        "difference (listed above); or not tested. Values are in the paper's orientation (the preset's paper file "
        "maps genzoo's measures to the paper's rows and signs).", ""]
    return lines


def csv_text(results: pd.DataFrame) -> str:
    return to_csv_text(results)

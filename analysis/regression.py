"""Least-squares fits of the target on measures: adjusted R², cross-validated R², and the
regression-derived measures (normalized margins, best margin variable, output margins).

First paper, Appendix A.1.4 (adjusted R², 10-fold cross-validated R²) and A.2 (best margin
variable); Jiang et al. 2019 ("Predicting the generalization gap in deep networks with margin
distributions") for the linear model on margin-distribution statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from analysis.errors import AnalysisError

CV_FOLDS = 10
CV_SEED = 0


def _design(X, y) -> Tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise AnalysisError(f"X, y: expected X of shape (n, p) and y of shape (n,), got {X.shape} and {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise AnalysisError("X, y: every value must be finite (got NaN or inf)")
    return X, y


@dataclass(frozen=True)
class LinearFit:
    """y ≈ intercept + Σ_k coef_k · (x_k − mean_k) / scale_k over the non-constant columns.

    Columns are standardized with the training data's mean and standard deviation, so that
    ``coef`` are the standardized coefficients (up to the common factor 1/sd(y)) and a
    rank-deficient fit (more features than models) takes the minimum-norm solution in the
    standardized scale, which does not depend on the features' units.
    """

    intercept: float
    coef: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        return self.intercept + ((X - self.mean) / self.scale) @ self.coef


def fit_linear(X, y) -> LinearFit:
    """Ordinary least squares with an intercept (``numpy.linalg.lstsq``) on standardized
    columns; a constant column gets coefficient 0."""
    X, y = _design(X, y)
    mean = X.mean(axis=0)
    sd = X.std(axis=0)
    varies = sd > 0
    scale = np.where(varies, sd, 1.0)
    Z = (X - mean) / scale
    A = np.column_stack([np.ones(len(y)), Z[:, varies]])
    solution, *_ = np.linalg.lstsq(A, y, rcond=None)
    coef = np.zeros(X.shape[1])
    coef[varies] = solution[1:]
    return LinearFit(intercept=float(solution[0]), coef=coef, mean=mean, scale=scale)


def r_squared(y, prediction) -> float:
    """R² = 1 − Σ (y − ŷ)² / Σ (y − ȳ)² (first paper, Appendix A.1.4)."""
    y = np.asarray(y, dtype=float)
    prediction = np.asarray(prediction, dtype=float)
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        raise AnalysisError("y: R² is undefined for a constant target")
    return 1.0 - float(np.sum((y - prediction) ** 2)) / total


def adjusted_r2(X, y) -> float:
    """Adjusted R² of the least-squares fit ŷ = a·x + b (first paper, Appendix A.1.4):

        R̄² = 1 − (1 − R²) (n − 1) / (n − p − 1),

    with R² the in-sample coefficient of determination, n the number of models and p the
    number of columns of X (dim μ; 1 for a single measure). Needs n > p + 1 and a
    non-constant y.
    """
    X, y = _design(X, y)
    n, p = X.shape
    if n - p - 1 <= 0:
        raise AnalysisError(f"X: adjusted R² needs more models than features + 1, got n={n}, p={p}")
    r2 = r_squared(y, fit_linear(X, y).predict(X))
    return 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1)


def cv_predict(X, y, folds: int = CV_FOLDS, seed: int = CV_SEED) -> np.ndarray:
    """Out-of-fold least-squares predictions: ``sklearn.model_selection.KFold`` with
    ``n_splits = min(folds, n)`` (leave-one-out when there are fewer models than folds),
    ``shuffle=True`` and ``random_state=seed``; each fold is predicted by :func:`fit_linear`
    fitted on the other folds."""
    X, y = _design(X, y)
    n = len(y)
    if n < 2:
        raise AnalysisError(f"X: cross-validation needs at least 2 models, got {n}")
    if folds < 2:
        raise AnalysisError(f"folds: got {folds}, allowed: an integer >= 2")
    prediction = np.empty(n)
    splitter = KFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
    for train, test in splitter.split(X):
        prediction[test] = fit_linear(X[train], y[train]).predict(X[test])
    return prediction


def cv_r2(X, y, folds: int = CV_FOLDS, seed: int = CV_SEED) -> float:
    """Cross-validated R² (first paper, Appendix A.1.4, "10-fold cross-validation"): R² of the
    pooled out-of-fold predictions of :func:`cv_predict`, 1 − Σ (y − ŷ_oof)² / Σ (y − ȳ)².
    Pooling (rather than averaging per-fold R²) keeps it defined when a fold holds one or two
    models. It can be negative: a fit worse than predicting the mean."""
    X, y = _design(X, y)
    return r_squared(y, cv_predict(X, y, folds=folds, seed=seed))


@dataclass(frozen=True)
class FeatureGroupFit:
    """Result of :func:`fit_feature_group`.

    ``prediction``: out-of-fold prediction of the target per trial (the derived measure);
    ``features``: the feature columns used; ``dropped``: columns left out (not finite for
    every model, or constant); ``adjusted_r2`` (NaN when n ≤ p + 1) and ``cv_r2`` of the
    joint fit; ``standardized_coef``: coefficient per feature of the in-sample joint fit on
    standardized features; ``best_feature``: the feature with the largest |standardized
    coefficient|; ``best_values``: that feature times the sign of its coefficient.
    """

    prediction: pd.Series
    features: Tuple[str, ...]
    dropped: Tuple[str, ...]
    adjusted_r2: float
    cv_r2: float
    standardized_coef: pd.Series
    best_feature: str
    best_values: pd.Series


def fit_feature_group(
    features: pd.DataFrame, target: pd.Series, folds: int = CV_FOLDS, seed: int = CV_SEED
) -> FeatureGroupFit:
    """Regress the target on a group of features jointly (Jiang et al. 2019; first paper
    §5.1 "Normalized Margins" μ = a·φ and Appendix A.2 "best margin variable").

    ``features``: one row per trial (index trial_id), one column per feature (for example
    every ``margin/<layer>/<stat>``); ``target``: the target per trial. Feature columns that
    are not finite for every trial are dropped first (a zoo of mixed depths keeps every model
    and the layers all its models share); only when no feature is finite everywhere are the
    trials with a missing feature dropped instead. Constant columns are dropped too.

    - The derived measure is the out-of-fold prediction of :func:`cv_predict` (10 folds,
      seed 0), so a model's value never uses its own target.
    - ``adjusted_r2`` is that of the in-sample joint fit, p = number of features used.
    - The best variable is the feature with the largest absolute standardized coefficient in
      the in-sample joint fit; its values enter the tables multiplied by the sign of that
      coefficient, so that, like the joint prediction, larger means a larger predicted target.
    """
    target = target.astype(float)
    common = features.index.intersection(target.index[np.isfinite(target.to_numpy())])
    data = features.loc[common].astype(float).sort_index()
    complete_columns = np.all(np.isfinite(data.to_numpy()), axis=0)
    if complete_columns.any():
        data = data.loc[:, complete_columns]
    else:
        data = data[np.all(np.isfinite(data.to_numpy()), axis=1)]
    usable = [c for c in data.columns if np.all(np.isfinite(data[c].to_numpy())) and data[c].nunique() > 1]
    dropped = tuple(c for c in data.columns if c not in usable)
    if len(data) < 3 or not usable:
        raise AnalysisError(
            f"features: a joint fit needs at least 3 models with finite, non-constant features, "
            f"got {len(data)} models and {len(usable)} usable features"
        )
    X = data[usable].to_numpy()
    y = target.loc[data.index].to_numpy(dtype=float)
    if np.all(y == y[0]):
        raise AnalysisError("target: constant over the models with these features")
    n, p = X.shape
    prediction = pd.Series(cv_predict(X, y, folds=folds, seed=seed), index=data.index, name="prediction")
    fit = fit_linear(X, y)
    coef = pd.Series(fit.coef / y.std(), index=usable, name="standardized_coef")
    best_position = int(np.argmax(np.abs(fit.coef)))
    best = usable[best_position]
    sign = 1.0 if fit.coef[best_position] >= 0 else -1.0
    adjusted = adjusted_r2(X, y) if n - p - 1 > 0 else float("nan")
    return FeatureGroupFit(
        prediction=prediction,
        features=tuple(usable),
        dropped=dropped,
        adjusted_r2=adjusted,
        cv_r2=r_squared(y, prediction.to_numpy()),
        standardized_coef=coef,
        best_feature=best,
        best_values=sign * data[best],
    )

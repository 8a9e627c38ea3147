import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.regression import adjusted_r2, cv_predict, cv_r2, fit_feature_group


def textbook_r2(X, y):
    """R² from the normal equations (A^T A) β = A^T y with an intercept column."""
    A = np.column_stack([np.ones(len(y)), X])
    beta = np.linalg.solve(A.T @ A, A.T @ y)
    residual = y - A @ beta
    return 1 - residual @ residual / np.sum((y - y.mean()) ** 2)


def loo_predictions(X, y):
    """Leave-one-out predictions from the hat matrix: ŷ_(−i) = y_i − e_i / (1 − h_ii)."""
    A = np.column_stack([np.ones(len(y)), X])
    hat = A @ np.linalg.solve(A.T @ A, A.T)
    residual = y - hat @ y
    return y - residual / (1 - np.diag(hat))


@pytest.mark.parametrize("p", [1, 3])
def test_adjusted_r2_equals_the_textbook_formula(p):
    rng = np.random.default_rng(p)
    n = 25
    X = rng.normal(size=(n, p))
    y = X @ rng.normal(size=p) + rng.normal(size=n)
    r2 = textbook_r2(X, y)
    assert adjusted_r2(X if p > 1 else X[:, 0], y) == pytest.approx(1 - (1 - r2) * (n - 1) / (n - p - 1), abs=1e-12)


def test_adjusted_r2_needs_more_models_than_features_and_a_varying_target():
    with pytest.raises(AnalysisError, match="more models"):
        adjusted_r2(np.ones((3, 2)), np.arange(3.0))
    with pytest.raises(AnalysisError, match="constant target"):
        adjusted_r2(np.arange(5.0), np.ones(5))


def test_cv_r2_with_more_folds_than_models_is_leave_one_out_press():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 2))
    y = X @ np.array([1.0, -2.0]) + rng.normal(0, 0.5, 8)
    expected_prediction = loo_predictions(X, y)
    np.testing.assert_allclose(cv_predict(X, y, folds=10), expected_prediction, atol=1e-10)
    press = np.sum((y - expected_prediction) ** 2)
    assert cv_r2(X, y, folds=10) == pytest.approx(1 - press / np.sum((y - y.mean()) ** 2), abs=1e-10)


def test_cv_r2_is_reproducible_and_one_for_an_exact_linear_target():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    noisy = 3 * x + rng.normal(size=40)
    assert cv_r2(x, 3 * x + 1) == pytest.approx(1.0)
    assert cv_r2(x, noisy) == cv_r2(x, noisy)
    assert cv_r2(x, noisy) < textbook_r2(x[:, None], noisy)


def test_feature_group_picks_the_largest_standardized_coefficient_and_orients_it():
    rng = np.random.default_rng(2)
    n = 30
    index = [f"t{i:02d}" for i in range(n)]
    features = pd.DataFrame({
        "margin/b1/q1": rng.normal(size=n),
        "margin/b1/q3": rng.normal(size=n) * 100.0,  # large units, small standardized effect
        "margin/b2/median": rng.normal(size=n),
        "margin/b2/const": np.ones(n),
    }, index=index)
    target = pd.Series(
        -2.0 * features["margin/b2/median"] + 0.001 * features["margin/b1/q3"] + 0.1 * rng.normal(size=n),
        index=index,
    )
    fit = fit_feature_group(features, target)
    assert fit.best_feature == "margin/b2/median"
    assert fit.dropped == ("margin/b2/const",)
    # The coefficient is negative, so the best variable enters the tables as −feature.
    pd.testing.assert_series_equal(fit.best_values, -features["margin/b2/median"], check_names=False)
    X = features[list(fit.features)].to_numpy()
    r2 = textbook_r2(X, target.to_numpy())
    assert fit.adjusted_r2 == pytest.approx(1 - (1 - r2) * (n - 1) / (n - 3 - 1), abs=1e-10)
    assert fit.cv_r2 == pytest.approx(cv_r2(X, target.to_numpy()), abs=1e-12)
    np.testing.assert_allclose(fit.prediction.to_numpy(), cv_predict(X, target.to_numpy()))


def test_feature_group_with_too_few_models_is_a_one_line_error():
    features = pd.DataFrame({"margin/x/q1": [1.0, 2.0]}, index=["a", "b"])
    with pytest.raises(AnalysisError, match="at least 3 models") as error:
        fit_feature_group(features, pd.Series([1.0, 2.0], index=["a", "b"]))
    assert "\n" not in str(error.value)


def test_feature_group_of_a_mixed_depth_zoo_keeps_every_model_and_the_shared_layers():
    rng = np.random.default_rng(3)
    n = 12
    index = [f"t{i:02d}" for i in range(n)]
    shared = rng.normal(size=n)
    deep_only = np.where(np.arange(n) % 2 == 0, rng.normal(size=n), np.nan)  # half the zoo is shallower
    features = pd.DataFrame({"margin/input/q1": shared, "margin/block3/q1": deep_only}, index=index)
    target = pd.Series(3.0 * shared + 0.01 * rng.normal(size=n), index=index)
    fit = fit_feature_group(features, target)
    assert fit.features == ("margin/input/q1",)
    assert len(fit.prediction) == n

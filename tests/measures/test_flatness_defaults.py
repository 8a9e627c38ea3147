"""The flatness family at its default settings against a dense Hessian, on a trained
899-parameter conv net: every value within the tolerance ``measures.flatness.TOLERANCES``
documents (the accuracy curve behind the defaults is in bench/README.md)."""

from __future__ import annotations

import pytest
import torch

from measure_toys import tiny_data, tiny_network, trained_toy_context
from measures.context import TrialContext
from measures.flatness import TOLERANCES, effective_dimensionality, eps_flatness, flatness
from measures.hessian import dense_matrix, hvp_operator, mean_loss_function

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference():
    ctx = trained_toy_context("trial-flatness-defaults", test_size=16)
    matvec, dim = hvp_operator(ctx.model, ctx.train_x, ctx.train_y, batch_size=1000)
    hessian = dense_matrix(matvec, dim)
    hessian = (hessian + hessian.T) / 2
    eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    output = flatness(ctx)  # every setting at its default; the subset is all 256 examples
    k = output.info["top_k"]
    loss_at, space = mean_loss_function(ctx.model, ctx.train_x, ctx.train_y, batch_size=1000)
    exact = {
        "hessian_top_eigenvalue": float(eigenvalues[0]),
        "hessian_top_k_sum": float(eigenvalues[:k].sum()),
        "hessian_trace": float(torch.trace(hessian)),
        "effective_dimensionality": effective_dimensionality(eigenvalues[:k], dim),
        "eps_flatness": eps_flatness(loss_at, eigenvectors[:, :k].to(space.dtype))[0],
    }
    return ctx, output, exact, dim


def test_the_reference_model_is_larger_than_the_default_lanczos_run(reference):
    _, output, _, dim = reference
    assert dim == 899 and output.info["top_k"] == 100
    assert output.info["lanczos_steps"] < dim  # not exact by exhausting the space


@pytest.mark.parametrize("measure", ["hessian_top_eigenvalue", "hessian_top_k_sum", "hessian_trace",
                                     "effective_dimensionality"])
def test_default_values_are_within_the_documented_relative_tolerance(reference, measure):
    _, output, exact, _ = reference
    assert output.values[measure] == pytest.approx(exact[measure], rel=TOLERANCES[measure])


def test_default_eps_flatness_is_within_the_documented_grid_steps(reference):
    _, output, exact, _ = reference
    step = output.info["eps_step"]
    assert abs(output.values["eps_flatness"] - exact["eps_flatness"]) <= TOLERANCES["eps_flatness"] * step + 1e-12


def test_tic_proxy_uses_the_trace_estimate(reference):
    _, output, _, _ = reference
    values = output.values
    assert values["tic_proxy"] == pytest.approx(values["gradient_covariance_trace"] / values["hessian_trace"])


def test_deflated_trace_beats_plain_hutchinson_with_ten_times_the_probes(reference):
    ctx, output, exact, _ = reference
    plain = flatness(ctx, trace_method="hutchinson", hutchinson_samples=10 * output.info["hutchinson_samples"],
                     top_k=1, lanczos_steps=1, eps_max=0.01)
    assert plain.info["trace_method"] == "hutchinson" and plain.info["basis_trace"] is None
    assert output.info["hutchinson_stderr"] < plain.info["hutchinson_stderr"] / 5
    assert abs(output.values["hessian_trace"] - exact["hessian_trace"]) < 4 * output.info["hutchinson_stderr"] + 1e-9


def test_deflated_trace_is_exact_when_the_lanczos_run_spans_every_parameter():
    x, y = tiny_data()
    ctx = TrialContext(trial_id="trial-span", model=tiny_network(), train_x=x, train_y=y, test_x=x, test_y=y,
                       build_model=tiny_network)
    output = flatness(ctx, top_k=87, hutchinson_samples=3, eps_max=0.01)
    matvec, dim = hvp_operator(ctx.model, x, y, batch_size=1000)
    exact = float(torch.trace(dense_matrix(matvec, dim)))
    assert output.info["lanczos_steps"] == 87
    assert output.values["hessian_trace"] == pytest.approx(exact, rel=1e-9)
    assert output.info["hutchinson_stderr"] < 1e-9 * abs(exact)


def test_power_method_with_the_deflated_trace_spends_k_more_products():
    x, y = tiny_data()
    ctx = TrialContext(trial_id="trial-power", model=tiny_network(), train_x=x, train_y=y, test_x=x, test_y=y,
                       build_model=tiny_network)
    output = flatness(ctx, top_k=3, method="power", power_max_iter=50, hutchinson_samples=20, eps_max=0.01)
    matvec, dim = hvp_operator(ctx.model, x, y, batch_size=1000)
    exact = float(torch.trace(dense_matrix(matvec, dim)))
    assert output.info["hvps"] == output.info["eigen_hvps"] + 3 + 20
    assert abs(output.values["hessian_trace"] - exact) < 4 * output.info["hutchinson_stderr"]

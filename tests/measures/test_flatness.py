"""The flatness family against a dense autograd Hessian, per-example autograd loops and
brute-force scans, on an 87-parameter network."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from measure_toys import tiny_data, tiny_network
from measures.common import seed_for, seeded_indices
from measures.registry import FAMILIES
from measures.context import TrialContext
from measures.flatness import (
    FlatnessError,
    effective_dimensionality,
    eps_flatness,
    flatness,
    gradient_covariance_trace,
)

TRIAL = "trial-flat"


def context() -> TrialContext:
    x, y = tiny_data()
    return TrialContext(trial_id=TRIAL, model=tiny_network(), train_x=x, train_y=y,
                        test_x=x[:16], test_y=y[:16], build_model=tiny_network)


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reference: autograd's dense Hessian of the mean loss over every parameter, flattened in
    ``parameters()`` order, with a copy of the model whose parameters are overwritten."""
    reference = tiny_network()
    reference.load_state_dict(model.state_dict())
    names = [name for name, _ in reference.named_parameters()]
    shapes = [p.shape for p in reference.parameters()]
    for name in names:  # plain tensors so that they can be swapped for the Hessian's input
        module_name, _, attribute = name.rpartition(".")
        module = reference.get_submodule(module_name)
        value = getattr(module, attribute).detach()
        del module._parameters[attribute]
        setattr(module, attribute, value)

    def loss(vector: torch.Tensor) -> torch.Tensor:
        start = 0
        for name, shape in zip(names, shapes):
            module_name, _, attribute = name.rpartition(".")
            setattr(reference.get_submodule(module_name), attribute, vector[start:start + shape.numel()].view(shape))
            start += shape.numel()
        return F.cross_entropy(reference(x), y)

    return torch.autograd.functional.hessian(loss, parameters_to_vector(model.parameters()).detach())


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(x), y))


def brute_force_eps(model: nn.Module, x, y, directions: torch.Tensor, step=0.01, threshold=0.1, eps_max=10.0) -> float:
    """The paper's procedure with a copy of the model: raise ε by ``step`` until the loss at
    w ± ε·v_i exceeds the unperturbed loss by more than ``threshold`` for some i."""
    base_vector = parameters_to_vector(model.parameters()).detach()
    base = loss_of(model, x, y)
    probe = tiny_network()
    probe.load_state_dict(model.state_dict())
    n = 0
    while (n + 1) * step <= eps_max + 1e-9:
        eps = (n + 1) * step
        for column in range(directions.shape[1]):
            for sign in (1.0, -1.0):
                vector_to_parameters(base_vector + sign * eps * directions[:, column], probe.parameters())
                if loss_of(probe, x, y) - base > threshold:
                    return n * step
        n += 1
    return n * step


def per_example_gradient_norms(model: nn.Module, x, y, parameters) -> float:
    """Reference: one ``torch.autograd.grad`` call per example."""
    total = 0.0
    for i in range(len(x)):
        loss = F.cross_entropy(model.eval()(x[i:i + 1]), y[i:i + 1])
        grads = torch.autograd.grad(loss, parameters)
        total += sum(float((g ** 2).sum()) for g in grads)
    return total / len(x)


@pytest.fixture(scope="module")
def full_run():
    ctx = context()
    output = flatness(ctx, subset=None, top_k=3, hutchinson_samples=40)
    hessian = dense_hessian(ctx.model, ctx.train_x, ctx.train_y)
    eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
    return ctx, output, hessian, eigenvalues.flip(0), eigenvectors.flip(1)


def test_top_eigenvalues_match_the_dense_hessian(full_run):
    _, output, _, eigenvalues, _ = full_run
    table = output.tables["hessian_eigenvalues"]
    assert table["rank"] == [1, 2, 3]
    relative = (torch.tensor(table["eigenvalue"], dtype=torch.float64) - eigenvalues[:3]).abs() / eigenvalues[:3]
    assert torch.all(relative < 1e-4)
    assert output.values["hessian_top_eigenvalue"] == pytest.approx(float(eigenvalues[0]), rel=1e-4)
    assert output.values["hessian_top_k_sum"] == pytest.approx(float(eigenvalues[:3].sum()), rel=1e-4)


def test_hessian_trace_is_within_four_standard_errors_of_the_exact_trace(full_run):
    _, output, hessian, _, _ = full_run
    stderr = output.info["hutchinson_stderr"]
    assert 0 < stderr
    assert abs(output.values["hessian_trace"] - float(torch.trace(hessian))) < 4 * stderr


def test_effective_dimensionality_equals_the_formula_on_dense_eigenvalues(full_run):
    _, output, _, eigenvalues, _ = full_run
    top = eigenvalues[:3].clamp(min=0)
    expected = float((top / (top + 1.0)).sum()) / 87
    assert output.values["effective_dimensionality"] == pytest.approx(expected, rel=1e-4)


def test_effective_dimensionality_by_hand():
    # 3/(3+1) + 1/(1+1) + 0 (negative clamped) = 1.25, over 10 parameters; z = 2: 0.6 + 1/3.
    values = torch.tensor([3.0, 1.0, -0.5])
    assert effective_dimensionality(values, 10) == pytest.approx(0.125)
    assert effective_dimensionality(values, 10, z=2.0) == pytest.approx((0.6 + 1 / 3) / 10)


def test_gradient_covariance_trace_equals_a_per_example_autograd_loop(full_run):
    ctx, output, _, _, _ = full_run
    expected = per_example_gradient_norms(ctx.model, ctx.train_x, ctx.train_y, list(ctx.model.parameters()))
    assert output.values["gradient_covariance_trace"] == pytest.approx(expected, rel=1e-10)


def test_gradient_covariance_trace_over_weights_only_with_small_chunks():
    ctx = context()
    weights = [ctx.model[0].weight, ctx.model[4].weight]
    expected = per_example_gradient_norms(ctx.model, ctx.train_x, ctx.train_y, weights)
    value = gradient_covariance_trace(ctx.model, ctx.train_x, ctx.train_y, batch_size=7, params="weights")
    assert value == pytest.approx(expected, rel=1e-10)


def test_tic_proxy_is_covariance_trace_over_hessian_trace(full_run):
    _, output, _, _, _ = full_run
    values = output.values
    assert values["tic_proxy"] == pytest.approx(values["gradient_covariance_trace"] / values["hessian_trace"], rel=1e-12)


def test_tic_proxy_can_use_the_top_k_sum_as_the_paper():
    output = flatness(context(), subset=None, top_k=3, hutchinson_samples=2, tic_trace="top_k")
    values = output.values
    assert values["tic_proxy"] == pytest.approx(values["gradient_covariance_trace"] / values["hessian_top_k_sum"], rel=1e-12)


def test_eps_flatness_equals_a_brute_force_scan_along_dense_eigenvectors(full_run):
    ctx, output, _, _, eigenvectors = full_run
    expected = brute_force_eps(ctx.model, ctx.train_x, ctx.train_y, eigenvectors[:, :3])
    assert 0.05 < expected < 10.0  # a non-trivial answer, neither 0 nor capped
    assert output.values["eps_flatness"] == pytest.approx(expected, abs=1e-9)
    assert output.info["eps_capped"] is False


def test_eps_flatness_with_the_papers_settings_is_the_authors_first_failing_epsilon(full_run):
    # Appendix E.3 and the authors' Figure_Ei.py: directions = the top eigenvectors of the
    # Hessian on the Hessian's examples; the loss on the whole test set; for each |ε| of the
    # 0.01 grid the worst increase over the directions and both signs; ε = the smallest |ε|
    # whose worst increase reaches the threshold.
    ctx, _, _, _, eigenvectors = full_run
    directions = eigenvectors[:, :2]
    base_vector = parameters_to_vector(ctx.model.parameters()).detach()
    base = loss_of(ctx.model, ctx.test_x, ctx.test_y)
    probe = tiny_network()
    probe.load_state_dict(ctx.model.state_dict())
    expected = None
    for n in range(1, 1001):
        worst = -math.inf
        for column in range(2):
            for sign in (1.0, -1.0):
                vector_to_parameters(base_vector + sign * n * 0.01 * directions[:, column], probe.parameters())
                worst = max(worst, loss_of(probe, ctx.test_x, ctx.test_y) - base)
        if worst > 0.1:
            expected = n * 0.01
            break
    assert expected is not None and expected > 0.05
    for search in ("scan", "bisect"):
        output = flatness(ctx, subset=None, top_k=3, hutchinson_samples=2, eps_directions=2, eps_split="test",
                          eps_report="first_failing", eps_search=search)
        assert output.values["eps_flatness"] == pytest.approx(expected, abs=1e-9)
        assert output.info["eps_examples"] == len(ctx.test_x) and output.info["eps_directions"] == 2
        assert output.info["eps_last_passing"] == pytest.approx(expected - 0.01, abs=1e-9)
    # The Hessian's own examples and every direction by default: the last passing ε as before.
    default = flatness(ctx, subset=None, top_k=3, hutchinson_samples=2)
    assert default.values["eps_flatness"] == default.info["eps_last_passing"]
    assert default.info["eps_examples"] == len(ctx.train_x) and default.info["eps_directions"] == 3


def test_eps_subset_of_a_split_is_seeded():
    ctx = context()
    output = flatness(ctx, subset=16, top_k=1, hutchinson_samples=2, eps_split="train", eps_subset=20)
    assert output.info["eps_examples"] == 20
    indices = seeded_indices(TRIAL, "flatness/eps", 64, 20)
    assert torch.equal(indices, torch.randperm(64, generator=torch.Generator().manual_seed(
        seed_for(TRIAL, "flatness/eps")))[:20].sort().values)


def test_eps_flatness_scan_search_gives_the_same_answer_on_the_model(full_run):
    ctx, output, _, _, _ = full_run
    scanned = flatness(ctx, subset=None, top_k=3, hutchinson_samples=2, eps_search="scan")
    assert scanned.values["eps_flatness"] == output.values["eps_flatness"]
    assert scanned.info["eps_loss_evaluations"] > output.info["eps_loss_evaluations"]


def test_eps_flatness_on_a_quadratic_is_the_analytic_grid_value():
    # loss(δ) = ½ δᵀAδ: along eigenvector i the increase is ½ λ_i ε², so ε* = √(0.2/λ_max).
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    spectrum = torch.tensor([8.0, 3.0, 1.0, 0.5, 0.1, 0.0], dtype=torch.float64)
    matrix = q @ torch.diag(spectrum) @ q.T

    def loss_at(delta: torch.Tensor) -> float:
        return float(0.5 * delta @ matrix @ delta)

    expected = math.floor(math.sqrt(0.2 / 8.0) / 0.01) * 0.01
    for search in ("bisect", "scan"):
        eps, evaluations, capped = eps_flatness(loss_at, q[:, :4], search=search)
        assert eps == pytest.approx(expected, abs=1e-12) and not capped
    # Along the flat direction alone nothing crosses: the search stops at eps_max.
    eps, _, capped = eps_flatness(loss_at, q[:, 5:], eps_max=2.0)
    assert eps == pytest.approx(2.0) and capped


def test_eps_flatness_scan_stops_at_the_first_crossing_even_if_the_loss_comes_back_down():
    # 1-D loss with a bump: the increase exceeds 0.1 on (0.2, 0.4) and is 0 beyond.
    def loss_at(delta: torch.Tensor) -> float:
        t = abs(float(delta[0]))
        return 1.0 + (0.5 if 0.2 < t < 0.4 else 0.0)

    eps, evaluations, capped = eps_flatness(loss_at, torch.ones(1, 1, dtype=torch.float64), search="scan")
    assert eps == pytest.approx(0.2) and not capped
    # The base point, 0.01 … 0.21 along +v (fails at 0.21), then 0.01 … 0.20 along −v.
    assert evaluations == 1 + 21 + 20


def test_eps_flatness_is_zero_when_the_first_step_already_fails():
    eps, _, capped = eps_flatness(lambda d: float(1e6 * (d ** 2).sum()), torch.eye(2, dtype=torch.float64))
    assert eps == 0.0 and not capped


def test_power_method_gives_the_same_top_eigenvalue_with_a_tight_tolerance(full_run):
    ctx, _, _, eigenvalues, _ = full_run
    output = flatness(ctx, subset=None, top_k=2, method="power", power_max_iter=1000, power_tol=1e-12,
                      hutchinson_samples=2)
    assert output.values["hessian_top_eigenvalue"] == pytest.approx(float(eigenvalues[0]), rel=1e-4)
    assert output.tables["hessian_eigenvalues"]["eigenvalue"][1] == pytest.approx(float(eigenvalues[1]), rel=1e-4)


def test_two_calls_give_identical_values_and_tables():
    first = flatness(context(), subset=40, top_k=2, hutchinson_samples=5)
    second = flatness(context(), subset=40, top_k=2, hutchinson_samples=5)
    assert first.values == second.values
    assert first.tables == second.tables


def test_subset_is_drawn_from_the_trial_seed_and_honoured():
    ctx = context()
    output = flatness(ctx, subset=32, top_k=1, hutchinson_samples=2)
    indices = seeded_indices(TRIAL, "flatness", 64, 32)
    expected_indices = torch.randperm(64, generator=torch.Generator().manual_seed(seed_for(TRIAL, "flatness")))[:32]
    assert torch.equal(indices, expected_indices.sort().values)
    assert output.info["examples"] == 32
    hessian = dense_hessian(ctx.model, ctx.train_x[indices], ctx.train_y[indices])
    top = float(torch.linalg.eigvalsh(hessian)[-1])
    assert output.values["hessian_top_eigenvalue"] == pytest.approx(top, rel=1e-4)
    full_top = float(torch.linalg.eigvalsh(dense_hessian(ctx.model, ctx.train_x, ctx.train_y))[-1])
    assert abs(top - full_top) > 1e-3  # the subset really changes the answer


def test_top_k_larger_than_the_parameter_count_is_capped():
    output = flatness(context(), subset=16, top_k=500, hutchinson_samples=2, eps_max=0.05)
    assert output.info["top_k"] == 87
    assert len(output.tables["hessian_eigenvalues"]["eigenvalue"]) == 87


def test_registry_lists_every_scalar_and_the_function_defaults():
    family = FAMILIES["flatness"]
    assert family.fn is flatness
    output = flatness(context(), subset=16, top_k=1, hutchinson_samples=2)
    assert set(family.measures) == set(output.values)
    signature = inspect.signature(flatness)
    defaults = {name: p.default for name, p in signature.parameters.items() if name != "ctx"}
    assert dict(family.defaults) == defaults


@pytest.mark.parametrize("setting, value", [
    ("method", "arnoldi"), ("subset", 0), ("split", "validation"), ("eps_search", "golden"),
    ("params", "biases"), ("hutchinson_samples", 1), ("z", 0.0), ("top_k", 0), ("eps_step", 0.0),
    ("eps_max", 0.001), ("lanczos_steps", 0), ("power_tol", -1.0), ("hvp_mode", "numeric"),
    ("trace_method", "hutch++"), ("eps_directions", 0), ("eps_split", "validation"), ("eps_subset", 0),
    ("eps_subset", 5), ("eps_report", "middle"),
])
def test_bad_settings_raise_one_line_errors_naming_the_setting(setting, value):
    settings = {"subset": 16, "top_k": 1, "hutchinson_samples": 2}
    settings[setting] = value
    with pytest.raises(FlatnessError, match=setting):
        flatness(context(), **settings)

"""Hessian routines against a dense autograd Hessian and against matrices with a known spectrum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from measure_toys import tiny_data, tiny_network
from measures.hessian import (
    HVP_MODES,
    HessianError,
    deflated_hutchinson_trace,
    dense_matrix,
    hutchinson_trace,
    hvp_operator,
    lanczos,
    lanczos_top_eigenvalues,
    mean_loss_function,
    parameter_space,
    power_iteration_top_eigenvalues,
)


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names=None) -> torch.Tensor:
    """Reference: ``torch.autograd.functional.hessian`` of the mean loss over all examples at
    once, as a function of the chosen parameters flattened in ``named_parameters`` order."""
    named = dict(model.named_parameters())
    names = list(named) if names is None else names
    shapes = [named[name].shape for name in names]
    fixed = {name: p.detach() for name, p in named.items() if name not in names}
    fixed.update(dict(model.named_buffers()))
    flat = torch.cat([named[name].detach().reshape(-1) for name in names])

    def loss(vector: torch.Tensor) -> torch.Tensor:
        tensors, start = {}, 0
        for name, shape in zip(names, shapes):
            tensors[name] = vector[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, {**fixed, **tensors}, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat)


@pytest.fixture(scope="module")
def problem():
    model = tiny_network()
    x, y = tiny_data()
    hessian = dense_hessian(model, x, y)
    return model, x, y, hessian, torch.linalg.eigvalsh(hessian)


def test_tiny_network_has_87_parameters_and_an_indefinite_hessian(problem):
    model, _, _, hessian, eigenvalues = problem
    assert hessian.shape == (87, 87)
    assert eigenvalues[0] < 0 < eigenvalues[-1]


@pytest.mark.parametrize("mode", HVP_MODES)
@pytest.mark.parametrize("batch_size", [64, 10])
def test_hvp_equals_dense_hessian_times_vector_for_any_batching(problem, mode, batch_size):
    model, x, y, hessian, _ = problem
    matvec, dim = hvp_operator(model, x, y, batch_size=batch_size, mode=mode)
    v = torch.randn(dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert dim == 87
    torch.testing.assert_close(matvec(v), hessian @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cache", [False, True])
def test_on_the_cpu_products_and_losses_run_passes_of_at_most_256_examples(cache):
    # trainers.data.examples_per_pass: a batch of 1,000 on the CPU runs as passes of 256.
    model = tiny_network()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(600, 3, 4, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (600,), generator=generator)
    seen = []
    handle = model[4].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    try:
        matvec, dim = hvp_operator(model, x, y, batch_size=1000, mode="reverse_over_reverse", cache=cache)
        v = torch.randn(dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        product = matvec(v)
        assert seen == [256, 256, 88]
        seen.clear()
        loss_at, _ = mean_loss_function(model, x, y, batch_size=1000)
        loss = loss_at(torch.zeros(dim, dtype=torch.float64))
        assert seen == [256, 256, 88]
    finally:
        handle.remove()
    torch.testing.assert_close(product, dense_hessian(model, x, y) @ v, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        expected = float(F.cross_entropy(model(x), y))
    assert loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("batch_size", [64, 10])
def test_a_cached_hvp_equals_the_uncached_one_bit_for_bit_and_the_dense_product(problem, batch_size):
    model, x, y, hessian, _ = problem
    fresh, dim = hvp_operator(model, x, y, batch_size=batch_size, mode="reverse_over_reverse")
    cached, _ = hvp_operator(model, x, y, batch_size=batch_size, mode="reverse_over_reverse", cache=True)
    assert cached.cached and not fresh.cached
    for seed in range(3):  # the second and third products reuse the kept graphs
        v = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        assert torch.equal(cached(v), fresh(v))
        torch.testing.assert_close(cached(v), hessian @ v, rtol=1e-10, atol=1e-12)


def test_a_cache_that_runs_out_of_memory_falls_back_to_recomputing(problem, monkeypatch):
    import measures.hessian as hessian_module

    model, x, y, hessian, _ = problem
    real_vjp, calls = hessian_module.vjp, []

    def vjp_out_of_memory_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("simulated")
        return real_vjp(*args, **kwargs)

    monkeypatch.setattr(hessian_module, "vjp", vjp_out_of_memory_on_the_second_batch)
    matvec, dim = hvp_operator(model, x, y, batch_size=10, mode="reverse_over_reverse", cache=True)
    v = torch.randn(dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(matvec(v), hessian @ v, rtol=1e-10, atol=1e-12)
    assert not matvec.cached
    forward_over_reverse, _ = hvp_operator(model, x, y, batch_size=10, mode="forward_over_reverse", cache=True)
    assert not forward_over_reverse.cached  # caching is for reverse-over-reverse only


def test_hvp_over_weights_only_equals_the_dense_weight_block(problem):
    model, x, y, _, _ = problem
    names = ["0.weight", "4.weight"]
    reference = dense_hessian(model, x, y, names=names)
    matvec, dim = hvp_operator(model, x, y, batch_size=16, params="weights")
    assert dim == 2 * 27 + 3 * 8
    torch.testing.assert_close(dense_matrix(matvec, dim), reference, rtol=1e-10, atol=1e-12)


def test_hvp_keeps_the_dtype_and_device_of_the_input_vector(problem):
    model, x, y, hessian, _ = problem
    matvec, dim = hvp_operator(model, x, y, batch_size=64)
    v = torch.ones(dim, dtype=torch.float32)
    out = matvec(v)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, (hessian @ v.double()).float(), rtol=1e-5, atol=1e-6)


def test_lanczos_top_eigenvalues_match_dense_eigvalsh(problem):
    model, x, y, hessian, eigenvalues = problem
    matvec, dim = hvp_operator(model, x, y, batch_size=64)
    k = 3
    values, vectors = lanczos_top_eigenvalues(matvec, dim, k, generator=torch.Generator().manual_seed(3))
    expected = eigenvalues.flip(0)[:k]
    assert torch.all((values - expected).abs() / expected.abs() < 1e-4)
    assert torch.all(values[:-1] >= values[1:])
    # Ritz vectors are unit eigenvectors: small residual ||Hv − λv||.
    torch.testing.assert_close(vectors.norm(dim=0), torch.ones(k, dtype=torch.float64))
    residual = (hessian @ vectors - vectors * values).norm(dim=0)
    assert torch.all(residual < 1e-4)


def test_power_iteration_with_deflation_matches_dense_eigvalsh_with_tight_tolerance(problem):
    model, x, y, hessian, eigenvalues = problem
    matvec, dim = hvp_operator(model, x, y, batch_size=64)
    k = 3
    values, vectors = power_iteration_top_eigenvalues(
        matvec, dim, k, max_iter=1000, tol=1e-12, generator=torch.Generator().manual_seed(4))
    # Power iteration finds the largest magnitudes; here those are the largest values.
    by_magnitude = eigenvalues[eigenvalues.abs().argsort(descending=True)][:k].sort(descending=True).values
    assert torch.all((values - by_magnitude).abs() / by_magnitude.abs() < 1e-4)
    residual = (hessian @ vectors - vectors * values).norm(dim=0)
    assert torch.all(residual < 1e-2)


def test_power_iteration_finds_a_dominant_negative_eigenvalue():
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([-10.0, 4.0], dtype=torch.float64), torch.linspace(-1, 1, 18, dtype=torch.float64)])
    matrix = q @ torch.diag(spectrum) @ q.T
    values, _ = power_iteration_top_eigenvalues(lambda v: matrix @ v, 20, 2, max_iter=500, tol=1e-12,
                                                generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(values, torch.tensor([4.0, -10.0], dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_lanczos_with_repeated_eigenvalues_and_all_steps_recovers_the_whole_spectrum():
    # Only 3 distinct eigenvalues: the Krylov space is invariant after 3 steps, so Lanczos
    # must restart with fresh orthogonal vectors to reach all 12 eigenvalues.
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    spectrum = torch.tensor([5.0] * 4 + [2.0] * 4 + [-1.0] * 4, dtype=torch.float64)
    matrix = q @ torch.diag(spectrum) @ q.T
    values, vectors = lanczos_top_eigenvalues(lambda v: matrix @ v, 12, 12, steps=12,
                                              generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(values, spectrum, rtol=0, atol=1e-10)
    torch.testing.assert_close(vectors.T @ vectors, torch.eye(12, dtype=torch.float64), rtol=0, atol=1e-10)


def test_lanczos_is_reproducible_with_the_same_generator_seed(problem):
    model, x, y, _, _ = problem
    matvec, dim = hvp_operator(model, x, y, batch_size=64)
    first = lanczos_top_eigenvalues(matvec, dim, 2, steps=10, generator=torch.Generator().manual_seed(9))
    second = lanczos_top_eigenvalues(matvec, dim, 2, steps=10, generator=torch.Generator().manual_seed(9))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_hutchinson_trace_is_within_four_standard_errors_and_the_error_shrinks(problem):
    model, x, y, hessian, _ = problem
    matvec, dim = hvp_operator(model, x, y, batch_size=64)
    exact = float(torch.trace(hessian))
    few = hutchinson_trace(matvec, dim, samples=20, generator=torch.Generator().manual_seed(10))
    many = hutchinson_trace(matvec, dim, samples=200, generator=torch.Generator().manual_seed(11))
    assert abs(few.mean - exact) < 4 * few.stderr
    assert abs(many.mean - exact) < 4 * many.stderr
    # Theory: Var(zᵀHz) = 2 Σ_{i≠j} H_ij² for Rademacher z.
    off_diagonal = hessian - torch.diag(torch.diag(hessian))
    expected_stderr = math.sqrt(2 * float((off_diagonal ** 2).sum()) / 200)
    assert 0.7 * expected_stderr < many.stderr < 1.3 * expected_stderr
    assert many.stderr < 0.6 * few.stderr


def test_hutchinson_on_a_diagonal_matrix_is_exact_with_zero_error():
    diagonal = torch.arange(1.0, 6.0, dtype=torch.float64)
    estimate = hutchinson_trace(lambda v: diagonal * v, 5, samples=3, generator=torch.Generator().manual_seed(12))
    assert estimate.mean == pytest.approx(15.0, abs=1e-12)
    assert estimate.stderr == pytest.approx(0.0, abs=1e-12)


def test_mean_loss_function_moves_parameters_without_touching_the_model(problem):
    model, x, y, _, _ = problem
    loss_at, space = mean_loss_function(model, x, y, batch_size=10)
    before = [p.detach().clone() for p in model.parameters()]
    delta = torch.full((space.dim,), 0.01, dtype=torch.float64)
    moved = tiny_network()
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.01)
    with torch.no_grad():
        moved_loss, base_loss = float(F.cross_entropy(moved(x), y)), float(F.cross_entropy(model(x), y))
    assert loss_at(delta) == pytest.approx(moved_loss, rel=1e-12)
    assert loss_at(torch.zeros(space.dim, dtype=torch.float64)) == pytest.approx(base_loss, rel=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bad_arguments_raise_one_line_errors_naming_them(problem):
    model, x, y, _, _ = problem
    with pytest.raises(HessianError, match="params"):
        parameter_space(model, "biases")
    with pytest.raises(HessianError, match="mode"):
        hvp_operator(model, x, y, batch_size=8, mode="finite_differences")
    with pytest.raises(HessianError, match="batch_size"):
        hvp_operator(model, x, y, batch_size=0)
    matvec, dim = hvp_operator(model, x, y, batch_size=64)
    with pytest.raises(HessianError, match="k:"):
        lanczos_top_eigenvalues(matvec, dim, dim + 1, generator=torch.Generator())
    with pytest.raises(HessianError, match="samples"):
        hutchinson_trace(matvec, dim, samples=1, generator=torch.Generator())
    with pytest.raises(HessianError, match="v:"):
        matvec(torch.zeros(3, dtype=torch.float64))


def test_a_truncated_lanczos_run_is_the_shorter_run(problem):
    model, x, y, _, _ = problem
    matvec, dim = hvp_operator(model, x, y, batch_size=64)
    long = lanczos(matvec, dim, 30, generator=torch.Generator().manual_seed(5))
    short = lanczos(matvec, dim, 12, generator=torch.Generator().manual_seed(5))
    cut = long.truncated(12)
    assert torch.allclose(cut.basis, short.basis, atol=1e-12) and torch.allclose(cut.alphas, short.alphas)
    assert torch.allclose(cut.betas, short.betas) and cut.steps == 12
    assert torch.allclose(cut.ritz(3)[0], short.ritz(3)[0])
    assert cut.tridiagonal_trace() == pytest.approx(float(torch.trace(cut.basis @ torch.stack(
        [matvec(q) for q in cut.basis], dim=1))), rel=1e-10)


def test_deflated_trace_is_unbiased_and_far_more_precise_than_plain_hutchinson(problem):
    model, x, y, hessian, _ = problem
    matvec, dim = hvp_operator(model, x, y, batch_size=64)
    run = lanczos(matvec, dim, 40, generator=torch.Generator().manual_seed(2))
    exact = float(torch.trace(hessian))
    deflated = deflated_hutchinson_trace(matvec, run.basis, basis_trace=run.tridiagonal_trace(), samples=20,
                                         generator=torch.Generator().manual_seed(3))
    plain = hutchinson_trace(matvec, dim, samples=20, generator=torch.Generator().manual_seed(3))
    assert abs(deflated.mean - exact) < 4 * deflated.stderr
    assert deflated.stderr < plain.stderr / 3
    whole = lanczos(matvec, dim, dim, generator=torch.Generator().manual_seed(2))
    spanned = deflated_hutchinson_trace(matvec, whole.basis, basis_trace=whole.tridiagonal_trace(), samples=2,
                                        generator=torch.Generator().manual_seed(3))
    assert spanned.mean == pytest.approx(exact, rel=1e-10) and spanned.stderr < 1e-10



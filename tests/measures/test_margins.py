"""Margins against analytic distances (linear models), dense numpy gradients and numpy
statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from measures.context import TrialContext
from measures.registry import FAMILIES
from measures.margins import (
    STATS,
    MarginError,
    margin_distances,
    margins,
    output_margin_stats,
    quartile_signature,
    seeded_subset,
)


class LinearClassifier(nn.Module):
    """x ↦ Wx + b; its only margin layer is the logits themselves."""

    def __init__(self, features: int = 5, classes: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def margin_layers(self):
        return [("logits", self.fc)]


class MLP(nn.Module):
    """x ↦ W2 relu(W1 x + b1) + b2 with the hidden pre-activation as margin layer."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 6)
        self.relu = nn.ReLU(inplace=inplace)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))

    def margin_layers(self):
        return [("hidden", self.fc1)]


class SmallConvNet(nn.Module):
    """conv → BatchNorm → ReLU → pooled linear head, on 2×4×4 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))

    def margin_layers(self):
        return [("block1", self.bn)]


def data(n: int = 60, features=(5,), classes: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *features), generator=generator, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=generator)
    return x, y


def numpy_runner_up(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    masked = logits.copy()
    masked[np.arange(len(y)), y] = -np.inf
    return masked.argmax(axis=1)


def make_ctx(model: nn.Module, x: torch.Tensor, y: torch.Tensor, trial_id: str = "trial-a") -> TrialContext:
    return TrialContext(
        trial_id=trial_id, model=model, train_x=x, train_y=y, test_x=x, test_y=y, build_model=lambda: model
    )


def test_input_distance_of_linear_model_is_analytic_distance_to_decision_boundary():
    torch.manual_seed(0)
    model = LinearClassifier().double()
    x, y = data()
    result = margin_distances(model, x, y, batch_size=16)
    W, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    logits = x.numpy() @ W.T + b
    c = numpy_runner_up(logits, y.numpy())
    rows = np.arange(len(y))
    gap = logits[rows, y.numpy()] - logits[rows, c]
    normal = W[y.numpy()] - W[c]
    analytic = gap / np.linalg.norm(normal, axis=1)
    np.testing.assert_allclose(result.distances["input"], analytic, rtol=1e-5)
    # Geometric check: stepping the signed distance along the unit normal lands on f_y = f_c.
    on_boundary = x.numpy() - analytic[:, None] * normal / np.linalg.norm(normal, axis=1, keepdims=True)
    boundary_logits = on_boundary @ W.T + b
    np.testing.assert_allclose(boundary_logits[rows, y.numpy()], boundary_logits[rows, c], atol=1e-5)
    # At the logits ∇(f_y − f_c) = e_y − e_c, of norm √2.
    np.testing.assert_allclose(result.distances["logits"], gap / (math.sqrt(2) + 1e-6), rtol=1e-12)
    np.testing.assert_allclose(result.output_margins, gap, rtol=1e-12)
    assert (gap < 0).any() and (gap > 0).any()  # misclassified examples get negative distances


def test_epsilon_inside_square_root_matches_demogen_formula():
    torch.manual_seed(0)
    model = LinearClassifier().double()
    x, y = data()
    result = margin_distances(model, x, y, epsilon=0.5, epsilon_placement="sqrt")
    gap = result.output_margins
    np.testing.assert_allclose(result.distances["logits"], gap / np.sqrt(0.5 + 2.0), rtol=1e-12)


def test_hidden_layer_distance_and_total_variation_match_numpy_reference():
    torch.manual_seed(1)
    model = MLP().double()
    x, y = data(n=53, classes=3)
    result = margin_distances(model, x, y, batch_size=7)  # uneven batches exercise the merge
    W1, b1 = model.fc1.weight.detach().numpy(), model.fc1.bias.detach().numpy()
    W2, b2 = model.fc2.weight.detach().numpy(), model.fc2.bias.detach().numpy()
    h = x.numpy() @ W1.T + b1
    logits = np.maximum(h, 0) @ W2.T + b2
    yn = y.numpy()
    c = numpy_runner_up(logits, yn)
    rows = np.arange(len(yn))
    gap = logits[rows, yn] - logits[rows, c]
    grad_h = (W2[yn] - W2[c]) * (h > 0)
    np.testing.assert_allclose(result.distances["hidden"], gap / (np.linalg.norm(grad_h, axis=1) + 1e-6), rtol=1e-9)
    grad_x = grad_h @ W1
    np.testing.assert_allclose(result.distances["input"], gap / (np.linalg.norm(grad_x, axis=1) + 1e-6), rtol=1e-9)
    assert result.total_variation["hidden"] == pytest.approx(math.sqrt(np.var(h, axis=0).sum()), rel=1e-10)
    assert result.total_variation["input"] == pytest.approx(math.sqrt(np.var(x.numpy(), axis=0).sum()), rel=1e-10)


def test_inplace_relu_after_margin_layer_does_not_change_distances():
    torch.manual_seed(2)
    plain = MLP().double()
    inplace = MLP(inplace=True).double()
    inplace.load_state_dict(plain.state_dict())
    x, y = data(classes=3)
    a = margin_distances(plain, x, y)
    b = margin_distances(inplace, x, y)
    np.testing.assert_array_equal(a.distances["hidden"], b.distances["hidden"])
    assert a.total_variation == b.total_variation


def test_image_total_variation_and_batch_independence_in_eval_mode():
    torch.manual_seed(3)
    model = SmallConvNet().double()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    x, y = data(n=24, features=(2, 4, 4))
    one_by_one = margin_distances(model, x, y, batch_size=1)
    batched = margin_distances(model, x, y, batch_size=24)
    for layer in ("input", "block1"):
        np.testing.assert_allclose(one_by_one.distances[layer], batched.distances[layer], rtol=1e-10)
        assert one_by_one.total_variation[layer] == pytest.approx(batched.total_variation[layer], rel=1e-10)
    flat = x.numpy().reshape(len(x), -1)
    assert batched.total_variation["input"] == pytest.approx(math.sqrt(np.var(flat, axis=0).sum()), rel=1e-10)
    with torch.no_grad():
        activation = model.bn(model.conv(x)).reshape(len(x), -1).numpy()
    assert batched.total_variation["block1"] == pytest.approx(math.sqrt(np.var(activation, axis=0).sum()), rel=1e-10)
    assert not model.bn._forward_hooks  # hooks are removed afterwards


def test_quartile_signature_by_hand():
    d = np.array([5.0, -1.0, 1.0, 0.0, 4.0, 2.0, 3.0])  # positives 1..5
    # Q1 = 2, median = 3, Q3 = 4, IQR = 2: fences 7 and −1; "min" clips −1 to 1.
    assert quartile_signature(d, log=False) == {"q1": 2.0, "median": 3.0, "q3": 4.0, "upper_fence": 7.0, "lower_fence": 1.0}
    logged = quartile_signature(d)
    assert logged == pytest.approx({"q1": math.log(2), "median": math.log(3), "q3": math.log(4), "upper_fence": math.log(7), "lower_fence": 0.0})
    assert math.isnan(quartile_signature(d, lower_fence_floor="none")["lower_fence"])
    assert quartile_signature(d, lower_fence_floor=0.5)["lower_fence"] == pytest.approx(math.log(0.5))


def test_quartile_signature_matches_numpy_percentile_on_positive_values():
    rng = np.random.default_rng(0)
    d = rng.lognormal(size=301) * rng.choice([-1, 1], size=301, p=[0.2, 0.8])
    positive = d[d > 0]
    q1, q2, q3 = np.percentile(positive, [25, 50, 75])
    lower = max(q1 - 1.5 * (q3 - q1), positive.min())
    expected = np.log([q1, q2, q3, q3 + 1.5 * (q3 - q1), lower])
    got = quartile_signature(d)
    np.testing.assert_allclose([got[s] for s in STATS], expected, rtol=1e-12)


def test_quartile_signature_without_positive_values_is_nan_and_rejects_bad_floor():
    assert all(math.isnan(v) for v in quartile_signature(np.array([-1.0, 0.0])).values())
    with pytest.raises(MarginError, match="lower_fence_floor"):
        quartile_signature(np.array([1.0]), lower_fence_floor=-1.0)


def test_margins_family_normalizes_by_total_variation_on_the_seeded_subset():
    torch.manual_seed(4)
    model = MLP().double()
    x, y = data(n=80, classes=3)
    ctx = make_ctx(model, x, y)
    output = margins(ctx, num_examples=50, batch_size=16)
    index = seeded_subset("trial-a", 80, 50)
    assert len(index) == 50 and len(set(index.tolist())) == 50
    reference = margin_distances(model, x[index], y[index])
    assert set(output.values) == {f"margin/{layer}/{stat}" for layer in ("input", "hidden") for stat in STATS}
    for layer in ("input", "hidden"):
        expected = quartile_signature(reference.distances[layer] / reference.total_variation[layer])
        for stat in STATS:
            assert output.values[f"margin/{layer}/{stat}"] == pytest.approx(expected[stat], rel=1e-10)
    assert margins(ctx, num_examples=50, batch_size=16).values == output.values


def test_seeded_subset_depends_on_trial_id_and_covers_all_when_large():
    assert torch.equal(seeded_subset("a", 100, 10), seeded_subset("a", 100, 10))
    assert not torch.equal(seeded_subset("a", 100, 10), seeded_subset("b", 100, 10))
    assert torch.equal(seeded_subset("a", 7, 5000), torch.arange(7))


def test_output_margin_stats_match_direct_computation():
    torch.manual_seed(5)
    model = MLP().double()
    x, y = data(n=90, classes=3)
    ctx = make_ctx(model, x, y)
    with torch.no_grad():
        logits = model(x).numpy()
    yn = y.numpy()
    gap = logits[np.arange(len(yn)), yn] - np.max(np.where(np.eye(3)[yn] == 1, -np.inf, logits), axis=1)
    variation = math.sqrt(np.var(logits, axis=0).sum())
    for normalize, scale in ((True, variation), (False, 1.0)):
        positive = gap[gap > 0] / scale
        q1, q2, q3 = np.percentile(positive, [25, 50, 75])
        lower = max(q1 - 1.5 * (q3 - q1), positive.min())
        expected = np.log([q1, q2, q3, q3 + 1.5 * (q3 - q1), lower])
        output = output_margin_stats(ctx, num_examples=None, batch_size=32, normalize=normalize)
        np.testing.assert_allclose([output.values[f"output_margin/{s}"] for s in STATS], expected, rtol=1e-10)


def test_margins_reject_models_without_margin_layers_and_bad_settings():
    x, y = data()
    with pytest.raises(MarginError, match="margin_layers"):
        margin_distances(nn.Linear(5, 4).double(), x, y)
    with pytest.raises(MarginError, match="epsilon_placement"):
        margin_distances(LinearClassifier().double(), x, y, epsilon_placement="inside")
    with pytest.raises(MarginError, match="num_examples"):
        margins(make_ctx(LinearClassifier().double(), x, y), num_examples=0)


def test_families_are_registered_with_their_measure_names():
    assert FAMILIES["margins"].measures == ("margin/*",)
    assert FAMILIES["output_margin_stats"].measures == tuple(f"output_margin/{s}" for s in STATS)


def test_margin_layer_that_never_runs_is_a_clear_error():
    x, y = data()
    model = LinearClassifier().double()
    with pytest.raises(MarginError, match="did not run"):
        margin_distances(model, x, y, layers=[("unused", nn.Linear(5, 4))])

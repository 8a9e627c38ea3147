import copy
import math

import pytest
import torch
from torch import nn

from measures.common import evaluate, seed_for
from measures.registry import FAMILIES
from measures.context import TrialContext
from measure_toys import trained_toy_context
from measures.perturbation import (
    PerturbationError,
    pac_bayes_family,
    perturbed_loss,
    sigma_search,
)

EPSILON = 1e-3


@pytest.fixture(scope="module")
def ctx() -> TrialContext:
    return trained_toy_context("trial-b", test_size=64)


def state_copy(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model, state):
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


class RecordingLinear(nn.Linear):
    """A linear layer that records the weight and bias it computed with."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.weight.detach().clone(), self.bias.detach().clone()))
        return super().forward(x)


def recorded_noise(sigma, kind, parameters="all"):
    layer = RecordingLinear(400, 100)
    with torch.no_grad():
        layer.weight.fill_(3.0)
        layer.bias.zero_()
    x, y = torch.zeros(2, 400), torch.zeros(2, dtype=torch.long)
    perturbed_loss(layer, x, y, sigma, kind=kind, draws=1, seed=11, epsilon=EPSILON, parameters=parameters)
    weight, bias = layer.seen[-1]
    return weight - 3.0, bias


def test_magnitude_aware_noise_std_is_sqrt_sigma2_w2_plus_epsilon_not_sigma_squared():
    weight_noise, bias_noise = recorded_noise(0.5, "magnitude")
    expected = math.sqrt(0.5 ** 2 * 3.0 ** 2 + EPSILON ** 2)  # 1.5; the σ² slip would give 0.75
    assert float(weight_noise.std()) == pytest.approx(expected, rel=0.03)
    assert float(weight_noise.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(bias_noise.std()) == pytest.approx(EPSILON, rel=0.25)  # biases are perturbed too


def test_flat_noise_std_is_sigma_and_weights_only_leaves_biases_alone():
    weight_noise, bias_noise = recorded_noise(0.3, "flat")
    assert float(weight_noise.std()) == pytest.approx(0.3, rel=0.03)
    assert float(bias_noise.std()) == pytest.approx(0.3, rel=0.25)
    _, bias_noise = recorded_noise(0.3, "flat", parameters="weights")
    assert torch.count_nonzero(bias_noise) == 0


def test_perturbed_loss_equals_an_independent_monte_carlo_loop(ctx):
    sigma, seed, draws = 0.05, 123, 3
    losses = []
    for m in range(draws):
        generator = torch.Generator().manual_seed(seed + m)
        model = copy.deepcopy(ctx.model)
        with torch.no_grad():
            for p in model.parameters():
                z = torch.randn(p.shape, generator=generator)
                p.add_(torch.sqrt(sigma ** 2 * p ** 2 + EPSILON ** 2) * z)
        losses.append(evaluate(model, ctx.train_x, ctx.train_y)[0])
    estimate = perturbed_loss(ctx.model, ctx.train_x, ctx.train_y, sigma, draws=draws, seed=seed, epsilon=EPSILON)
    assert estimate == pytest.approx(sum(losses) / draws, rel=1e-6)


@pytest.mark.parametrize("kind", ["magnitude", "flat"])
def test_bisection_result_lies_where_the_monte_carlo_condition_flips(ctx, kind):
    before = state_copy(ctx.model)
    found = sigma_search(ctx.model, ctx.train_x, ctx.train_y, kind=kind, beta=0.1, draws=4, steps=12, seed=7)
    assert_same_state(ctx.model, before)
    resolution = 2.0 / 2 ** 12
    assert 0 < found.sigma < 2.0 - resolution
    assert found.sigma_upper == found.sigma + resolution
    base = evaluate(ctx.model, ctx.train_x, ctx.train_y)[0]
    assert found.base_loss == base and found.threshold == pytest.approx(1.1 * base)

    def mc(sigma):
        return perturbed_loss(ctx.model, ctx.train_x, ctx.train_y, sigma, kind=kind, draws=4, seed=7)

    assert mc(found.sigma) <= 1.1 * base < mc(found.sigma + resolution)
    # Failing steps may stop drawing early; passing steps draw all 4.
    assert 1 + 12 <= found.loss_evaluations <= 1 + 12 * 4


@pytest.mark.parametrize("kind", ["magnitude", "flat"])
def test_early_stopped_bisection_finds_the_sigma_of_a_bisection_with_every_draw(ctx, kind):
    base = evaluate(ctx.model, ctx.train_x, ctx.train_y)[0]
    lower, upper = 0.0, 2.0
    for _ in range(12):
        middle = (lower + upper) / 2
        if perturbed_loss(ctx.model, ctx.train_x, ctx.train_y, middle, kind=kind, draws=6, seed=11) <= 1.1 * base:
            lower = middle
        else:
            upper = middle
    found = sigma_search(ctx.model, ctx.train_x, ctx.train_y, kind=kind, beta=0.1, draws=6, steps=12, seed=11)
    assert (found.sigma, found.sigma_upper) == (lower, upper)
    assert found.loss_evaluations < 1 + 12 * 6


def test_perturbed_loss_stopped_early_is_a_lower_bound_above_the_threshold(ctx):
    full = perturbed_loss(ctx.model, ctx.train_x, ctx.train_y, 1.0, draws=5, seed=3)
    stopped = perturbed_loss(ctx.model, ctx.train_x, ctx.train_y, 1.0, draws=5, seed=3, stop_above=full / 10)
    assert full / 10 < stopped <= full


def test_sigma_grows_with_the_tolerance_beta(ctx):
    sigmas = [sigma_search(ctx.model, ctx.train_x, ctx.train_y, beta=beta, draws=3, steps=10, seed=3).sigma
              for beta in (0.02, 0.1, 0.5)]
    assert sigmas[0] <= sigmas[1] <= sigmas[2]
    assert sigmas[0] < sigmas[2]


def test_pac_bayes_family_is_reproducible_and_leaves_the_model_unchanged(ctx):
    before = state_copy(ctx.model)
    settings = dict(draws=2, steps=8, subset_size=200)
    out = pac_bayes_family(ctx, **settings)
    assert_same_state(ctx.model, before)
    assert not ctx.model.training
    assert set(out.values) == set(FAMILIES["pac_bayes"].measures)
    for name in ("pac_bayes_mag_flat", "pac_bayes_flat"):
        sigma = out.info[name]["sigma"]
        assert out.values[name] == pytest.approx(1 / sigma ** 2)
    assert out.info["subset_size"] == 200
    assert pac_bayes_family(ctx, **settings).values == out.values
    # the flat measure is the magnitude-aware search with the flat kind and its own seed
    x, y = ctx.train_x, ctx.train_y
    index = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed_for(ctx.trial_id, "pac_bayes/subset")))
    index = index[:200].sort().values
    direct = sigma_search(ctx.model, x[index], y[index], kind="flat", draws=2, steps=8,
                          seed=seed_for(ctx.trial_id, "pac_bayes_flat"))
    assert out.info["pac_bayes_flat"]["sigma"] == direct.sigma


def test_bad_settings_are_one_line_errors(ctx):
    with pytest.raises(PerturbationError, match="kind"):
        sigma_search(ctx.model, ctx.train_x, ctx.train_y, kind="sharp")
    with pytest.raises(PerturbationError, match="parameters"):
        perturbed_loss(ctx.model, ctx.train_x, ctx.train_y, 0.1, parameters="biases")
    with pytest.raises(PerturbationError, match="sigma_max"):
        sigma_search(ctx.model, ctx.train_x, ctx.train_y, sigma_max=0)


def test_family_defaults_follow_the_issue():
    defaults = FAMILIES["pac_bayes"].defaults
    assert (defaults["beta"], defaults["draws"], defaults["steps"], defaults["sigma_max"], defaults["epsilon"],
            defaults["subset_size"]) == (0.1, 10, 15, 2.0, 1e-3, 10_000)


def test_sigma_search_restores_train_mode(ctx):
    model = copy.deepcopy(ctx.model).train()
    before = state_copy(model)
    sigma_search(model, ctx.train_x[:64], ctx.train_y[:64], draws=1, steps=2)
    assert model.training
    assert_same_state(model, before)

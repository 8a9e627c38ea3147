import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from measures.common import evaluate, generator_for
from measures.registry import FAMILIES
from measures.context import TrialContext
from measures.pruning import (
    PruningMeasureError,
    _scan,
    coarse_grid_steps,
    grid_size,
    prunability,
    prunability_family,
    pruning_vs_perturbation,
    random_prunability_family,
    recalibrate_batchnorm,
    same_norm_perturbation,
)
from measure_toys import synthetic_data, trained_toy_context
from trainers.pruning import apply_masks, global_magnitude_masks, prunable_parameters, random_masks

BETA = 0.1


@pytest.fixture(scope="module")
def ctx() -> TrialContext:
    return trained_toy_context("trial-a", test_size=128)


def state_copy(model: nn.Module):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, state) -> None:
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


def loss_with_masks(model: nn.Module, masks, x, y) -> float:
    pruned = copy.deepcopy(model)
    apply_masks(pruned, masks)
    return evaluate(pruned, x, y)[0]


def test_bisection_equals_a_brute_force_scan_of_the_grid(ctx):
    unpruned = evaluate(ctx.model, ctx.train_x, ctx.train_y)[0]
    passes = [loss_with_masks(ctx.model, global_magnitude_masks(ctx.model, k / 200), ctx.train_x, ctx.train_y)
              <= (1 + BETA) * unpruned for k in range(201)]
    first = passes.index(True)
    assert all(passes[first:]), "precondition: the loss condition is monotone on this model"
    assert 0 < first < 200
    before = state_copy(ctx.model)
    result = prunability(ctx.model, ctx.train_x, ctx.train_y, beta=BETA, search="bisection")
    assert result.alpha == pytest.approx(first / 200, abs=1e-12)
    assert result.loss_evaluations <= 1 + math.ceil(math.log2(201))
    assert prunability(ctx.model, ctx.train_x, ctx.train_y, beta=BETA).alpha == result.alpha  # the default scan
    assert_same_state(ctx.model, before)
    assert not ctx.model.training


def test_linear_search_reproduces_algorithm_1_as_written(ctx):
    unpruned = evaluate(ctx.model, ctx.train_x, ctx.train_y)[0]
    evaluations = 1
    remove = 0.98
    pruned_loss = loss_with_masks(ctx.model, global_magnitude_masks(ctx.model, 1 - remove), ctx.train_x, ctx.train_y)
    evaluations += 1
    used = remove
    while pruned_loss > (1 + BETA) * unpruned:  # lines 4-7 of Algorithm 1, literally
        used = remove
        pruned_loss = loss_with_masks(ctx.model, global_magnitude_masks(ctx.model, 1 - used), ctx.train_x, ctx.train_y)
        evaluations += 1
        remove -= 0.02
    result = prunability(ctx.model, ctx.train_x, ctx.train_y, beta=BETA, search="linear")
    assert result.alpha == pytest.approx(1 - used, abs=1e-9)
    assert result.loss_evaluations == evaluations
    assert result.pruned_loss == pytest.approx(pruned_loss, rel=1e-12)
    # on the 0.02 grid it agrees with bisection's answer rounded up
    bisection = prunability(ctx.model, ctx.train_x, ctx.train_y, beta=BETA, search="bisection").alpha
    assert bisection <= result.alpha < bisection + 0.02 + 1e-9


def test_pruned_parameter_count_and_sum_of_norms_match_the_pruned_model(ctx):
    result = prunability(ctx.model, ctx.train_x, ctx.train_y, beta=BETA)
    pruned = copy.deepcopy(ctx.model)
    apply_masks(pruned, global_magnitude_masks(pruned, result.alpha))
    weights = [p for _, p in prunable_parameters(pruned)]
    weight_ids = {id(p) for p in weights}
    others = sum(p.numel() for p in pruned.parameters() if id(p) not in weight_ids)
    assert result.pruned_parameter_count == others + sum(int((p != 0).sum()) for p in weights)
    reference = sum(float((p.detach().double() ** 2).sum()) for p in weights)
    assert result.sum_two_norms_pruned == pytest.approx(reference, rel=1e-12)
    assert result.kept_weights == round(result.alpha * result.total_weights)


def test_prunability_family_values_and_info(ctx):
    before = state_copy(ctx.model)
    out = prunability_family(ctx)
    direct = prunability(ctx.model, ctx.train_x, ctx.train_y)
    assert out.values == {"prunability": direct.alpha, "pruned_parameter_count": float(direct.pruned_parameter_count),
                          "sum_two_norms_pruned": direct.sum_two_norms_pruned}
    assert out.info["loss_evaluations"] == direct.loss_evaluations
    assert set(out.values) == set(FAMILIES["prunability"].measures)
    assert_same_state(ctx.model, before)


def test_random_prunability_is_reproducible_and_sits_where_the_condition_flips(ctx):
    beta = 1.0  # random pruning of this tiny model fails β = 0.1 already at α = 0.995
    before = state_copy(ctx.model)
    first = random_prunability_family(ctx, beta=beta).values["random_prunability"]
    assert random_prunability_family(ctx, beta=beta).values["random_prunability"] == first
    assert_same_state(ctx.model, before)
    unpruned = evaluate(ctx.model, ctx.train_x, ctx.train_y)[0]

    def loss(alpha):
        masks = random_masks(ctx.model, alpha, generator=generator_for(ctx.trial_id, "random_prunability"))
        return loss_with_masks(ctx.model, masks, ctx.train_x, ctx.train_y)

    assert 0 < first < 1
    assert loss(first) <= (1 + beta) * unpruned < loss(first - 0.005)
    # random pruning removes less than magnitude pruning on this model
    assert first > prunability(ctx.model, ctx.train_x, ctx.train_y, beta=beta).alpha


def test_recalibrated_batchnorm_statistics_equal_the_batch_moments(ctx):
    model = copy.deepcopy(ctx.model)
    recalibrate_batchnorm(model, ctx.train_x, batch_size=len(ctx.train_x))
    features = ctx.model[0](ctx.train_x).detach()
    torch.testing.assert_close(model[1].running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[1].running_var, features.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-6)
    assert model[1].momentum == ctx.model[1].momentum and not model.training


def test_prunability_with_recalibration_restores_the_batchnorm_buffers(ctx):
    before = state_copy(ctx.model)
    result = prunability(ctx.model, ctx.train_x, ctx.train_y, recalibrate_bn=True)
    assert 0 <= result.alpha <= 1
    assert_same_state(ctx.model, before)


def test_bad_settings_are_one_line_errors(ctx):
    with pytest.raises(PruningMeasureError, match="search"):
        prunability(ctx.model, ctx.train_x, ctx.train_y, search="golden")
    with pytest.raises(PruningMeasureError, match="resolution"):
        prunability(ctx.model, ctx.train_x, ctx.train_y, resolution=0)
    with pytest.raises(PruningMeasureError, match="fractions"):
        pruning_vs_perturbation(ctx, fractions=[1.2])


def test_same_norm_perturbation_touches_only_pruned_weights_with_the_removed_norm(ctx):
    weights = {name: p.detach() for name, p in prunable_parameters(ctx.model)}
    masks = global_magnitude_masks(ctx.model, 0.4)
    delta = same_norm_perturbation(weights, masks, torch.Generator().manual_seed(5))
    flat_delta = np.concatenate([delta[n].numpy().ravel() for n in weights])
    flat_mask = np.concatenate([masks[n].numpy().ravel() for n in weights])
    flat_w = np.concatenate([weights[n].numpy().ravel() for n in weights]).astype(np.float64)
    assert np.all(flat_delta[flat_mask] == 0)
    assert np.count_nonzero(flat_delta[~flat_mask]) == (~flat_mask).sum()
    assert np.linalg.norm(flat_delta) == pytest.approx(np.linalg.norm(flat_w[~flat_mask]), rel=1e-6)


def test_pruning_vs_perturbation_curves(ctx):
    before = state_copy(ctx.model)
    out = pruning_vs_perturbation(ctx)
    assert_same_state(ctx.model, before)
    table = out.tables["pruning_curves"]
    rows = list(zip(*(table[k] for k in ("kept_fraction", "intervention", "split", "loss", "accuracy",
                                          "change_norm"))))
    assert len(rows) == 11 * 2 * 2
    by_key = {(f, i, s): (loss, acc, norm) for f, i, s, loss, acc, norm in rows}
    train = evaluate(ctx.model, ctx.train_x, ctx.train_y)
    test = evaluate(ctx.model, ctx.test_x, ctx.test_y)
    for intervention in ("prune", "perturb"):
        assert by_key[(1.0, intervention, "train")][:2] == train
        assert by_key[(1.0, intervention, "test")][:2] == test
        assert by_key[(1.0, intervention, "train")][2] == 0.0
    weights = {name: p.detach() for name, p in prunable_parameters(ctx.model)}
    for fraction in [f for f in table["kept_fraction"] if f < 1.0]:
        masks = global_magnitude_masks(ctx.model, fraction)
        removed = math.sqrt(sum(float((w.double() * ~masks[n]).square().sum()) for n, w in weights.items()))
        assert by_key[(fraction, "prune", "train")][2] == pytest.approx(removed, rel=1e-9)
        assert by_key[(fraction, "perturb", "train")][2] == pytest.approx(removed, rel=1e-4)
    masks = global_magnitude_masks(ctx.model, 0.5)
    assert by_key[(0.5, "prune", "test")][0] == loss_with_masks(ctx.model, masks, ctx.test_x, ctx.test_y)
    delta = same_norm_perturbation(weights, masks, generator_for(ctx.trial_id, "pruning_vs_perturbation/0.5"))
    perturbed = copy.deepcopy(ctx.model)
    with torch.no_grad():
        for name, p in prunable_parameters(perturbed):
            p.add_(delta[name])
    assert by_key[(0.5, "perturb", "train")][0] == evaluate(perturbed, ctx.train_x, ctx.train_y)[0]
    for split in ("train", "test"):
        fractions = np.array(sorted(set(table["kept_fraction"])))
        gap = np.array([by_key[(f, "prune", split)][0] - by_key[(f, "perturb", split)][0] for f in fractions])
        area = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(fractions)))
        assert out.values[f"pruning_vs_perturbation/{split}_area"] == pytest.approx(area, rel=1e-9, abs=1e-12)


def test_families_are_registered_with_their_defaults():
    assert {"prunability", "random_prunability", "pruning_vs_perturbation"} <= set(FAMILIES)
    assert FAMILIES["prunability"].defaults["beta"] == 0.1
    assert FAMILIES["prunability"].defaults["resolution"] == 0.005
    assert len(FAMILIES["pruning_vs_perturbation"].defaults["fractions"]) == 11


def non_monotone_model():
    """A conv-BatchNorm classifier (float64, seed 3) trained 25 full-batch Adam steps at lr 0.01
    on ``synthetic_data(256, 1)``. Found by a search over seeds and step counts: its pass/fail
    pattern of L(α) ≤ 1.1·L over α = k/200 passes at 0.41 and 0.415, fails from 0.42 to
    0.445 and passes from 0.45 up, so bisection lands on 0.45."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 16, 3)).double()
    x, y = synthetic_data(256, 1)
    x = x.double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval(), x, y


def torch_pruned_loss(model: nn.Module, keep_fraction: float, x, y) -> float:
    """Eval-mode mean cross-entropy after PyTorch's own global L1 pruning of the conv/linear
    weights of a copy, removing exactly n − round(f·n) of the n weights (genzoo keeps round(f·n))."""
    pruned = copy.deepcopy(model)
    layers = [m for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    n = sum(m.weight.numel() for m in layers)
    prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured,
                              amount=n - round(keep_fraction * n))
    pruned.eval()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(pruned(x), y, reduction="sum")) / len(x)


def test_default_scan_finds_the_smallest_passing_fraction_where_bisection_does_not():
    torch.set_num_threads(1)
    model, x, y = non_monotone_model()
    with torch.no_grad():
        unpruned = float(nn.functional.cross_entropy(model(x), y))
    passes = [torch_pruned_loss(model, k / 200, x, y) <= (1 + BETA) * unpruned for k in range(200)] + [True]
    smallest = passes.index(True)
    assert not all(passes[smallest:]), "precondition: the pass/fail pattern is not monotone"
    result = prunability(model, x, y, beta=BETA)
    assert result.alpha == pytest.approx(smallest / 200, abs=1e-12)
    assert result.loss_evaluations <= 30
    bisection = prunability(model, x, y, beta=BETA, search="bisection")
    assert bisection.alpha > result.alpha + 1e-9
    exhaustive = prunability(model, x, y, beta=BETA, coarse_step=0.005)  # m = 1: every grid point
    assert exhaustive.alpha == result.alpha and exhaustive.loss_evaluations == smallest + 2


class FakeLoss:
    """``loss_at`` for ``_scan`` from a pass/fail string over α = k/K (index K: α = 1)."""

    def __init__(self, pattern: str) -> None:
        self.pattern, self.calls = pattern, []

    def __call__(self, alpha: float):
        k = round(alpha * (len(self.pattern) - 1))
        self.calls.append(k)
        return {}, 0.0 if self.pattern[k] == "1" else 2.0


@pytest.mark.parametrize("pattern, expected", [
    ("0000" "0000" "0011" "1111" "1", 10),  # monotone: the first passing point
    ("0000" "0000" "0100" "1111" "1", 9),  # a pass below failing fine points is found
    ("0110" "0000" "0001" "1111" "1", 11),  # ... but not one below the last failing coarse point
    ("1000" "0000" "0000" "0000" "0", 0),  # α = 0 passes
    ("0000" "0000" "0000" "0000" "1", 16),  # only α = 1: the fine points above the last coarse one
])
def test_scan_visits_coarse_points_from_the_sparse_end_then_refines_below_the_first_pass(pattern, expected):
    # K = 16, coarse step m = 4: coarse points 0, 4, 8, 12, then 16 (α = 1).
    loss = FakeLoss(pattern)
    alpha, _, _ = _scan(loss, 1.0, 16, 4)
    assert alpha == expected / 16
    first_coarse = next(k for k in (0, 4, 8, 12, 16) if pattern[k] == "1")
    coarse = [k for k in (0, 4, 8, 12, 16) if k <= first_coarse]
    fine = [j for j in range(max(first_coarse - 3, 0), first_coarse) if j <= expected]
    assert loss.calls == coarse + (fine if first_coarse > 0 else [])


def test_scan_cost_is_at_most_thirty_evaluations_with_the_defaults():
    assert grid_size(0.005) == 200 and coarse_grid_steps(0.05, 200) == 10
    worst = "0" * 191 + "1" + "0" * 8 + "1"  # the last coarse point 0.95 fails, 0.955 passes
    loss = FakeLoss(worst)
    alpha, _, _ = _scan(loss, 1.0, 200, 10)
    assert alpha == 0.955
    never_passing = FakeLoss("0" * 200 + "1")
    _scan(never_passing, 1.0, 200, 10)
    # 20 coarse (α = 0 ... 0.95), α = 1 (not evaluated), 9 fine (0.955 ... 0.995): with the
    # unpruned loss, 20 + 9 + 1 = 30 loss evaluations.
    assert never_passing.calls == [*range(0, 200, 10), 200, *range(191, 200)]
    assert coarse_grid_steps(0.05, 100) == 5 and coarse_grid_steps(0.001, 100) == 1


def test_families_record_the_search_and_its_settings(ctx):
    for name in ("prunability", "random_prunability"):
        defaults = FAMILIES[name].defaults
        assert defaults["search"] == "scan" and defaults["coarse_step"] == 0.05 and defaults["resolution"] == 0.005
    out = prunability_family(ctx, beta=1.0, search="bisection")
    assert out.info["search"] == "bisection"
    assert random_prunability_family(ctx, beta=1.0).info["search"] == "scan"
    with pytest.raises(PruningMeasureError, match="coarse_step"):
        prunability(ctx.model, ctx.train_x, ctx.train_y, coarse_step=0)

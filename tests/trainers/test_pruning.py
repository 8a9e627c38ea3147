import numpy as np
import pytest
import torch
from torch import nn

from trainers.pruning import (
    PruningError,
    apply_masks,
    global_magnitude_masks,
    kept_count,
    prunable_parameters,
    random_masks,
    total_count,
)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 4),
    )


def flat_weights(model: nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for _, p in prunable_parameters(model)])


def flat_masks(masks) -> np.ndarray:
    return np.concatenate([m.numpy().ravel() for m in masks.values()])


def test_prunable_parameters_are_conv_and_linear_weights_only():
    names = [name for name, _ in prunable_parameters(small_model())]
    assert names == ["0.weight", "4.weight", "6.weight"]


@pytest.mark.parametrize("fraction", [0.0, 0.013, 0.25, 0.5, 0.77, 1.0])
def test_global_magnitude_masks_keep_round_fn_largest_like_a_stable_numpy_sort(fraction):
    model = small_model()
    weights = flat_weights(model)
    n = weights.size
    masks = global_magnitude_masks(model, fraction)
    keep = round(fraction * n)
    assert kept_count(masks) == keep and total_count(masks) == n
    reference = np.zeros(n, dtype=bool)
    reference[np.argsort(-np.abs(weights), kind="stable")[:keep]] = True
    np.testing.assert_array_equal(flat_masks(masks), reference)


def test_global_magnitude_ties_keep_the_earlier_weight():
    model = small_model()
    with torch.no_grad():
        for _, p in prunable_parameters(model):
            p.fill_(0.5)
        model[6].weight[0, 0] = -2.0
    masks = global_magnitude_masks(model, 0.1)
    flat = flat_masks(masks)
    keep = round(0.1 * flat.size)
    position_of_big = flat.size - model[6].weight.numel()
    expected = np.zeros(flat.size, dtype=bool)
    expected[:keep - 1] = True
    expected[position_of_big] = True
    np.testing.assert_array_equal(flat, expected)


def test_existing_masks_stay_pruned_and_the_rest_is_ranked_by_magnitude():
    model = small_model()
    weights = np.abs(flat_weights(model))
    first = global_magnitude_masks(model, 0.6)
    second = global_magnitude_masks(model, 0.3, existing_masks=first)
    alive = flat_masks(first)
    kept = flat_masks(second)
    assert not np.any(kept & ~alive)
    assert kept.sum() == round(0.3 * weights.size)
    # magnitude pruning of magnitude pruning is the same as pruning once
    np.testing.assert_array_equal(kept, flat_masks(global_magnitude_masks(model, 0.3)))
    # with a random existing mask the kept weights are the largest surviving ones
    random_first = random_masks(model, 0.5, generator=torch.Generator().manual_seed(3))
    nested = flat_masks(global_magnitude_masks(model, 0.2, existing_masks=random_first))
    survivors = np.where(flat_masks(random_first))[0]
    reference = survivors[np.argsort(-weights[survivors], kind="stable")[:round(0.2 * weights.size)]]
    assert set(np.where(nested)[0]) == set(reference)


def test_existing_masks_that_keep_too_few_are_rejected():
    model = small_model()
    with pytest.raises(PruningError, match="keep_fraction"):
        global_magnitude_masks(model, 0.5, existing_masks=global_magnitude_masks(model, 0.2))


def test_keep_fraction_outside_unit_interval_is_rejected():
    with pytest.raises(PruningError, match="keep_fraction"):
        global_magnitude_masks(small_model(), 1.5)


def test_random_masks_are_reproducible_with_the_same_generator_and_keep_round_fn():
    model = small_model()
    n = flat_weights(model).size
    a = random_masks(model, 0.4, generator=torch.Generator().manual_seed(7))
    b = random_masks(model, 0.4, generator=torch.Generator().manual_seed(7))
    c = random_masks(model, 0.4, generator=torch.Generator().manual_seed(8))
    np.testing.assert_array_equal(flat_masks(a), flat_masks(b))
    assert not np.array_equal(flat_masks(a), flat_masks(c))
    assert kept_count(a) == round(0.4 * n)
    smaller = random_masks(model, 0.2, generator=torch.Generator().manual_seed(7))
    assert not np.any(flat_masks(smaller) & ~flat_masks(a))  # equally seeded masks are nested


def test_apply_masks_zeroes_exactly_the_pruned_weights_and_nothing_else():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = global_magnitude_masks(model, 0.3)
    apply_masks(model, masks)
    after = model.state_dict()
    for name, value in before.items():
        if name in masks:
            torch.testing.assert_close(after[name], value * masks[name], rtol=0, atol=0)
        else:
            torch.testing.assert_close(after[name], value, rtol=0, atol=0)


def test_apply_masks_rejects_unknown_names_and_wrong_shapes():
    model = small_model()
    with pytest.raises(PruningError, match="not conv/linear weights"):
        apply_masks(model, {"0.bias": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(PruningError, match="shape"):
        apply_masks(model, {"0.weight": torch.ones(3, dtype=torch.bool)})

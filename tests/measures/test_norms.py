"""Norm measures against hand computations with numpy on hand-set weights."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from measures.context import TrialContext
from measures.norms import (
    FAMILIES,
    NormsError,
    distance_from_init,
    log_prod_of_spec,
    norms,
    parameter_count,
    path_norm,
    spectral_norm,
    sum_of_fro,
    sum_two_norms,
)

CONV_W = np.array([[[[1.0, -2.0], [0.5, 0.0]]], [[[0.0, 3.0], [-1.0, 1.0]]]])  # (2, 1, 2, 2)
CONV_B = np.array([0.5, -1.0])
BN_GAMMA = np.array([2.0, 0.5])
BN_BETA = np.array([0.1, -0.3])
BN_MEAN = np.array([1.0, -2.0])
BN_VAR = np.array([4.0, 0.25])
BN_EPS = 1e-5
LIN_W = np.arange(24, dtype=np.float64).reshape(3, 8) / 10.0 - 1.0
LIN_B = np.array([0.2, -0.4, 0.6])


class ConvBNNet(nn.Module):
    """conv 2×2 (1→2 channels, bias) → BatchNorm → ReLU → flatten → linear 8→3 on 1×3×3 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=2)
        self.bn = nn.BatchNorm2d(2, eps=BN_EPS)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def hand_set_net() -> ConvBNNet:
    net = ConvBNNet().double()  # float64 so the hand-set values are stored exactly
    with torch.no_grad():
        net.conv.weight.copy_(torch.tensor(CONV_W))
        net.conv.bias.copy_(torch.tensor(CONV_B))
        net.bn.weight.copy_(torch.tensor(BN_GAMMA))
        net.bn.bias.copy_(torch.tensor(BN_BETA))
        net.bn.running_mean.copy_(torch.tensor(BN_MEAN))
        net.bn.running_var.copy_(torch.tensor(BN_VAR))
        net.fc.weight.copy_(torch.tensor(LIN_W))
        net.fc.bias.copy_(torch.tensor(LIN_B))
    return net.eval()


def make_ctx(model: nn.Module, init_state=None) -> TrialContext:
    x = torch.zeros(4, 1, 3, 3)
    y = torch.zeros(4, dtype=torch.int64)
    return TrialContext(
        trial_id="t", model=model, train_x=x, train_y=y, test_x=x, test_y=y,
        build_model=ConvBNNet, init_state=init_state,
    )


def test_parameter_count_counts_all_parameters_or_only_weights_by_hand():
    net = hand_set_net()
    assert parameter_count(net) == 8 + 2 + 2 + 2 + 24 + 3
    assert parameter_count(net, of="weights") == 8 + 24


def test_parameter_count_rejects_unknown_setting():
    with pytest.raises(NormsError, match="parameter_count_of"):
        parameter_count(hand_set_net(), of="biases")


def test_frobenius_measures_match_hand_computation():
    net = hand_set_net()
    weights = [net.conv.weight, net.fc.weight]
    fro_conv, fro_lin = np.sum(CONV_W ** 2), np.sum(LIN_W ** 2)
    assert sum_two_norms(weights) == pytest.approx(fro_conv + fro_lin, rel=1e-12)
    # d·(Π ||W||²)^(1/d) with d = 2, computed directly rather than in log space.
    assert sum_of_fro(weights) == pytest.approx(2 * math.sqrt(fro_conv * fro_lin), rel=1e-6)


def test_sum_of_fro_stays_finite_where_the_direct_product_overflows():
    weights = [torch.full((10, 10), 1e30, dtype=torch.float64)] * 20  # each ||W||_F² = 1e62; the product overflows
    assert sum_of_fro(weights) == pytest.approx(20 * 1e62, rel=1e-9)


def test_spectral_norm_of_reshaped_conv_kernel_matches_numpy_svd():
    torch.manual_seed(0)
    kernel = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    expected = np.linalg.svd(kernel.numpy().reshape(6, 36), compute_uv=False)[0]
    assert spectral_norm(kernel) == pytest.approx(expected, rel=1e-10)


def test_log_prod_of_spec_is_sum_of_log_squared_spectral_norms():
    net = hand_set_net()
    s_conv = np.linalg.svd(CONV_W.reshape(2, 4), compute_uv=False)[0]
    s_lin = np.linalg.svd(LIN_W, compute_uv=False)[0]
    expected = math.log(s_conv ** 2) + math.log(s_lin ** 2)
    assert log_prod_of_spec([net.conv.weight, net.fc.weight]) == pytest.approx(expected, rel=1e-6)


def test_distance_from_init_matches_hand_computation():
    net = hand_set_net()
    init = {k: v.clone() for k, v in net.state_dict().items()}
    init["conv.weight"] = torch.ones_like(init["conv.weight"])
    init["fc.weight"] = torch.zeros_like(init["fc.weight"])
    init["fc.bias"] = torch.full_like(init["fc.bias"], 100.0)  # biases do not count
    expected = np.sum((CONV_W - 1.0) ** 2) + np.sum(LIN_W ** 2)
    assert distance_from_init(net, init) == pytest.approx(expected, rel=1e-6)


def test_distance_from_init_names_missing_tensor():
    net = hand_set_net()
    init = {k: v for k, v in net.state_dict().items() if k != "fc.weight"}
    with pytest.raises(NormsError, match="fc.weight"):
        distance_from_init(net, init)


def numpy_path_norm_conv_bn_net() -> float:
    """The squared network on an all-ones 1×3×3 input, BatchNorm as s²·x + c² per channel."""
    s = BN_GAMMA / np.sqrt(BN_VAR + BN_EPS)
    c = BN_BETA - BN_MEAN * s
    # Every 2×2 window of an all-ones image sums the squared kernel; 4 positions per channel.
    conv_out = np.array([np.sum(CONV_W[o] ** 2) + CONV_B[o] ** 2 for o in range(2)])
    bn_out = s ** 2 * conv_out + c ** 2
    hidden = np.repeat(bn_out, 4)  # flatten is channel-major
    return float(np.sum(LIN_W ** 2 @ hidden + LIN_B ** 2))


def test_path_norm_with_batchnorm_matches_numpy_reference():
    assert path_norm(hand_set_net(), (1, 3, 3)) == pytest.approx(numpy_path_norm_conv_bn_net(), rel=1e-10)


def test_path_norm_of_mlp_equals_brute_force_sum_over_paths():
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    w1, b1 = mlp[0].weight.detach().numpy(), mlp[0].bias.detach().numpy()
    w2, b2 = mlp[2].weight.detach().numpy(), mlp[2].bias.detach().numpy()
    total = 0.0
    for k, j, i in itertools.product(range(2), range(4), range(3)):
        total += w2[k, j] ** 2 * w1[j, i] ** 2  # input → hidden → output paths
    for k, j in itertools.product(range(2), range(4)):
        total += w2[k, j] ** 2 * b1[j] ** 2  # paths starting at a hidden bias
    total += np.sum(b2 ** 2)
    assert path_norm(mlp, (3,)) == pytest.approx(total, rel=1e-12)


def test_path_norm_equals_folding_batchnorm_into_a_bias_free_conv():
    net = hand_set_net()
    with torch.no_grad():
        net.conv.bias.zero_()
    s = BN_GAMMA / np.sqrt(BN_VAR + BN_EPS)
    folded = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        folded[0].weight.copy_(torch.tensor(CONV_W * s[:, None, None, None]))
        folded[0].bias.copy_(torch.tensor(BN_BETA - BN_MEAN * s))
        folded[3].weight.copy_(torch.tensor(LIN_W))
        folded[3].bias.copy_(torch.tensor(LIN_B))
    assert path_norm(net, (1, 3, 3)) == pytest.approx(path_norm(folded, (1, 3, 3)), rel=1e-10)


def test_path_norm_leaves_the_model_unchanged():
    net = hand_set_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path_norm(net, (1, 3, 3))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert isinstance(net.bn, nn.BatchNorm2d)


def test_norms_family_returns_every_measure_and_repeats_exactly():
    net = hand_set_net()
    ctx = make_ctx(net, init_state={k: torch.zeros_like(v) for k, v in net.state_dict().items()})
    first, second = norms(ctx), norms(ctx)
    assert set(first.values) == set(FAMILIES["norms"].measures)
    assert first.values == second.values
    assert first.values["path_norm"] == pytest.approx(numpy_path_norm_conv_bn_net(), rel=1e-10)
    # Distance from an all-zero init is the sum of squared weight norms.
    assert first.values["distance_from_init"] == pytest.approx(first.values["sum_two_norms"], rel=1e-12)


def test_norms_family_requires_initial_weights():
    with pytest.raises(NormsError, match="init_state"):
        norms(make_ctx(hand_set_net()))
    assert FAMILIES["norms"].needs == ("init",)

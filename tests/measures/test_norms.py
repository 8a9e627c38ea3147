"""Norm measures against hand computations with numpy on hand-set weights."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from measures.context import TrialContext
from measures.registry import FAMILIES
from measures.norms import (
    NO_INIT,
    NormsError,
    batchnorm_folds,
    distance_from_init,
    fold_batchnorm_into,
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


def test_norms_family_without_initial_weights_leaves_distance_from_init_out():
    # An imported model without init.pt (genzoo import): the other norms, and the reason.
    out = norms(make_ctx(hand_set_net()))
    assert "distance_from_init" not in out.values
    assert set(out.values) == {"parameter_count", "sum_of_fro", "sum_two_norms", "log_prod_of_spec", "path_norm"}
    assert out.info["not_applicable"] == {"distance_from_init": NO_INIT}
    assert FAMILIES["norms"].needs == ("init",)  # a damaged init.pt still fails the family (measure_job)


class TwoConvBNNet(nn.Module):
    """conv (bias) → BN → ReLU → conv (no bias) → BN → ReLU → flatten → linear, on 2×5×5 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, kernel_size=3)
        self.bn1 = nn.BatchNorm2d(3, eps=1e-3)
        self.conv2 = nn.Conv2d(3, 4, kernel_size=2, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.relu(self.bn2(self.conv2(x))).flatten(1))


def randomized_two_conv_net(seed: int) -> TwoConvBNNet:
    """Random weights and non-trivial BatchNorm running statistics and affine parameters."""
    torch.manual_seed(seed)
    net = TwoConvBNNet().double()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.running_mean.copy_(torch.randn_like(bn.running_mean))
            bn.running_var.copy_(torch.rand_like(bn.running_var) * 3 + 0.1)
            bn.weight.copy_(torch.randn_like(bn.weight) * 2)
            bn.bias.copy_(torch.randn_like(bn.bias))
    return net.eval()


def hand_folded(net: TwoConvBNNet) -> nn.Sequential:
    """The same function without BatchNorm, each conv + BN pair replaced by one conv computed
    here with numpy: W' = W·γ/sqrt(var + ε) per output channel, b' = (b − mean)·γ/sqrt(var + ε) + β."""
    def fold(conv, bn):
        w = conv.weight.detach().numpy()
        b = conv.bias.detach().numpy() if conv.bias is not None else np.zeros(w.shape[0])
        gamma, beta = bn.weight.detach().numpy(), bn.bias.detach().numpy()
        mean, var = bn.running_mean.numpy(), bn.running_var.numpy()
        s = gamma / np.sqrt(var + bn.eps)
        return w * s[:, None, None, None], (b - mean) * s + beta

    folded = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 2), nn.ReLU(), nn.Flatten(),
                           nn.Linear(16, 3)).double()
    with torch.no_grad():
        for target, (w, b) in ((folded[0], fold(net.conv1, net.bn1)), (folded[2], fold(net.conv2, net.bn2))):
            target.weight.copy_(torch.tensor(w))
            target.bias.copy_(torch.tensor(b))
        folded[5].weight.copy_(net.fc.weight)
        folded[5].bias.copy_(net.fc.bias)
    return folded.eval()


def two_conv_ctx(net: nn.Module, init_state) -> TrialContext:
    x = torch.zeros(4, 2, 5, 5, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.int64)
    return TrialContext(trial_id="t", model=net, train_x=x, train_y=y, test_x=x, test_y=y,
                        build_model=TwoConvBNNet, init_state=init_state)


def test_folded_norms_equal_the_norms_of_a_hand_folded_network():
    net, init = randomized_two_conv_net(0), randomized_two_conv_net(1)
    folded, folded_init = hand_folded(net), hand_folded(init)
    x = torch.randn(7, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # the hand fold is right: the same function
        torch.testing.assert_close(folded(x), net(x), rtol=1e-10, atol=1e-10)
    weights = [folded[0].weight, folded[2].weight, folded[5].weight]
    out = norms(two_conv_ctx(net, init.state_dict()))
    assert out.values["sum_two_norms"] == pytest.approx(sum_two_norms(weights), rel=1e-6)
    assert out.values["sum_of_fro"] == pytest.approx(sum_of_fro(weights), rel=1e-6)
    assert out.values["log_prod_of_spec"] == pytest.approx(log_prod_of_spec(weights), rel=1e-6)
    expected_distance = sum(float(((a.weight - b.weight).detach() ** 2).sum())
                            for a, b in ((folded[0], folded_init[0]), (folded[2], folded_init[2]),
                                         (folded[5], folded_init[5])))
    assert out.values["distance_from_init"] == pytest.approx(expected_distance, rel=1e-6)
    assert out.values["parameter_count"] == parameter_count(net)
    assert out.values["path_norm"] == path_norm(net, (2, 5, 5))  # BatchNorm enters path_norm as before
    assert out.info["batchnorms_folded"] == 2 and out.info["batchnorms_left_unfolded"] == []


def test_fold_batchnorm_into_gives_the_hand_folded_bias():
    net = randomized_two_conv_net(3)
    folded = hand_folded(net)
    bn = net.bn1
    w, b = fold_batchnorm_into(net.conv1.weight, net.conv1.bias, bn.weight, bn.bias, bn.running_mean,
                               bn.running_var, bn.eps)
    torch.testing.assert_close(w, folded[0].weight.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b, folded[0].bias.detach(), rtol=1e-12, atol=1e-12)


def test_fold_batchnorm_false_reproduces_the_raw_weight_values_exactly():
    net, init = randomized_two_conv_net(4), randomized_two_conv_net(5).state_dict()
    raw = [net.conv1.weight, net.conv2.weight, net.fc.weight]
    out = norms(two_conv_ctx(net, init), fold_batchnorm=False)
    assert out.values == {
        "parameter_count": float(parameter_count(net)),
        "sum_of_fro": sum_of_fro(raw),
        "sum_two_norms": sum_two_norms(raw),
        "log_prod_of_spec": log_prod_of_spec(raw),
        "distance_from_init": distance_from_init(net, init),
        "path_norm": path_norm(net, (2, 5, 5)),
    }
    assert out.info["batchnorms_folded"] == 0 and out.info["batchnorms_left_unfolded"] == ["bn1", "bn2"]
    hand = hand_set_net()
    ctx = make_ctx(hand, init_state={k: torch.zeros_like(v) for k, v in hand.state_dict().items()})
    assert norms(ctx, fold_batchnorm=False).values["sum_two_norms"] == sum_two_norms([hand.conv.weight, hand.fc.weight])


class PreActNet(nn.Module):
    """conv → [BN → ReLU → conv] + identity → BN → linear: the first BN's input also feeds the
    shortcut, so it cannot be folded; the last one follows a residual sum."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.bn_pre = nn.BatchNorm2d(2)
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn_sum = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 3 * 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.conv(torch.relu(self.bn_pre(x)))
        return self.fc(self.bn_sum(x).flatten(1))


def test_batchnorms_that_do_not_directly_follow_a_weight_layer_are_left_unfolded():
    torch.manual_seed(6)
    net = PreActNet().double().eval()
    with torch.no_grad():
        for bn in (net.bn_pre, net.bn_sum):
            bn.running_var.uniform_(0.2, 3.0)
            bn.weight.uniform_(0.5, 2.0)
    folds, left = batchnorm_folds(net)
    assert folds == [] and left == ["bn_pre", "bn_sum"]
    ctx = two_conv_ctx(net, net.state_dict())
    ctx.train_x = torch.zeros(2, 1, 3, 3, dtype=torch.float64)
    assert norms(ctx).values == norms(ctx, fold_batchnorm=False).values
    assert norms(ctx).info["batchnorms_left_unfolded"] == ["bn_pre", "bn_sum"]


def test_zoo_models_fold_every_batchnorm_after_a_conv():
    from trainers import models

    counts = {}
    for name in ("nin", "resnet18k"):
        folds, left = batchnorm_folds(models.build(name, 10, width=2))
        counts[name] = (len(folds), len(left))
    assert counts == {"nin": (9, 0), "resnet18k": (8, 8)}  # ResNet18k: every bn2 folds, no pre-activation bn1


def test_fold_batchnorm_setting_is_registered_and_checked():
    assert FAMILIES["norms"].defaults["fold_batchnorm"] is True
    net = randomized_two_conv_net(0)
    with pytest.raises(NormsError, match="fold_batchnorm"):
        norms(two_conv_ctx(net, net.state_dict()), fold_batchnorm="yes")

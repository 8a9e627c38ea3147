"""measures/hvp_network.py: the network of the Hessian-vector products is the model's function
of the model's parameters, folded where a BatchNorm reads only a convolution's output, as the
affine map elsewhere; its products equal the dense Hessian taken through the model's own
BatchNorms."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vjp

from measures.hessian import hvp_operator
from measures.hvp_network import EvalBatchNorm, FoldedBatchNorm, FoldedConv, conv_batchnorm_pairs, hvp_network
from trainers import models


def _trained_statistics(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial running statistics and affine parameters in every BatchNorm, float64, eval."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                channels = module.num_features
                module.running_mean.copy_(0.5 * torch.randn(channels, generator=generator))
                module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                    module.bias.copy_(0.2 * torch.randn(channels, generator=generator))
    return model.double().eval()


class ConvNormHead(nn.Module):
    """A convolution, a BatchNorm and a linear head, wired by the subclasses' ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.norm = nn.BatchNorm2d(2)
        self.head = nn.Linear(8, 3)


class ReadTwice(ConvNormHead):
    """A convolution whose output the BatchNorm and a skip both read: folding it would be wrong."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.head(torch.relu(self.norm(h) + h).flatten(1))


class SharedNorm(nn.Module):
    """One BatchNorm called after two convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Conv2d(3, 2, 3), nn.Conv2d(2, 2, 1)
        self.norm = nn.BatchNorm2d(2)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm(self.first(x)))
        return self.head(torch.relu(self.norm(self.second(h))).flatten(1))


class Untraceable(ConvNormHead):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x))
        if h.sum() > 0:
            h = torch.relu(h)
        return self.head(h.flatten(1))


def _data(seed: int = 1, channels: int = 3, size: int = 4, n: int = 48):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=generator)


def _dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    named = dict(model.named_parameters())
    shapes = {name: p.shape for name, p in named.items()}
    flat = torch.cat([p.detach().reshape(-1) for p in named.values()])
    buffers = dict(model.named_buffers())

    def loss(vector: torch.Tensor) -> torch.Tensor:
        tensors, start = {}, 0
        for name, shape in shapes.items():
            tensors[name] = vector[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, {**buffers, **tensors}, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat)


def _assert_same_function(model: nn.Module, network: nn.Module, x: torch.Tensor) -> None:
    assert dict(network.named_parameters()).keys() == dict(model.named_parameters()).keys()
    assert dict(network.named_buffers()).keys() == dict(model.named_buffers()).keys()
    torch.testing.assert_close(network(x), model(x), rtol=1e-12, atol=1e-12)
    # Called with other tensors by name (as the products do), it is still the model's function.
    moved = {name: p.detach() + 0.1 for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    torch.testing.assert_close(functional_call(network, {**buffers, **moved}, (x,)),
                               functional_call(model, {**buffers, **moved}, (x,)), rtol=1e-12, atol=1e-12)


def test_every_batchnorm_of_a_nin_folds_into_its_convolution_and_the_model_is_left_alone():
    model = _trained_statistics(models.build("nin", 10, width=4, depth=2), seed=0)
    x, _ = _data(channels=3, size=32, n=8)
    network = hvp_network(model)
    norms = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and len(conv_batchnorm_pairs(model)) == 6
    assert all(isinstance(network.get_submodule(name), FoldedBatchNorm) for name in norms)
    assert sum(isinstance(m, FoldedConv) for m in network.modules()) == 6
    assert all(isinstance(model.get_submodule(name), nn.BatchNorm2d) for name in norms)
    _assert_same_function(model, network, x)


@pytest.mark.parametrize("name", ["resnet18k", "vgg11", "mcnn"])
def test_zoo_models_trace_and_keep_their_function(name):
    model = _trained_statistics(models.build(name, 10, width=4), seed=2)
    x, _ = _data(channels=3, size=32, n=4)
    network = hvp_network(model)
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    pairs = conv_batchnorm_pairs(model)
    assert pairs is not None and len(pairs) >= 1
    # ResNet18k is pre-activation: its BatchNorms after an addition stay affine maps.
    kinds = {type(network.get_submodule(n)) for n in norms}
    assert kinds == ({FoldedBatchNorm, EvalBatchNorm} if name == "resnet18k" else {FoldedBatchNorm})
    _assert_same_function(model, network, x)


@pytest.mark.parametrize("builder, folded", [
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3, bias=False), nn.BatchNorm2d(2, affine=False), nn.ReLU(),
                           nn.Flatten(), nn.Linear(8, 3)), True),
    (lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3)), False),
    (ReadTwice, False),
    (SharedNorm, False),
    (Untraceable, False),
])
def test_products_equal_the_dense_hessian_through_the_models_own_batchnorm(builder, folded):
    model = _trained_statistics(builder(), seed=3)
    x, y = _data()
    network = hvp_network(model)
    assert any(isinstance(m, FoldedConv) for m in network.modules()) == folded
    assert all(not isinstance(m, nn.BatchNorm2d) for m in network.modules())
    _assert_same_function(model, network, x)
    hessian = _dense_hessian(model, x, y)
    matvec, dim = hvp_operator(model, x, y, batch_size=20, mode="reverse_over_reverse", cache=True)
    v = torch.randn(dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(matvec(v), hessian @ v, rtol=1e-10, atol=1e-12)


def test_what_is_not_folded_and_what_cannot_be_traced():
    assert conv_batchnorm_pairs(Untraceable()) is None
    assert conv_batchnorm_pairs(ReadTwice()) == [] and conv_batchnorm_pairs(SharedNorm()) == []
    no_norm = nn.Sequential(nn.Linear(3, 2))
    assert hvp_network(no_norm) is no_norm
    # Batch statistics in eval mode are not a fixed map: such a BatchNorm is left as it is.
    batch_statistics = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    assert hvp_network(batch_statistics) is batch_statistics


def _product(network: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    tangent, start = {}, 0
    for name, p in params.items():
        tangent[name] = v[start:start + p.numel()].view_as(p).to(p.dtype)
        start += p.numel()

    def loss(p):
        return F.cross_entropy(functional_call(network, {**buffers, **p}, (x,)), y)

    product = vjp(grad(loss), params)[1](tangent)[0]
    return torch.cat([product[name].reshape(-1) for name in params]).double()


def test_in_float32_folding_costs_no_precision():
    # Against the product in float64: folding scales the weights by s = weight / sqrt(var + eps)
    # before the convolution instead of every activation after it.
    model64 = _trained_statistics(models.build("nin", 10, width=8, depth=2), seed=5)
    model32 = copy.deepcopy(model64).float()
    x, y = _data(channels=3, size=32, n=64)
    v = torch.randn(sum(p.numel() for p in model64.parameters()), generator=torch.Generator().manual_seed(6),
                    dtype=torch.float64)
    reference = _product(model64, model64, x, y, v)

    def error(network: nn.Module) -> float:
        return float((_product(network, model32, x.float(), y, v) - reference).norm() / reference.norm())

    folded, affine = error(hvp_network(model32)), error(hvp_network(model32, fold=False))
    assert folded < 1e-5 and affine < 1e-5

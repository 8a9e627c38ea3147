"""The network that Hessian-vector products run: the model's function in eval mode, written
with fewer and cheaper second-order steps, under the model's own parameter and buffer names.

Eval-mode BatchNorm is a fixed affine map per channel,
``y = (x − running_mean) / √(running_var + eps) · weight + bias`` (Ioffe & Szegedy 2015, Alg. 2,
inference), so the network is the same function of the same parameters in two cheaper forms:

- **Folded into the convolution before it** (:class:`FoldedConv`): when a BatchNorm's only
  input is a convolution's output and nothing else reads that output, the pair is one
  convolution with weight ``W · s`` and bias ``(c − running_mean) · s + bias`` per output
  channel, ``s = weight / √(running_var + eps)`` (the inference-time fusion of Jacob et al.
  2018, Sec. 3.2, here kept a differentiable function of W, c, weight and bias, so the
  Hessian over every one of them is unchanged). No activation of the BatchNorm is stored or
  differentiated twice. On the CPU benchmark model (NiN-16; bench/README.md, "The allocator
  and the folded BatchNorm") a product took 1.25 times less time than with the affine map
  below (one process, alternating), and in float32 it was no further from the product
  computed in float64 (relative error 5e-7 there, against 2e-5 to 6e-5 for the affine map).
- **Otherwise as the affine map** (:class:`EvalBatchNorm`): PyTorch's own batch-norm double
  backward, written for training mode, took 60% of every product on that model.

The pairs come from a ``torch.fx`` trace of the model (every model of the zoo traces: NiN,
VGG and the ResNets fold every BatchNorm, the pre-activation ResNet18k half of them); a model
that does not trace keeps the affine map for all of its BatchNorms. BatchNorms that use batch
statistics in eval mode (``track_running_stats=False``) are left as they are.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd


def _uses_running_statistics(module: nn.Module) -> bool:
    return isinstance(module, _BatchNorm) and module.track_running_stats and module.running_mean is not None


def _channel_view(vector: torch.Tensor, dims: int) -> torch.Tensor:
    return vector.view((1, -1) + (1,) * (dims - 2))


class EvalBatchNorm(nn.Module):
    """Eval-mode BatchNorm as the elementwise affine map it is, under the same parameter and
    buffer names (module docstring)."""

    def __init__(self, norm: _BatchNorm) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer("running_mean", norm.running_mean)
        self.register_buffer("running_var", norm.running_var)
        self.register_buffer("num_batches_tracked", norm.num_batches_tracked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = x.dim()
        y = (x - _channel_view(self.running_mean, dims)) * torch.rsqrt(_channel_view(self.running_var, dims) + self.eps)
        if self.weight is not None:
            y = y * _channel_view(self.weight, dims)
        if self.bias is not None:
            y = y + _channel_view(self.bias, dims)
        return y


class FoldedBatchNorm(EvalBatchNorm):
    """A BatchNorm folded into the convolution before it: it keeps its parameters and buffers
    under their names, for :class:`FoldedConv` to read, and passes its input through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def scale_and_shift(self, bias: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``s = weight / √(running_var + eps)`` and ``(bias_before − running_mean) · s + bias``."""
        scale = torch.rsqrt(self.running_var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        centred = -self.running_mean if bias is None else bias - self.running_mean
        shift = centred * scale
        if self.bias is not None:
            shift = shift + self.bias
        return scale, shift


class FoldedConv(nn.Module):
    """A convolution followed by its eval-mode BatchNorm, as one convolution whose weight and
    bias are functions of both modules' parameters (module docstring). Its own parameters are
    the convolution's, under the convolution's names; the BatchNorm's stay with ``norm``,
    which is held without being registered, so that each tensor keeps its one name."""

    def __init__(self, conv: _ConvNd, norm: FoldedBatchNorm) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        object.__setattr__(self, "conv", conv)
        object.__setattr__(self, "norm", norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.norm.scale_and_shift(self.bias)
        weight = self.weight * scale.view((-1,) + (1,) * (self.weight.dim() - 1))
        return self.conv._conv_forward(x, weight, shift)


def conv_batchnorm_pairs(model: nn.Module) -> Optional[List[Tuple[str, str]]]:
    """``(convolution, BatchNorm)`` module names where the BatchNorm (running statistics) takes
    the convolution's output as its only input, nothing else reads that output, and each
    module is called once; from a ``torch.fx`` trace. None when the model does not trace."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # torch.fx raises many kinds (TraceError, TypeError, ...) on untraceable code
        return None
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1 or len(node.users) != 1:
            continue
        conv, user = modules[node.target], next(iter(node.users))
        if not isinstance(conv, _ConvNd) or conv.transposed or user.op != "call_module":
            continue
        if _uses_running_statistics(modules[user.target]) and calls[user.target] == 1 \
                and user.args == (node,) and not user.kwargs:
            pairs.append((node.target, user.target))
    return pairs


def hvp_network(model: nn.Module, *, fold: bool = True) -> nn.Module:
    """``model`` (in eval mode) with every convolution-BatchNorm pair folded (unless ``fold``
    is false) and every other BatchNorm that uses running statistics an
    :class:`EvalBatchNorm`, as a copy with the model's parameter and buffer names (products
    call it with the model's tensors by name); ``model`` itself when it has no such BatchNorm."""
    norms = [name for name, module in model.named_modules() if _uses_running_statistics(module)]
    if not norms:
        return model
    network = copy.deepcopy(model)
    for conv_name, norm_name in (conv_batchnorm_pairs(network) if fold else None) or []:
        norm = FoldedBatchNorm(network.get_submodule(norm_name))
        network.set_submodule(conv_name, FoldedConv(network.get_submodule(conv_name), norm))
        network.set_submodule(norm_name, norm)
    for name in norms:
        if not isinstance(network.get_submodule(name), FoldedBatchNorm):
            network.set_submodule(name, EvalBatchNorm(network.get_submodule(name)))
    return network.eval()

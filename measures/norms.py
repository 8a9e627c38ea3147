"""Norm- and size-based complexity measures (Jiang et al. 2020, "Fantastic generalization
measures and where to find them", Appendix C).

"Weights" are ``measures.common.weight_parameters``: the weight tensors of every conv and
linear layer (no biases, no BatchNorm); ``W_i`` is the i-th of them and ``d`` their number
(the paper's "number of layers"). Every norm is computed in float64 on the weights' device.

BatchNorm folding (``fold_batchnorm``, default true). The reference implementation of these
measures (Dziugaite et al. 2020, robust-generalization-measures, ``_reparam``) first folds
every BatchNorm into the convolution before it, so that the weights are those of the same
function without BatchNorm. genzoo does the same: a BatchNorm whose input is directly and
only the output of a conv/linear layer (found in the ``torch.fx`` graph, see
``batchnorm_folds``) is folded with its running statistics, affine parameters and ε,

    W' = W·s per output channel,  b' = (b − running_mean)·s + β,  s = γ/sqrt(running_var + ε),

and the measures below use W' in place of W. A BatchNorm that does not directly follow a
conv/linear layer (the pre-activation BatchNorms of ResNet18k, whose input is a residual
sum or also feeds a shortcut) cannot be absorbed by any weight tensor and is left as it
is; ``info`` records how many were folded and the names of those left. (The reference
folds by module order instead, which would fold a pre-activation BatchNorm into the
unrelated convolution before it.) ``fold_batchnorm=False`` gives the raw weights, exactly
the values of genzoo before folding existed. Per measure:

- ``parameter_count``: unaffected, the parameters of the model as trained.
- ``sum_of_fro``, ``sum_two_norms``, ``log_prod_of_spec``: of the folded weights W'_i.
- ``distance_from_init``: Σ_i ||W'_i − W'⁰_i||_F², the final weights folded with the final
  BatchNorm state and the initial weights with the *initial* BatchNorm parameters and
  statistics from ``init_state`` (as the reference reparametrizes model and init_model
  separately); at PyTorch's BatchNorm init W'⁰ = W⁰/sqrt(1 + ε).
- ``path_norm``: unaffected; it already treats every BatchNorm as the affine layer it is in
  eval mode (equal to folding for a conv without bias, see ``path_norm``).

On the 32 NiNs of the demo zoo (digits, widths 16/32, depths 2/3, 6 or 9 BatchNorms, all
folded) the raw values are a fraction of the folded ones: raw/folded ``sum_of_fro`` 0.37–0.69
(median 0.54), ``sum_two_norms`` 0.35–0.63 (median 0.50), ``distance_from_init`` 0.32–0.64
(median 0.50), and raw − folded ``log_prod_of_spec`` −10.4 to −2.9 (median −4.9); for one
of them (width 16, depth 3, weight decay 5e-4, augmented) 0.67, 0.61, 0.63 and −3.9.

Measures of the ``norms`` family:

- ``parameter_count`` (Appendix C, "params"): ω, the number of parameters of the model. Jiang et al.
  count every parameter of the network, so the default is all parameters (weights, biases,
  BatchNorm scales and shifts); ``parameter_count_of="weights"`` counts only the weight
  tensors (the convention of the Dziugaite et al. 2020 robust-measures code).
- ``sum_of_fro`` (Appendix C, "sum-of-fro"; the prunability paper's baseline):
  d·(Π_i ||W_i||_F²)^(1/d), computed as d·exp(mean_i log ||W_i||_F²) so the product cannot
  overflow.
- ``sum_two_norms`` (the prunability paper, A.2; Jiang's "param-norm"): Σ_i ||W_i||_F².
- ``log_prod_of_spec`` (Appendix C, "log-prod-of-spec"): log Π_i ||W_i||_2² = Σ_i 2·log σ_max(W_i),
  squared spectral norms as in Jiang et al. A conv kernel of shape (out, in, kh, kw) is
  reshaped to the (out, in·kh·kw) matrix that multiplies each im2col patch (as the
  robust-measures code does); this is not the operator norm of the convolution itself.
- ``distance_from_init`` (Appendix C, "frob-distance"): Σ_i ||W_i − W_i⁰||_F², W⁰ the initial
  weights (``ctx.init_state``).
- ``path_norm`` (Appendix C, "path-norm"): Σ_i f_{w²}(1)[i], the outputs of the network whose
  parameters are all squared, fed one all-ones input, summed. See ``path_norm`` for how
  BatchNorm enters.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.fx
from torch import nn

from measures.constants import PARAMETER_COUNT_OF  # noqa: F401 (defined once, torch-free)
from measures.common import weight_parameters
from measures.context import MeasureOutput, TrialContext

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Normalizations whose eval-mode output is not a fixed per-channel affine map of the input,
# so "square every parameter" does not define a path norm for them.
_UNSUPPORTED_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


class NormsError(ValueError):
    """A model or setting the norm measures cannot handle."""


def _weights(model: nn.Module) -> List[torch.Tensor]:
    weights = [w.detach() for _, w in weight_parameters(model)]
    if not weights:
        raise NormsError("model: has no conv or linear weight tensors; norm measures need at least one")
    return weights


@dataclass(frozen=True)
class BatchNormFold:
    """A BatchNorm (module name ``batchnorm``, its ``eps``) whose input is directly and only
    the output of the conv/linear layer ``layer``, so it can be folded into that layer."""

    layer: str
    batchnorm: str
    eps: float


def batchnorm_folds(model: nn.Module) -> Tuple[List[BatchNormFold], List[str]]:
    """Which BatchNorms can be folded into the layer before them: (folds, names left unfolded).

    Read from the ``torch.fx`` graph of ``model``, not from module order: a BatchNorm is
    folded when its input is the output of an ``nn.Conv2d``/``nn.Linear`` whose output feeds
    nothing else, each of the two modules is called exactly once, and the BatchNorm has
    running statistics. Any other BatchNorm is left as it is, e.g. the pre-activation
    BatchNorms of ResNet18k (their input is a residual sum or the stem's output, which also
    feeds the identity shortcut, so no weight tensor can absorb them; ResNet18k folds 8 of
    its 16 BatchNorms: every ``bn2``). NiN, mCNN, the CIFAR ResNets (20, 32, 56) and VGG fold
    all of theirs; LeNet-300-100 has none.
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable Python control flow
        raise NormsError(f"fold_batchnorm: torch.fx cannot trace the model ({type(exc).__name__}); "
                         "allowed: a traceable model, or fold_batchnorm=False") from exc
    modules = dict(model.named_modules())
    calls: Dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    folds: List[BatchNormFold] = []
    left: List[str] = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BATCHNORMS):
            continue
        bn = modules[node.target]
        source = node.args[0] if node.args else None
        foldable = (
            isinstance(source, torch.fx.Node) and source.op == "call_module"
            and isinstance(modules[source.target], (nn.Conv2d, nn.Linear))
            and len(source.users) == 1 and calls[source.target] == 1 and calls[node.target] == 1
            and bn.running_mean is not None and bn.running_var is not None
        )
        if foldable:
            folds.append(BatchNormFold(layer=source.target, batchnorm=node.target, eps=float(bn.eps)))
        else:
            left.append(node.target)
    return folds, left


def fold_batchnorm_into(
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    gamma: Optional[torch.Tensor],
    beta: Optional[torch.Tensor],
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    eps: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(W', b') of the one layer computing BN(conv(x)) in eval mode, in float64:
    W' = W·s per output channel (dim 0) and b' = (b − mean)·s + β, s = γ/sqrt(var + ε)
    (γ = 1, β = 0 without affine parameters, b = 0 without a bias)."""
    scale = (running_var.detach().double() + eps).rsqrt()
    if gamma is not None:
        scale = scale * gamma.detach().double()
    shift = torch.zeros_like(scale) if beta is None else beta.detach().double()
    b = torch.zeros_like(scale) if bias is None else bias.detach().double()
    w = weight.detach().double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    return w, (b - running_mean.detach().double()) * scale + shift


def _state_tensor(state: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in state:
        raise NormsError(f"init_state: has no tensor {name!r}; it must be a state dict of the same architecture")
    return state[name]


def folded_weights(
    model: nn.Module, folds: Sequence[BatchNormFold] = (), state: Optional[Mapping[str, torch.Tensor]] = None
) -> List[torch.Tensor]:
    """The weight tensors (``weight_parameters`` order) with every BatchNorm of ``folds``
    folded into its layer (:func:`fold_batchnorm_into`, float64); the others as they are.

    Read from ``state`` (a state dict of the same architecture: weights, biases, BatchNorm
    parameters and running statistics) when given, else from the model itself.
    """
    source = state if state is not None else model.state_dict()
    by_layer = {fold.layer: fold for fold in folds}
    weights = []
    for name, parameter in weight_parameters(model):
        weight = _state_tensor(source, name).detach()
        if tuple(weight.shape) != tuple(parameter.shape):
            raise NormsError(f"init_state: {name!r} has shape {tuple(weight.shape)}, the model's is {tuple(parameter.shape)}")
        layer = name[: -len(".weight")] if name.endswith(".weight") else ""
        fold = by_layer.get(layer)
        if fold is not None:
            prefix = f"{fold.batchnorm}."
            weight, _ = fold_batchnorm_into(
                weight, source.get(f"{layer}.bias"), source.get(prefix + "weight"), source.get(prefix + "bias"),
                _state_tensor(source, prefix + "running_mean"), _state_tensor(source, prefix + "running_var"),
                fold.eps)
        weights.append(weight.to(parameter.device))
    return weights


def parameter_count(model: nn.Module, of: str = "all") -> int:
    """ω, the number of parameters (Jiang et al. 2020, Appendix C): every parameter of ``model`` for
    ``of="all"`` (default), or only the conv/linear weight tensors for ``of="weights"``."""
    if of == "all":
        return sum(p.numel() for p in model.parameters())
    if of == "weights":
        return sum(w.numel() for _, w in weight_parameters(model))
    raise NormsError(f"parameter_count_of: got {of!r}, allowed: {', '.join(PARAMETER_COUNT_OF)}")


def squared_frobenius_norms(weights: Sequence[torch.Tensor]) -> List[float]:
    """||W_i||_F² of every tensor, in float64."""
    return [float(w.detach().double().pow(2).sum()) for w in weights]


def sum_of_fro(weights: Sequence[torch.Tensor]) -> float:
    """d·(Π_i ||W_i||_F²)^(1/d) (Jiang et al. 2020, Appendix C), d = len(weights), computed in
    log space. A zero tensor makes it 0."""
    squares = squared_frobenius_norms(weights)
    if not squares:
        raise NormsError("weights: empty; sum_of_fro needs at least one weight tensor")
    if min(squares) == 0.0:
        return 0.0
    d = len(squares)
    return d * math.exp(sum(math.log(s) for s in squares) / d)


def sum_two_norms(weights: Sequence[torch.Tensor]) -> float:
    """Σ_i ||W_i||_F² (prunability paper, A.2; Jiang et al. 2020's param-norm)."""
    return math.fsum(squared_frobenius_norms(weights))


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A weight as a matrix: (out, in) stays, a conv kernel (out, in, *kernel) becomes
    (out, in·prod(kernel)), the matrix applied to each im2col patch."""
    return weight.detach().reshape(weight.shape[0], -1)


def spectral_norm(weight: torch.Tensor) -> float:
    """σ_max of ``as_matrix(weight)`` (largest singular value), in float64."""
    return float(torch.linalg.matrix_norm(as_matrix(weight).double(), ord=2))


def log_prod_of_spec(weights: Sequence[torch.Tensor]) -> float:
    """log Π_i ||W_i||_2² = Σ_i 2·log σ_max(W_i) (Jiang et al. 2020, Appendix C), kernels reshaped by
    ``as_matrix``. −inf if some tensor is zero."""
    norms = [spectral_norm(w) for w in weights]
    if min(norms) == 0.0:
        return -math.inf
    return math.fsum(2.0 * math.log(s) for s in norms)


def distance_from_init(
    model: nn.Module, init_state: Mapping[str, torch.Tensor], folds: Sequence[BatchNormFold] = ()
) -> float:
    """Σ_i ||W_i − W_i⁰||_F² over the weight tensors (Jiang et al. 2020, Appendix C, frob-distance),
    W⁰ read from ``init_state`` under the same state-dict names.

    With ``folds`` both sides are folded (:func:`folded_weights`): W_i with the model's
    BatchNorm parameters and running statistics, W_i⁰ with the *initial* ones read from
    ``init_state`` (the robust-measures code likewise reparametrizes the model and its
    initialization separately). At PyTorch's BatchNorm initialization (γ = 1, β = 0, mean 0,
    variance 1) that makes W_i⁰' = W_i⁰/sqrt(1 + ε)."""
    final = folded_weights(model, folds)
    initial = folded_weights(model, folds, init_state)
    total = []
    for weight, start in zip(final, initial):
        difference = weight.double() - start.to(device=weight.device, dtype=torch.float64)
        total.append(float(difference.pow(2).sum()))
    return math.fsum(total)


class _ChannelAffine(nn.Module):
    """x ↦ scale·x + shift per channel (dim 1): an eval-mode BatchNorm as an explicit layer."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale)
        self.shift = nn.Parameter(shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


def batchnorm_as_affine(bn: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """(s, c) with eval-mode ``bn(x) = s·x + c`` per channel: s = γ/sqrt(running_var + eps),
    c = β − running_mean·s (γ = 1, β = 0 without affine parameters)."""
    if bn.running_mean is None or bn.running_var is None:
        raise NormsError("model: a BatchNorm without running statistics has no fixed eval-mode map; path_norm needs track_running_stats=True")
    inv_std = (bn.running_var.double() + bn.eps).rsqrt()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(inv_std)
    scale = gamma * inv_std
    return scale, beta - bn.running_mean.double() * scale


def _replace_batchnorms(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, _UNSUPPORTED_NORMS):
            raise NormsError(f"model: {name} is a {type(module).__name__}; path_norm supports only BatchNorm")
        if isinstance(module, _BATCHNORMS):
            model.set_submodule(name, _ChannelAffine(*batchnorm_as_affine(module)))


@torch.no_grad()
def path_norm(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Σ_i f_{w²}(1)[i] (Jiang et al. 2020, Appendix C, path-norm): square every parameter, feed one
    all-ones input of shape ``input_shape`` (without the batch dimension), sum the outputs.

    Works on a float64 copy in eval mode (dropout off). BatchNorm: in eval mode a BatchNorm
    is the per-channel affine map x ↦ s·x + c (``batchnorm_as_affine``); it is written as that
    explicit layer and its two parameters are squared like any other, giving s²·x + c². For
    a convolution without bias followed by BatchNorm this equals folding the BatchNorm into
    the convolution first (the reparametrization of the robust-measures code); with a conv
    bias b the folded network would square s·b + c where this squares s·b and c separately.
    Unlike folding, it needs no guess of which convolution feeds which BatchNorm and handles
    pre-activation blocks. Squaring γ and β while keeping the running statistics would not
    give a sum over paths (the mean subtraction can be negative), so that is not done.
    ReLU, pooling and residual sums are applied as they are, as the definition says; with
    non-negative weights and inputs every ReLU passes its input.
    """
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in input_shape):
        raise NormsError(f"input_shape: got {tuple(input_shape)}, allowed: positive ints (one example, no batch dimension)")
    squared = copy.deepcopy(model).double().eval()
    _replace_batchnorms(squared)
    device = next(iter(squared.parameters())).device
    for parameter in squared.parameters():
        parameter.pow_(2)
    outputs = squared(torch.ones((1, *input_shape), dtype=torch.float64, device=device))
    return float(outputs.sum())


# Why a model without initial weights has no distance_from_init row (stored in the rows' info).
NO_INIT = "not applicable: the model has no initial weights (init.pt; an imported model whose source had none)"


def norms(ctx: TrialContext, *, parameter_count_of: str = "all", fold_batchnorm: bool = True) -> MeasureOutput:
    """The norm family: ``parameter_count``, ``sum_of_fro``, ``sum_two_norms``,
    ``log_prod_of_spec``, ``distance_from_init``, ``path_norm`` of ``ctx.model`` (definitions
    and the BatchNorm folding convention in the module docstring; ``distance_from_init`` needs
    ``ctx.init_state``: without it, it is left out and ``info["not_applicable"]`` says why).
    ``info`` records how many BatchNorms were folded and which were left."""
    if not isinstance(fold_batchnorm, bool):
        raise NormsError(f"fold_batchnorm: got {fold_batchnorm!r}, allowed: true or false")
    if fold_batchnorm:
        folds, left = batchnorm_folds(ctx.model)
    else:
        folds, left = [], [name for name, m in ctx.model.named_modules() if isinstance(m, _BATCHNORMS)]
    weights = folded_weights(ctx.model, folds) if folds else _weights(ctx.model)
    values = {
        "parameter_count": float(parameter_count(ctx.model, parameter_count_of)),
        "sum_of_fro": sum_of_fro(weights),
        "sum_two_norms": sum_two_norms(weights),
        "log_prod_of_spec": log_prod_of_spec(weights),
    }
    info: Dict[str, Any] = {"num_weight_tensors": len(weights), "batchnorms_folded": len(folds),
                            "batchnorms_left_unfolded": left}
    if ctx.init_state is None:  # an imported model whose source had no initial weights (genzoo import)
        info["not_applicable"] = {"distance_from_init": NO_INIT}
    else:
        values["distance_from_init"] = distance_from_init(ctx.model, ctx.init_state, folds)
    values["path_norm"] = path_norm(ctx.model, tuple(ctx.train_x.shape[1:]))
    return MeasureOutput(values=values, info=info)

"""Linear algebra on the Hessian of a model's mean loss over fixed data, matrix-free.

The Hessian is that of the *mean* cross-entropy over all of ``(x, y)``: the data are processed
in batches and each batch's loss is the sum of its per-example losses divided by the total
number of examples, so summing per-batch Hessian-vector products gives exactly the
Hessian-vector product of the mean loss over the whole set, whatever the batch size.

Conventions (see ``measures.common`` and the measures issue):

- The model is put in **eval mode**: BatchNorm uses its running statistics, so the loss is a
  sum of independent per-example terms and the Hessian does not depend on the batching.
  (Maddox et al. 2020 left BatchNorm in train mode during Hessian-vector products; genzoo does
  not.) Dropout is then the identity.
- Which parameters span the Hessian is a choice: ``params="all"`` (the default, as PyHessian,
  Yao et al. 2020) uses every parameter of the model, BatchNorm affine parameters and biases
  included; ``params="weights"`` uses only the weight tensors of conv and linear layers (the
  issue's convention for norms and pruning; Maddox et al. used the tensors with more than one
  dimension, which are the same for the models of the zoo). All other parameters and the
  buffers stay fixed.
- Hessian-vector products use ``torch.func``: forward-over-reverse (``jvp`` of ``grad``) by
  default, reverse-over-reverse (``vjp`` of ``grad``) as an option; both are exact.
- Operators work on flat vectors: the selected parameters, in ``named_parameters`` order,
  flattened and concatenated.
- Random vectors are drawn with the given ``torch.Generator`` on its own device and then moved,
  so a CPU generator gives the same draws whatever device the model is on.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Literal, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vjp

from measures.constants import PARAMS_CHOICES, HVP_MODES  # noqa: F401 (defined once, torch-free)
from measures.common import weight_parameters
from measures.hvp_network import hvp_network
from trainers.data import pass_slices

Matvec = Callable[[torch.Tensor], torch.Tensor]
ParamsChoice = Literal["all", "weights"]


class HessianError(ValueError):
    """A bad argument to a Hessian routine; the message is one line naming the argument."""


@dataclass(frozen=True)
class ParameterSpace:
    """The parameters a Hessian is taken over, and how flat vectors map onto them.

    ``base`` holds the selected parameters (detached), ``fixed`` every other parameter and
    buffer of the model; ``functional_call(model, {**fixed, **p})`` evaluates the model at ``p``.
    """

    names: Tuple[str, ...]
    shapes: Tuple[torch.Size, ...]
    base: Mapping[str, torch.Tensor]
    fixed: Mapping[str, torch.Tensor]
    dim: int
    dtype: torch.dtype
    device: torch.device

    def unflatten(self, flat: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Split a flat vector of length ``dim`` into tensors shaped like the parameters."""
        flat = flat.to(device=self.device, dtype=self.dtype)
        sizes = [math.prod(shape) for shape in self.shapes]
        return {
            name: chunk.view(shape)
            for name, shape, chunk in zip(self.names, self.shapes, torch.split(flat, sizes))
        }

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate tensors keyed like the parameters into one flat vector."""
        return torch.cat([tensors[name].reshape(-1) for name in self.names])

    def offset(self, delta: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The selected parameters moved by the flat vector ``delta``."""
        return {name: self.base[name] + step for name, step in self.unflatten(delta).items()}


def parameter_space(model: nn.Module, params: ParamsChoice = "all") -> ParameterSpace:
    """The :class:`ParameterSpace` of ``model`` for ``params="all"`` or ``params="weights"``."""
    if params not in PARAMS_CHOICES:
        raise HessianError(f"params: got {params!r}, allowed: {', '.join(PARAMS_CHOICES)}")
    named = dict(model.named_parameters())
    if params == "all":
        selected = list(named)
    else:
        selected = [name for name, _ in weight_parameters(model)]
    if not selected:
        raise HessianError(f"params: the model has no parameters for params={params!r}")
    base = {name: named[name].detach() for name in selected}
    fixed = {name: p.detach() for name, p in named.items() if name not in base}
    fixed.update({name: b for name, b in model.named_buffers()})
    first = base[selected[0]]
    return ParameterSpace(
        names=tuple(selected),
        shapes=tuple(base[name].shape for name in selected),
        base=base,
        fixed=fixed,
        dim=sum(t.numel() for t in base.values()),
        dtype=first.dtype,
        device=first.device,
    )


def _check_data(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    if len(x) == 0 or len(x) != len(y):
        raise HessianError(f"x, y: need the same, nonzero number of examples, got {len(x)} and {len(y)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise HessianError(f"batch_size: must be a positive integer, got {batch_size!r}")


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    # At most 256 examples per pass on the CPU, where larger passes are slower
    # (``trainers.data.examples_per_pass``); the mean loss and its Hessian do not depend on it.
    for part in pass_slices(len(x), batch_size, x.device):
        yield x[part], y[part]


def mean_loss_function(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int, params: ParamsChoice = "all"
) -> Tuple[Callable[[torch.Tensor], float], ParameterSpace]:
    """``loss_at(delta)``: the mean cross-entropy over ``(x, y)`` with the selected parameters
    moved by the flat vector ``delta`` (the model itself is not modified), in eval mode."""
    _check_data(x, y, batch_size)
    model.eval()
    space = parameter_space(model, params)

    @torch.no_grad()
    def loss_at(delta: torch.Tensor) -> float:
        state = {**space.fixed, **space.offset(delta)}
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for xb, yb in _batches(x, y, batch_size):
            logits = functional_call(model, state, (xb,))
            total += F.cross_entropy(logits, yb, reduction="sum").double()
        return float(total) / len(x)

    return loss_at, space


def hvp_operator(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    params: ParamsChoice = "all",
    mode: str = "forward_over_reverse",
    cache: bool = False,
) -> Tuple[Matvec, int]:
    """The Hessian of the mean cross-entropy over ``(x, y)`` as ``(matvec, dim)``.

    ``matvec(v)`` returns H·v for a flat vector ``v`` of length ``dim`` (any dtype or device;
    the result has the same), computed in the model's dtype over batches of ``batch_size``
    examples (at most 256 on the CPU: ``trainers.data.examples_per_pass``) and accumulated
    in float64. The model is put in eval mode; ``params`` chooses the parameters (module
    docstring). ``mode`` is ``"forward_over_reverse"`` (``torch.func.jvp`` of ``grad``, less
    memory) or ``"reverse_over_reverse"`` (``vjp`` of ``grad``).

    ``cache`` (``reverse_over_reverse`` only): the forward pass and gradient at the parameters
    are the same for every product, so each batch's are computed once, at the first product,
    and ``vjp``'s pullback is kept; every product after that runs only the second backward
    pass (about 1.5 times cheaper per product on the CPU benchmark's NiN-16, bench/README.md),
    with bit-for-bit the same result. Memory: the graphs of the whole of ``x`` stay alive
    (several times its activations). If keeping them runs out of memory, the operator drops
    them and recomputes per product from then on (``matvec.cached`` says which it did).
    ``torch.func.linearize`` would do the same for forward-over-reverse, but its tracing cost
    more than it saved here.

    The products run the model's function through :func:`measures.hvp_network.hvp_network`:
    eval-mode BatchNorm folded into the convolution before it, or as its affine map (the same
    function of the same parameters, cheaper to differentiate twice).
    """
    if mode not in HVP_MODES:
        raise HessianError(f"mode: got {mode!r}, allowed: {', '.join(HVP_MODES)}")
    _check_data(x, y, batch_size)
    model.eval()
    space = parameter_space(model, params)
    count = len(x)

    network = hvp_network(model)

    def batch_loss(p: Dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        # Dividing each batch's summed loss by the total count makes the batch Hessians add up
        # to the Hessian of the mean over all examples.
        logits = functional_call(network, {**space.fixed, **p}, (xb,))
        return F.cross_entropy(logits, yb, reduction="sum") / count

    batch_grad = grad(batch_loss)

    def reverse_product(xb: torch.Tensor, yb: torch.Tensor) -> Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]:
        """tangent -> H_batch·tangent: ``vjp`` of the batch gradient, whose pullback can be kept."""
        pullback = vjp(lambda p: batch_grad(p, xb, yb), dict(space.base))[1]
        return lambda tangent: pullback(tangent)[0]

    def batch_hvp(xb: torch.Tensor, yb: torch.Tensor, tangent: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if mode == "forward_over_reverse":
            with warnings.catch_warnings():
                # On first use, PyTorch's own forward-AD decompositions call torch.jit.script,
                # which warns that it is deprecated; nothing a user of genzoo can act on.
                warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
                return jvp(lambda p: batch_grad(p, xb, yb), (dict(space.base),), (tangent,))[1]
        return reverse_product(xb, yb)(tangent)

    products: list = []  # per batch: tangent -> H_batch·tangent, kept when ``cache``

    def batch_products(tangent: Dict[str, torch.Tensor]):
        if matvec.cached and not products:
            try:
                products.extend(reverse_product(xb, yb) for xb, yb in _batches(x, y, batch_size))
            except torch.OutOfMemoryError:
                products.clear()
                matvec.cached = False
                if space.device.type == "cuda":
                    torch.cuda.empty_cache()
        if matvec.cached:
            return (product(tangent) for product in products)
        return (batch_hvp(xb, yb, tangent) for xb, yb in _batches(x, y, batch_size))

    def matvec(v: torch.Tensor) -> torch.Tensor:
        if v.shape != (space.dim,):
            raise HessianError(f"v: expected a flat vector of length {space.dim}, got shape {tuple(v.shape)}")
        tangent = space.unflatten(v)
        total = torch.zeros(space.dim, dtype=torch.float64, device=space.device)
        for product in batch_products(tangent):
            total += space.flatten(product).double()
        return total.to(dtype=v.dtype, device=v.device)

    matvec.cached = bool(cache) and mode == "reverse_over_reverse"
    return matvec, space.dim


def dense_matrix(matvec: Matvec, dim: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """The matrix of a linear operator, column by column (``dim`` products; for tiny ``dim``)."""
    identity = torch.eye(dim, dtype=dtype, device=device)
    return torch.stack([matvec(identity[:, j]) for j in range(dim)], dim=1)


def _random_normal(dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    return torch.randn(dim, generator=generator, dtype=torch.float64, device=generator.device).to(device=device, dtype=dtype)


def _random_rademacher(dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    bits = torch.randint(0, 2, (dim,), generator=generator, device=generator.device)
    return (2 * bits - 1).to(device=device, dtype=dtype)


def _orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``w`` minus its projection on the orthonormal rows of ``basis``, twice (classical
    Gram-Schmidt repeated: "twice is enough" for orthogonality to working precision)."""
    if basis.shape[0] == 0:
        return w
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def _check_k(dim: int, k: int) -> None:
    if not isinstance(dim, int) or dim < 1:
        raise HessianError(f"dim: must be a positive integer, got {dim!r}")
    if not isinstance(k, int) or not 1 <= k <= dim:
        raise HessianError(f"k: must be an integer in [1, dim={dim}], got {k!r}")


class LanczosRun(NamedTuple):
    """A Lanczos run: the orthonormal basis Q (rows, ``steps × dim``) and the tridiagonal
    matrix T = QᵀHQ as its diagonal ``alphas`` (``alphas[j] = q_jᵀHq_j``) and off-diagonal
    ``betas`` (zero where an invariant subspace was found and the run restarted)."""

    basis: torch.Tensor
    alphas: torch.Tensor
    betas: torch.Tensor

    @property
    def steps(self) -> int:
        return int(self.alphas.shape[0])

    def truncated(self, steps: int) -> "LanczosRun":
        """The run as if it had stopped after ``steps`` products: with full
        reorthogonalization, step j depends only on the steps before it."""
        steps = min(steps, self.steps)
        return LanczosRun(self.basis[:steps], self.alphas[:steps], self.betas[:max(steps - 1, 0)])

    def tridiagonal_trace(self) -> float:
        """Tr(QᵀHQ) = Σ_j q_jᵀHq_j, the trace of H on the Krylov space (no extra products)."""
        return float(self.alphas.double().sum())

    def ritz(self, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest Ritz values (descending) and their unit Ritz vectors (columns)."""
        tridiagonal = torch.diag(self.alphas) + torch.diag(self.betas, 1) + torch.diag(self.betas, -1)
        ritz_values, ritz_coefficients = torch.linalg.eigh(tridiagonal)
        order = torch.argsort(ritz_values, descending=True)[:k]
        eigenvectors = self.basis.T @ ritz_coefficients[:, order]
        eigenvectors = eigenvectors / torch.linalg.vector_norm(eigenvectors, dim=0, keepdim=True)
        return ritz_values[order], eigenvectors


def lanczos(
    matvec: Matvec,
    dim: int,
    steps: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> LanczosRun:
    """``steps`` Lanczos steps (``steps`` matrix-vector products, capped at ``dim``) on a
    symmetric operator, with full reorthogonalization (see :func:`lanczos_top_eigenvalues`)."""
    if not isinstance(dim, int) or dim < 1:
        raise HessianError(f"dim: must be a positive integer, got {dim!r}")
    if not isinstance(steps, int) or steps < 1:
        raise HessianError(f"steps: must be a positive integer, got {steps!r}")
    steps = min(steps, dim)
    basis = torch.zeros(steps, dim, dtype=dtype, device=device)
    alphas = torch.zeros(steps, dtype=dtype, device=device)
    betas = torch.zeros(max(steps - 1, 0), dtype=dtype, device=device)
    v = _random_normal(dim, generator, dtype, device)
    v = v / torch.linalg.vector_norm(v)
    scale = 0.0
    breakdown = dim * torch.finfo(dtype).eps
    for j in range(steps):
        basis[j] = v
        w = matvec(v).to(device=device, dtype=dtype)
        alphas[j] = torch.dot(w, v)
        if j == steps - 1:
            break
        w = _orthogonalize(w, basis[:j + 1])
        beta = torch.linalg.vector_norm(w)
        scale = max(scale, abs(float(alphas[j])), float(beta))
        if float(beta) <= breakdown * scale:
            # Invariant subspace found: the tridiagonal matrix splits (beta = 0) and a random
            # direction orthogonal to everything so far continues the iteration.
            betas[j] = 0.0
            w = _orthogonalize(_random_normal(dim, generator, dtype, device), basis[:j + 1])
            v = w / torch.linalg.vector_norm(w)
        else:
            betas[j] = beta
            v = w / beta
    return LanczosRun(basis, alphas, betas)


def default_lanczos_steps(k: int) -> int:
    """The default number of Lanczos steps for the top ``k`` eigenvalues: ``max(2k, k + 20)``."""
    return max(2 * k, k + 20)


def lanczos_top_eigenvalues(
    matvec: Matvec,
    dim: int,
    k: int,
    *,
    steps: Optional[int] = None,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` algebraically largest eigenvalues (descending) and their unit eigenvectors
    (columns of a ``dim × k`` matrix) of a symmetric operator, by Lanczos.

    Lanczos (Golub & Van Loan, *Matrix Computations*, Algorithm 10.1.1) with full
    reorthogonalization of every new vector against all previous ones, which keeps the basis
    orthonormal and avoids spurious copies of converged eigenvalues; the answers are the Ritz
    values and Ritz vectors of the tridiagonal matrix. ``steps`` (the number of
    matrix-vector products) defaults to :func:`default_lanczos_steps`, capped at ``dim``; with
    ``steps = dim`` the result is exact up to rounding. The start vector is standard normal
    from ``generator``; if the Krylov space becomes invariant (a residual norm below
    ``dim · machine epsilon`` times the largest coefficient so far), a fresh random vector
    orthogonal to the basis continues it. Vectors are kept in ``dtype`` on ``device``
    (memory: ``steps × dim`` numbers). :func:`lanczos` returns the whole run (basis and
    tridiagonal matrix) for further use.
    """
    _check_k(dim, k)
    if steps is None:
        steps = default_lanczos_steps(k)
    if not isinstance(steps, int) or steps < k:
        raise HessianError(f"steps: must be an integer >= k={k}, got {steps!r}")
    run = lanczos(matvec, dim, steps, generator=generator, dtype=dtype, device=device)
    return run.ritz(k)


def power_iteration_top_eigenvalues(
    matvec: Matvec,
    dim: int,
    k: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``k`` eigenvalues of largest *magnitude* and their unit eigenvectors, by power iteration
    with deflation (the method of PyHessian, Yao et al. 2020, used in Appendix E.2 of the
    second paper).

    For each eigenvalue in turn: start from a standard normal vector; repeat at most
    ``max_iter`` times (default 100): orthogonalize ``v`` against the eigenvectors found so
    far, ``λ = vᵀHv``, ``v = Hv / ||Hv||``; stop when ``|λ − λ_prev| / (|λ_prev| + 1e-6) < tol``
    (default 1e-3, PyHessian's; the paper used 1e-4). Unlike Lanczos this converges to the
    largest |λ|, which may be negative away from a minimum. Returned sorted by eigenvalue,
    descending. The number of products is at most ``k · max_iter``.
    """
    _check_k(dim, k)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise HessianError(f"max_iter: must be a positive integer, got {max_iter!r}")
    if not tol > 0:
        raise HessianError(f"tol: must be positive, got {tol!r}")
    found = torch.zeros(0, dim, dtype=dtype, device=device)
    values = []
    for _ in range(k):
        v = _random_normal(dim, generator, dtype, device)
        v = v / torch.linalg.vector_norm(v)
        value: Optional[float] = None
        for _ in range(max_iter):
            v = _orthogonalize(v, found)
            v = v / torch.linalg.vector_norm(v)
            hv = matvec(v).to(device=device, dtype=dtype)
            estimate = float(torch.dot(hv, v))
            norm = torch.linalg.vector_norm(hv)
            if float(norm) == 0.0:
                value = 0.0
                break
            v = hv / norm
            converged = value is not None and abs(value - estimate) / (abs(value) + 1e-6) < tol
            value = estimate
            if converged:
                break
        v = _orthogonalize(v, found)
        v = v / torch.linalg.vector_norm(v)
        found = torch.cat([found, v[None]])
        values.append(value)
    eigenvalues = torch.tensor(values, dtype=dtype, device=device)
    order = torch.argsort(eigenvalues, descending=True)
    return eigenvalues[order], found.T[:, order]


class TraceEstimate(NamedTuple):
    """A Monte-Carlo estimate: the sample mean and its standard error (sample std / √n)."""

    mean: float
    stderr: float


def hutchinson_draws(
    matvec: Matvec,
    dim: int,
    *,
    samples: int,
    generator: torch.Generator,
    deflate: Optional[torch.Tensor] = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The ``samples`` draws ``wᵀHw`` (float64, on the CPU), one product each, with ``w = z``
    a Rademacher vector (entries ±1 with probability ½) or, given orthonormal rows
    ``deflate`` (Q), ``w = (I − QᵀQ)z``, its projection on their orthogonal complement. Each
    draw's mean is Tr(H), respectively Tr(PHP) with P = I − QᵀQ."""
    if not isinstance(dim, int) or dim < 1:
        raise HessianError(f"dim: must be a positive integer, got {dim!r}")
    if not isinstance(samples, int) or samples < 1:
        raise HessianError(f"samples: must be a positive integer, got {samples!r}")
    if deflate is not None and (deflate.ndim != 2 or deflate.shape[1] != dim):
        raise HessianError(f"deflate: expected rows of length {dim}, got shape {tuple(deflate.shape)}")
    draws = torch.zeros(samples, dtype=torch.float64)
    for i in range(samples):
        z = _random_rademacher(dim, generator, dtype, device)
        if deflate is not None:
            z = _orthogonalize(z, deflate.to(device=device, dtype=dtype))
        draws[i] = float(torch.dot(z, matvec(z).to(device=device, dtype=dtype)))
    return draws


def _estimate(draws: torch.Tensor, offset: float = 0.0) -> TraceEstimate:
    return TraceEstimate(mean=offset + float(draws.mean()),
                         stderr=float(draws.std(correction=1)) / math.sqrt(len(draws)))


def hutchinson_trace(
    matvec: Matvec,
    dim: int,
    *,
    samples: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> TraceEstimate:
    """Hutchinson's estimator of the trace (Hutchinson 1990; PyHessian): the mean of
    ``zᵀHz`` over ``samples`` Rademacher vectors ``z`` (entries ±1 with probability ½), with
    its standard error. Unbiased; the variance of one sample is ``2 Σ_{i≠j} H_ij²``.
    ``samples`` products; at least 2 for a standard error."""
    if not isinstance(samples, int) or samples < 2:
        raise HessianError(f"samples: must be an integer >= 2, got {samples!r}")
    return _estimate(hutchinson_draws(matvec, dim, samples=samples, generator=generator, dtype=dtype, device=device))


def deflated_hutchinson_trace(
    matvec: Matvec,
    basis: torch.Tensor,
    *,
    basis_trace: float,
    samples: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> TraceEstimate:
    """Tr(H) from an orthonormal basis Q (the rows of ``basis``, e.g. a Lanczos run's) and
    Hutchinson on the rest (deflation, in the spirit of Hutch++, Meyer et al. 2021): with
    P = I − QQᵀ,

        Tr(H) = Tr(QᵀHQ) + Tr(PHP),

    the first term given as ``basis_trace`` (for a Lanczos run, the sum of the tridiagonal's
    diagonal, :meth:`LanczosRun.tridiagonal_trace`: no extra products), the second
    Hutchinson's estimate with ``samples`` Rademacher vectors projected by P (one product
    each). Unbiased given Q; the standard error is that of the second term. When Q spans the
    top of the spectrum, PHP has a much smaller Frobenius norm than H, and the estimate a
    much smaller variance than plain Hutchinson with as many products; when Q spans the whole
    space the remainder, and its error, are 0 up to rounding. At least 2 samples, for a
    standard error."""
    if not isinstance(samples, int) or samples < 2:
        raise HessianError(f"samples: must be an integer >= 2, got {samples!r}")
    dim = int(basis.shape[-1])
    draws = hutchinson_draws(matvec, dim, samples=samples, generator=generator, deflate=basis,
                             dtype=dtype, device=device)
    return _estimate(draws, basis_trace)

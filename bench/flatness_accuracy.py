"""Accuracy against cost of the flatness family's Lanczos and trace settings, on a model small
enough for a dense Hessian.

The flatness family (``measures.flatness``) spends its time in Hessian-vector products
(HVPs): ``lanczos_steps`` for the top ``top_k`` eigenvalues and vectors, then
``hutchinson_samples`` for the trace. This script measures what fewer products cost in
accuracy, so that the defaults can be chosen at the knee:

1. train a small NiN on digits the way ``bench/measure_seconds.py`` does (default width 6,
   depth 2: 1,708 parameters), and take the flatness family's seeded subset of its training set
   (``subset``, default 512, with the trial's ``"flatness"`` generator);
2. build the dense Hessian of the mean loss there, column by column (``dim`` HVPs), and
   from it the exact spectrum, Tr(H), the top-k sum, the effective dimensionality and the
   ε-flatness along the exact top-k eigenvectors;
3. run Lanczos once for the largest number of steps asked (on the dense matrix, which is the
   same operator up to rounding, and with the family's ``"flatness/eigen"`` generator), and
   for each number of steps ``m`` take its first ``m`` steps (with full reorthogonalization
   that *is* an ``m``-step run) and report the relative errors of λ₁, the top-k sum, the
   effective dimensionality and ε-flatness (along the Ritz vectors, with the real loss);
4. for the trace, report the root-mean-square relative error of each estimator, exactly,
   from the dense matrix: Hutchinson with ``s`` Rademacher vectors has variance
   ``2 Σ_{i≠j} A_ij² / s`` with ``A = H`` (plain) or ``A = PHP``, ``P = I − QQᵀ`` (deflated by
   the ``m``-step Lanczos basis Q, plus the exact ``Tr(QᵀHQ)``); both are unbiased, so that is
   their whole error. ``Tr(T)`` alone (``s = 0``) is also shown: it is biased low.

Cost is in HVPs: ``m`` for the eigenvalues plus ``s`` for the trace (plain Hutchinson needs its
own ``s`` as well). The seconds of one HVP on this model are printed too.

    .venv/bin/python bench/flatness_accuracy.py                  # about 2 minutes on 2 cores
    .venv/bin/python bench/flatness_accuracy.py --width 8 --depth 1 --subset 256 --steps 100,150
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure_seconds  # noqa: E402 (a script beside this one: its training and context)

from measures.common import generator_for, seeded_indices  # noqa: E402
from measures.flatness import effective_dimensionality, eps_flatness  # noqa: E402
from measures.hessian import dense_matrix, hvp_operator, lanczos, mean_loss_function  # noqa: E402


class BenchError(ValueError):
    """A bad benchmark argument; one line naming it."""


@dataclass(frozen=True)
class Exact:
    eigenvalues: torch.Tensor  # descending
    eigenvectors: torch.Tensor  # columns
    trace: float
    top_k_sum: float
    effective_dimensionality: float
    eps: float


def rms_hutchinson(matrix: torch.Tensor, samples: int) -> float:
    """The standard deviation of Hutchinson's mean over ``samples`` Rademacher vectors of
    ``zᵀAz``: ``sqrt(2 Σ_{i≠j} A_ij² / samples)``."""
    off_diagonal = matrix.pow(2).sum() - matrix.diagonal().pow(2).sum()
    return math.sqrt(max(float(off_diagonal), 0.0) * 2 / samples)


def relative(estimate: float, exact: float) -> float:
    return abs(estimate - exact) / abs(exact) if exact != 0 else math.nan


def parse_ints(text: str, name: str) -> List[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchError(f"--{name}: got {text!r}, allowed: comma-separated positive integers") from None
    if not values or min(values) < 1:
        raise BenchError(f"--{name}: got {text!r}, allowed: comma-separated positive integers")
    return sorted(set(values))


def run(args: argparse.Namespace, log=print) -> str:
    torch.manual_seed(args.seed)
    settings = measure_seconds.Settings(width=args.width, depth=args.depth, epochs=args.epochs, seed=args.seed,
                                        train_size=args.train_size)
    with tempfile.TemporaryDirectory(prefix="genzoo-flatness-accuracy-") as workdir:
        ctx, _ = measure_seconds.trained_context(settings, Path(workdir), lambda line: None)
    model = ctx.model.eval()
    indices = seeded_indices(ctx.trial_id, "flatness", len(ctx.train_x), args.subset)
    x, y = ctx.train_x[indices], ctx.train_y[indices]
    matvec, dim = hvp_operator(model, x, y, batch_size=1000, mode=args.hvp_mode)
    k = min(args.top_k, dim)
    steps = sorted({min(m, dim) for m in parse_ints(args.steps, "steps") if m >= k})  # at most dim steps
    if not steps:
        raise BenchError(f"--steps: every value is below top_k={k}")
    probes = parse_ints(args.probes, "probes")

    if args.reference_steps:
        return run_against_lanczos(args, settings, ctx, model, x, y, matvec, dim, k, steps, log)
    started = time.perf_counter()
    hessian = dense_matrix(matvec, dim)
    hvp_seconds = (time.perf_counter() - started) / dim
    hessian = (hessian + hessian.T) / 2
    eigenvalues, eigenvectors = torch.linalg.eigh(hessian)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    loss_at, space = mean_loss_function(model, x, y, batch_size=1000)

    def eps_along(directions: torch.Tensor) -> float:
        return eps_flatness(loss_at, directions.to(space.dtype), step=args.eps_step)[0]

    exact = Exact(eigenvalues, eigenvectors, float(torch.trace(hessian)), float(eigenvalues[:k].sum()),
                  effective_dimensionality(eigenvalues[:k], dim), eps_along(eigenvectors[:, :k]))
    log(f"dense Hessian: {dim} HVPs, {hvp_seconds:.4f} s each")

    dense = lambda v: hessian @ v  # noqa: E731 (the same operator as ``matvec``, up to rounding)
    full = lanczos(dense, dim, max(steps), generator=generator_for(ctx.trial_id, "flatness/eigen"))
    rows = []
    for m in steps:
        part = full.truncated(m)
        values, vectors = part.ritz(k)
        basis = part.basis
        projector = torch.eye(dim, dtype=torch.float64) - basis.T @ basis
        remainder = projector @ hessian @ projector
        krylov_trace = part.tridiagonal_trace()
        rows.append({
            "m": m,
            "top": relative(float(values[0]), float(exact.eigenvalues[0])),
            "top_k_sum": relative(float(values.sum()), exact.top_k_sum),
            "neff": relative(effective_dimensionality(values, dim), exact.effective_dimensionality),
            "eps": eps_along(vectors),
            "tr_T": relative(krylov_trace, exact.trace),
            "deflated": {s: rms_hutchinson(remainder, s) / abs(exact.trace) for s in probes},
        })
        log(f"m={m} done")
    plain = {s: rms_hutchinson(hessian, s) / abs(exact.trace) for s in probes}
    return report(args, settings, dim, len(x), hvp_seconds, exact, rows, plain, probes)


def run_against_lanczos(args, settings, ctx, model, x, y, matvec, dim, k, steps, log) -> str:
    """Without a dense Hessian (a model too large for one): the reference is a Lanczos run of
    ``--reference-steps`` products, and each ``m`` is its first ``m`` steps (so the errors are
    those against a longer run, a lower bound of the errors against the exact values)."""
    reference_steps = max(args.reference_steps, max(steps))
    started = time.perf_counter()
    full = lanczos(matvec, dim, reference_steps, generator=generator_for(ctx.trial_id, "flatness/eigen"))
    hvp_seconds = (time.perf_counter() - started) / min(reference_steps, dim)
    loss_at, space = mean_loss_function(model, x, y, batch_size=1000)

    def summary(m: int) -> Dict[str, float]:
        values, vectors = full.truncated(m).ritz(k)
        return {"top": float(values[0]), "sum": float(values.sum()), "neff": effective_dimensionality(values, dim),
                "eps": eps_flatness(loss_at, vectors.to(space.dtype), step=args.eps_step)[0],
                "tr_T": full.truncated(m).tridiagonal_trace()}

    reference = summary(reference_steps)
    lines = [
        f"{measure_seconds.describe(settings)}; {dim:,} parameters, Hessian over {len(x):,} training examples, "
        f"top_k {k}, {args.hvp_mode} {hvp_seconds:.4f} s per HVP",
        f"reference: a {reference_steps}-step Lanczos run: λ₁ {reference['top']:.5g}, top-k sum {reference['sum']:.5g}, "
        f"N_eff/dim {reference['neff']:.5g}, ε-flatness {reference['eps']:.4g}, Tr(T) {reference['tr_T']:.5g}",
        "",
        f"| Lanczos steps m | λ₁ | top-k sum | N_eff | ε-flatness | Tr(T_m) / Tr(T_{reference_steps}) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for m in steps:
        row = summary(m)
        lines.append(f"| {m} | {percent(relative(row['top'], reference['top']))} "
                     f"| {percent(relative(row['sum'], reference['sum']))} "
                     f"| {percent(relative(row['neff'], reference['neff']))} | {row['eps']:.4g} "
                     f"| {row['tr_T'] / reference['tr_T']:.4f} |")
        log(f"m={m} done")
    return "\n".join(lines)


def percent(value: float) -> str:
    return f"{100 * value:.2g}%" if value >= 1e-4 else f"{100 * value:.0e}%"


def report(args, settings, dim, examples, hvp_seconds, exact: Exact, rows, plain, probes) -> str:
    lines = [
        f"{measure_seconds.describe(settings)}; {dim:,} parameters, Hessian over {examples:,} training examples, "
        f"top_k {min(args.top_k, dim)}, {args.hvp_mode} {hvp_seconds:.4f} s per HVP",
        f"exact: λ₁ {float(exact.eigenvalues[0]):.5g}, λ_k {float(exact.eigenvalues[min(args.top_k, dim) - 1]):.4g}, "
        f"λ_min {float(exact.eigenvalues[-1]):.4g}, Tr(H) {exact.trace:.5g}, top-k sum {exact.top_k_sum:.5g}, "
        f"N_eff/dim {exact.effective_dimensionality:.5g}, ε-flatness {exact.eps:.4g}",
        "",
        "Eigenvalues (relative error against the dense Hessian; ε-flatness along the Ritz vectors, exact: "
        f"{exact.eps:.4g}):",
        "",
        "| Lanczos steps m | λ₁ | top-k sum | N_eff | ε-flatness | Tr(T) alone (s = 0) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['m']} | {percent(row['top'])} | {percent(row['top_k_sum'])} | {percent(row['neff'])} "
                     f"| {row['eps']:.4g} | {percent(row['tr_T'])} |")
    lines += [
        "",
        "Trace: root-mean-square relative error (exact, from the dense matrix) against HVPs for the trace "
        "(plain: s products after the m Lanczos steps; deflated: s products, the Lanczos run reused):",
        "",
        "| probes s | plain Hutchinson | " + " | ".join(f"deflated, m = {row['m']}" for row in rows) + " |",
        "|---:|---:|" + "---:|" * len(rows),
    ]
    for s in probes:
        lines.append(f"| {s} | {percent(plain[s])} | " + " | ".join(percent(row["deflated"][s]) for row in rows) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flatness_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=6)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, help="a seeded subset of the training split (default: all)")
    parser.add_argument("--subset", type=int, default=512, help="examples the Hessian is taken over")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--steps", default="100,110,120,130,150,200", help="Lanczos steps to report")
    parser.add_argument("--probes", default="2,5,10,20,50,100", help="Hutchinson probe counts to report")
    parser.add_argument("--eps-step", type=float, default=0.01)
    parser.add_argument("--hvp-mode", default="forward_over_reverse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-steps", type=int, default=0,
                        help="no dense Hessian: compare against a Lanczos run of this many steps instead")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for name in ("width", "depth", "epochs", "subset", "top_k"):
            if getattr(args, name) < 1:
                raise BenchError(f"--{name.replace('_', '-')}: got {getattr(args, name)}, allowed: an integer >= 1")
        text = run(args)
    except ValueError as exc:
        print(f"flatness_accuracy: error: {exc}", file=sys.stderr)
        return 2
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

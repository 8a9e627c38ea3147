"""Evaluation passes on the CPU: how many examples one forward pass should take.

genzoo's evaluations and Hessian-vector products run batches of at most 256 examples per pass
on the CPU (``trainers.data.examples_per_pass``), whatever batch size a setting asks for. This
script shows why, on the model of ``measure_seconds.py`` (a NiN trained 10 epochs on the
offline digits). In one process, for each pass size B of ``--pass-sizes`` and over
``--rounds`` alternating rounds, it times

- **evaluation**: the mean training loss over the whole training set, forward passes of B
  examples in inference mode (what ``trainers.data.evaluate`` does per pass);
- **product**: one Hessian-vector product of that loss, with each pass's forward and backward
  graph built once beforehand and kept (reverse-over-reverse with the product cache, eval-mode
  BatchNorm folded into its convolution: what ``measures.hessian.hvp_operator`` runs per pass);

and prints the median seconds of each and the ratio to the first pass size. Run it a second
time with glibc's allocator told to keep large blocks (``MALLOC_MMAP_THRESHOLD_=1000000000
MALLOC_TRIM_THRESHOLD_=2000000000``): the pass sizes then take about the same time, which
shows where the difference goes (freeing and faulting in large buffers at every pass).

    .venv/bin/python bench/cpu_passes.py
    .venv/bin/python bench/cpu_passes.py --pass-sizes 1024,256 --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vjp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_seconds import BenchError, Settings, trained_context, validate  # noqa: E402

from measures.hessian import parameter_space  # noqa: E402
from measures.hvp_network import hvp_network  # noqa: E402


def evaluation(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, size: int) -> Callable[[], float]:
    """The mean loss over ``(x, y)`` in forward passes of ``size`` examples."""
    @torch.inference_mode()
    def run() -> float:
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, len(x), size):
            total += F.cross_entropy(model(x[start:start + size]), y[start:start + size], reduction="sum").double()
        return float(total) / len(x)
    return run


def product(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, size: int) -> Callable[[], torch.Tensor]:
    """H·v for a fixed v, each pass's graph kept from a first product, as ``hvp_operator``
    with ``cache=True`` does."""
    network = hvp_network(model.eval())
    space = parameter_space(model)

    def pass_gradient(xb: torch.Tensor, yb: torch.Tensor):
        def loss(p: Dict[str, torch.Tensor]) -> torch.Tensor:
            return F.cross_entropy(functional_call(network, {**space.fixed, **p}, (xb,)), yb, reduction="sum") / len(x)
        return grad(loss)

    pullbacks = [vjp(pass_gradient(x[s:s + size], y[s:s + size]), dict(space.base))[1] for s in range(0, len(x), size)]
    tangent = space.unflatten(torch.randn(space.dim, generator=torch.Generator().manual_seed(0)))

    def run() -> torch.Tensor:
        total = torch.zeros(space.dim, dtype=torch.float64)
        for pullback in pullbacks:
            total += space.flatten(pullback(tangent)[0]).double()
        return total
    return run


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pass-sizes", default="1024,512,256,128", help="comma-separated; the first is the baseline")
    parser.add_argument("--rounds", type=int, default=10, help="alternating timed rounds (default 10)")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=None, help="a seeded subset of the digits (default: all)")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        sizes = [int(text) for text in args.pass_sizes.split(",")]
    except ValueError:
        parser.error(f"--pass-sizes: got {args.pass_sizes!r}, allowed: comma-separated positive integers")
    if not sizes or min(sizes) < 1:
        parser.error(f"--pass-sizes: got {args.pass_sizes!r}, allowed: comma-separated positive integers")
    if args.rounds < 1:
        parser.error(f"--rounds: got {args.rounds}, allowed: a positive integer")

    settings = Settings(width=args.width, depth=args.depth, train_size=args.train_size, epochs=args.epochs)
    try:
        validate(settings)
    except BenchError as error:
        parser.error(str(error))
    with tempfile.TemporaryDirectory(prefix="genzoo-cpu-passes-") as workdir:
        ctx, _ = trained_context(settings, Path(workdir), lambda line: None)
    x, y = ctx.train_x, ctx.train_y
    print(f"NiN width {args.width} depth {args.depth}, {len(x):,} digits, CPU, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, {args.rounds} rounds")
    seconds: Dict[tuple, List[float]] = {}
    # Evaluations first: the kept product graphs would change the allocator's state under them.
    for kind, make in (("evaluation", evaluation), ("product", product)):
        jobs = {(kind, size): make(ctx.model, x, y, size) for size in sizes}
        for job in jobs.values():  # warm-up
            job()
        for _ in range(args.rounds):
            for key, job in jobs.items():
                started = time.perf_counter()
                job()
                seconds.setdefault(key, []).append(time.perf_counter() - started)
        del jobs
    print("\n| pass size | evaluation s (median) | / first | product s (median) | / first |")
    print("|---:|---:|---:|---:|---:|")
    first = {kind: statistics.median(seconds[(kind, sizes[0])]) for kind in ("evaluation", "product")}
    for size in sizes:
        cells = []
        for kind in ("evaluation", "product"):
            median = statistics.median(seconds[(kind, size)])
            cells += [f"{median:.4f}", f"{median / first[kind]:.2f}"]
        print(f"| {size} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

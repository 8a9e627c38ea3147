"""Seconds of every measure family on one trained model, against one train-loss evaluation.

The measures issue asks how long each measure takes for one DEMOGEN Network-in-Network
(width 192, depth 3) on a GPU (goal on an H100: prunability under 10 s, every measure under
2 minutes). This script answers it without Ray, the way one task of the measures job runs:

0. fix glibc's allocator thresholds as the job's workers do (``trainers.allocator``;
   ``--allocator glibc`` leaves its defaults, as before that module);
1. train the model with ``trainers.train.train`` (SGD, lr 0.05 divided by 10 for the last
   quarter of the epochs, batch 128, augmentation; its early checkpoint after epoch 1 feeds
   ``el2n``, its initial weights ``distance_from_init``);
2. build the ``TrialContext`` the job would build (whole training and test sets on the
   device, normalized, the final weights in eval mode);
3. time the baseline, one full-training-set loss evaluation (``measures.common.evaluate``,
   1,024 images per batch), ``runs`` times, and keep the best;
4. time each family's function with the settings the job would use (the registry's defaults,
   or ``--set family.key=value``), once each, in the registry's order, after one untimed
   warm-up evaluation;
5. print a table: seconds per family and their ratio to the baseline, i.e. what the family
   costs in train-loss evaluations of this model on this data.

Every timed interval starts and ends with ``torch.cuda.synchronize()`` on CUDA. A family that
fails (out of memory, say) is reported as an error with its message; the rest still run.
Family timings exclude loading the data and checkpoints, which the script times separately
(the job's ``seconds`` column includes them). The report ends with the seconds the process
spent in the kernel and the pages it faulted in while the families ran: memory the allocator
handed back to the operating system and had to ask for again.

    python bench/measure_seconds.py                                  # CPU: digits, NiN width 16
    python bench/measure_seconds.py --device cuda --dataset digits --repeat 35
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from measures import registry
from measures.common import evaluate
from measures.context import TrialContext, trial_context
from trainers import checkpoint, data
from trainers.allocator import keep_freed_memory
from trainers.config import TrainConfig
from trainers.train import train

DEVICES = ("cpu", "cuda")
DATASETS = ("digits", "cifar10", "cifar100")
# CPU: a model that trains and is measured in a few minutes on 2 cores. CUDA: the issue's
# NiN-192 depth 3 on CIFAR-10 (or on the offline digits tiled to CIFAR size, --repeat 35).
CPU_DEFAULTS = {"width": 16, "dataset": "digits", "epochs": 10}
CUDA_DEFAULTS = {"width": 192, "dataset": "cifar10", "epochs": 10}
DEFAULT_DEPTH = 3
# The demo's recipe (SGD, lr 0.05, divided by 10 after three quarters of the epochs): NiN on
# digits reaches a low train loss in 10 epochs, so the timed measures see a trained model
# (the prunability of an untrained one is trivially 0).
DEFAULT_LR = 0.05
EARLY_EPOCH = 1
DEFAULT_RUNS = 3
# "kept": glibc's thresholds fixed as in the job's workers (trainers.allocator); "glibc": its
# defaults, as before that module.
ALLOCATORS = ("kept", "glibc")


class BenchError(ValueError):
    """A bad benchmark argument; the message names it and what is allowed (one line)."""


@dataclass(frozen=True)
class Settings:
    """What is trained, where, and which families are timed with which settings."""

    model: str = "nin"
    width: int = CPU_DEFAULTS["width"]
    depth: int = DEFAULT_DEPTH
    dataset: str = CPU_DEFAULTS["dataset"]
    epochs: int = CPU_DEFAULTS["epochs"]
    batch_size: int = 128
    lr: float = DEFAULT_LR
    device: str = "cpu"
    data_root: Optional[str] = None
    train_size: Optional[int] = None
    repeat: int = 1
    runs: int = DEFAULT_RUNS
    seed: int = 0
    families: Tuple[str, ...] = ()  # empty: every registered family
    overrides: Tuple[Tuple[str, str, Any], ...] = ()  # (family, setting, value)
    compare: Tuple[Tuple[str, str, Any], ...] = ()  # settings each named family is timed with again
    allocator: str = "kept"

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            dataset=self.dataset, train_size=self.train_size, model=self.model, width=self.width,
            depth=self.depth, batch_size=self.batch_size, epochs=self.epochs, lr=self.lr, seed=self.seed,
            lr_schedule="step", lr_milestones=tuple(m for m in (max(1, self.epochs * 3 // 4),) if m < self.epochs), lr_decay_factor=0.1,
            checkpoint_epochs=(EARLY_EPOCH,),
        )

    def family_names(self) -> List[str]:
        return list(self.families) or registry.names()

    def family_settings(self) -> Dict[str, Dict[str, Any]]:
        """The settings each family runs with: its registry defaults updated with ``overrides``
        (an unknown family or setting is a one-line error)."""
        overrides = self._grouped(self.overrides, "--set")
        return {name: registry.settings_for(name, overrides.get(name)) for name in self.family_names()}

    def compared_settings(self) -> Dict[str, Dict[str, Any]]:
        """The second settings of each family named by ``compare``: its settings updated
        with those values."""
        compare = self._grouped(self.compare, "--compare")
        timed = self.family_settings()
        return {name: registry.settings_for(name, {**timed[name], **values}) for name, values in compare.items()}

    def _grouped(self, triples, flag: str) -> Dict[str, Dict[str, Any]]:
        grouped: Dict[str, Dict[str, Any]] = {}
        for family, key, value in triples:
            grouped.setdefault(family, {})[key] = value
        for family in grouped:
            if family not in self.family_names():
                raise BenchError(f"{flag} {family}.*: family not timed, timed: {', '.join(self.family_names())}")
        return grouped


@dataclass(frozen=True)
class Timing:
    """One family's seconds, its values (scalar measures) and, if it failed, why."""

    family: str
    seconds: float
    values: Dict[str, float] = field(default_factory=dict)
    error: Optional[str] = None


@dataclass(frozen=True)
class Result:
    """Everything the report prints; ``compared``: the families timed again with ``--compare``."""

    setup: Dict[str, float]  # training, context building
    baseline_runs: Tuple[float, ...]
    timings: Tuple[Timing, ...]
    train_loss: float
    train_images: int
    compared: Tuple[Timing, ...] = ()
    # Of the whole process while the families ran: seconds in the kernel, and the pages it had
    # to fault in (memory handed back to the operating system and asked for again).
    system_seconds: float = 0.0
    page_faults: int = 0
    allocator: str = "glibc defaults"

    @property
    def baseline(self) -> float:
        return min(self.baseline_runs)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> Tuple[Any, float]:
    """``(fn(), seconds)``, the device synchronized on both sides of the interval."""
    synchronize(device)
    started = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - started


def trained_context(settings: Settings, workdir: Path, log: Callable[[str], None]) -> Tuple[TrialContext, Dict[str, float]]:
    """Train the model into ``workdir`` and load it back as the job's ``TrialContext``."""
    device = torch.device(settings.device)
    config = settings.train_config()
    dataset = data.load(settings.dataset, settings.data_root, train_size=settings.train_size,
                        seed=settings.seed).tiled(settings.repeat)
    log(f"training {config.trial_id}: {settings.epochs} epochs over {dataset.train_images.shape[0]:,} images")
    result, train_seconds = timed(lambda: train(config, run_dir=workdir, device=device, dataset=dataset, log=log), device)
    if result.status != "completed":
        raise BenchError(f"--epochs: training diverged at epoch {len(result.records)}; try fewer epochs or another seed")

    def load_context() -> TrialContext:
        return trial_context(
            config, dataset, device=device,
            final_state=checkpoint.load(workdir / checkpoint.FINAL, map_location=device),
            init_state=checkpoint.load(workdir / checkpoint.INIT, map_location=device),
            early_state=checkpoint.load(workdir / checkpoint.early_name(EARLY_EPOCH), map_location=device),
            early_epoch=EARLY_EPOCH,
            epochs=result.records,
        )

    ctx, context_seconds = timed(load_context, device)
    return ctx, {"train": train_seconds, "context": context_seconds}


def run_benchmark(settings: Settings, log: Callable[[str], None] = lambda line: None) -> Result:
    """Train, then time the baseline and every requested family (see the module docstring)."""
    validate(settings)
    family_settings = settings.family_settings()
    device = torch.device(settings.device)
    allocator = "glibc defaults"
    if settings.allocator == "kept":
        allocator = "thresholds fixed (trainers.allocator)" if keep_freed_memory() else "unchanged (not glibc, or MALLOC_* set)"
    with tempfile.TemporaryDirectory(prefix="genzoo-measure-bench-") as workdir:
        ctx, setup = trained_context(settings, Path(workdir), log)
    evaluate(ctx.model, ctx.train_x, ctx.train_y)  # warm-up: cuDNN algorithm choice, allocator
    baseline_runs = []
    for _ in range(settings.runs):
        (train_loss, _), seconds = timed(lambda: evaluate(ctx.model, ctx.train_x, ctx.train_y), device)
        baseline_runs.append(seconds)
    log(f"baseline (one train-loss evaluation over {len(ctx.train_y):,} images): {min(baseline_runs):.3f} s")

    timings = []
    names = list(family_settings)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for index, name in enumerate(names, 1):
        timing = _time_family(ctx, name, family_settings[name], device)
        timings.append(timing)
        log(f"[{index}/{len(names)}] {name}: "
            + (f"{timing.seconds:.2f} s" if timing.error is None else f"error: {timing.error}"))
    compared = []
    for name, second in settings.compared_settings().items():
        compared.append(_time_family(ctx, name, second, device))
        log(f"{name} with --compare settings: " + (f"{compared[-1].seconds:.2f} s" if compared[-1].error is None
                                                   else f"error: {compared[-1].error}"))
    after = resource.getrusage(resource.RUSAGE_SELF)
    return Result(setup, tuple(baseline_runs), tuple(timings), train_loss, len(ctx.train_y), tuple(compared),
                  system_seconds=after.ru_stime - usage.ru_stime, page_faults=after.ru_minflt - usage.ru_minflt,
                  allocator=allocator)


def _time_family(ctx: TrialContext, name: str, family_settings: Dict[str, Any], device: torch.device) -> Timing:
    try:
        output, seconds = timed(lambda: registry.get(name).fn(ctx, **family_settings), device)
        return Timing(name, seconds, {k: float(v) for k, v in output.values.items()})
    except Exception as exc:  # report it and go on, as the job does
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return Timing(name, math.nan, error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])


# --------------------------------------------------------------------------- report


def describe(settings: Settings) -> str:
    if settings.device == "cuda":
        # The measures run in fp32; PyTorch lets cuDNN convolutions use TF32 by default.
        where = (f"{torch.cuda.get_device_name(0)}, TF32 convolutions {torch.backends.cudnn.allow_tf32}, "
                 f"TF32 matmuls {torch.backends.cuda.matmul.allow_tf32}")
    else:
        where = f"CPU, {torch.get_num_threads()} torch threads"
    return (f"{settings.model} width {settings.width} depth {settings.depth} on {settings.dataset} "
            f"(train_size {settings.train_size or 'all'}, x{settings.repeat}), {settings.epochs} epochs, "
            f"device {settings.device} ({where}), torch {torch.__version__}")


def headline(timing: Timing, limit: int = 3) -> str:
    """The first few values of a family, for a glance at whether they are sane."""
    shown = [f"{name}={value:.4g}" for name, value in list(timing.values.items())[:limit]]
    more = len(timing.values) - limit
    return ", ".join(shown) + (f", ... (+{more})" if more > 0 else "")


def format_report(result: Result) -> str:
    """A Markdown table: seconds per family and seconds / baseline, then the totals."""
    lines = [
        f"training: {result.setup['train']:.1f} s; loading data and checkpoints: {result.setup['context']:.2f} s",
        f"baseline: one train-loss evaluation over {result.train_images:,} images = {result.baseline:.3f} s "
        f"(best of {len(result.baseline_runs)}: {', '.join(f'{s:.3f}' for s in result.baseline_runs)}); "
        f"train loss {result.train_loss:.4f}",
        "",
        "| family | seconds | seconds / baseline | values |",
        "|---|---:|---:|---|",
    ]
    for timing in result.timings:
        if timing.error is not None:
            lines.append(f"| {timing.family} | error | | {timing.error} |")
        else:
            lines.append(f"| {timing.family} | {timing.seconds:.2f} | {timing.seconds / result.baseline:.1f} "
                         f"| {headline(timing)} |")
    done = [t.seconds for t in result.timings if t.error is None]
    total = sum(done)
    lines.append(f"| **all {len(done)} families** | **{total:.2f}** | **{total / result.baseline:.1f}** | |")
    failed = [t.family for t in result.timings if t.error is not None]
    if failed:
        lines.append(f"failed: {', '.join(failed)}")
    lines.append(f"while the families ran: {result.system_seconds:.1f} s in the kernel, {result.page_faults:,} page faults "
                 f"(allocator: {result.allocator})")
    if result.compared:
        lines += ["", format_comparison(result)]
    return "\n".join(lines)


def format_comparison(result: Result) -> str:
    """The families timed twice in this process: with the ``--compare`` settings and with the
    settings of the table above, their ratio, and the total of every family with each (a
    family not compared counts its one time on both sides)."""
    default = {t.family: t for t in result.timings}
    lines = ["| family | --compare s | timed s | --compare / timed | values with --compare |",
             "|---|---:|---:|---:|---|"]
    for timing in result.compared:
        mine = default[timing.family]
        if timing.error is not None or mine.error is not None:
            lines.append(f"| {timing.family} | {timing.error or f'{timing.seconds:.2f}'} | "
                         f"{mine.error or f'{mine.seconds:.2f}'} | | |")
            continue
        lines.append(f"| {timing.family} | {timing.seconds:.2f} | {mine.seconds:.2f} | "
                     f"{timing.seconds / mine.seconds:.2f}× | {headline(timing)} |")
    ok = [t for t in result.timings if t.error is None]
    swapped = {t.family: t for t in result.compared if t.error is None}
    timed_total = sum(t.seconds for t in ok)
    compare_total = sum(swapped.get(t.family, t).seconds for t in ok)
    lines.append(f"| **all {len(ok)} families** | **{compare_total:.2f}** | **{timed_total:.2f}** | "
                 f"**{compare_total / timed_total:.2f}×** | |")
    return "\n".join(lines)


def to_json(settings: Settings, result: Result) -> Dict[str, Any]:
    return {
        "settings": {**settings.__dict__, "families": settings.family_names(),
                     "overrides": [list(o) for o in settings.overrides]},
        "device": describe(settings),
        "setup_seconds": result.setup,
        "baseline_seconds": list(result.baseline_runs),
        "train_loss": result.train_loss,
        "system_seconds": result.system_seconds,
        "page_faults": result.page_faults,
        "allocator": result.allocator,
        "families": [
            {"family": t.family, "seconds": None if t.error else t.seconds, "error": t.error, "values": t.values}
            for t in result.timings
        ],
        "compared": [
            {"family": t.family, "seconds": None if t.error else t.seconds, "error": t.error, "values": t.values,
             "settings": dict(settings.compared_settings()[t.family])}
            for t in result.compared
        ],
    }


# --------------------------------------------------------------------------- command line


def parse_override(text: str) -> Tuple[str, str, Any]:
    """``family.key=value`` with a JSON value (``20``, ``"scan"``, ``[1.0, 0.5]``), or the
    bare text when it is not JSON (``--set flatness.method=power``)."""
    name, sep, raw = text.partition("=")
    family, dot, key = name.partition(".")
    if not sep or not dot or not family or not key:
        raise BenchError(f"--set: got {text!r}, allowed: FAMILY.SETTING=VALUE, e.g. flatness.top_k=20")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return family, key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="measure_seconds",
        description="Seconds of every measure family on one trained model, against one train-loss evaluation.",
    )
    parser.add_argument("--model", default="nin")
    parser.add_argument("--width", type=int, help="default: 16 on cpu, 192 on cuda")
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH)
    parser.add_argument("--dataset", choices=DATASETS, help="default: digits on cpu, cifar10 on cuda")
    parser.add_argument("--epochs", type=int, help="training epochs before timing (default: 10)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="training learning rate (SGD, momentum 0.9)")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--data-root", help="dataset folder (default: $GENZOO_DATA, else ~/.cache/genzoo)")
    parser.add_argument("--train-size", type=int, help="a seeded subset of the training split (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="tile the training split this many times")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed baseline evaluations; the best is used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measures", help="comma-separated families to time (default: all of the registry)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FAMILY.SETTING=VALUE",
                        help="override one setting of one family (repeatable)")
    parser.add_argument("--compare", dest="compare", action="append", default=[], metavar="FAMILY.SETTING=VALUE",
                        help="time the family again, in this process, with this setting changed (repeatable; "
                             "e.g. the settings before a change), and print both and their ratio")
    parser.add_argument("--allocator", choices=ALLOCATORS, default="kept",
                        help="kept: fix glibc's mmap and trim thresholds as the job's workers do "
                             "(trainers.allocator; default); glibc: leave its defaults")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    defaults = CUDA_DEFAULTS if args.device == "cuda" else CPU_DEFAULTS
    families = tuple(name.strip() for name in (args.measures or "").split(",") if name.strip())
    return Settings(
        model=args.model,
        width=args.width if args.width is not None else defaults["width"],
        depth=args.depth,
        dataset=args.dataset or defaults["dataset"],
        epochs=args.epochs if args.epochs is not None else defaults["epochs"],
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        data_root=args.data_root,
        train_size=args.train_size,
        repeat=args.repeat,
        runs=args.runs,
        seed=args.seed,
        families=families,
        overrides=tuple(parse_override(text) for text in args.overrides),
        compare=tuple(parse_override(text) for text in args.compare),
        allocator=args.allocator,
    )


def validate(settings: Settings) -> None:
    positive = {"width": settings.width, "depth": settings.depth, "epochs": settings.epochs,
                "batch_size": settings.batch_size, "repeat": settings.repeat, "runs": settings.runs}
    for name, value in positive.items():
        if value < 1:
            raise BenchError(f"--{name.replace('_', '-')}: got {value}, allowed: an integer >= 1")
    for name in settings.families:
        if name not in registry.FAMILIES:
            raise BenchError(f"--measures: unknown family {name!r}, allowed: {', '.join(registry.names())}")
    if not settings.lr > 0:
        raise BenchError(f"--lr: got {settings.lr}, allowed: a number > 0")
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device: got cuda, but torch sees no CUDA device; allowed here: cpu")
    settings.family_settings()
    settings.compared_settings()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, train, time every family and print the table (exit 2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        validate(settings)
        print(describe(settings), flush=True)
        result = run_benchmark(settings, log=lambda line: print(line, flush=True))
    except ValueError as exc:  # BenchError and genzoo's own one-line errors (dataset, model, measures)
        print(f"measure_seconds: error: {exc}", file=sys.stderr)
        return 2
    print(format_report(result), flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(to_json(settings, result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput: genzoo's loop against a plain torchvision ``DataLoader`` baseline.

Both sides train the same model (a fresh one per run, built from the same seed by
``trainers.train.build_model``) with the same optimizer (``trainers.train.make_optimizer``:
SGD, lr 0.01, momentum 0.9 by ``TrainConfig``'s defaults), the same batch size and the same
augmentation (random 32×32 crop of the image zero-padded by 4 pixels, horizontal flip with
probability 0.5, per-channel normalization) for the same number of epochs over the same
images, in one process, and each reports training images per second.

- genzoo: ``trainers.train.train`` with the dataset held as uint8 on the device and augmented
  there per batch (``trainers.data.DeviceLoader``, the airbench recipe: Jordan, *94% on
  CIFAR-10 in 3.29 seconds on a single GPU*, 2024). Its time is the loop's own per-epoch
  ``images_per_second`` (the step loop only, ended by ``torch.cuda.synchronize`` on CUDA;
  the evaluation after each epoch is not timed). On CUDA the loop uses channels_last and
  bf16 autocast, its defaults.
- baseline: the torchvision CIFAR-10 recipe: a map-style dataset that turns each uint8 image
  into a PIL image (as ``torchvision.datasets.CIFAR10`` does), ``transforms.RandomCrop(32,
  padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize(mean, std)``, a
  ``DataLoader`` with ``num_workers`` workers (persistent, so worker start-up is never timed),
  ``pin_memory`` and non-blocking copies on CUDA, the model in train mode, fp32 unless
  ``--baseline-amp``. Like genzoo's loop it never reads the loss back per step, so the
  baseline is not slowed by host synchronizations a typical script would add.

Whole epochs: a zoo pays for the evaluation after each epoch too. After the comparison,
genzoo trains the same config for ``cadence_epochs`` epochs twice, with full train and test
evaluation after every epoch (the default, and the only cadence before ``eval_every``
existed; in bf16 on CUDA now, in fp32 before) and with ``eval_every`` / ``eval_train_subset``
(the last epoch always on the full sets; neither setting changes the trial id or the
weights), and reports each run's mean whole-epoch seconds (every record's ``seconds``:
training and evaluation) and their ratio. ``--cadence-epochs 0`` skips it.

Timing: each side first trains ``warmup_steps`` untimed steps (CUDA context, cuDNN/cuBLAS
handles, allocator, DataLoader workers), then trains ``runs`` timed runs (default 2) with a
fresh model each; runs of the two sides alternate so that drift on a shared machine hits both,
and the better run of each side is reported. Every timed interval starts and ends with
``torch.cuda.synchronize()`` on CUDA.

    python bench/train_throughput.py                      # CPU: digits, NiN width 16
    python bench/train_throughput.py --device cuda        # NiN-192, depth 3, CIFAR-10
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainers import data
from trainers.allocator import keep_freed_memory
from trainers.config import TrainConfig
from trainers.train import build_model, make_optimizer, train

DEVICES = ("cpu", "cuda")
DATASETS = ("digits", "cifar10")
CROP_SIZE = 32
CROP_PADDING = data.AUGMENT_PADDING  # 4, the same padding as genzoo's crop
# Defaults per device: a CPU run that finishes in well under a minute on 2 shared cores, and
# on CUDA the DEMOGEN Network-in-Network (width 192, depth 3) on CIFAR-10.
# Baseline workers: 2 on CPU (both cores), 8 on CUDA (a typical GPU box has 8 or more cores
# per GPU); capped at the machine's CPU count.
# The cadence compared with full evaluation: every 3rd epoch, per-epoch train metrics on a
# seeded subset of about a tenth of the training set.
CPU_DEFAULTS = {"width": 16, "dataset": "digits", "num_workers": 2, "warmup_steps": 2,
                "cadence_epochs": 6, "eval_every": 3, "eval_train_subset": 150}
CUDA_DEFAULTS = {"width": 192, "dataset": "cifar10", "num_workers": 8, "warmup_steps": 10,
                 "cadence_epochs": 6, "eval_every": 3, "eval_train_subset": 5000}
DEFAULT_DEPTH = 3
DEFAULT_RUNS = 2


class BenchError(ValueError):
    """A bad benchmark argument; the message names it and what is allowed (one line)."""


@dataclass(frozen=True)
class Settings:
    """One benchmark: what is trained, where, and how it is timed."""

    model: str = "nin"
    width: int = CPU_DEFAULTS["width"]
    depth: int = DEFAULT_DEPTH
    dataset: str = CPU_DEFAULTS["dataset"]
    batch_size: int = 128
    epochs: int = 1
    device: str = "cpu"
    warmup_steps: int = CPU_DEFAULTS["warmup_steps"]
    num_workers: int = CPU_DEFAULTS["num_workers"]
    data_root: Optional[str] = None
    train_size: Optional[int] = None
    repeat: int = 1
    runs: int = DEFAULT_RUNS
    seed: int = 0
    baseline_amp: bool = False
    data_only: bool = False
    cadence_epochs: int = CPU_DEFAULTS["cadence_epochs"]
    eval_every: int = CPU_DEFAULTS["eval_every"]
    eval_train_subset: Optional[int] = CPU_DEFAULTS["eval_train_subset"]

    def train_config(self) -> TrainConfig:
        """The TrainConfig both sides train (``TrainConfig`` defaults for everything else)."""
        return TrainConfig(
            dataset=self.dataset, model=self.model, width=self.width, depth=self.depth,
            batch_size=self.batch_size, epochs=self.epochs, augment=True, seed=self.seed,
        )


@dataclass(frozen=True)
class SideResult:
    """Images per second of every timed run of one side; ``images`` is one run's count."""

    name: str
    images: int
    runs: Tuple[float, ...]

    @property
    def best(self) -> float:
        return max(self.runs)


# --------------------------------------------------------------------------- data


def load_dataset(settings: Settings) -> data.Dataset:
    """``trainers.data.load`` (seeded ``train_size`` subset), the training split tiled
    ``repeat`` times (a CIFAR-sized epoch from the offline digits), the test split cut to one
    batch: only the untimed evaluation after each of genzoo's epochs reads it."""
    dataset = data.load(settings.dataset, settings.data_root, train_size=settings.train_size,
                        seed=settings.seed).tiled(settings.repeat)
    return dataclasses.replace(
        dataset,
        test_images=dataset.test_images[:settings.batch_size],
        test_labels=dataset.test_labels[:settings.batch_size],
    )


def head(dataset: data.Dataset, count: int) -> data.Dataset:
    """The first ``count`` training images of ``dataset`` (the warm-up's data)."""
    return dataclasses.replace(
        dataset,
        train_images=dataset.train_images[:count], train_labels=dataset.train_labels[:count],
        clean_train_labels=dataset.clean_train_labels[:count], noisy=dataset.noisy[:count],
    )


class PILImages(torch.utils.data.Dataset):
    """uint8 images served as PIL images through ``transform``, the way
    ``torchvision.datasets.CIFAR10`` serves CIFAR: HWC uint8 arrays, ``Image.fromarray`` per
    item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())  # N×H×W×C
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def baseline_transform(mean: Sequence[float], std: Sequence[float]) -> Callable:
    """torchvision's CIFAR training transform: RandomCrop(32, padding=4) (zero fill),
    RandomHorizontalFlip(p=0.5), ToTensor() (scales to [0, 1]), Normalize(mean, std)."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.RandomCrop(CROP_SIZE, padding=CROP_PADDING),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def baseline_loader(dataset: data.Dataset, settings: Settings, device: torch.device) -> torch.utils.data.DataLoader:
    """A shuffling DataLoader over :class:`PILImages`; workers persist across epochs so that
    their start-up falls into the warm-up, not into the timed runs."""
    images = PILImages(dataset.train_images, dataset.train_labels,
                       baseline_transform(dataset.mean, dataset.std))
    workers = settings.num_workers
    return torch.utils.data.DataLoader(
        images, batch_size=settings.batch_size, shuffle=True, drop_last=False,
        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(settings.seed),
    )


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def genzoo_run(config: TrainConfig, dataset: data.Dataset, device: torch.device) -> float:
    """Images per second of one ``trainers.train.train`` call: all images of all epochs over
    the sum of the loop's own per-epoch training times (evaluation excluded)."""
    records = train(config, device=device, dataset=dataset).records
    seen = dataset.train_images.shape[0]
    seconds = sum(seen / record["images_per_second"] for record in records)
    return seen * len(records) / seconds


def baseline_steps(model: nn.Module, optimizer: torch.optim.Optimizer, loader, device: torch.device,
                   autocast, channels_last: bool, limit: Optional[int] = None) -> int:
    """One pass over ``loader`` (at most ``limit`` batches) of forward, cross-entropy,
    backward and an optimizer step; returns the number of images trained on."""
    model.train()
    seen = 0
    for step, (x, y) in enumerate(loader):
        if limit is not None and step >= limit:
            break
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen


def baseline_run(config: TrainConfig, num_classes: int, loader, device: torch.device, amp: bool,
                 limit: Optional[int] = None) -> Tuple[int, float]:
    """``(images, seconds)`` of ``config.epochs`` baseline epochs with a fresh model seeded by
    ``config.seed``; the learning rate of each epoch is ``config.lr_at(epoch)`` as in genzoo."""
    torch.manual_seed(config.seed)
    model = build_model(config, num_classes).to(device)
    channels_last = amp and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if amp and device.type == "cuda" else contextlib.nullcontext())
    optimizer = make_optimizer(config, model)
    seen, seconds = 0, 0.0
    for epoch in range(config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(epoch)
        synchronize(device)
        started = time.perf_counter()
        seen += baseline_steps(model, optimizer, loader, device, autocast, channels_last, limit)
        synchronize(device)
        seconds += time.perf_counter() - started
    return seen, seconds


def genzoo_data_run(loader: data.DeviceLoader, epochs: int, device: torch.device,
                    limit: Optional[int] = None) -> Tuple[int, float]:
    """``(images, seconds)`` of drawing every augmented, normalized batch of ``epochs`` epochs
    from genzoo's on-device loader, without a model."""
    seen, seconds = 0, 0.0
    for epoch in range(epochs):
        synchronize(device)
        started = time.perf_counter()
        for step, (x, y) in enumerate(loader.batches(epoch)):
            if limit is not None and step >= limit:
                break
            seen += len(y)
        synchronize(device)
        seconds += time.perf_counter() - started
    return seen, seconds


def baseline_data_run(loader, epochs: int, device: torch.device, limit: Optional[int] = None) -> Tuple[int, float]:
    """``(images, seconds)`` of drawing every batch of ``epochs`` epochs from the baseline
    DataLoader and copying it to ``device``, without a model."""
    seen, seconds = 0, 0.0
    for _ in range(epochs):
        synchronize(device)
        started = time.perf_counter()
        for step, (x, y) in enumerate(loader):
            if limit is not None and step >= limit:
                break
            x.to(device, non_blocking=True)
            seen += len(y.to(device, non_blocking=True))
        synchronize(device)
        seconds += time.perf_counter() - started
    return seen, seconds


def run_benchmark(settings: Settings, log: Callable[[str], None] = lambda line: None) -> Tuple[SideResult, SideResult]:
    """Warm both sides up, then alternate ``settings.runs`` timed runs of genzoo and of the
    baseline; returns ``(genzoo, baseline)``. With ``data_only`` the sides only draw batches
    (genzoo: :func:`genzoo_data_run`, baseline: :func:`baseline_data_run`)."""
    validate(settings)
    device = torch.device(settings.device)
    config = settings.train_config()
    dataset = load_dataset(settings)
    images = dataset.train_images.shape[0] * settings.epochs
    loader = baseline_loader(dataset, settings, device)
    if settings.data_only:
        return _data_only(settings, dataset, loader, device, images, log)

    if settings.warmup_steps > 0:
        log(f"warm-up: {settings.warmup_steps} steps per side")
        warm = head(dataset, min(settings.warmup_steps * settings.batch_size, dataset.train_images.shape[0]))
        train(dataclasses.replace(config, epochs=1), device=device, dataset=warm)
        baseline_run(dataclasses.replace(config, epochs=1), dataset.num_classes, loader, device,
                     settings.baseline_amp, limit=settings.warmup_steps)

    genzoo_runs: List[float] = []
    baseline_runs: List[float] = []
    for run in range(settings.runs):
        genzoo_runs.append(genzoo_run(config, dataset, device))
        seen, seconds = baseline_run(config, dataset.num_classes, loader, device, settings.baseline_amp)
        if seen != images:
            raise AssertionError(f"baseline trained {seen} images, genzoo {images}")
        baseline_runs.append(seen / seconds)
        log(f"run {run + 1}/{settings.runs}: genzoo {genzoo_runs[-1]:.1f} img/s, "
            f"baseline {baseline_runs[-1]:.1f} img/s")
    return SideResult("genzoo", images, tuple(genzoo_runs)), SideResult("baseline", images, tuple(baseline_runs))


def _data_only(settings: Settings, dataset: data.Dataset, loader, device: torch.device, images: int,
               log: Callable[[str], None]) -> Tuple[SideResult, SideResult]:
    on_device = data.DeviceLoader(
        dataset.train_images, dataset.train_labels, batch_size=settings.batch_size, mean=dataset.mean,
        std=dataset.std, augment=True, shuffle=True, seed=settings.seed, device=device,
    )
    if settings.warmup_steps > 0:
        genzoo_data_run(on_device, 1, device, limit=settings.warmup_steps)
        baseline_data_run(loader, 1, device, limit=settings.warmup_steps)
    sides: Tuple[List[float], List[float]] = ([], [])
    for run in range(settings.runs):
        for runs, (seen, seconds) in zip(sides, (genzoo_data_run(on_device, settings.epochs, device),
                                                 baseline_data_run(loader, settings.epochs, device))):
            if seen != images:
                raise AssertionError(f"a loader gave {seen} images, expected {images}")
            runs.append(seen / seconds)
        log(f"run {run + 1}/{settings.runs}: genzoo {sides[0][-1]:.1f} img/s, baseline {sides[1][-1]:.1f} img/s")
    return SideResult("genzoo", images, tuple(sides[0])), SideResult("baseline", images, tuple(sides[1]))


@dataclass(frozen=True)
class CadenceResult:
    """Mean whole-epoch seconds (training and evaluation) of genzoo with full evaluation
    after every epoch and with the cheaper cadence, over ``epochs`` epochs of ``images``."""

    epochs: int
    images: int
    full_seconds: float
    cadence_seconds: float


def epoch_seconds(config: TrainConfig, dataset: data.Dataset, device: torch.device) -> float:
    """Mean whole-epoch seconds (each record's ``seconds``: training and evaluation) of every
    epoch but the first (start-up: allocations, cuDNN's algorithm search), when there are more."""
    records = train(config, device=device, dataset=dataset).records
    timed = records[1:] if len(records) > 1 else records
    return sum(r["seconds"] for r in timed) / len(timed)


def run_cadence(settings: Settings) -> CadenceResult:
    """:attr:`Settings.cadence_epochs` epochs with full evaluation, then with the cadence."""
    device = torch.device(settings.device)
    dataset = load_dataset(settings)
    full = dataclasses.replace(settings.train_config(), epochs=settings.cadence_epochs)
    cheap = dataclasses.replace(full, eval_every=settings.eval_every, eval_train_subset=settings.eval_train_subset)
    return CadenceResult(settings.cadence_epochs, dataset.train_images.shape[0],
                         epoch_seconds(full, dataset, device), epoch_seconds(cheap, dataset, device))


# --------------------------------------------------------------------------- report


def describe(settings: Settings) -> str:
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(0) if settings.device == "cuda" else f"CPU, {threads} torch threads"
    return (
        f"{settings.model} width {settings.width} depth {settings.depth} on {settings.dataset} "
        f"(train_size {settings.train_size or 'all'}, x{settings.repeat}), batch {settings.batch_size}, "
        f"{settings.epochs} epoch(s), device {settings.device} ({name}), "
        f"baseline num_workers {settings.num_workers}, baseline precision "
        f"{'bf16 autocast + channels_last' if settings.baseline_amp and settings.device == 'cuda' else 'fp32'}, "
        f"warm-up {settings.warmup_steps} steps"
        + (", data only (no model)" if settings.data_only else "")
    )


def format_report(genzoo: SideResult, baseline: SideResult) -> str:
    """Both throughputs (the better of the runs, as stated in the output) and their ratio."""
    def line(side: SideResult) -> str:
        runs = ", ".join(f"{r:.1f}" for r in side.runs)
        return f"{side.name + ':':<10} {side.best:12.1f} images/s  (best of {len(side.runs)} runs: {runs})"

    return "\n".join([
        f"images per timed run: {genzoo.images}",
        line(genzoo),
        line(baseline),
        f"ratio genzoo/baseline: {genzoo.best / baseline.best:.2f}x",
    ])


def format_cadence(result: CadenceResult, settings: Settings) -> str:
    """The whole-epoch times of both cadences, their throughputs and ratio."""
    def line(name: str, seconds: float) -> str:
        return f"{name:<44} {seconds:9.4f} s per epoch  ({result.images / seconds:10.1f} images/s, whole epoch)"

    return "\n".join([
        f"whole epochs (training + evaluation), mean of epochs 2 to {result.epochs}:",
        line("full evaluation every epoch:", result.full_seconds),
        line(f"eval_every {settings.eval_every}, train subset {settings.eval_train_subset}:", result.cadence_seconds),
        f"ratio full/cadence: {result.full_seconds / result.cadence_seconds:.2f}x",
    ])


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_throughput",
        description="Training images/s of genzoo's loop and of a torchvision DataLoader baseline.",
    )
    parser.add_argument("--model", default="nin")
    parser.add_argument("--width", type=int, help="default: 32 on cpu, 192 on cuda")
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH)
    parser.add_argument("--dataset", choices=DATASETS, help="default: digits on cpu, cifar10 on cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps per side first (default: 2 on cpu, 10 on cuda)")
    parser.add_argument("--num-workers", type=int,
                        help="baseline DataLoader workers (default: 2 on cpu, 8 on cuda, at most the CPU count)")
    parser.add_argument("--data-root", help="dataset folder (default: $GENZOO_DATA, else ~/.cache/genzoo)")
    parser.add_argument("--train-size", type=int, help="a seeded subset of the training split (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="tile the training split this many times")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs per side; the best is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-amp", action="store_true",
                        help="on cuda, give the baseline genzoo's bf16 autocast and channels_last")
    parser.add_argument("--data-only", action="store_true",
                        help="time only the data pipelines (augmented batches on the device), no model")
    parser.add_argument("--cadence-epochs", type=int,
                        help="epochs of the whole-epoch cadence comparison (default 6; 0 skips it)")
    parser.add_argument("--eval-every", type=int, help="the cadence compared with full evaluation (default 3)")
    parser.add_argument("--eval-train-subset", type=int,
                        help="per-epoch train metrics on this many examples (default: 150 on cpu, 5000 on cuda)")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    defaults = CUDA_DEFAULTS if args.device == "cuda" else CPU_DEFAULTS
    return Settings(
        model=args.model,
        width=args.width if args.width is not None else defaults["width"],
        depth=args.depth,
        dataset=args.dataset or defaults["dataset"],
        batch_size=args.batch_size,
        epochs=args.epochs,
        device=args.device,
        warmup_steps=args.warmup_steps if args.warmup_steps is not None else defaults["warmup_steps"],
        num_workers=args.num_workers if args.num_workers is not None else min(defaults["num_workers"], os.cpu_count() or 1),
        data_root=args.data_root,
        train_size=args.train_size,
        repeat=args.repeat,
        runs=args.runs,
        seed=args.seed,
        baseline_amp=args.baseline_amp,
        data_only=args.data_only,
        cadence_epochs=args.cadence_epochs if args.cadence_epochs is not None else defaults["cadence_epochs"],
        eval_every=args.eval_every if args.eval_every is not None else defaults["eval_every"],
        eval_train_subset=(args.eval_train_subset if args.eval_train_subset is not None
                           else defaults["eval_train_subset"]),
    )


def validate(settings: Settings) -> None:
    positive = {"width": settings.width, "depth": settings.depth, "batch_size": settings.batch_size,
                "epochs": settings.epochs, "repeat": settings.repeat, "runs": settings.runs}
    for name, value in positive.items():
        if value < 1:
            raise BenchError(f"--{name.replace('_', '-')}: got {value}, allowed: an integer >= 1")
    for name, value in {"eval_every": settings.eval_every, "eval_train_subset": settings.eval_train_subset}.items():
        if value < 1:
            raise BenchError(f"--{name.replace('_', '-')}: got {value}, allowed: an integer >= 1")
    for name, value in {"warmup_steps": settings.warmup_steps, "num_workers": settings.num_workers,
                        "cadence_epochs": settings.cadence_epochs}.items():
        if value < 0:
            raise BenchError(f"--{name.replace('_', '-')}: got {value}, allowed: an integer >= 0")
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device: got cuda, but torch sees no CUDA device; allowed here: cpu")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, run the benchmark and print both throughputs and their ratio."""
    settings = settings_from_args(build_parser().parse_args(argv))
    keep_freed_memory()  # as the sweep's trial workers do
    try:
        validate(settings)
        print(describe(settings), flush=True)
        genzoo, baseline = run_benchmark(settings, log=lambda line: print(line, flush=True))
        print(format_report(genzoo, baseline), flush=True)
        if settings.cadence_epochs > 0 and not settings.data_only:
            print(format_cadence(run_cadence(settings), settings), flush=True)
    except ValueError as exc:  # BenchError and genzoo's own one-line errors (dataset, model, config)
        print(f"train_throughput: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

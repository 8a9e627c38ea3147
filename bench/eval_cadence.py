"""Whole-epoch time (training and the per-epoch evaluation) with full evaluation after every
epoch against a cheaper evaluation cadence, in one process.

Both runs train the same config on the same data with ``trainers.train.train``; only
``eval_every`` and ``eval_train_subset`` differ (they are not part of the trial id and do not
change the weights). Each record's ``seconds`` covers the epoch's training and its evaluation,
so the mean over the epochs is what a zoo pays per epoch. The epochs after which a model is
taken (the last one) are evaluated on the full sets in both runs.

    .venv/bin/python bench/eval_cadence.py                       # digits, NiN-16 depth 3, 6 epochs
    .venv/bin/python bench/eval_cadence.py --eval-every 5 --eval-train-subset 1000 --epochs 10
    .venv/bin/python bench/eval_cadence.py --device cuda --dataset digits --repeat 35 --width 192
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Optional, Sequence

import torch

from trainers import data
from trainers.config import TrainConfig
from trainers.train import train


def epoch_seconds(config: TrainConfig, dataset: data.Dataset, device: str) -> float:
    """Mean whole-epoch seconds (training and evaluation) of one run of ``config``."""
    records = train(config, device=device, dataset=dataset).records
    return sum(r["seconds"] for r in records) / len(records)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eval_cadence", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nin")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root")
    parser.add_argument("--repeat", type=int, default=1, help="tile the training split this many times")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--eval-train-subset", type=int, default=500)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("eval_cadence: error: --device: got cuda, but torch sees no CUDA device; allowed here: cpu",
              file=sys.stderr)
        return 2
    try:
        full = TrainConfig(dataset=args.dataset, model=args.model, width=args.width, depth=args.depth,
                           batch_size=args.batch_size, epochs=args.epochs, train_size=args.train_size)
        cheap = dataclasses.replace(full, eval_every=args.eval_every, eval_train_subset=args.eval_train_subset)
        dataset = data.load(args.dataset, args.data_root, train_size=args.train_size)
    except ValueError as exc:
        print(f"eval_cadence: error: {exc}", file=sys.stderr)
        return 2
    if args.repeat > 1:
        dataset = dataset.tiled(args.repeat)
    train(dataclasses.replace(full, epochs=1), device=args.device, dataset=dataset)  # warm-up, untimed
    full_seconds = epoch_seconds(full, dataset, args.device)
    cheap_seconds = epoch_seconds(cheap, dataset, args.device)
    images = dataset.train_images.shape[0]
    print(f"{args.model} width {args.width} depth {args.depth}, {images} training images, {args.epochs} epochs, "
          f"{args.device}, torch threads {torch.get_num_threads()}")
    print(f"full evaluation every epoch:   {full_seconds:.3f} s per epoch")
    print(f"eval_every {args.eval_every}, train subset {args.eval_train_subset}: {cheap_seconds:.3f} s per epoch")
    ratio = full_seconds / cheap_seconds if cheap_seconds > 0 else math.nan
    print(f"ratio full/cadence: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

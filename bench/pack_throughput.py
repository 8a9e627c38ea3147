"""Packed training against the same models trained one after another, in one process.

For each K (default 1, 2, 4, 8), K NiN models that differ in seed (initial weights, data
order, augmentation) are trained twice for ``--epochs`` epochs: one after another with
``trainers.train.train`` and together with ``trainers.packed.train_packed``. The time is
the training loop's own (optimizer steps only, ``torch.cuda.synchronize()`` on CUDA, no
evaluation) of the last epoch, so start-up (data to the device, cuDNN and vmap set-up) is
not counted; aggregate images/s = K × images per epoch / the K models' training seconds.
Printed as a Markdown table with the ratio packed / one after another.

    python bench/pack_throughput.py                                   # CPU: digits 512, NiN-16 depth 3
    PYTHONPATH=. python3 bench/pack_throughput.py --device cuda --width 192 --dataset digits --repeat 35
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Sequence

import torch

from trainers import data
from trainers.allocator import keep_freed_memory
from trainers.config import TrainConfig
from trainers.packed import train_packed
from trainers.train import train


class BenchError(ValueError):
    """A bad argument; one line naming it."""


def _configs(args, k: int) -> List[TrainConfig]:
    return [TrainConfig(dataset=args.dataset, train_size=args.train_size, model="nin", width=args.width,
                        depth=args.depth, batch_size=args.batch_size, epochs=args.epochs, lr=0.05, seed=seed)
            for seed in range(k)]


def measure(args, k: int, datasets: Sequence[data.Dataset]) -> Dict[str, Any]:
    """Aggregate training images/s of K models, one after another and packed (last epoch)."""
    configs = _configs(args, k)
    images = datasets[0].train_images.shape[0]
    started = time.perf_counter()
    separate = [train(c, device=args.device, dataset=d) for c, d in zip(configs, datasets)]
    separate_wall = time.perf_counter() - started
    separate_seconds = sum(images / r.records[-1]["images_per_second"] for r in separate)
    started = time.perf_counter()
    packed = train_packed(configs, device=args.device, datasets=datasets)
    packed_wall = time.perf_counter() - started
    packed_seconds = images / packed[0].records[-1]["images_per_second"]
    return {
        "k": k, "images_per_epoch": images,
        "separate_images_per_second": k * images / separate_seconds,
        "packed_images_per_second": k * images / packed_seconds,
        "ratio": separate_seconds / packed_seconds,
        "separate_wall_seconds": separate_wall, "packed_wall_seconds": packed_wall,
    }


def table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = ["| K | one after another img/s | packed img/s | packed / one after another |",
             "|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['k']} | {r['separate_images_per_second']:,.0f} | {r['packed_images_per_second']:,.0f} "
                     f"| {r['ratio']:.2f}× |")
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--repeat", type=int, default=1, help="tile the training split K times")
    parser.add_argument("--width", type=int)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ks", default="1,2,4,8", help="comma-separated pack sizes")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise BenchError("--device: cuda is not available here, allowed: cpu")
    args.width = args.width or (192 if cuda else 16)
    if args.train_size is None and not cuda and args.repeat == 1:
        args.train_size = 512
    try:
        args.ks = [int(v) for v in args.ks.split(",")]
    except ValueError:
        raise BenchError(f"--ks: got {args.ks!r}, allowed: comma-separated positive integers") from None
    if not args.ks or min(args.ks) < 1:
        raise BenchError(f"--ks: got {args.ks!r}, allowed: comma-separated positive integers")
    if args.epochs < 2:
        raise BenchError(f"--epochs: got {args.epochs}, allowed: at least 2 (the first is warm-up)")
    return args


def main(argv: Sequence[str] = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except BenchError as error:
        print(f"pack_throughput: error: {error}", file=sys.stderr)
        return 2
    keep_freed_memory()  # as the sweep's trial workers do
    datasets = [data.load(args.dataset, args.data_root, train_size=args.train_size, seed=seed).tiled(args.repeat)
                for seed in range(max(args.ks))]
    print(f"NiN width {args.width} depth {args.depth}, {args.dataset} ({datasets[0].train_images.shape[0]:,} "
          f"training images), batch {args.batch_size}, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; last of {args.epochs} epochs timed", flush=True)
    rows = []
    for k in args.ks:
        rows.append(measure(args, k, datasets[:k]))
        print(f"K={k}: {rows[-1]['ratio']:.2f}x", flush=True)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What fsync costs the store's local writes (``sweep.store.Store.write_bytes``).

On a local disk every file of the store is fsynced before it is renamed into place and its
folder after, so that a power loss never leaves a renamed but empty commit marker. This script
times, in one process, ``--writes`` writes of each payload size with the durable write and
with the same write without its two fsyncs, and then one tiny trial trained into a local
store each way (``sweep.trial.train_trial``: per epoch a few checkpoints, two small tables and
``state.pt``), and prints the milliseconds per write, the trial's seconds and the ratios.

    python bench/store_fsync.py [--folder DIR] [--writes 50] [--epochs 3]

``--folder`` should be on the disk the store will use (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Tuple

from sweep import store as store_module
from sweep.store import Store

SIZES = (("1 KB (a small table)", 1_000), ("100 KB (a small model's state.pt)", 100_000),
         ("10 MB (a large state.pt)", 10_000_000))


def _write_without_fsync(data: bytes, tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(data)
    os.replace(tmp, final)


@contextlib.contextmanager
def fsync(enabled: bool) -> Iterator[None]:
    durable = store_module._write_durably
    if not enabled:
        store_module._write_durably = _write_without_fsync
    try:
        yield
    finally:
        store_module._write_durably = durable


def time_writes(folder: Path, size: int, writes: int, enabled: bool) -> float:
    """Milliseconds per write of ``size`` bytes (each to its own new file, as a commit does)."""
    store = Store(str(folder), f"writes-{size}-{int(enabled)}")
    data = os.urandom(size)
    with fsync(enabled):
        started = time.perf_counter()
        for k in range(writes):
            store.write_bytes(data, "files", f"{k}.bin")
        seconds = time.perf_counter() - started
    shutil.rmtree(folder / store.experiment, ignore_errors=True)
    return 1000 * seconds / writes


def time_trial(folder: Path, epochs: int, enabled: bool) -> Tuple[float, int]:
    """Seconds of one tiny trial trained into a local store, and the number of its writes."""
    import torch

    from sweep import trial
    from trainers.config import TrainConfig

    torch.set_num_threads(1)
    config = TrainConfig(dataset="digits", model="nin", width=8, depth=2, train_size=96, batch_size=32,
                         epochs=epochs, lr=0.05, checkpoint_epochs=(1,))
    writes: List[int] = [0]

    class Counting(Store):
        def write_bytes(self, data, *parts):
            writes[0] += 1
            super().write_bytes(data, *parts)

    store = Counting(str(folder), f"trial-{int(enabled)}")
    with fsync(enabled):
        started = time.perf_counter()
        trial.train_trial(config, store, device="cpu")
        seconds = time.perf_counter() - started
    shutil.rmtree(folder / store.experiment, ignore_errors=True)
    return seconds, writes[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="where to write (default: a temporary folder)")
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="genzoo-bench-fsync-"))
    try:
        print(f"{'payload':<36} {'fsync ms':>9} {'no fsync ms':>12} {'ratio':>6}")
        for label, size in SIZES:
            writes = max(1, args.writes // 10) if size >= 10_000_000 else args.writes
            on, off = time_writes(folder, size, writes, True), time_writes(folder, size, writes, False)
            print(f"{label:<36} {on:>9.2f} {off:>12.2f} {on / off:>6.2f}")
        time_trial(folder, 1, True)  # imports and data loading out of the timings
        on, count = time_trial(folder, args.epochs, True)
        off, _ = time_trial(folder, args.epochs, False)
        print(f"tiny trial, {args.epochs} epochs, {count} writes: {on:.2f} s with fsync, {off:.2f} s without "
              f"(ratio {on / off:.2f}, {1000 * (on - off) / count:+.2f} ms per write)")
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

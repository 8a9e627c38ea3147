"""Stop a training run after an epoch and resume it: the shared half of the bit-for-bit
resume tests of the training loop and its modes."""

import pytest
import torch

from trainers.train import train

TIMING = ("seconds", "images_per_second")


class Interrupt(Exception):
    pass


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def stop_and_resume(config, run_dir, stop_epoch, *, between=None):
    """Train ``config`` in ``run_dir`` until ``stop_epoch`` is committed, raise there, let
    ``between(run_dir)`` look at what was saved, draw from the global RNG as another trial
    in the same worker would, and resume; returns the resumed run's result."""

    def stop(record, state):
        if record["epoch"] == stop_epoch:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, run_dir=run_dir, device="cpu", on_epoch=stop)
    if between is not None:
        between(run_dir)
    torch.rand(1000)
    return train(config, run_dir=run_dir, device="cpu")

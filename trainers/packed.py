"""Packed training: K models of one architecture trained in one process as one network.

A zoo is hundreds of small models (the DEMOGEN NiNs, the narrow double-descent widths), each
far too small to fill a GPU. :func:`train_packed` trains K of them at once: every optimizer
step stacks the K models' parameters and buffers (``torch.func.stack_module_state``'s layout,
rebuilt each step so that each model keeps its own ``nn.Module``, optimizer and mode) and
runs one forward and backward of ``torch.func.vmap(functional_call(...))`` over the K
models and their K batches. vmap's batching rule for a convolution whose input and weight are
both batched is one grouped convolution (groups = K), so this is also a grouped-convolution
implementation, without a hand-written packed copy of every architecture; BatchNorm over the
K models' channels is likewise per model.

Each model keeps everything that makes it itself (:data:`trainers.config.PACK_SHARED` lists
what the K must share instead: architecture, data, batch size, epochs, mode): its initial
weights (``torch.manual_seed(seed)`` before building it, as :func:`trainers.train.train`),
its data order and augmentation (its own ``DeviceLoader``), its label noise (its own
dataset), its dropout rate and draws, its optimizer with its own learning rate, schedule,
momentum and weight decay, its mode callbacks and its own run folder with ``state.pt``,
records and checkpoints, exactly as a run of :func:`trainers.train.train` writes them.

Dropout. Inside vmap a model cannot draw from a generator of its own, so the masks are drawn
before each step, per model, in the order the forward pass calls its dropout layers, from the
model's generator, which starts from the global RNG state right after the model's
initialization: on the CPU a model draws exactly the masks it draws when trained alone
(``bernoulli_(1 − p)`` then ``/ (1 − p)``, what ``torch.nn.functional.dropout`` computes
there). On CUDA the fused dropout kernel draws differently, so packed masks are other (equally
distributed) draws there.

Numerically the packed path is the separate one up to the summation order of the grouped
convolution: the initial weights are identical, each step's gradients agree with a float64
reference as closely as the separate path's (about 1e-6 relative), and on the CPU in float32
the weights after the test's epoch agree within 1e-5 relative (``tests/trainers/test_packed.py``,
one torch thread). Over longer runs the two drift apart the way any two float orders do in
training: on the upsampled digits a 16-step epoch at lr 0.05 already ends 1e-2 apart, as
does the separate path itself when its initial weights are perturbed by 1e-7 (the jumps come
in single steps, as when many ReLU inputs sit at one value, e.g. the identical background
pixels, and cross zero together). Adam amplifies the rounding noise of gradients that are
zero in exact arithmetic (a convolution's bias before BatchNorm) to steps of size lr, in both
paths alike; IMP's global magnitude threshold may keep a different weight out of a near tie.

Resuming is per model: each model resumes from its own ``state.pt``; models found at
different epochs are trained in smaller packs until they are level again, which rounds
differently from the uninterrupted pack. A packed model's ``state.pt`` also resumes alone, and
the other way round (the saved ``rng`` is the model's own stream either way). The results
store never leaves a pack at different epochs: ``on_pack_epoch`` is called once every model
trained in an epoch has ended it, and :func:`sweep.trial.train_pack` commits the pack's epoch
there as one unit (see its docstring), so that a resumed pack trains as the same pack.

Time records: every model's epoch record has ``seconds`` = the pack's epoch time (training
and all K evaluations) divided by the number of models trained together, so the seconds of
a store still add up to the time the slots were busy; ``images_per_second`` is the model's
own images over the pack's training time.
"""

from __future__ import annotations

import copy
import functools
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from trainers import data
from trainers.config import PackError, check_packable, packable_modes
from trainers.train import Run, TrainResult, TrainState, default_device

__all__ = ["PackError", "PackedStep", "check_packable", "packable_modes", "train_packed"]


class _Feed:
    """The dropout masks of one packed forward pass, consumed in call order."""

    def __init__(self) -> None:
        self.masks: List[torch.Tensor] = []
        self.active = False


class _FedDropout(nn.Module):
    """Stands in for an ``nn.Dropout`` in the packed network: multiplies by the next mask of
    the feed (the masks are drawn per model outside vmap), or passes through when no model
    of the pack uses dropout."""

    def __init__(self, feed: _Feed) -> None:
        super().__init__()
        self.feed = feed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.feed.active:
            return x
        return x * self.feed.masks.pop(0)


class PackedStep:
    """The forward pass of K models of one architecture as one vmapped network.

    ``losses(models, generators, xs, ys)``: the K mean cross-entropies (a tensor of K), each
    model ``models[k]`` on its own batch ``xs[k], ys[k]``; differentiable with respect to
    every model's own parameters. BatchNorm running statistics are updated in each model's
    own buffers, as a training-mode forward of that model would.
    """

    def __init__(self, model: nn.Module) -> None:
        self.feed = _Feed()
        self.base = copy.deepcopy(model)
        self.dropout_names = [name for name, module in model.named_modules() if isinstance(module, nn.Dropout)]
        for name in self.dropout_names:
            self.base.set_submodule(name, _FedDropout(self.feed))
        # The stacked parameters and buffers are given to every call; the base keeps none.
        self.base = self.base.to("meta")
        self.base.train()
        self._sites: Dict[Tuple[Tuple[int, ...], torch.dtype, bool], List[Tuple[str, torch.Size, torch.dtype]]] = {}

    def dropout_sites(self, model: nn.Module, x: torch.Tensor, autocast) -> List[Tuple[str, torch.Size, torch.dtype]]:
        """``(layer name, input shape, dtype)`` of every dropout call of a forward pass on a
        batch shaped like ``x``, in call order (one model, eval mode, no gradient)."""
        key = (tuple(x.shape), x.dtype, torch.is_autocast_enabled(x.device.type))
        if key not in self._sites:
            calls: List[Tuple[str, torch.Size, torch.dtype]] = []
            handles = [model.get_submodule(name).register_forward_pre_hook(
                functools.partial(lambda name, module, args: calls.append((name, args[0].shape, args[0].dtype)), name))
                for name in self.dropout_names]
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad(), autocast:
                    model(x)
            finally:
                model.train(was_training)
                for handle in handles:
                    handle.remove()
            self._sites[key] = calls
        return self._sites[key]

    def draw_masks(self, models: Sequence[nn.Module], generators: Sequence[torch.Generator],
                   sites: Sequence[Tuple[str, torch.Size, torch.dtype]], device: torch.device) -> List[torch.Tensor]:
        """One stacked mask (K × the layer's input shape) per dropout call, each model's drawn
        from its own generator in call order; ones for a model whose rate is 0 (which, like
        ``F.dropout`` at p = 0, draws nothing)."""
        rates = [[float(m.get_submodule(name).p) for name, _, _ in sites] for m in models]
        if not any(p > 0 for row in rates for p in row):
            return []
        per_model: List[List[torch.Tensor]] = []
        for generator, row in zip(generators, rates):
            masks = []
            for (_, shape, dtype), p in zip(sites, row):
                if p > 0:
                    mask = torch.empty(shape, dtype=dtype, device=device).bernoulli_(1 - p, generator=generator)
                    masks.append(mask.div_(1 - p))
                else:
                    masks.append(torch.ones(shape, dtype=dtype, device=device))
            per_model.append(masks)
        return [torch.stack(column) for column in zip(*per_model)]

    def losses(self, models: Sequence[nn.Module], generators: Sequence[torch.Generator], xs: torch.Tensor,
               ys: torch.Tensor, autocast) -> torch.Tensor:
        parameters = [dict(m.named_parameters()) for m in models]
        buffers = [dict(m.named_buffers()) for m in models]
        stacked_parameters = {name: torch.stack([p[name] for p in parameters]) for name in parameters[0]}
        stacked_buffers = {name: torch.stack([b[name] for b in buffers]) for name in buffers[0]}
        masks = self.draw_masks(models, generators, self.dropout_sites(models[0], xs[0], autocast), xs.device)

        def one(params, bufs, model_masks, x, y):
            self.feed.masks = list(model_masks)
            self.feed.active = bool(model_masks)
            logits = functional_call(self.base, {**params, **bufs}, (x,))
            return F.cross_entropy(logits, y)

        with autocast:
            losses = vmap(one)(stacked_parameters, stacked_buffers, masks, xs, ys)
        self.feed.masks, self.feed.active = [], False
        with torch.no_grad():
            # The forward updated the stacked running statistics in place; they are the models'.
            # One multi-tensor copy: K × (number of buffers) small copies would each be a launch.
            names = list(stacked_buffers)
            if names:
                torch._foreach_copy_([own[name] for own in buffers for name in names],
                                     [stacked_buffers[name][k] for k in range(len(buffers)) for name in names])
        return losses


def train_packed(
    configs: Sequence,
    *,
    run_dirs: Optional[Sequence[Optional[str | Path]]] = None,
    device: Optional[str | torch.device] = None,
    datasets: Optional[Sequence[Optional[data.Dataset]]] = None,
    data_root: Optional[str | Path] = None,
    resume: bool = True,
    on_epoch: Optional[Callable[[int, Dict[str, Any], TrainState], None]] = None,
    on_pack_epoch: Optional[Callable[[List[int]], None]] = None,
    log: Optional[Callable[[str], None]] = None,
    bf16: Optional[bool] = None,
) -> List[TrainResult]:
    """Train the K ``configs`` (:func:`trainers.config.check_packable`) as one packed network;
    one :class:`~trainers.train.TrainResult` per config, in order.

    Everything per model is as :func:`trainers.train.train` with the same arguments:
    ``run_dirs[k]`` receives model k's checkpoints and ``state.pt`` (and is resumed from when
    ``resume``), ``datasets[k]`` its data (default: loaded from its config), and
    ``on_epoch(k, record, state)`` is called after model k's epoch is on disk (an exception
    stops the whole pack; every model resumes from its last ``state.pt``).
    ``on_pack_epoch(ks)`` follows, once the models ``ks`` (indices into ``configs``, in order)
    trained together in an epoch have all ended it: the place to commit the epoch of the whole
    pack as one unit. The models trained together in an epoch are those not yet done (diverged,
    stopped at their target or at the last epoch), so the pack shrinks deterministically. bf16
    autocast defaults to on for CUDA; channels_last is not used (vmap's grouped convolutions).
    """
    configs = list(configs)
    check_packable(configs)
    device = torch.device(device) if device is not None else default_device()
    run_dirs = list(run_dirs) if run_dirs is not None else [None] * len(configs)
    datasets = list(datasets) if datasets is not None else [None] * len(configs)
    if len(run_dirs) != len(configs) or len(datasets) != len(configs):
        raise PackError(f"run_dirs/datasets: need one per config ({len(configs)}), "
                        f"got {len(run_dirs)} and {len(datasets)}")
    runs = [
        Run(config, run_dir=run_dir, device=device, dataset=dataset, data_root=data_root, resume=resume,
            on_epoch=functools.partial(on_epoch, k) if on_epoch is not None else None, log=log, bf16=bf16,
            generator=torch.Generator(device=device))
        for k, (config, run_dir, dataset) in enumerate(zip(configs, run_dirs, datasets))
    ]
    steps = {len(run.loader) for run in runs}
    sizes = {len(run.loader.labels) for run in runs}
    if len(steps) != 1 or len(sizes) != 1:
        raise PackError(f"train_size: packed models need training sets of one size, got {sorted(sizes)} examples")
    step = PackedStep(runs[0].model)
    while True:
        pending = [run for run in runs if not run.done]
        if not pending:
            break
        epoch = min(run.state.epoch for run in pending)
        group = [run for run in pending if run.state.epoch == epoch]
        _train_epoch(group, step, epoch, device)
        if on_pack_epoch is not None:
            trained = {id(run) for run in group}
            on_pack_epoch([k for k, run in enumerate(runs) if id(run) in trained])
    return [run.finish() for run in runs]


def _train_epoch(group: Sequence[Run], step: PackedStep, epoch: int, device: torch.device) -> None:
    """One epoch of every run in ``group`` (all at epoch ``epoch``), packed."""
    for run in group:
        run.begin_epoch()
    started = time.perf_counter()
    models = [run.model for run in group]
    generators = [run.generator for run in group]
    autocast = group[0].autocast
    for batches in zip(*(run.loader.batches(epoch) for run in group)):
        xs = torch.stack([x for x, _ in batches])
        ys = torch.stack([y for _, y in batches])
        losses = step.losses(models, generators, xs, ys, autocast)
        for run in group:
            run.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        for run in group:
            run.optimizer.step()
        detached = losses.detach()
        for k, run in enumerate(group):
            run.after_step(detached[k], ys.shape[1])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - started
    metrics = [run.epoch_metrics() for run in group]
    share = (time.perf_counter() - started) / len(group)
    for run, run_metrics in zip(group, metrics):
        run.end_epoch(run_metrics, seconds=share, train_seconds=train_seconds)

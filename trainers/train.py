"""The training loop: one :class:`~trainers.config.TrainConfig` in, one trained model out.

Pure PyTorch (no Ray). The dataset lives on the training device as uint8 and is augmented
there per batch (:class:`trainers.data.DeviceLoader`); the step loop never synchronizes with
the host (no ``.item()``): the epoch's losses are summed on the device and read once.

Reproducibility: the initial weights come from ``torch.manual_seed(config.seed)``; each epoch's
data order and augmentation are a function of ``(seed, epoch)``; dropout draws from the global
torch RNG, whose state is saved with every resumable checkpoint. The learning rate is a pure
function of the epoch (``TrainConfig.lr_at``). Stopping after any epoch and resuming from
``state.pt`` therefore gives bit-for-bit the same weights on CPU as never stopping.

Modes (``config.mode``, :mod:`trainers.modes`) drive the loop through callbacks whose state
is saved in ``state.pt``; the mode also says which models the run yields, each saved as
``<model_id>.pt`` and described by a model record (``TrainResult.models``). ``masks``
(parameter name -> bool tensor) are applied after every optimizer step and saved with the
state; ``hooks`` (objects with ``on_step_end(state)`` and/or ``on_epoch_end(state, record)``)
are for tests and benchmarks only, their state is not saved.

Write order in ``run_dir`` at the end of every epoch: the early checkpoint, the models'
checkpoints, then ``state.pt`` last: ``state.pt`` is the commit marker of the epoch. A run
resumed from a state at its last epoch trains nothing and writes whatever model checkpoint is
missing, so a crash after the last ``state.pt`` never costs a retraining.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainers import checkpoint, data, models, pruning
from trainers.config import TrainConfig
from trainers.modes import callbacks as mode_callbacks
from trainers.status import COMPLETED, DIVERGED, METRICS




@dataclass
class TrainState:
    """What hooks and mode callbacks see: the live model and optimizer, the epoch being trained
    (0-based), the number of optimizer steps taken so far, the masks, the records so far, and
    ``evaluate(model) -> {"train_loss", "train_acc", "test_loss", "test_acc"}`` (the loop's own
    full-set evaluation, eval mode, model's mode restored; set once the data is loaded)."""

    config: TrainConfig
    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    epoch: int = 0
    step: int = 0
    masks: Dict[str, torch.Tensor] = field(default_factory=dict)
    records: List[Dict[str, Any]] = field(default_factory=list)
    models: List[Dict[str, Any]] = field(default_factory=list)
    evaluate: Optional[Callable[[nn.Module], Dict[str, float]]] = None
    # The mode's per-trial tables (ModeCallbacks.tables), current after every epoch.
    tables: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    # The epoch just trained ends the run early: its full-set training loss reached the
    # config's ``stop_at_train_loss`` (the mode then yields its last models).
    stopping: bool = False


@dataclass
class TrainResult:
    trial_id: str
    status: str
    records: List[Dict[str, Any]]
    model: nn.Module
    run_dir: Optional[Path] = None
    models: List[Dict[str, Any]] = field(default_factory=list)
    tables: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)

    @property
    def final(self) -> Dict[str, Any]:
        return self.records[-1] if self.records else {}


def build_model(config: TrainConfig, num_classes: int, input_shape: Optional[Sequence[int]] = None) -> nn.Module:
    """The model of ``config``; ``input_shape`` is one example's (C, H, W), from the dataset."""
    return models.build(
        config.model, num_classes, width=config.width, depth=config.depth, dropout=config.dropout,
        input_shape=input_shape,
    )


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(
    config: TrainConfig,
    *,
    run_dir: Optional[str | Path] = None,
    device: Optional[str | torch.device] = None,
    dataset: Optional[data.Dataset] = None,
    data_root: Optional[str | Path] = None,
    hooks: Sequence[Any] = (),
    masks: Optional[Dict[str, torch.Tensor]] = None,
    resume: bool = True,
    on_epoch: Optional[Callable[[Dict[str, Any], TrainState], None]] = None,
    log: Optional[Callable[[str], None]] = None,
    channels_last: Optional[bool] = None,
    bf16: Optional[bool] = None,
) -> TrainResult:
    """Train ``config`` and return its per-epoch records and the trained model.

    With ``run_dir``, checkpoints are written there (see :mod:`trainers.checkpoint`) and, when
    ``resume`` is true and ``state.pt`` exists, training continues from it. ``on_epoch(record,
    state)`` is called after each epoch's checkpoint is on disk (the sweep reports to Ray Tune
    from there); an exception it raises stops training with everything up to that epoch saved.
    ``channels_last`` and ``bf16`` autocast default to on for CUDA and off elsewhere.

    A non-finite minibatch loss ends training with status ``diverged``; the epoch in which it
    happened is recorded and returned, nothing is raised.
    """
    device = torch.device(device) if device is not None else default_device()
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    run = Run(config, run_dir=run_dir, device=device, dataset=dataset, data_root=data_root, masks=masks,
              resume=resume, on_epoch=on_epoch, log=log, bf16=bf16, channels_last=channels_last)
    model, optimizer, state = run.model, run.optimizer, run.state
    while not run.done:
        run.begin_epoch()
        for x, y in run.loader.batches(state.epoch):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with run.autocast:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.after_step(loss.detach(), len(y))
            for hook in hooks:
                if hasattr(hook, "on_step_end"):
                    hook.on_step_end(state)
        train_seconds = run.stop_clock()
        metrics = run.epoch_metrics()
        run.end_epoch(metrics, seconds=time.perf_counter() - run.started, train_seconds=train_seconds, hooks=hooks)
    return run.finish()


class Run:
    """One model's training run, without its step: set-up (model, optimizer, mode, data on
    the device, resume from ``state.pt``), the learning rate and mode callbacks of each epoch,
    the bookkeeping after each optimizer step, and the end of each epoch (evaluation, record,
    models, checkpoints in commit order). :func:`train` drives one run with the model's own
    forward and backward; :func:`trainers.packed.train_packed` drives several with one packed
    forward and backward.

    ``generator``: where the run's dropout draws come from. ``None`` (:func:`train`) is the
    global torch RNG; a packed run gives each model a generator of its own, started from the
    global RNG state right after that model's initialization, so the model draws the same
    numbers as it would alone. Either way that state is what ``state.pt`` saves as ``rng``,
    so a packed run's ``state.pt`` resumes alone and the other way round.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        run_dir: Optional[str | Path],
        device: torch.device,
        dataset: Optional[data.Dataset] = None,
        data_root: Optional[str | Path] = None,
        masks: Optional[Dict[str, torch.Tensor]] = None,
        resume: bool = True,
        on_epoch: Optional[Callable[[Dict[str, Any], TrainState], None]] = None,
        log: Optional[Callable[[str], None]] = None,
        bf16: Optional[bool] = None,
        channels_last: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        self.config = config
        self.device = device
        self.on_cuda = device.type == "cuda"
        bf16 = self.on_cuda if bf16 is None else bf16
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.on_epoch = on_epoch
        self.log = log
        if dataset is None:
            dataset = data.load(
                config.dataset, data_root, train_size=config.train_size,
                label_noise=config.label_noise, seed=config.seed,
            )
        self.dataset = dataset

        torch.manual_seed(config.seed)
        model = build_model(config, dataset.num_classes, dataset.input_shape).to(device)
        self.generator = generator
        if generator is not None:
            if generator.device.type == "cpu":
                generator.set_state(torch.get_rng_state())
            else:
                generator.manual_seed(config.seed)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = make_optimizer(config, model)
        self.mode = mode_callbacks.build(config)
        self.total_epochs = self.mode.total_epochs()
        self.state = state = TrainState(config=config, model=model, optimizer=self.optimizer, device=device,
                                        masks=dict(masks or {}))
        self.records = state.records
        self.status = COMPLETED

        self.state_path = self.run_dir / checkpoint.STATE if self.run_dir is not None else None
        if resume and self.state_path is not None and self.state_path.exists():
            saved = checkpoint.load(self.state_path, map_location=device)
            self._restore(saved)
            self.mode.load_state_dict(saved.get("mode", {}))
            self.records.extend(saved["records"])
            state.models.extend(saved.get("models", []))
            state.stopping = bool(self.records) and self._reaches_target(self.records[-1])
            if log:
                log(f"{config.trial_id}: resuming after epoch {state.epoch}")
        elif self.run_dir is not None:
            _apply_masks(model, state.masks)
            checkpoint.save(checkpoint.cpu_state_dict(model.state_dict()), self.run_dir / checkpoint.INIT)
        if self.records and self.records[-1].get("status") == DIVERGED:
            self.status = DIVERGED

        self.loader = loader = data.DeviceLoader(
            dataset.train_images, dataset.train_labels, batch_size=config.batch_size,
            mean=dataset.mean, std=dataset.std, augment=config.augment, flip=config.flip,
            padding=config.crop_padding, shuffle=True,
            seed=config.seed, device=device,
        )
        self.test_images = dataset.test_images.to(device)
        self.test_labels = dataset.test_labels.to(device)
        self.autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        )
        self.eval_subset = None
        if config.eval_train_subset is not None and config.eval_train_subset < len(loader.labels):
            order = torch.randperm(len(loader.labels), generator=data.sources._generator(config.seed, "eval_subset"))
            self.eval_subset = order[:config.eval_train_subset].sort().values.to(loader.labels.device)
        state.evaluate = self.evaluate

    @property
    def done(self) -> bool:
        return self.status == DIVERGED or self.state.epoch >= self.total_epochs or self.state.stopping

    def _reaches_target(self, record: Dict[str, Any]) -> bool:
        return record.get("status") != DIVERGED and self.config.reaches_target(record.get("train_loss"))

    def evaluate(self, net: nn.Module, train_subset: Optional[torch.Tensor] = None, *,
                 train: bool = True, test: bool = True) -> Dict[str, float]:
        """Full-set train and test metrics (train on ``train_subset`` indices when given; the
        metrics of a set left out by ``train``/``test`` are NaN), in the training precision
        (bf16 autocast on CUDA), losses summed in float64."""
        dataset, device = self.dataset, self.device
        images, labels = self.loader.images, self.loader.labels
        if train_subset is not None:
            images, labels = images[train_subset], labels[train_subset]
        train_loss = train_acc = test_loss = test_acc = float("nan")
        with self.autocast:
            if train:
                train_loss, train_acc = data.evaluate(net, images, labels, mean=dataset.mean, std=dataset.std,
                                                      device=device)
            if test:
                test_loss, test_acc = data.evaluate(
                    net, self.test_images, self.test_labels, mean=dataset.mean, std=dataset.std, device=device,
                )
        return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc}

    def begin_epoch(self) -> None:
        """Set the epoch's learning rate, call the mode, start the clock, train mode."""
        self.lr = self.config.lr_at(self.mode.lr_epoch(self.state.epoch))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.mode.on_epoch_start(self.state)
        self.started = time.perf_counter()
        self.model.train()
        self.loss_sum = torch.zeros((), device=self.device)
        self.seen = 0

    def after_step(self, loss: torch.Tensor, examples: int) -> None:
        """After an optimizer step on ``examples`` examples whose mean loss was ``loss``
        (detached; summed on the device, never read back here)."""
        _apply_masks(self.model, self.state.masks)
        self.loss_sum += loss.float() * examples
        self.seen += examples
        self.state.step += 1
        self.mode.on_step_end(self.state)

    def stop_clock(self) -> float:
        """Seconds since :meth:`begin_epoch`, the device synchronized (the epoch's training)."""
        if self.on_cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - self.started

    def epoch_metrics(self) -> Dict[str, float]:
        """The epoch's evaluation: full sets when the epoch yields a model, is the last or
        diverged; the cadence's (``eval_every``, ``eval_train_subset``) otherwise, NaN between.
        With ``stop_at_train_loss`` the whole training set is evaluated after every epoch (the
        stopping rule reads it), and the test set too at the epoch that reaches the target."""
        self.minibatch_loss = float(self.loss_sum) / max(self.seen, 1)
        self.diverged = not math.isfinite(self.minibatch_loss)
        epochs_done = self.state.epoch + 1
        if self.diverged or self.mode.produces_model_after(epochs_done) or epochs_done == self.total_epochs:
            return self.evaluate(self.model)
        stops_at_loss = self.config.stop_at_train_loss is not None
        if epochs_done % self.config.eval_every == 0:
            return self.evaluate(self.model, train_subset=None if stops_at_loss else self.eval_subset)
        if stops_at_loss:
            metrics = self.evaluate(self.model, test=False)
            if self.config.reaches_target(metrics["train_loss"]):
                test = self.evaluate(self.model, train=False)
                metrics.update(test_loss=test["test_loss"], test_acc=test["test_acc"])
            return metrics
        return dict.fromkeys(METRICS, float("nan"))

    def end_epoch(self, metrics: Dict[str, float], *, seconds: float, train_seconds: float,
                  hooks: Sequence[Any] = ()) -> Dict[str, Any]:
        """Record the epoch (``seconds``: its whole time, evaluation included), let the mode
        yield models, write the checkpoints (``state.pt`` last), log, call ``on_epoch``."""
        state, mode, run_dir = self.state, self.mode, self.run_dir
        record = {
            "epoch": state.epoch + 1,
            "lr": self.lr,
            "minibatch_loss": self.minibatch_loss,
            **metrics,
            "seconds": seconds,
            "images_per_second": self.seen / train_seconds if train_seconds > 0 else float("nan"),
            "status": DIVERGED if self.diverged else COMPLETED,
        }
        self.records.append(record)
        state.epoch += 1
        state.stopping = self._reaches_target(record)
        mode.on_epoch_end(state, record)
        for hook in hooks:
            if hasattr(hook, "on_epoch_end"):
                hook.on_epoch_end(state, record)
        produced = {} if self.diverged else mode.models(state)
        reached = None if self.config.stop_at_train_loss is None else state.stopping
        for model_id, weights in produced.items():
            state.models.append({**_model_record(model_id, weights, state, record, self.evaluate),
                                 **mode.model_info(model_id), "reached_target": reached})
        state.tables = mode.tables()
        if run_dir is not None:
            weights = checkpoint.cpu_state_dict(self.model.state_dict())
            if state.epoch in self.config.checkpoint_epochs:
                checkpoint.save(weights, run_dir / checkpoint.early_name(state.epoch))
            for model_id, model_weights in produced.items():
                checkpoint.save(model_weights, run_dir / checkpoint.model_name(model_id))
            checkpoint.save(self._snapshot(weights), self.state_path)
        if self.log:
            self.log(format_record(record))
        if self.on_epoch is not None:
            self.on_epoch(record, state)
        if self.diverged:
            self.status = DIVERGED
        return record

    def finish(self) -> TrainResult:
        """The result; after a resume at the last epoch, the model checkpoints a crash missed."""
        state = self.state
        if self.status == COMPLETED and self.run_dir is not None:
            for model_id, model_weights in self.mode.models(state).items():
                if not (self.run_dir / checkpoint.model_name(model_id)).exists():
                    checkpoint.save(model_weights, self.run_dir / checkpoint.model_name(model_id))
        return TrainResult(self.config.trial_id, self.status, self.records, self.model, self.run_dir,
                           state.models, self.mode.tables())

    def _rng_states(self) -> Dict[str, Any]:
        if self.generator is None:
            states = {"cpu": torch.get_rng_state()}
            if self.on_cuda:
                states["cuda"] = torch.cuda.get_rng_state(self.device)
            return states
        if self.generator.device.type == "cpu":
            return {"cpu": self.generator.get_state()}
        return {"cpu": torch.get_rng_state(), "cuda": self.generator.get_state()}

    def _snapshot(self, weights: Dict[str, torch.Tensor]) -> Dict[str, Any]:
        state = self.state
        return {
            "trial_id": self.config.trial_id,
            "epoch": state.epoch,
            "step": state.step,
            "model": weights,
            "optimizer": self.optimizer.state_dict(),
            "masks": {name: mask.detach().cpu() for name, mask in state.masks.items()},
            "rng": self._rng_states(),
            "records": [dict(r) for r in self.records],
            "models": [dict(m) for m in state.models],
            "mode": self.mode.state_dict(),
        }

    def _restore(self, saved: Dict[str, Any]) -> None:
        state, config = self.state, self.config
        if saved.get("trial_id") != config.trial_id:
            raise checkpoint.CheckpointError(
                f"state.pt: belongs to trial {saved.get('trial_id')!r}, not {config.trial_id!r}"
            )
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.masks = {name: mask.to(state.device) for name, mask in saved["masks"].items()}
        state.epoch = int(saved["epoch"])
        state.step = int(saved["step"])
        rng = saved["rng"]
        if self.generator is None:
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and self.on_cuda:
                torch.cuda.set_rng_state(rng["cuda"], state.device)
        elif self.generator.device.type == "cpu":
            self.generator.set_state(rng["cpu"])
        elif "cuda" in rng:
            self.generator.set_state(rng["cuda"])


def _model_record(model_id: str, weights: Dict[str, torch.Tensor], state: TrainState, record: Dict[str, Any],
                  evaluate_both: Callable[[nn.Module], Dict[str, float]]) -> Dict[str, Any]:
    """One row of the models table: which model, after how many epochs and steps, its number
    of conv/linear weights, its sparsity (the fraction of them that are exactly zero) and its
    full-set metrics, evaluated on these weights (a mode may have changed the live model after
    the epoch's evaluation)."""
    other = copy.deepcopy(state.model)
    other.load_state_dict(weights)
    metrics = evaluate_both(other)
    prunable = [name for name, _ in pruning.prunable_parameters(state.model)]
    total = sum(weights[n].numel() for n in prunable)
    zeros = sum(int((weights[n] == 0).sum()) for n in prunable)
    return {
        "model_id": model_id,
        "epoch": record["epoch"],
        "step": state.step,
        "weights": total,
        "sparsity": zeros / total if total else 0.0,
        **metrics,
    }


def _apply_masks(model: nn.Module, masks: Dict[str, torch.Tensor]) -> None:
    if masks:
        pruning.apply_masks(model, masks)


def format_record(record: Dict[str, Any]) -> str:
    return (
        f"epoch {record['epoch']:>3}  lr {record['lr']:.2e}  loss {record['minibatch_loss']:.4f}  "
        f"train {record['train_loss']:.4f}/{record['train_acc']:.3f}  "
        f"test {record['test_loss']:.4f}/{record['test_acc']:.3f}  "
        f"{record['seconds']:.1f}s  {record['images_per_second']:.0f} img/s"
    )


def format_table(records: Sequence[Dict[str, Any]]) -> str:
    """The per-epoch records as a fixed-width table for the terminal."""
    header = f"{'epoch':>5} {'lr':>9} {'mb_loss':>8} {'train_loss':>10} {'train_acc':>9} " \
             f"{'test_loss':>9} {'test_acc':>8} {'seconds':>7} {'img/s':>8}"
    lines = [header, "-" * len(header)]
    for r in records:
        lines.append(
            f"{r['epoch']:>5} {r['lr']:>9.2e} {r['minibatch_loss']:>8.4f} {r['train_loss']:>10.4f} "
            f"{r['train_acc']:>9.4f} {r['test_loss']:>9.4f} {r['test_acc']:>8.4f} "
            f"{r['seconds']:>7.2f} {r['images_per_second']:>8.0f}"
        )
    return "\n".join(lines)

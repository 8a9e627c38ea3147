"""One trial's hyperparameters as a frozen dataclass, and the trial id derived from them.

The trial id follows OpenLTH's rule: it hashes only the fields that change what is trained
(:data:`NOT_IDENTITY` lists the others: what to save or report), and of those only the ones
that differ from their defaults. Two configs that train the same model get the same id, a
re-run of a sweep finds the trials it already finished, and adding a field with a default
renames no trial of any store. Tests pin the ids of the presets: changing a field's name or
default value is then a deliberate change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional, Tuple

from trainers.modes import registry as modes, settings as mode_settings_
from trainers.values import is_int, is_number

OPTIMIZERS = ("sgd", "adam")
_FLOAT_FIELDS = ("label_noise", "dropout", "lr", "momentum", "weight_decay", "lr_decay_factor", "lr_final",
                 "stop_at_train_loss")
LR_SCHEDULES = ("constant", "step", "piecewise")
# Fields that say what to save or report, not what is trained: never part of the trial id.
NOT_IDENTITY = ("checkpoint_epochs", "eval_every", "eval_train_subset")


class ConfigError(ValueError):
    """A bad hyperparameter: the message is one line naming the field and what is allowed."""


# Packed training (trainers.packed): the fields the K models of one pack must share (one
# architecture, one data shape and schedule of steps, one mode); every other field (seed,
# label noise, dropout, augmentation, optimizer and learning-rate schedule, weight decay,
# what to save or evaluate) may differ from model to model.
PACK_SHARED = ("dataset", "train_size", "model", "width", "depth", "batch_size", "epochs", "mode", "mode_settings")
# Which modes pack and which may stop early at a training loss is each mode's spec
# (``packable``, ``stoppable``; :mod:`trainers.modes.registry`): IMP's levels replay the
# learning-rate schedule from the rewind epoch, and pruning during training places its events
# at epochs, so stopping early would change what their models are.


def packable_modes() -> tuple:
    """The registered modes whose models can be trained as one pack."""
    return tuple(name for name in modes.names() if modes.get(name).packable)


def stoppable_modes() -> tuple:
    """The registered modes that may end a run early at ``stop_at_train_loss``."""
    return tuple(name for name in modes.names() if modes.get(name).stoppable)


class PackError(ConfigError):
    """Configs that cannot be trained as one pack; one line naming the field."""


def pack_key(config: "TrainConfig") -> tuple:
    """Configs with equal keys can be trained as one pack (:data:`PACK_SHARED`)."""
    return tuple(repr(getattr(config, name)) for name in PACK_SHARED)


def check_packable(configs) -> None:
    """Raise :class:`PackError` unless ``configs`` (at least one) can be trained as one pack."""
    if not configs:
        raise PackError("configs: a pack needs at least one config")
    first = configs[0]
    if not modes.get(first.mode).packable:
        raise PackError(f"mode: {first.mode!r} cannot be packed, packable modes: {', '.join(packable_modes())}")
    for other in configs[1:]:
        for name in PACK_SHARED:
            if getattr(other, name) != getattr(first, name):
                raise PackError(f"{name}: packed models must share it, got {getattr(first, name)!r} "
                                f"and {getattr(other, name)!r}")
    ids = [c.trial_id for c in configs]
    if len(set(ids)) != len(ids):
        raise PackError("configs: a pack holds each trial once, got a repeated trial id")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one trained model.

    Model hyperparameters (``width``, ``depth``, ``dropout``) are passed to
    ``trainers.models.build``; ``None`` means the model's own default. ``checkpoint_epochs``
    are the early epochs whose weights are kept besides the initial and the final ones (EL2N
    needs an early checkpoint).

    ``augment``: a random crop of the image zero-padded by ``crop_padding`` pixels (4, the
    CIFAR recipe: shifts of up to 4 pixels) and, with ``flip``, a left-right mirror with
    probability 1/2 (:class:`trainers.data.DeviceLoader`). The digits are 8×8 images upsampled
    4×, so a 4-pixel shift moves a digit by a whole original pixel, and they are not
    mirror-symmetric: their zoos augment with ``flip: false`` and a smaller ``crop_padding``.

    Learning-rate schedules, with ``lr`` the base rate and epochs counted from 0:

    - ``constant``: ``lr`` throughout.
    - ``step``: ``lr * lr_decay_factor ** (number of milestones <= epoch)`` with
      ``lr_milestones`` the epochs at which the rate is multiplied by ``lr_decay_factor``.
    - ``piecewise``: ``lr`` until ``lr_decay_start``, then a geometric decay, constant within
      each epoch, that reaches ``lr_final`` in the last epoch (the "piecewise-constant decay"
      of the double-descent presets).

    ``stop_at_train_loss``: training to a target loss, the protocol of the zoos these measures
    were designed on (Jiang et al. 2020, "Fantastic generalization measures", Section 4:
    every model stops when its training cross-entropy reaches 0.01). At the end of every
    epoch the cross-entropy of the whole training set (eval mode, the labels trained on) is
    computed, and the run ends after the first epoch where it is at or below the target;
    ``epochs`` is then a cap (the learning-rate schedule is still laid out over ``epochs``).
    ``None`` (the default) trains exactly ``epochs``. Only for the modes whose spec is ``stoppable``.
    """

    dataset: str = "digits"
    train_size: Optional[int] = None
    label_noise: float = 0.0
    augment: bool = True
    flip: bool = True
    crop_padding: int = 4

    model: str = "nin"
    width: Optional[int] = None
    depth: Optional[int] = None
    dropout: float = 0.0

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 10
    stop_at_train_loss: Optional[float] = None
    lr_schedule: str = "constant"
    lr_decay_factor: float = 0.1
    lr_milestones: Tuple[int, ...] = ()
    lr_decay_start: int = 0
    lr_final: float = 1e-4

    seed: int = 0
    checkpoint_epochs: Tuple[int, ...] = field(default=())
    eval_every: int = 1
    eval_train_subset: Optional[int] = None

    mode: str = "standard"
    mode_settings: Any = None

    def __post_init__(self) -> None:
        # Lists from YAML become tuples so that the dataclass stays hashable and its hash
        # does not depend on the container type.
        for name in ("lr_milestones", "checkpoint_epochs"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        # YAML reads "lr: 1" as an int; the id must not depend on how a number was spelled.
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if is_int(value):
                object.__setattr__(self, name, float(value))
        try:
            settings = modes.parse_settings(self.mode, self.mode_settings)
        except mode_settings_.ModeError as exc:
            raise ConfigError(str(exc)) from None
        object.__setattr__(self, "mode_settings", settings)
        self.validate()

    def validate(self) -> None:
        def bad(name: str, allowed: str) -> ConfigError:
            return ConfigError(f"{name}: got {getattr(self, name)!r}, allowed: {allowed}")

        if not isinstance(self.dataset, str) or not self.dataset:
            raise bad("dataset", "a dataset name")
        if self.train_size is not None and (not is_int(self.train_size) or self.train_size < 1):
            raise bad("train_size", "a positive integer or null")
        if not is_number(self.label_noise) or not 0.0 <= self.label_noise < 1.0:
            raise bad("label_noise", "a fraction in [0, 1)")
        if not isinstance(self.augment, bool):
            raise bad("augment", "true or false")
        if not isinstance(self.flip, bool):
            raise bad("flip", "true or false")
        if not is_int(self.crop_padding) or not 0 <= self.crop_padding <= 16:
            raise bad("crop_padding", "an integer number of pixels in [0, 16]")
        if not isinstance(self.model, str) or not self.model:
            raise bad("model", "a model name")
        for name in ("width", "depth"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise bad(name, "a positive integer or null")
        if not is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "a rate in [0, 1)")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", " or ".join(OPTIMIZERS))
        if not is_number(self.lr) or self.lr <= 0:
            raise bad("lr", "a positive number")
        if not is_number(self.momentum) or not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "a number in [0, 1)")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "a number >= 0")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise bad("batch_size", "a positive integer")
        if not is_int(self.epochs) or self.epochs < 1:
            raise bad("epochs", "a positive integer")
        if self.stop_at_train_loss is not None:
            if not is_number(self.stop_at_train_loss) or self.stop_at_train_loss <= 0:
                raise bad("stop_at_train_loss", "a positive number (a training cross-entropy) or null")
            if not modes.get(self.mode).stoppable:
                raise ConfigError(f"stop_at_train_loss: mode {self.mode} trains a schedule fixed in epochs, "
                                  f"allowed only with mode {' or '.join(stoppable_modes())} (or null)")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad("lr_schedule", ", ".join(LR_SCHEDULES))
        if not is_number(self.lr_decay_factor) or self.lr_decay_factor <= 0:
            raise bad("lr_decay_factor", "a positive number")
        if not all(is_int(m) and m >= 0 for m in self.lr_milestones):
            raise bad("lr_milestones", "a list of epochs >= 0")
        if not is_int(self.lr_decay_start) or not 0 <= self.lr_decay_start < self.epochs:
            raise bad("lr_decay_start", f"an epoch in [0, {self.epochs})")
        if not is_number(self.lr_final) or self.lr_final <= 0:
            raise bad("lr_final", "a positive number")
        if not is_int(self.seed) or self.seed < 0:
            raise bad("seed", "an integer >= 0")
        if not all(is_int(e) and 1 <= e <= self.epochs for e in self.checkpoint_epochs):
            raise bad("checkpoint_epochs", f"a list of epochs in [1, {self.epochs}]")
        if not is_int(self.eval_every) or self.eval_every < 1:
            raise bad("eval_every", "a positive integer (epochs)")
        if self.eval_train_subset is not None and (not is_int(self.eval_train_subset) or self.eval_train_subset < 1):
            raise bad("eval_train_subset", "a positive integer or null")
        if hasattr(self.mode_settings, "check_against"):
            try:
                self.mode_settings.check_against(self.epochs, "mode_settings.")
            except mode_settings_.ModeError as exc:
                raise ConfigError(str(exc)) from None

    def check_schedule(self) -> None:
        """Settings that are valid alone but never take effect together: a milestone at or after
        the last epoch (``lr_milestones: [30]`` with ``epochs: 25``) or milestones without the
        step schedule. Checked when a run is planned (`genzoo sweep plan|run`, `genzoo train`),
        not when a stored sweep is read: a store written before the check still loads."""
        if not all(0 <= m < self.epochs for m in self.lr_milestones):
            raise ConfigError(f"lr_milestones: got {self.lr_milestones!r}, allowed: a list of epochs in "
                              f"[0, {self.epochs}) (epochs is {self.epochs})")
        if self.lr_milestones and self.lr_schedule != "step":
            raise ConfigError(f"lr_milestones: got {self.lr_milestones!r}, allowed: empty with lr_schedule "
                              f"{self.lr_schedule} (milestones are step's)")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str = "") -> "TrainConfig":
        """Build from a mapping (a YAML document), rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                prefix = f"{where}." if where else ""
                raise ConfigError(
                    f"{prefix}{key}: unknown hyperparameter, allowed: {', '.join(sorted(known))}"
                )
        return cls(**dict(values))

    def to_dict(self) -> dict:
        """Every field as plain YAML/JSON values (tuples as lists, mode settings as a mapping)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "mode_settings":
                value = mode_settings_.to_dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def identity(self) -> dict:
        """The fields that make the trial id: those that change what is trained and differ
        from their defaults (``mode_settings`` likewise reduced to its non-default settings)."""
        out = {}
        for f in fields(self):
            if f.name in NOT_IDENTITY:
                continue
            value = getattr(self, f.name)
            if f.name == "mode_settings":
                value = mode_settings_.non_default(value)
                if value:
                    out[f.name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}
                continue
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def reaches_target(self, train_loss: Any) -> bool:
        """Whether an epoch that ends at full-set training loss ``train_loss`` ends the run
        under ``stop_at_train_loss`` (at or below it; never without a target or on NaN)."""
        return (self.stop_at_train_loss is not None and is_number(train_loss)
                and train_loss <= self.stop_at_train_loss)

    def lr_at(self, epoch: int) -> float:
        """The learning rate used throughout epoch ``epoch`` (0-based); see the class docstring."""
        if self.lr_schedule == "constant":
            return self.lr
        if self.lr_schedule == "step":
            return self.lr * self.lr_decay_factor ** sum(1 for m in self.lr_milestones if m <= epoch)
        if epoch < self.lr_decay_start:
            return self.lr
        decay_epochs = self.epochs - self.lr_decay_start
        progress = (epoch - self.lr_decay_start + 1) / decay_epochs
        return self.lr * (self.lr_final / self.lr) ** progress

    @property
    def trial_id(self) -> str:
        """``<model>-<16 hex digits>``: sha256 of the canonical JSON of :meth:`identity`. A factory
        model (``package.module:function``) contributes its function's name only: the id is a
        file name in every store (no ``:`` or ``.``); the hash holds the whole reference."""
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return f"{self.model.rpartition(':')[2]}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"

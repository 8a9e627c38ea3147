"""What a training mode is, without torch: :class:`ModeSpec`, one per registered mode
(:mod:`trainers.modes.registry`), and the parsing of a mode's settings from a YAML block.
A leaf: imports none of the mode implementations, so it stays torch-free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Tuple

from trainers.registry import is_reference, resolve
from trainers.values import is_int


class ModeError(ValueError):
    """A bad mode name or setting: one line naming the field and what is allowed."""


@dataclass(frozen=True)
class ModeSpec:
    """One training mode of the registry.

    ``settings``: ``"module:attr"`` of the mode's settings, a frozen dataclass (in a torch-free
    module: the plan parses them) whose fields are the settings with their defaults, with ``validate(prefix)`` (a :class:`ModeError` naming ``prefix + field``)
    and optionally ``total_epochs(epochs)`` (the epochs the loop runs, default ``epochs``) and
    ``check_against(epochs, prefix)`` (the settings against the config's ``epochs``). Only the
    settings that differ from their defaults enter the trial id, so adding a defaulted setting
    renames no trial.
    ``callbacks``: ``"module:attr"`` of the mode's :class:`trainers.modes.callbacks.ModeCallbacks`
    subclass, imported only to train.
    ``packable``: whether K models of the mode can be trained as one pack (:mod:`trainers.packed`:
    a mode that reads activations through hooks on the model's own modules cannot).
    ``stoppable``: whether a run may end early at ``stop_at_train_loss`` (a mode whose models are
    placed at fixed epochs cannot).
    ``retired``: ``(setting, old value, since, replacement)`` of the settings the mode no longer
    has (``since``: e.g. the issue that retired it): stored configs hold them at the old value,
    which is dropped when read; any other value is an error naming the replacement.
    """

    name: str
    settings: str
    callbacks: str
    packable: bool = False
    stoppable: bool = False
    retired: Tuple[Tuple[str, Any, str, str], ...] = ()

    def __post_init__(self) -> None:
        where = f"mode {self.name}"
        for name in ("settings", "callbacks"):
            if not is_reference(getattr(self, name)):
                raise ModeError(f"{where}: {name} got {getattr(self, name)!r}, allowed: a 'package.module:attr' string")
        for name in ("packable", "stoppable"):
            if not isinstance(getattr(self, name), bool):
                raise ModeError(f"{where}: {name} got {getattr(self, name)!r}, allowed: true or false")
        object.__setattr__(self, "retired", tuple(tuple(entry) for entry in self.retired))

    def settings_class(self) -> type:
        """The settings dataclass ``settings`` names (a ModeError unless it is one)."""
        cls = resolve(self.settings)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and callable(getattr(cls, "validate", None))):
            raise ModeError(f"mode {self.name}: settings {self.settings} is {cls!r}, allowed: a dataclass with "
                            f"validate(prefix)")
        return cls

    def parse(self, values: Any, prefix: str = "mode_settings.") -> Any:
        """The mode's settings built from a mapping (a YAML block; None for the defaults) or
        given as the settings class, validated; an unknown key or a bad value is a ModeError."""
        cls = self.settings_class()
        if isinstance(values, cls):
            values.validate(prefix)
            return values
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise ModeError(f"{prefix.rstrip('.')}: got {values!r}, allowed: a mapping of {self.name} settings")
        known = [f.name for f in dataclasses.fields(cls)]
        values = self._without_retired(values, prefix)
        for key in values:
            if key not in known:
                raise ModeError(f"{prefix}{key}: unknown setting of mode {self.name}, "
                                f"allowed: {', '.join(known) or 'none'}")
        converted = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                value = values[f.name]
                # YAML reads "decay: 1" as an int; the id must not depend on the spelling.
                if isinstance(f.default, float) and is_int(value):
                    value = float(value)
                converted[f.name] = value
        settings = cls(**converted)
        settings.validate(prefix)
        return settings

    def _without_retired(self, values: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
        retired = {name: (old, since, replacement) for name, old, since, replacement in self.retired}
        out = {}
        for key, value in values.items():
            if key in retired:
                old, since, replacement = retired[key]
                if value != old:
                    raise ModeError(f"{prefix}{key}: got {value!r}, retired ({since}), allowed: {old!r}; "
                                    f"use {replacement}")
                continue
            out[key] = value
        return out

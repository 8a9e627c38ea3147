"""The training-mode registry: one :class:`~trainers.modes.spec.ModeSpec` per mode, the
built-in ones listed here. Torch-free: a mode's callbacks are a ``"module:attr"`` string
imported only when :func:`trainers.modes.callbacks.build` builds them.

Adding a mode: its implementation file (a settings dataclass and a ``ModeCallbacks``
subclass), one ``register(ModeSpec(...))`` line (here for a built-in mode, in the extension
module for any other) and its test.
"""

from __future__ import annotations

from typing import Any, Tuple

from trainers.modes.spec import ModeError, ModeSpec
from trainers.registry import Registry

_MODES: Registry[ModeSpec] = Registry("mode", ModeSpec, ModeError)


def register(spec: ModeSpec) -> ModeSpec:
    """Add a mode; an equal spec again is a no-op, another spec under its name a ModeError."""
    return _MODES.register(spec)


def get(name: str) -> ModeSpec:
    """The spec of mode ``name``; an unknown name is a ModeError listing the registered ones."""
    return _MODES.get(name)


def names() -> Tuple[str, ...]:
    """The registered mode names, in registration order (the built-ins first)."""
    return _MODES.names()


def parse_settings(mode: Any, values: Any, *, prefix: str = "mode_settings.") -> Any:
    """The settings of ``mode`` built from a mapping (a YAML block), validated
    (:meth:`ModeSpec.parse`); an unknown mode, key or value is a ModeError naming it."""
    return get(mode).parse(values, prefix)


_SETTINGS, _CALLBACKS = "trainers.modes.settings", "trainers.modes.callbacks"
register(ModeSpec("standard", f"{_SETTINGS}:StandardSettings", f"{_CALLBACKS}:ModeCallbacks", packable=True,
                  stoppable=True))
register(ModeSpec("ema", f"{_SETTINGS}:EmaSettings", f"{_CALLBACKS}:Ema", packable=True, stoppable=True))
register(ModeSpec("imp", f"{_SETTINGS}:ImpSettings", "trainers.modes.imp:Imp", packable=True))
register(ModeSpec("extended_dense", f"{_SETTINGS}:ExtendedDenseSettings", "trainers.modes.imp:ExtendedDense",
                  packable=True))
# Not packable: it reads activations through hooks on the model's own modules, which a packed
# forward pass does not call.
register(ModeSpec("prune_during_training", f"{_SETTINGS}:PruneDuringTrainingSettings",
                  "trainers.modes.prune_during_training:PruneDuringTraining",
                  retired=(("epoch_noise_factor", 79.0, "issue 22",
                            "eval_noise_batches (the test batches noised, Appendix D.1)"),)))

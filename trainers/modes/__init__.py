"""Training modes: how the training loop is driven beyond plain SGD steps.

A mode is chosen by ``TrainConfig.mode`` (the ``mode:`` field of a sweep file) and registered
in :mod:`trainers.modes.registry` (torch-free :class:`ModeSpec` s: its typed settings, whether
it packs and stops early, its callbacks as a lazy ``"module:attr"``). The callbacks
(:mod:`trainers.modes.callbacks` and the modules next to it) are called by the loop and their
state is saved in ``state.pt``.
"""

from trainers.modes.registry import get, names, parse_settings, register
from trainers.modes.spec import ModeError, ModeSpec

__all__ = ["ModeError", "ModeSpec", "get", "names", "parse_settings", "register"]

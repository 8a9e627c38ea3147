"""Training modes: how the training loop is driven beyond plain SGD steps.

A mode is chosen by ``TrainConfig.mode`` (the ``mode:`` field of a sweep file) and has its own
typed settings (:mod:`trainers.modes.settings`, torch-free) and callbacks
(:mod:`trainers.modes.callbacks`) that the loop calls and whose state is saved in ``state.pt``.
"""

from trainers.modes.settings import ModeError, names, parse_settings

__all__ = ["ModeError", "names", "parse_settings"]

"""The checks of a plain value that every config of trainers (and measures) shares.

YAML gives ``true`` as a bool, which Python counts as an int: a hyperparameter that must be
a number rejects it. Torch-free, imported by the configs that ``genzoo sweep plan`` reads.
"""

from __future__ import annotations

import math
from typing import Any


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (NaN and infinity are never a valid setting)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

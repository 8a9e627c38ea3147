"""Checkpoint files: tensors and plain containers only, written atomically, read with
``weights_only=True``.

A run directory holds ``init.pt`` (weights before the first step), ``epoch_<k>.pt`` for the
requested early epochs, ``<model_id>.pt`` for every model the run produced (``final.pt`` for
plain training) and ``state.pt`` (everything needed to resume: model, optimizer, masks, RNG
states, epoch, the mode's own state, the records and model records so far).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

# torch is imported where a tensor is saved or loaded, so that the file names and the
# error type are usable without it (the sweep's plan and store checks).

INIT = "init.pt"
FINAL = "final.pt"
STATE = "state.pt"


def early_name(epoch: int) -> str:
    return f"epoch_{epoch}.pt"


def model_name(model_id: str) -> str:
    """The checkpoint file of one model a trial produced (``final`` -> ``final.pt``)."""
    return f"{model_id}.pt"


def save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint written by :func:`save`; a missing or corrupt file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    return load_bytes(path.read_bytes(), str(path), map_location)


def cpu_state_dict(state: Mapping[str, Any]) -> dict:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file."""


def to_bytes(obj: Any) -> bytes:
    """What :func:`save` writes, as bytes (for a store)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# torch's refusal under weights_only=True opens with advice to load the file with
# weights_only=False; genzoo never does that, so the advice is left out of its errors.
_WEIGHTS_ONLY_FAILED = "Weights only load failed"


def _reason(exc: Exception) -> str:
    """One line saying why torch could not load a checkpoint."""
    text = str(exc)
    if not text.startswith(_WEIGHTS_ONLY_FAILED):
        first = (text.strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
        return f"not a readable checkpoint ({type(exc).__name__}{': ' + first if first else ': empty or truncated'})"
    details = [line.strip() for line in text.splitlines()[1:] if line.strip() and not line.startswith(
        ("Please file an issue", "Check the documentation", "WeightsUnpickler error"))]
    # The line naming the refused global, wherever this torch version puts it (2.6+ opens with
    # numbered advice, the first of which is to load the file unsafely).
    detail = next((d for d in details if "GLOBAL" in d), details[0] if details else "not tensors and plain containers")
    detail = detail.removeprefix("WeightsUnpickler error: ").split(" Please use")[0].strip()
    if "GLOBAL" in detail:
        return (f"refused: it holds objects other than tensors and plain containers ({detail}); "
                "checkpoints are read with weights_only=True, so their code never runs")
    return f"not a readable checkpoint ({detail})"


def load_bytes(data: bytes, name: str, map_location: Any = "cpu") -> Any:
    """Load a checkpoint from bytes (read from a remote store); ``name`` is used in errors."""
    try:
        import torch

        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{name}: {_reason(exc)}") from exc

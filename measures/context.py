"""What a measure family receives for one trained model, and what it returns.

A *family* is a function ``fn(ctx: TrialContext, **settings) -> MeasureOutput`` that computes
one or more related measures (``prunability`` also yields ``pruned_parameter_count`` and
``sum_two_norms_pruned``). The job builds the context from the results store; tests build it
directly from tensors. Nothing here imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from trainers import data
from trainers.config import TrainConfig
from trainers.train import build_model


@dataclass
class TrialContext:
    """One trained model and its data, everything on ``device``.

    ``train_x``/``test_x`` are float images normalized as in training; ``train_y`` are the
    (possibly noisy) training labels the model was trained on; ``noisy`` marks the corrupted
    ones. ``epochs`` are the per-epoch records of the training run (dicts with ``epoch``,
    ``minibatch_loss``, ``train_loss``, ...). ``init_state`` and ``early_state`` are state
    dicts of the initial weights and of the earliest saved early epoch (``None`` if none was
    saved). ``build_model()`` returns a fresh, untrained model of the same architecture on
    ``device``, for measures that need a second copy.
    """

    trial_id: str
    model: nn.Module
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    build_model: Callable[[], nn.Module]
    init_state: Optional[Mapping[str, torch.Tensor]] = None
    early_state: Optional[Mapping[str, torch.Tensor]] = None
    early_epoch: Optional[int] = None
    noisy: Optional[torch.Tensor] = None
    epochs: List[Dict[str, Any]] = field(default_factory=list)
    hparams: Dict[str, Any] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")

    def model_with(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """A fresh copy of the architecture loaded with ``state``, in eval mode."""
        model = self.build_model()
        model.load_state_dict(state)
        return model.eval()


def trial_context(
    config: TrainConfig,
    dataset: data.Dataset,
    *,
    final_state: Mapping[str, torch.Tensor],
    device: torch.device | str,
    init_state: Optional[Mapping[str, torch.Tensor]] = None,
    early_state: Optional[Mapping[str, torch.Tensor]] = None,
    early_epoch: Optional[int] = None,
    epochs: Sequence[Dict[str, Any]] = (),
) -> TrialContext:
    """The context of one trained trial of ``config``: ``dataset`` must be the data it was
    trained on (same subset and label noise); its images are normalized with the dataset's
    statistics and moved to ``device`` with the labels, and the model is rebuilt from
    ``config`` with ``final_state`` loaded, in eval mode. The measures job and the
    benchmarks build their contexts here, so both measure the same thing."""
    device = torch.device(device)

    def build() -> nn.Module:
        return build_model(config, dataset.num_classes, dataset.input_shape).to(device)

    model = build()
    model.load_state_dict(final_state)
    model.eval()
    return TrialContext(
        trial_id=config.trial_id,
        model=model,
        train_x=data.normalize(dataset.train_images.to(device), dataset.mean, dataset.std),
        train_y=dataset.train_labels.to(device),
        test_x=data.normalize(dataset.test_images.to(device), dataset.mean, dataset.std),
        test_y=dataset.test_labels.to(device),
        build_model=build,
        init_state=init_state,
        early_state=early_state,
        early_epoch=early_epoch if early_state is not None else None,
        noisy=dataset.noisy.to(device),
        epochs=list(epochs),
        hparams=config.to_dict(),
        device=device,
    )


@dataclass
class MeasureOutput:
    """Scalar measures by name, plus optional long tables (column name -> list of values).

    ``tables`` holds per-example or per-fraction results, e.g. ``{"el2n": {"index": [...],
    "score": [...], "noisy": [...]}}``; the job adds ``trial_id`` and writes each table to
    ``<experiment>/<table name>/<trial_id>.parquet``. ``info`` holds per-measure details
    worth keeping (number of loss evaluations, the σ found, ...); they are stored with the
    row as JSON.
    """

    values: Dict[str, float]
    tables: Dict[str, Dict[str, list]] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)

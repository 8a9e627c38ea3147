"""A stored model of a zoo, ready to use: the trained network with its dataset's normalization
in front (what :func:`sweep.reader.load_model` returns).

Training normalizes every batch on the device with :func:`trainers.data.normalize` (uint8
images -> ``(x / 255 - mean) / std`` per channel, the dataset's mean and std); the network
itself never sees anything else. :class:`ZooModel` applies that same function to its input,
so that ``model(images)`` takes the dataset's images as they are stored (uint8 ``N×C×H×W``,
as :func:`sweep.reader.load_data` gives them) and gives exactly the logits training and
the measures computed.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from trainers.config import TrainConfig
from trainers.data import DatasetError, normalize


class ZooModel(nn.Module):
    """The model ``(trial_id, model_id)`` of an experiment, taking the dataset's images.

    ``forward(images)``: ``images`` uint8 ``N×C×H×W`` with values 0..255 (the dataset as
    stored) are normalized by :func:`trainers.data.normalize`, the function training uses, so
    the logits are bit for bit those of training's evaluation. Floating-point images are read
    as pixel values in [0, 1] (``x / 255``, torchvision's ``ToTensor`` convention) and
    normalized with the same mean and std (differentiable, for attacks and input gradients).
    Already-normalized inputs go to :attr:`model`.

    Attributes: ``model`` (the trained network as built by ``trainers.models.build``; its
    ``state_dict()`` is the stored checkpoint; it takes normalized float inputs), ``mean`` and
    ``std`` (per channel, in [0, 1] pixel units), ``trial_id``, ``model_id``, ``config`` (the
    trial's :class:`~trainers.config.TrainConfig`). :meth:`normalize` is the transform alone.
    The parameters are those of ``model`` (named ``model.<name>``); mean and std are not
    parameters and not in the state dict.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], *, trial_id: str,
                 model_id: str, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.mean: Tuple[float, ...] = tuple(float(v) for v in mean)
        self.std: Tuple[float, ...] = tuple(float(v) for v in std)
        self.trial_id = trial_id
        self.model_id = model_id
        self.config = config

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """The input of :attr:`model` for ``images`` (uint8 0..255, or float in [0, 1])."""
        if images.dtype == torch.uint8:
            return normalize(images, self.mean, self.std)
        if not images.is_floating_point():
            raise DatasetError(f"images: got {images.dtype}, allowed: uint8 pixels 0..255 (as stored) "
                               "or floating-point pixels in [0, 1]")
        if images.dim() != 4 or images.shape[1] != len(self.mean):
            raise DatasetError(f"images: got shape {tuple(images.shape)}, allowed: N×{len(self.mean)}×H×W")
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(shape)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(shape)
        return (images - mean) / std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(images))

    def extra_repr(self) -> str:
        return f"trial_id={self.trial_id!r}, model_id={self.model_id!r}, mean={self.mean}, std={self.std}"

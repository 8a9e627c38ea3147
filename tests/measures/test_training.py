"""Training-curve measures against hand sums and numpy cross-entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from measures.context import TrialContext
from measures.registry import FAMILIES
from measures.training import TrainingMeasureError, recalibrated_copy, sum_of_train_losses, training


class LinearBN(nn.Module):
    """linear 3→2 → BatchNorm1d: eval-mode output depends on the running statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


def numpy_cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def make_model_and_data(n: int = 41):
    torch.manual_seed(0)
    model = LinearBN().double()
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.tensor([0.5, -0.5]))
        model.bn.running_var.copy_(torch.tensor([2.0, 0.5]))
        model.bn.weight.copy_(torch.tensor([1.5, 0.7]))
        model.bn.bias.copy_(torch.tensor([0.1, -0.2]))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=generator, dtype=torch.float64) + 1.0
    y = torch.randint(0, 2, (n,), generator=generator)
    return model, x, y


def make_ctx(model, x, y, epochs):
    return TrialContext(trial_id="t", model=model, train_x=x, train_y=y, test_x=x, test_y=y,
                        build_model=LinearBN, epochs=epochs)


def numpy_logits(model: LinearBN, x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    h = x @ model.fc.weight.detach().numpy().T + model.fc.bias.detach().numpy()
    bn = model.bn
    return (h - mean) / np.sqrt(var + bn.eps) * bn.weight.detach().numpy() + bn.bias.detach().numpy()


EPOCHS = [
    {"epoch": 0, "minibatch_loss": 2.0, "train_loss": 1.9},
    {"epoch": 1, "minibatch_loss": 1.5, "train_loss": 1.4},
    {"epoch": 2, "minibatch_loss": 0.25, "train_loss": 0.2},
]


def test_sum_of_train_losses_is_negative_hand_sum_of_minibatch_losses():
    assert sum_of_train_losses(EPOCHS) == -3.75


def test_sum_of_train_losses_of_diverged_run_is_nan():
    assert math.isnan(sum_of_train_losses(EPOCHS + [{"epoch": 3, "minibatch_loss": float("inf")}]))


@pytest.mark.parametrize(
    "epochs, field",
    [([], "empty"), ([{"epoch": 0, "train_loss": 1.0}], "minibatch_loss"), (EPOCHS + [EPOCHS[0]], "twice")],
)
def test_sum_of_train_losses_rejects_bad_records(epochs, field):
    with pytest.raises(TrainingMeasureError, match=field):
        sum_of_train_losses(epochs)


def test_train_loss_uses_eval_mode_running_statistics():
    model, x, y = make_model_and_data()
    output = training(make_ctx(model, x, y, EPOCHS), batch_size=16)
    logits = numpy_logits(model, x.numpy(), np.array([0.5, -0.5]), np.array([2.0, 0.5]))
    assert output.values["train_loss"] == pytest.approx(numpy_cross_entropy(logits, y.numpy()), rel=1e-6)  # float32 logits
    assert output.values["sum_of_train_losses"] == -3.75
    assert output.info["train_acc"] == pytest.approx(np.mean(logits.argmax(axis=1) == y.numpy()))


def test_recalibration_reestimates_running_statistics_without_touching_the_model():
    model, x, y = make_model_and_data()
    recalibrated = recalibrated_copy(model, x, batch_size=len(x))  # one batch: exact statistics
    h = (x @ model.fc.weight.T + model.fc.bias).detach().numpy()
    np.testing.assert_allclose(recalibrated.bn.running_mean.numpy(), h.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(recalibrated.bn.running_var.numpy(), h.var(axis=0, ddof=1), rtol=1e-10)
    assert torch.equal(model.bn.running_mean, torch.tensor([0.5, -0.5], dtype=torch.float64))
    assert not recalibrated.training

    output = training(make_ctx(model, x, y, EPOCHS), recalibrate_bn=True, batch_size=len(x))
    logits = numpy_logits(model, x.numpy(), h.mean(axis=0), h.var(axis=0, ddof=1))
    assert output.values["train_loss"] == pytest.approx(numpy_cross_entropy(logits, y.numpy()), rel=1e-6)  # float32 logits


def test_training_family_is_registered_and_repeatable():
    model, x, y = make_model_and_data()
    ctx = make_ctx(model, x, y, EPOCHS)
    assert training(ctx).values == training(ctx).values
    assert FAMILIES["training"].needs == ("epochs",)
    assert FAMILIES["training"].measures == ("sum_of_train_losses", "train_loss")

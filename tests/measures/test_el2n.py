"""EL2N against a manual numpy softmax computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from measures.context import TrialContext
from measures.registry import FAMILIES
from measures.el2n import EL2NError, el2n, el2n_scores


def numpy_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def make_ctx(early_state=None, noisy=None, n: int = 37):
    torch.manual_seed(0)
    final = nn.Linear(4, 3).double()
    early = nn.Linear(4, 3).double()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=generator)
    ctx = TrialContext(
        trial_id="t", model=final, train_x=x, train_y=y, test_x=x, test_y=y,
        build_model=lambda: nn.Linear(4, 3).double(),
        early_state=early.state_dict() if early_state is None else early_state, early_epoch=2, noisy=noisy,
    )
    return ctx, early, final


def test_el2n_scores_and_final_losses_match_manual_softmax():
    noisy = torch.zeros(37, dtype=torch.bool)
    noisy[[3, 10]] = True
    ctx, early, final = make_ctx(noisy=noisy)
    x, y = ctx.train_x.numpy(), ctx.train_y.numpy()
    onehot = np.eye(3)[y]
    early_logits = x @ early.weight.detach().numpy().T + early.bias.detach().numpy()
    expected_scores = np.linalg.norm(numpy_softmax(early_logits) - onehot, axis=1)
    final_logits = x @ final.weight.detach().numpy().T + final.bias.detach().numpy()
    expected_losses = -np.log(numpy_softmax(final_logits)[np.arange(len(y)), y])

    output = el2n(ctx, batch_size=8)
    table = output.tables["el2n"]
    assert table["index"] == list(range(37))
    np.testing.assert_allclose(table["score"], expected_scores, rtol=1e-10)
    np.testing.assert_allclose(table["loss"], expected_losses, rtol=1e-10)
    assert table["noisy"] == noisy.tolist()
    assert output.values["el2n"] == pytest.approx(expected_scores.mean(), rel=1e-10)
    assert output.info["early_epoch"] == 2


def test_el2n_score_is_bounded_by_sqrt_two_and_zero_for_a_confident_correct_prediction():
    model = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[100.0, 0.0], [0.0, 100.0]]))
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    scores = el2n_scores(model, x, torch.tensor([0, 1]))
    # Right and confident: p = onehot(y). Wrong and confident: ||e_0 − e_1|| = √2.
    np.testing.assert_allclose(scores.numpy(), [0.0, np.sqrt(2)], atol=1e-12)


def test_el2n_without_noise_mask_marks_no_example_noisy():
    ctx, _, _ = make_ctx()
    assert el2n(ctx).tables["el2n"]["noisy"] == [False] * 37


def test_el2n_without_early_checkpoint_raises_one_line_error():
    ctx, _, _ = make_ctx()
    ctx.early_state = None
    with pytest.raises(EL2NError, match="^el2n needs an early checkpoint: set checkpoint_epochs in the sweep$"):
        el2n(ctx)
    assert FAMILIES["el2n"].needs == ("early",)


def test_el2n_rejects_noise_mask_of_wrong_length():
    ctx, _, _ = make_ctx(noisy=torch.zeros(5, dtype=torch.bool))
    with pytest.raises(EL2NError, match="noisy"):
        el2n(ctx)

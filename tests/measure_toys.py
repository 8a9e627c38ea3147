"""Small models and data shared by the measure tests (importable because pytest puts tests/
on sys.path, see pyproject.toml)."""

import torch
import torch.nn.functional as F
from torch import nn

from measures.context import TrialContext


def tiny_network() -> nn.Module:
    """87 parameters: conv (3→2 channels, 3×3) + BatchNorm with non-trivial running statistics
    + ReLU + linear (8→3), in float64 and eval mode: small enough for a dense Hessian."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        bn = model[1]
        bn.running_mean.copy_(0.1 * torch.randn(2))
        bn.running_var.copy_(torch.rand(2) + 0.5)
        bn.weight.copy_(torch.rand(2) + 0.5)
        bn.bias.copy_(0.1 * torch.randn(2))
    return model.double().eval()


def tiny_data():
    """64 random float64 3×4×4 inputs with 3 classes, for :func:`tiny_network`."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, 4, 4, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=generator)
    return x, y


def synthetic_data(n: int, seed: int):
    """Three noisy class prototypes on 1×8×8 images: learnable but not trivially separable."""
    prototypes = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(99))
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=generator)
    x = prototypes[y] + 5.0 * torch.randn(n, 1, 8, 8, generator=generator)
    return x, y


def toy_classifier() -> nn.Module:
    """A two-conv classifier with BatchNorm for :func:`synthetic_data`."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 3),
    )


def trained_toy_context(trial_id: str, test_size: int) -> TrialContext:
    """:func:`toy_classifier` trained for 25 Adam steps on 256 synthetic examples."""
    torch.manual_seed(0)
    model = toy_classifier()
    x, y = synthetic_data(256, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    test_x, test_y = synthetic_data(test_size, 2)
    return TrialContext(trial_id=trial_id, model=model.eval(), train_x=x, train_y=y, test_x=test_x,
                        test_y=test_y, build_model=toy_classifier)


def non_finite_family(ctx, scale: float = 1.0):
    """A measure family whose values are finite, infinite and NaN (the measures job's handling
    of non-finite values)."""
    from measures.context import MeasureOutput

    return MeasureOutput(values={"finite": scale, "infinite": float("inf"), "undefined": float("nan")},
                         tables={}, info={"scale": scale})

"""A dataset as one trial sees it: a seeded training subset, then random label noise."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from trainers.data import registry
from trainers.data.sources import Dataset, DatasetError, PathLike, RawDataset, _generator, data_root, get


def corrupt_labels(labels: torch.Tensor, num_classes: int, fraction: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random label noise: ``(new_labels, noisy_mask)``.

    Jin, Carbin, Roy, Frankle & Dziugaite, *Pruning's effect on generalization through the lens
    of training and regularization* (NeurIPS 2022), Section 4 "Method": select p% of the examples uniformly
    at random and give each a label drawn uniformly from the *other* classes. Exactly
    ``round(fraction * N)`` examples change (Python's ``round``: halves go to the even
    integer). The examples are the first ones of a random permutation, and the new label is
    ``(label + k) mod num_classes`` with ``k`` uniform in ``1..num_classes-1``, which is
    uniform over the other classes. Randomness: a CPU generator seeded with
    ``derive_seed(seed, "label_noise")``. The input is not modified.
    """
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0.0 <= fraction < 1.0:
        raise DatasetError(f"label_noise: got {fraction!r}, allowed: a fraction in [0, 1)")
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    n = labels.numel()
    count = round(fraction * n)
    noisy = torch.zeros(n, dtype=torch.bool)
    if count == 0:
        return labels.clone(), noisy
    if num_classes < 2:
        raise DatasetError(f"num_classes: got {num_classes}, label noise needs at least 2 classes")
    generator = _generator(seed, "label_noise")
    chosen = torch.randperm(n, generator=generator)[:count]
    shift = torch.randint(1, num_classes, (count,), generator=generator)
    new_labels = labels.clone()
    new_labels[chosen] = (labels[chosen] + shift) % num_classes
    noisy[chosen] = True
    return new_labels, noisy


def subset_indices(available: int, train_size: Optional[int], seed: int) -> torch.Tensor:
    """Sorted indices of the ``train_size`` examples a trial keeps (all when ``None``).

    The first ``train_size`` entries of a permutation from a CPU generator seeded with
    ``derive_seed(seed, "subset")``, sorted so that ``train_size == available`` keeps the
    dataset unchanged.
    """
    if train_size is None:
        return torch.arange(available)
    if isinstance(train_size, bool) or not isinstance(train_size, int) or not 1 <= train_size <= available:
        raise DatasetError(f"train_size: got {train_size!r}, allowed: an integer in [1, {available}] or None")
    order = torch.randperm(available, generator=_generator(seed, "subset"))
    return order[:train_size].sort().values


def load(
    name: str,
    root: Optional[PathLike] = None,
    *,
    train_size: Optional[int] = None,
    label_noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """The dataset ``name`` as one trial sees it: a seeded training subset, then label noise.

    ``train_size`` keeps that many training examples (:func:`subset_indices`); label noise
    corrupts ``round(label_noise * N)`` of the N kept examples (:func:`corrupt_labels`).
    The test set is never subset nor corrupted.
    """
    raw = get(name)(data_root(root))
    _check_against_spec(name, raw)
    keep = subset_indices(len(raw.train_labels), train_size, seed)
    clean = raw.train_labels[keep]
    noisy_labels, noisy = corrupt_labels(clean, raw.num_classes, label_noise, seed)
    return Dataset(
        name=name,
        train_images=raw.train_images[keep],
        train_labels=noisy_labels,
        test_images=raw.test_images,
        test_labels=raw.test_labels,
        num_classes=raw.num_classes,
        noisy=noisy,
        clean_train_labels=clean,
        mean=tuple(raw.mean),  # type: ignore[arg-type]
        std=tuple(raw.std),  # type: ignore[arg-type]
    )


def _check_against_spec(name: str, raw: RawDataset) -> None:
    """The loader returned the classes and example shape its spec says (what the plan checked
    the model against). The sizes are not checked: a data root may hold a smaller copy."""
    spec = registry.get(name)
    got = {"classes": raw.num_classes, "input_shape": tuple(int(v) for v in raw.train_images.shape[1:])}
    for key, value in got.items():
        if value != getattr(spec, key):
            raise DatasetError(f"dataset {name}: its loader gives {key} {value!r}, its spec says "
                               f"{getattr(spec, key)!r}; allowed: the spec's (trainers.data.registry)")

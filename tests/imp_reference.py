"""An independent computation of the third paper's EL2N subgroup loss differences, shared by
the imp section's unit test and the imp zoo's end-to-end test."""

import numpy as np


def subgroup_differences(el2n, trial, sparse_model_id, groups=20):
    """Mean (sparse − dense) training loss per EL2N group of equal size, groups ordered by the
    dense model's score (stable sort), for one trial's rows of the ``el2n`` table."""
    rows = el2n[el2n.trial_id == trial]
    dense = rows[rows.model_id == "level_00"].sort_values("index")
    sparse = rows[rows.model_id == sparse_model_id].sort_values("index")
    order = np.argsort(dense.score.to_numpy(), kind="stable")
    difference = sparse.loss.to_numpy() - dense.loss.to_numpy()
    return [chunk.mean() for chunk in np.array_split(difference[order], groups)]

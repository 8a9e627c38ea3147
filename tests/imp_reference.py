"""An independent computation of the third paper's EL2N subgroup loss differences, shared by
the imp section's unit test and the imp zoo's end-to-end test."""

import numpy as np


def subgroup_differences(el2n, trial, sparse_model_id, groups=20):
    """Mean (sparse − dense) training loss per EL2N group of equal size, groups ordered by the
    dense model's score (stable sort), for one trial's rows of the ``el2n`` table. With n
    examples not a multiple of the groups, group g holds the ranks ceil(g·n/M) to
    ceil((g+1)·n/M) − 1 (sizes differ by at most one, the larger ones spread over the range),
    the convention analysis/imp.py states."""
    rows = el2n[el2n.trial_id == trial]
    dense = rows[rows.model_id == "level_00"].sort_values("index")
    sparse = rows[rows.model_id == sparse_model_id].sort_values("index")
    order = np.argsort(dense.score.to_numpy(), kind="stable")
    difference = (sparse.loss.to_numpy() - dense.loss.to_numpy())[order]
    n = len(difference)
    bounds = [-(-g * n // groups) for g in range(groups + 1)]  # ceil(g·n/M) in integers
    return [difference[bounds[g]:bounds[g + 1]].mean() for g in range(groups)]

"""The measures' settings constants and choice lists, defined once and torch-free, so that the
registry (and with it ``genzoo sweep plan``, which validates a sweep's ``measures:`` block)
does not import torch. Each measure module imports its own constants from here."""

from typing import Tuple

# Every family: batch size of full-set evaluations.
EVAL_BATCH_SIZE = 1024

# prunability, random_prunability, pruning_vs_perturbation (measures/pruning.py)
SEARCHES = ("scan", "bisection", "linear")
DEFAULT_SEARCH = "scan"
DEFAULT_RESOLUTION = 0.005
DEFAULT_COARSE_STEP = 0.05
DEFAULT_FRACTIONS: Tuple[float, ...] = tuple(round(1.0 - i / 10, 10) for i in range(11))

# pac_bayes (measures/perturbation.py)
PARAMETER_SETS = ("all", "weights")

# norms (measures/norms.py)
PARAMETER_COUNT_OF = ("all", "weights")

# margins, output_margin_stats (measures/margins.py)
STATS = ("q1", "median", "q3", "upper_fence", "lower_fence")
EPSILON_PLACEMENTS = ("add", "sqrt")
DEFAULT_NUM_EXAMPLES = 5000
DEFAULT_BATCH_SIZE = 256
DEFAULT_EPSILON = 1e-6

# flatness (measures/flatness.py, measures/hessian.py)
METHODS = ("lanczos", "power")
EPS_SEARCHES = ("bisect", "scan")
EPS_SPLITS = ("hessian", "train", "test")
EPS_REPORTS = ("last_passing", "first_failing")
TIC_TRACES = ("hutchinson", "top_k")
SPLITS = ("train", "test")
PARAMS_CHOICES = ("all", "weights")
HVP_MODES = ("forward_over_reverse", "reverse_over_reverse")
TRACE_METHODS = ("deflated", "hutchinson")

"""The published claims of a paper, as data: one YAML file per paper (shipped in
``sweep/presets/papers/``, read by ``sweep`` and handed here as a parsed mapping), validated
into frozen dataclasses with one-line errors naming the field.

A paper file::

    paper: robustness_to_pruning            # its name (= the file's stem)
    title: ...                              # the paper's title
    citation: ...                           # authors and venue
    default_experiments: [demogen]          # compared when a preset names only the paper
    measures:                               # genzoo's measure -> the paper's row
      sum_of_fro: {paper: Frobenius-norm, sign: 1, note: ...}
    experiments:
      demogen:
        title: ...                          # what the paper did (table, figure)
        protocol:                           # what a zoo must match to be "the paper's protocol"
          dataset: [cifar10]                # datasets (any of them)
          architecture: [nin]               # genzoo model names (any of them)
          axes: [width, dropout, ...]       # hyperparameter axes the paper varies (null: not a grid)
          models: 324                       # the paper's number of models or runs
          axis_values: {width: 3, ...}      # values per axis (the paper's own ψ standard errors)
          tau_se: 0.037                     # the s_τ the paper states, when it states one
          training: ...                     # free text: optimizer, epochs, stopping rule
        anchor: prunability                 # the measure of its Table 3 (cmi_anchor claims)
        claims:
          - {id: t1.prunability.tau, ref: Table 1, statistic: kendall_tau, measure: prunability, value: 0.6496}

A claim has an ``id`` (unique in the file), the paper's reference ``ref``, a ``statistic``
(:data:`STATISTICS`) with the parameters that statistic needs, and either the paper's
``value`` (its sign is the claim's direction) or, where the paper gives only a direction,
``direction`` (``positive``, ``negative``); optional ``paper_n`` (the models or runs behind the
value), ``statement`` (what the paper says, in its words) and ``note`` (how genzoo computes it).

The measure map gives the orientation: ``sign: -1`` means genzoo's value is the negative of
the paper's, so signed statistics of that measure are multiplied by −1 before they are
compared (every mapped measure of the three papers has ``sign: 1``: genzoo stores
``sum_of_train_losses`` already negated, as the first paper's "negative sum of train losses").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from analysis.errors import AnalysisError

# statistic -> (kind, required parameters, optional parameters). "signed" statistics are
# judged by their sign and interval, "magnitude" ones (no sign) by their size against the
# paper's (analysis.against_paper.verdict).
STATISTICS: Dict[str, Tuple[str, Tuple[str, ...], Tuple[str, ...]]] = {
    # Kendall's τ between a measure and a target (gap, test_loss, test_error).
    "kendall_tau": ("signed", ("measure",), ("target",)),
    # ψ_i: granulated Kendall along one axis (a trials column).
    "psi_axis": ("signed", ("measure", "axis"), ("target",)),
    # ψ: the mean of the ψ_i over the zoo's axes.
    "psi": ("signed", ("measure",), ("target",)),
    # Univariate adjusted R² of the target on the measure.
    "adjusted_r2": ("magnitude", ("measure",), ("target",)),
    # Conditional mutual information K (Jiang variant) between measure and target.
    "cmi": ("magnitude", ("measure",), ("target",)),
    # K between the experiment's anchor measure and ``measure`` (first paper, Table 3).
    "cmi_anchor": ("magnitude", ("measure",), ()),
    # Correlation over the runs of a pruning-during-training zoo: x and y are run columns
    # (stability, test_acc, gap) or measures; ``select`` filters the runs by column values.
    "correlation": ("signed", ("x", "y", "method"), ("select",)),
    # mean(y over the runs matching a) − mean(y over the runs matching b).
    "mean_difference": ("signed", ("y", "a", "b"), ()),
    # IMP (third paper); ``noise``: "clean" (label_noise 0) or "noisy" (label_noise > 0).
    "imp_improvement": ("signed", ("noise",), ()),
    "imp_improvement_vs_noise": ("signed", (), ()),
    "imp_train_loss_change": ("signed", ("noise",), ()),
    "imp_noisy_gap_change": ("signed", ("noise",), ()),
    "imp_extended_minus_imp": ("signed", ("noise",), ()),
    "imp_width_minus_imp": ("signed", ("noise",), ()),
}
TARGET_NAMES = ("gap", "test_loss", "test_error")
METHODS = ("pearson", "kendall")
NOISE = ("clean", "noisy")
DIRECTIONS = {"positive": 1, "negative": -1, "zero": 0}


@dataclass(frozen=True)
class MeasureMapping:
    """The paper's name for a genzoo measure and the orientation: genzoo value × ``sign`` is
    the paper's."""

    paper: str
    sign: int = 1
    note: str = ""


@dataclass(frozen=True)
class Claim:
    id: str
    ref: str
    statistic: str
    params: Mapping[str, Any]
    value: Optional[float]
    direction: int
    paper_n: Optional[int] = None
    statement: str = ""
    note: str = ""

    @property
    def kind(self) -> str:
        return STATISTICS[self.statistic][0]


@dataclass(frozen=True)
class Protocol:
    dataset: Tuple[str, ...] = ()
    architecture: Tuple[str, ...] = ()
    axes: Optional[Tuple[str, ...]] = None
    models: Optional[int] = None
    training: str = ""
    axis_values: Mapping[str, int] = field(default_factory=dict)
    tau_se: Optional[float] = None


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    protocol: Protocol
    claims: Tuple[Claim, ...]
    anchor: str = "prunability"


@dataclass(frozen=True)
class Paper:
    name: str
    title: str
    citation: str
    measures: Mapping[str, MeasureMapping]
    experiments: Mapping[str, Experiment]
    default_experiments: Tuple[str, ...]

    def paper_name(self, measure: Optional[str]) -> str:
        """The paper's row name of a genzoo measure (the measure's own name when unmapped)."""
        if measure is None:
            return ""
        mapping = self.measures.get(measure)
        return mapping.paper if mapping else measure

    def sign(self, measure: Optional[str]) -> int:
        mapping = self.measures.get(measure) if measure else None
        return mapping.sign if mapping else 1


@dataclass(frozen=True)
class PaperComparison:
    """What a preset's ``analysis: {paper: ...}`` asks for: the ``paper``, the names of its
    ``experiments`` to compare with, and the preset's own protocol ``differences`` (free text,
    stated with every verdict)."""

    paper: Paper
    experiments: Tuple[str, ...]
    differences: Tuple[str, ...] = field(default=())


def _fail(where: str, message: str) -> AnalysisError:
    return AnalysisError(f"{where}: {message}")


def _text(value: Any, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"got {value!r}, allowed: a non-empty string")
    return value.strip()


def _strings(value: Any, where: str) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(where, f"got {value!r}, allowed: a list of strings")
    return tuple(value)


def _mapping(value: Any, where: str, allowed: Tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"got {value!r}, allowed: a mapping with keys {', '.join(allowed)}")
    for key in value:
        if key not in allowed:
            raise _fail(f"{where}.{key}", f"unknown field, allowed: {', '.join(allowed)}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise _fail(where, f"got {value!r}, allowed: a finite number")
    return float(value)


def _selection(value: Any, where: str) -> Mapping[str, Any]:
    """Run column -> a value or a non-empty list of values (any of them)."""
    scalar = (str, int, float, bool)
    if not isinstance(value, dict) or not value or not all(
            isinstance(k, str) and (isinstance(v, scalar) or (isinstance(v, list) and v
                                                                and all(isinstance(x, scalar) for x in v)))
            for k, v in value.items()):
        raise _fail(where, f"got {value!r}, allowed: a mapping of run column -> value or list of values")
    return dict(value)


CLAIM_FIELDS = ("id", "ref", "statistic", "value", "direction", "paper_n", "statement", "note", "measure", "axis",
                "target", "x", "y", "method", "select", "a", "b", "noise")


def parse_claim(item: Any, where: str) -> Claim:
    item = _mapping(item, where, CLAIM_FIELDS)
    claim_id = _text(item.get("id"), f"{where}.id")
    where = f"{where} ({claim_id})"
    statistic = item.get("statistic")
    if statistic not in STATISTICS:
        raise _fail(f"{where}.statistic", f"got {statistic!r}, allowed: {', '.join(STATISTICS)}")
    kind, required, optional = STATISTICS[statistic]
    params: Dict[str, Any] = {}
    for name in required + optional:
        if name not in item:
            if name in required:
                raise _fail(f"{where}.{name}", f"missing; statistic {statistic} needs {', '.join(required)}")
            continue
        value = item[name]
        if name == "target":
            if value not in TARGET_NAMES:
                raise _fail(f"{where}.target", f"got {value!r}, allowed: {', '.join(TARGET_NAMES)}")
        elif name == "method":
            if value not in METHODS:
                raise _fail(f"{where}.method", f"got {value!r}, allowed: {', '.join(METHODS)}")
        elif name == "noise":
            if value not in NOISE:
                raise _fail(f"{where}.noise", f"got {value!r}, allowed: {', '.join(NOISE)}")
        elif name in ("select", "a", "b"):
            value = _selection(value, f"{where}.{name}")
        else:
            value = _text(value, f"{where}.{name}")
        params[name] = value
    extra = [k for k in ("measure", "axis", "target", "x", "y", "method", "select", "a", "b", "noise")
             if k in item and k not in required + optional]
    if extra:
        raise _fail(f"{where}.{extra[0]}", f"not a parameter of statistic {statistic} "
                                           f"(it takes {', '.join(required + optional) or 'none'})")
    value = _number(item["value"], f"{where}.value") if item.get("value") is not None else None
    if "direction" in item and item["direction"] is not None:
        if item["direction"] not in DIRECTIONS:
            raise _fail(f"{where}.direction", f"got {item['direction']!r}, allowed: {', '.join(DIRECTIONS)}")
        direction = DIRECTIONS[item["direction"]]
        if value is not None and (value > 0) - (value < 0) != direction:
            raise _fail(f"{where}.direction", f"{item['direction']} disagrees with value {value:g}")
    elif value is not None:
        direction = (value > 0) - (value < 0)
    else:
        raise _fail(where, "needs the paper's value or its direction (positive, negative)")
    if kind == "magnitude" and (value is None or value <= 0):
        raise _fail(f"{where}.value", f"statistic {statistic} is compared by size: needs the paper's value > 0")
    paper_n = item.get("paper_n")
    if paper_n is not None and (isinstance(paper_n, bool) or not isinstance(paper_n, int) or paper_n < 1):
        raise _fail(f"{where}.paper_n", f"got {paper_n!r}, allowed: a positive integer")
    return Claim(id=claim_id, ref=_text(item.get("ref"), f"{where}.ref"), statistic=statistic, params=params,
                 value=value, direction=direction, paper_n=paper_n,
                 statement=_text(item.get("statement"), f"{where}.statement", required=False),
                 note=_text(item.get("note"), f"{where}.note", required=False))


def parse_paper(document: Any, source: str) -> Paper:
    """A paper file's mapping (``source`` names it in errors) as a :class:`Paper`."""
    document = _mapping(document, source, ("paper", "title", "citation", "default_experiments", "measures",
                                           "experiments"))
    name = _text(document.get("paper"), f"{source}: paper")
    measures: Dict[str, MeasureMapping] = {}
    for measure, entry in (document.get("measures") or {}).items():
        where = f"{source}: measures.{measure}"
        entry = _mapping(entry, where, ("paper", "sign", "note"))
        sign = entry.get("sign", 1)
        if sign not in (1, -1):
            raise _fail(f"{where}.sign", f"got {sign!r}, allowed: 1 or -1")
        measures[str(measure)] = MeasureMapping(paper=_text(entry.get("paper"), f"{where}.paper"), sign=sign,
                                                note=_text(entry.get("note"), f"{where}.note", required=False))
    experiments: Dict[str, Experiment] = {}
    raw = document.get("experiments")
    if not isinstance(raw, dict) or not raw:
        raise _fail(f"{source}: experiments", "missing or empty; allowed: a mapping of name -> experiment")
    seen: set = set()
    for exp_name, entry in raw.items():
        where = f"{source}: experiments.{exp_name}"
        entry = _mapping(entry, where, ("title", "protocol", "anchor", "claims"))
        protocol_raw = _mapping(entry.get("protocol") or {}, f"{where}.protocol",
                                ("dataset", "architecture", "axes", "models", "training", "axis_values", "tau_se"))
        models = protocol_raw.get("models")
        if models is not None and (isinstance(models, bool) or not isinstance(models, int) or models < 1):
            raise _fail(f"{where}.protocol.models", f"got {models!r}, allowed: a positive integer")
        axis_values = protocol_raw.get("axis_values") or {}
        if not isinstance(axis_values, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 2
                for k, v in axis_values.items()):
            raise _fail(f"{where}.protocol.axis_values", f"got {axis_values!r}, allowed: a mapping of axis -> "
                                                         f"number of values (at least 2)")
        tau_se = protocol_raw.get("tau_se")
        if tau_se is not None:
            tau_se = _number(tau_se, f"{where}.protocol.tau_se")
            if tau_se <= 0:
                raise _fail(f"{where}.protocol.tau_se", f"got {tau_se!r}, allowed: a positive number")
        protocol = Protocol(
            dataset=_strings(protocol_raw.get("dataset", []), f"{where}.protocol.dataset"),
            architecture=_strings(protocol_raw.get("architecture", []), f"{where}.protocol.architecture"),
            axes=(None if protocol_raw.get("axes") is None
                  else _strings(protocol_raw["axes"], f"{where}.protocol.axes")),
            models=models,
            training=_text(protocol_raw.get("training"), f"{where}.protocol.training", required=False),
            axis_values=dict(axis_values), tau_se=tau_se,
        )
        claims_raw = entry.get("claims")
        if not isinstance(claims_raw, list) or not claims_raw:
            raise _fail(f"{where}.claims", "missing or empty; allowed: a list of claims")
        claims = []
        for index, item in enumerate(claims_raw):
            claim = parse_claim(item, f"{where}.claims[{index}]")
            if claim.id in seen:
                raise _fail(f"{where}.claims[{index}].id", f"{claim.id!r} is used twice in the file")
            seen.add(claim.id)
            claims.append(claim)
        experiments[str(exp_name)] = Experiment(
            name=str(exp_name), title=_text(entry.get("title"), f"{where}.title"), protocol=protocol,
            claims=tuple(claims), anchor=_text(entry.get("anchor", "prunability"), f"{where}.anchor"))
    defaults = _strings(document.get("default_experiments", list(experiments)[:1]), f"{source}: default_experiments")
    for exp_name in defaults:
        if exp_name not in experiments:
            raise _fail(f"{source}: default_experiments", f"{exp_name!r} is not an experiment "
                                                          f"(allowed: {', '.join(experiments)})")
    return Paper(name=name, title=_text(document.get("title"), f"{source}: title"),
                 citation=_text(document.get("citation"), f"{source}: citation"), measures=measures,
                 experiments=experiments, default_experiments=defaults)


def choose(paper: Paper, experiments: Optional[List[str]], differences: Optional[List[str]], where: str
           ) -> PaperComparison:
    """The :class:`PaperComparison` of a preset: ``experiments`` (None: the paper's defaults)
    must be experiments of the paper."""
    names = tuple(experiments) if experiments else paper.default_experiments
    for name in names:
        if name not in paper.experiments:
            raise _fail(f"{where}.experiments", f"{name!r} is not an experiment of paper {paper.name} "
                                                f"(allowed: {', '.join(paper.experiments)})")
    return PaperComparison(paper=paper, experiments=names, differences=tuple(differences or ()))

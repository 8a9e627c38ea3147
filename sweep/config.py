"""Sweep files: YAML read with :func:`trainers.yamlio.load` (YAML 1.2 numbers), validated into frozen dataclasses, expanded
into one :class:`~trainers.config.TrainConfig` per grid point.

A sweep file::

    experiment: demo            # folder name in the store
    dataset: digits             # shorthand for train.dataset
    model: nin                  # shorthand for train.model
    train: {epochs: 8, lr: 0.05}        # fixed TrainConfig fields
    grid: {width: [16, 32], depth: [2, 3]}  # axes: TrainConfig field -> list of values
    seeds: [0, 1]               # an extra axis over train.seed
    checkpoint_epochs: [2]      # early checkpoints (EL2N)
    mode: ema                   # training mode (shorthand for train.mode; default standard)
    mode_settings: {decay: 0.99}        # the mode's own settings (train.mode_settings)
    resources: {cpus: 1, gpus: 0.25, pack: 4}  # per trial; gpus is a fraction of one GPU;
                                # pack: train up to 4 grid points that share an architecture
                                # as one packed network in one Tune trial (trainers.packed)
    max_failures: 2             # retries of a trial that raised
    storage: s3://bucket/zoo    # optional; --storage and GENZOO_STORAGE override it
    measures: {flatness: {subset: 500}} # optional settings for `genzoo measure`
    measures: {families: [el2n, training]}  # what `genzoo measure` computes by default (else all)
    analysis: {target: test_loss, double_descent: true}  # the paper's choices for `genzoo analyze`
    analysis: {paper: robustness_to_pruning}   # compare with the paper's published numbers, or
    analysis: {paper: {name: robustness_to_pruning, experiments: [demogen], differences: ["..."]}}
    extensions: [my_zoo.models]  # modules that register models, datasets, modes, measures or
                                # report sections (sweep.extensions), imported before validation

Any bad field is a :class:`SweepConfigError` whose one-line message names the field and what
is allowed; the ``measures:`` block is checked here too (family names, setting keys, the kind
of each value), so a typo fails ``sweep plan`` and ``sweep run`` before anything trains.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from sweep import extensions
from trainers import catalog, yamlio
from trainers.config import ConfigError, TrainConfig, pack_key, packable_modes
from trainers.data import registry as datasets
from trainers.models import registry as models
from trainers.models.spec import ModelError
from trainers.modes import registry as modes
from trainers.values import is_int as _int, is_number as _number

PRESET_DIR = Path(__file__).parent / "presets"
# The published claims of each paper (analysis.paper_claims), one file per paper.
PAPER_DIR = PRESET_DIR / "papers"
TOP_LEVEL = (
    "experiment", "dataset", "model", "mode", "mode_settings", "train", "grid", "seeds", "checkpoint_epochs",
    "variants", "resources", "max_failures", "storage", "measures", "analysis", "fault_injection", "extensions",
)
# Top-level shorthands for fields of ``train``.
SHORTHANDS = ("dataset", "model", "mode", "mode_settings", "checkpoint_epochs")
TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))
# Keys sweep.yaml records besides the resolved config (sweep.driver writes them).
RECORD_ONLY = ("versions", "store_version", "provenance")


class SweepConfigError(ValueError):
    """A bad sweep file: one line naming the field and what is allowed."""


@dataclass(frozen=True)
class Resources:
    """Per-trial resources. ``gpus`` is a fraction of one GPU (0 = CPU only); Ray does not
    enforce GPU memory, so several trials on one GPU must fit together. ``pack``: how many
    grid points that can share a pack (:data:`trainers.config.PACK_SHARED`) one Tune trial
    trains at once as one packed network (1: each grid point alone)."""

    cpus: float = 1.0
    gpus: float = 0.0
    pack: int = 1


@dataclass(frozen=True)
class PaperChoice:
    """A preset's ``analysis.paper``: the paper file ``name`` (``sweep/presets/papers/``), the
    names of its ``experiments`` to compare with (empty: the paper's default ones) and the
    preset's own protocol ``differences`` from the paper, stated with every verdict."""

    name: str
    experiments: Tuple[str, ...] = ()
    differences: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "experiments": list(self.experiments), "differences": list(self.differences)}


@dataclass(frozen=True)
class AnalysisOptions:
    """The choices of the paper a sweep reproduces, for ``genzoo analyze`` (see
    :func:`analysis.report.analyze`): the default ``target`` (gap, test_loss or test_error),
    whether the zoo is a ``double_descent`` width sweep, the ``anchor`` measure of Table 3,
    the ``feature_groups`` regressed into one measure each, the long ``tables`` to read
    (besides the store's per-epoch ``epochs``, always given to the sections), the
    paper-specific ``sections`` of the report (:mod:`analysis.sections`), and the
    hyperparameter that colours the scatter plots (``colour_by``; default: the grid axis that
    ranks the target best), and the ``paper`` whose published numbers the report's "Against the
    paper" section compares with (:class:`PaperChoice`; None: no such section).

    The defaults are those of :class:`analysis.options.AnalysisOptions`, repeated here so that
    reading a sweep file does not import the analysis package (scikit-learn);
    ``tests/analysis/test_options.py`` checks that they agree."""

    target: str = "gap"
    double_descent: bool = False
    anchor: str = "prunability"
    feature_groups: Tuple[Tuple[str, str, Optional[str]], ...] = (
        ("margin/", "normalized_margins", "best_margin_variable"),
        ("output_margin/", "output_margins", None),
    )
    tables: Tuple[str, ...] = ("pruning_curves", "el2n", "hessian_eigenvalues")
    sections: Tuple[str, ...] = ()
    colour_by: Optional[str] = None
    paper: Optional[PaperChoice] = None
    # The robust sign error's thresholds (Dziugaite et al. 2020; analysis.options).
    sign_error_min_weight: float = 0.5
    sign_error_min_ess: float = 12.0

    def to_dict(self) -> Dict[str, Any]:
        out = {
            "target": self.target, "double_descent": self.double_descent, "anchor": self.anchor,
            "feature_groups": [{"prefix": p, "derived": d, "best": b} for p, d, b in self.feature_groups],
            "tables": list(self.tables), "sections": list(self.sections), "colour_by": self.colour_by,
            "paper": self.paper.to_dict() if self.paper else None,
        }
        for name in ("sign_error_min_weight", "sign_error_min_ess"):  # recorded only when set
            if getattr(self, name) != getattr(AnalysisOptions, name):
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class FaultInjection:
    """Test-only: make every trial raise once when it reaches ``epoch`` (not part of trial ids)."""

    epoch: int


@dataclass(frozen=True)
class SweepConfig:
    experiment: str
    base: TrainConfig
    axes: Tuple[Tuple[str, Tuple[Any, ...]], ...]
    # Each variant: (train field, value or tuple of values) pairs; see parse_variants.
    variants: Tuple[Tuple[Tuple[str, Any], ...], ...] = ()
    resources: Resources = Resources()
    max_failures: int = 2
    storage: Optional[str] = None
    measures: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # ``measures.families``: what `genzoo measure` computes when --measures is not given (empty: all).
    measure_families: Tuple[str, ...] = ()
    analysis: AnalysisOptions = AnalysisOptions()
    fault_injection: Optional[FaultInjection] = None
    # Modules imported before anything is validated (sweep.extensions), in every process.
    extensions: Tuple[str, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)

    @property
    def axis_names(self) -> List[str]:
        """The grid axes, then every field a variant sets (those vary across the trials too)."""
        names = [name for name, _ in self.axes]
        for variant in self.variants:
            names += [key for key, _ in variant if key not in names]
        return names

    def trials(self) -> List[TrainConfig]:
        """Every grid point, in the order of the axes (the last axis varies fastest); with
        variants, the grid once per variant, in the order of the variants. Expanded once per
        config object (a launch asks several times; 10,000 trials take about a second)."""
        cached = self.__dict__.get("_trials")
        if cached is not None:
            return list(cached)
        configs = []
        for variant in self.variants or ((),):
            fixed = {k: v for k, v in variant if not isinstance(v, tuple)}
            # A variant's own seed (one value or a list) replaces the seeds axis for it.
            axes = [(k, v) for k, v in self.axes if k not in dict(variant)] + \
                [(k, v) for k, v in variant if isinstance(v, tuple)]
            names = [name for name, _ in axes]
            for values in itertools.product(*(vals for _, vals in axes)):
                configs.append(_train_config({**self.base.to_dict(), **fixed, **dict(zip(names, values))}, names))
        object.__setattr__(self, "_trials", tuple(configs))  # not a field: equality and replace() ignore it
        return configs

    def to_dict(self) -> Dict[str, Any]:
        """The resolved config: what ``sweep.yaml`` in the store records."""
        fixed = {k: v for k, v in self.base.to_dict().items() if k not in self.axis_names}
        for variant in self.variants:  # a field a variant sets may also be fixed in train
            fixed.update({k: self.base.to_dict()[k] for k, _ in variant if k in self.source.get("train", {})})
        out: Dict[str, Any] = {
            "experiment": self.experiment,
            "train": fixed,
            "grid": {name: list(values) for name, values in self.axes if name != "seed"},
            "seeds": list(dict(self.axes)["seed"]),
            "resources": {"cpus": self.resources.cpus, "gpus": self.resources.gpus, "pack": self.resources.pack},
            "max_failures": self.max_failures,
        }
        if self.variants:
            out["variants"] = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in variant}
                               for variant in self.variants]
        if self.storage:
            out["storage"] = self.storage
        if self.measures or self.measure_families:
            out["measures"] = {**({"families": list(self.measure_families)} if self.measure_families else {}),
                               **{k: dict(v) for k, v in self.measures.items()}}
        if self.analysis != AnalysisOptions():
            out["analysis"] = self.analysis.to_dict()
        if self.fault_injection:
            out["fault_injection"] = {"epoch": self.fault_injection.epoch}
        if self.extensions:
            out["extensions"] = list(self.extensions)
        return out


def presets() -> List[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def papers() -> List[str]:
    """The names of the paper files (``sweep/presets/papers/<name>.yaml``)."""
    return sorted(p.stem for p in PAPER_DIR.glob("*.yaml"))


def load_paper(name: str):
    """The :class:`analysis.paper_claims.Paper` of a paper file, validated (a one-line
    :class:`SweepConfigError` naming the file and field otherwise)."""
    from analysis.errors import AnalysisError
    from analysis.paper_claims import parse_paper

    if name not in papers():
        raise SweepConfigError(f"analysis.paper.name: got {name!r}, allowed: {', '.join(papers())}")
    path = PAPER_DIR / f"{name}.yaml"
    try:
        document = yamlio.load(path.read_text(), str(path))
        return parse_paper(document, f"papers/{name}.yaml")
    except yamlio.YamlError as exc:
        raise SweepConfigError(str(exc)) from None
    except AnalysisError as exc:
        raise SweepConfigError(str(exc)) from None


def paper_comparison(choice: PaperChoice):
    """The :class:`analysis.paper_claims.PaperComparison` a :class:`PaperChoice` asks for."""
    from analysis.errors import AnalysisError
    from analysis.paper_claims import choose

    try:
        return choose(load_paper(choice.name), list(choice.experiments), list(choice.differences), "analysis.paper")
    except AnalysisError as exc:
        raise SweepConfigError(str(exc)) from None


def load(name_or_path: str, overrides: Sequence[str] = ()) -> SweepConfig:
    """A preset name (see :func:`presets`) or the path of a YAML file, with ``overrides``
    (``train.epochs=2``, ``grid.width=[8,16]``: :func:`apply_overrides`) applied to the
    document before it is validated."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise SweepConfigError(
                f"sweep: {name_or_path!r} is neither a file nor a preset (presets: {', '.join(presets())})"
            )
    try:
        document = yamlio.load(path.read_text(), str(path))
    except OSError as exc:
        raise SweepConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except yamlio.YamlError as exc:
        raise SweepConfigError(str(exc)) from None
    return parse(apply_overrides(document, overrides), default_experiment=path.stem)


def apply_overrides(document: Any, overrides: Sequence[str]) -> Any:
    """A copy of ``document`` with each ``DOTTED.KEY=VALUE`` set (the value read as YAML, so
    ``1e-3``, ``[8, 16]`` and ``true`` are typed); missing mappings on the way are created."""
    if not overrides:
        return document
    if not isinstance(document, dict):
        raise SweepConfigError("sweep: the file must hold a mapping of fields")
    document = copy.deepcopy(document)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise SweepConfigError(f"override: got {item!r}, allowed: FIELD=VALUE or SECTION.FIELD=VALUE "
                                   "(e.g. train.epochs=2, grid.width=[8,16])")
        try:
            value = yamlio.parse_value(raw, source=f"override {key}")
        except yamlio.YamlError as exc:
            raise SweepConfigError(str(exc)) from None
        node = document
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[:depth + 1])
                raise SweepConfigError(f"override {key}: {where} is {child!r}, not a mapping")
            node = child
        node[parts[-1]] = value
    return document


def parse(document: Any, *, default_experiment: str = "sweep", stored: bool = False) -> SweepConfig:
    """A sweep file's document as a :class:`SweepConfig`; ``stored``: the resolved config an
    experiment recorded (sweep.yaml), which skips the checks of settings that only matter to a
    new launch (:meth:`TrainConfig.check_schedule`), so that a store written before them loads."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SweepConfigError("sweep: the file must hold a mapping of fields")
    _check_keys(document, "sweep")
    for key in document:
        if key not in TOP_LEVEL:
            raise SweepConfigError(f"{key}: unknown field, allowed: {', '.join(TOP_LEVEL)}")
    try:  # first: an extension's model, dataset, mode or measure is validated like a built-in one
        extension_modules = extensions.parse(document.get("extensions"))
        extensions.load(extension_modules)
    except extensions.ExtensionError as exc:
        raise SweepConfigError(str(exc)) from None

    experiment = document.get("experiment", default_experiment)
    if (not isinstance(experiment, str) or not experiment or "/" in experiment or experiment.startswith((".", "_"))
            or not experiment.isprintable()):
        raise SweepConfigError(f"experiment: got {experiment!r}, allowed: a folder name without / or control characters")

    fixed = _mapping(document, "train")
    for key in fixed:
        if key not in TRAIN_FIELDS:
            raise SweepConfigError(f"train.{key}: unknown hyperparameter, allowed: {', '.join(TRAIN_FIELDS)}")
    for key in SHORTHANDS:
        if key in document:
            if key in fixed:
                raise SweepConfigError(f"{key}: given both at the top level and in train")
            fixed[key] = document[key]

    grid = _mapping(document, "grid")
    axes: List[Tuple[str, Tuple[Any, ...]]] = []
    for name, values in grid.items():
        if name not in TRAIN_FIELDS or name in ("seed", "mode_settings"):
            allowed = ", ".join(f for f in TRAIN_FIELDS if f not in ("seed", "mode_settings"))
            hint = " (use seeds: for the seed axis)" if name == "seed" else ""
            raise SweepConfigError(f"grid.{name}: unknown axis{hint}, allowed: {allowed}")
        if name in fixed:
            raise SweepConfigError(f"grid.{name}: also fixed in train; give it in one place")
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"grid.{name}: got {values!r}, allowed: a non-empty list of values")
        if len(set(map(repr, values))) != len(values):
            raise SweepConfigError(f"grid.{name}: repeated values in {values!r}")
        axes.append((name, tuple(values)))

    seeds = document.get("seeds", [fixed.pop("seed", 0)])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise SweepConfigError(f"seeds: got {seeds!r}, allowed: a non-empty list of integers >= 0")
    if "seed" in fixed:
        raise SweepConfigError("train.seed: give seeds as the top-level list seeds:")
    axes.append(("seed", tuple(seeds)))

    variants = parse_variants(document.get("variants"), [name for name, _ in axes])

    base_values = {**fixed, **{name: values[0] for name, values in axes}}
    base = _train_config(base_values, [name for name, _ in axes])
    if not _known_model(base.model):
        raise SweepConfigError(f"model: unknown model {base.model!r}, allowed: {', '.join(_model_names())}, "
                               "or a factory package.module:function")
    if base.dataset not in datasets.names():
        raise SweepConfigError(f"dataset: unknown dataset {base.dataset!r}, allowed: {', '.join(datasets.names())}")
    for name, values in axes:
        for value in values:
            _train_config({**base_values, name: value}, [name])
            if name == "model" and not _known_model(value):
                raise SweepConfigError(f"grid.model: unknown model {value!r}, allowed: {', '.join(_model_names())}, "
                                       "or a factory package.module:function")
            if name == "dataset" and value not in datasets.names():
                raise SweepConfigError(f"grid.dataset: unknown dataset {value!r}, allowed: {', '.join(datasets.names())}")

    res = _mapping(document, "resources")
    for key in res:
        if key not in ("cpus", "gpus", "pack"):
            raise SweepConfigError(f"resources.{key}: unknown field, allowed: cpus, gpus, pack")
    cpus = res.get("cpus", 1.0)
    gpus = res.get("gpus", 0.0)
    pack = res.get("pack", 1)
    if not isinstance(pack, int) or isinstance(pack, bool) or pack < 1:
        raise SweepConfigError(f"resources.pack: got {pack!r}, allowed: an integer >= 1 (models per packed trial)")
    if not _number(cpus) or cpus <= 0:
        raise SweepConfigError(f"resources.cpus: got {cpus!r}, allowed: a number > 0")
    if not _number(gpus) or not 0 <= gpus <= 1:
        raise SweepConfigError(f"resources.gpus: got {gpus!r}, allowed: a fraction of one GPU in [0, 1]")

    max_failures = document.get("max_failures", 2)
    if not isinstance(max_failures, int) or isinstance(max_failures, bool) or max_failures < 0:
        raise SweepConfigError(f"max_failures: got {max_failures!r}, allowed: an integer >= 0")

    storage = document.get("storage")
    if storage is not None and (not isinstance(storage, str) or not storage or not storage.isprintable()):
        raise SweepConfigError(f"storage: got {storage!r}, allowed: a path or a URI without control characters")

    measures = dict(_mapping(document, "measures"))
    measure_families = _measure_families(measures.pop("families", None))
    for family, settings in measures.items():
        if not isinstance(settings, dict):
            raise SweepConfigError(f"measures.{family}: got {settings!r}, allowed: a mapping of settings")
    _check_measures(measures)
    analysis = _analysis_options(_mapping(document, "analysis"))

    fault = None
    if "fault_injection" in document:
        spec = _mapping(document, "fault_injection")
        epoch = spec.get("epoch")
        if set(spec) != {"epoch"} or not isinstance(epoch, int) or not 1 <= epoch <= base.epochs:
            raise SweepConfigError(f"fault_injection.epoch: got {epoch!r}, allowed: an epoch in [1, {base.epochs}]")
        fault = FaultInjection(epoch=epoch)

    config = SweepConfig(
        experiment=experiment, base=base, axes=tuple(axes), variants=variants,
        resources=Resources(cpus=float(cpus), gpus=float(gpus), pack=pack), max_failures=max_failures,
        storage=storage, measures=measures, measure_families=measure_families, analysis=analysis,
        fault_injection=fault, extensions=extension_modules,
        source=document,
    )
    trials = config.trials()
    ids = [t.trial_id for t in trials]
    unpackable = sorted({t.mode for t in trials if not modes.get(t.mode).packable})
    if pack > 1 and unpackable:
        raise SweepConfigError(f"resources.pack: mode {unpackable[0]!r} cannot be packed, use pack: 1 "
                               f"(packable modes: {', '.join(packable_modes())})")
    if len(set(ids)) != len(ids):
        raise SweepConfigError("grid: two grid points give the same trial (repeated values after defaults)")
    _check_against_catalog(config, trials)
    if not stored:
        for trial in trials:
            try:
                trial.check_schedule()
            except ConfigError as exc:
                name = str(exc).split(":", 1)[0]
                raise SweepConfigError(f"{_where(config, name)}{str(exc)[len(name):]}") from None
    return config


def _where(config: SweepConfig, name: str) -> str:
    """Where a sweep file sets a train field: a grid axis, a variant, or ``train``."""
    if name in dict(config.axes):
        return f"grid.{name}"
    if any(name == key for variant in config.variants for key, _ in variant):
        return f"variants.{name}"
    return f"train.{name}"


def _check_against_catalog(config: SweepConfig, trials: Sequence[TrainConfig]) -> None:
    """What depends on the dataset and the model, checked before anything trains and without
    torch (the specs of the dataset and the model, :mod:`trainers.catalog`): the training-set
    size against the dataset's, the input shape the model takes, the hyperparameters it has,
    and its number of parameters against :data:`trainers.catalog.MAX_PARAMETERS`."""
    seen = set()
    for t in trials:
        key = (t.dataset, t.train_size, t.model, t.width, t.depth, t.dropout)
        if key in seen:
            continue
        seen.add(key)
        info = catalog.dataset_info(t.dataset)
        model = models.get(t.model)
        if t.train_size is not None and t.train_size > info.train:
            raise SweepConfigError(f"{_where(config, 'train_size')}: got {t.train_size}, allowed: at most "
                                   f"{info.train} (the training set of {t.dataset}) or null (all of it)")
        if not model.takes_shape(info.shape):
            takes = " or ".join("x".join(map(str, shape)) for shape in model.input_shapes)
            fitting = [n for n in _model_names() if models.get(n).takes_shape(info.shape)]
            raise SweepConfigError(f"{_where(config, 'model')}: {t.model} takes {takes} images and {t.dataset}'s are "
                                   f"{'x'.join(map(str, info.shape))}; allowed with {t.dataset}: "
                                   f"{', '.join(fitting) or 'none'}")
        supported = model.hyperparameters
        for name, unset in (("width", None), ("depth", None), ("dropout", 0.0)):
            if getattr(t, name) != unset and name not in supported:
                raise SweepConfigError(f"{_where(config, name)}: got {getattr(t, name)!r}, but model {t.model} has no "
                                       f"{name} (it takes {', '.join(supported)}); allowed: {unset}")
        count = catalog.parameter_count(t.model, info.classes, width=t.width, depth=t.depth, input_shape=info.shape)
        if count > catalog.MAX_PARAMETERS:
            name = "width" if t.width is not None or t.depth is None else "depth"
            raise SweepConfigError(f"{_where(config, name)}: got {getattr(t, name)}, which gives {t.model} "
                                   f"{count:.3g} parameters; allowed: at most {catalog.MAX_PARAMETERS:,} per model")


def scaled_widths(scale_from: int, factor: float, steps: int) -> List[int]:
    """Width down-scaling (Jin et al. 2022, Section 5.2): ``scale_from · factor^k`` for
    k = 0..``steps``, each rounded to the nearest integer (Python's ``round``: halves to even)
    and at least 1; a width that rounding repeats is kept once. The parameter count of a
    conv net scales about as width², so a step of 0.8 in width removes about 36% of the
    weights, against IMP's 20% per level: ``genzoo sweep plan`` prints the exact fractions."""
    widths: List[int] = []
    for k in range(steps + 1):
        width = max(1, int(round(scale_from * factor ** k)))
        if width not in widths:
            widths.append(width)
    return widths


def parse_variants(block: Any, grid_axes: Sequence[str]) -> Tuple[Tuple[Tuple[str, Any], ...], ...]:
    """The ``variants:`` list: the grid is trained once per variant, each a mapping of train
    fields to a value, a list of values (an extra axis of that variant only; ``seed`` replaces
    the ``seeds:`` axis for the variant, as ``genzoo import`` writes an irregular zoo), or a width
    scaling ``{scale_from: W, factor: 0.8, steps: S}`` (:func:`scaled_widths`). This is how
    one sweep holds several training modes (``imp`` and ``extended_dense``) and a width
    down-scaling series side by side."""
    if block is None:
        return ()
    if not isinstance(block, list) or not block:
        raise SweepConfigError(f"variants: got {block!r}, allowed: a non-empty list of mappings of train fields")
    out = []
    for index, variant in enumerate(block):
        where = f"variants[{index}]"
        if not isinstance(variant, dict) or not variant:
            raise SweepConfigError(f"{where}: got {variant!r}, allowed: a mapping of train fields")
        items = []
        for key, value in variant.items():
            if key not in TRAIN_FIELDS:
                raise SweepConfigError(f"{where}.{key}: unknown field, allowed: {', '.join(TRAIN_FIELDS)}")
            if key in grid_axes and key != "seed":  # a variant's seed replaces the seeds axis
                raise SweepConfigError(f"{where}.{key}: also a grid axis; give it in one place")
            if isinstance(value, dict) and key == "width" and set(value) == {"scale_from", "factor", "steps"}:
                w, f, n = value["scale_from"], value["factor"], value["steps"]
                if not (_int(w) and w >= 1 and _number(f) and 0 < f < 1 and _int(n) and n >= 0):
                    raise SweepConfigError(f"{where}.width: got {value!r}, allowed: scale_from an integer >= 1, "
                                           "factor in (0, 1), steps an integer >= 0")
                value = scaled_widths(w, f, n)
            if isinstance(value, list):
                if not value or len(set(map(repr, value))) != len(value):
                    raise SweepConfigError(f"{where}.{key}: got {value!r}, allowed: a non-empty list of distinct values")
                value = tuple(value)
            items.append((key, value))
        out.append(tuple(items))
    return tuple(out)


def _measure_families(value: Any) -> Tuple[str, ...]:
    """``measures.families``: the families measured by default, each a registered family once."""
    from measures import registry

    if value is None:
        return ()
    if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
        raise SweepConfigError(f"measures.families: got {value!r}, allowed: a non-empty list of distinct families "
                               f"of {', '.join(registry.names())}")
    for family in value:
        if family not in registry.FAMILIES:
            raise SweepConfigError(f"measures.families: unknown family {family!r}, allowed: "
                                   f"{', '.join(registry.names())}")
    return tuple(value)


def _check_measures(measures: Mapping[str, Mapping[str, Any]]) -> None:
    """Family names, setting keys and the kind of every value, against the registry."""
    from measures import registry

    for family, settings in measures.items():
        if family not in registry.FAMILIES:
            raise SweepConfigError(f"measures.{family}: unknown family, allowed: {', '.join(registry.names())}")
        try:
            registry.settings_for(family, settings)
        except registry.MeasureError as exc:
            raise SweepConfigError(str(exc)) from None


def _analysis_options(block: Mapping[str, Any]) -> AnalysisOptions:
    allowed = [f.name for f in fields(AnalysisOptions)]
    for key in block:
        if key not in allowed:
            raise SweepConfigError(f"analysis.{key}: unknown field, allowed: {', '.join(allowed)}")
    values: Dict[str, Any] = {}
    if "target" in block:
        from analysis.options import TARGETS

        if not isinstance(block["target"], str) or block["target"] not in TARGETS:
            raise SweepConfigError(f"analysis.target: got {block['target']!r}, allowed: {', '.join(TARGETS)}")
        values["target"] = block["target"]
    if "double_descent" in block:
        if not isinstance(block["double_descent"], bool):
            raise SweepConfigError(f"analysis.double_descent: got {block['double_descent']!r}, allowed: true or false")
        values["double_descent"] = block["double_descent"]
    if "anchor" in block:
        if not isinstance(block["anchor"], str) or not block["anchor"]:
            raise SweepConfigError(f"analysis.anchor: got {block['anchor']!r}, allowed: a measure name")
        values["anchor"] = block["anchor"]
    if "tables" in block:
        tables = block["tables"]
        if not isinstance(tables, list) or not all(isinstance(t, str) and t and "/" not in t for t in tables):
            raise SweepConfigError(f"analysis.tables: got {tables!r}, allowed: a list of table folder names")
        values["tables"] = tuple(tables)
    if "colour_by" in block:
        if block["colour_by"] is not None and (not isinstance(block["colour_by"], str) or not block["colour_by"]):
            raise SweepConfigError(f"analysis.colour_by: got {block['colour_by']!r}, allowed: a hyperparameter name")
        values["colour_by"] = block["colour_by"]
    if "sections" in block:
        from analysis.sections import names as section_names

        sections = block["sections"]
        if not isinstance(sections, list) or not all(s in section_names() for s in sections):
            raise SweepConfigError(f"analysis.sections: got {sections!r}, allowed: a list of "
                                   f"{', '.join(section_names()) or '(none registered)'}")
        values["sections"] = tuple(sections)
    if "feature_groups" in block:
        groups = block["feature_groups"]
        bad = SweepConfigError(f"analysis.feature_groups: got {groups!r}, allowed: a list of "
                               "{prefix: str, derived: str, best: str or null}")
        if not isinstance(groups, list):
            raise bad
        parsed = []
        for group in groups:
            if not isinstance(group, dict) or set(group) - {"prefix", "derived", "best"} or \
                    not all(isinstance(group.get(k), str) and group.get(k) for k in ("prefix", "derived")) or \
                    not (group.get("best") is None or isinstance(group.get("best"), str)):
                raise bad
            parsed.append((group["prefix"], group["derived"], group.get("best")))
        values["feature_groups"] = tuple(parsed)
    if "paper" in block:
        values["paper"] = _paper_choice(block["paper"])
    for name, low, high, allowed in (("sign_error_min_weight", 0.0, 1.0, "a number in [0, 1)"),
                                     ("sign_error_min_ess", 1.0, math.inf, "a number >= 1")):
        if name in block:
            value = block[name]
            if not _number(value) or not low <= value < high:
                raise SweepConfigError(f"analysis.{name}: got {value!r}, allowed: {allowed}")
            values[name] = float(value)
    return AnalysisOptions(**values)


def _paper_choice(block: Any) -> Optional[PaperChoice]:
    """``analysis.paper``: null, a paper name, or {name, experiments, differences}; the paper
    file is read and its experiments checked here, so a typo fails when the sweep file is read."""
    if block is None:
        return None
    if isinstance(block, str):
        block = {"name": block}
    allowed = ("name", "experiments", "differences")
    if not isinstance(block, dict):
        raise SweepConfigError(f"analysis.paper: got {block!r}, allowed: a paper name or a mapping of "
                               f"{', '.join(allowed)}")
    for key in block:
        if key not in allowed:
            raise SweepConfigError(f"analysis.paper.{key}: unknown field, allowed: {', '.join(allowed)}")
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise SweepConfigError(f"analysis.paper.name: got {name!r}, allowed: {', '.join(papers())}")
    lists = {}
    for key, what in (("experiments", "experiment names of the paper"), ("differences", "sentences")):
        value = block.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and "\n" not in v for v in value):
            raise SweepConfigError(f"analysis.paper.{key}: got {value!r}, allowed: a list of {what}")
        lists[key] = tuple(v.strip() for v in value)
    choice = PaperChoice(name=name, experiments=lists["experiments"], differences=lists["differences"])
    paper_comparison(choice)
    return choice


def with_gpus(config: SweepConfig, gpus: float) -> SweepConfig:
    if not _number(gpus) or not 0 <= gpus <= 1:
        raise SweepConfigError(f"--gpus-per-trial: got {gpus!r}, allowed: a fraction of one GPU in [0, 1]")
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    return SweepConfig(**{**values, "resources": Resources(config.resources.cpus, float(gpus), config.resources.pack)})


def packs(configs: Sequence[TrainConfig], size: int) -> List[List[TrainConfig]]:
    """``configs`` grouped into packs of at most ``size``: configs that can share a pack
    (:func:`trainers.config.pack_key`) in their order, each group cut into runs of ``size``;
    the packs in the order of their first config."""
    groups: Dict[tuple, List[TrainConfig]] = {}
    for config in configs:
        groups.setdefault(pack_key(config), []).append(config)
    out = [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]
    # Positions by identity, once: sorting by configs.index() compared dataclasses (quadratic).
    position = {id(config): index for index, config in enumerate(configs)}
    return sorted(out, key=lambda pack: position[id(pack[0])])


def _train_config(values: Dict[str, Any], axis_names: List[str]) -> TrainConfig:
    try:
        return TrainConfig.from_dict(values)
    except ConfigError as exc:
        name = str(exc).split(":", 1)[0]
        section = "grid" if name in axis_names and name != "seed" else ("seeds" if name == "seed" else "train")
        prefix = f"{section}." if section != "seeds" else ""
        raise SweepConfigError(f"{prefix}{exc}" if section != "seeds" else f"seeds{str(exc)[len(name):]}") from None
    except TypeError as exc:
        raise SweepConfigError(f"train: {exc}") from None


def _check_keys(node: Any, where: str) -> None:
    """Every key of the document's mappings, at any depth, is a name that a one-line error can
    quote: not empty, no control characters."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        if isinstance(node, dict) and (str(key) == "" or not str(key).isprintable()):
            raise SweepConfigError(f"{where}: key {key!r} is not a name (empty or with control characters)")
        _check_keys(child, f"{where}.{key}" if isinstance(node, dict) else f"{where}[{key}]")


def _mapping(document: Mapping[str, Any], key: str) -> Dict[str, Any]:
    value = document.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepConfigError(f"{key}: got {value!r}, allowed: a mapping")
    return dict(value)


def _model_names() -> List[str]:
    """The registered models, sorted, as the errors list them."""
    return sorted(models.names())


def _known_model(name: Any) -> bool:
    """Whether ``name`` is a registered model or a factory (``package.module:function``,
    trainers/models/factory.py) whose function fits; a factory that does not is its own line."""
    try:
        return models.known(name)
    except ModelError as exc:
        raise SweepConfigError(str(exc)) from None


def read_resolved_config(store) -> SweepConfig:
    """The resolved config an experiment recorded in its ``sweep.yaml`` (a :class:`sweep.store.Store`)."""
    if not store.exists("sweep.yaml"):
        raise SweepConfigError(f"experiment: {store.uri} has no sweep.yaml (never started, or stopped before its first "
                               "write): start it with `genzoo sweep run PRESET|FILE`")
    try:
        document = yamlio.load(store.read_text("sweep.yaml"), f"{store.uri}/sweep.yaml")
    except yamlio.YamlError as exc:
        raise SweepConfigError(str(exc)) from None
    if not isinstance(document, dict):
        raise SweepConfigError(f"{store.uri}/sweep.yaml: not a mapping of fields")
    for key in RECORD_ONLY:
        document.pop(key, None)
    return parse(document, stored=True)


def growth_refusal(stored: SweepConfig, new: SweepConfig) -> Optional[str]:
    """Why ``new`` cannot run under the experiment that recorded ``stored`` (None when it can).

    A sweep may grow: when every stored trial is also a trial of ``new`` (more grid values,
    more seeds, values reordered), a launch trains only the new trials and keeps the rest. What
    would change stored trials (a fixed train field, a grid value or seed left out, a variant)
    is named with its stored and its new value."""
    stored_ids = [t.trial_id for t in stored.trials()]
    new_ids = {t.trial_id for t in new.trials()}
    missing = [trial_id for trial_id in stored_ids if trial_id not in new_ids]
    if not missing:
        return None
    before, after = stored.to_dict(), new.to_dict()
    for key in sorted(set(before["train"]) | set(after["train"])):
        if key in before["train"] and key in after["train"] and before["train"][key] != after["train"][key]:
            return (f"train.{key}: stored {before['train'][key]!r}, new {after['train'][key]!r} "
                    f"(it changes every stored trial)")
    axes = {"seeds": (before["seeds"], after["seeds"]),
            **{f"grid.{name}": (values, after["grid"].get(name)) for name, values in before["grid"].items()}}
    for where, (old, now) in axes.items():
        if now is None:
            return f"{where}: stored {old!r}, new: not an axis (the new grid must contain the stored one)"
        left_out = [value for value in old if value not in now]
        if left_out:
            return (f"{where}: stored {old!r}, new {now!r} (the new grid must contain the stored one; "
                    f"left out: {', '.join(map(repr, left_out))})")
    if before.get("variants") != after.get("variants"):
        return f"variants: stored {before.get('variants')!r}, new {after.get('variants')!r}"
    return f"{len(missing)} of the {len(stored_ids)} stored trials are not trials of the new sweep (first: {missing[0]})"

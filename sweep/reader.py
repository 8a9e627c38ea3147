"""Reading an experiment back: its tables as DataFrames, the whole zoo in one frame, and any
model of the zoo with its data, ready to use (docs/reading.md).

    from sweep import reader
    zoo = reader.zoo("results", "demo")                  # one row per model: hparams, metrics, gaps, measures
    trials = reader.trials("results", "demo")            # one row per trial (trials.parquet)
    epochs = reader.epochs("results", "demo")            # also models(), measures()
    el2n = reader.table("results", "demo", "el2n")       # any table folder, as a pyarrow Table
    model = reader.load_model("results", "demo", zoo.trial_id[0], zoo.model_id[0])  # eval mode, on the CPU
    data = reader.load_data("results", "demo", zoo.trial_id[0])   # the trial's own split, uint8 images
    logits = model(data.test_images)                     # the normalization is inside the model

Every table is read with each row exactly once, also while the store compacts it
(docs/store.md); ``reader.table`` hands it to duckdb or polars as it is:
``duckdb.sql("SELECT ... FROM t")`` with ``t = reader.table(...)``, ``polars.from_arrow(t)``.

``storage`` is a path or URI as for ``--storage`` (None: ``$GENZOO_STORAGE``, else
``./results``). Nothing here writes to the store or upgrades it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pandas as pd
import pyarrow as pa

from sweep.store import CONFIG_COLUMNS, FINAL_MODEL, Store, StoreError, config_from_row
from trainers.config import TrainConfig
from trainers.status import METRICS
from trainers.data import registry as datasets


def trials(storage: Optional[str], experiment: str) -> pd.DataFrame:
    return Store(storage, experiment).trials()


def epochs(storage: Optional[str], experiment: str, trial_id: Optional[str] = None) -> pd.DataFrame:
    return Store(storage, experiment).epochs(trial_id)


def models(storage: Optional[str], experiment: str, trial_id: Optional[str] = None) -> pd.DataFrame:
    return Store(storage, experiment).models(trial_id)


def measures(storage: Optional[str], experiment: str) -> pd.DataFrame:
    return Store(storage, experiment).measures()


def table(storage: Optional[str], experiment: str, name: str) -> pa.Table:
    """Every row of the table folder ``name`` (``epochs``, ``models``, ``measures``, ``el2n``,
    ``events``, ...) as one pyarrow Table, each row once (empty when the folder has none)."""
    from sweep import compact

    found = compact.read_table(Store(storage, experiment), name)
    return found if found is not None else pa.table({})


def trial_config(storage: Optional[str], experiment: str, trial_id: str) -> TrainConfig:
    """The TrainConfig of a trial, from its row of trials.parquet."""
    table = trials(storage, experiment)
    rows = table[table["trial_id"] == trial_id]
    if not len(rows):
        raise StoreError(f"trial_id: {trial_id!r} is not a trial of {Store(storage, experiment).uri}")
    return config_from_row(rows.iloc[0].to_dict())


def _shapes(config: TrainConfig) -> Tuple[int, Tuple[int, ...]]:
    """(classes, one example's C×H×W) of the trial's dataset, from its spec, so that a model is
    built without loading its data."""
    spec = datasets.get(config.dataset)
    return spec.classes, spec.input_shape


# (dataset, data root) -> (mean, std): a zoo's models share them, and reading CIFAR to get
# them once per model would dominate a loop over the zoo.
_CHANNEL_STATS: Dict[Tuple[str, str], Tuple[Tuple[float, ...], Tuple[float, ...]]] = {}


def _channel_stats(dataset: str, data_root: Optional[str]) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """The per-channel mean and std training normalized ``dataset`` with: those its loader
    returns (constants for CIFAR and MNIST, the training split's statistics for digits)."""
    from trainers import data

    root = data.data_root(data_root)
    key = (dataset, str(root))
    if key not in _CHANNEL_STATS:
        raw = data.get(dataset)(root)
        _CHANNEL_STATS[key] = (tuple(raw.mean), tuple(raw.std))
    return _CHANNEL_STATS[key]


def load_model(storage: Optional[str], experiment: str, trial_id: str, model_id: str = FINAL_MODEL, *,
               device: Any = "cpu", data_root: Optional[str] = None) -> "ZooModel":
    """The model ``(trial_id, model_id)``, ready for the dataset's images as stored: a
    :class:`ZooModel` (an ``nn.Module``) that normalizes its uint8 ``N×C×H×W`` input with the
    function and the mean and std training used, then runs the trained network
    (``.model``, whose ``state_dict()`` is the stored checkpoint, read with
    ``weights_only=True``). On ``device``, in eval mode. Feed it ``load_data(...)``'s images;
    float images are read as pixels in [0, 1]. ``data_root``: where the dataset is (as
    ``--data-root``), read once per dataset for its mean and std."""
    from trainers import checkpoint
    from trainers.train import build_model

    from sweep.zoo_model import ZooModel

    store = Store(storage, experiment)
    config = trial_config(storage, experiment, trial_id)
    parts = store.checkpoint_parts(trial_id, checkpoint.model_name(model_id))
    if not store.exists(*parts):
        known = ", ".join(store.models(trial_id)["model_id"]) or "none yet"
        raise StoreError(f"model_id: {trial_id} has no model {model_id!r} in {store.uri} (models: {known})")
    state = checkpoint.load_bytes(store.read_bytes(*parts), f"{store.uri}/{'/'.join(parts)}", map_location=device)
    num_classes, input_shape = _shapes(config)
    network = build_model(config, num_classes, input_shape).to(device)
    network.load_state_dict(state)
    mean, std = _channel_stats(config.dataset, data_root)
    return ZooModel(network, mean, std, trial_id=trial_id, model_id=model_id, config=config).eval()


def load_data(storage: Optional[str], experiment: str, trial_id: str, *, data_root: Optional[str] = None):
    """The data the trial ``trial_id`` was trained and tested on, as training loaded it
    (:func:`trainers.data.load` with the trial's dataset, ``train_size``, ``label_noise`` and
    ``seed``): a :class:`trainers.data.Dataset` whose ``train_images``/``test_images`` are
    uint8 ``N×C×H×W`` (what :func:`load_model`'s model takes), ``train_labels`` the labels it
    was trained on (label noise included), ``clean_train_labels`` and ``noisy`` (where they
    differ), ``test_labels``, ``mean`` and ``std``. All on the CPU; never augmented."""
    from trainers import data

    config = trial_config(storage, experiment, trial_id)
    return data.load(config.dataset, data_root, train_size=config.train_size, label_noise=config.label_noise,
                     seed=config.seed)


# The trial's columns that zoo() leaves to trials(): its progress and provenance (the model's
# own metrics and reached_target replace the trial's last ones).
_TRIAL_ONLY = ("epochs_done", "epochs_total", "minibatch_loss", "host", "device", "started_at", "finished_at",
               "error")


def model_rows(trials: pd.DataFrame, models: pd.DataFrame, drop=()) -> pd.DataFrame:
    """One row per model of ``models`` whose trial is in ``trials``: the trial's columns, then
    the model's row (its ``epoch`` as ``model_epoch``). What both tables have, and the trial's
    final metrics, come from the model (a model of an IMP level has its own metrics);
    ``drop``: trial columns left out besides."""
    models = models.rename(columns={"epoch": "model_epoch"})
    dropped = [c for c in (*METRICS, *drop, *models.columns) if c in trials.columns and c != "trial_id"]
    return trials.drop(columns=dropped).merge(models, on="trial_id", how="inner")


def zoo(storage: Optional[str], experiment: str, *, target: Optional[str] = None) -> pd.DataFrame:
    """One row per model of the experiment (every row of its models table), in one frame:

    - ``trial_id``, ``model_id``; the trial's hyperparameters (every TrainConfig column, as in
      trials.parquet, with ``width`` and ``depth`` the model's defaults where the trial left
      them unset) and its ``status``;
    - the model's own final metrics, once: ``model_epoch``, ``step``, ``weights``,
      ``sparsity``, ``stability``, ``reached_target``, ``train_loss``, ``train_acc``,
      ``test_loss``, ``test_acc``;
    - the generalization gaps ``gap`` = train_acc − test_acc and ``loss_gap`` = test_loss −
      train_loss;
    - one column per measure, the value of its "ok" row (NaN where it failed, is not finite
      or was not computed); a measure named like a column above (the training family's
      ``train_loss``) is ``<name>_measure``;
    - the measures the analysis derives from feature groups (``normalized_margins``,
      ``best_margin_variable`` from ``margin/*``, ``output_margins`` from ``output_margin/*``),
      computed by the analysis' own code over the completed models, with the experiment's
      analysis target (``target`` overrides it, as ``genzoo analyze --target``); NaN for the
      models outside the fit.

    ``frame.attrs`` holds ``hyperparameters``, ``measures`` (the measure columns, derived ones
    included), ``target`` and ``notes`` (how each derived measure was fit, or why not).
    Progress and provenance of a trial (epochs_done, host, times, error) are in :func:`trials`.
    """
    from analysis.data import measures_wide

    from sweep.migrate import store_version

    store = Store(storage, experiment)
    if store_version(store) == 1:
        raise StoreError(f"{store.uri}: a store of layout version 1 (no models table, measures per trial); "
                         f"upgrade it in place once with `genzoo sweep status {experiment} --storage ...`")
    frame = model_rows(store.trials(), store.models(), drop=_TRIAL_ONLY)
    frame = frame[["trial_id", "model_id", *(c for c in frame.columns if c not in ("trial_id", "model_id"))]]
    frame = frame.sort_values(["trial_id", "model_id"], kind="stable").reset_index(drop=True)
    frame["width"], frame["depth"] = _with_model_defaults(frame)
    frame["gap"] = frame["train_acc"] - frame["test_acc"]
    frame["loss_gap"] = frame["test_loss"] - frame["train_loss"]

    # Every measure as a column. The analysis keys a frame by its trial_id column alone: here
    # "<trial_id>/<model_id>", one key per model.
    key = list(frame["trial_id"] + "/" + frame["model_id"])
    stored = store.measures()
    keyed = stored.assign(trial_id=stored["trial_id"] + "/" + stored["model_id"].fillna(FINAL_MODEL))
    keyed = keyed.drop(columns=["model_id"])
    wide = measures_wide(keyed, key) if len(keyed) else pd.DataFrame(index=key)
    wide = wide.reindex(columns=sorted(set(map(str, keyed["measure"]))))  # those that failed everywhere too
    wide = wide.rename(columns={c: f"{c}_measure" for c in wide.columns if c in frame.columns})

    target, feature_groups = _analysis_choices(store, target)
    derived, notes = _derived_measures(frame.assign(trial_id=key).drop(columns=["model_id"]), keyed, target,
                                       feature_groups)
    # A stored measure named like a derived one is replaced by it, as in the analysis' tables.
    wide = wide.drop(columns=[c for c in derived.columns if c in wide.columns])
    columns = pd.concat([wide, derived.reindex(key)], axis=1).set_axis(frame.index, axis=0)
    frame = pd.concat([frame, columns], axis=1)
    frame.attrs = {"hyperparameters": list(CONFIG_COLUMNS), "measures": list(columns.columns), "target": target,
                   "notes": notes}
    return frame


def _with_model_defaults(frame: pd.DataFrame) -> Tuple[pd.Series, pd.Series]:
    """``width`` and ``depth`` of every row with its model's defaults where the trial left
    them unset (what it trained: ``trainers.models`` builds with the spec's defaults)."""
    from trainers.models import registry as model_specs

    def known(value):
        return None if value is None or pd.isna(value) else int(value)

    widths, depths = [], []
    for model, width, depth in zip(frame["model"], frame["width"], frame["depth"]):
        width, depth = known(width), known(depth)
        if model in model_specs.names():
            width, depth = model_specs.get(model).with_defaults(width, depth)
        widths.append(width)
        depths.append(depth)
    return pd.array(widths, dtype="Int64"), pd.array(depths, dtype="Int64")


def _analysis_choices(store: Store, target: Optional[str]) -> Tuple[str, Tuple[Tuple[str, str, Optional[str]], ...]]:
    """The target and feature groups of the experiment's ``analysis:`` block (the analysis'
    defaults for a store without sweep.yaml); ``target`` overrides its target."""
    from analysis.data import check_target
    from analysis.options import AnalysisOptions

    if store.exists("sweep.yaml"):
        from sweep.config import read_resolved_config

        options = read_resolved_config(store).analysis
    else:
        options = AnalysisOptions()
    return check_target(target or options.target), tuple(options.feature_groups)


def _derived_measures(models: pd.DataFrame, measures_: pd.DataFrame, target: str,
                      feature_groups) -> Tuple[pd.DataFrame, List[str]]:
    """The measures derived from the feature groups whose features are stored, as ``genzoo
    analyze`` computes them (:func:`analysis.report.analyze`): over the completed models with
    a finite target, from their "ok" measure values. One column per derived measure (all NaN
    when its fit fails), indexed by the models' ``trial_id`` keys, and the analysis' notes."""
    import numpy as np

    from analysis.data import completed_trials, measures_wide, target_values
    from analysis.report import _measures_for_tables

    names = [name for prefix, derived, best in feature_groups
             if len(measures_) and measures_["measure"].astype(str).str.startswith(prefix).any()
             for name in (derived, best) if name is not None]
    if not names:
        return pd.DataFrame(index=models["trial_id"]), []
    completed = completed_trials(models)
    target_series = target_values(completed, target)
    target_series = target_series[np.isfinite(target_series.to_numpy(dtype=float))]
    wide = measures_wide(measures_, list(target_series.index))
    wide = wide.loc[:, wide.notna().any(axis=0)]
    found, _, notes = _measures_for_tables(wide, target_series, feature_groups)
    found = found.reindex(target_series.index)
    return pd.DataFrame({name: found[name] if name in found.columns else np.nan for name in names},
                        index=target_series.index), list(notes)


def __getattr__(name: str) -> Any:
    # ZooModel needs torch: imported when first asked for, so that reading tables does not.
    if name == "ZooModel":
        from sweep.zoo_model import ZooModel

        return ZooModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

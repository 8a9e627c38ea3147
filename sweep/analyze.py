"""``genzoo analyze``: read an experiment from the store, run :func:`analysis.report.analyze`
and put its tables, figures and report under ``<experiment>/analysis/``.

The analysis's unit is a model, the pair (``trial_id``, ``model_id``): :func:`zoo_frames`
gives it one row per model of every completed trial (the trial's hyperparameters, the
model's own final metrics), and the measure and long-table rows as the store holds them.

The analysis writes into a local scratch folder first; the files are then copied into the
store (each atomically), so a remote store gets the same layout as a local one.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Optional

import pandas as pd

from analysis import sections
from analysis.options import AnalysisOptions
from analysis.report import analyze
from measures import registry
from sweep import provenance
from sweep.config import paper_comparison, read_resolved_config
from sweep.reader import model_rows
from sweep.store import COMPLETED, Store
from trainers.data import registry as datasets

ANALYSIS_DIR = "analysis"


def count_test_examples(models: pd.DataFrame) -> Optional[int]:
    """The test-set size of the zoo's one dataset (its spec's ``test_size``), for the report's
    comparison of the target's spread with one model's test-set noise (None for several
    datasets or an unregistered one)."""
    names = set(models["dataset"].astype(str)) if "dataset" in models.columns else set()
    name = names.pop() if len(names) == 1 else None
    return datasets.get(name).test_size if name in datasets.names() else None


def run(experiment: str, *, storage: Optional[str] = None, target: Optional[str] = None,
        include_partial: bool = False):
    from sweep.migrate import upgrade

    store = Store(storage, experiment)
    upgrade(store)
    config = read_resolved_config(store)
    options = config.analysis
    target = target or options.target
    # The long tables the sweep file names, and those its report sections read (sections.get(name).tables).
    wanted = [*options.tables, *(name for section in options.sections for name in sections.get(section).tables)]
    models, measures, tables = zoo_frames(store, tuple(dict.fromkeys(n for n in wanted if n != "epochs")))
    # Per-epoch records: the learning curves of the report and the paper sections.
    tables["epochs"] = store.epochs()
    settings = {
        name: registry.settings_for(name, config.measures.get(name))
        for name in registry.names()
    }
    hparams = [name for name, values in config.axes if len(values) > 1]
    analysis_options = AnalysisOptions(
        target=target, hparams=tuple(hparams), experiment=experiment,
        settings={"measures": settings, "provenance": provenance.recorded(store)},
        double_descent=options.double_descent, anchor=options.anchor, feature_groups=options.feature_groups,
        sections=options.sections, test_examples=count_test_examples(models), colour_by=options.colour_by,
        paper=paper_comparison(options.paper) if options.paper else None, include_partial=include_partial,
        sign_error_min_weight=options.sign_error_min_weight, sign_error_min_ess=options.sign_error_min_ess,
    )
    with tempfile.TemporaryDirectory(prefix="genzoo-analysis-") as scratch:
        result = analyze(models, measures, scratch, analysis_options, tables=tables)
        root = Path(scratch)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            store.upload(path, ANALYSIS_DIR, *path.relative_to(root).parts)
    local = store.local_path(ANALYSIS_DIR, "report.md")
    report = str(local) if local is not None else f"{store.uri}/{ANALYSIS_DIR}/report.md"
    return dataclasses.replace(result, report_path=report)



def zoo_frames(store: Store, table_names=("pruning_curves", "el2n", "hessian_eigenvalues")):
    """(models, measures, long tables) of an experiment for :func:`analysis.report.analyze`:
    one row per model of every completed trial, with the trial's columns and the model's
    metrics (and ``model_id``, ``sparsity``, ``model_epoch`` columns); every frame keeps the
    store's ``trial_id`` and ``model_id``, the pair that names a model."""
    trials = store.trials()
    completed = trials[trials["status"] == COMPLETED] if len(trials) else trials
    rows = model_rows(completed, store.models())  # the model's own columns win (its metrics, reached_target)
    tables = {name: store.read_folder(name) for name in table_names if store.list(name, suffix=".parquet")}
    return rows, store.measures(), tables

"""``genzoo analyze``: read an experiment from the store, run :func:`analysis.report.analyze`
and put its tables, figures and report under ``<experiment>/analysis/``.

The analysis writes into a local scratch folder first; the files are then copied into the
store (each atomically), so a remote store gets the same layout as a local one.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Optional

from analysis.report import DOUBLE_DESCENT_MODELS, analyze
from measures import registry
from sweep.driver import read_resolved_config
from sweep.store import Store

ANALYSIS_DIR = "analysis"
TABLE_FOLDERS = ("pruning_curves", "el2n")


def default_target(config) -> str:
    """Test loss for a width sweep of the double-descent models, else the generalization gap."""
    axes = dict(config.axes)
    models = set(axes.get("model", (config.base.model,)))
    if "width" in axes and len(axes["width"]) > 1 and models <= DOUBLE_DESCENT_MODELS:
        return "test_loss"
    return "gap"


def run(experiment: str, *, storage: Optional[str] = None, target: Optional[str] = None):
    store = Store(storage, experiment)
    config = read_resolved_config(store)
    target = target or default_target(config)
    tables = {name: store.read_folder(name) for name in TABLE_FOLDERS if store.list(name, suffix=".parquet")}
    settings = {
        name: registry.settings_for(name, config.measures.get(name))
        for name in registry.names()
    }
    hparams = [name for name, values in config.axes if len(values) > 1]
    with tempfile.TemporaryDirectory(prefix="genzoo-analysis-") as scratch:
        result = analyze(
            store.trials(), store.measures(), scratch, target=target, tables=tables,
            experiment=experiment, settings={"measures": settings}, hparams=hparams,
        )
        root = Path(scratch)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            store.upload(path, ANALYSIS_DIR, *path.relative_to(root).parts)
    local = store.local_path(ANALYSIS_DIR, "report.md")
    report = str(local) if local is not None else f"{store.uri}/{ANALYSIS_DIR}/report.md"
    return dataclasses.replace(result, report_path=report)

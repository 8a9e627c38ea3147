"""Requests a remote store answers for a whole experiment, counted by a moto S3 server on
loopback: `genzoo sweep status` of 500 trials reads the state from listings and a bounded
number of reads once the store is compacted (a launch leaves it so), not several per trial.
The store is built with the store's own writers (bench/scale.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("moto.server")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"
# Requests of `sweep status` on a compacted store: sweep.yaml (upgrade check, config),
# trials.parquet, two listings and the parts of epochs/ and models/, the checkpoints/ listing
# (one per 1,000 files), the last launch's record; whatever the number of trials.
STATUS_BOUND = 40


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def stores(scale, tmp_path_factory):
    root = tmp_path_factory.mktemp("s3req")
    doc = scale.document(500, experiment="req")
    local = scale.build(str(root / "local"), doc, workers=1)
    before = {"status": scale.status_text(local).replace(local.uri, "URI"),
              **{read: getattr(local, read)() for read in ("epochs", "models", "measures")}}
    scale.compact_like_genzoo(local)  # as the launch and the measure job leave it
    with scale.CountingMotoServer() as server:
        yield server, server.upload(local), doc, before


def test_status_of_500_trials_on_s3_stays_under_the_bound(scale, stores):
    server, remote, doc, before = stores
    _, requests = server.count(lambda: scale.stage_status(remote, doc))
    assert requests <= STATUS_BOUND, requests
    assert scale.status_text(remote).replace(remote.uri, "URI") == before["status"]  # as before compaction


def test_every_table_of_500_trials_reads_in_a_few_requests_and_equals_the_uncompacted_one(scale, stores):
    server, remote, doc, before = stores
    _, requests = server.count(lambda: scale.stage_genzoo_tables(remote, doc))
    assert requests <= 20, requests
    for read in ("epochs", "models", "measures"):
        pd.testing.assert_frame_equal(getattr(remote, read)(), before[read])

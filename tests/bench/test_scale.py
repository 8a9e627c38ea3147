"""Smoke test of bench/scale.py at tiny sizes: every stage timed at every size with its growth
exponent, the S3 stages with their request counts, the synthetic store complete as the
driver sees it, the real-sweep part's per-trial overhead, bad arguments as one-line errors."""

import json
import math
import re

import pytest

SCRIPT = "scale"
STAGES = "plan,status,launch,measure plan,pandas epochs,pandas measures,duckdb epochs,genzoo tables"


def test_every_stage_is_timed_at_every_size_with_its_exponent_and_requests_on_s3(bench, capsys, tmp_path):
    out_json = tmp_path / "rows.json"
    assert bench.main(["--sizes", "100,200", "--imp-models", "0", "--s3-sizes", "100", "--stages", STAGES,
                       "--workers", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out_json.read_text())
    local = [r for r in rows if r["where"] == "local"]
    stages = STAGES.split(",") + ["compaction", "pandas epochs (uncompacted)"]
    assert {(r["stage"], r["trials"]) for r in local} == {(s, n) for s in stages for n in (100, 200)}
    for stage in stages:
        line = re.search(rf"^\| {re.escape(stage)} \| ([\d.]+) \| ([\d.]+) \| (-?[\d.]+|–) \|$", out, re.M)
        assert line, (stage, out)
        t1, t2 = (next(r["seconds"] for r in local if r["stage"] == stage and r["trials"] == n) for n in (100, 200))
        if line[3] != "–":
            assert float(line[3]) == pytest.approx(math.log(t2 / t1) / math.log(2), abs=0.01)
    remote = [r for r in rows if r["where"] == "s3"]
    assert {r["stage"] for r in remote} == set(bench.S3_STAGES) and all(r["requests"] > 0 for r in remote)
    assert re.search(r"^\| status \| \d+ \|$", out, re.M)  # the requests table


def test_the_synthetic_store_is_complete_but_one_percent_as_the_driver_sees_it(bench, tmp_path):
    doc = bench.document(200, experiment="syn")
    store = bench.build(str(tmp_path), doc, workers=1)
    counts = bench.TrialsTable(store, bench.sweep_config.parse(doc).trials()).counts()
    assert counts == {"completed": 198, "pending": 2}
    measured = store.measures()
    assert measured["trial_id"].nunique() == 196 and set(measured["status"]) == {"ok"}
    todo, planned = bench.measure_job.plan(
        store, [(t, "final") for t in store.models()["trial_id"]], list(bench.FAMILIES),
        bench.measure_job.resolve_settings(list(bench.FAMILIES), bench.sweep_config.parse(doc).measures),
        {c.trial_id: c for c in bench.sweep_config.parse(doc).trials()})
    assert planned["changed"] == planned["incomplete"] == 0 and len(todo) == 2 * len(bench.FAMILIES)


@pytest.mark.slow  # 15 to 50 s: the full suite stays under 10 minutes on 2 idle cores
def test_the_sweep_part_prints_the_per_trial_overhead(bench, ray_address, tmp_path):
    result = bench.sweep_overhead(4, str(tmp_path))
    assert result["completed"] == 4 and result["slots"] >= 1
    assert result["overhead_slot_seconds"] == pytest.approx(
        (result["wall_seconds"] * result["slots"] - result["training_seconds"]) / 4)


@pytest.mark.parametrize("args, message", [
    (["--sizes", "150"], "--sizes"), (["--sizes", "a"], "--sizes"), (["--s3-sizes", "300"], "--s3-sizes"),
    (["--stages", "nope"], "--stages"), (["--imp-models", "100"], "--imp-models"), (["--workers", "0"], "--workers"),
])
def test_bad_arguments_are_one_line_errors(bench, capsys, args, message):
    assert bench.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"scale: error: {message}") and "\n" not in err

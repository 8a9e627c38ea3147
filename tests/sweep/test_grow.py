"""A zoo grows: a sweep that contains the stored one trains only its new trials (issue 27)."""

import pandas as pd
import pytest
import yaml

from sweep import config as sweep_config
from sweep.cli import main

TINY = {
    "experiment": "grow", "dataset": "digits", "model": "nin",
    "train": {"epochs": 1, "lr": 0.05, "train_size": 32, "batch_size": 32, "depth": 2},
    "grid": {"width": [4]}, "seeds": [0], "resources": {"cpus": 1},
}


def _write(tmp_path, name, **changes):
    document = yaml.safe_load(yaml.safe_dump(TINY))
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if field:
            document[section][field] = value
        else:
            document[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parts[len(root.parts)] in ("epochs", "models", "checkpoints")}


def test_more_widths_and_seeds_train_only_the_new_trials_and_keep_the_stored_ones(ray_address, tmp_path, capsys):
    storage = tmp_path / "store"
    assert main(["sweep", "run", str(_write(tmp_path, "first")), "--storage", str(storage)]) == 0
    root = storage / "grow"
    stored = _snapshot(root)
    capsys.readouterr()

    grown = _write(tmp_path, "grown", **{"grid.width": [6, 4], "seeds": [0, 1]})
    assert main(["sweep", "run", str(grown), "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert "the sweep grows by 3 trials; the 1 stored ones are kept" in out
    assert "3 of 4 trials to train" in out
    after = _snapshot(root)
    assert {path: after[path] for path in stored} == stored  # the stored trial untouched
    trials = pd.read_parquet(root / "trials.parquet")
    assert sorted(zip(trials["width"], trials["seed"])) == [(4, 0), (4, 1), (6, 0), (6, 1)]
    assert set(trials["status"]) == {"completed"}
    recorded = yaml.safe_load((root / "sweep.yaml").read_text())
    assert recorded["grid"]["width"] == [6, 4] and recorded["seeds"] == [0, 1]  # the union, for resume
    assert main(["sweep", "resume", "grow", "--storage", str(storage)]) == 0
    assert "nothing to train" in capsys.readouterr().out


@pytest.mark.parametrize("changes, field, stored, new", [
    ({"grid.width": [6]}, "grid.width", "[4]", "[6]"),
    ({"train.lr": 0.1}, "train.lr", "0.05", "0.1"),
    ({"seeds": [1]}, "seeds", "[0]", "[1]"),
])
def test_a_sweep_that_would_change_stored_trials_is_one_line_naming_the_field(tmp_path, capsys, changes, field,
                                                                               stored, new):
    from sweep import driver
    from sweep.store import Store

    storage = tmp_path / "store"
    # The stored sweep, as a launch records it first (no training needed to refuse the second).
    first = sweep_config.load(str(_write(tmp_path, "first")))
    Store(str(storage), "grow").write_text(driver._provenance(first, driver.provenance.now()), "sweep.yaml")
    before = (storage / "grow" / "sweep.yaml").read_bytes()
    assert main(["sweep", "run", str(_write(tmp_path, "other", **changes)), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"genzoo: error: {field}: stored {stored}, new {new}")
    assert "genzoo sweep resume grow" in err
    assert (storage / "grow" / "sweep.yaml").read_bytes() == before
    assert sorted(p.name for p in (storage / "grow").iterdir()) == ["sweep.yaml"]


def test_growth_refusal_names_a_left_out_value_and_accepts_a_reordered_grid():
    first = sweep_config.parse({**TINY, "grid": {"width": [4, 8]}})
    assert sweep_config.growth_refusal(first, sweep_config.parse({**TINY, "grid": {"width": [8, 4]}})) is None
    assert sweep_config.growth_refusal(first, sweep_config.parse({**TINY, "grid": {"width": [2, 4, 8]}})) is None
    refusal = sweep_config.growth_refusal(first, sweep_config.parse({**TINY, "grid": {"width": [8, 16]}}))
    assert refusal.startswith("grid.width: stored [4, 8], new [8, 16]") and "left out: 4" in refusal

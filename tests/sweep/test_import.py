"""`genzoo import`: a manifest of PyTorch checkpoints and a Ray Tune experiment folder (the
Model Zoos layout), each written here in its source's layout, imported, measured on a real
local Ray and analysed end to end; a bad manifest row is one line and exit 2 with nothing
written; a re-import rewrites nothing; a killed import is finished by running it again."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from sweep import analyze, importer, reader
from sweep import measure_job as job
from sweep.cli import main
from sweep.config import read_resolved_config
from sweep.store import Store
from trainers import data, models

CHEAP = ["prunability.resolution=0.05"]
NIN = dict(width=8, depth=2)


def _model(name: str, seed: int, **hparams):
    torch.manual_seed(seed)
    return models.build(name, 10, input_shape=(3, 32, 32), **hparams)


def _step(model, seed: int, lr: float) -> None:
    """One SGD step on 32 digits: a model that has trained a little."""
    dataset = data.load("digits", train_size=96, seed=0)
    torch.manual_seed(seed)
    x = data.normalize(dataset.train_images[:32], dataset.mean, dataset.std)
    loss = torch.nn.functional.cross_entropy(model(x), dataset.train_labels[:32])
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= lr * parameter.grad


def _files(root):
    """Every file of the experiment but what measure and analyze write, with its mtime and bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in ("measures", "analysis", "pruning_curves")}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Four NiNs (lr 0.01/0.05 x seed 0/1: a grid), checkpoints without init weights; two rows
    give their metrics, two leave them to the import."""
    folder = tmp_path_factory.mktemp("manifest_zoo")
    rows = []
    for lr in (0.01, 0.05):
        for seed in (0, 1):
            net = _model("nin", seed, **NIN)
            _step(net, seed, lr)
            name = f"nin_lr{lr}_s{seed}.pt"
            torch.save(net.state_dict(), folder / name)
            row = {"file": name, "model": "nin", **NIN, "dataset": "digits", "train_size": 96, "lr": lr,
                   "seed": seed, "epochs": 1, "x_note": f"run {len(rows)}"}
            if seed == 0:
                row.update(train_loss=2.5, train_acc=0.125, test_loss=2.25, test_acc=0.25)
            rows.append(row)
    path = folder / "zoo.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_manifest_is_imported_measured_and_analysed_and_a_reimport_rewrites_nothing(manifest, tmp_path, ray_address,
                                                                                      capsys):
    storage = str(tmp_path / "store")
    assert main(["import", str(manifest), "--experiment", "mzoo", "--storage", storage]) == 0
    assert "4 imported, 0 unchanged" in capsys.readouterr().out
    store = Store(storage, "mzoo")
    config = read_resolved_config(store)
    assert dict(config.axes) == {"lr": (0.01, 0.05), "seed": (0, 1)}  # a grid: the analysis has its axes
    trials = store.trials()
    assert list(trials["status"]) == ["completed"] * 4
    ids = set(trials["trial_id"])
    for trial_id in ids:  # no initial weights: none stored, the source recorded
        assert set(store.list("checkpoints", trial_id)) == {"final.pt", "source.json"}
        source = json.loads(store.read_text("checkpoints", trial_id, "source.json"))
        assert source["source"] == "manifest" and source["path"].endswith(".pt") and source["row"] in (1, 2, 3, 4)
        assert source["record"]["x_note"] == f"run {source['row'] - 1}"
    models_table = store.models().set_index("trial_id")
    by_seed = trials.set_index("trial_id")["seed"]
    given = models_table[by_seed.reindex(models_table.index) == 0]
    assert (given["train_acc"] == 0.125).all() and (given["test_loss"] == 2.25).all()
    # The other two: evaluated on import, as the training loop evaluates (full train/test splits).
    computed = models_table[by_seed.reindex(models_table.index) == 1]
    dataset = data.load("digits", train_size=96, seed=1)
    for trial_id, row in computed.iterrows():
        net = _model("nin", 0, **NIN)
        net.load_state_dict(torch.load(store.local_path("checkpoints", trial_id, "final.pt"), weights_only=True))
        loss, acc = data.evaluate(net, dataset.test_images, dataset.test_labels, mean=dataset.mean, std=dataset.std)
        assert row["test_loss"] == pytest.approx(loss) and row["test_acc"] == pytest.approx(acc)
        assert row["weights"] > 0 and row["epoch"] == 1
    assert len(store.epochs()) == 4
    # The reader and `sweep status` see an imported zoo as a trained one.
    zoo = reader.zoo(storage, "mzoo")
    assert len(zoo) == 4 and set(zoo["lr"]) == {0.01, 0.05} and zoo["gap"].notna().all()
    trial_id = computed.index[0]
    split = reader.load_data(storage, "mzoo", trial_id)
    loaded = reader.load_model(storage, "mzoo", trial_id)
    assert data.evaluate(loaded, split.train_images, split.train_labels)[1] == pytest.approx(
        computed.loc[trial_id, "train_acc"])
    assert main(["sweep", "status", "mzoo", "--storage", storage]) == 0
    assert "4 trials: completed 4" in capsys.readouterr().out

    counts = job.run("mzoo", storage=storage, measures="norms,prunability", overrides=CHEAP)
    assert counts == {"ok": 8, "error": 0}
    measures = store.measures()
    assert set(measures["trial_id"]) == ids and set(measures["status"]) == {"ok"}
    norms = measures[measures["family"] == "norms"]
    assert "distance_from_init" not in set(norms["measure"])  # not applicable without init weights
    assert {"sum_two_norms", "parameter_count", "path_norm"} <= set(norms["measure"])
    info = json.loads(norms["settings"].iloc[0])["info"]
    assert "no initial weights" in info["not_applicable"]["distance_from_init"]
    result = analyze.run("mzoo", storage=storage)
    assert (tmp_path / "store" / "mzoo" / "analysis" / "report.md").is_file()
    assert "prunability" in result.table1_text

    before = _files(tmp_path / "store" / "mzoo")
    assert importer.run(str(manifest), experiment="mzoo", storage=storage) == {"imported": 0, "unchanged": 4}
    assert _files(tmp_path / "store" / "mzoo") == before


def test_a_killed_import_is_finished_by_running_it_again(manifest, tmp_path):
    storage = str(tmp_path / "store")
    importer.run(str(manifest), experiment="mzoo", storage=storage)
    store = Store(storage, "mzoo")
    before = _files(tmp_path / "store" / "mzoo")
    victim = sorted(store.trials()["trial_id"])[0]
    # Killed after a trial's checkpoints, before its records and its models row (the marker).
    store.delete("models", f"{victim}.parquet")
    store.delete("epochs", f"{victim}.parquet")
    store.delete("trials.parquet")
    assert importer.run(str(manifest), experiment="mzoo", storage=storage) == {"imported": 1, "unchanged": 3}
    after = _files(tmp_path / "store" / "mzoo")
    assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in before.items()}
    changed = {k for k in after if after[k][0] != before[k][0]}
    assert changed == {f"models/{victim}.parquet", f"epochs/{victim}.parquet", "trials.parquet"}


@pytest.mark.parametrize("column, value, message", [
    ("lr", -1, "zoo.csv row 2: lr: got -1.0, allowed: a positive number"),
    ("model", "vit", "zoo.csv row 2: model: got 'vit', allowed: "),
    ("test_acc", 87.5, "zoo.csv row 2: test_acc: got 87.5, allowed: a fraction in [0, 1] (not a percentage)"),
    ("file", "missing.pt", "zoo.csv row 2: file: "),
    ("lr_milestones", "[5]", "zoo.csv row 2: lr_milestones: got (5,), allowed: a list of epochs in [0, 1)"),
    ("width", 16, "zoo.csv row 2: file: "),  # the checkpoint does not fit a NiN of width 16
])
def test_a_bad_manifest_row_is_one_line_exit_2_and_nothing_written(manifest, tmp_path, capsys, column, value, message):
    frame = pd.read_csv(manifest)
    frame[column] = frame[column].astype(object) if column in frame else None
    frame.loc[1, column] = value
    frame["file"] = [str(manifest.parent / f) if f != "missing.pt" else f for f in frame["file"]]
    path = tmp_path / "zoo.csv"
    frame.to_csv(path, index=False)
    assert main(["import", str(path), "--storage", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genzoo: error: " + message), err
    assert not (tmp_path / "store" / "zoo").exists()


def test_two_rows_of_one_trial_and_an_unknown_column_are_refused(manifest, tmp_path, capsys):
    frame = pd.read_csv(manifest)
    frame["file"] = [str(manifest.parent / f) for f in frame["file"]]
    frame.loc[1, "seed"] = 0
    frame.to_csv(tmp_path / "dup.csv", index=False)
    assert main(["import", str(tmp_path / "dup.csv"), "--storage", str(tmp_path / "store")]) == 2
    assert "dup.csv row 2: the same trial as dup.csv row 1" in capsys.readouterr().err
    frame.rename(columns={"lr": "learning_rate"}).to_csv(tmp_path / "typo.csv", index=False)
    assert main(["import", str(tmp_path / "typo.csv"), "--storage", str(tmp_path / "store")]) == 2
    assert "typo.csv: column 'learning_rate': unknown, allowed: file, model, dataset" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


# ---------------------------------------------------------------------------------------------
# Ray Tune (the Model Zoos layout)

TUNE_TRIALS = [(0.1, 0), (0.1, 1), (0.2, 5)]  # (lr, seed): not a grid


@pytest.fixture(scope="module")
def tune_zoo(tmp_path_factory):
    """A Ray Tune experiment folder as the Model Zoos ship them: per trial params.json (their
    own names), result.json (one JSON line per iteration), checkpoint_<iteration>/checkpoints
    (000000: the initial weights)."""
    root = tmp_path_factory.mktemp("tune") / "tune_zoo"
    for number, (lr, seed) in enumerate(TUNE_TRIALS):
        folder = root / f"NN_tune_trainable_{number:05d}_{number}_lr={lr},seed={seed}_2022-01-01_00-00-00"
        folder.mkdir(parents=True)
        params = {"model::type": "lenet_300_100", "model::width": 16, "optim::lr": lr, "seed": seed,
                  "optim::optimizer": "SGD", "dataset::dump": "/data/digits.pt"}
        (folder / "params.json").write_text(json.dumps(params))
        net = _model("lenet_300_100", seed, width=16)
        lines = []
        for iteration in (0, 1, 2):
            if iteration:
                _step(net, seed + iteration, lr)
            (folder / f"checkpoint_{iteration:06d}").mkdir()
            torch.save({"model": net.state_dict(), "optimizer": {"lr": torch.tensor(lr)}},
                       folder / f"checkpoint_{iteration:06d}" / "checkpoints")
            lines.append(json.dumps({"training_iteration": iteration, "loss_train": 2.3 - 0.1 * iteration,
                                     "acc_train": 0.1 * (iteration + 1), "loss_test": 2.31 - 0.05 * iteration,
                                     "acc_test": 0.1 + 0.05 * iteration + 0.01 * number, "time_this_iter_s": 0.5,
                                     "timestamp": 1_640_995_200 + iteration, "hostname": "zoo-node"}))
        (folder / "result.json").write_text("\n".join(lines) + "\n")
    mapping = root.parent / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({
        "params": {"model": "model::type", "width": "model::width", "lr": "optim::lr", "seed": "seed",
                   "optimizer": "optim::optimizer"},
        "values": {"optimizer": {"SGD": "sgd", "Adam": "adam"}},
        "fixed": {"dataset": "digits", "train_size": 96},
        "metrics": {"minibatch_loss": "loss_train", "train_loss": "loss_train", "train_acc": "acc_train",
                    "test_loss": "loss_test", "test_acc": "acc_test"},
    }))
    return root, mapping


def test_a_tune_experiment_is_imported_with_its_records_and_init_weights_measured_and_analysed(
        tune_zoo, tmp_path, ray_address):
    root, mapping = tune_zoo
    storage = str(tmp_path / "store")
    assert main(["import", str(root), "--mapping", str(mapping), "--storage", storage]) == 0
    store = Store(storage, "tune_zoo")
    config = read_resolved_config(store)
    assert len(config.variants) == 3  # not a grid: one variant per model, each with its seed
    trials = store.trials().sort_values("seed")
    assert list(zip(trials["lr"], trials["seed"])) == TUNE_TRIALS
    assert list(trials["status"]) == ["completed"] * 3 and set(trials["epochs"]) == {2}
    for number, trial_id in enumerate(trials["trial_id"]):
        assert set(store.list("checkpoints", trial_id)) == {"init.pt", "final.pt", "source.json"}
        epochs = store.epochs(trial_id)
        assert list(epochs["epoch"]) == [1, 2]
        assert list(epochs["test_acc"]) == pytest.approx([0.15 + 0.01 * number, 0.2 + 0.01 * number])
        assert list(epochs["host"]) == ["zoo-node"] * 2 and epochs["finished_at"].notna().all()
        assert store.models(trial_id)["train_acc"].tolist() == pytest.approx([0.3])
        source = json.loads(store.read_text("checkpoints", trial_id, "source.json"))
        assert source["source"] == "tune" and source["record"]["optim::optimizer"] == "SGD"
        assert source["path"].endswith("checkpoint_000002/checkpoints")
    # The weights are the source's final ones; init.pt its checkpoint_000000.
    first = trials["trial_id"].iloc[0]
    folder = next(root.glob("NN_tune_trainable_00000_*"))
    for name, iteration in (("final.pt", 2), ("init.pt", 0)):
        source = torch.load(folder / f"checkpoint_{iteration:06d}" / "checkpoints", weights_only=True)["model"]
        stored = torch.load(store.local_path("checkpoints", first, name), weights_only=True)
        assert all(torch.equal(source[k], stored[k]) for k in source) and set(source) == set(stored)

    counts = job.run("tune_zoo", storage=storage, measures="norms,training,prunability", overrides=CHEAP)
    assert counts == {"ok": 9, "error": 0}
    measures = store.measures()
    assert set(measures["status"]) == {"ok"}
    distance = measures[measures["measure"] == "distance_from_init"]
    assert len(distance) == 3 and (distance["value"] > 0).all()
    sotl = measures[measures["measure"] == "sum_of_train_losses"]
    assert sotl["value"].tolist() == pytest.approx([-(2.2 + 2.1)] * 3)
    analyze.run("tune_zoo", storage=storage)
    assert (tmp_path / "store" / "tune_zoo" / "analysis" / "report.md").is_file()

    before = _files(tmp_path / "store" / "tune_zoo")
    assert main(["import", str(root), "--mapping", str(mapping), "--storage", storage]) == 0
    assert _files(tmp_path / "store" / "tune_zoo") == before


def test_a_tune_mapping_that_names_a_missing_parameter_is_one_line(tune_zoo, tmp_path, capsys):
    root, mapping = tune_zoo
    bad = tmp_path / "bad.yaml"
    document = yaml.safe_load(mapping.read_text())
    document["params"]["weight_decay"] = "optim::wd"
    bad.write_text(yaml.safe_dump(document))
    assert main(["import", str(root), "--mapping", str(bad), "--storage", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "params.json has no 'optim::wd' (mapped to weight_decay)" in err
    assert not (tmp_path / "store" / "tune_zoo").exists()


def test_the_sweep_document_is_a_grid_only_when_the_configs_are_every_combination():
    from trainers.config import TrainConfig

    grid = [TrainConfig(lr=lr, seed=s) for lr in (0.1, 0.2) for s in (0, 1)]
    document = importer.sweep_document("x", grid)
    assert document["grid"] == {"lr": [0.1, 0.2]} and document["seeds"] == [0, 1]
    ragged = grid[:3]
    document = importer.sweep_document("x", ragged)
    assert "grid" not in document and [v["seed"] for v in document["variants"]] == [0, 1, 0]
    from sweep.config import parse

    assert [c.trial_id for c in parse(document).trials()] == [c.trial_id for c in ragged]


def test_a_parquet_manifest_with_initial_and_early_weights(manifest, tmp_path, ray_address):
    """The same zoo as a Parquet manifest, two rows with init_file and early_file: those trials
    keep init.pt and epoch_<k>.pt (and so get distance_from_init and EL2N); ids are the CSV's
    for the rows without them."""
    frame = pd.read_csv(manifest)
    frame["file"] = [str(manifest.parent / f) for f in frame["file"]]
    frame["epochs"] = [1, 1, 3, 3]
    for row in (2, 3):
        seed = int(frame.loc[row, "seed"])
        init = tmp_path / f"init_{seed}.pt"
        torch.save({"state_dict": _model("nin", seed, **NIN).state_dict(), "epoch": 0}, init)
        frame.loc[row, "init_file"] = str(init)
        frame.loc[row, "early_file"] = frame.loc[row, "file"]
        frame.loc[row, "early_epoch"] = 2
    frame.to_parquet(tmp_path / "zoo.parquet")
    storage = str(tmp_path / "store")
    assert importer.run(str(tmp_path / "zoo.parquet"), experiment="pq", storage=storage) == {"imported": 4,
                                                                                           "unchanged": 0}
    store = Store(storage, "pq")
    trials = store.trials().sort_values(["lr", "seed"])
    assert list(trials["status"]) == ["completed"] * 4
    assert [list(c) for c in trials["checkpoint_epochs"]] == [[], [], [2], [2]]
    for trial_id, epochs in zip(trials["trial_id"], trials["epochs"]):
        names = set(store.list("checkpoints", trial_id))
        if epochs == 3:
            assert names == {"init.pt", "epoch_2.pt", "final.pt", "source.json"}
            # A manifest gives the last epoch's metrics only: the epochs before are unknown (NaN).
            records = store.epochs(trial_id)
            assert list(records["epoch"]) == [1, 2, 3] and records["test_acc"].isna().tolist() == [True, True, False]
        else:
            assert names == {"final.pt", "source.json"}
    # distance_from_init and el2n for the two models with initial and early weights, not the others.
    assert job.run("pq", storage=storage, measures="norms,el2n") == {"ok": 6, "error": 0}
    measures = store.measures()
    with_init = set(trials["trial_id"][2:])
    assert set(measures.loc[measures["measure"] == "distance_from_init", "trial_id"]) == with_init
    assert set(measures.loc[measures["family"] == "el2n", "trial_id"]) == with_init
    importer.run(str(manifest), experiment="csv", storage=storage)
    first_two = set(Store(storage, "csv").trials().sort_values(["lr", "seed"])["trial_id"][:2])
    assert first_two == set(trials["trial_id"][:2])


def test_a_tune_folder_with_progress_csv_reads_as_with_result_json(tune_zoo, tmp_path):
    import shutil

    root, mapping = tune_zoo
    copy = tmp_path / "tune_csv"
    shutil.copytree(root, copy)
    for result in copy.glob("*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        pd.DataFrame(rows).to_csv(result.with_name("progress.csv"), index=False)
        result.unlink()
    storage = str(tmp_path / "store")
    importer.run(str(root), mapping=str(mapping), experiment="a", storage=storage)
    importer.run(str(copy), mapping=str(mapping), experiment="b", storage=storage)
    first, second = Store(storage, "a"), Store(storage, "b")
    assert set(first.trials()["trial_id"]) == set(second.trials()["trial_id"])
    columns = ["trial_id", "epoch", "minibatch_loss", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]
    pd.testing.assert_frame_equal(first.epochs()[columns], second.epochs()[columns])


def test_a_large_import_is_compacted_and_a_reimport_of_the_compacted_zoo_rewrites_nothing(manifest, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("GENZOO_COMPACT_MIN_FILES", "2")
    storage = str(tmp_path / "store")
    importer.run(str(manifest), experiment="mzoo", storage=storage)
    folder = tmp_path / "store" / "mzoo"
    assert [p.name.startswith("part-") for p in (folder / "epochs").glob("*.parquet")] == [True]
    assert len(Store(storage, "mzoo").epochs()) == 4
    before = _files(folder)
    assert importer.run(str(manifest), experiment="mzoo", storage=storage) == {"imported": 0, "unchanged": 4}
    assert _files(folder) == before


def test_an_experiment_that_a_sweep_made_is_not_imported_into(manifest, tmp_path, capsys):
    storage = tmp_path / "store"
    (storage / "mzoo").mkdir(parents=True)
    (storage / "mzoo" / "sweep.yaml").write_text(yaml.safe_dump({"experiment": "mzoo", "provenance": {"host": "x"}}))
    assert main(["import", str(manifest), "--experiment", "mzoo", "--storage", str(storage)]) == 2
    assert "holds a sweep that genzoo import did not make" in capsys.readouterr().err
    assert [p.name for p in (storage / "mzoo").iterdir()] == ["sweep.yaml"]


def test_an_imported_experiment_whose_sweep_yaml_lost_its_import_provenance_imports_again(manifest, tmp_path):
    storage = str(tmp_path / "store")
    importer.run(str(manifest), experiment="mzoo", storage=storage)
    path = tmp_path / "store" / "mzoo" / "sweep.yaml"
    document = yaml.safe_load(path.read_text())
    del document["provenance"]["imported_from"]  # as `genzoo sweep resume` rewrites it
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert importer.run(str(manifest), experiment="mzoo", storage=storage) == {"imported": 0, "unchanged": 4}


class _Payload:
    """A pickled object that is not tensors: weights_only=True refuses it (its code never runs)."""

    def __reduce__(self):
        return (print, ("this must never be printed",))


def test_a_checkpoint_that_is_not_tensors_is_refused_without_running_it(manifest, tmp_path, capsys):
    frame = pd.read_csv(manifest)
    frame["file"] = [str(manifest.parent / f) for f in frame["file"]]
    torch.save({"model": _Payload()}, tmp_path / "evil.pt")
    frame.loc[2, "file"] = str(tmp_path / "evil.pt")
    frame.to_csv(tmp_path / "zoo.csv", index=False)
    assert main(["import", str(tmp_path / "zoo.csv"), "--storage", str(tmp_path / "store")]) == 2
    captured = capsys.readouterr()
    assert "never be printed" not in captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith("genzoo: error: zoo.csv row 3: file: ")
    assert "weights_only=True" in captured.err
    assert not (tmp_path / "store" / "zoo").exists()


def test_a_manifest_of_factory_models_is_imported_and_measured(tmp_path, ray_address):
    """``model`` as a ``package.module:function`` factory (here nin's own builder, importable in
    every Ray worker): the models are trials of that model, measured on Ray; a manifest without
    ``epochs`` records one epoch."""
    reference = "trainers.models.nin:build_nin"
    rows = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = models.build(reference, 10, **NIN)
        torch.save(net.state_dict(), tmp_path / f"net{seed}.pt")
        rows.append({"file": f"net{seed}.pt", "model": reference, **NIN, "dataset": "digits", "train_size": 96,
                     "seed": seed})
    pd.DataFrame(rows).to_csv(tmp_path / "fzoo.csv", index=False)
    storage = str(tmp_path / "store")
    assert importer.run(str(tmp_path / "fzoo.csv"), storage=storage) == {"imported": 2, "unchanged": 0}
    store = Store(storage, "fzoo")
    trials = store.trials()
    assert set(trials["model"]) == {reference} and all(t.startswith("build_nin-") for t in trials["trial_id"])
    assert read_resolved_config(store).base.model == reference and set(trials["epochs"]) == {1}
    assert len(store.epochs()) == 2
    assert job.run("fzoo", storage=storage, measures="norms") == {"ok": 2, "error": 0}
    norms = store.measures()
    counts = norms[norms["measure"] == "parameter_count"]["value"]
    assert set(counts) == {float(sum(p.numel() for p in _model("nin", 0, **NIN).parameters()))}


def test_a_bad_factory_in_a_manifest_is_one_line_and_nothing_written(manifest, tmp_path, capsys):
    frame = pd.read_csv(manifest)
    frame["file"] = [str(manifest.parent / f) for f in frame["file"]]
    frame.loc[1, "model"] = "trainers.models.nin:no_such_builder"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    storage = tmp_path / "store"
    assert main(["import", str(tmp_path / "bad.csv"), "--storage", str(storage)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "bad.csv row 2: model: trainers.models.nin:no_such_builder" in error
    assert not (storage / "bad").exists()


def _ray2_trial(folder, lr: float, seed: int) -> None:
    """A trial folder as Ray Tune 2.7+ writes it (checked against Ray 2.60's own output): the
    checkpoints numbered in the order they were saved, each named by the result row that
    reported it (checkpoint_000000 after iteration 1, none at 2, checkpoint_000001 at 3)."""
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"lr": lr, "seed": seed}))
    net = _model("lenet_300_100", seed, width=16)
    lines, saved = [], 0
    for iteration in (1, 2, 3):
        _step(net, seed + iteration, lr)
        name = None
        if iteration != 2:
            name = f"checkpoint_{saved:06d}"
            (folder / name).mkdir()
            torch.save(net.state_dict(), folder / name / "model.pt")
            saved += 1
        lines.append(json.dumps({"loss": 2.3 - 0.1 * iteration, "acc": 0.1 * iteration, "timestamp": 1_796_439_927,
                                 "checkpoint_dir_name": name, "done": False, "training_iteration": iteration,
                                 "time_this_iter_s": 0.01, "hostname": "vm", "config": {"lr": lr, "seed": seed}}))
    (folder / "result.json").write_text("\n".join(lines) + "\n")


def test_a_ray_2_tune_folder_maps_its_checkpoints_by_their_result_rows(tmp_path, capsys):
    root = tmp_path / "ray2_zoo"
    for number, (lr, seed) in enumerate(((0.1, 0), (0.2, 1))):
        _ray2_trial(root / f"trainable_b3217_{number:05d}_{number}_lr={lr}_2026-12-05_03-05-17", lr, seed)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({
        "params": {"lr": "lr", "seed": "seed"},
        "fixed": {"model": "lenet_300_100", "width": 16, "dataset": "digits", "train_size": 96},
        "metrics": {"train_loss": "loss", "train_acc": "acc", "minibatch_loss": "loss"},
        "early_epoch": 1}))
    storage = str(tmp_path / "store")
    assert main(["import", str(root), "--mapping", str(mapping), "--storage", storage]) == 0
    store = Store(storage, "ray2_zoo")
    trials = store.trials().sort_values("seed")
    assert set(trials["epochs"]) == {3} and [list(c) for c in trials["checkpoint_epochs"]] == [[1], [1]]
    for trial_id, folder in zip(trials["trial_id"], sorted(root.iterdir())):
        # checkpoint_000001 holds epoch 3's weights (the final ones), checkpoint_000000 epoch 1's;
        # there are no weights before training (Ray 2's first checkpoint is not them).
        assert set(store.list("checkpoints", trial_id)) == {"epoch_1.pt", "final.pt", "source.json"}
        for name, source in (("final.pt", "checkpoint_000001"), ("epoch_1.pt", "checkpoint_000000")):
            expected = torch.load(folder / source / "model.pt", weights_only=True)
            stored = torch.load(store.local_path("checkpoints", trial_id, name), weights_only=True)
            assert set(expected) == set(stored) and all(torch.equal(expected[k], stored[k]) for k in expected)
        assert list(store.epochs(trial_id)["epoch"]) == [1, 2, 3]
        assert json.loads(store.read_text("checkpoints", trial_id, "source.json"))["path"].endswith(
            "checkpoint_000001/model.pt")
    # Ray's num_to_keep deletes older checkpoints: a row naming a folder that is gone is passed over.
    import shutil

    for folder in root.iterdir():
        shutil.rmtree(folder / "checkpoint_000000")
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({**yaml.safe_load(mapping.read_text()), "early_epoch": None}))
    assert main(["import", str(root), "--mapping", str(plain), "--storage", str(tmp_path / "kept")]) == 0
    kept = Store(str(tmp_path / "kept"), "ray2_zoo")
    assert set(kept.trials()["epochs"]) == {3}
    assert all(set(kept.list("checkpoints", t)) == {"final.pt", "source.json"} for t in kept.trials()["trial_id"])
    # ... but an early epoch whose folder is gone is one line, and nothing is written.
    capsys.readouterr()
    assert main(["import", str(root), "--mapping", str(mapping), "--storage", str(tmp_path / "other")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "early_epoch: got 1, but there is no checkpoint of epoch 1" in error
    assert not (tmp_path / "other" / "ray2_zoo").exists()

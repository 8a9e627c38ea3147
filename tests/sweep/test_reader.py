"""sweep.reader (issue 27, items 3 and 4): a loaded model takes the dataset's images as stored
and, on the trial's own data from ``load_data``, gives exactly the stored accuracies; ``zoo()``
is one frame with one row per model, its hyperparameters (default widths filled in), final
metrics once, the gaps, and every measure, the analysis' derived margin measures included;
the documented duckdb and polars one-liners run."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.regression import fit_feature_group
from measures import registry as measure_registry
from sweep import measure_job, reader, trial
from sweep.store import Store, StoreError
from sweep.trials_table import TrialsTable
from trainers import data
from trainers.config import TrainConfig
from trainers.data import registry as data_registry

NIN = dict(dataset="digits", model="nin", depth=2, train_size=200, batch_size=32, epochs=3, lr=0.05,
           label_noise=0.25, checkpoint_epochs=(1,))
# Three NiNs (the derived measures need three models) and an IMP trial of a model at its
# default width (width unset: the row must say 300), two models (level_00, level_01).
CONFIGS = [TrainConfig(**{**NIN, "width": width, "seed": seed}) for width, seed in ((4, 0), (6, 1), (8, 2))] + [
    TrainConfig(dataset="digits", model="lenet_300_100", train_size=200, label_noise=0.25, batch_size=32, epochs=2,
                lr=0.05, seed=3, mode="imp", mode_settings={"levels": 1, "rewind_epoch": 0}, checkpoint_epochs=(1,))]
FAMILIES = ("training", "norms", "margins", "output_margin_stats")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small zoo trained and measured in this process (the code a Ray trial and a measure
    task run), without sweep.yaml: the analysis' default target and feature groups apply."""
    root = tmp_path_factory.mktemp("reader")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        zoo_store = Store(str(root), "zoo")
        for config in CONFIGS:
            trial.train_trial(config, zoo_store, device="cpu")
        TrialsTable(zoo_store, CONFIGS).write()
        settings = {family: measure_registry.settings_for(family) for family in FAMILIES}
        for config in CONFIGS:
            rows = []
            for model_id in zoo_store.models(config.trial_id)["model_id"]:
                for _, family_rows, _ in measure_job.compute_model(str(root), "zoo", config.to_dict(), model_id,
                                                                   settings):
                    rows += family_rows
            zoo_store.write_measures(config.trial_id, rows)
    finally:
        torch.set_num_threads(threads)
    return root, zoo_store


def _every_model(zoo_store):
    return [(row.trial_id, row.model_id) for row in zoo_store.models().itertuples()]


# --------------------------------------------------------------------------- load_model, load_data


def test_load_model_on_load_data_gives_exactly_the_stored_metrics_of_every_model(store, one_thread):
    root, zoo_store = store
    stored = zoo_store.models().set_index(["trial_id", "model_id"])
    assert len(stored) == 5
    for trial_id, model_id in _every_model(zoo_store):
        model = reader.load_model(str(root), "zoo", trial_id, model_id)
        dataset = reader.load_data(str(root), "zoo", trial_id)
        test_loss, test_acc = data.evaluate(model, dataset.test_images, dataset.test_labels)
        train_loss, train_acc = data.evaluate(model, dataset.train_images, dataset.train_labels)
        row = stored.loc[(trial_id, model_id)]
        assert (test_acc, train_acc) == (row.test_acc, row.train_acc), (trial_id, model_id)
        assert test_loss == pytest.approx(row.test_loss, rel=1e-6) and train_loss == pytest.approx(row.train_loss, rel=1e-6)
    assert stored["test_acc"].max() > 0.2  # a model that learned something (chance is 0.1)


def test_the_loaded_model_takes_uint8_images_or_pixels_in_0_1_and_exposes_the_trained_network(store, one_thread):
    root, zoo_store = store
    trial_id, model_id = _every_model(zoo_store)[0]
    model = reader.load_model(str(root), "zoo", trial_id, model_id)
    assert isinstance(model, torch.nn.Module) and isinstance(model, reader.ZooModel) and not model.training
    assert (model.trial_id, model.model_id, model.config) == (trial_id, model_id, reader.trial_config(str(root), "zoo", trial_id))
    checkpoint = torch.load(root / "zoo" / "checkpoints" / trial_id / f"{model_id}.pt", weights_only=True)
    inner = model.model.state_dict()
    assert inner.keys() == checkpoint.keys() and all(torch.equal(checkpoint[k], inner[k]) for k in inner)
    assert set(model.state_dict()) == {f"model.{k}" for k in checkpoint}  # mean and std are no state
    images = reader.load_data(str(root), "zoo", trial_id).test_images[:64]
    with torch.no_grad():
        logits = model(images)
        # The normalization is training's own function, with the dataset's mean and std.
        raw = data.get("digits")(None)
        assert (model.mean, model.std) == (raw.mean, raw.std)
        assert torch.equal(model.normalize(images), data.normalize(images, raw.mean, raw.std))
        assert torch.equal(logits, model.model(model.normalize(images)))
        assert torch.equal(model(images.float() / 255), logits)  # torchvision's ToTensor convention
        assert not torch.allclose(model.model(images.float() / 255), logits)  # what the issue hit
    with pytest.raises(data.DatasetError, match=r"^images: got torch.int64, allowed: uint8"):
        model(images.long())


def test_load_data_is_the_trials_own_subset_and_label_noise(store):
    root, _ = store
    first, second = CONFIGS[0], CONFIGS[1]
    dataset = reader.load_data(str(root), "zoo", first.trial_id)
    assert dataset.train_images.dtype == torch.uint8 and dataset.train_images.shape[0] == 200
    assert int(dataset.noisy.sum()) == 50 and torch.equal(dataset.noisy, dataset.train_labels != dataset.clean_train_labels)
    assert dataset.test_images.shape[0] == data_registry.get("digits").test_size
    other = reader.load_data(str(root), "zoo", second.trial_id)  # another seed: another subset and noise
    assert not torch.equal(dataset.train_images, other.train_images)
    assert torch.equal(dataset.test_images, other.test_images)
    with pytest.raises(StoreError, match=r"^trial_id: 'nin-nope' is not a trial of"):
        reader.load_data(str(root), "zoo", "nin-nope")


# --------------------------------------------------------------------------- zoo()


def test_zoo_has_one_row_per_model_and_every_measure_as_a_column(store):
    root, zoo_store = store
    frame = reader.zoo(str(root), "zoo")
    assert sorted(zip(frame["trial_id"], frame["model_id"])) == sorted(_every_model(zoo_store))
    assert list(frame.columns[:2]) == ["trial_id", "model_id"]
    assert not frame.columns.duplicated().any() and not [c for c in frame.columns if c.endswith(("_x", "_y"))]
    stored = zoo_store.measures()
    expected = {name if name not in frame.attrs["hyperparameters"] + ["train_loss"] else f"{name}_measure"
                for name in stored["measure"]}
    derived = {"normalized_margins", "best_margin_variable", "output_margins"}
    assert set(frame.attrs["measures"]) == expected | derived and expected | derived <= set(frame.columns)
    assert any(name.startswith("margin/") for name in expected) and "train_loss_measure" in expected
    # Each value is that of the stored "ok" row (NaN for a failed one).
    for row in stored.itertuples():
        column = f"{row.measure}_measure" if row.measure == "train_loss" else row.measure
        got = frame.set_index(["trial_id", "model_id"]).loc[(row.trial_id, row.model_id), column]
        assert got == row.value if row.status == "ok" else np.isnan(got), (row.trial_id, row.measure)


def test_zoo_rows_hold_the_hyperparameters_with_default_widths_the_model_metrics_and_the_gaps(store):
    root, zoo_store = store
    frame = reader.zoo(str(root), "zoo").set_index(["trial_id", "model_id"])
    lenet = frame[frame["model"] == "lenet_300_100"]
    assert len(lenet) == 2 and list(lenet["width"]) == [300, 300] and lenet["depth"].isna().all()
    assert pd.isna(reader.trials(str(root), "zoo").set_index("model").loc["lenet_300_100", "width"])  # stored unset
    assert sorted(frame.loc[frame["model"] == "nin", "width"]) == [4, 6, 8] and str(frame["width"].dtype) == "Int64"
    models = zoo_store.models().set_index(["trial_id", "model_id"])
    for column in ("train_acc", "test_acc", "train_loss", "test_loss", "sparsity"):
        pd.testing.assert_series_equal(frame[column], models.loc[frame.index, column], check_names=False)
    assert (frame["model_epoch"] == models.loc[frame.index, "epoch"]).all()
    assert (lenet["sparsity"].to_numpy() > [-1, 0]).all() and lenet["sparsity"].iloc[0] == 0
    np.testing.assert_array_equal(frame["gap"], frame["train_acc"] - frame["test_acc"])
    np.testing.assert_array_equal(frame["loss_gap"], frame["test_loss"] - frame["train_loss"])
    assert set(frame["status"]) == {"completed"} and "host" not in frame.columns
    assert set(frame["label_noise"]) == {0.25} and set(frame["mode"]) == {"standard", "imp"}


def test_zoo_derived_margin_measures_are_the_analysis_fit_of_the_gap(store):
    root, zoo_store = store
    frame = reader.zoo(str(root), "zoo")
    frame.index = frame["trial_id"] + "/" + frame["model_id"]
    for prefix, derived, best in (("margin/", "normalized_margins", "best_margin_variable"),
                                  ("output_margin/", "output_margins", None)):
        features = frame[[c for c in frame.columns if c.startswith(prefix)]]
        fit = fit_feature_group(features, frame["gap"])
        assert len(fit.prediction) >= 3
        pd.testing.assert_series_equal(frame.loc[fit.prediction.index, derived], fit.prediction, check_names=False)
        assert frame[derived].drop(index=fit.prediction.index).isna().all()  # models outside the fit
        if best:
            pd.testing.assert_series_equal(frame.loc[fit.best_values.index, best], fit.best_values, check_names=False)
    assert any(note.startswith("normalized_margins: joint least-squares fit") for note in frame.attrs["notes"])
    loss = reader.zoo(str(root), "zoo", target="test_loss")
    assert loss.attrs["target"] == "test_loss" and frame.attrs["target"] == "gap"
    assert not np.allclose(loss["normalized_margins"].dropna(), frame["normalized_margins"].dropna())


def test_zoo_of_an_experiment_without_models_or_measures_is_empty_with_its_columns(tmp_path):
    empty = Store(str(tmp_path), "none")
    TrialsTable(empty, CONFIGS[:1]).write()
    frame = reader.zoo(str(tmp_path), "none")
    assert len(frame) == 0 and {"trial_id", "model_id", "width", "gap", "loss_gap", "test_acc"} <= set(frame.columns)
    assert frame.attrs["measures"] == []


# --------------------------------------------------------------------------- duckdb, polars


def _documented_lines(section):
    """The lines of the first python block under ``## <section>`` of docs/reading.md (None:
    the one before the first section)."""
    text = (Path(__file__).parents[2] / "docs" / "reading.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1] if section else text
    body = body.split("\n## ", 1)[0]
    return body.split("```python\n", 1)[1].split("```", 1)[0].splitlines()


def _run(lines, root, namespace=None):
    """Each line run as written on the test store: statements executed, the values of
    expressions returned."""
    namespace, results = {} if namespace is None else namespace, []
    for line in lines:
        line = line.replace('"results", "demo"', f"{str(root)!r}, 'zoo'")
        try:
            compiled = compile(line, "docs/reading.md", "eval")
        except SyntaxError:
            exec(line, namespace)  # an import or an assignment
        else:
            results.append(eval(compiled, namespace))
    return namespace, results


def test_the_documented_pandas_lines_run_as_written(store, one_thread):
    root, _ = store
    namespace, _ = _run(_documented_lines(None), root)
    assert namespace["logits"].shape == (360, 10) and namespace["model"].model_id == namespace["row"].model_id
    _, (tau, by_width, imp) = _run(_documented_lines("The zoo in one frame"), root, {"zoo": namespace["zoo"]})
    assert -1 <= tau.statistic <= 1 and list(by_width.index) == [4, 6, 8, 300] and len(imp) == 2
    _, (same,) = _run(_documented_lines("A model and its data"), root, namespace)
    assert same


def test_the_documented_duckdb_and_polars_one_liners_run_as_written(store):
    root, _ = store
    _, results = _run(_documented_lines("duckdb and polars"), root)
    by_width, best, nin, best_polars, wide = results
    assert list(by_width["width"]) == [4, 6, 8, 300] and by_width["nm"].notna().all()
    assert len(best) == len(CONFIGS) == best_polars.height
    assert nin.height == 3 and wide.height == 5 and "margin/input/q1" in wide.columns


def test_load_model_without_its_dataset_is_one_line_naming_the_download_command(tmp_path):
    from trainers import checkpoint
    from trainers.train import build_model

    config = TrainConfig(dataset="cifar10", model="nin", width=4, depth=2, epochs=1)
    cifar = Store(str(tmp_path), "cifar")
    TrialsTable(cifar, [config]).write()
    path = tmp_path / "cifar" / "checkpoints" / config.trial_id / "final.pt"
    path.parent.mkdir(parents=True)
    checkpoint.save(build_model(config, 10, (3, 32, 32)).state_dict(), path)
    with pytest.raises(data.DatasetError) as raised:
        reader.load_model(str(tmp_path), "cifar", config.trial_id, data_root=str(tmp_path / "no-data"))
    message = str(raised.value)
    assert "\n" not in message and "genzoo data download cifar10" in message


def test_zoo_of_a_version_1_store_says_how_to_upgrade_it_and_reads_it_after(tmp_path):
    import shutil

    from sweep.cli import main

    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "store_v1", tmp_path, dirs_exist_ok=True)
    with pytest.raises(StoreError, match=r"layout version 1 .*`genzoo sweep status tiny --storage \.\.\.`$"):
        reader.zoo(str(tmp_path), "tiny")
    assert main(["sweep", "status", "tiny", "--storage", str(tmp_path)]) == 0
    frame = reader.zoo(str(tmp_path), "tiny")
    assert len(frame) == len(reader.models(str(tmp_path), "tiny")) > 0 and frame.attrs["measures"]


def test_zoo_with_an_unknown_target_is_the_analysis_one_line_error(store):
    from analysis.errors import AnalysisError

    root, _ = store
    with pytest.raises(AnalysisError, match=r"^target: got 'accuracy', allowed: gap, test_loss, test_error$"):
        reader.zoo(str(root), "zoo", target="accuracy")

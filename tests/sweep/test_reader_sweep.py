"""The reader on a zoo trained by ``genzoo sweep run`` on a real local Ray (issue 27, item 3):
``load_model`` + ``load_data`` reproduce the stored accuracies exactly, and ``zoo()`` reads the
analysis choices the sweep file recorded."""

import yaml

from sweep import reader
from sweep.cli import main
from trainers import data

SWEEP = {
    "experiment": "ready", "dataset": "digits", "model": "lenet_300_100",
    "train": {"epochs": 2, "lr": 0.05, "train_size": 128, "batch_size": 32, "label_noise": 0.25},
    "grid": {"width": [32, 64]}, "seeds": [0], "resources": {"cpus": 1},
    "analysis": {"target": "test_loss"},
}


def test_a_swept_models_stored_accuracies_are_reproduced_from_the_reader_alone(ray_address, tmp_path, one_thread):
    path = tmp_path / "ready.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    storage = str(tmp_path / "store")
    assert main(["sweep", "run", str(path), "--storage", storage]) == 0
    zoo = reader.zoo(storage, "ready")
    assert sorted(zoo["width"]) == [32, 64] and zoo.attrs["target"] == "test_loss"
    for row in zoo.itertuples():
        model = reader.load_model(storage, "ready", row.trial_id, row.model_id)
        dataset = reader.load_data(storage, "ready", row.trial_id)
        assert int(dataset.noisy.sum()) == 32 and len(dataset.train_labels) == 128
        assert data.evaluate(model, dataset.test_images, dataset.test_labels)[1] == row.test_acc
        assert data.evaluate(model, dataset.train_images, dataset.train_labels)[1] == row.train_acc
    assert zoo["test_acc"].max() > 0.2  # one learned: chance is 0.1

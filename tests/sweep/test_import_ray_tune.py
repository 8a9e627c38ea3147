"""A zoo that real Ray Tune 2.x trained (this machine's Ray: checkpoints numbered in the order
they were saved, named in the result rows), of an architecture genzoo does not have, given as a
``module:function`` factory from the folder genzoo runs from: imported, measured and analysed
through the CLI; the same factory trained by ``genzoo sweep run``. Slow (a Tune run, three
genzoo processes): the fast tests of each part are in test_import.py and
tests/trainers/test_factory.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from sweep.store import Store

NETS = '''
from torch import nn

def small_cnn(num_classes, width=8, input_shape=(3, 32, 32)):
    return nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))
'''

TUNE = '''
import os, sys, tempfile
import ray, torch
from ray import tune
from ray.tune import Checkpoint
from trainers import data
import zoo_nets

def trainable(config):
    torch.manual_seed(config["seed"])
    net = zoo_nets.small_cnn(10, width=config["width"])
    digits = data.load("digits", train_size=64, seed=0)
    x = data.normalize(digits.train_images, digits.mean, digits.std)
    optimizer = torch.optim.SGD(net.parameters(), lr=config["lr"])
    for epoch in (1, 2):
        for step in range(15):
            loss = torch.nn.functional.cross_entropy(net(x), digits.train_labels)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
        with tempfile.TemporaryDirectory() as folder:
            torch.save(net.state_dict(), os.path.join(folder, "model.pt"))
            tune.report({"loss_train": float(loss)}, checkpoint=Checkpoint.from_directory(folder))

ray.init(address=sys.argv[2])
grid = {"lr": tune.grid_search([0.05, 0.2, 0.5]), "width": 6, "seed": 0}
tune.Tuner(trainable, param_space=grid, run_config=tune.RunConfig(storage_path=sys.argv[1], name="tune_zoo")).fit()
'''


def _run(folder, *args):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "GENZOO_LOG": str(folder / "ray.log")}
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # about 60 s: a real Tune run and four genzoo processes
def test_a_ray_tune_2_zoo_of_a_factory_model_is_imported_measured_and_analysed(tmp_path, ray_address):
    (tmp_path / "zoo_nets.py").write_text(textwrap.dedent(NETS))
    (tmp_path / "train_zoo.py").write_text(textwrap.dedent(TUNE))
    tune = _run(tmp_path, "train_zoo.py", str(tmp_path / "ray_results"), ray_address)
    assert tune.returncode == 0, tune.stdout[-2000:] + tune.stderr[-2000:]
    trial_folders = sorted((tmp_path / "ray_results" / "tune_zoo").glob("trainable_*"))
    assert len(trial_folders) == 3 and {p.name for p in trial_folders[0].glob("checkpoint_*")} == \
        {"checkpoint_000000", "checkpoint_000001"}

    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump({
        "params": {"lr": "lr", "width": "width", "seed": "seed"},
        "fixed": {"model": "zoo_nets:small_cnn", "dataset": "digits", "train_size": 64, "optimizer": "sgd"},
        "metrics": {"minibatch_loss": "loss_train"}, "early_epoch": 1}))
    storage = str(tmp_path / "store")
    imported = _run(tmp_path, "-m", "sweep.cli", "import", str(tmp_path / "ray_results" / "tune_zoo"),
                    "--mapping", "mapping.yaml", "--storage", storage)
    assert imported.returncode == 0, imported.stdout[-2000:] + imported.stderr[-2000:]
    store = Store(storage, "tune_zoo")
    trials = store.trials().sort_values("lr")
    assert list(trials["lr"]) == [0.05, 0.2, 0.5] and set(trials["epochs"]) == {2}
    by_lr = {json.loads((f / "params.json").read_text())["lr"]: f for f in trial_folders}
    for trial_id, folder in zip(trials["trial_id"], (by_lr[lr] for lr in trials["lr"])):
        assert trial_id.startswith("small_cnn-")
        source = json.loads(store.read_text("checkpoints", trial_id, "source.json"))
        assert source["path"].endswith("checkpoint_000001/model.pt")  # epoch 2's weights: the final ones
        expected = torch.load(folder / "checkpoint_000001" / "model.pt", weights_only=True)
        stored = torch.load(store.local_path("checkpoints", trial_id, "final.pt"), weights_only=True)
        assert all(torch.equal(expected[k], stored[k]) for k in expected)

    measured = _run(tmp_path, "-m", "sweep.cli", "measure", "tune_zoo", "--storage", storage, "--address",
                    ray_address, "--measures", "norms,spectral,training,el2n")
    assert measured.returncode == 0, measured.stdout[-2000:] + measured.stderr[-2000:]
    rows = store.measures()
    assert set(rows["status"]) == {"ok"} and set(rows["family"]) == {"norms", "spectral", "training", "el2n"}
    assert set(rows["trial_id"]) == set(trials["trial_id"])
    analysed = _run(tmp_path, "-m", "sweep.cli", "analyze", "tune_zoo", "--storage", storage)
    assert analysed.returncode == 0, analysed.stdout[-2000:] + analysed.stderr[-2000:]

    # The same factory trained by genzoo itself, from a sweep file.
    (tmp_path / "fsweep.yaml").write_text(yaml.safe_dump({
        "experiment": "fsweep", "dataset": "digits", "model": "zoo_nets:small_cnn",
        "train": {"epochs": 1, "train_size": 64, "batch_size": 32, "augment": False},
        "grid": {"width": [4, 6]}, "seeds": [0], "resources": {"cpus": 1}}))
    swept = _run(tmp_path, "-m", "sweep.cli", "sweep", "run", "fsweep.yaml", "--storage", storage,
                 "--address", ray_address)
    assert swept.returncode == 0, swept.stdout[-2000:] + swept.stderr[-2000:]
    trained = Store(storage, "fsweep").trials()
    assert list(trained["status"]) == ["completed"] * 2 and set(trained["model"]) == {"zoo_nets:small_cnn"}

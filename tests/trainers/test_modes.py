"""Training modes: registry, settings, and a stateful mode (``ema``) resumed bit-for-bit."""

import pytest
import torch

from trainers import checkpoint, data
from trainers.config import TrainConfig
from trainers.modes import callbacks, registry
from trainers.registry import resolve
from resume_helpers import stop_and_resume, without_timing
from trainers.train import build_model, train

SMALL = dict(dataset="digits", model="nin", width=8, depth=2, dropout=0.3, train_size=160,
             epochs=3, lr=0.05, batch_size=32, checkpoint_epochs=(1,))




def test_every_mode_has_settings_and_callbacks():
    assert registry.names() == ("standard", "ema", "imp", "extended_dense", "prune_during_training")
    for name in registry.names():
        assert issubclass(resolve(registry.get(name).callbacks), callbacks.ModeCallbacks), name


def test_standard_mode_yields_one_final_model(tmp_path, one_thread):
    result = train(TrainConfig(**SMALL), run_dir=tmp_path, device="cpu")
    assert [m["model_id"] for m in result.models] == ["final"]
    model = result.models[0]
    assert model["epoch"] == 3 and model["test_acc"] == result.records[-1]["test_acc"]
    assert model["sparsity"] == 0.0


def test_ema_mode_averages_after_every_step_and_yields_two_models(tmp_path, one_thread):
    config = TrainConfig(**SMALL, mode="ema", mode_settings={"decay": 0.5})
    seen = []

    class Watch:
        def on_step_end(self, state):
            seen.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})

    result = train(config, run_dir=tmp_path, device="cpu", hooks=[Watch()])
    expected = dict(seen[0])
    for weights in seen[1:]:
        expected = {k: (0.5 * expected[k] + 0.5 * v if v.is_floating_point() else v) for k, v in weights.items()}
    ema = torch.load(tmp_path / "ema.pt", weights_only=True)
    for name, tensor in expected.items():
        assert torch.allclose(ema[name], tensor, atol=1e-6), name
    assert [m["model_id"] for m in result.models] == ["final", "ema"]
    # The ema model's metrics are its own, evaluated independently here.
    dataset = data.load("digits", train_size=160, seed=0)
    net = build_model(config, dataset.num_classes)
    net.load_state_dict(ema)
    loss, acc = data.evaluate(net, dataset.test_images, dataset.test_labels, mean=dataset.mean, std=dataset.std)
    assert result.models[1]["test_loss"] == pytest.approx(loss) and result.models[1]["test_acc"] == acc


def test_a_stateful_mode_resumes_bit_for_bit(tmp_path, one_thread):
    config = TrainConfig(**SMALL, mode="ema", mode_settings={"decay": 0.7, "start_epoch": 1})
    straight = train(config, run_dir=tmp_path / "straight", device="cpu")
    resumed = stop_and_resume(config, tmp_path / "stopped", 2)

    assert without_timing(resumed.records) == without_timing(straight.records)
    assert resumed.models == straight.models
    for name in ("final.pt", "ema.pt", "init.pt", "epoch_1.pt"):
        a = torch.load(tmp_path / "straight" / name, weights_only=True)
        b = torch.load(tmp_path / "stopped" / name, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_resuming_from_the_last_state_writes_missing_models_without_training(tmp_path, one_thread):
    config = TrainConfig(**SMALL, mode="ema")
    straight = train(config, run_dir=tmp_path, device="cpu")
    final = torch.load(tmp_path / "final.pt", weights_only=True)
    ema = torch.load(tmp_path / "ema.pt", weights_only=True)
    (tmp_path / "final.pt").unlink()
    (tmp_path / "ema.pt").unlink()
    again = train(config, run_dir=tmp_path, device="cpu")
    assert again.records == straight.records  # nothing retrained: the same timing fields too
    for name, expected in (("final.pt", final), ("ema.pt", ema)):
        got = torch.load(tmp_path / name, weights_only=True)
        assert all(torch.equal(got[k], expected[k]) for k in expected), name
    assert torch.load(tmp_path / checkpoint.STATE, weights_only=True)["epoch"] == 3

"""Packed training (trainers.packed) against training each model alone."""

import pytest
import torch

from resume_helpers import Interrupt, without_timing
from trainers import checkpoint, data
from trainers.config import PackError, TrainConfig, check_packable, pack_key
from trainers.packed import train_packed
from trainers.train import train

# One epoch of 4 steps: long enough for every per-model difference (data order, augmentation,
# dropout masks, label noise, learning rate, momentum, weight decay) to show in the weights at
# the 1e-2 level if it were wrong, short enough that this small BatchNorm network does not
# amplify float rounding past 1e-5 (test_the_separate_path_itself_is_stable_here).
BASE = dict(dataset="digits", model="nin", width=8, depth=2, train_size=128, batch_size=32, epochs=1)
MEMBERS = [
    dict(seed=0, dropout=0.3, lr=0.05),
    dict(seed=1, weight_decay=5e-4, label_noise=0.2, augment=False),
    dict(seed=2, dropout=0.5, lr=0.02, momentum=0.5),
]
TOLERANCE = 1e-5

# One thread: the float rounding, and so the differences checked here, do not depend on the
# machine's core count.
pytestmark = pytest.mark.usefixtures("one_thread")


def _configs(**changes):
    return [TrainConfig(**{**BASE, **member, **changes}) for member in MEMBERS]


def _datasets(configs):
    return [data.load(c.dataset, None, train_size=c.train_size, label_noise=c.label_noise, seed=c.seed)
            for c in configs]


def _relative(a, b):
    """Largest relative difference over the model's floating-point tensors, as one vector
    and tensor by tensor for the conv/linear weights."""
    keys = [k for k, v in a.items() if v.is_floating_point()]
    whole = torch.cat([a[k].flatten() for k in keys]), torch.cat([b[k].flatten() for k in keys])
    worst = float((whole[0] - whole[1]).norm() / whole[0].norm())
    for k in keys:
        if k.endswith("weight") and a[k].dim() > 1:
            worst = max(worst, float((a[k] - b[k]).norm() / a[k].norm()))
    return worst


def test_packed_models_start_from_the_separate_initial_weights_exactly(tmp_path):
    configs = _configs(epochs=1)
    datasets = _datasets(configs)
    train_packed(configs, run_dirs=[tmp_path / f"p{k}" for k in range(3)], device="cpu", datasets=datasets)
    for k, (config, dataset) in enumerate(zip(configs, datasets)):
        train(config, run_dir=tmp_path / f"s{k}", device="cpu", dataset=dataset)
        packed, alone = (checkpoint.load(tmp_path / f"{side}{k}" / checkpoint.INIT) for side in "ps")
        assert packed.keys() == alone.keys()
        assert all(torch.equal(packed[name], alone[name]) for name in alone)


def test_an_epoch_packed_equals_each_model_trained_alone_within_1e_5():
    configs = _configs()
    datasets = _datasets(configs)
    packed = train_packed(configs, device="cpu", datasets=datasets)
    alone = [train(c, device="cpu", dataset=d) for c, d in zip(configs, datasets)]
    for k, (p, a) in enumerate(zip(packed, alone)):
        assert p.trial_id == a.trial_id
        assert _relative(a.model.state_dict(), p.model.state_dict()) < TOLERANCE, k
        for name, tensor in a.model.state_dict().items():
            if not tensor.is_floating_point():
                assert torch.equal(tensor, p.model.state_dict()[name]), name  # num_batches_tracked
        for pr, ar in zip(without_timing(p.records), without_timing(a.records)):
            assert pr.keys() == ar.keys()
            for key in ("minibatch_loss", "train_loss", "test_loss", "train_acc", "test_acc"):
                assert pr[key] == pytest.approx(ar[key], rel=TOLERANCE, abs=1e-7), (k, key)
        assert [m["model_id"] for m in p.models] == [m["model_id"] for m in a.models] == ["final"]
    # The tolerance tells models apart: each packed model is far from the other models' runs,
    # and far from itself trained without its own dropout, data or learning rate.
    assert _relative(alone[0].model.state_dict(), packed[2].model.state_dict()) > 1e-2
    changed = train(TrainConfig(**{**BASE, **MEMBERS[0], "lr": 0.049}), device="cpu", dataset=datasets[0])
    assert _relative(changed.model.state_dict(), packed[0].model.state_dict()) > 10 * TOLERANCE


def test_the_separate_path_itself_is_stable_here():
    """A 1e-7 relative perturbation of the initial weights stays below 1e-6 after the test's
    epoch: a difference above 1e-5 is the packing's, not this network's chaos. (With 16
    steps at lr 0.05 it grows to 1e-2: BatchNorm over nearly constant channels.)"""
    config = TrainConfig(**{**BASE, **MEMBERS[0]})
    dataset = _datasets([config])[0]
    reference = train(config, device="cpu", dataset=dataset).model.state_dict()

    class Perturb:
        done = False

        def on_step_end(self, state):
            if not self.done:
                noise = torch.Generator().manual_seed(123)  # not the global RNG: dropout draws from it
                with torch.no_grad():
                    for p in state.model.parameters():
                        p.mul_(1 + 1e-7 * torch.randn(p.shape, generator=noise))
                self.done = True

    perturbed = train(config, device="cpu", dataset=dataset, hooks=[Perturb()]).model.state_dict()
    assert 0 < _relative(reference, perturbed) < 1e-6


def test_ema_and_imp_modes_pack_too():
    # Few steps in all (see BASE for why no more). IMP's global magnitude ranking is another
    # discontinuity: a weight within rounding of the threshold may be pruned in one run and
    # kept in the other, so its levels here are one step each.
    for changes in (dict(mode="ema", mode_settings={"decay": 0.5}),
                    dict(mode="imp", mode_settings={"levels": 2, "rewind_epoch": 0}, train_size=32)):
        configs = _configs(**changes)[:2]
        datasets = _datasets(configs)
        packed = train_packed(configs, device="cpu", datasets=datasets)
        for config, dataset, p in zip(configs, datasets, packed):
            a = train(config, device="cpu", dataset=dataset)
            assert [m["model_id"] for m in p.models] == [m["model_id"] for m in a.models]
            assert _relative(a.model.state_dict(), p.model.state_dict()) < TOLERANCE, changes
            for pm, am in zip(p.models, a.models):
                assert pm["sparsity"] == am["sparsity"]


def test_a_packed_trial_resumes_each_model_from_its_own_state_after_a_kill(tmp_path):
    configs = _configs(epochs=3, checkpoint_epochs=(1,))
    datasets = _datasets(configs)
    straight = train_packed(configs, run_dirs=[tmp_path / f"straight{k}" for k in range(3)], device="cpu",
                            datasets=datasets)
    dirs = [tmp_path / f"killed{k}" for k in range(3)]

    def kill(k, record, state):
        # Models 0 and 1 have committed epoch 2 when the pack dies; model 2 has only epoch 1.
        if k == 1 and record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_packed(configs, run_dirs=dirs, device="cpu", datasets=datasets, on_epoch=kill)
    assert [checkpoint.load(d / checkpoint.STATE)["epoch"] for d in dirs] == [2, 2, 1]
    torch.rand(1000)  # another trial in the worker draws from the global RNG: irrelevant
    lines = []
    resumed = train_packed(configs, run_dirs=dirs, device="cpu", datasets=datasets, log=lines.append)
    assert sorted(line for line in lines if "resuming" in line) == sorted(
        f"{c.trial_id}: resuming after epoch {e}" for c, e in zip(configs, (2, 2, 1)))
    for k, (s, r) in enumerate(zip(straight, resumed)):
        assert [rec["epoch"] for rec in r.records] == [1, 2, 3]
        assert without_timing(r.records)[:1] == without_timing(s.records)[:1]
        assert _relative(s.model.state_dict(), r.model.state_dict()) < TOLERANCE, k
        for name in (checkpoint.INIT, checkpoint.early_name(1), checkpoint.FINAL):
            assert (dirs[k] / name).exists()


def test_a_packed_state_resumes_alone_and_a_lone_state_resumes_packed(tmp_path):
    configs = _configs(epochs=2, train_size=64)
    datasets = _datasets(configs)
    straight = [train(c, device="cpu", dataset=d) for c, d in zip(configs, datasets)]

    def stop(k, record, state):
        if k == len(configs) - 1 and record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_packed(configs, run_dirs=[tmp_path / f"m{k}" for k in range(3)], device="cpu", datasets=datasets,
                     on_epoch=stop)
    finished_alone = train(configs[0], run_dir=tmp_path / "m0", device="cpu", dataset=datasets[0])
    assert _relative(straight[0].model.state_dict(), finished_alone.model.state_dict()) < TOLERANCE

    def stop_alone(record, state):
        raise Interrupt

    with pytest.raises(Interrupt):
        train(configs[1], run_dir=tmp_path / "lone", device="cpu", dataset=datasets[1], on_epoch=stop_alone)
    finished_packed = train_packed([configs[1]], run_dirs=[tmp_path / "lone"], device="cpu", datasets=[datasets[1]])
    assert _relative(straight[1].model.state_dict(), finished_packed[0].model.state_dict()) < TOLERANCE


@pytest.mark.parametrize("change, field", [
    (dict(width=12), "width"), (dict(train_size=96), "train_size"), (dict(epochs=2), "epochs"),
    (dict(batch_size=16), "batch_size"), (dict(model="mcnn", depth=None), "model"),
])
def test_configs_that_cannot_share_a_pack_are_refused_naming_the_field(change, field):
    configs = _configs()
    other = TrainConfig(**{**BASE, **MEMBERS[1], **change})
    assert pack_key(other) != pack_key(configs[0])
    with pytest.raises(PackError, match=rf"^{field}: packed models must share it") as error:
        check_packable([configs[0], other])
    assert "\n" not in str(error.value)


def test_unpackable_modes_and_repeats_are_refused():
    config = TrainConfig(**{**BASE, "epochs": 4}, mode="prune_during_training",
                         mode_settings={"event_epochs": [2], "fractions": [0.5], "layers": ["blocks.0.conv1"]})
    with pytest.raises(PackError, match=r"^mode: 'prune_during_training' cannot be packed"):
        check_packable([config])
    with pytest.raises(PackError, match=r"^configs: a pack holds each trial once"):
        check_packable([TrainConfig(**BASE), TrainConfig(**BASE)])
    with pytest.raises(PackError, match=r"^configs:"):
        check_packable([])

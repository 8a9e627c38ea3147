"""The ``prune_during_training`` mode, each acceptance line against an independent computation:
exact filter counts (the paper's ceiling formula) and a brute-force smaller network, the epoch
of the first event by the authors' rule, t_pre/t_post by a separate evaluation, zeroing windows
step by step (Figure D.2's BatchNorm zeroed and restored), the Gaussian variance against the
first unmodified filter, noise targets that never repeat, the mean stability over events that
pruned something, the targets, scratch masks, E[BN] by Monte Carlo, and bit-for-bit resumption
in the middle of a schedule and of a noise window."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resume_helpers import stop_and_resume, without_timing
from trainers import data
from trainers.config import ConfigError, TrainConfig
from trainers.modes.prune_during_training import PruneDuringTraining, ebn_scores
from trainers.train import build_model, train

# vgg11 at width 2: conv channels 2, 4, 8, 8, 16, 16, 16, 16; 128 examples in 4 batches of 32.
BASE = dict(dataset="digits", model="vgg11", width=2, train_size=128, batch_size=32, epochs=4,
            optimizer="adam", lr=1e-2, augment=False, mode="prune_during_training")
LAST4 = ["blocks.4.conv", "blocks.5.conv", "blocks.6.conv", "blocks.7.conv"]



def config(**settings):
    # 0-based epoch indices (event_after: epoch_index): the events come after 1, 2 and 3 epochs.
    values = {"layers": ["last_conv:4"], "fractions": [0.5, 0.5, 0.5, 0.75], "event_epochs": [0, 1, 2]}
    values.update(settings)
    return TrainConfig(**BASE, mode_settings=values)


def zero_filters(model, layer):
    modules = dict(model.named_modules())
    conv, bn = modules[layer], modules[layer.replace(".conv", ".bn")]
    dead = (conv.weight.detach().flatten(1) == 0).all(dim=1) & (conv.bias == 0) & (bn.weight == 0) & (bn.bias == 0)
    return set(torch.nonzero(dead).flatten().tolist())


def smaller_vgg_forward(model, kept, x):
    """The network rebuilt from the kept filters only (eval mode): every conv keeps its kept
    output channels and the input channels its predecessor kept; the linear layer the last."""
    keep_in = torch.arange(3)
    for index, block in enumerate(model.blocks):
        name = f"blocks.{index}.conv"
        keep_out = kept.get(name, torch.arange(block.conv.out_channels))
        weight = block.conv.weight.detach()[keep_out][:, keep_in]
        x = F.conv2d(x, weight, block.conv.bias.detach()[keep_out], padding=1)
        bn = block.bn
        x = F.batch_norm(x, bn.running_mean[keep_out], bn.running_var[keep_out], bn.weight.detach()[keep_out],
                         bn.bias.detach()[keep_out], training=False, eps=bn.eps)
        x = block.pool(F.relu(x))
        keep_in = keep_out
    return F.linear(torch.flatten(x, 1), model.fc.weight.detach()[:, keep_in], model.fc.bias.detach())


def test_every_event_removes_the_scheduled_filters_and_the_net_is_the_smaller_net(one_thread):
    # By hand, Appendix A: 16 filters, p = 0.5 leaves m = ⌈8⌉ = 8 and ⌈8 + 8·(3 − j)/3⌉ = 14, 11, 8
    # after event j (2, 5, 8 removed); p = 0.75 leaves 4 and ⌈4 + 12·(3 − j)/3⌉ = 12, 8, 4.
    expected = {1: {"a": 0, "b": 0}, 2: {"a": 2, "b": 4}, 3: {"a": 5, "b": 8}, 4: {"a": 8, "b": 12}}
    x = torch.rand(5, 3, 32, 32)
    checked = []

    class Check:
        def on_epoch_end(self, state, record):
            counts = expected[state.epoch]
            for layer in LAST4:
                dead = zero_filters(state.model, layer)
                assert len(dead) == (counts["b"] if layer == LAST4[-1] else counts["a"]), (state.epoch, layer)
                mask = state.masks.get(f"{layer}.weight")
                if dead:
                    assert set(torch.nonzero(~mask.flatten(1).any(dim=1)).flatten().tolist()) == dead
            kept = {layer: torch.tensor(sorted(set(range(16)) - zero_filters(state.model, layer)))
                    for layer in LAST4}
            state.model.eval()
            with torch.no_grad():
                assert torch.allclose(state.model(x), smaller_vgg_forward(state.model, kept, x), atol=1e-5)
            state.model.train()
            checked.append(state.epoch)

    result = train(config(), device="cpu", hooks=[Check()])
    assert checked == [1, 2, 3, 4]
    rows = result.tables["events"]
    assert [(r["epoch"], r["layer"], r["filters_removed"], r["filters_remaining"]) for r in rows if r["layer"] == LAST4[-1]] \
        == [(1, LAST4[-1], 4, 12), (2, LAST4[-1], 4, 8), (3, LAST4[-1], 4, 4)]
    assert [r["step"] for r in rows[::4]] == [4, 8, 12]


def test_t_pre_and_t_post_equal_an_independent_evaluation(one_thread):
    cfg = config(target="L")
    before = {}

    class Snapshot:
        def on_epoch_end(self, state, record):
            before[state.epoch] = {k: v.detach().clone() for k, v in state.model.state_dict().items()}

    result = train(cfg, device="cpu", hooks=[Snapshot()])
    dataset = data.load("digits", train_size=128, seed=0)
    net = build_model(cfg, dataset.num_classes)

    def accuracy(weights):
        net.load_state_dict(weights)
        return data.evaluate(net, dataset.test_images, dataset.test_labels, mean=dataset.mean, std=dataset.std)[1]

    rows = result.tables["events"]
    for epoch in (1, 2, 3):
        weights = dict(before[epoch])
        assert all(r["t_pre"] == pytest.approx(accuracy(weights), abs=1e-12) for r in rows if r["epoch"] == epoch)
        # after: remove, by hand, every filter listed so far (this event's and the earlier ones)
        for r in rows:
            if r["epoch"] <= epoch and r["filters"]:
                index = torch.tensor([int(i) for i in r["filters"].split(",")])
                bn = r["layer"].replace(".conv", ".bn")
                for key in (f"{r['layer']}.weight", f"{r['layer']}.bias", f"{bn}.weight", f"{bn}.bias"):
                    weights[key] = weights[key].clone()
                    weights[key][index] = 0.0
        t_post = accuracy(weights)
        for r in (r for r in rows if r["epoch"] == epoch):
            assert r["t_post"] == pytest.approx(t_post, abs=1e-12)
            assert r["instability"] == pytest.approx((r["t_pre"] - r["t_post"]) / r["t_pre"])
            assert r["stability"] == pytest.approx(1 - r["instability"])


@pytest.mark.parametrize("variant", ["zero_return_zero", "zero_return_saved"])
def test_zeroing_holds_the_targets_at_zero_for_exactly_n_steps(variant, one_thread):
    # Event after 1 epoch (after step 4); N = 6 spans steps 5..10, across the epoch boundary at 8.
    cfg = config(intervention=variant, noise_batches=6, event_epochs=[0], layers=["blocks.7.conv"],
                 fractions=[0.5])
    seen, at_event = {}, {}

    class Watch:
        def on_step_end(self, state):
            block = state.model.blocks[7]
            seen[state.step] = (block.conv.weight.detach().clone(), block.bn.weight.detach().clone())

        def on_epoch_end(self, state, record):
            if state.epoch == 1:
                at_event["w"] = state.model.blocks[7].conv.weight.detach().clone()
                at_event["bn"] = state.model.blocks[7].bn.weight.detach().clone()

    result = train(cfg, device="cpu", hooks=[Watch()])
    (row,) = result.tables["events"]
    targets = torch.tensor([int(i) for i in row["filters"].split(",")])
    assert len(targets) == 8 and row["filters_removed"] == 0 and row["filters_remaining"] == 16
    others = torch.tensor(sorted(set(range(16)) - set(targets.tolist())))
    for step in range(5, 10):  # after steps 1..N-1 of the window
        assert (seen[step][0][targets] == 0).all(), step
        assert (seen[step][0][others] != 0).any(), step
        # Figure D.2 zeroes the BatchNorm scale too; Figure 5 leaves it alone.
        assert ((seen[step][1][targets] == 0).all()) == (variant == "zero_return_saved"), step
    if variant == "zero_return_zero":
        # The authors zero before each forward pass: the N-th step's update is kept.
        assert (seen[10][0][targets] != 0).any()
        assert (seen[10][0][targets].abs().max() < at_event["w"][targets].abs().max())
    else:
        assert torch.equal(seen[10][0][targets], at_event["w"][targets])
        assert torch.equal(seen[10][1][targets], at_event["bn"][targets])
    assert (seen[4][0][targets] != 0).any()  # before the event


def _direct(settings, model):
    cfg = TrainConfig(dataset="digits", model="nin", epochs=4, mode="prune_during_training", mode_settings=settings)
    mode = PruneDuringTraining(cfg)
    state = SimpleNamespace(model=model, epoch=1, step=0, masks={}, evaluate=lambda m: {"test_acc": 1.0})
    return mode, state


def _first_unmodified_std(weight, targeted):
    """The paper's σ, by its rule (Appendix D.1, the authors' ``w[mask][0].std()``): the
    Bessel-corrected standard deviation of the first filter never targeted."""
    first = min(set(range(weight.shape[0])) - set(targeted))
    values = weight[first].detach().double().flatten().tolist()
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_gaussian_1_adds_one_draw_of_the_first_unmodified_filters_variance():
    # 40 independent events of "Gaussian 1" on 32 targets of 16·3·3 weights each: the pooled
    # variance of the added noise against σ² of the first filter never targeted.
    ratios, drawn = [], []
    for repeat in range(40):
        torch.manual_seed(repeat)
        model = nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64))
        mode, state = _direct({"layers": ["0"], "rates": [0.5], "event_epochs": [0], "intervention": "gaussian",
                               "noise_batches": 1, "target": "R"}, model)
        mode.generator.manual_seed(repeat)
        w0 = model[0].weight.detach().clone()
        mode.on_epoch_start(state)
        targets = [int(i) for i in mode.events[0]["filters"].split(",")]
        sigma = _first_unmodified_std(w0, targets)
        added = (model[0].weight.detach() - w0).double()
        others = sorted(set(range(64)) - set(targets))
        assert len(targets) == 32 and torch.equal(added[others], torch.zeros_like(added[others]))
        drawn.append(added[targets].flatten() / sigma)
        w1 = model[0].weight.detach().clone()
        state.step = 1
        mode.on_step_end(state)  # the window was that one draw: nothing more
        assert torch.equal(model[0].weight.detach(), w1) and mode.windows == {}
    pooled = torch.cat(drawn)
    assert pooled.mean().abs() < 0.01
    assert pooled.var().item() == pytest.approx(1.0, rel=0.1)  # σ², not 79·σ²


def test_gaussian_n_adds_the_test_batches_of_the_window_and_sigma_per_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64))
    mode, state = _direct({"layers": ["0"], "rates": [0.5], "event_epochs": [0], "intervention": "gaussian",
                           "noise_batches": 3, "eval_noise_batches": 79}, model)
    weight = model[0].weight
    w0 = weight.detach().clone()
    seen = []
    state.evaluate = lambda m: seen.append(m[0].weight.detach().clone()) or {"test_acc": 1.0}
    mode.on_epoch_start(state)  # the event: T = 79 draws (the test pass), then the first batch's own
    targets = [int(i) for i in mode.events[0]["filters"].split(",")]
    sigma2 = _first_unmodified_std(w0, targets) ** 2
    # 32·144 = 4608 draws: the variance estimate has a relative s.d. of about 2%.
    at_t_post = (seen[1] - w0)[targets].double()
    assert at_t_post.var().item() == pytest.approx(79 * sigma2, rel=0.08)
    first_batch = (weight.detach() - seen[1])[targets].double()
    assert first_batch.var().item() == pytest.approx(sigma2, rel=0.08)
    w1 = weight.detach().clone()
    state.step = 1
    mode.on_step_end(state)  # the second batch, inside the epoch: σ² of the filter as it is now
    sigma2 = _first_unmodified_std(weight.detach(), targets) ** 2
    assert (weight.detach() - w1)[targets].double().var().item() == pytest.approx(sigma2, rel=0.08)
    w2 = weight.detach().clone()
    state.step = 2
    mode.on_step_end(state)
    state.epoch = 2
    mode.on_epoch_start(state)  # the third batch is the first of the next epoch: σ² + 2T·σ² (two test passes)
    assert (weight.detach() - w2)[targets].double().var().item() == pytest.approx(159 * sigma2, rel=0.08)
    w3 = weight.detach().clone()
    state.step = 3
    mode.on_step_end(state)  # the window is over: nothing added
    assert torch.equal(weight.detach(), w3) and mode.windows == {}


@pytest.mark.parametrize("variant", ["gaussian", "zero_return_zero", "zero_return_saved"])
def test_noise_targets_accumulate_and_never_repeat(variant):
    # Target L by l2 norm: at each event the largest norms among the filters never targeted.
    model = nn.Sequential(nn.Conv2d(2, 12, 1), nn.BatchNorm2d(12))
    norms = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0, 11.0, 0.5]
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(norms).view(12, 1, 1, 1).expand(12, 2, 1, 1) / math.sqrt(2))
    mode, state = _direct({"layers": ["0"], "fractions": [0.75], "event_epochs": [0, 1, 2], "target": "L",
                           "intervention": variant, "noise_batches": 1}, model)
    seen, expected = [], []
    for epoch in (1, 2, 3):
        # The authors' rule: rank the filters still in the mask; m = ⌈3⌉, ⌈3 + 9·(3 − j)/3⌉ remain.
        scores = model[0].weight.detach().flatten(1).norm(dim=1).tolist()
        pool = [i for i in range(12) if i not in {f for event in expected for f in event}]
        count = 3
        expected.append(set(sorted(pool, key=lambda i: -scores[i])[:count]))
        state.epoch, state.step = epoch, epoch
        mode.on_epoch_start(state)
        seen.append({int(i) for i in mode.events[-1]["filters"].split(",")})
        mode.on_step_end(state)  # ends the one-batch window
    assert seen == expected
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    noised = [row["filters_noised"] for row in mode.events]
    assert noised == ([3, 6, 9] if variant == "zero_return_saved" else [3, 3, 3])  # Figure D.2 is cumulative


def test_every_layer_has_its_own_window_that_other_layers_events_leave_running():
    # The authors count batches per layer: layer "0"'s event after epoch 1 opens a 6-batch
    # window (4 batches an epoch); layer "2"'s event after epoch 2 does not end it.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
    mode, state = _direct({"layers": ["0", "2"], "fractions": [0.5], "start_epochs": [0, 1], "end_epochs": [0, 1],
                           "intervention": "zero_return_zero", "noise_batches": 6}, model)

    def train_step(step):
        with torch.no_grad():
            for conv in (model[0], model[2]):
                conv.weight.add_(0.1 + torch.rand_like(conv.weight))
        state.step = step
        mode.on_step_end(state)

    state.epoch = 1
    mode.on_epoch_start(state)
    first = [int(i) for i in mode.events[0]["filters"].split(",")]
    for step in (1, 2, 3, 4):
        train_step(step)
        assert (model[0].weight[first] == 0).all(), step
    state.epoch = 2
    mode.on_epoch_start(state)  # layer "2"'s event
    second = [int(i) for i in mode.events[1]["filters"].split(",")]
    assert mode.events[1]["layer"] == "2" and (model[2].weight[second] == 0).all()
    train_step(5)
    assert (model[0].weight[first] == 0).all() and (model[2].weight[second] == 0).all()
    train_step(6)  # layer "0"'s sixth batch: its window ends, the update is kept
    assert (model[0].weight[first] != 0).all() and (model[2].weight[second] == 0).all()
    assert set(mode.windows) == {"2"} and mode.windows["2"]["remaining"] == 4


def test_zero_return_saved_zeroes_and_restores_the_batchnorm_of_every_filter_ever_targeted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 1), nn.BatchNorm2d(8))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-1, 1)
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    mode, state = _direct({"layers": ["0"], "fractions": [0.5], "event_epochs": [0, 1], "target": "S",
                           "intervention": "zero_return_saved", "noise_batches": 2}, model)

    def snapshot():
        return {"w": model[0].weight.detach().clone(), "g": model[1].weight.detach().clone(),
                "b": model[1].bias.detach().clone(), "mu": model[1].running_mean.clone(),
                "var": model[1].running_var.clone()}

    def train_step(step):  # what a training step does: every value moves
        with torch.no_grad():
            for tensor in (model[0].weight, model[1].weight, model[1].bias, model[1].running_mean, model[1].running_var):
                tensor.add_(0.01 * torch.rand_like(tensor))
        state.step = step
        mode.on_step_end(state)

    targeted = set()
    for event, epoch in enumerate((1, 2)):
        before = snapshot()
        state.epoch = epoch
        mode.on_epoch_start(state)
        targeted |= {int(i) for i in mode.events[-1]["filters"].split(",")}
        index = sorted(targeted)
        assert len(index) == 2 * (event + 1)  # ⌈4 + 4·(2 − j)/2⌉ = 6, 4 remain
        for key in ("w", "g", "b"):
            assert (snapshot()[key][index] == 0).all(), (event, key)
        train_step(2 * epoch - 1)  # step 1 of the window: zeroed again for the second batch
        for key in ("w", "g", "b"):
            assert (snapshot()[key][index] == 0).all(), (event, key)
        assert not torch.equal(snapshot()["mu"][index], before["mu"][index])  # train mode moved them
        train_step(2 * epoch)  # step N = 2: restored, running statistics included
        after = snapshot()
        for key in ("w", "g", "b", "mu", "var"):
            assert torch.equal(after[key][index], before[key][index]), (event, key)


def test_the_first_event_comes_after_the_papers_epoch(one_thread):
    # Appendix A / the authors' code: events at range(s, e + 1, r) over 0-based epochs, each
    # right after training epoch s, so the first comes after s + 1 epochs (4 batches each).
    for s, after in ((0, 1), (2, 3)):
        cfg = config(event_epochs=[], start_epochs=[s], end_epochs=[s], layers=["blocks.7.conv"], fractions=[0.5])
        rows = train(cfg, device="cpu").tables["events"]
        assert [(r["epoch"], r["step"]) for r in rows] == [(after, 4 * after)]
    legacy = config(event_epochs=[], start_epochs=[2], end_epochs=[2], layers=["blocks.7.conv"], fractions=[0.5],
                    event_after="epochs_done")
    assert [r["epoch"] for r in train(legacy, device="cpu").tables["events"]] == [2]


def test_targets_s_and_l_take_the_extreme_scores_and_r_a_seeded_random_set():
    def chosen(target, seed_settings=None):
        model = nn.Sequential(nn.Conv2d(2, 10, 1), nn.BatchNorm2d(10))
        norms = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
        with torch.no_grad():
            model[0].weight.copy_(norms.view(10, 1, 1, 1).expand(10, 2, 1, 1) / math.sqrt(2))
        mode, state = _direct({"layers": ["0"], "rates": [0.3], "event_epochs": [0], "target": target}, model)
        if seed_settings is not None:
            mode.generator.manual_seed(seed_settings)
        mode.on_epoch_start(state)
        return set(mode.events[0]["filters"].split(","))

    assert chosen("S") == {"1", "5", "3"}  # norms 1, 2, 3
    assert chosen("L") == {"9", "2", "6"}  # norms 10, 9, 8
    assert chosen("R") == chosen("R")  # seeded
    assert len({frozenset(chosen("R", s)) for s in range(6)}) > 1  # and depends on the seed


def test_ebn_score_is_the_mean_of_a_rectified_normal():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.3, -0.2, -1.0]))
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(3, 2_000_000, generator=generator, dtype=torch.float64)
    monte_carlo = (bn.weight.detach().abs().double()[:, None] * samples + bn.bias.detach().double()[:, None]).clamp(min=0).mean(1)
    assert torch.allclose(ebn_scores(bn).double(), monte_carlo, atol=2e-3)


def test_scratch_pruning_fixes_the_final_masks_from_the_first_step(one_thread):
    masks = []

    class Watch:
        def on_step_end(self, state):
            masks.append({k: v.clone() for k, v in state.masks.items()})

    result = train(config(scratch=True), device="cpu", hooks=[Watch()])
    assert len(masks) == 16 and all(m.keys() == masks[0].keys() for m in masks)
    assert all(all(torch.equal(m[k], masks[0][k]) for k in m) for m in masks)
    removed = [int((~masks[0][f"{layer}.weight"].flatten(1).any(dim=1)).sum()) for layer in LAST4]
    assert removed == [8, 8, 8, 12] and "events" not in result.tables
    assert [len(zero_filters(result.model, layer)) for layer in LAST4] == [8, 8, 8, 12]


@pytest.mark.parametrize("settings", [
    {"score": "activation", "target": "R", "activation_every": 3},  # between events of a schedule
    {"intervention": "gaussian", "noise_batches": 6, "event_epochs": [0, 2]},  # inside a noise window
    {"intervention": "zero_return_saved", "noise_batches": 6, "event_epochs": [0, 2]},
], ids=["schedule", "gaussian_window", "zeroing_window"])
def test_a_run_stopped_after_epoch_two_resumes_bit_for_bit(settings, tmp_path, one_thread):
    cfg = config(**settings)
    straight = train(cfg, run_dir=tmp_path / "straight", device="cpu")

    def saved_window(run_dir):
        saved = torch.load(run_dir / "state.pt", weights_only=True)["mode"]
        if "intervention" in settings:
            windows = saved["windows"]  # one per layer, all started after epoch 1
            assert len(windows) == 4 and {w["remaining"] for w in windows.values()} == {2}  # 9 and 10 left

    resumed = stop_and_resume(cfg, tmp_path / "stopped", 2, between=saved_window)
    assert without_timing(resumed.records) == without_timing(straight.records)
    assert resumed.tables == straight.tables and resumed.models == straight.models
    a = torch.load(tmp_path / "straight" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "stopped" / "final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_settings_are_one_line_errors_naming_the_field():
    cases = [
        ({"score": "l3"}, "mode_settings.score: got 'l3', allowed: l2, l1, activation, ebn"),
        ({"target": "M"}, "mode_settings.target: got 'M', allowed: S, R, L"),
        ({"fractions": [0.5, 1.5]}, "mode_settings.fractions: got (0.5, 1.5), allowed: a list of fractions in (0, 1)"),
        ({"event_epochs": [3, 2]}, "mode_settings.event_epochs: got (3, 2), allowed: increasing epochs >= 0"),
        ({"event_epochs": [1, 9]}, "mode_settings.event_epochs: an event after 10 epochs of training, allowed: "
                                   "schedule epochs up to 2 (event_after: epoch_index"),
        ({"event_epochs": [0], "event_after": "epochs_done"},
         "mode_settings.event_epochs: got (0,), allowed: a list of epochs >= 1 (event_after: epochs_done)"),
        ({"count_rule": "floor"}, "mode_settings.count_rule: got 'floor', allowed: ceil, round"),
        ({"event_after": "late"}, "mode_settings.event_after: got 'late', allowed: epoch_index, epochs_done"),
        ({"eval_noise_batches": -1}, "mode_settings.eval_noise_batches: got -1, allowed: an integer >= 0"),
        ({"epoch_noise_factor": 10.0}, "mode_settings.epoch_noise_factor: got 10.0, retired (issue 22)"),
        ({"layers": ["last_conv:x"]}, "mode_settings.layers: got ('last_conv:x',), allowed: last_conv:K"),
        ({"fractions": [0.5, 0.5]}, "mode_settings.fractions: got (0.5, 0.5), allowed: one value, or one per layer (4)"),
        ({"scratch": True, "intervention": "gaussian"}, "mode_settings.scratch: got True, allowed: false unless"),
    ]
    for settings, message in cases:
        with pytest.raises(ConfigError) as info:
            config(**settings)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_settings_round_trip_and_only_non_defaults_enter_the_id():
    cfg = config(target="L")
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.trial_id == cfg.trial_id
    assert cfg.identity()["mode_settings"] == {"fractions": [0.5, 0.5, 0.5, 0.75],
                                               "event_epochs": [0, 1, 2], "target": "L"}
    paper = TrainConfig(**{**BASE, "epochs": 325}, mode_settings={})
    # s = (3, 4, 5, 6): the first events after 4, 5, 6 and 7 epochs; the last layer's every 40.
    assert paper.mode_settings.all_event_epochs()[:4] == (4, 5, 6, 7)
    assert paper.mode_settings.layer_event_epochs(3) == (7, 47, 87, 127, 167, 207, 247)
    # A store written before issue 22 holds the retired epoch_noise_factor at its default.
    old = {**cfg.to_dict(), "mode_settings": {**cfg.to_dict()["mode_settings"], "epoch_noise_factor": 79.0}}
    assert TrainConfig.from_dict(old).trial_id == cfg.trial_id


def test_the_model_row_holds_the_mean_stability_over_events_that_pruned_something(one_thread):
    result = train(config(), device="cpu")
    per_event = {}
    for row in result.tables["events"]:
        per_event.setdefault(row["event"], set()).add(row["stability"])
    assert all(len(values) == 1 for values in per_event.values())  # one value per event, every layer
    expected = sum(v.pop() for v in per_event.values()) / len(per_event)
    assert result.models[-1]["stability"] == pytest.approx(expected)
    # p = 0.1 of 16 filters over 3 events: m = ⌈14.4⌉ = 15 and ⌈15 + (3 − j)/3⌉ = 16, 16, 15
    # remain: the first two events remove nothing, and the authors' analysis averages only
    # the epochs that removed a filter.
    sparse = train(config(layers=["blocks.7.conv"], fractions=[0.1]), device="cpu")
    rows = sparse.tables["events"]
    assert [r["filters_targeted"] for r in rows] == [0, 0, 1]
    assert sparse.models[-1]["stability"] == pytest.approx(rows[2]["stability"])
    scratch = train(config(scratch=True), device="cpu")
    assert scratch.models[-1]["stability"] == 1.0


def test_events_that_remove_no_filter_do_not_enter_the_mean_stability():
    from trainers.modes.prune_during_training import mean_stability

    rows = [{"event": 0, "stability": 0.9, "filters_targeted": 2}, {"event": 0, "stability": 0.9, "filters_targeted": 0},
            {"event": 1, "stability": 1.0, "filters_targeted": 0}, {"event": 2, "stability": 0.7, "filters_targeted": 1}]
    assert mean_stability(rows) == pytest.approx((0.9 + 0.7) / 2)
    assert mean_stability([{"event": 0, "stability": 0.98, "filters_targeted": 0}]) == 1.0
    # And in a run: 4 filters at p = 0.25 over 3 events: ⌈3 + (3 − j)/3⌉ = 4, 4, 3 remain.
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4))
    accuracy = iter([0.8, 0.7, 0.8, 0.4, 0.8, 0.6])
    mode, state = _direct({"layers": ["0"], "fractions": [0.25], "event_epochs": [0, 1, 2]}, model)
    state.evaluate = lambda m: {"test_acc": next(accuracy)}
    for epoch in (1, 2, 3):
        state.epoch = epoch
        mode.on_epoch_start(state)
    assert [r["filters_targeted"] for r in mode.events] == [0, 0, 1]
    assert mode.model_info("final")["stability"] == pytest.approx(1 - (0.8 - 0.6) / 0.8)

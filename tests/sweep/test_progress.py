"""The sweep's progress line, from the Tune callback, with real Tune trial objects and a real store."""

from __future__ import annotations

import pathlib

import pytest
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from sweep.progress import _tune_callback_class
from sweep.store import Store
from trainers.config import TrainConfig

CONFIGS = [TrainConfig(dataset="digits", model="nin", width=width, depth=1, epochs=2) for width in (4, 6, 8, 10)]


def _tune_trial(configs, status: str, storage=None) -> Trial:
    ids = [c.trial_id for c in configs]
    trial = Trial("run_trial", config={"trial": {"trial_id": ids[0], "trial_ids": ids}}, stub=True, storage=storage)
    trial.set_status(status)
    return trial


@pytest.fixture
def progress(tmp_path, capsys):
    callback = _tune_callback_class()(str(tmp_path / "store"), "progress", [c.to_dict() for c in CONFIGS], every=3600)
    callback.setup()
    capsys.readouterr()
    return callback


def test_running_counts_the_models_of_the_trials_tune_runs_including_packs_before_their_first_epoch(progress, capsys):
    trials = [_tune_trial(CONFIGS[:2], Trial.RUNNING),  # a pack of two, no epoch reported yet
              _tune_trial(CONFIGS[2:3], Trial.RUNNING),
              _tune_trial(CONFIGS[3:], Trial.PENDING)]
    progress.on_experiment_end(trials)
    assert "[progress] trials 0/4 done, 3 running, 0 failed | epochs 0/8" in capsys.readouterr().out


def test_a_completed_trial_prints_no_line_of_its_own_and_an_error_does(progress, capsys, tmp_path, ray_address):
    # ray_address: Tune finds a trial's error file under the Ray session folder.
    trials = [_tune_trial(CONFIGS[:1], Trial.TERMINATED), _tune_trial(CONFIGS[1:2], Trial.RUNNING)]
    progress.on_trial_complete(0, trials, trials[0])
    assert capsys.readouterr().out == ""  # the slot it held is empty at this instant: no line shows it idle
    storage = StorageContext(storage_path=str(tmp_path / "tune"), experiment_dir_name="progress", trial_dir_name="t")
    failed = _tune_trial(CONFIGS[2:3], Trial.ERROR, storage=storage)
    failed.run_metadata.error_filename = "error.txt"
    pathlib.Path(failed.local_path).mkdir(parents=True, exist_ok=True)
    pathlib.Path(failed.error_file).write_text("Traceback ...\nValueError: width: got 0\n")
    progress.on_trial_error(0, trials + [failed], failed)
    out = capsys.readouterr().out
    assert "trials 0/4 done, 1 running, 1 failed" in out
    row = Store(progress.storage, "progress").trials().set_index("trial_id").loc[CONFIGS[2].trial_id]
    assert (row["status"], row["error"]) == ("error", "ValueError: width: got 0")


def test_the_eta_is_each_trials_epochs_left_at_its_architectures_measured_pace(progress, capsys):
    from sweep.progress import Pace

    pace = Pace()
    assert pace.remaining_seconds([(CONFIGS[0], 2)], slots=1) is None  # nothing measured: "?"
    pace.add(CONFIGS[0], 1.0)
    pace.add(CONFIGS[0], 3.0)
    pace.add(CONFIGS[1], 10.0)
    assert pace.per_epoch(CONFIGS[0]) == 2.0
    assert pace.per_epoch(CONFIGS[2]) == 6.0  # unmeasured: the mean of the measured architectures
    # 2 epochs at 2 s + 1 at 10 s + 3 at 6 s, on 2 slots.
    assert pace.remaining_seconds([(CONFIGS[0], 2), (CONFIGS[1], 1), (CONFIGS[2], 3), (CONFIGS[3], 0)],
                                  slots=2) == pytest.approx((4 + 10 + 18) / 2)

    running = [_tune_trial(CONFIGS[:2], Trial.RUNNING), _tune_trial(CONFIGS[2:3], Trial.RUNNING)]
    result = {"genzoo_trial_id": CONFIGS[0].trial_id, "epoch": 1, "epoch_seconds": 30.0}
    progress.on_trial_result(0, running, running[0], result)  # a pack of two: 15 s each
    progress.on_experiment_end(running)
    # Left: 1 epoch of CONFIGS[0] at 15 s and 2 epochs each of three others at 15 s (the only
    # pace measured), on the 2 Tune trials running (the pack is one slot: its models' 15 s shares
    # add up to its 30 s epoch): 105 / 2 = 52.5 s, whatever the elapsed time.
    line = capsys.readouterr().out
    assert "3 running" in line and "epochs 1/8 | elapsed" in line and line.rstrip().endswith("ETA 0m52s")


def test_trials_that_stop_at_a_target_are_expected_to_stop_where_the_finished_ones_did():
    from sweep.progress import epochs_left
    from sweep.trials_table import TrialRow

    configs = [TrainConfig(dataset="digits", model="nin", width=4, depth=1, epochs=50, stop_at_train_loss=0.1,
                           seed=seed) for seed in range(4)]
    rows = [TrialRow(configs[0], status="pending"), TrialRow(configs[1], status="running", epochs_done=2),
            TrialRow(configs[2], status="running", epochs_done=12)]
    left, bound = epochs_left(rows, {configs[1].trial_id: 3})
    assert ([n for _, n in left], bound) == ([50, 47, 38], "<=")  # nothing finished: each to its cap
    rows.append(TrialRow(configs[3], status="completed", epochs_done=10))  # stopped at its target at epoch 10
    left, bound = epochs_left(rows, {configs[1].trial_id: 3})
    assert ([n for _, n in left], bound) == ([10, 7, 1], "~")  # to epoch 10; one past it goes one more
    plain = TrainConfig(dataset="digits", model="nin", width=4, depth=1, epochs=5)
    assert epochs_left([TrialRow(plain, status="running", epochs_done=2)], {}) == ([(plain, 3)], "")


def test_the_eta_counts_each_waiting_trials_start_up_and_commit_measured_on_finished_ones(progress, capsys):
    """Trials of a few seconds spend most of their time outside their epochs (the worker's
    start, the data, the commit): a finished trial's wall time beyond its epochs is added for
    every trial not started yet (a pack's shared by its models)."""
    from sweep.progress import Pace

    pace = Pace()
    pace.add(CONFIGS[0], 1.0)
    assert pace.overhead_per_trial() == 0.0
    assert pace.remaining_seconds([(CONFIGS[0], 2)], slots=1, starts=3) == 2.0  # nothing finished: epochs only
    pace.add_overhead(4.0)
    pace.add_overhead(2.0)
    assert pace.remaining_seconds([(CONFIGS[0], 2), (CONFIGS[1], 2)], slots=2, starts=1) == pytest.approx((4 + 3) / 2)

    times = iter([100.0, 112.0])
    progress.clock = lambda: next(times)
    pack = _tune_trial(CONFIGS[:2], Trial.RUNNING)
    progress.on_trial_start(0, [pack], pack)  # at 100 s
    result = {"genzoo_trial_id": CONFIGS[0].trial_id, "epoch": 2, "epoch_seconds": 4.0}
    progress.on_trial_result(0, [pack], pack, result)
    pack.set_status(Trial.TERMINATED)
    progress.on_trial_complete(0, [pack], pack)  # at 112 s: 12 s, 4 of them an epoch: 8 s for 2 models
    assert progress.pace.overhead_per_trial() == 4.0
    # The pack wrote nothing to the store, so its trials are pending again: four trials waiting,
    # each 2 epochs at 2 s (the one pace measured) and 4 s beyond them. None runs at this instant;
    # one Tune trial (the pack) was seen running: on one slot, 32 s.
    progress.on_experiment_end([pack])
    line = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert "trials 0/4 done, 0 running, 0 failed | epochs 0/8 |" in line and line.endswith("ETA 0m32s")

    # Two single-model trials seen running at once, then none at this instant (between trials):
    # the ETA keeps two slots, 16 s.
    singles = [_tune_trial(CONFIGS[2:3], Trial.RUNNING), _tune_trial(CONFIGS[3:], Trial.RUNNING)]
    progress.on_experiment_end(singles)
    for single in singles:
        single.set_status(Trial.TERMINATED)
    capsys.readouterr()
    progress.on_experiment_end(singles)
    line = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert "0 running" in line and line.endswith("ETA 0m16s")


def test_a_restarted_trial_measures_its_last_attempt(progress):
    times = iter([0.0, 50.0, 60.0])
    progress.clock = lambda: next(times)
    single = _tune_trial(CONFIGS[2:3], Trial.RUNNING)
    progress.on_trial_start(0, [single], single)  # at 0 s: its first attempt, 20 s of epochs, then it fails
    progress.on_trial_result(0, [single], single, {"genzoo_trial_id": CONFIGS[2].trial_id, "epoch": 1,
                                                   "epoch_seconds": 20.0})
    progress.on_trial_start(0, [single], single)  # at 50 s: Tune restarts it
    progress.on_trial_result(0, [single], single, {"genzoo_trial_id": CONFIGS[2].trial_id, "epoch": 2,
                                                   "epoch_seconds": 4.0})
    single.set_status(Trial.TERMINATED)
    progress.on_trial_complete(0, [single], single)  # at 60 s: 10 s, 4 of them its epoch
    assert progress.pace.overhead_per_trial() == 6.0
    assert single.trial_id not in progress.started_at and single.trial_id not in progress.epoch_seconds

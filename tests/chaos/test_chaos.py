"""Chaos runs of a tiny sweep (see tests/chaos/harness.py): the store after SIGKILLed
drivers and killed Ray workers equals an undisturbed run's, and no process of a killed
driver survives it."""

import time

import pytest

from chaos import harness


def _run(tmp_path, ray_address, ray_tmpdir, *, seed, config_changes=None, **kills):
    config = harness.write_config(tmp_path, "chaos", **(config_changes or {}))
    log = tmp_path / "genzoo.log"
    reference_seconds = harness.reference_run(config, str(tmp_path / "reference"), "chaos", ray_address, log)
    raylet = harness.local_raylet_pid()
    chaos = harness.chaos_run(config, str(tmp_path / "chaotic"), "chaos", ray_address, log, seed=seed,
                              raylet_pid=raylet, **kills)
    left = harness.survivors(chaos)
    deadline = time.monotonic() + 30
    while left and time.monotonic() < deadline:  # a killed group's last processes may take a moment to go
        time.sleep(0.5)
        left = harness.survivors(chaos)
    assert not left, left
    reference = harness.snapshot(str(tmp_path / "reference"), "chaos")
    harness.compare(reference, harness.snapshot(str(tmp_path / "chaotic"), "chaos"))
    # No scratch folder of a killed trial is left in the workers' $TMPDIR.
    assert not harness.scratch_left(ray_tmpdir, reference["trials"]["trial_id"])
    print(f"\nchaos: reference {reference_seconds:.0f} s; chaotic {chaos.seconds:.0f} s in {chaos.launches} launches, "
          f"{chaos.driver_kills} sweep driver kills, {chaos.worker_kills} trial worker kills, "
          f"{chaos.measure_driver_kills} measure driver kills, {chaos.measure_task_kills} measure task kills; "
          + "; ".join(chaos.events))
    return chaos


@pytest.mark.slow  # 67 s; CI keeps test_driver's killed-driver resume and the SIGKILL/SIGINT tests of tests/chaos
def test_two_driver_kills_leave_the_store_identical_to_an_undisturbed_run(ray_address, ray_tmpdir, tmp_path):
    chaos = _run(tmp_path, ray_address, ray_tmpdir, seed=14, driver_kills=2)
    assert chaos.driver_kills >= 1


@pytest.mark.slow
def test_ten_driver_kills_two_trial_worker_kills_three_measure_kills(ray_address, ray_tmpdir, tmp_path):
    # 40 epochs of 3 trials: 120 epoch rows, enough for 10 launches that each commit some before their kill
    # (and for the rows the killed launches' trials commit before Ray stops them), then the worker kills.
    chaos = _run(tmp_path, ray_address, ray_tmpdir, seed=1414, config_changes={"epochs": 40, "widths": (8, 12, 16)},
                 driver_kills=10, worker_kills=2, measure_kills=3, measure_task_kills=1,
                 measure_window=(4.0, 16.0))  # the measure driver's kills (the sweep's follow its progress)
    assert chaos.worker_kills == 2 and chaos.driver_kills == 10


@pytest.mark.slow
def test_a_packed_sweep_killed_ten_times_equals_the_undisturbed_packed_run(ray_address, ray_tmpdir, tmp_path):
    # Two packs of two models (one per width, seeds 0 and 1), each epoch of a pack one commit.
    chaos = _run(tmp_path, ray_address, ray_tmpdir, seed=2323,
                 config_changes={"epochs": 12, "seeds": (0, 1), "pack": 2},
                 driver_kills=10, worker_kills=1)
    assert chaos.driver_kills >= 3

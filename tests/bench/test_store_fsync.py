"""bench/store_fsync.py: both ways are timed and the durable write is the store's."""

SCRIPT = "store_fsync"


def test_main_prints_each_payload_and_the_trial_with_and_without_fsync(bench, tmp_path, capsys):
    bench.main(["--folder", str(tmp_path), "--writes", "2", "--epochs", "1"])
    out = capsys.readouterr().out
    assert out.count(" KB ") + out.count(" MB ") == 3 and "tiny trial, 1 epochs" in out
    assert list(tmp_path.iterdir()) == []  # every store it wrote is removed


def test_without_fsync_is_restored_after_the_timing(bench):
    from sweep import store

    durable = store._write_durably
    with bench.fsync(False):
        assert store._write_durably is not durable
    assert store._write_durably is durable

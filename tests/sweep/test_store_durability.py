"""Local writes of the store are durable (the file fsynced before its rename, its folder after),
the write probe leaves no trace, an empty storage string is refused."""

import os

import pytest

from sweep.store import Store, StoreError


def test_a_local_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    store = Store(str(tmp_path), "exp")
    events = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_replace(src, dst):
        events.append(("rename", str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    store.write_bytes(b"marker", "checkpoints", "t", "state.pt")
    folder = tmp_path / "exp" / "checkpoints" / "t"
    final = [e for e in events if e[0] == "rename" or e[1] in (str(folder),) or ".state.pt.tmp-" in e[1]]
    assert [kind for kind, _ in final] == ["fsync", "rename", "fsync"]
    assert ".state.pt.tmp-" in final[0][1] and final[1][1] == str(folder / "state.pt") and final[2][1] == str(folder)
    # The folders made for it were fsynced into their parents.
    assert ("fsync", str(tmp_path / "exp" / "checkpoints")) in events
    assert (folder / "state.pt").read_bytes() == b"marker"
    assert [p.name for p in folder.iterdir()] == ["state.pt"]  # no temporary left


def test_the_write_probe_leaves_no_folder_behind(tmp_path):
    store = Store(str(tmp_path / "storage"), "exp")
    store.check_writable()
    assert not (tmp_path / "storage" / "exp").exists()
    store.write_text("x", "sweep.yaml")
    store.check_writable()  # a folder that was there stays
    assert sorted(p.name for p in (tmp_path / "storage" / "exp").iterdir()) == ["sweep.yaml"]


@pytest.mark.parametrize("storage", ["", "  "])
def test_an_empty_storage_string_is_refused(storage):
    with pytest.raises(StoreError, match=r"^storage: got '\s*', allowed: a path or a URI"):
        Store(storage, "exp")


def _full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_line_naming_the_store_that_says_to_run_the_command_again(tmp_path, monkeypatch):
    from sweep import store as store_module

    monkeypatch.setattr(store_module, "_write_durably", _full)
    with pytest.raises(StoreError, match=r"^storage: .*/exp is full \(no space left on device writing "
                                         r"measures/t.parquet\); free space, then run the command again"):
        Store(str(tmp_path), "exp").write_bytes(b"rows", "measures", "t.parquet")


@pytest.mark.parametrize("argv, hint", [
    (["measure", "exp"], "then run `genzoo measure` again (it computes what is missing)"),
    (["sweep", "resume", "exp"], "then `genzoo sweep resume exp`"),
])
def test_a_full_disk_outside_the_stores_writes_names_the_commands_own_way_on(tmp_path, monkeypatch, capsys,
                                                                             argv, hint):
    from sweep import driver, measure_job
    from sweep.cli import main

    monkeypatch.setattr(measure_job, "run", _full)
    monkeypatch.setattr(driver, "resume", _full)
    assert main(argv + ["--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genzoo: error: storage: no space left") and err[0].endswith(hint)

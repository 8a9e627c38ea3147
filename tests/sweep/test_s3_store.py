"""The whole store on s3:// through pyarrow.fs, against a moto S3 server on loopback: a sweep,
its measures and its analysis end to end, and an outage in the middle of a sweep.

The drivers are subprocesses with their own embedded Ray, so that Ray's workers inherit the
dummy AWS credentials (the session Ray's workers were started before this module set them).
"""

import os
import socket
import subprocess
import sys
import time

import pytest

moto_server = pytest.importorskip("moto.server")

from chaos import harness  # noqa: E402
from sweep.store import Store  # noqa: E402

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                            allow_bucket_creation=True)
    fs.create_dir("zoo-bucket")
    try:
        yield server, f"s3://zoo-bucket/zoo?endpoint_override=127.0.0.1:{port}&scheme=http"
    finally:
        server.stop()


def _genzoo(args, tmp_path, **kwargs):
    env = {**os.environ, **CREDENTIALS, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(harness.REPO),
           }
    return subprocess.Popen([sys.executable, "-m", "sweep.cli", *args], env=env, cwd=harness.REPO,
                            stdout=open(tmp_path / "genzoo.log", "ab"), stderr=subprocess.STDOUT, **kwargs)


def _log(tmp_path):
    return (tmp_path / "genzoo.log").read_text()[-4000:]


def test_sweep_measure_and_analyze_on_s3(s3, tmp_path):
    _, uri = s3
    config = harness.write_config(tmp_path, "ons3", epochs=2, widths=(8, 12, 16))
    assert _genzoo(["sweep", "run", str(config), "--storage", uri], tmp_path).wait(300) == 0, _log(tmp_path)
    assert _genzoo(["measure", "ons3", "--measures", harness.MEASURES, "--storage", uri], tmp_path).wait(300) == 0, \
        _log(tmp_path)
    assert _genzoo(["analyze", "ons3", "--storage", uri], tmp_path).wait(300) == 0, _log(tmp_path)
    store = Store(uri, "ons3")
    assert store.local_path() is None
    assert set(store.trials()["status"]) == {"completed"}
    assert sorted(store.epochs().groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2]] * 3
    assert (store.measures()["status"] == "ok").all() and len(store.measures())
    for trial_id in store.trials()["trial_id"]:
        assert store.list("checkpoints", trial_id) == ["epoch_1.pt", "final.pt", "init.pt"]
    assert store.exists("analysis", "report.md")
    import pyarrow.fs as pafs

    tune_files = [i.path for i in store.fs.get_file_info(pafs.FileSelector(store.path("_tune"), recursive=True))]
    assert any("experiment_state" in p for p in tune_files), tune_files  # Tune's own files are in the bucket too
    assert not (tmp_path / "zoo-bucket").exists()


@pytest.mark.slow  # 15 to 50 s: the full suite stays under 10 minutes on 2 idle cores
def test_an_s3_outage_mid_sweep_stops_cleanly_and_resume_completes(s3, tmp_path):
    server, uri = s3
    config = harness.write_config(tmp_path, "outage", epochs=6, widths=(8, 12))
    driver = _genzoo(["sweep", "run", str(config), "--storage", uri], tmp_path)
    store = Store(uri, "outage")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if len(store.epochs()) >= 2:
            break
        time.sleep(0.5)
    server.stop()
    try:
        code = driver.wait(600)
    finally:
        server.start()
    # A clean stop: exit 2 with one line naming the store, and no traceback through the command
    # line (the log also holds Tune's reports of the trials that failed, tracebacks included).
    text = (tmp_path / "genzoo.log").read_text()
    assert code == 2, _log(tmp_path)
    errors = [line for line in text.splitlines() if line.startswith("genzoo: error:")]
    assert len(errors) == 1 and errors[0].startswith("genzoo: error: storage: s3://zoo-bucket/zoo"), errors
    assert "genzoo sweep resume" in errors[0] and "sweep/cli.py" not in text
    assert len(store.epochs()) < 12
    assert _genzoo(["sweep", "resume", "outage", "--storage", uri], tmp_path).wait(600) == 0, _log(tmp_path)
    epochs = store.epochs()
    assert len(epochs) == 12 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(store.trials()["status"]) == {"completed"}

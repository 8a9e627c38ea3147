"""One-line errors, exit code 2, in bounded time: a dataset download without network, and an
unreachable remote store (an S3 endpoint on loopback: no real network is used)."""

import socket
import time
import urllib.error
import urllib.request

import pytest

from sweep.cli import main
from sweep.store import Store, StoreError, storage_timeout


@pytest.fixture
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("name, layout", [
    ("cifar10", "cifar-10-batches-py/data_batch_1..5 and test_batch"),
    ("cifar100", "cifar-100-python/train and test"),
    ("mnist", "MNIST/raw/"),
])
def test_download_without_network_is_one_line_with_the_manual_alternative(tmp_path, capsys, offline, name, layout):
    assert main(["data", "download", name, "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"genzoo: error: {name}: download failed (")
    assert "Temporary failure in name resolution" in err and "without network" in err
    assert layout in err and str(tmp_path) in err
    assert [p for p in tmp_path.rglob("*")] == []  # no empty folder left (MNIST/raw/)


@pytest.fixture
def aws_keys(monkeypatch):
    # Fake keys: the client then never looks for credentials on the network.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "genzoo-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "genzoo-test")


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_s3_endpoint_on_a_closed_port_fails_fast_naming_the_storage(aws_keys, capsys):
    uri = f"s3://bucket/zoo?endpoint_override=127.0.0.1:{_closed_port()}&scheme=http"
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"^storage: cannot open s3://bucket/zoo/exp\?endpoint_override=127\.0\.0\.1:"):
        Store(uri, "exp")
    assert time.monotonic() - started < 10
    assert main(["sweep", "status", "exp", "--storage", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "storage: cannot open s3://bucket/zoo/exp" in err


def test_s3_endpoint_that_never_answers_fails_within_the_timeout(aws_keys, monkeypatch):
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.setenv("GENZOO_STORAGE_TIMEOUT", "1")
    uri = f"s3://bucket/zoo?endpoint_override=127.0.0.1:{silent.getsockname()[1]}&scheme=http"
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match=r"^storage: (s3://bucket/zoo/exp\S* did not answer within 1 s|cannot open s3://bucket/zoo/exp)"):
            Store(uri, "exp")
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_unknown_s3_option_is_named(aws_keys):
    with pytest.raises(StoreError, match=r"unknown option 'colour', allowed: region, scheme, endpoint_override"):
        Store("s3://bucket/zoo?colour=red", "exp")


@pytest.mark.parametrize("raw, expected", [(None, 20.0), ("", 20.0), ("2.5", 2.5), ("1e1", 10.0)])
def test_storage_timeout_setting(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv("GENZOO_STORAGE_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("GENZOO_STORAGE_TIMEOUT", raw)
    assert storage_timeout() == expected


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan"])
def test_bad_storage_timeout_is_one_line(monkeypatch, raw):
    monkeypatch.setenv("GENZOO_STORAGE_TIMEOUT", raw)
    with pytest.raises(StoreError, match=r"^GENZOO_STORAGE_TIMEOUT: got .*, allowed: a number of seconds > 0"):
        storage_timeout()


def test_local_stores_open_without_a_probe(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_STORAGE_TIMEOUT", "soon")  # never read for a local path
    store = Store(str(tmp_path), "exp")
    assert store.root == str(tmp_path / "exp") and store.uri == str(tmp_path / "exp")

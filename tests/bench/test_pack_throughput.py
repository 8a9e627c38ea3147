"""Smoke test of bench/pack_throughput.py with tiny settings."""

import json
import re

import pytest

SCRIPT = "pack_throughput"


@pytest.mark.usefixtures("one_thread")
def test_main_prints_a_row_per_pack_size_with_its_ratio(bench, capsys, tmp_path):
    out_json = tmp_path / "rows.json"
    assert bench.main(["--width", "4", "--depth", "1", "--train-size", "64", "--batch-size", "32",
                       "--ks", "1,2", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out_json.read_text())
    assert [r["k"] for r in rows] == [1, 2]
    for row in rows:
        line = re.search(rf"^\| {row['k']} \| ([\d,]+) \| ([\d,]+) \| ([\d.]+)× \|$", out, re.M)
        assert line, out
        separate, packed = (float(line[i].replace(",", "")) for i in (1, 2))
        assert separate == pytest.approx(row["separate_images_per_second"], abs=1)
        assert packed == pytest.approx(row["packed_images_per_second"], abs=1)
        # The ratio is the quotient of the aggregate throughputs (same images on both sides).
        assert row["ratio"] == pytest.approx(row["packed_images_per_second"] / row["separate_images_per_second"])
        assert row["images_per_epoch"] == 64


@pytest.mark.parametrize("args, message", [
    (["--ks", "0"], "--ks"), (["--ks", "a"], "--ks"), (["--epochs", "1"], "--epochs"),
])
def test_bad_arguments_are_one_line_errors(bench, capsys, args, message):
    assert bench.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pack_throughput: error: {message}") and "\n" not in err

"""bench/flatness_accuracy.py with a tiny model (a few seconds on one core)."""

import re

import pytest

SCRIPT = "flatness_accuracy"
TINY = ["--width", "2", "--depth", "1", "--train-size", "64", "--epochs", "1", "--subset", "32", "--top-k", "4"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dense_mode_prints_errors_that_vanish_when_lanczos_spans_the_space(bench, capsys):
    assert bench.main(TINY + ["--steps", "4,6,10000", "--probes", "2,10"]) == 0
    out = capsys.readouterr().out
    dim = int(re.search(r"([\d,]+) parameters", out).group(1).replace(",", ""))
    rows = re.findall(r"^\| (\d+) \| (\S+) \| (\S+) \| (\S+) \| (\S+) \| (\S+) \|$", out, re.M)
    assert [int(row[0]) for row in rows] == [4, 6, dim]  # 10000 steps are capped at dim
    assert all(value.startswith("0") or "e-" in value for value in rows[-1][1:4])  # exact at m = dim
    trace_rows = re.findall(r"^\| (2|10) \| (\S+) \| .*\|$", out, re.M)
    assert [row[0] for row in trace_rows] == ["2", "10"]


def test_reference_mode_compares_against_a_longer_run(bench, capsys):
    assert bench.main(TINY + ["--steps", "4,8", "--reference-steps", "16"]) == 0
    out = capsys.readouterr().out
    assert "reference: a 16-step Lanczos run" in out
    assert len(re.findall(r"^\| (4|8) \| ", out, re.M)) == 2


def test_bad_arguments_are_one_line_errors(bench, capsys):
    assert bench.main(TINY + ["--steps", "1,2"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert bench.main(["--subset", "0"]) == 2
    assert "--subset" in capsys.readouterr().err

"""Smoke test of bench/eval_cadence.py with tiny settings."""

import re

SCRIPT = "eval_cadence"


def test_main_prints_both_epoch_times_and_their_ratio(bench, capsys):
    args = ["--width", "4", "--depth", "1", "--train-size", "64", "--batch-size", "16", "--epochs", "3",
            "--eval-every", "2", "--eval-train-subset", "16"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    full = re.search(r"^full evaluation every epoch:\s+([\d.]+) s per epoch", out, re.M)
    cheap = re.search(r"^eval_every 2, train subset 16: ([\d.]+) s per epoch", out, re.M)
    ratio = re.search(r"^ratio full/cadence: ([\d.]+)x$", out, re.M)
    assert full and cheap and ratio, out
    assert float(ratio[1]) > 0


def test_a_bad_setting_is_one_line(bench, capsys):
    assert bench.main(["--eval-every", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith("eval_cadence: error: eval_every:")

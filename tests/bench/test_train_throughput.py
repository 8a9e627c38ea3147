"""Smoke tests of bench/train_throughput.py with tiny settings (a few seconds on one core)."""

import re

import pytest
import torch

SCRIPT = "train_throughput"
TINY = ["--width", "4", "--depth", "1", "--train-size", "64", "--batch-size", "16",
        "--epochs", "1", "--warmup-steps", "1", "--device", "cpu", "--cadence-epochs", "0"]


def test_main_prints_both_throughputs_and_their_ratio(bench, capsys):
    torch.manual_seed(0)
    assert bench.main(TINY + ["--num-workers", "1"]) == 0
    out = capsys.readouterr().out
    genzoo = re.search(r"^genzoo:\s+([\d.]+) images/s\s+\(best of 2 runs: ([\d.]+), ([\d.]+)\)", out, re.M)
    baseline = re.search(r"^baseline:\s+([\d.]+) images/s\s+\(best of 2 runs: ([\d.]+), ([\d.]+)\)", out, re.M)
    ratio = re.search(r"^ratio genzoo/baseline: ([\d.]+)x$", out, re.M)
    assert genzoo and baseline and ratio, out
    assert "images per timed run: 64" in out
    g_best, g_runs = float(genzoo[1]), [float(genzoo[2]), float(genzoo[3])]
    b_best, b_runs = float(baseline[1]), [float(baseline[2]), float(baseline[3])]
    assert g_best == max(g_runs) > 0 and b_best == max(b_runs) > 0  # the better run is reported
    # The printed ratio is the quotient of the printed throughputs (up to their rounding).
    assert float(ratio[1]) == pytest.approx(g_best / b_best, abs=0.01 + 0.01 * g_best / b_best)


@pytest.mark.parametrize("data_only", [False, True])
def test_both_sides_time_every_image_of_every_epoch(bench, data_only):
    settings = bench.Settings(width=4, depth=1, train_size=40, repeat=2, batch_size=16, epochs=2,
                              warmup_steps=1, runs=1, num_workers=0, data_only=data_only)
    genzoo, baseline = bench.run_benchmark(settings)
    assert genzoo.images == baseline.images == 40 * 2 * 2  # train_size x repeat x epochs
    assert len(genzoo.runs) == len(baseline.runs) == 1


def test_baseline_transform_is_genzoo_crop_and_flip_then_normalization(bench):
    # torchvision's RandomCrop(32, padding=4) + flip, replayed with fixed offsets through the
    # functional API, against genzoo's on-device crop_flip of the same image and offsets.
    from torchvision.transforms import functional as TF

    from trainers import data

    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    for dy, dx, flip in [(0, 0, False), (8, 3, True), (4, 4, False), (2, 7, True)]:
        padded = TF.pad(TF.to_pil_image(image[0]), 4, fill=0)
        crop = TF.crop(padded, dy, dx, 32, 32)
        reference = TF.normalize(TF.to_tensor(TF.hflip(crop) if flip else crop), mean, std)
        ours = data.normalize(
            data.crop_flip(image, torch.tensor([dy]), torch.tensor([dx]), torch.tensor([flip])), mean, std)
        torch.testing.assert_close(ours[0], reference, rtol=0, atol=1e-5)


def test_bad_argument_is_a_one_line_error(bench, capsys):
    assert bench.main(TINY + ["--runs", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "train_throughput: error: --runs: got 0, allowed: an integer >= 1"


def test_whole_epochs_with_full_evaluation_and_with_the_cadence_are_compared(bench, capsys):
    args = TINY[:-2] + ["--runs", "1", "--num-workers", "0", "--cadence-epochs", "3", "--eval-every", "2",
                        "--eval-train-subset", "16"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "whole epochs (training + evaluation), mean of epochs 2 to 3:" in out
    full = re.search(r"^full evaluation every epoch:\s+([\d.]+) s per epoch\s+\(\s*([\d.]+) images/s", out, re.M)
    cheap = re.search(r"^eval_every 2, train subset 16:\s+([\d.]+) s per epoch\s+\(\s*([\d.]+) images/s", out, re.M)
    ratio = re.search(r"^ratio full/cadence: ([\d.]+)x$", out, re.M)
    assert full and cheap and ratio, out
    # The throughput is the training set over the whole epoch, and the ratio the quotient of the
    # epoch times; both up to the printed rounding (seconds to 0.1 ms, the ratio to 0.01).
    full_s, cheap_s = float(full[1]), float(cheap[1])
    slack = 0.0001 / min(full_s, cheap_s)
    for match in (full, cheap):
        assert float(match[2]) == pytest.approx(64 / float(match[1]), rel=slack + 0.001)
    assert float(ratio[1]) == pytest.approx(full_s / cheap_s, rel=2 * slack, abs=0.006)


def test_whole_epoch_seconds_include_the_evaluation(bench):
    settings = bench.Settings(width=4, depth=1, train_size=64, batch_size=16, cadence_epochs=2, eval_every=2,
                              eval_train_subset=16)
    result = bench.run_cadence(settings)
    assert result.epochs == 2 and result.images == 64
    assert result.full_seconds > 0 and result.cadence_seconds > 0


def test_a_bad_cadence_is_a_one_line_error(bench, capsys):
    assert bench.main(TINY[:-2] + ["--eval-every", "0"]) == 2
    assert capsys.readouterr().err.strip() == "train_throughput: error: --eval-every: got 0, allowed: an integer >= 1"

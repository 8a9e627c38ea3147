"""bench/cpu_passes.py on a tiny model: the table, and that it times genzoo's own computations."""

import re

import pytest
import torch

from measures.hessian import hvp_operator, mean_loss_function
from measure_toys import trained_toy_context

SCRIPT = "cpu_passes"
TINY = ["--width", "4", "--depth", "1", "--train-size", "96", "--epochs", "1", "--rounds", "2"]
ROW = re.compile(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", re.M)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_main_prints_a_row_per_pass_size_with_ratios_to_the_first(bench, capsys):
    assert bench.main(TINY + ["--pass-sizes", "64,16"]) == 0
    rows = ROW.findall(capsys.readouterr().out)
    assert [row[0] for row in rows] == ["64", "16"]
    first, second = rows
    assert first[2] == first[4] == "1.00"
    assert float(second[2]) == pytest.approx(float(second[1]) / float(first[1]), rel=0.05, abs=0.01)
    assert float(second[4]) == pytest.approx(float(second[3]) / float(first[3]), rel=0.05, abs=0.01)


@pytest.mark.parametrize("size", [256, 7])
def test_the_timed_evaluation_and_product_are_genzoos_loss_and_hessian_vector_product(bench, size):
    ctx = trained_toy_context("cpu-passes", test_size=8)
    x, y = ctx.train_x, ctx.train_y
    loss_at, space = mean_loss_function(ctx.model, x, y, batch_size=size)
    assert bench.evaluation(ctx.model, x, y, size)() == pytest.approx(loss_at(torch.zeros(space.dim)), rel=1e-6)
    matvec, dim = hvp_operator(ctx.model, x, y, batch_size=size, mode="reverse_over_reverse", cache=True)
    v = torch.randn(dim, generator=torch.Generator().manual_seed(0))  # the script's fixed vector
    torch.testing.assert_close(bench.product(ctx.model, x, y, size)().float(), matvec(v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--pass-sizes", "64,x"], "--pass-sizes: got '64,x'"),
    (["--pass-sizes", "0"], "--pass-sizes: got '0'"),
    (["--rounds", "0"], "--rounds: got 0"),
    (["--width", "0"], "--width: got 0"),
])
def test_bad_arguments_are_one_line_errors_before_anything_trains(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "training" not in err

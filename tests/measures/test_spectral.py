"""The spectral family (measures/spectral.py): its pure pieces against brute force, and the
whole against the ``weightwatcher`` package (live when installed, else numbers pinned from
weightwatcher 0.7.7 with powerlaw 2.0.0, numpy 2.4.6, scipy 1.17.1)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from measures import registry, spectral
from measures.context import TrialContext
from measures.specs import SPECTRAL_QUANTITIES
from trainers import models

PER_LAYER = ("alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm", "stable_rank")


# ---------------------------------------------------------------------------------------------
# Reference models


def spiked_linear(n_in: int, n_out: int, strengths, seed: int) -> nn.Linear:
    """A linear layer whose weight is a Gaussian bulk plus rank-one spikes of the given
    singular values (so that the Marchenko–Pastur fit has spikes to find)."""
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(n_in, n_out)
    w = torch.randn(n_out, n_in, generator=generator) / math.sqrt(n_in)
    for strength in strengths:
        u = torch.randn(n_out, 1, generator=generator)
        v = torch.randn(1, n_in, generator=generator)
        w += strength * (u / u.norm()) @ (v / v.norm())
    with torch.no_grad():
        layer.weight.copy_(w)
    return layer


def heavy_tailed(shape, df: float, seed: int, scale: float = 1.0) -> torch.Tensor:
    """Student-t entries with ``df`` degrees of freedom (heavy tails, α in the range of trained nets)."""
    return torch.from_numpy(np.random.default_rng(seed).standard_t(df, shape) * scale).float()


def reference_models():
    """The models of the comparison: a linear net (one layer with three planted spikes), a conv
    net (3×3, 3×3 and a 2×2 conv with c_out < c_in, then a linear head), genzoo's NiN, and
    layers with heavy-tailed (Student-t, 2.5 degrees of freedom) weights, where α is small and
    the MP fit finds spikes (their weights only: not a network one can run)."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), spiked_linear(128, 96, (6.0, 5.0, 4.0), seed=7), nn.ReLU(),
                           nn.Linear(96, 10))
    torch.manual_seed(1)
    conv = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.Conv2d(64, 48, 2),
                         nn.Flatten(), nn.Linear(48, 10))
    torch.manual_seed(2)
    nin = models.build("nin", 10, width=32, depth=2)
    heavy = nn.Sequential(nn.Linear(300, 200), nn.Linear(200, 100), nn.Conv2d(16, 24, 3))
    with torch.no_grad():
        heavy[0].weight.copy_(heavy_tailed((200, 300), 2.5, seed=0, scale=300 ** -0.5))
        heavy[1].weight.copy_(heavy_tailed((100, 200), 2.5, seed=1, scale=200 ** -0.5))
        heavy[2].weight.copy_(heavy_tailed((24, 16, 3, 3), 2.5, seed=5))
    return {"linear": linear, "conv": conv, "nin": nin, "heavy_tailed": heavy}


def ours(model: nn.Module) -> spectral.SpectralResult:
    return spectral.analyze(spectral.weight_parameters(model))


def ww_swaps_n_and_m(weight: torch.Tensor) -> bool:
    """Whether weightwatcher 0.7.7's ``conv2D_Wmats`` ends with N and M swapped: it swaps
    them once per kernel position when c_out < c_in, so an even number of positions swaps
    them back to N = c_out < M = c_in (its MP fit then uses Q < 1)."""
    return weight.dim() == 4 and weight.shape[0] < weight.shape[1] and (weight.shape[2] * weight.shape[3]) % 2 == 0


# Per-layer (alpha, alpha_weighted, num_spikes) of weightwatcher 0.7.7's
# WeightWatcher(model).analyze(mp_fit=True) on reference_models() (torch 2.14.1, CPU).
PINNED = {
    "linear": [
        (4.973733999396067, 1.2872965789763156, 0),  # 0 N=128 M=64 rf=1
        (2.4218219876592464, 3.924780264642594, 3),  # 2 N=128 M=96 rf=1
        (3.6739454111549623, -1.091634974922681, 0),  # 4 N=96 M=10 rf=1
    ],
    "conv": [
        (17.926082608883753, -8.848797368518115, 0),  # 0 N=32 M=3 rf=9
        (11.429973398776893, -10.699060543174687, 0),  # 2 N=64 M=32 rf=9
        (8.719445226335548, -7.439760512016316, 1),  # 4 N=48 M=64 rf=4
        (2.200163592087482, -0.5417245933673247, 0),  # 6 N=48 M=10 rf=1
    ],
    "nin": [
        (4.032162782499393, -2.1487741909094082, 0),  # conv1 N=32 M=3 rf=9
        (1.9929147024298408, -0.4129017822543097, 0),  # conv2 N=32 M=32 rf=1
        (2.7000541765572814, -0.7094332533151266, 0),  # conv3 N=32 M=32 rf=1
        (12.233286912656895, -13.860888207049808, 0),  # conv1 N=32 M=32 rf=9
        (2.9920305597122017, -0.7946463321703119, 0),  # conv2 N=32 M=32 rf=1
        (3.5692872233601243, -0.5808621496783368, 0),  # conv3 N=32 M=32 rf=1
        (4.294535751189074, -7.0134641013445895, 0),  # head N=10 M=32 rf=16
    ],
    "heavy_tailed": [
        (6.035016405804267, 8.357184611338058, 2),  # 0 N=300 M=200 rf=1
        (3.479359624561319, 6.090541783961351, 5),  # 1 N=200 M=100 rf=1
        (2.217472414537067, 6.686561597154101, 9),  # 2 N=24 M=16 rf=9
    ],
}


# ---------------------------------------------------------------------------------------------
# Pure pieces against brute force


def power_law_sample(n: int, alpha: float, xmin: float, seed: int) -> np.ndarray:
    """n draws of the continuous power law p(x) ∝ x^−α on [xmin, ∞) by inverting its CDF."""
    u = np.random.default_rng(seed).random(n)
    return xmin * (1 - u) ** (-1 / (alpha - 1))


def test_mle_alpha_is_the_maximum_of_the_power_law_likelihood():
    from scipy import optimize

    tail = power_law_sample(400, 2.5, 0.3, seed=0)
    xmin = tail.min()

    def negative_log_likelihood(a):
        return -np.sum(np.log((a - 1) / xmin) - a * np.log(tail / xmin))

    best = optimize.minimize_scalar(negative_log_likelihood, bounds=(1.01, 10), method="bounded",
                                    options={"xatol": 1e-10})
    assert spectral.mle_alpha(tail) == pytest.approx(best.x, abs=1e-6)
    assert spectral.mle_alpha(tail) == pytest.approx(2.5, abs=0.2)  # the exponent drawn
    n = len(tail)
    assert spectral.mle_alpha(tail, bias_corrected=True) - 1 == pytest.approx((spectral.mle_alpha(tail) - 1) * (n - 1) / n)


def brute_force_fit(data, small: bool):
    """WeightWatcher's fit written as the definition: every candidate x_min, its tail's MLE
    exponent and KS distance by explicit loops, the best by the scan."""
    data = sorted(float(x) for x in data if x > 1e-5)
    n = len(data)
    best = None
    for i in range(n - 1):
        tail = data[i:]
        size = len(tail)
        logs = sum(math.log(x / tail[0]) for x in tail)
        if small and (size < 8 or logs <= 1e-12):
            continue
        alpha = 1 + (size - 1 if small else size) / logs
        if alpha <= 1:
            continue
        distance = max(abs(1 - (x / tail[0]) ** (1 - alpha) - k / size) for k, x in enumerate(tail))
        score = distance - 0.868 / math.sqrt(size) if small else distance
        if best is None or score < best[0]:
            best = (score, tail[0], alpha, distance, size)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fit_takes_the_xmin_of_least_ks_distance_found_by_an_exhaustive_scan(seed):
    rng = np.random.default_rng(seed)
    # A Marchenko-Pastur-like bulk and a heavy tail above it.
    data = np.concatenate([rng.gamma(4.0, 0.05, 150), power_law_sample(60, 3.0, 0.4, seed)])
    fit = spectral.fit_power_law(data)
    _, xmin, alpha, distance, size = brute_force_fit(data, small=False)
    assert fit.method == "standard"
    assert fit.xmin == xmin and fit.tail == size
    assert fit.alpha == pytest.approx(alpha, rel=1e-12) and fit.D == pytest.approx(distance, rel=1e-12)
    assert fit.sigma == pytest.approx((alpha - 1) / math.sqrt(size))
    assert spectral.ks_distance(data[data >= xmin], alpha) == pytest.approx(distance, rel=1e-12)


def test_fewer_than_20_eigenvalues_take_the_small_sample_fit():
    data = np.concatenate([power_law_sample(12, 2.5, 1.0, seed=3), [1e-7, 0.0]])  # two below 1e-5: left out
    fit = spectral.fit_power_law(data)
    _, xmin, alpha, distance, size = brute_force_fit(data, small=True)
    assert fit.method == "small_n" and fit.xmin == xmin and fit.tail == size
    assert fit.alpha == pytest.approx(alpha, rel=1e-12) and fit.D == pytest.approx(distance, rel=1e-12)
    assert spectral.fit_power_law(np.array([0.5, 0.0, 1e-9])) is None  # one eigenvalue: no fit


def orthogonal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def with_singular_values(n: int, m: int, values, seed: int) -> torch.Tensor:
    """An n×m matrix (n >= m) with the given singular values."""
    return orthogonal(n, seed)[:, :m] @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ orthogonal(m, seed + 1)


def test_norm_quantities_of_a_matrix_with_known_singular_values():
    s = [3.0, 2.0, 1.0, 0.5, 0.5, 0.25, 0.1, 0.1]
    layer = spectral.layer_matrices("fc", with_singular_values(12, 8, s, seed=0).T)  # (out 8, in 12)
    assert (layer.n, layer.m, layer.rf, layer.kind) == (12, 8, 1, "dense")
    evals = spectral.eigenvalues(layer)
    np.testing.assert_allclose(evals, sorted(x * x for x in s), rtol=1e-12)
    fit = spectral.PowerLawFit(alpha=2.5, xmin=0.25, D=0.1, sigma=0.1, tail=4, method="standard")
    metrics = spectral.layer_metrics(evals, fit)
    assert metrics["stable_rank"] == pytest.approx(sum(x * x for x in s) / 9.0)
    assert metrics["log_spectral_norm"] == pytest.approx(math.log10(9.0))
    assert metrics["log_norm"] == pytest.approx(math.log10(sum(x * x for x in s)))
    assert metrics["alpha_weighted"] == pytest.approx(2.5 * math.log10(9.0))
    assert metrics["log_alpha_norm"] == pytest.approx(math.log10(sum(x ** 5 for x in s)))  # Σ (σ²)^2.5
    assert math.isnan(spectral.layer_metrics(evals, None)["alpha_weighted"])


def test_a_conv_kernel_is_its_kernel_positions_slices_halved_by_conv2d_norm():
    values = [[4.0, 2.0, 1.0], [3.0, 1.0, 0.5], [2.0, 2.0, 2.0], [1.0, 0.5, 0.25]]
    slices = [with_singular_values(5, 3, v, seed=10 + i) for i, v in enumerate(values)]  # (c_out 5, c_in 3)
    kernel = torch.stack(slices, dim=-1).reshape(5, 3, 2, 2)  # position (i, j) = slices[2i + j]
    layer = spectral.layer_matrices("conv", kernel)
    assert (layer.n, layer.m, layer.rf, layer.num_evals) == (5, 3, 4, 12)
    np.testing.assert_allclose(layer.matrices[1], slices[1].numpy())
    squares = sorted(x * x for v in values for x in v)
    np.testing.assert_allclose(spectral.eigenvalues(layer, conv2d_norm=False), squares, rtol=1e-12)
    np.testing.assert_allclose(spectral.eigenvalues(layer), [x / 2 for x in squares], rtol=1e-12)
    # c_in > c_out: each slice transposed to N >= M.
    wide = spectral.layer_matrices("wide", kernel.transpose(0, 1))
    assert (wide.n, wide.m, wide.rf) == (5, 3, 4)
    # c_out + c_in < k_h + k_w: weightwatcher reads channels first, one k_h × k_w matrix per channel pair.
    small = spectral.layer_matrices("small", torch.randn(1, 2, 5, 4))
    assert (small.n, small.m, small.rf) == (5, 4, 2)


def test_linear_kernel_density_is_scikit_learns():
    from sklearn.neighbors import KernelDensity

    samples = np.random.default_rng(0).gamma(2.0, 0.5, 300)
    grid = np.linspace(0, samples.max() + 0.5, 1000)
    expected = np.exp(KernelDensity(kernel="linear", bandwidth=0.1).fit(samples[:, None]).score_samples(grid[:, None]))
    np.testing.assert_allclose(spectral.linear_kde(samples, grid, 0.1), expected, rtol=1e-9, atol=1e-12)


def test_the_marchenko_pastur_fit_counts_planted_spikes():
    layer = spiked_linear(400, 200, (8.0, 6.0, 5.0, 4.0), seed=3)
    evals = spectral.eigenvalues(spectral.layer_matrices("fc", layer.weight))
    fit = spectral.mp_fit(evals, 400, 200)
    assert fit.num_spikes == 4
    assert 1 / evals[-1] * fit.bulk_max == pytest.approx(fit.softrank, rel=1e-9)
    pure = spectral.mp_fit(spectral.eigenvalues(spectral.layer_matrices("fc", spiked_linear(400, 200, (), 3).weight)),
                           400, 200)
    assert pure.num_spikes == 0


# ---------------------------------------------------------------------------------------------
# The family


def context(model: nn.Module) -> TrialContext:
    empty = torch.zeros(0)
    return TrialContext(trial_id="t", model=model.eval(), train_x=empty, train_y=empty, test_x=empty, test_y=empty,
                        build_model=lambda: model)


def test_the_family_yields_the_means_over_layers_and_the_long_table(tmp_path):
    from sweep.store import LONG_TABLE_SCHEMAS, Store

    model = reference_models()["nin"]
    output = registry.get("spectral").fn(context(model), **registry.settings_for("spectral"))
    assert list(output.values) == [f"spectral/{q}" for q in SPECTRAL_QUANTITIES] == list(registry.get("spectral").measures)
    table = pd.DataFrame(output.tables["spectral_layers"])
    assert list(table["layer"]) == ["blocks.0.conv1", "blocks.0.conv2", "blocks.0.conv3", "blocks.1.conv1",
                                    "blocks.1.conv2", "blocks.1.conv3", "head"]
    for quantity in SPECTRAL_QUANTITIES:
        assert output.values[f"spectral/{quantity}"] == pytest.approx(table[quantity].mean(), rel=1e-12)
    assert output.info["skipped"] == {} and output.info["failed_mp_fits"] == {}
    frame = table.copy()
    frame.insert(0, "model_id", "final")
    frame.insert(0, "trial_id", "t")
    Store(str(tmp_path), "x").write_table(frame, "spectral_layers", "t.parquet", schema=LONG_TABLE_SCHEMAS["spectral_layers"])
    assert len(pd.read_parquet(tmp_path / "x" / "spectral_layers" / "t.parquet")) == 7

    quiet = spectral.spectral(context(model), num_spikes=False)
    assert set(quiet.values) == {f"spectral/{q}" for q in SPECTRAL_QUANTITIES} - {"spectral/num_spikes", "spectral/mp_softrank"}
    assert quiet.values["spectral/alpha"] == output.values["spectral/alpha"]


def test_layers_outside_min_and_max_evals_are_skipped_and_none_left_is_an_error():
    model = nn.Sequential(nn.Linear(20, 6), nn.ReLU(), nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 10))
    output = spectral.spectral(context(model))  # the first two have 6 eigenvalues < 8
    assert output.tables["spectral_layers"]["layer"] == ["4"]
    assert set(output.info["skipped"]) == {"0", "2"} and "6 eigenvalues" in output.info["skipped"]["0"]
    assert output.info["small_n_fits"] == ["4"]  # 10 eigenvalues < 20
    assert len(spectral.spectral(context(model), min_evals=4).tables["spectral_layers"]["layer"]) == 3
    with pytest.raises(spectral.SpectralError, match="no layer has between min_evals=11 and max_evals=11"):
        spectral.spectral(context(model), min_evals=11, max_evals=11)


def test_spec_defaults_signature_and_stored_settings():
    import inspect

    spec = registry.get("spectral")
    assert json.dumps(registry.settings_for("spectral")) == (
        '{"min_evals": 8, "max_evals": 15000, "max_n": 50000, "conv2d_norm": true, "num_spikes": true}')
    parameters = inspect.signature(spectral.spectral).parameters
    assert {k: parameters[k].default for k in spec.defaults} == spec.defaults
    with pytest.raises(Exception, match="measures.spectral.max_evals"):
        registry.settings_for("spectral", {"min_evals": 20, "max_evals": 10})


def test_a_nin_of_width_192_takes_well_under_a_second_on_the_cpu():
    torch.manual_seed(0)
    model = models.build("nin", 10, width=192, depth=3)
    spectral.spectral(context(model))  # warm-up
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        spectral.spectral(context(model))
        seconds.append(time.perf_counter() - started)
    print(f"\nspectral on NiN width 192 depth 3 (10 layers, 1728 eigenvalues at most): "
          f"{min(seconds):.3f} s (best of 3; {', '.join(f'{s:.3f}' for s in seconds)})")
    assert min(seconds) < 3.0  # ~0.15 s on an idle core; generous for loaded shared machines


# ---------------------------------------------------------------------------------------------
# Against weightwatcher


def agreement_table(name: str, model: nn.Module, theirs: pd.DataFrame, result: spectral.SpectralResult) -> str:
    """One line per layer: N, M, rf, α and α̂ (weightwatcher / genzoo), the largest relative
    difference over the per-layer quantities, and num_spikes of each."""
    lines = [f"{name}: layer | N M rf | alpha ww / genzoo | alpha_weighted ww / genzoo | max rel diff "
             f"({', '.join(PER_LAYER)}) | num_spikes ww / genzoo"]
    for (_, row), mine in zip(theirs.iterrows(), result.rows):
        worst = max(abs(row[q] - mine[q]) / max(abs(row[q]), 1e-300) for q in PER_LAYER)
        lines.append(f"  {mine['layer']:22s} | {row['N']} {row['M']} {row['rf']} | {row['alpha']:.10g} / {mine['alpha']:.10g} | "
                     f"{row['alpha_weighted']:.10g} / {mine['alpha_weighted']:.10g} | {worst:.1e} | "
                     f"{int(row['num_spikes'])} / {int(mine['num_spikes'])}")
    return "\n".join(lines)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_weightwatcher_on_four_models_per_layer_and_summary(capsys):
    ww = pytest.importorskip("weightwatcher", reason="weightwatcher is not installed (pip install weightwatcher); "
                                                     "test_pinned_weightwatcher_numbers checks the same without it")
    import logging

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    tables = []
    for name, model in reference_models().items():
        watcher = ww.WeightWatcher(model=model)
        theirs = watcher.analyze(mp_fit=True)
        result = ours(model)
        weights = dict(spectral.weight_parameters(model))
        assert len(theirs) == len(result.rows) == len(weights)
        for (_, row), mine, weight in zip(theirs.iterrows(), result.rows, weights.values()):
            for quantity in PER_LAYER + ("xmin", "D"):
                key = "ks_distance" if quantity == "D" else quantity
                assert mine[key] == pytest.approx(row[quantity], rel=1e-9, abs=1e-12), (name, mine["layer"], quantity)
            assert mine["num_pl_spikes"] == row["num_pl_spikes"]
            if ww_swaps_n_and_m(weight):  # module docstring: weightwatcher's MP fit uses N < M here
                assert (row["N"], row["M"]) == (weight.shape[0], weight.shape[1])
            else:
                assert (mine["n"], mine["m"], mine["rf"]) == (row["N"], row["M"], row["rf"])
                assert mine["num_spikes"] == row["num_spikes"], (name, mine["layer"])
                assert mine["mp_softrank"] == pytest.approx(row["mp_softrank"], rel=1e-6), (name, mine["layer"])
        summary = watcher.get_summary(theirs)
        for quantity in ("alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm", "stable_rank"):
            assert result.values[quantity] == pytest.approx(summary[quantity], rel=1e-9), (name, quantity)
        tables.append(agreement_table(name, model, theirs, result))
    with capsys.disabled():
        print(f"\nspectral against weightwatcher {ww.__version__} (analyze(mp_fit=True)):\n" + "\n".join(tables))


def test_pinned_weightwatcher_numbers():
    """weightwatcher 0.7.7's per-layer α, α̂ and num_spikes (PINNED), without the package."""
    for name, model in reference_models().items():
        result = ours(model)
        weights = [w for _, w in spectral.weight_parameters(model)]
        assert len(result.rows) == len(PINNED[name])
        for (alpha, alpha_weighted, spikes), mine, weight in zip(PINNED[name], result.rows, weights):
            assert mine["alpha"] == pytest.approx(alpha, rel=1e-9), (name, mine["layer"])
            assert mine["alpha_weighted"] == pytest.approx(alpha_weighted, rel=1e-9), (name, mine["layer"])
            if not ww_swaps_n_and_m(weight):
                assert mine["num_spikes"] == spikes, (name, mine["layer"])
    assert [row["num_spikes"] for row in ours(reference_models()["linear"]).rows] == [0, 3, 0]


def test_the_measures_job_computes_and_commits_the_family_for_a_trained_model(tmp_path):
    """A NiN trained for an epoch on the offline digits, measured and committed as the
    measures job does (no Ray): every measure ok and finite, the long table read back."""
    from sweep import measure_job, trial
    from sweep.store import Store
    from trainers.config import TrainConfig

    config = TrainConfig(dataset="digits", model="nin", width=8, depth=2, train_size=64, batch_size=32, epochs=1,
                         lr=0.05)
    store = Store(str(tmp_path), "zoo")
    trial.train_trial(config, store, device="cpu")
    results = measure_job.compute_model(str(tmp_path), "zoo", config.to_dict(), "final",
                                        {"spectral": registry.settings_for("spectral")})
    ((family, rows, tables),) = results
    assert family == "spectral" and [row["status"] for row in rows] == ["ok"] * len(SPECTRAL_QUANTITIES)
    assert [row["measure"] for row in rows] == list(registry.get("spectral").measures)
    assert all(math.isfinite(row["value"]) for row in rows)
    measure_job.commit(store, {}, config.trial_id, "final", results)
    table = pd.read_parquet(tmp_path / "zoo" / "spectral_layers")
    assert set(table["trial_id"]) == {config.trial_id} and set(table["model_id"]) == {"final"}
    assert list(table["layer"]) == ["blocks.0.conv1", "blocks.0.conv2", "blocks.0.conv3", "blocks.1.conv1",
                                    "blocks.1.conv2", "blocks.1.conv3", "head"]
    stored = pd.read_parquet(tmp_path / "zoo" / "measures")
    assert stored.set_index("measure")["value"]["spectral/alpha"] == pytest.approx(table["alpha"].mean())


@pytest.mark.filterwarnings("ignore")
def test_where_alpha_is_at_most_3_the_fit_is_the_powerlaw_packages():
    """The ``powerlaw`` package (2.0 bounds α to [0, 3], see the module docstring) finds the
    same x_min and α for every layer of the reference models whose fit has α <= 3."""
    import contextlib
    import io

    powerlaw = pytest.importorskip("powerlaw", reason="the powerlaw package is not installed (weightwatcher needs it)")
    compared = 0
    for model in reference_models().values():
        for name, weight in spectral.weight_parameters(model):
            evals = spectral.eigenvalues(spectral.layer_matrices(name, weight))
            fit = spectral.fit_power_law(evals)
            if fit.method != "standard" or fit.alpha > 3:
                continue
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                theirs = powerlaw.Fit(evals[evals > spectral.EVALS_THRESH], xmin=None, xmax=None, verbose=False)
            assert theirs.xmin == pytest.approx(fit.xmin, rel=1e-12), name
            assert theirs.alpha == pytest.approx(fit.alpha, rel=1e-9), name
            compared += 1
    assert compared >= 4

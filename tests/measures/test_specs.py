"""The measure specs: the settings every row stores (pinned, so that no redesign makes every
stored zoo look stale), one place for the defaults, and the registry's API."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from measures import registry
from measures.spec import MeasureError, MeasureSettings, MeasureSpec, integer, number

# The JSON text of every built-in family's default settings, as the measures job stores it
# beside each row (sweep.measure_job recomputes a row whose stored settings differ).
STORED_DEFAULTS = {
    "prunability": '{"beta": 0.1, "search": "scan", "resolution": 0.005, "coarse_step": 0.05, "step_size": 0.02, '
                   '"batch_size": 1024, "recalibrate_bn": false}',
    "random_prunability": '{"beta": 0.1, "search": "scan", "resolution": 0.005, "coarse_step": 0.05, '
                          '"step_size": 0.02, "batch_size": 1024, "recalibrate_bn": false}',
    "pruning_vs_perturbation": '{"fractions": [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], '
                               '"batch_size": 1024, "recalibrate_bn": false}',
    "pac_bayes": '{"beta": 0.1, "draws": 10, "steps": 15, "sigma_max": 2.0, "epsilon": 0.001, "subset_size": 10000, '
                 '"parameters": "all", "batch_size": 1024, "recalibrate_bn": false}',
    "norms": '{"parameter_count_of": "all", "fold_batchnorm": true}',
    "training": '{"recalibrate_bn": false, "batch_size": 1024}',
    "margins": '{"num_examples": 5000, "batch_size": 256, "epsilon": 1e-06, "epsilon_placement": "add", '
               '"lower_fence_floor": "min"}',
    "output_margin_stats": '{"num_examples": 5000, "batch_size": 1024, "normalize": true, "lower_fence_floor": "min"}',
    "flatness": '{"subset": 5000, "split": "train", "top_k": 100, "method": "lanczos", "lanczos_steps": null, '
                '"power_max_iter": 100, "power_tol": 0.001, "trace_method": "deflated", "hutchinson_samples": 10, '
                '"eps_step": 0.01, "eps_loss_increase": 0.1, "eps_max": 10.0, "eps_search": "bisect", '
                '"eps_directions": null, "eps_split": "hessian", "eps_subset": null, "eps_report": "last_passing", '
                '"batch_size": 1000, "per_example_batch_size": 256, "z": 1.0, "params": "all", '
                '"recalibrate_bn": false, "hvp_mode": "reverse_over_reverse", "hvp_cache": true, '
                '"tic_trace": "hutchinson"}',
    "el2n": '{"batch_size": 1024}',
}


def test_the_stored_settings_text_of_every_family_is_unchanged():
    assert registry.names()[:len(STORED_DEFAULTS)] == list(STORED_DEFAULTS)
    for name, stored in STORED_DEFAULTS.items():
        assert json.dumps(registry.settings_for(name)) == stored, name
        assert json.dumps(registry.settings_for(name, {})) == stored, name


def test_resolved_values_keep_their_types():
    settings = registry.settings_for("pruning_vs_perturbation")
    assert type(settings["fractions"]) is list and type(settings["batch_size"]) is int
    assert registry.settings_for("flatness", {"z": 2})["z"] == 2.0
    assert type(registry.settings_for("flatness", {"z": 2})["z"]) is float
    assert registry.settings_for("pruning_vs_perturbation", {"fractions": (0.5,)})["fractions"] == (0.5,)


@pytest.mark.parametrize("name", list(STORED_DEFAULTS))
def test_every_function_signature_repeats_its_spec_defaults(name):
    """The defaults live in the spec; a measure function's keyword defaults (for callers
    outside the job) must say the same."""
    spec = registry.get(name)
    parameters = list(inspect.signature(spec.fn).parameters.values())[1:]  # after ctx
    signature = {p.name: list(p.default) if isinstance(p.default, tuple) else p.default for p in parameters}
    assert signature == spec.defaults


@pytest.mark.parametrize("override, message", [
    ({"subset": "many"}, "measures.flatness.subset: got 'many', allowed: an integer"),
    ({"z": 0}, "measures.flatness.z: got 0.0, allowed: a number > 0"),
    ({"eps_max": 0.001}, "measures.flatness.eps_max: got 0.001, allowed: a number >= eps_step (0.01)"),
    ({"lanczos_steps": 0}, "measures.flatness.lanczos_steps: got 0, allowed: an integer >= 1 or null"),
    ({"method": "arnoldi"}, "measures.flatness.method: got 'arnoldi', allowed: lanczos, power"),
    ({"colour": 1}, "measures.flatness.colour: unknown setting, allowed: subset, split, "),
])
def test_bad_settings_are_one_line_naming_the_setting(override, message):
    with pytest.raises(MeasureError) as error:
        registry.settings_for("flatness", override)
    assert str(error.value).startswith(message)


def test_the_specs_import_no_torch_and_no_measure():
    code = ("import sys, measures.registry; bad = sorted(m for m in sys.modules if m == 'torch' or "
            "m.startswith('measures.') and m not in ('measures.registry', 'measures.spec', 'measures.specs', "
            "'measures.constants')); print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@dataclass(frozen=True)
class _Settings(MeasureSettings):
    size: int = integer(3)
    scale: float = number(1.0)


def test_register_is_idempotent_for_an_equal_spec_and_refuses_a_different_one(monkeypatch):
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    spec = MeasureSpec("toy_spec", "math:sqrt", ("toy",), _Settings)
    registry.register(spec)
    registry.register(MeasureSpec("toy_spec", "math:sqrt", ("toy",), _Settings))
    assert registry.get("toy_spec") is spec and "toy_spec" in registry.names()
    with pytest.raises(MeasureError, match=r"^measures.toy_spec: already registered as math:sqrt"):
        registry.register(MeasureSpec("toy_spec", "math:exp", ("toy",), _Settings))


def test_a_spec_is_checked_when_made():
    with pytest.raises(MeasureError, match="function 'nocolon'"):
        MeasureSpec("bad", "nocolon", ("x",), _Settings)
    with pytest.raises(MeasureError, match="needs 'final'"):
        MeasureSpec("bad", "m:f", ("x",), _Settings, needs=("final",))

    @dataclass(frozen=True)
    class Untyped(MeasureSettings):
        size: int = 3

    with pytest.raises(MeasureError, match=r"measures.bad.size: no kind"):
        MeasureSpec("bad", "m:f", ("x",), Untyped)


def test_help_lists_every_family_with_its_settings_and_defaults():
    text = registry.help_text()
    for name in registry.names():
        assert f"\n{name}" in f"\n{text}"
    assert "    subset = 5000  [integer >= 1]" in text
    assert "    method = lanczos  [lanczos | power]" in text
    assert "    fractions = [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0]  [list of numbers in [0, 1]]" in text


def test_the_docs_table_is_generated_from_the_specs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "measures.md").read_text()
    generated = text.split("<!-- table: generated -->\n", 1)[1].split("\n<!-- end table -->", 1)[0]
    assert generated == registry.markdown_table(), "regenerate docs/measures.md with measures.registry.markdown_table()"


def test_genzoo_measure_help_lists_the_families_from_the_specs(capsys):
    from sweep.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["measure", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert registry.help_text() in out
    assert "flatness: hessian_top_eigenvalue" in out and "    eps_split = hessian  [hessian | train | test]" in out

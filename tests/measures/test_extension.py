"""A measure family added in one file: a temporary module defines the function and its
settings, registers its spec, and nothing else in the project changes. The family is then
validated, computed on a tiny trained model and its rows shaped as the measures job stores
them."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from measure_toys import trained_toy_context
from measures import registry
from measures.spec import MeasureError

MODULE = "toy_measure_extension"
FAMILY = "toy_weight_norm"

SOURCE = textwrap.dedent('''
    """A toy measure family: the scaled p-norm of every weight, and a per-layer long table."""
    from dataclasses import dataclass

    import torch

    from measures.context import MeasureOutput
    from measures.registry import register
    from measures.spec import MeasureSettings, MeasureSpec, POSITIVE, choice, number


    @dataclass(frozen=True)
    class ToySettings(MeasureSettings):
        scale: float = number(1.0, POSITIVE)
        norm: str = choice("l2", ("l1", "l2"))


    def toy_weight_norm(ctx, *, scale=1.0, norm="l2"):
        """scale · (Σ |w|^p)^(1/p) over every parameter, p = 1 or 2."""
        p = 1 if norm == "l1" else 2
        per_layer = {name: float(torch.linalg.vector_norm(w.detach(), ord=p)) for name, w in ctx.model.named_parameters()}
        total = float(torch.linalg.vector_norm(torch.tensor(list(per_layer.values())), ord=p))
        return MeasureOutput(values={"toy_norm": scale * total},
                             tables={"toy_layers": {"layer": list(per_layer), "norm": list(per_layer.values())}},
                             info={"layers": len(per_layer)})


    register(MeasureSpec("toy_weight_norm", "toy_measure_extension:toy_weight_norm", ("toy_norm",), ToySettings,
                         tables=("toy_layers",)))
''')


@pytest.fixture
def extension(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(MODULE)
    yield module
    registry._SPECS.pop(FAMILY, None)
    sys.modules.pop(MODULE, None)


def test_the_family_is_registered_with_its_defaults(extension):
    assert FAMILY in registry.names()
    spec = registry.get(FAMILY)
    assert spec.fn is extension.toy_weight_norm
    assert registry.settings_for(FAMILY) == {"scale": 1.0, "norm": "l2"}
    assert "toy_weight_norm: toy_norm\n    scale = 1  [number > 0]\n    norm = l2  [l1 | l2]" in registry.help_text()
    importlib.reload(extension)  # registering the same spec again is a no-op
    assert registry.get(FAMILY).settings.__name__ == "ToySettings"


@pytest.mark.parametrize("override, message", [
    ({"scale": 0}, "measures.toy_weight_norm.scale: got 0.0, allowed: a number > 0"),
    ({"norm": "linf"}, "measures.toy_weight_norm.norm: got 'linf', allowed: l1, l2"),
    ({"colour": 1}, "measures.toy_weight_norm.colour: unknown setting, allowed: scale, norm"),
])
def test_a_bad_setting_is_one_line_naming_it(extension, override, message):
    with pytest.raises(MeasureError) as error:
        registry.settings_for(FAMILY, override)
    assert str(error.value) == message


def test_computed_on_a_trained_model_into_rows_as_the_job_stores_them(extension):
    from sweep import measure_job
    from sweep.store import MEASURE_SCHEMA

    ctx = trained_toy_context("trial-toy", test_size=16)
    settings = registry.settings_for(FAMILY, {"scale": 2, "norm": "l1"})
    rows, tables = measure_job._compute_family(ctx, "trial-toy", "final", FAMILY, settings)
    assert [row["measure"] for row in rows] == ["toy_norm"]
    row = rows[0]
    assert set(row) == set(MEASURE_SCHEMA.names)
    assert (row["trial_id"], row["model_id"], row["family"], row["status"], row["error"]) == \
        ("trial-toy", "final", FAMILY, "ok", None)
    direct = extension.toy_weight_norm(ctx, scale=1.0, norm="l1").values["toy_norm"]
    assert row["value"] == pytest.approx(2 * direct) and direct > 0
    assert json.loads(row["settings"]) == {"settings": {"scale": 2.0, "norm": "l1"}, "info": {"layers": 8}}
    assert list(tables) == ["toy_layers"] and len(tables["toy_layers"]["layer"]) == 8

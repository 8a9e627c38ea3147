"""Property-based test of the sweep config loader: random mutations of the presets (wrong
types, out-of-range and huge values, unknown keys, control characters in names) either load or
fail with one line naming a field, and `genzoo sweep plan` writes nothing for a failing one."""

import contextlib
import copy
import io
import os
import re

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sweep import config as sweep_config  # noqa: E402
from sweep.cli import main  # noqa: E402
from trainers.config import ConfigError  # noqa: E402

PRESETS = {name: yaml.safe_load((sweep_config.PRESET_DIR / f"{name}.yaml").read_text())
           for name in sweep_config.presets()}
CONTROL = "".join(map(chr, [*range(0, 32), 127]))
# A one-line error names the field first: "train.lr: ...", "grid.width: ...", "<unknown key>: ...".
FIELD = re.compile(r"^\S[^\n]*?: ")

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.text(alphabet=st.sampled_from(CONTROL + "ab/._"), min_size=1, max_size=6),
    st.sampled_from(["", "nin", "digits", "sgd", "standard", "1e-3", "s3://b/z", "..", "_x"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)


def _paths(node, prefix=()):
    """Every key path of a nested mapping."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield prefix + (key,)
            yield from _paths(child, prefix + (key,))


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(PRESETS)))
    document = copy.deepcopy(PRESETS[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(document))
        kind = draw(st.sampled_from(["set", "set", "delete", "unknown", "name"]))
        if kind == "name":
            field = draw(st.sampled_from(["experiment", "storage"]))
            document[field] = draw(st.text(max_size=4)) + draw(st.sampled_from(CONTROL)) + draw(st.text(max_size=4))
            continue
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if kind == "set":
            parent[path[-1]] = draw(values)
        elif kind == "delete":
            del parent[path[-1]]
        else:
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return name, document


def _check_error(message: str) -> None:
    assert "\n" not in message.strip(), message
    assert FIELD.match(message), message


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(mutated())
def test_a_mutated_preset_loads_or_fails_with_one_line_naming_a_field(case):
    name, document = case
    try:
        config = sweep_config.parse(document, default_experiment=name)
    except (sweep_config.SweepConfigError, ConfigError) as exc:
        _check_error(str(exc))
        return
    assert config.experiment.isprintable()
    assert config.storage is None or config.storage.isprintable()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(mutated())
def test_sweep_plan_of_a_mutated_preset_exits_0_or_2_with_one_line_and_writes_nothing(tmp_path_factory, case):
    name, document = case
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=False))
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)  # a store written to the default ./results would show up here
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["sweep", "plan", str(path)])
    finally:
        os.chdir(cwd)
    assert code in (0, 2), (code, err.getvalue())
    assert sorted(p.name for p in folder.iterdir()) == [path.name]
    if code == 2:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("genzoo: error: "), err.getvalue()
        _check_error(lines[0][len("genzoo: error: "):])


@pytest.mark.parametrize("field", ["experiment", "storage"])
@pytest.mark.parametrize("char", ["\n", "\x00", "\x1b", "\t", "\x7f"])
def test_names_with_control_characters_are_refused_in_one_line(field, char):
    with pytest.raises(sweep_config.SweepConfigError) as raised:
        sweep_config.parse({field: f"zoo{char}x"})
    message = str(raised.value)
    assert message.startswith(f"{field}: ") and "control characters" in message and "\n" not in message


def test_the_store_refuses_control_characters_in_names(tmp_path):
    from sweep.store import Store, StoreError

    with pytest.raises(StoreError, match="^experiment: .*control characters"):
        Store(str(tmp_path), "zoo\x1b[31m")
    with pytest.raises(StoreError, match="^storage: .*control characters"):
        Store(str(tmp_path) + "\n", "zoo")
    assert not any(tmp_path.iterdir())

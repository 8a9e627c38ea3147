"""Configs accept numbers as people type them (YAML 1.2 floats), in sweep files and on the
command line; dotted overrides of a sweep file; one-line errors for bad YAML."""

import pytest

from measures import registry
from sweep import config as sweep_config
from sweep.cli import main
from sweep.config import SweepConfigError
from trainers import yamlio

NUMBERS = [
    ("1e-3", 1e-3), ("5e-4", 5e-4), ("1E-3", 1e-3), ("1e3", 1000.0), ("-2.5e+3", -2500.0),
    (".5", 0.5), ("-.5", -0.5), ("1.", 1.0), ("0.05", 0.05), ("1.0e-05", 1e-5), ("1_000.5", 1000.5),
]


@pytest.mark.parametrize("text, value", NUMBERS)
def test_yaml_12_floats_are_floats(text, value):
    parsed = yamlio.parse_value(text)
    assert isinstance(parsed, float) and parsed == pytest.approx(value)
    assert yamlio.load(f"lr: {text}\n", "f.yaml") == {"lr": pytest.approx(value)}


@pytest.mark.parametrize("text, value", [("1", 1), ("-3", -3), ("true", True), ("null", None), ("nin", "nin"),
                                          ("1e", "1e"), ("e3", "e3"), (".", "."), ("[8, 16]", [8, 16]),
                                          ("[1e-3, 5e-4]", [1e-3, 5e-4]), ("", None)])
def test_other_scalars_keep_their_yaml_meaning(text, value):
    assert yamlio.parse_value(text) == value
    assert type(yamlio.parse_value(text)) is type(value)


def test_special_floats():
    assert yamlio.parse_value(".inf") == float("inf")
    assert yamlio.parse_value(".nan") != yamlio.parse_value(".nan")


def test_a_sweep_file_with_typed_numbers_gives_the_same_trials_as_plain_decimals(tmp_path):
    typed = tmp_path / "typed.yaml"
    typed.write_text("experiment: t\ntrain: {epochs: 2, lr: 5e-2, weight_decay: 1E-4, train_size: 100, dropout: .5}\n"
                     "grid: {lr_final: [1e-3]}\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("experiment: t\ntrain: {epochs: 2, lr: 0.05, weight_decay: 0.0001, train_size: 100, dropout: 0.5}\n"
                     "grid: {lr_final: [0.001]}\n")
    a, b = sweep_config.load(str(typed)), sweep_config.load(str(plain))
    assert a.base.lr == 0.05 and a.base.weight_decay == 1e-4 and a.base.dropout == 0.5
    assert [t.trial_id for t in a.trials()] == [t.trial_id for t in b.trials()]


def test_an_int_where_a_float_is_expected_gives_the_same_trial():
    a = sweep_config.parse({"train": {"lr": 1, "epochs": 2}})
    b = sweep_config.parse({"train": {"lr": 1.0, "epochs": 2}})
    assert a.base.lr == 1.0 and isinstance(a.base.lr, float)
    assert a.trials()[0].trial_id == b.trials()[0].trial_id


def test_measure_set_values_read_typed_numbers():
    assert registry.parse_value("1e-3") == 1e-3
    assert registry.parse_value(".5") == 0.5
    with pytest.raises(registry.MeasureError, match=r"--set value: line 1, column"):
        registry.parse_value("[1,")


def test_train_command_line_reads_typed_numbers(monkeypatch):
    seen = {}

    def fake_train(config, **kwargs):
        seen["config"] = config
        raise KeyboardInterrupt

    monkeypatch.setattr("trainers.train.train", fake_train)
    assert main(["train", "lr=1e-3", "weight_decay=5E-4", "dropout=.5", "epochs=1"]) == 130
    config = seen["config"]
    assert (config.lr, config.weight_decay, config.dropout) == (1e-3, 5e-4, 0.5)


# --- dotted overrides -----------------------------------------------------------------------

def test_overrides_set_nested_top_level_and_new_fields():
    document = {"experiment": "x", "train": {"epochs": 8}, "grid": {"width": [16, 32]}}
    out = sweep_config.apply_overrides(document, [
        "train.epochs=2", "grid.width=[8,16]", "seeds=[0,1]", "resources.cpus=2",
        "measures.flatness.subset=128", "train.lr=1e-3",
    ])
    assert out == {"experiment": "x", "train": {"epochs": 2, "lr": 1e-3}, "grid": {"width": [8, 16]},
                   "seeds": [0, 1], "resources": {"cpus": 2}, "measures": {"flatness": {"subset": 128}}}
    assert document["train"] == {"epochs": 8}  # the original is not changed


@pytest.mark.parametrize("item, message", [
    ("train.epochs", "override: got 'train.epochs', allowed: FIELD=VALUE"),
    ("train..epochs=2", "override: got 'train..epochs=2'"),
    ("experiment.name=2", "override experiment.name: experiment is 'x', not a mapping"),
    ("train.lr=[1,", "override train.lr: line 1, column"),
])
def test_bad_overrides_are_one_line(item, message):
    with pytest.raises(SweepConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        sweep_config.apply_overrides({"experiment": "x"}, [item])


def test_overrides_are_validated_like_the_file():
    with pytest.raises(SweepConfigError, match=r"^train\.epochs: got 0"):
        sweep_config.load("demo", ["train.epochs=0"])
    with pytest.raises(SweepConfigError, match=r"^measures\.flatness\.nope"):
        sweep_config.load("demo", ["measures.flatness.nope=1"])


def test_plan_and_load_apply_overrides(capsys):
    config = sweep_config.load("demo", ["train.epochs=20", "grid.width=[8,16]", "seeds=[0]", "resources.cpus=2",
                                        "measures.flatness.subset=128"])
    assert config.base.epochs == 20 and dict(config.axes)["width"] == (8, 16)
    assert dict(config.axes)["seed"] == (0,) and config.resources.cpus == 2.0
    assert config.measures["flatness"]["subset"] == 128
    assert main(["sweep", "plan", "demo", "train.epochs=20", "grid.width=[8,16]", "seeds=[0]"]) == 0
    out = capsys.readouterr().out
    assert "axis width (2): 8, 16" in out and "epochs: at most 20 per trial" in out  # demo stops at a loss


def test_run_parser_takes_overrides():
    from sweep.cli import build_parser

    args = build_parser().parse_args(["sweep", "run", "demo", "train.epochs=2", "--storage", "/tmp/x"])
    assert args.overrides == ["train.epochs=2"] and args.storage == "/tmp/x"


# --- bad YAML ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("train: {epochs: 2\n", r"bad\.yaml: line 2, column 1: expected ',' or '}'"),
    ("train:\n  epochs: 2\n  epochs: 3\n", r"bad\.yaml: line 3, column 3: duplicate key 'epochs'"),
    ("experiment: a\nexperiment: b\n", r"bad\.yaml: line 2, column 1: duplicate key 'experiment'"),
    ("", r"bad\.yaml: empty"),
    ("# only a comment\n", r"bad\.yaml: empty"),
])
def test_bad_yaml_is_one_line_with_file_line_and_column(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SweepConfigError, match=message) as info:
        sweep_config.load(str(path))
    assert "\n" not in str(info.value)
    assert main(["sweep", "plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_merge_keys_are_not_duplicates():
    assert yamlio.load("a: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n", "m") == {"a": {"x": 1}, "c": {"x": 2}}


def test_a_milestone_past_the_last_epoch_fails_the_plan_but_not_a_stored_sweep(tmp_path):
    from sweep import driver
    from sweep.config import read_resolved_config
    from sweep.store import Store

    document = {"experiment": "ms", "dataset": "digits", "model": "nin",
                "train": {"epochs": 25, "lr_schedule": "step", "lr_milestones": [30]}}
    with pytest.raises(sweep_config.SweepConfigError) as caught:
        sweep_config.parse(document)
    assert str(caught.value) == "train.lr_milestones: got (30,), allowed: a list of epochs in [0, 25) (epochs is 25)"
    # An experiment whose sweep.yaml was written before the check still reads (resume, measure, analyze).
    stored = sweep_config.parse(document, stored=True)
    store = Store(str(tmp_path), "ms")
    store.write_text(driver._provenance(stored, driver.provenance.now()), "sweep.yaml")
    assert read_resolved_config(store).base.lr_milestones == (30,)

"""A sweep's ``extensions:``: modules imported before anything is validated (sweep.extensions)."""

import sys

import pytest

from sweep import config as sweep_config
from sweep import extensions


@pytest.mark.parametrize("value", ["toy", [1], ["a b"], ["../toy"], ["toy.py"], ["toy", "toy"], {"toy": 1}])
def test_a_bad_extensions_field_is_one_line_naming_it(value):
    with pytest.raises(extensions.ExtensionError) as caught:
        extensions.parse(value)
    message = str(caught.value)
    assert message.startswith("extensions: got") and "\n" not in message


def test_module_names_are_read_as_a_tuple():
    assert extensions.parse(None) == ()
    assert extensions.parse(["a", "b.c_d"]) == ("a", "b.c_d")


def test_a_module_that_does_not_import_fails_the_sweep_file_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_extension.py").write_text("raise RuntimeError('no GPU here')\nmore = 1\n")
    for name, why in [("no_such_extension_module", "ModuleNotFoundError"), ("broken_extension", "no GPU here")]:
        with pytest.raises(sweep_config.SweepConfigError) as caught:
            sweep_config.parse({"extensions": [name], "dataset": "digits", "model": "nin"})
        message = str(caught.value)
        assert message.startswith(f"extensions: {name!r} does not import") and why in message
        assert "\n" not in message
    sys.modules.pop("broken_extension", None)


def test_a_module_in_the_working_folder_is_imported_first_and_recorded_in_sweep_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "recording_extension", raising=False)
    (tmp_path / "recording_extension.py").write_text("import builtins\nbuiltins._genzoo_loaded = True\n")
    config = sweep_config.parse({"extensions": ["recording_extension"], "dataset": "digits", "model": "nin",
                                 "train": {"epochs": 1}})
    import builtins

    assert getattr(builtins, "_genzoo_loaded", False)
    del builtins._genzoo_loaded
    assert config.extensions == ("recording_extension",)
    recorded = config.to_dict()
    assert recorded["extensions"] == ["recording_extension"]
    assert sweep_config.parse(recorded).extensions == ("recording_extension",)  # what resume reads
    assert "extensions" not in sweep_config.parse({"dataset": "digits", "model": "nin"}).to_dict()
    sys.modules.pop("recording_extension", None)

"""A report section added in one file: a temporary module defines the section function and
registers its spec; the analysis of a small synthetic zoo then has the section in its report
and writes its files, with nothing else in the project changed."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from analysis import sections
from analysis.errors import AnalysisError
from analysis.report import analyze

MODULE = "toy_section_extension"

SOURCE = textwrap.dedent('''
    """A toy report section: the number of models per width and the mean of a long table."""
    from analysis.section import SectionOutput, SectionSpec
    from analysis.sections import register
    from analysis.tables import to_csv_text, to_markdown


    def toy_section(section):
        counts = section.models.groupby("width").size().rename("models").reset_index()
        layers = section.tables["toy_layers"]
        return SectionOutput(
            markdown=["## Toy section", "", to_markdown(counts), "",
                      f"Mean layer norm: {layers['norm'].mean():.3f} over {layers['trial_id'].nunique()} models."],
            files={"toy_counts.csv": to_csv_text(counts).encode()},
            notes=["toy section: drawn"])


    register(SectionSpec("toy", "toy_section_extension:toy_section", tables=("toy_layers",), columns=("width",)))
''')


@pytest.fixture
def extension(tmp_path, monkeypatch):
    folder = tmp_path / "module"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(MODULE)
    yield module
    sections._SPECS.pop("toy", None)
    sys.modules.pop(MODULE, None)


def small_zoo():
    """Eight completed models over two widths and two seeds, with two measures and a long table."""
    rng = np.random.default_rng(0)
    trials = pd.DataFrame([
        {"trial_id": f"t{i}", "model_id": "final", "status": "completed", "width": 8 * (1 + i % 2),
         "depth": 2 + (i // 2) % 2, "seed": i // 4, "train_acc": 1.0, "test_acc": 0.7 + 0.02 * i + rng.normal(0, 0.005)}
        for i in range(8)])
    measures = pd.DataFrame([
        {"trial_id": t, "model_id": "final", "measure": name, "value": value, "status": "ok", "error": None,
         "seconds": 0.1, "settings": "{}"}
        for t, gap in zip(trials.trial_id, trials.train_acc - trials.test_acc)
        for name, value in (("prunability", gap + rng.normal(0, 0.01)), ("toy_norm", rng.normal()))])
    layers = pd.DataFrame([{"trial_id": t, "model_id": "final", "layer": f"l{k}", "norm": 1.0 + k}
                           for t in trials.trial_id for k in range(2)])
    return trials, measures, {"toy_layers": layers}


def test_the_section_appears_in_the_report_with_its_files(extension, tmp_path):
    assert "toy" in sections.names() and sections.get("toy").tables == ("toy_layers",)
    trials, measures, tables = small_zoo()
    result = analyze(trials, measures, tmp_path / "out", tables=tables, hparams=("width", "depth"),
                     sections=("toy",), experiment="toy")
    report = result.report_path.read_text()
    assert "## Toy section" in report
    assert "## Toy section\n\n| width | models |\n|---|---|\n| 8 | 4 |\n| 16 | 4 |\n" in report
    assert "Mean layer norm: 1.500 over 8 models." in report
    assert report.index("## Granulated Kendall groups") < report.index("## Toy section") < report.index("## Notes")
    assert "- toy section: drawn" in report
    assert (tmp_path / "out" / "toy_counts.csv").read_text().splitlines() == ["width,models", "8,4", "16,4"]
    assert "toy section: drawn" in result.notes


def test_a_zoo_without_the_sections_columns_is_a_one_line_error(extension, tmp_path):
    trials, measures, tables = small_zoo()
    with pytest.raises(AnalysisError, match=r"^sections.toy: the models lack column\(s\) width$"):
        analyze(trials.drop(columns=["width"]), measures, tmp_path / "out", tables=tables, hparams=("depth",),
                sections=("toy",))


def test_an_unknown_section_is_refused_before_anything_is_written(tmp_path):
    trials, measures, tables = small_zoo()
    with pytest.raises(AnalysisError, match=r"^sections: unknown section 'toy', allowed: imp, stability$"):
        analyze(trials, measures, tmp_path / "out", tables=tables, hparams=("width",), sections=("toy",))
    assert not (tmp_path / "out").exists()


def test_the_registry_refuses_a_second_spec_under_a_name(extension):
    from analysis.section import SectionSpec

    sections.register(SectionSpec("toy", "toy_section_extension:toy_section", tables=("toy_layers",),
                                  columns=("width",)))  # the same spec: a no-op
    with pytest.raises(AnalysisError, match=r"^sections.toy: already registered as toy_section_extension:toy_section"):
        sections.register(SectionSpec("toy", "elsewhere:toy_section"))

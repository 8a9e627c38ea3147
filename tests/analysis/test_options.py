"""The analysis's defaults live in analysis.options; the sweep file's analysis block and the
CLI repeat a few of them so that `genzoo sweep plan` never imports the analysis package."""

from __future__ import annotations

import dataclasses

from analysis.options import TARGETS, AnalysisOptions


def test_the_sweep_files_analysis_block_defaults_are_the_analysis_defaults():
    from sweep.config import AnalysisOptions as SweepAnalysis

    ours, sweeps = AnalysisOptions(), SweepAnalysis()
    shared = {f.name for f in dataclasses.fields(SweepAnalysis)} & {f.name for f in dataclasses.fields(AnalysisOptions)}
    assert shared >= {"target", "double_descent", "anchor", "feature_groups", "sections", "colour_by", "paper"}
    for name in sorted(shared):
        assert getattr(sweeps, name) == getattr(ours, name), name


def test_genzoo_analyze_offers_every_target():
    from sweep.cli import build_parser

    analyze = build_parser()._subparsers._group_actions[0].choices["analyze"]
    target = next(action for action in analyze._actions if action.dest == "target")
    assert list(target.choices) == list(TARGETS) and target.default is None


def test_options_given_as_lists_are_stored_as_tuples():
    options = AnalysisOptions(hparams=["width"], sections=["imp"], feature_groups=[["m/", "d", None]])
    assert options.hparams == ("width",) and options.sections == ("imp",)
    assert options.feature_groups == (("m/", "d", None),)
    assert AnalysisOptions(target="test_loss").with_double_descent and not AnalysisOptions().with_double_descent

import dataclasses
import re

import pytest
import yaml

from sweep import config as sweep_config
from sweep.cli import main
from sweep.config import SweepConfigError

TINY = {
    "experiment": "tiny", "dataset": "digits", "model": "nin",
    "train": {"epochs": 2, "lr": 0.05, "train_size": 100, "depth": 2},
    "grid": {"width": [8, 16]}, "seeds": [0, 1], "resources": {"cpus": 1},
}


def test_presets_expand_to_the_papers_zoo_sizes():
    assert len(sweep_config.load("demogen").trials()) == 324
    assert len(sweep_config.load("double_descent_cnn").trials()) == 160
    assert len(sweep_config.load("double_descent_resnet18").trials()) == 160
    assert len(sweep_config.load("demo").trials()) == 32
    assert len(sweep_config.load("demo_train_size").trials()) == 30
    assert len(sweep_config.load("label_noise").trials()) == 36


def test_demogen_preset_has_the_papers_hyperparameters():
    config = sweep_config.load("demogen")
    assert dict(config.axes) == {
        "width": (192, 288, 384), "depth": (2, 3, 4), "dropout": (0.0, 0.2, 0.5),
        "weight_decay": (0.0, 0.001, 0.005), "augment": (True, False), "seed": (0, 1),
    }
    base = config.base
    assert (base.dataset, base.model, base.lr, base.momentum, base.batch_size, base.epochs) == (
        "cifar10", "nin", 0.01, 0.9, 128, 380)
    assert [base.lr_at(e) for e in (99, 100, 200, 379)] == pytest.approx([0.01, 1e-3, 1e-4, 1e-5])


def test_the_demo_follows_the_first_papers_protocol():
    """One training-set size, the paper's five axes (augmentation as suits digits), every model
    trained to one training loss, and enough models that a tau of 0.3 is beyond 2 s_tau."""
    from analysis.kendall import kendall_tau_se

    config = sweep_config.load("demo")
    varied = {name for name, values in config.axes if len(values) > 1}
    assert varied == {"width", "depth", "dropout", "weight_decay", "augment"}
    trials = config.trials()
    assert {t.train_size for t in trials} == {200} and {t.stop_at_train_loss for t in trials} == {0.05}
    assert {(t.flip, t.crop_padding) for t in trials} == {(False, 1)}
    assert 0.3 > 2 * kendall_tau_se(len(trials))


def test_plan_prints_trial_count_without_starting_anything(capsys):
    assert main(["sweep", "plan", "demogen"]) == 0
    out = capsys.readouterr().out
    assert "324 trials" in out and "axis width (3)" in out
    assert main(["sweep", "plan", "double_descent_cnn"]) == 0
    assert "160 trials" in capsys.readouterr().out


def test_resolved_config_round_trips_through_yaml():
    config = sweep_config.parse(TINY)
    again = sweep_config.parse(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert [t.trial_id for t in again.trials()] == [t.trial_id for t in config.trials()]


def test_grid_expands_in_axis_order_with_distinct_ids():
    trials = sweep_config.parse(TINY).trials()
    assert [(t.width, t.seed) for t in trials] == [(8, 0), (8, 1), (16, 0), (16, 1)]
    assert len({t.trial_id for t in trials}) == 4


@pytest.mark.parametrize(
    "change, field",
    [
        ({"grid": {"colour": [1, 2]}}, "grid.colour"),
        ({"train": {"epochs": 2, "lr": -0.1}}, "train.lr"),
        ({"grid": {"lr": [0.1, -1.0]}}, "grid.lr"),
        ({"model": "transformer"}, "model"),
        ({"resources": {"cpus": 1, "gpus": 1.5}}, "resources.gpus"),
        ({"seeds": [-1]}, "seeds"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"grid": {"width": []}}, "grid.width"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_configs_are_one_line_errors_with_exit_code_2(tmp_path, capsys, change, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, **change}))
    with pytest.raises(SweepConfigError, match=f"^{field}"):
        sweep_config.load(str(path))
    assert main(["sweep", "run", str(path), "--storage", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"genzoo: error: {field}") and "\n" not in err
    assert not (tmp_path / "store").exists()


def test_unwritable_storage_is_exit_2_before_anything_starts(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    blocker = tmp_path / "a-file"
    blocker.write_text("storage cannot be created below a file")
    assert main(["sweep", "run", str(path), "--storage", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genzoo: error: storage:") and "not writable" in err and "\n" not in err


def test_unknown_preset_lists_the_presets(capsys):
    assert main(["sweep", "plan", "nosuchpreset"]) == 2
    assert "presets: demo, demo_train_size, demogen" in capsys.readouterr().err


BAD_MEASURES = [
    ({"flatnes": {"subset": 64}}, "measures.flatnes: unknown family"),
    ({"flatness": {"colour": 1}}, "measures.flatness.colour: unknown setting"),
    ({"flatness": {"subset": "many"}}, "measures.flatness.subset: got 'many', allowed: an integer"),
    ({"prunability": {"search": "bisectoin"}}, "measures.prunability.search: got 'bisectoin', allowed:"),
]


@pytest.mark.parametrize("measures, message", BAD_MEASURES, ids=["family", "key", "value", "choice"])
def test_a_bad_measures_block_fails_sweep_run_before_anything_is_written(tmp_path, capsys, measures, message):
    from sweep.cli import main

    document = yaml.safe_load((sweep_config.PRESET_DIR / "demo.yaml").read_text())
    document["measures"] = measures
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(document))
    storage = tmp_path / "store"
    assert main(["sweep", "run", str(path), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"genzoo: error: {message}") and "\n" not in err
    assert not storage.exists()
    assert main(["sweep", "plan", str(path)]) == 2


def test_mode_and_its_settings_come_from_the_sweep_file(tmp_path):
    config = sweep_config.parse({"mode": "ema", "mode_settings": {"decay": 0.9}, "train": {"epochs": 2}})
    assert {c.mode for c in config.trials()} == {"ema"} and config.base.mode_settings.decay == 0.9
    with pytest.raises(sweep_config.SweepConfigError, match=r"^train\.mode_settings\.decay: got 2\.0"):
        sweep_config.parse({"mode": "ema", "mode_settings": {"decay": 2}})
    with pytest.raises(sweep_config.SweepConfigError, match=r"^train\.mode: got 'lottery'"):
        sweep_config.parse({"mode": "lottery"})


def test_the_analysis_block_carries_the_papers_choices():
    assert sweep_config.load("double_descent_cnn").analysis.target == "test_loss"
    assert sweep_config.load("double_descent_cnn").analysis.double_descent
    demo = sweep_config.load("demo").analysis
    assert demo.paper.name == "robustness_to_pruning" and demo.paper.differences
    assert dataclasses.replace(demo, paper=None) == sweep_config.AnalysisOptions()
    config = sweep_config.parse({"analysis": {"anchor": "sum_of_fro", "tables": ["el2n"],
                                              "feature_groups": [{"prefix": "margin/", "derived": "m"}]}})
    assert config.analysis.feature_groups == (("margin/", "m", None),) and config.analysis.tables == ("el2n",)
    assert sweep_config.parse(config.to_dict()).analysis == config.analysis
    for block, field in [({"target": "accuracy"}, "target"), ({"double_descent": "yes"}, "double_descent"),
                         ({"colour": 1}, "colour"), ({"feature_groups": [{"prefix": 1}]}, "feature_groups")]:
        with pytest.raises(SweepConfigError, match=rf"^analysis\.{field}:"):
            sweep_config.parse({"analysis": block})


VARIANTS = {
    "train": {"epochs": 3, "width": 16, "depth": 2}, "grid": {"label_noise": [0.0, 0.2]}, "seeds": [0, 1],
    "variants": [
        {"mode": "imp", "mode_settings": {"levels": 2, "rewind_epoch": 1}},
        {"mode": "extended_dense", "mode_settings": {"levels": 2, "rewind_epoch": 1}},
        {"width": {"scale_from": 16, "factor": 0.8, "steps": 3}},
    ],
}


def test_variants_train_the_grid_once_per_variant_and_round_trip():
    config = sweep_config.parse(VARIANTS)
    trials = config.trials()
    assert len(trials) == 4 + 4 + 4 * 4
    assert [t.mode for t in trials[:8]] == ["imp"] * 4 + ["extended_dense"] * 4
    assert sorted({t.width for t in trials[8:]}) == [8, 10, 13, 16] and {t.mode for t in trials[8:]} == {"standard"}
    assert config.axis_names == ["label_noise", "seed", "mode", "mode_settings", "width"]
    again = sweep_config.parse(config.to_dict())
    assert [t.trial_id for t in again.trials()] == [t.trial_id for t in trials]


def test_width_scaling_rounds_and_drops_repeats():
    assert sweep_config.scaled_widths(16, 0.8, 3) == [16, 13, 10, 8]  # 16, 12.8, 10.24, 8.192
    assert sweep_config.scaled_widths(4, 0.8, 6) == [4, 3, 2, 1]  # 4, 3.2, 2.56, 2.048, 1.6384, 1.31, 1.05


@pytest.mark.parametrize("variants, message", [
    ([{"colour": 1}], r"^variants\[0\]\.colour: unknown field"),
    ([{"label_noise": 0.1}], r"^variants\[0\]\.label_noise: also a grid axis"),
    ([{"width": {"scale_from": 16, "factor": 1.5, "steps": 2}}], r"^variants\[0\]\.width: got"),
    ("imp", r"^variants: got 'imp'"),
])
def test_bad_variants_are_one_line_errors(variants, message):
    with pytest.raises(SweepConfigError, match=message):
        sweep_config.parse({**VARIANTS, "variants": variants})


def test_plan_shows_each_variant_and_the_width_fractions():
    from sweep.driver import plan_text

    text = plan_text(sweep_config.parse(VARIANTS))
    assert "variant 0 (4 trials): mode=imp" in text and "variant 2 (16 trials): width=[16, 13, 10, 8]" in text
    assert "width 13: 0.7" in text and "(0.8^1 = 0.800)" in text
    assert "epochs: 3 to 7 per trial, 104 in total" in text


def test_the_scatter_colour_is_a_preset_choice():
    assert sweep_config.parse({"analysis": {"colour_by": "width"}}).analysis.colour_by == "width"
    with pytest.raises(SweepConfigError, match=r"^analysis\.colour_by: got 3"):
        sweep_config.parse({"analysis": {"colour_by": 3}})


# Which paper each preset is compared with (issue 21): demos inherit their paper's comparison.
PRESET_PAPERS = {
    "demo": ("robustness_to_pruning", ("demogen",)),
    "demogen": ("robustness_to_pruning", ("demogen",)),
    "double_descent_cnn": ("robustness_to_pruning", ("double_descent_cnn",)),
    "double_descent_resnet18": ("robustness_to_pruning", ("double_descent_resnet18",)),
    "label_noise": ("robustness_to_pruning", ("double_descent_resnet18",)),
    "stability_demo": ("generalization_stability_tradeoff", ("figure2_vgg11", "figure6_flatness")),
    "stability_vgg11": ("generalization_stability_tradeoff", ("figure2_vgg11", "figure6_flatness")),
    "stability_resnet18": ("generalization_stability_tradeoff", ("figure2_resnet18",)),
    "stability_sgd": ("generalization_stability_tradeoff", ("figure4_sgd",)),
    "noise_injection_vgg11": ("generalization_stability_tradeoff", ("figure5_noise",)),
    "imp_demo": ("pruning_training_regularization", ("imp_label_noise",)),
    "imp_lenet_mnist": ("pruning_training_regularization", ("imp_label_noise",)),
    "imp_resnet20_cifar10": ("pruning_training_regularization", ("imp_label_noise",)),
    "imp_vgg16_cifar10": ("pruning_training_regularization", ("imp_label_noise",)),
}


def test_every_preset_names_the_paper_it_is_compared_with():
    for preset in sweep_config.presets():
        assert sweep_config.load(preset).analysis.paper is not None, preset
    for preset, (paper, experiments) in PRESET_PAPERS.items():
        choice = sweep_config.load(preset).analysis.paper
        assert choice.name == paper, preset
        assert sweep_config.paper_comparison(choice).experiments == experiments, preset


def test_the_first_papers_file_has_every_row_of_tables_1_and_2():
    paper = sweep_config.load_paper("robustness_to_pruning")
    claims = {c.id: c for c in paper.experiments["demogen"].claims}
    table1 = ["prunability", "random_prunability", "pac_bayes_mag_flat", "sum_of_fro", "normalized_margins",
              "best_margin_variable", "sum_of_train_losses", "train_loss"]
    table2 = table1 + ["sum_two_norms", "parameter_count", "sum_two_norms_pruned", "pruned_parameter_count"]
    for measure in table1:
        for statistic in ("tau", "adjusted_r2", "cmi"):
            assert f"t1.{measure}.{statistic}" in claims
    for measure in table2:
        for column in ("width", "dropout", "augment", "weight_decay", "depth", "psi"):
            assert f"t2.{measure}.{column}" in claims
        assert f"t2.{measure}.tau" in claims or f"t1.{measure}.tau" in claims
    assert len(claims) == 8 * 3 + 12 * 6 + 4 + 6
    # spot checks of the transcription, one per table
    assert claims["t1.prunability.tau"].value == 0.6496 and claims["t1.normalized_margins.cmi"].value == 0.1761
    assert claims["t2.sum_of_fro.dropout"].value == -0.7955 and claims["t2.parameter_count.dropout"].direction == 0
    assert claims["t2.pruned_parameter_count.tau"].value == 0.0417 and claims["t3.pac_bayes_mag_flat.cmi"].value == 0.04541
    double_descent = {c.id: c for c in paper.experiments["double_descent_cnn"].claims}
    assert double_descent["dd_cnn.sum_of_train_losses.test_error"].value == -0.9381
    # the paper's names and orientations of genzoo's measures
    assert paper.paper_name("sum_of_train_losses") == "Negative Sum of Train Losses"
    assert paper.paper_name("sum_of_fro") == "Frobenius-norm"
    assert paper.paper_name("pac_bayes_mag_flat") == "Random Perturbation Robustness"
    assert all(m.sign == 1 for m in paper.measures.values())


def test_a_bad_paper_block_is_a_one_line_error_naming_the_field():
    for block, field in [({"paper": "nope"}, "paper.name"), ({"paper": 3}, "paper"),
                         ({"paper": {"name": "robustness_to_pruning", "experiments": ["x"]}}, "paper.experiments"),
                         ({"paper": {"name": "robustness_to_pruning", "differences": [""]}}, "paper.differences"),
                         ({"paper": {"name": "robustness_to_pruning", "why": 1}}, "paper.why")]:
        with pytest.raises(SweepConfigError, match=rf"^analysis\.{re.escape(field)}:"):
            sweep_config.parse({"analysis": block})
    config = sweep_config.parse({"analysis": {"paper": {"name": "robustness_to_pruning",
                                                        "experiments": ["double_descent_cnn"], "differences": ["x"]}}})
    assert sweep_config.parse(config.to_dict()).analysis == config.analysis


def test_the_sign_error_thresholds_are_read_from_the_analysis_block_and_checked():
    from sweep import config as sweep_config

    base = {"dataset": "digits", "model": "nin"}
    options = sweep_config.parse({**base, "analysis": {"sign_error_min_ess": 4, "sign_error_min_weight": 0.25}}).analysis
    assert (options.sign_error_min_ess, options.sign_error_min_weight) == (4.0, 0.25)
    assert options.to_dict()["sign_error_min_ess"] == 4.0
    assert "sign_error_min_ess" not in sweep_config.parse({**base, "analysis": {"target": "gap"}}).analysis.to_dict()
    for key, value, allowed in [("sign_error_min_ess", 0.5, "a number >= 1"),
                                ("sign_error_min_weight", 1.0, "a number in [0, 1)"),
                                ("sign_error_min_weight", ".nan", "a number in [0, 1)")]:
        with pytest.raises(sweep_config.SweepConfigError) as caught:
            sweep_config.parse({**base, "analysis": {key: float(value) if value != ".nan" else float("nan")}})
        assert str(caught.value).startswith(f"analysis.{key}: got") and str(caught.value).endswith(allowed)


def test_the_imp_presets_measure_by_default_only_the_families_their_report_reads():
    from measures import registry
    from sweep import config as sweep_config
    from sweep.measure_job import _families

    for name in ("imp_demo", "imp_lenet_mnist", "imp_resnet20_cifar10", "imp_vgg16_cifar10"):
        config = sweep_config.load(name)
        assert config.measure_families == ("el2n", "training")
        assert _families(None, config.measure_families) == ["el2n", "training"]  # genzoo measure imp_demo
        assert _families("norms", config.measure_families) == ["norms"]  # --measures still chooses
        assert sweep_config.parse(config.to_dict()).measure_families == ("el2n", "training")  # sweep.yaml keeps it
    assert _families(None, ()) == registry.names()  # a sweep file without measures.families: all
    with pytest.raises(sweep_config.SweepConfigError, match=r"^measures.families: unknown family 'el2m', allowed: "):
        sweep_config.parse({"dataset": "digits", "model": "nin", "measures": {"families": ["el2m"]}})

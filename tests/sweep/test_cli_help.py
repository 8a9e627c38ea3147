"""Every flag and argument of the CLI says what it is for (issue 27, item 5)."""

import argparse

from sweep.cli import build_parser


def _without_help(parser, path):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _without_help(sub, path + [name])
        elif not action.help and not isinstance(action, argparse._HelpAction):
            yield " ".join(path + [action.option_strings[0] if action.option_strings else action.dest])


def test_every_argument_of_every_command_has_help_text():
    assert list(_without_help(build_parser(), ["genzoo"])) == []


def test_sweep_plan_says_how_trials_share_a_gpu_in_words():
    from sweep import config as sweep_config
    from sweep import driver

    for gpus, words in [(0.25, "up to 4 trials share each GPU"), (1, "1 trial at a time on each GPU")]:
        text = driver.plan_text(sweep_config.parse({"dataset": "digits", "model": "nin", "grid": {"width": [4, 8]},
                                                    "resources": {"cpus": 1, "gpus": gpus}}))
        assert words in text and "units" not in text

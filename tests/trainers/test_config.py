import dataclasses
import hashlib

import pytest

from trainers.config import ConfigError, TrainConfig

DEMOGEN_POINT = dict(
    dataset="cifar10", model="nin", width=192, depth=3, dropout=0.2, weight_decay=0.001,
    epochs=380, lr_schedule="step", lr_milestones=[100, 200, 300], seed=1, checkpoint_epochs=[10],
)


def test_trial_id_is_pinned():
    # Changing a field's name or default value renames trials of every store: if this
    # fails, the change must be deliberate (and stores migrated, see sweep/migrate.py).
    assert TrainConfig().trial_id == "nin-44136fa355b3678a"
    assert TrainConfig(**DEMOGEN_POINT).trial_id == "nin-51021e4ed255ece3"


# sha256 of the comma-joined trial ids of each preset, in grid order.
PRESET_IDS = {
    # demo was redesigned on the first paper's protocol (issue 21); its old grid, with the old
    # ids, is demo_train_size.
    "demo": (32, "1ab7f9e42af95c13"),
    "demo_train_size": (30, "61314047a777f1d3"),
    "demogen": (324, "02843fb15ca9ba50"),
    "double_descent_cnn": (160, "baf50766282a6f20"),
    "double_descent_resnet18": (160, "14819928447b8f9c"),
    "label_noise": (36, "042c91c8e1412a05"),
    "imp_demo": (36, "226db4e51cc173fc"),
    "imp_resnet20_cifar10": (132, "c5461088477ef89f"),
    "imp_vgg16_cifar10": (204, "c517df348c037869"),
    "imp_lenet_mnist": (216, "54e766aa706baf90"),
}


def _preset_digest(configs) -> tuple:
    ids = [c.trial_id for c in configs]
    return len(ids), hashlib.sha256(",".join(ids).encode()).hexdigest()[:16]


@pytest.mark.parametrize("preset", sorted(PRESET_IDS))
def test_preset_trial_ids_are_pinned(preset):
    from sweep import config as sweep_config

    assert _preset_digest(sweep_config.load(preset).trials()) == PRESET_IDS[preset]


@pytest.mark.parametrize("preset", sorted(PRESET_IDS))
def test_adding_a_defaulted_field_changes_no_preset_trial_id(preset):
    from sweep import config as sweep_config

    extended = dataclasses.make_dataclass(
        "ExtendedConfig", [("new_knob", int, dataclasses.field(default=7))], bases=(TrainConfig,), frozen=True)
    configs = [extended(**c.to_dict()) for c in sweep_config.load(preset).trials()]
    assert all(c.new_knob == 7 for c in configs)
    assert _preset_digest(configs) == PRESET_IDS[preset]


def test_what_to_save_is_not_identity():
    assert TrainConfig(**{**DEMOGEN_POINT, "checkpoint_epochs": [2, 10]}).trial_id == \
        TrainConfig(**DEMOGEN_POINT).trial_id


def test_a_field_at_its_default_is_the_same_trial_as_the_field_left_out():
    assert TrainConfig(lr=0.01, mode="standard", mode_settings={}).trial_id == TrainConfig().trial_id
    assert TrainConfig(mode="ema").trial_id != TrainConfig().trial_id
    assert TrainConfig(mode="ema", mode_settings={"decay": 0.99}).trial_id == TrainConfig(mode="ema").trial_id
    assert TrainConfig(mode="ema", mode_settings={"decay": 0.9}).trial_id != TrainConfig(mode="ema").trial_id


def test_a_config_round_trips_through_its_dict():
    config = TrainConfig(**{**DEMOGEN_POINT, "mode": "ema", "mode_settings": {"decay": 0.9, "start_epoch": 2}})
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config and again.trial_id == config.trial_id


def test_trial_id_ignores_how_numbers_and_lists_were_spelled():
    spelled_differently = {**DEMOGEN_POINT, "lr_milestones": (100, 200, 300), "lr": 1e-2, "weight_decay": 0.001}
    assert TrainConfig(**spelled_differently).trial_id == TrainConfig(**DEMOGEN_POINT).trial_id
    assert TrainConfig(lr=1).trial_id == TrainConfig(lr=1.0).trial_id


def test_trial_id_changes_with_any_field():
    base = TrainConfig(**DEMOGEN_POINT)
    assert TrainConfig(**{**DEMOGEN_POINT, "seed": 0}).trial_id != base.trial_id
    assert TrainConfig(**{**DEMOGEN_POINT, "augment": False}).trial_id != base.trial_id


@pytest.mark.parametrize(
    "field, value",
    [("lr", -0.1), ("dropout", 1.0), ("optimizer", "rmsprop"), ("epochs", 0), ("label_noise", 1.5),
     ("batch_size", 0), ("lr_schedule", "cosine"), ("checkpoint_epochs", [0]), ("width", 0),
     ("lr", float("nan")), ("weight_decay", float("inf")), ("mode", "imp_typo")],
)
def test_bad_field_is_a_one_line_error_naming_it(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    assert message.startswith(f"{field}:") and "allowed" in message and "\n" not in message


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match="^learning_rate: unknown hyperparameter"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_step_schedule_multiplies_at_each_milestone():
    config = TrainConfig(lr=0.1, epochs=10, lr_schedule="step", lr_milestones=(3, 6), lr_decay_factor=0.5)
    assert [config.lr_at(e) for e in range(8)] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 2)


def test_piecewise_schedule_is_constant_then_geometric_to_the_final_rate():
    config = TrainConfig(lr=1e-2, epochs=200, lr_schedule="piecewise", lr_decay_start=100, lr_final=1e-4)
    assert config.lr_at(0) == config.lr_at(99) == 1e-2
    assert config.lr_at(199) == pytest.approx(1e-4)
    rates = [config.lr_at(e) for e in range(100, 200)]
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert all(r == pytest.approx(ratios[0]) for r in ratios) and ratios[0] < 1


@pytest.mark.parametrize("settings, field", [({"decay": 1.5}, "decay"), ({"decy": 0.9}, "decy"),
                                             ({"start_epoch": -1}, "start_epoch"), ({"decay": "high"}, "decay")])
def test_mode_settings_are_validated_naming_the_setting(settings, field):
    with pytest.raises(ConfigError) as info:
        TrainConfig(mode="ema", mode_settings=settings)
    assert str(info.value).startswith(f"mode_settings.{field}:") and "\n" not in str(info.value)


def test_flip_is_identity_only_when_turned_off():
    assert TrainConfig(flip=True).trial_id == TrainConfig().trial_id
    assert TrainConfig(flip=False).trial_id != TrainConfig().trial_id
    with pytest.raises(ConfigError, match=r"^flip: got 'no', allowed: true or false$"):
        TrainConfig(flip="no")


def test_crop_padding_is_identity_only_when_changed_and_checked():
    assert TrainConfig(crop_padding=4).trial_id == TrainConfig().trial_id
    assert TrainConfig(crop_padding=1).trial_id != TrainConfig().trial_id
    with pytest.raises(ConfigError, match=r"^crop_padding: got -1, allowed: an integer number of pixels in \[0, 16\]$"):
        TrainConfig(crop_padding=-1)


@pytest.mark.parametrize("values, message", [
    ({"epochs": 25, "lr_schedule": "step", "lr_milestones": [30]}, "lr_milestones: got (30,), allowed: a list of epochs in [0, 25)"),
    ({"epochs": 25, "lr_schedule": "step", "lr_milestones": [10, 25]}, "lr_milestones: got (10, 25), allowed: a list of epochs in [0, 25)"),
    ({"epochs": 25, "lr_milestones": [10]}, "lr_milestones: got (10,), allowed: empty with lr_schedule constant"),
])
def test_milestones_that_would_never_apply_are_refused_in_one_line_when_a_run_is_planned(values, message):
    config = TrainConfig(**values)  # a stored config like it still loads
    with pytest.raises(ConfigError) as caught:
        config.check_schedule()
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    TrainConfig(epochs=25, lr_schedule="step", lr_milestones=[0, 24]).check_schedule()

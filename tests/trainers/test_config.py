import pytest

from trainers.config import ConfigError, TrainConfig

DEMOGEN_POINT = dict(
    dataset="cifar10", model="nin", width=192, depth=3, dropout=0.2, weight_decay=0.001,
    epochs=380, lr_schedule="step", lr_milestones=[100, 200, 300], seed=1, checkpoint_epochs=[10],
)


def test_trial_id_is_pinned():
    # Changing a field's name, type or default silently renames every trial of every store:
    # if this fails, the change must be deliberate (and stores migrated).
    assert TrainConfig().trial_id == "nin-33dd3e5883efd430"
    assert TrainConfig(**DEMOGEN_POINT).trial_id == "nin-29e2ea295c65158f"


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
     ("batch_size", 0), ("lr_schedule", "cosine"), ("checkpoint_epochs", [0]), ("width", 0)],
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

"""Every preset in configs/ is a valid config of its command (the folder names the command)."""
from pathlib import Path

import pytest

from reftune.cli import configs
from reftune.config.fields import field_kinds
from reftune.config.options import read_yaml_options

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = sorted(path for path in CONFIGS.glob("*/*.yaml") if path.parent.name != "accelerate")
ACCELERATE_PRESETS = sorted((CONFIGS / "accelerate").glob("*.yaml"))


def test_there_are_presets():
    assert PRESETS


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_preset_builds_its_commands_config(preset):
    config_class = configs()[preset.parent.name]
    config = config_class(**read_yaml_options(preset, config_class))
    assert config.task in preset.name


@pytest.mark.parametrize("preset", sorted(CONFIGS.glob("rl/reft-*.yaml")), ids=lambda path: path.name)
def test_every_reft_preset_aggregates_both_losses_as_the_authors_code(preset):
    from reftune.config import RLConfig

    config = RLConfig(**read_yaml_options(preset, RLConfig))
    assert config.loss_aggregation == config.value_loss_aggregation == "seq_mean_token_mean"
    assert "loss_aggregation" in read_yaml_options(preset, RLConfig)  # said in the file, not left to defaults


@pytest.mark.parametrize("preset", ACCELERATE_PRESETS, ids=lambda path: path.name)
def test_accelerate_preset_is_an_accelerate_config_with_a_header(preset):
    from accelerate.commands.config.config_args import ClusterConfig

    ClusterConfig.from_yaml_file(str(preset))  # refuses unknown keys
    header = preset.read_text().split("compute_environment")[0]
    assert "Tested here" in header or "NOT TESTED" in header


def test_task_options_reach_the_task_and_bad_ones_are_refused():
    from reftune.config import SFTConfig, parse_task_options
    from reftune.errors import ReftuneError
    from reftune.training.data import load_examples

    config = SFTConfig(task="arithmetic", task_options="max_number=5,max_steps=2")
    task, examples = load_examples(config, "dev", 20)
    assert task.config.max_number == 5 and task.config.max_steps == 2
    with pytest.raises(ReftuneError, match="not key=value"):
        parse_task_options("max_number")
    with pytest.raises(ReftuneError, match="takes no options"):
        load_examples(SFTConfig(task="gsm8k", task_options="max_number=5"), "train")


def test_demo_learning_rates_follow_the_base_model():
    from reftune.config import DemoConfig

    scratch, pretrained = DemoConfig(), DemoConfig(model="smollm2-135m")
    assert (scratch.sft_learning_rate, scratch.rl_learning_rate) == (1e-3, 1e-4)  # a tiny model from scratch
    assert (pretrained.sft_learning_rate, pretrained.rl_learning_rate) == (2e-5, 3e-6)  # the paper's, 125M
    assert DemoConfig(model="smollm2-135m", sft_learning_rate=1e-4).sft_learning_rate == 1e-4
    assert (scratch.continued_sft_learning_rate, pretrained.continued_sft_learning_rate) == (3e-4, 2e-5)
    assert DemoConfig(model="smollm2-135m", sft_learning_rate=1e-4).continued_sft_learning_rate == 1e-4


FLOAT_OPTIONS = [(command, name) for command, cls in sorted(configs().items())
                 for name, (kind, _) in field_kinds(cls).items() if kind is float]


@pytest.mark.parametrize("command, name", FLOAT_OPTIONS, ids=lambda x: x)
def test_every_float_option_refuses_infinity_and_nan(command, name):
    from reftune.errors import ReftuneError

    for value in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ReftuneError, match=f"^{name} must be a finite number"):
            configs()[command](**{name: value})


def test_a_non_finite_learning_rate_is_one_line_at_the_command_line(tmp_path, capsys):
    from reftune.cli import main

    assert main(["sft", "--learning-rate", "inf", "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "reftune sft: error: learning_rate must be a finite number, got inf\n"
    assert not (tmp_path / "run").exists()


def test_dev_questions_are_decoded_in_batches_of_eval_batch_size_or_twice_the_micro_batch():
    from reftune.config import RLConfig, SFTConfig
    from reftune.errors import ReftuneError

    assert SFTConfig(micro_batch_size=16).dev_batch_size == 32
    assert RLConfig(micro_batch_size=16, eval_batch_size=128).dev_batch_size == 128
    with pytest.raises(ReftuneError, match="eval_batch_size must be >= 1"):
        SFTConfig(eval_batch_size=0)

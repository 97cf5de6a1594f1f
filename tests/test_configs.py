"""Every preset in configs/ is a valid config of its command (the folder names the command)."""
from pathlib import Path

import pytest

from reftune.cli import configs
from reftune.config import read_yaml_options

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*/*.yaml"))


def test_there_are_presets():
    assert PRESETS


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_preset_builds_its_commands_config(preset):
    config_class = configs()[preset.parent.name]
    config = config_class(**read_yaml_options(preset, config_class))
    assert config.task in preset.name

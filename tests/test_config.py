from pathlib import Path

import pytest

from cadsynth.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "panel.yaml"
    path.write_text(text)
    return path


def test_builtin_panel_is_simulated_and_valid():
    config = load_config(None)
    assert {a.provider for a in config.panel} == {"sim"}
    assert config.agents("judge") and config.agents("proposer") and config.agents("adversary")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("panel: []", "panel: List should have at least 1 item"),
        ("panel:\n  - {name: a, provider: nope, model: m, roles: [judge, proposer]}", "panel.0.provider"),
        ("panel:\n  - {name: a, provider: sim, model: m, roles: [judge]}\nadversary: false", "no agent has the role 'proposer'"),
        ("panel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer]}", "adversary is on but no agent"),
        ("panel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer], colour: red}", "panel.0.colour: 'red': Extra inputs"),
        ("rounds: 0\npanel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer, adversary]}", "rounds: 0: Input should be greater"),
        ("panel: [unclosed", "is not valid YAML"),
        ("- just\n- a list", "expected a mapping"),
        (
            "adversary: false\npanel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer]}\n"
            "  - {name: a, provider: sim, model: m, roles: [judge]}",
            "agent name 'a' appears twice",
        ),
    ],
)
def test_bad_configs_name_the_field(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message and str(tmp_path) in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")


def test_seed_file_is_relative_to_config(tmp_path):
    path = write(tmp_path, "seeds: seeds.jsonl\npanel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer, adversary]}")
    assert load_config(path).seeds == tmp_path / "seeds.jsonl"

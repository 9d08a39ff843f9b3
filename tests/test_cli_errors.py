"""Bad input: one line naming what is wrong, exit status 2, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.test_debate_run import cads


def _assert_clean_failure(result, expected: str, cwd: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (cwd / "cads.db").exists() and not (cwd / "cads-data").exists()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("panel:\n  - {name: a, provider: nope, model: m, roles: [judge]}", "panel.0.provider"),
        ("rounds: -1\npanel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer, adversary]}", "rounds: Input should be greater"),
        ("panel: [", "not valid YAML"),
    ],
)
def test_bad_config(tmp_path, config, expected):
    (tmp_path / "bad.yaml").write_text(config)
    _assert_clean_failure(cads("run", "bad.yaml", cwd=tmp_path, check=False), expected, tmp_path)


def test_missing_config(tmp_path):
    _assert_clean_failure(cads("run", "absent.yaml", cwd=tmp_path, check=False), "no such config file", tmp_path)


def test_bad_seed_image(tmp_path):
    (tmp_path / "seeds.jsonl").write_text('{"image": "x.png", "question": "q?", "answer": "1"}\n')
    (tmp_path / "x.png").write_text("not a png")
    (tmp_path / "panel.yaml").write_text(
        "seeds: seeds.jsonl\npanel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer, adversary]}\n"
    )
    _assert_clean_failure(cads("run", "panel.yaml", cwd=tmp_path, check=False), "line 1", tmp_path)


def test_bad_option_and_database_url(tmp_path):
    _assert_clean_failure(cads("run", "--rounds", "0", cwd=tmp_path, check=False), "rounds", tmp_path)
    _assert_clean_failure(cads("run", "--db", "oracle://x/y", cwd=tmp_path, check=False), "not supported", tmp_path)


def test_unknown_run(tmp_path):
    for command in (["stats", "nope"], ["show", "nope"], ["export", "nope", "--out", "x.jsonl"]):
        result = cads(*command, cwd=tmp_path, check=False)
        assert result.returncode == 2 and "no run 'nope'" in result.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_seed_file_run(tmp_path):
    """A good seed file runs: proposals record which seed they came from."""
    Image.new("RGB", (32, 32), "red").save(tmp_path / "s.png")
    (tmp_path / "seeds.jsonl").write_text(
        '{"id": "red", "image": "s.png", "question": "What colour?", "answer": "red"}\n{"id": "t", "task": "count shapes"}\n'
    )
    (tmp_path / "panel.yaml").write_text(
        "seeds: seeds.jsonl\nrounds: 1\nadversary: false\n"
        "panel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer]}\n"
        "  - {name: b, provider: sim, model: m, roles: [judge, proposer, critic]}\n"
    )
    cads("run", "panel.yaml", "--run-id", "seeded", "--target", "1000", cwd=tmp_path)
    show = cads("show", "seeded", cwd=tmp_path).stdout
    assert "judge a" in show and "judge b" in show
    cads("export", "seeded", "--out", "out.jsonl", cwd=tmp_path)
    samples = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert samples and {s["seed"] for s in samples} <= {"red", "t"}

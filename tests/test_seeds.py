"""Seed files fail fast with one line that says where and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from cadsynth.seeds import Seed, SeedError, load_seeds
from tests.helpers import cads, export


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(path)
    return path


def _write(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "seeds.jsonl"
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(SeedError) as info:
        load_seeds(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


PROBLEM = {"image": "img/a.png", "question": "What color?", "answer": "red"}


def test_loads_both_forms(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "a.png")
    path = _write(
        tmp_path,
        {**PROBLEM, "id": "p1", "kind": "chart"},
        "",
        {"task": "Bar charts of monthly rainfall", "domain": "charts"},
        {"image": "img/a.png", "question": "How many?", "answer": 3},
    )
    seeds = load_seeds(path)
    assert [s.id for s in seeds] == ["p1", "seed-3", "seed-4"]
    problem, task, numeric = seeds
    assert problem.image == tmp_path / "img" / "a.png" and problem.kind == "chart"
    assert not problem.is_task and task.is_task and task.domain == "charts"
    assert numeric.answer == "3"


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        (["{not json"], "line 1: not valid JSON"),
        ([[1, 2]], "line 1: expected a JSON object, got an array"),
        ([{"question": "q", "answer": "a"}], "line 1: problem seed is missing 'image'"),
        ([{"image": "img/a.png", "question": "q"}], "line 1: problem seed is missing 'answer'"),
        ([{"task": "t", "question": "q"}], "line 1: mixes a task seed ('task') with problem fields"),
        ([{"kind": "chart"}], "line 1: has neither 'task' nor"),
        ([{"task": ""}], "line 1: 'task' must be a non-empty string"),
        ([{"task": "t"}, {"qustion": "q"}], "unknown keys: qustion"),
        ([{"task": "t", "id": "x"}, {"task": "u", "id": "x"}], "line 2: duplicate id 'x' (first used on line"),
        ([{"task": "t", "id": "seed-2"}, {"task": "u"}], "line 2: duplicate id 'seed-2'"),
        ([{"task": "t"}, {**PROBLEM, "image": "img/no.png"}], "line 2: image 'img/no.png' not found"),
        ([{**PROBLEM, "image": "img"}], "line 1: image 'img' is not a file"),
        ([{**PROBLEM, "image": "bad.png"}], "line 1: image 'bad.png' is not a readable image (cannot"),
    ],
)
def test_bad_line(tmp_path: Path, lines: list[object], needle: str) -> None:
    _png(tmp_path / "img" / "a.png")
    (tmp_path / "bad.png").write_text("not an image")
    message = _error(_write(tmp_path, *lines))
    assert needle in message
    assert message.rstrip().split("; ")[-1]  # ends with what to do


def test_reports_first_error_only(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, {"task": "ok"}, "[]", "{oops"))
    assert "line 2:" in message and "line 3" not in message


def test_truncated_image(tmp_path: Path) -> None:
    png = _png(tmp_path / "img" / "a.png")
    png.write_bytes(png.read_bytes()[:30])
    message = _error(_write(tmp_path, PROBLEM))
    assert "line 1: image 'img/a.png' is not a readable image" in message


def test_missing_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.jsonl")
    assert "file not found" in message and "seeds:" in message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n  \n")
    assert "file is empty" in _error(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(b'{"task": "ok"}\n{"task": "\xff"}\n')
    assert "line 2: is not UTF-8" in _error(path)


def test_seed_model_enforces_one_form() -> None:
    assert Seed(id="t", task="draw a pie chart").is_task
    with pytest.raises(ValidationError):
        Seed(id="x", task="t", question="q")
    with pytest.raises(ValidationError):
        Seed(id="x", question="q", answer="a")


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
    samples = export("seeded", tmp_path)
    assert samples and {s["seed"] for s in samples} <= {"red", "t"}

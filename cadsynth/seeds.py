"""Seeds that CAD-Generate starts from: a JSONL file named by the config key `seeds:`.

Each line is either a problem seed {"id"?, "image", "question", "answer"} or a task seed
{"id"?, "task"}; both may carry "kind"/"domain" hints. Image paths are relative to the file's
folder. The whole file is checked before anything runs, so a bad line fails fast with one
readable sentence instead of surfacing mid-run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, model_validator

PROBLEM_FIELDS = ("image", "question", "answer")
_TEXT_FIELDS = ("id", "task", "question", "answer", "kind", "domain")
_JSON_KINDS: dict[type, str] = {
    list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"
}


class SeedError(ValueError):
    """A seed file problem; str() is one line naming the file, the line and the fix."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        where = f"{path} line {line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


def _form_problem(fields: dict[str, Any]) -> str | None:
    """What is wrong with which form a seed takes, or None if it is exactly one form."""
    given = [f for f in PROBLEM_FIELDS if fields.get(f) is not None]
    if fields.get("task") is not None:
        if given:
            return f"mixes a task seed ('task') with problem fields ({', '.join(given)}); keep one form"
        return None
    if not given:
        return (
            "has neither 'task' nor 'image'/'question'/'answer'; "
            "give a task, or an image, question and answer"
        )
    missing = [f for f in PROBLEM_FIELDS if f not in given]
    if missing:
        names = ", ".join(f"'{f}'" for f in missing)
        return f"problem seed is missing {names}; add it or turn the line into a task seed"
    return None


class Seed(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    task: str | None = None
    image: Path | None = None
    question: str | None = None
    answer: str | None = None
    kind: str | None = None
    domain: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Seed:
        problem = _form_problem(self.model_dump())
        if problem:
            raise ValueError(f"seed '{self.id}' {problem}")
        return self

    @property
    def is_task(self) -> bool:
        return self.task is not None


def _text_fields(raw: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """Known fields as non-empty strings (numbers allowed: answers are often 12), or a problem."""
    out: dict[str, str] = {}
    for name in (*_TEXT_FIELDS, "image"):
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name in ("id", "answer"):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            return out, f"'{name}' must be a non-empty string, got {json.dumps(value)[:40]}; fix the value"
        out[name] = value.strip()
    return out, None


def _image_problem(image: Path, written: str) -> str | None:
    if not image.exists():
        return f"image '{written}' not found (looked for {image}); fix the path or remove the line"
    if not image.is_file():
        return f"image '{written}' is not a file; fix the path or remove the line"
    try:
        with Image.open(image) as im:
            im.verify()
    except UnidentifiedImageError:
        reason = "cannot identify image file"
    except Exception as exc:  # Pillow raises many types (SyntaxError, struct.error, OSError) on bad data
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:120]
    else:
        return None
    return f"image '{written}' is not a readable image ({reason}); fix the path or remove the line"


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise SeedError(path, None, "file not found; check the 'seeds:' path in the config")
    if not path.is_file():
        raise SeedError(path, None, "is not a file; point 'seeds:' at a JSONL file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SeedError(path, line, "is not UTF-8 text; save the file as UTF-8") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise SeedError(path, None, "file is empty; add one JSON object per line")
    return lines


def _parse_line(path: Path, number: int, line: str) -> Seed:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        why = f"not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object per line"
        raise SeedError(path, number, why) from None
    if not isinstance(raw, dict):
        kind = _JSON_KINDS.get(type(raw), "null")
        raise SeedError(path, number, f"expected a JSON object, got {kind}; write one JSON object per line")
    fields, bad_value = _text_fields(raw)
    problem = bad_value or _form_problem(fields)
    if problem:
        unknown = sorted(set(raw) - {*_TEXT_FIELDS, "image"})
        hint = f" (unknown keys: {', '.join(unknown)})" if unknown else ""
        raise SeedError(path, number, problem + hint)
    image = None
    if "image" in fields:
        image = path.parent / fields["image"]
        bad_image = _image_problem(image, fields["image"])
        if bad_image:
            raise SeedError(path, number, bad_image)
    fields.setdefault("id", f"seed-{number}")
    return Seed.model_validate({**fields, "image": image})


def load_seeds(path: Path) -> list[Seed]:
    """Every seed in the file, in order; raises SeedError on the first bad line."""
    path = Path(path)
    seeds: list[Seed] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue  # blank lines are harmless; line numbers stay physical
        seed = _parse_line(path, number, line)
        if seed.id in first_line:
            first = first_line[seed.id]
            problem = f"duplicate id '{seed.id}' (first used on line {first}); give each seed a unique id"
            raise SeedError(path, number, problem)
        first_line[seed.id] = number
        seeds.append(seed)
    return seeds


def world_seed(seed: int, key: str) -> tuple[str, Any]:
    """A seed problem of the procedural world (charts, tables, figures, scenes) for a run with no
    seed file: the text a proposer is shown and the image spec to draw, made again from its key
    wherever it is needed (a simulated proposer reads the key back from its seed's id)."""
    from cadsynth.agents.sim.world import World
    from cadsynth.rng import rng_for

    problem = World().seed(rng_for(seed, "seed", key))
    text = f"Seed problem: {problem.question}\nIts answer: {problem.truth}\nThe image: {problem.visual_prompt}"
    return text, problem.spec

"""Structured output for servers without JSON-schema support: the schema in the prompt, JSON from text.

Models asked for JSON in prose still wrap it in code fences or lead with a sentence, so the parser
looks for the object in the text before giving up; a failure is sent back once with its error.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cadsynth.agents.faults import Malformed

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)


class JsonTextError(Malformed):
    pass


def instructions(schema: type[BaseModel]) -> str:
    return (
        f"\n\nAnswer with one JSON object only: a `{schema.__name__}` that matches this JSON schema, "
        "with every property present (null where a value does not apply).\n"
        f"{json.dumps(schema.model_json_schema(), separators=(',', ':'))}"
    )


def reask(error: str) -> str:
    return (
        f"Your answer could not be used: {error}\n"
        "Reply again with only the corrected JSON object, matching the schema exactly."
    )


def _candidates(text: str) -> list[str]:
    out = [text.strip()]
    out += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        out.append(text[start : end + 1])
    return [c for c in out if c]


def parse(text: Any, schema: type[T]) -> T:
    """The first JSON object in `text` that validates as `schema`; JsonTextError says why not."""
    if isinstance(text, list):  # content blocks
        text = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in text)
    if not isinstance(text, str) or not text.strip():
        raise JsonTextError("the answer was empty")
    problem = "no JSON object found in the answer"
    for candidate in _candidates(text):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError as exc:
            problem = f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            continue
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "the object"
            problem = f"{where}: {err['msg']} ({exc.error_count()} problem(s) in all)"
    raise JsonTextError(problem)

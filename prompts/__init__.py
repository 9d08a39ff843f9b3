"""What the agents are told: one template file per task, loaded by name.

Templates use `$name` placeholders (string.Template), so a prompt reads as prose and a literal
JSON brace needs no escaping.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from string import Template


@cache
def load_prompt(name: str) -> Template:
    source = resources.files(__name__).joinpath(f"{name}.md")
    if not source.is_file():
        raise KeyError(f"no prompt named {name!r} under prompts/")
    return Template(source.read_text(encoding="utf-8"))


def render_prompt(name: str, **values: object) -> str:
    # substitute (not safe_substitute): a placeholder left unfilled is a bug, not a prompt.
    return load_prompt(name).substitute({key: str(value) for key, value in values.items()})


@cache
def _reading(name: str) -> re.Pattern[str]:
    """A pattern that matches the prompt's rendered text and captures each placeholder's value."""
    template = load_prompt(name)
    parts: list[str] = []
    seen: set[str] = set()
    last = 0
    matches = list(template.pattern.finditer(template.template))
    for i, m in enumerate(matches):
        parts.append(re.escape(template.template[last : m.start()]))
        last = m.end()
        if m.group("escaped") is not None:
            parts.append(re.escape(template.delimiter))
            continue
        key = m.group("named") or m.group("braced")
        if key in seen:
            parts.append(f"(?P={key})")
            continue
        seen.add(key)
        # The last placeholder, with nothing but white space after it, takes the rest of the text.
        at_end = i == len(matches) - 1 and not template.template[last:].strip()
        parts.append(f"(?P<{key}>.*)" if at_end else f"(?P<{key}>.*?)")
    parts.append(re.escape(template.template[last:].rstrip()))
    return re.compile("".join(parts), re.DOTALL)


def read_prompt(name: str, text: str) -> dict[str, str] | None:
    """The values `render_prompt(name, ...)` filled in to make `text`, or None when `text` is not
    that prompt. Text appended after the prompt (output instructions) is ignored."""
    found = _reading(name).match(text)
    return None if found is None else found.groupdict()

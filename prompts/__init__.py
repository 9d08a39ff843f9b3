"""What the agents are told: one template file per task, loaded by name.

Templates use `$name` placeholders (string.Template), so a prompt reads as prose and a literal
JSON brace needs no escaping.
"""

from __future__ import annotations

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

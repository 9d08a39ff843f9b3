"""What a fake provider server's responder sees and gives back, in either wire format.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. Each answers through a responder,
``responder(request_json) -> dict | list | str | Reply``: here are what a request asks for
(:func:`request_target`), its text (:func:`request_text`), the :class:`Reply` a responder may
return, the default responder (a schema-valid minimal answer), and the small pieces both
protocols' answers are made of (token estimates, stream chunks).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from .schemas import schema_instance


@dataclass
class Reply:
    """Full control over an answer (a responder may return this instead of
    a dict/str).  ``tool_calls`` items are ``{"name": str, "args": dict}``;
    ``images`` (Gemini only) are PNG/JPEG bytes returned as inline data."""

    content: Any = None  # str, or an object serialised as JSON
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    refusal: str | None = None
    images: list[bytes] | None = None


@dataclass(frozen=True)
class Target:
    """What kind of answer a request asks for."""

    api: str  # "openai" | "gemini"
    mode: str  # "json_schema" | "json_object" | "tool" | "text"
    schema: dict[str, Any] | None = None  # JSON schema of the answer / tool args
    name: str | None = None  # schema name or tool name
    root: dict[str, Any] | None = None  # where $refs resolve (Gemini: root = schema)


def _is_gemini_body(body: dict[str, Any]) -> bool:
    return "contents" in body and "messages" not in body


# Values under these (camel-cased) keys are user data (schemas, structs): their
# keys are kept as they are.
_GEMINI_OPAQUE = frozenset({
    "responseSchema", "responseJsonSchema", "parameters", "parametersJsonSchema",
    "response", "args", "labels", "extraBody",
})


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def gemini_camel(obj: Any) -> Any:
    """Gemini's JSON (proto3) accepts snake_case and lowerCamelCase field
    names alike -- the google-genai SDK really sends a mix (e.g.
    ``{"inlineData": {"mime_type": ...}}``).  Return a copy using camelCase
    everywhere except inside schemas / structs."""
    if isinstance(obj, list):
        return [gemini_camel(x) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict[str, Any] = {}
    for k, v in obj.items():
        ck = _camel(k) if isinstance(k, str) else k
        out[ck] = v if ck in _GEMINI_OPAQUE else gemini_camel(v)
    return out


def request_target(body: dict[str, Any]) -> Target:
    """Work out what the request wants back (works for both wire formats)."""
    if _is_gemini_body(body):
        body = gemini_camel(body)
        cfg = body.get("generationConfig") or {}
        fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        decls = [
            d
            for t in body.get("tools") or []
            for d in (t.get("functionDeclarations") or [])
        ]
        if decls and str(fcc.get("mode", "")).upper() in ("ANY", "VALIDATED"):
            allowed = fcc.get("allowedFunctionNames") or []
            decl = next((d for d in decls if d.get("name") in allowed), decls[0])
            schema = decl.get("parametersJsonSchema") or decl.get("parameters") or {}
            return Target("gemini", "tool", schema, decl.get("name"))
        schema = cfg.get("responseJsonSchema") or cfg.get("responseSchema")
        if schema is not None:
            return Target("gemini", "json_schema", schema, schema.get("title"))
        if cfg.get("responseMimeType") == "application/json":
            return Target("gemini", "json_object")
        return Target("gemini", "text")

    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if tools and choice not in (None, "none", "auto"):
        name = None
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
        fn = next(
            (t["function"] for t in tools if t["function"].get("name") == name),
            tools[0]["function"],
        )
        return Target("openai", "tool", fn.get("parameters") or {}, fn.get("name"))
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_schema":
        js = rf.get("json_schema") or {}
        return Target("openai", "json_schema", js.get("schema") or {}, js.get("name"))
    if rf.get("type") == "json_object":
        return Target("openai", "json_object")
    return Target("openai", "text")


def request_text(body: dict[str, Any]) -> str:
    """All text of the request's messages, joined by newlines."""
    out: list[str] = []

    def add(content: Any) -> None:
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            for p in content:
                if isinstance(p, dict) and isinstance(p.get("text"), str):
                    out.append(p["text"])

    if _is_gemini_body(body):
        body = gemini_camel(body)
        si = body.get("systemInstruction")
        if isinstance(si, dict):
            add(si.get("parts"))
        for c in body.get("contents") or []:
            if isinstance(c, dict):
                add(c.get("parts"))
    else:
        for m in body.get("messages") or []:
            if isinstance(m, dict):
                add(m.get("content"))
    return "\n".join(out)


def default_responder(body: dict[str, Any]) -> Any:
    """Schema-valid minimal answer for structured requests, else short text."""
    t = request_target(body)
    if t.schema is not None:
        return schema_instance(t.schema, root=t.root)
    if t.mode == "json_object":
        return {"answer": "ok"}
    digest = hashlib.sha256(request_text(body).encode()).hexdigest()[:8]
    return f"fake answer {digest}"


def estimate_tokens(text: str) -> int:
    """Tokens a text is billed as, roughly (four characters a token)."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def to_text(obj: Any) -> str:
    """A responder's answer as the text sent back: a str as it is, anything else as JSON."""
    return obj if isinstance(obj, str) else json.dumps(obj)


def pieces(text: str, n: int = 3) -> list[str]:
    """A streamed answer's text in `n` chunks (fewer for a short text, none for an empty one)."""
    if not text:
        return []
    size = max(1, math.ceil(len(text) / n))
    return [text[i: i + size] for i in range(0, len(text), size)]

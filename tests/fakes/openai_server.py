"""A fake OpenAI-compatible HTTP server for tests (127.0.0.1, random port).

It speaks the real wire protocol, so the real ``openai`` SDK and
``langchain_openai.ChatOpenAI`` can be pointed at it with ``base_url``::

    with FakeOpenAI(api_key="sk-test-123") as srv:
        llm = ChatOpenAI(base_url=srv.base_url, api_key="sk-test-123", model="m")

Endpoints: ``POST /v1/chat/completions`` (plain, ``response_format`` json_schema
/ json_object, function calling, SSE streaming), ``POST /v1/images/generations``,
``GET /v1/models`` and ``GET /v1/models/{id}``.

This module also holds the pieces shared with :mod:`gemini_server`: the fault
plan, counters, request records, the schema-driven default answer and a tiny
PNG encoder.  Nothing here depends on pytest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import random
import re
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "FaultPlan",
    "FakeOpenAI",
    "HttpError",
    "Reply",
    "RequestRecord",
    "Stats",
    "Target",
    "default_responder",
    "make_png",
    "request_target",
    "request_text",
    "schema_instance",
    "strict_schema_problems",
]

# --------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------

#: Every fault kind the servers understand.
#:  429        rate limited (``Retry-After`` header on the OpenAI fake,
#:             ``RetryInfo`` in the error body on the Gemini fake)
#:  500 / 503  server errors with the provider's error body
#:  hang       no answer; the connection is closed after ``hang_seconds``
#:             (or at once when the server stops)
#:  drop       the connection is closed at once without any answer
#:  malformed  200 OK whose JSON answer is truncated (invalid JSON)
#:  fenced     200 OK whose answer is prose + a ```json fenced block
#:             (function calling: no tool call, the fenced JSON as content)
#:  empty      200 OK with empty content and no tool call
FAULT_KINDS = ("429", "500", "503", "hang", "drop", "malformed", "fenced", "empty")
HTTP_FAULTS = frozenset({"429", "500", "503", "hang", "drop"})
CONTENT_FAULTS = frozenset({"malformed", "fenced", "empty"})


@dataclass(frozen=True)
class Fault:
    """One injected fault. ``None`` fields fall back to the plan's defaults."""

    kind: str
    retry_after: float | None = None
    hang_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {FAULT_KINDS}")


class FaultPlan:
    """Deterministic fault schedule, safe to share between handler threads.

    Faults come first from the explicit ``queue`` (one per request, in order),
    then, once the queue is empty, from a seeded random draw: each request is
    faulted with probability ``rate`` and the kind is chosen uniformly from
    ``kinds``.  With requests arriving one at a time the sequence is fully
    reproducible for a given seed (concurrent arrivals are ordered by the OS).
    """

    def __init__(
        self,
        rate: float = 0.0,
        seed: int = 0,
        kinds: Iterable[str] = ("429", "500", "hang", "malformed", "fenced"),
        *,
        queue: Iterable[str | Fault] = (),
        retry_after: float = 1,
        hang_seconds: float = 10.0,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(kinds)
        for k in self.kinds:
            Fault(k)  # validates
        if rate > 0 and not self.kinds:
            raise ValueError("a positive rate needs at least one kind")
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self._rng = random.Random(seed)
        self._queue: list[Fault] = []
        self._lock = threading.Lock()
        self.push(*queue)

    @staticmethod
    def _as_fault(f: str | Fault) -> Fault:
        return f if isinstance(f, Fault) else Fault(str(f))

    def push(self, *faults: str | Fault) -> None:
        """Append faults for the next requests (after those already queued)."""
        items = [self._as_fault(f) for f in faults]
        with self._lock:
            self._queue.extend(items)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def draw(self) -> Fault | None:
        """The fault for the next request, or None (a normal answer)."""
        with self._lock:
            if self._queue:
                f = self._queue.pop(0)
            elif self.rate > 0 and self._rng.random() < self.rate:
                f = Fault(self._rng.choice(self.kinds))
            else:
                return None
        return Fault(
            f.kind,
            retry_after=self.retry_after if f.retry_after is None else f.retry_after,
            hang_seconds=self.hang_seconds if f.hang_seconds is None else f.hang_seconds,
        )


# --------------------------------------------------------------------------
# Records and counters
# --------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """What one request looked like, as the fake server saw it."""

    seq: int
    method: str
    path: str
    route: str
    headers: dict[str, str]  # lower-case names
    body: Any = None
    model: str | None = None
    api_key: str | None = None  # Bearer token (OpenAI) / x-goog-api-key (Gemini)
    has_images: bool = False
    image_sha256: list[str] = field(default_factory=list)
    image_mime: list[str] = field(default_factory=list)
    response_format: str | None = None  # json_schema | json_object | text | None
    mode: str | None = None  # json_schema | json_object | tool | text
    tool_choice: Any = None
    stream: bool = False
    status: int | None = None
    fault: str | None = None
    error: str | None = None  # why the request was rejected (4xx)
    started: float = 0.0  # time.monotonic() when the request arrived
    finished: float | None = None  # ... and when its handling ended

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


class Stats:
    """Thread-safe counters. ``requests`` counts every request received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.rejected = 0  # 4xx answers produced by validation / auth
        self.errors: list[str] = []  # bugs inside the fake or a responder
        self.in_flight = 0  # requests being handled right now
        self.max_in_flight = 0  # the most ever handled at once

    def _add_request(self, route: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_route[route] += 1

    def _add_status(self, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1

    def _add_fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def _add_rejected(self) -> None:
        with self._lock:
            self.rejected += 1

    def _add_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "by_route": dict(self.by_route),
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "faults_total": sum(self.faults.values()),
                "rejected": self.rejected,
                "errors": list(self.errors),
                "max_in_flight": self.max_in_flight,
            }

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.by_route.clear()
            self.by_status.clear()
            self.faults.clear()
            self.rejected = 0
            self.errors.clear()
            self.max_in_flight = 0


# --------------------------------------------------------------------------
# Responder helpers (shared by both fakes)
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# JSON-schema walker: a minimal valid instance
# --------------------------------------------------------------------------

_MAX_DEPTH = 24
_FORMAT_SAMPLES = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/x",
    "url": "https://example.com/x",
    "iri": "https://example.com/x",
    "uri-reference": "https://example.com/x",
}
_PATTERN_CANDIDATES = (
    "x", "a", "A", "0", "1", "abc", "ABC", "a1", "x_1", "a-b", "2024-01-01",
    "user@example.com", "https://example.com", "#000000", "00:00", "A1", "aaa",
)


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} does not point at a schema object")
    return node


def _pick_number(schema: dict[str, Any], integer: bool, variant: int) -> float | int:
    lo, lo_ex = schema.get("minimum"), False
    hi, hi_ex = schema.get("maximum"), False
    emin, emax = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if isinstance(emin, bool):  # draft-4 style
        lo_ex = emin
    elif isinstance(emin, (int, float)) and (lo is None or emin >= lo):
        lo, lo_ex = emin, True
    if isinstance(emax, bool):
        hi_ex = emax
    elif isinstance(emax, (int, float)) and (hi is None or emax <= hi):
        hi, hi_ex = emax, True
    step = schema.get("multipleOf")

    if integer:
        low = None if lo is None else (math.floor(lo) + 1 if lo_ex else math.ceil(lo))
        high = None if hi is None else (math.ceil(hi) - 1 if hi_ex else math.floor(hi))
        v = variant
        if low is not None and v < low:
            v = low + variant
        if high is not None and v > high:
            v = high - variant if low is None else max(low, high - variant)
        if isinstance(step, (int, float)) and step:
            v = int(math.ceil(v / step) * step)
            if high is not None and v > high:
                v = int(math.floor(high / step) * step)
        return int(v)

    x = float(variant)
    if lo is not None and (x < lo or (lo_ex and x <= lo)):
        x = float(lo) + variant + (1.0 if lo_ex else 0.0)
    if hi is not None and (x > hi or (hi_ex and x >= hi)):
        if lo is not None:
            x = (float(lo) + float(hi)) / 2.0
        else:
            x = float(hi) - variant - (1.0 if hi_ex else 0.0)
    if isinstance(step, (int, float)) and step:
        x = math.ceil(x / step) * step
    return float(x)


def _pick_string(schema: dict[str, Any], variant: int) -> str:
    min_len = int(schema.get("minLength") or 0)
    max_len = schema.get("maxLength")
    fmt = schema.get("format")
    if fmt == "uuid":
        return f"00000000-0000-4000-8000-{variant:012d}"
    if fmt in _FORMAT_SAMPLES and variant == 0:
        return _FORMAT_SAMPLES[fmt]
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            rx = re.compile(pattern)
        except re.error:
            rx = None
        if rx is not None:
            for cand in _PATTERN_CANDIDATES:
                for c in (cand * max(1, min_len), cand):
                    ok_len = len(c) >= min_len and (max_len is None or len(c) <= max_len)
                    if ok_len and rx.search(c):
                        return c
    s = "text" if variant == 0 else f"text{variant}"
    if len(s) < min_len:
        s = s + "x" * (min_len - len(s))
    if max_len is not None and len(s) > max_len:
        s = s[-int(max_len):] if variant else s[: int(max_len)]
    return s


def schema_instance(
    schema: Any, *, root: dict[str, Any] | None = None, _depth: int = 0, _variant: int = 0
) -> Any:
    """A minimal instance valid against ``schema``.

    Handles ``$ref`` / ``$defs`` / ``definitions``, ``const``, ``enum`` (first
    value), ``anyOf`` / ``oneOf`` (first branch; with a ``discriminator``
    mapping, its first entry and the tag set), ``allOf`` (merged), type lists,
    Gemini's upper-case OpenAPI types, objects (required properties only, plus
    more to reach ``minProperties``), arrays (``minItems``, ``prefixItems``,
    distinct items under ``uniqueItems``), strings (``minLength`` /
    ``maxLength`` / common ``format`` values / simple ``pattern`` s) and numbers
    within ``minimum`` / ``maximum`` / exclusive bounds / ``multipleOf``.
    """
    if root is None:
        root = schema if isinstance(schema, dict) else {}
    if schema is True or not isinstance(schema, dict) or not schema:
        return None
    depth, variant = _depth + 1, _variant

    def sub(s: Any, v: int = 0) -> Any:
        return schema_instance(s, root=root, _depth=depth, _variant=v)

    if "$ref" in schema:
        if depth > _MAX_DEPTH:
            return None
        target = _resolve_ref(root, schema["$ref"])
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema_instance(merged, root=root, _depth=depth, _variant=variant)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][variant % len(schema["enum"])]

    disc = schema.get("discriminator")
    for key in ("oneOf", "anyOf"):
        branches = schema.get(key)
        if not isinstance(branches, list) or not branches:
            continue
        prop = disc.get("propertyName") if isinstance(disc, dict) else None
        mapping = disc.get("mapping") if isinstance(disc, dict) else None
        if prop and isinstance(mapping, dict) and mapping:
            # Pick the tag first; use its branch (by const) or its $ref target.
            tag, ref = list(mapping.items())[variant % len(mapping)]
            chosen: Any = None
            for b in branches:
                bb = b
                if isinstance(b, dict) and "$ref" in b:
                    try:
                        bb = _resolve_ref(root, b["$ref"])
                    except (KeyError, IndexError, ValueError):
                        continue
                pschema = ((bb or {}).get("properties") or {}).get(prop) or {}
                if pschema.get("const") == tag or tag in (pschema.get("enum") or []):
                    chosen = b
                    break
            if chosen is None and isinstance(ref, str):
                try:
                    _resolve_ref(root, ref)
                    chosen = {"$ref": ref}
                except (KeyError, IndexError, ValueError):
                    chosen = None
            if chosen is not None:
                value = sub(chosen)
                if isinstance(value, dict):
                    value[prop] = tag
                return value
        branch = branches[0]
        if depth > _MAX_DEPTH // 2:  # deep recursion: take a null branch if any
            branch = next((b for b in branches if b.get("type") == "null"), branch)
        return sub(branch, variant)

    if isinstance(schema.get("allOf"), list):
        merged_obj: dict[str, Any] = {}
        other: Any = None
        for part in schema["allOf"]:
            v = sub(part, variant)
            if isinstance(v, dict):
                merged_obj.update(v)
            elif other is None:
                other = v
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        if rest.get("properties") or rest.get("type") == "object":
            extra = schema_instance(rest, root=root, _depth=depth, _variant=variant)
            if isinstance(extra, dict):
                merged_obj.update(extra)
        return merged_obj if merged_obj or other is None else other

    typ = schema.get("type")
    if isinstance(typ, list):
        non_null = [t for t in typ if str(t).lower() != "null"]
        typ = non_null[0] if non_null else "null"
    if typ is None:
        if "properties" in schema or "required" in schema:
            typ = "object"
        elif "items" in schema or "prefixItems" in schema:
            typ = "array"
        elif "default" in schema:
            return schema["default"]
        else:
            return None
    typ = str(typ).lower()

    if typ == "object":
        if depth > _MAX_DEPTH:
            return {}
        props = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        names = [n for n in props if n in required] + [n for n in required if n not in props]
        min_props = int(schema.get("minProperties") or 0)
        for n in props:
            if len(names) >= min_props:
                break
            if n not in names:
                names.append(n)
        out: dict[str, Any] = {}
        for n in names:
            out[n] = sub(props.get(n, {"type": "string"}))
        extra_schema = schema.get("additionalProperties")
        i = 0
        while len(out) < min_props:
            out[f"key{i}"] = sub(extra_schema) if isinstance(extra_schema, dict) else "x"
            i += 1
        return out
    if typ == "array":
        if depth > _MAX_DEPTH:
            return []
        prefix = schema.get("prefixItems") or []
        items = schema.get("items")
        n = max(int(schema.get("minItems") or 0), len(prefix))
        if schema.get("maxItems") is not None:
            n = min(n, int(schema["maxItems"]))
        unique = bool(schema.get("uniqueItems"))
        values = []
        for i in range(n):
            s = prefix[i] if i < len(prefix) else (items if isinstance(items, dict) else {})
            values.append(sub(s, i if unique else 0))
        return values
    if typ == "string":
        return _pick_string(schema, variant)
    if typ == "integer":
        return _pick_number(schema, True, variant)
    if typ == "number":
        return _pick_number(schema, False, variant)
    if typ == "boolean":
        return bool(variant % 2)
    return None


def strict_schema_problems(schema: Any) -> list[str]:
    """Rules OpenAI enforces for ``strict: true`` structured outputs.

    The root must be an object (not ``anyOf``); every object schema must have
    ``additionalProperties: false`` and list all its properties in
    ``required``.
    """
    problems: list[str] = []
    if not isinstance(schema, dict):
        return ["schema must be an object"]
    if schema.get("type") != "object" or "anyOf" in schema:
        problems.append("root schema must be of type 'object' and not use 'anyOf'")

    def walk(node: Any, path: str) -> None:
        if isinstance(node, list):
            for i, x in enumerate(node):
                walk(x, f"{path}/{i}")
            return
        if not isinstance(node, dict):
            return
        is_obj = node.get("type") == "object" or (
            isinstance(node.get("type"), list) and "object" in node["type"]
        )
        if is_obj or "properties" in node:
            if node.get("additionalProperties") is not False:
                problems.append(f"{path or '/'}: 'additionalProperties' must be false")
            props = set((node.get("properties") or {}).keys())
            req = set(node.get("required") or [])
            if props != req:
                missing = sorted(props - req)
                problems.append(
                    f"{path or '/'}: 'required' must list every property; missing {missing}"
                )
        for key in ("properties", "$defs", "definitions"):
            if isinstance(node.get(key), dict):
                for k, v in node[key].items():
                    walk(v, f"{path}/{key}/{k}")
        for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems", "additionalProperties"):
            if key in node and not isinstance(node[key], bool):
                walk(node[key], f"{path}/{key}")

    walk(schema, "")
    return problems


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAGIC = {
    "image/png": (PNG_MAGIC,),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(
    width: int = 8,
    height: int = 8,
    seed: str | bytes = "",
    *,
    text: str | None = None,
) -> bytes:
    """A valid RGB PNG (standard library only) whose pixels depend on ``seed``:
    horizontal bands of two colours taken from sha256(seed).  ``text`` is
    stored in a ``tEXt`` chunk under the key ``prompt``."""
    if width < 1 or height < 1:
        raise ValueError("width and height must be positive")
    h = hashlib.sha256(seed.encode() if isinstance(seed, str) else seed).digest()
    c1, c2 = h[0:3], h[3:6]
    band = max(1, h[6] % 16 + 1)
    row1 = b"\x00" + c1 * width
    row2 = b"\x00" + c2 * width
    raw = b"".join(row1 if (y // band) % 2 == 0 else row2 for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    parts = [PNG_MAGIC, _png_chunk(b"IHDR", ihdr)]
    if text is not None:
        parts.append(_png_chunk(b"tEXt", b"prompt\x00" + text[:500].encode("latin-1", "replace")))
    parts += [_png_chunk(b"IDAT", zlib.compress(raw, 6)), _png_chunk(b"IEND", b"")]
    return b"".join(parts)


def check_image(data: bytes, mime: str) -> str | None:
    """None if ``data`` really is an image of type ``mime``, else the reason."""
    magics = _MAGIC.get(mime)
    if magics is None:
        return f"unsupported image mime type {mime!r}"
    if not any(data.startswith(m) for m in magics):
        return f"image data does not start with the {mime} signature"
    if mime == "image/webp" and data[8:12] != b"WEBP":
        return "image data is not a WEBP file"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a project dependency
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.verify()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "invalid"
        return f"image could not be decoded: {exc}"
    if fmt != _PIL_FORMATS[mime]:
        return f"image is {fmt}, not {mime}"
    return None


def b64decode_any(s: str) -> bytes:
    """Strict decode of standard or URL-safe base64 (padding optional)."""
    s = s.strip()
    if "-" in s or "_" in s:
        s = s.replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    return base64.b64decode(s, validate=True)


_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.S)


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def fence(obj_text: str) -> str:
    """The answer as a chatty model might write it: prose + fenced JSON."""
    try:
        pretty = json.dumps(json.loads(obj_text), indent=2)
    except ValueError:
        pretty = obj_text
    return (
        "Sure! Here is the JSON you asked for:\n\n```json\n"
        + pretty
        + "\n```\n\nLet me know if you need anything else."
    )


def truncate(text: str) -> str:
    """Cut an answer in half so that it no longer parses as JSON."""
    if len(text) <= 1:
        return "{"
    return text[: max(1, len(text) // 2)]


# --------------------------------------------------------------------------
# HTTP plumbing shared by both fakes
# --------------------------------------------------------------------------


class HttpError(Exception):
    """Raised by route code to answer with an error status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive sockets are closed after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")  # type: ignore[attr-defined]

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")  # type: ignore[attr-defined]

    # -- writing helpers --------------------------------------------------
    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537).strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_bytes(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def start_chunked(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeServerBase:
    """Thread-per-request HTTP server on 127.0.0.1 with records, counters and
    fault injection.  Subclasses implement :meth:`_route`."""

    api = "base"

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], Any] | None = None,
        *,
        faults: FaultPlan | Iterable[str | Fault] | None = None,
        api_key: str | None = None,
        allowed_image_mimes: Iterable[str] = ("image/png",),
        latency: float | Callable[[Any], float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder = responder or default_responder
        self.api_key = api_key
        self.allowed_image_mimes = tuple(allowed_image_mimes)
        self.latency = latency
        self.stats = Stats()
        self._faults = self._as_plan(faults)
        self._host, self._port = host, port
        self._records: list[RequestRecord] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "FakeServerBase":
        if self._httpd is not None:
            return self
        self._stop.clear()
        httpd = _Server((self._host, self._port), _Handler)
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fake-{self.api}-{httpd.server_address[1]}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()  # wakes "hang" faults
        httpd.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):  # noqa: ANN204
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # -- addresses ----------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self._host}:{self.port}"

    # -- faults -------------------------------------------------------------
    @staticmethod
    def _as_plan(faults: FaultPlan | Iterable[str | Fault] | None) -> FaultPlan:
        if faults is None:
            return FaultPlan()
        if isinstance(faults, FaultPlan):
            return faults
        return FaultPlan(queue=faults)

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan | Iterable[str | Fault] | None) -> None:
        self._faults = self._as_plan(plan)

    def inject(self, *faults: str | Fault) -> None:
        """Queue faults for the next requests."""
        self._faults.push(*faults)

    # -- records ------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self._cond:
            return list(self._records)

    @property
    def last_request(self) -> RequestRecord | None:
        with self._cond:
            return self._records[-1] if self._records else None

    @property
    def request_count(self) -> int:
        return self.stats.snapshot()["requests"]

    @property
    def fault_counts(self) -> dict[str, int]:
        return self.stats.snapshot()["faults"]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._records) >= n, timeout)

    def reset(self) -> None:
        """Forget records and counters (the fault plan is kept)."""
        with self._cond:
            self._records.clear()
        self.stats.reset()

    # -- dispatch -----------------------------------------------------------
    def _handle(self, h: _Handler, method: str) -> None:
        parts = urlsplit(h.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._cond:
            self._seq += 1
            rec = RequestRecord(self._seq, method, parts.path, "", headers, started=time.monotonic())
        raw = h.read_body()
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.stats._enter()
        try:
            self._route(h, rec, method, parts.path, query, raw)
        except HttpError as e:
            if 400 <= e.status < 500 and rec.fault is None:
                rec.error = str(e.body)
                self.stats._add_rejected()
            self._finish(h, rec, e.status, lambda: h.send_json(e.status, e.body, e.headers))
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug in the fake or the responder
            self.stats._add_error(f"{type(exc).__name__}: {exc}")
            body = self._error_body(500, f"fake server error: {exc}", "internal")
            self._finish(h, rec, 500, lambda: h.send_json(500, body))
        finally:
            rec.finished = time.monotonic()
            self.stats._leave()

    def _register(self, rec: RequestRecord, route: str) -> None:
        rec.route = route
        self.stats._add_request(route)
        with self._cond:
            self._records.append(rec)
            self._cond.notify_all()

    def _finish(self, h: _Handler, rec: RequestRecord, status: int, send: Callable[[], None]) -> None:
        rec.status = status
        if rec.route:
            self.stats._add_status(status)
        try:
            send()
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _apply_http_fault(self, h: _Handler, rec: RequestRecord, fault: Fault | None) -> bool:
        """Serve an HTTP-level fault. True if the request is done."""
        if fault is None or fault.kind not in HTTP_FAULTS:
            return False
        rec.fault = fault.kind
        self.stats._add_fault(fault.kind)
        if fault.kind == "hang":
            self._stop.wait(fault.hang_seconds)
            h.close_connection = True
            rec.status = 0
            return True
        if fault.kind == "drop":
            h.close_connection = True
            rec.status = 0
            return True
        status = int(fault.kind)
        body, headers = self._fault_response(status, fault)
        raise HttpError(status, body, headers)

    def _maybe_sleep(self, body: Any = None) -> None:
        delay = self.latency(body) if callable(self.latency) else self.latency
        if delay > 0:
            self._stop.wait(delay)

    def _call_responder(self, body: dict[str, Any]) -> Any:
        return self.responder(body)

    def _check_image(self, data: bytes, mime: str) -> str | None:
        if mime not in self.allowed_image_mimes:
            return f"image mime type {mime!r} is not accepted (allowed: {list(self.allowed_image_mimes)})"
        return check_image(data, mime)

    # -- to be provided by subclasses --------------------------------------
    def _route(self, h: _Handler, rec: RequestRecord, method: str, path: str,
               query: dict[str, str], raw: bytes) -> None:
        raise NotImplementedError

    def _error_body(self, status: int, message: str, kind: str) -> dict[str, Any]:
        raise NotImplementedError

    def _fault_response(self, status: int, fault: Fault) -> tuple[dict[str, Any], dict[str, str]]:
        raise NotImplementedError


# --------------------------------------------------------------------------
# The OpenAI-compatible fake
# --------------------------------------------------------------------------

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_USER_PART_TYPES = {"text", "image_url", "input_audio", "file"}
_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_IMAGE_SIZES = {
    "auto", "256x256", "512x512", "1024x1024", "1536x1024", "1024x1536",
    "1792x1024", "1024x1792",
}
_IMAGE_TOKENS = 85  # what OpenAI bills for a low-detail image


def _oai_error(message: str, type_: str = "invalid_request_error",
               param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _bad(message: str, param: str | None = None, code: str | None = None) -> HttpError:
    return HttpError(400, _oai_error(message, param=param, code=code))


class FakeOpenAI(FakeServerBase):
    """Fake OpenAI-compatible server (also stands in for vLLM / Ollama).

    Args:
        responder: ``responder(request_json) -> dict | list | str | Reply``.
            A dict/list is serialised as JSON into ``message.content``
            (json_schema / json_object / plain) or into the tool call's
            ``arguments`` (function calling); a str is used verbatim.
            Default: :func:`default_responder` (schema-valid minimal object).
        faults: a :class:`FaultPlan`, or an iterable of kinds/Faults to queue.
        api_key: if set, ``Authorization: Bearer <api_key>`` is required (401).
        models: if set, only these model ids are accepted (404 otherwise) and
            listed by ``GET /v1/models``.
        allowed_image_mimes: image types accepted in ``image_url`` data URLs.
        check_strict_schemas: reject ``strict: true`` schemas that break
            OpenAI's strict-mode rules (see :func:`strict_schema_problems`).
        latency: seconds to wait before each normal answer, or a function of the request body
            giving them (heavy-tailed latencies).
    """

    api = "openai"

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], Any] | None = None,
        *,
        faults: FaultPlan | Iterable[str | Fault] | None = None,
        api_key: str | None = None,
        models: Iterable[str] | None = None,
        allowed_image_mimes: Iterable[str] = ("image/png",),
        check_strict_schemas: bool = True,
        latency: float | Callable[[Any], float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(
            responder, faults=faults, api_key=api_key,
            allowed_image_mimes=allowed_image_mimes, latency=latency, host=host, port=port,
        )
        self.models = list(models) if models is not None else None
        self.check_strict_schemas = check_strict_schemas
        self._images: dict[str, bytes] = {}
        self._images_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` -- what the SDKs call ``base_url``."""
        return f"{self.url}/v1"

    # -- errors ---------------------------------------------------------------
    def _error_body(self, status: int, message: str, kind: str) -> dict[str, Any]:
        return _oai_error(message, "server_error" if status >= 500 else kind)

    def _fault_response(self, status: int, fault: Fault) -> tuple[dict[str, Any], dict[str, str]]:
        if status == 429:
            ra = float(fault.retry_after if fault.retry_after is not None else 1)
            ra_txt = str(int(ra)) if ra == int(ra) else f"{ra:g}"
            return (
                _oai_error(
                    f"Rate limit reached for requests. Please try again in {ra_txt}s.",
                    "requests", None, "rate_limit_exceeded",
                ),
                {"Retry-After": ra_txt, "retry-after-ms": str(int(ra * 1000)),
                 "x-ratelimit-remaining-requests": "0"},
            )
        if status == 503:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{float(fault.retry_after):g}"
            return _oai_error("The engine is currently overloaded, please try again later",
                              "server_error"), headers
        return _oai_error("The server had an error while processing your request. Sorry about that!",
                          "server_error"), {}

    # -- routing --------------------------------------------------------------
    def _route(self, h: _Handler, rec: RequestRecord, method: str, path: str,
               query: dict[str, str], raw: bytes) -> None:
        if path.startswith("/_fake/images/") and method == "GET":
            self._register(rec, "images.file")
            with self._images_lock:
                data = self._images.get(path.rsplit("/", 1)[-1].removesuffix(".png"))
            if data is None:
                raise HttpError(404, _oai_error("no such image", code="not_found"))
            self._finish(h, rec, 200, lambda: h.send_bytes(200, data, "image/png"))
            return
        routes = {
            ("POST", "/v1/chat/completions"): ("chat.completions", self._chat),
            ("POST", "/v1/images/generations"): ("images.generations", self._images_generate),
            ("GET", "/v1/models"): ("models.list", self._models_list),
        }
        key = (method, path.rstrip("/"))
        if key in routes:
            route, fn = routes[key]
        elif method == "GET" and path.startswith("/v1/models/"):
            route, fn = "models.retrieve", self._models_retrieve
        else:
            self._register(rec, "unknown")
            raise HttpError(404, _oai_error(f"Invalid URL ({method} {path})", code="unknown_url"))
        self._register(rec, route)
        self._auth(rec)
        fn(h, rec, raw)

    def _auth(self, rec: RequestRecord) -> None:
        auth = rec.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            rec.api_key = auth[7:].strip()
        if self.api_key is not None and rec.api_key != self.api_key:
            shown = (rec.api_key or "")[-4:]
            msg = ("You didn't provide an API key." if not rec.api_key else
                   f"Incorrect API key provided: ...{shown}.")
            raise HttpError(401, _oai_error(msg, code="invalid_api_key"))

    def _check_model(self, rec: RequestRecord, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise _bad("you must provide a model parameter", param="model")
        rec.model = model
        if self.models is not None and model not in self.models:
            raise HttpError(404, _oai_error(
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model", code="model_not_found"))
        return model

    @staticmethod
    def _parse_json(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _bad(f"We could not parse the JSON body of your request. ({exc})") from None
        if not isinstance(body, dict):
            raise _bad("The request body must be a JSON object.")
        return body

    # -- GET /v1/models -----------------------------------------------------------
    def _model_obj(self, mid: str) -> dict[str, Any]:
        return {"id": mid, "object": "model", "created": 1700000000, "owned_by": "fake"}

    def _models_list(self, h: _Handler, rec: RequestRecord, raw: bytes) -> None:
        ids = self.models if self.models is not None else ["gpt-4o-mini", "gpt-image-1"]
        body = {"object": "list", "data": [self._model_obj(m) for m in ids]}
        self._finish(h, rec, 200, lambda: h.send_json(200, body))

    def _models_retrieve(self, h: _Handler, rec: RequestRecord, raw: bytes) -> None:
        mid = rec.path[len("/v1/models/"):]
        if self.models is not None and mid not in self.models:
            raise HttpError(404, _oai_error(f"The model '{mid}' does not exist",
                                            param="model", code="model_not_found"))
        self._finish(h, rec, 200, lambda: h.send_json(200, self._model_obj(mid)))

    # -- POST /v1/chat/completions ------------------------------------------------
    def _validate_chat(self, rec: RequestRecord, body: dict[str, Any]) -> None:
        self._check_model(rec, body)
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise _bad("'messages' must be a non-empty array", param="messages")
        pending_calls: set[str] = set()
        for i, m in enumerate(msgs):
            p = f"messages[{i}]"
            if not isinstance(m, dict):
                raise _bad(f"{p} must be an object", param=p)
            role = m.get("role")
            if role not in _ROLES:
                raise _bad(f"Invalid value for '{p}.role': {role!r}", param=f"{p}.role")
            content = m.get("content")
            if role == "assistant":
                calls = m.get("tool_calls")
                if content is None and not calls and not m.get("function_call"):
                    raise _bad(f"'{p}.content' is required unless 'tool_calls' is set",
                               param=f"{p}.content")
                if calls is not None:
                    if not isinstance(calls, list):
                        raise _bad(f"'{p}.tool_calls' must be an array", param=f"{p}.tool_calls")
                    for j, c in enumerate(calls):
                        fn = c.get("function") if isinstance(c, dict) else None
                        if (not isinstance(c, dict) or not isinstance(c.get("id"), str)
                                or not isinstance(fn, dict) or not isinstance(fn.get("name"), str)
                                or not isinstance(fn.get("arguments"), str)):
                            raise _bad(f"'{p}.tool_calls[{j}]' is malformed",
                                       param=f"{p}.tool_calls[{j}]")
                        pending_calls.add(c["id"])
            elif role == "tool":
                tcid = m.get("tool_call_id")
                if not isinstance(tcid, str):
                    raise _bad(f"'{p}.tool_call_id' is required", param=f"{p}.tool_call_id")
                if tcid not in pending_calls:
                    raise _bad("Invalid parameter: messages with role 'tool' must be a response "
                               "to a preceeding message with 'tool_calls'.", param=f"{p}.role")
            if role != "assistant" and content is None:
                raise _bad(f"'{p}.content' is required", param=f"{p}.content")
            if content is None or isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise _bad(f"'{p}.content' must be a string or an array of parts",
                           param=f"{p}.content")
            for j, part in enumerate(content):
                pp = f"{p}.content[{j}]"
                if not isinstance(part, dict) or "type" not in part:
                    raise _bad(f"'{pp}' must be an object with a 'type'", param=pp)
                ptype = part["type"]
                allowed = _USER_PART_TYPES if role == "user" else (
                    {"text", "refusal"} if role == "assistant" else {"text"})
                if ptype not in allowed:
                    raise _bad(f"Invalid value: '{ptype}'. Supported values for role "
                               f"'{role}' are: {sorted(allowed)}.", param=f"{pp}.type")
                if ptype == "text" and not isinstance(part.get("text"), str):
                    raise _bad(f"'{pp}.text' must be a string", param=f"{pp}.text")
                if ptype == "image_url":
                    self._image_part(rec, part, pp)
        self._validate_formats(rec, body)

    def _image_part(self, rec: RequestRecord, part: dict[str, Any], pp: str) -> None:
        iu = part.get("image_url")
        url = iu.get("url") if isinstance(iu, dict) else None
        if not isinstance(url, str):
            raise _bad(f"'{pp}.image_url.url' must be a string", param=f"{pp}.image_url")
        if isinstance(iu, dict) and iu.get("detail") not in (None, "auto", "low", "high"):
            raise _bad(f"Invalid value for '{pp}.image_url.detail'", param=f"{pp}.image_url.detail")
        m = _DATA_URL.match(url)
        if m is None:
            raise _bad(f"'{pp}.image_url.url' must be a base64 data URL "
                       "(this server cannot download images)", param=f"{pp}.image_url.url",
                       code="invalid_image_url")
        try:
            data = b64decode_any(m.group("data"))
        except (binascii.Error, ValueError):
            raise _bad("Invalid base64 image data", param=f"{pp}.image_url.url",
                       code="invalid_image_format") from None
        problem = self._check_image(data, m.group("mime"))
        if problem:
            raise _bad(f"Invalid image: {problem}", param=f"{pp}.image_url.url",
                       code="invalid_image_format")
        rec.has_images = True
        rec.image_sha256.append(hashlib.sha256(data).hexdigest())
        rec.image_mime.append(m.group("mime"))

    def _validate_formats(self, rec: RequestRecord, body: dict[str, Any]) -> None:
        rf = body.get("response_format")
        if rf is not None:
            if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
                raise _bad("Invalid 'response_format.type'", param="response_format.type")
            rec.response_format = rf["type"]
            if rf["type"] == "json_schema":
                js = rf.get("json_schema")
                if not isinstance(js, dict):
                    raise _bad("Missing required parameter: 'response_format.json_schema'.",
                               param="response_format.json_schema")
                if not isinstance(js.get("name"), str) or not _SCHEMA_NAME.match(js["name"]):
                    raise _bad("Invalid 'response_format.json_schema.name': must match "
                               "^[a-zA-Z0-9_-]{1,64}$", param="response_format.json_schema.name")
                if "schema" in js and not isinstance(js["schema"], dict):
                    raise _bad("'response_format.json_schema.schema' must be an object",
                               param="response_format.json_schema.schema")
                if js.get("strict") is True and self.check_strict_schemas:
                    problems = strict_schema_problems(js.get("schema") or {})
                    if problems:
                        raise _bad(f"Invalid schema for response_format '{js['name']}': "
                                   + "; ".join(problems), param="response_format",
                                   code="invalid_json_schema")
            if rf["type"] == "json_object":
                if "json" not in request_text(body).lower():
                    raise _bad("'messages' must contain the word 'json' in some form, to use "
                               "'response_format' of type 'json_object'.", param="messages")
        tools = body.get("tools")
        names: list[str] = []
        if tools is not None:
            if not isinstance(tools, list):
                raise _bad("'tools' must be an array", param="tools")
            for i, t in enumerate(tools):
                fn = t.get("function") if isinstance(t, dict) else None
                if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
                    raise _bad(f"'tools[{i}]' must be a function tool", param=f"tools[{i}]")
                if not isinstance(fn.get("name"), str) or not _SCHEMA_NAME.match(fn["name"]):
                    raise _bad(f"Invalid 'tools[{i}].function.name'", param=f"tools[{i}].function.name")
                params = fn.get("parameters")
                if params is not None and not isinstance(params, dict):
                    raise _bad(f"'tools[{i}].function.parameters' must be an object",
                               param=f"tools[{i}].function.parameters")
                if fn.get("strict") is True and self.check_strict_schemas:
                    problems = strict_schema_problems(params or {})
                    if problems:
                        raise _bad(f"Invalid schema for function '{fn['name']}': "
                                   + "; ".join(problems), param=f"tools[{i}].function.parameters",
                                   code="invalid_function_parameters")
                names.append(fn["name"])
        choice = body.get("tool_choice")
        rec.tool_choice = choice
        if choice is not None:
            if not tools:
                raise _bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                           "'tools' are specified.", param="tool_choice")
            if isinstance(choice, str):
                if choice not in ("none", "auto", "required"):
                    raise _bad(f"Invalid value for 'tool_choice': {choice!r}", param="tool_choice")
            elif isinstance(choice, dict):
                name = (choice.get("function") or {}).get("name")
                if choice.get("type") != "function" or name not in names:
                    raise _bad(f"Invalid 'tool_choice': function {name!r} is not among the tools",
                               param="tool_choice")
            else:
                raise _bad("Invalid type for 'tool_choice'", param="tool_choice")
        if body.get("n") not in (None, 1):
            raise _bad("this fake only supports n=1", param="n")
        stream_options = body.get("stream_options")
        if stream_options is not None and not body.get("stream"):
            raise _bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                       param="stream_options")

    def _chat(self, h: _Handler, rec: RequestRecord, raw: bytes) -> None:
        body = self._parse_json(raw)
        rec.body = body
        rec.stream = bool(body.get("stream"))
        self._validate_chat(rec, body)
        target = request_target(body)
        rec.mode = target.mode
        fault = self._faults.draw()
        if self._apply_http_fault(h, rec, fault):
            return
        self._maybe_sleep(body)

        answer = self._call_responder(body)
        reply = answer if isinstance(answer, Reply) else None
        content: str | None
        tool_calls: list[dict[str, Any]] = []
        refusal = None
        if reply is not None:
            content = _to_text(reply.content) if reply.content is not None else None
            refusal = reply.refusal
            for k, tc in enumerate(reply.tool_calls or []):
                tool_calls.append({"id": f"call_{rec.seq}_{k}", "type": "function",
                                   "function": {"name": tc["name"],
                                                "arguments": _to_text(tc.get("args", {}))}})
        elif target.mode == "tool" or (
            not isinstance(answer, str) and body.get("tools") and body.get("tool_choice") != "none"
            and target.mode == "text"
        ):
            name = target.name or body["tools"][0]["function"]["name"]
            content = None
            tool_calls = [{"id": f"call_{rec.seq}_0", "type": "function",
                           "function": {"name": name, "arguments": _to_text(answer)}}]
        else:
            content = _to_text(answer)

        if fault is not None and fault.kind in CONTENT_FAULTS:
            rec.fault = fault.kind
            self.stats._add_fault(fault.kind)
            payload = tool_calls[0]["function"]["arguments"] if tool_calls else (content or "")
            if fault.kind == "malformed":
                if tool_calls:
                    tool_calls[0]["function"]["arguments"] = truncate(payload)
                else:
                    content = truncate(payload)
            elif fault.kind == "fenced":
                tool_calls, content = [], fence(payload)
            else:  # empty
                tool_calls, content = [], ""

        if reply is not None and reply.finish_reason:
            finish = reply.finish_reason
        elif tool_calls:
            forced = isinstance(body.get("tool_choice"), dict)
            finish = "stop" if forced else "tool_calls"
        else:
            finish = "stop"

        prompt_tokens = estimate_tokens(request_text(body)) + 4 * len(body["messages"]) \
            + _IMAGE_TOKENS * len(rec.image_sha256)
        out_text = (content or "") + "".join(t["function"]["arguments"] for t in tool_calls)
        completion_tokens = estimate_tokens(out_text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        }
        cid = f"chatcmpl-fake{rec.seq:06d}"
        created = int(time.time())
        headers = {"x-request-id": f"req_fake{rec.seq:06d}", "openai-processing-ms": "1"}
        if rec.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._finish(h, rec, 200, lambda: self._stream_chat(
                h, cid, created, rec.model or "", content, tool_calls, refusal, finish,
                usage if include_usage else None, headers))
            return
        message: dict[str, Any] = {"role": "assistant", "content": content,
                                   "refusal": refusal, "annotations": []}
        if tool_calls:
            message["tool_calls"] = tool_calls
        resp = {
            "id": cid, "object": "chat.completion", "created": created, "model": rec.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "usage": usage,
        }
        self._finish(h, rec, 200, lambda: h.send_json(200, resp, headers))

    def _stream_chat(self, h: _Handler, cid: str, created: int, model: str, content: str | None,
                     tool_calls: list[dict[str, Any]], refusal: str | None, finish: str,
                     usage: dict[str, Any] | None, headers: dict[str, str]) -> None:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None,
                  with_choice: bool = True, usage_: Any = None) -> None:
            obj: dict[str, Any] = {
                "id": cid, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish_reason}] if with_choice else [],
            }
            if usage is not None:
                obj["usage"] = usage_
            h.write_chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

        h.start_chunked(200, "text/event-stream; charset=utf-8", headers)
        chunk({"role": "assistant", "content": "", "refusal": None})
        if refusal:
            chunk({"refusal": refusal})
        for piece in _pieces(content or ""):
            chunk({"content": piece})
        for k, tc in enumerate(tool_calls):
            chunk({"tool_calls": [{"index": k, "id": tc["id"], "type": "function",
                                   "function": {"name": tc["function"]["name"], "arguments": ""}}]})
            for piece in _pieces(tc["function"]["arguments"]):
                chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
        chunk({}, finish)
        if usage is not None:
            chunk({}, with_choice=False, usage_=usage)
        h.write_chunk(b"data: [DONE]\n\n")
        h.end_chunked()

    # -- POST /v1/images/generations ----------------------------------------------
    def _images_generate(self, h: _Handler, rec: RequestRecord, raw: bytes) -> None:
        body = self._parse_json(raw)
        rec.body = body
        model = body.get("model") or "dall-e-2"
        if not isinstance(model, str):
            raise _bad("'model' must be a string", param="model")
        rec.model = model
        if self.models is not None and model not in self.models:
            raise HttpError(404, _oai_error(f"The model `{model}` does not exist.",
                                            param="model", code="model_not_found"))
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _bad("Missing required parameter: 'prompt'.", param="prompt")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10:
            raise _bad("'n' must be an integer between 1 and 10", param="n")
        size = body.get("size") or "auto"
        if size not in _IMAGE_SIZES:
            raise _bad(f"Invalid value: '{size}'. Supported values are: {sorted(_IMAGE_SIZES)}",
                       param="size")
        fmt = body.get("response_format")
        if fmt is None:
            fmt = "b64_json" if model.startswith("gpt-image") else "url"
        if fmt not in ("url", "b64_json"):
            raise _bad(f"Invalid value for 'response_format': {fmt!r}", param="response_format")
        rec.response_format = fmt
        rec.mode = "image"
        fault = self._faults.draw()
        if self._apply_http_fault(h, rec, fault):
            return
        self._maybe_sleep()
        w, hgt = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        data = []
        for i in range(n):
            png = make_png(w, hgt, f"{prompt}#{i}" if i else prompt, text=prompt)
            if fault is not None and fault.kind in CONTENT_FAULTS:
                png = png[: len(png) // 2] if fault.kind != "empty" else b""
            if fmt == "b64_json":
                item = {"b64_json": base64.b64encode(png).decode(), "revised_prompt": prompt}
            else:
                key = f"img{rec.seq}_{i}"
                with self._images_lock:
                    self._images[key] = png
                item = {"url": f"{self.url}/_fake/images/{key}.png", "revised_prompt": prompt}
            data.append(item)
        if fault is not None and fault.kind in CONTENT_FAULTS:
            rec.fault = fault.kind
            self.stats._add_fault(fault.kind)
            if fault.kind == "empty":
                data = []
        resp: dict[str, Any] = {"created": int(time.time()), "data": data}
        if model.startswith("gpt-image"):
            pt = estimate_tokens(prompt)
            resp["usage"] = {"input_tokens": pt, "output_tokens": 1056 * n,
                             "total_tokens": pt + 1056 * n,
                             "input_tokens_details": {"text_tokens": pt, "image_tokens": 0}}
        self._finish(h, rec, 200, lambda: h.send_json(200, resp))


def _to_text(obj: Any) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


def _pieces(text: str, n: int = 3) -> list[str]:
    if not text:
        return []
    size = max(1, math.ceil(len(text) / n))
    return [text[i: i + size] for i in range(0, len(text), size)]

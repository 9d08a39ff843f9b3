"""JSON schemas for the fake provider servers: a minimal valid instance, and OpenAI's strict rules.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. Their default answer to a structured
request is :func:`schema_instance` of the schema it sent; the OpenAI fake rejects a ``strict: true``
schema the way OpenAI does (:func:`strict_schema_problems`).
"""

from __future__ import annotations

import math
import re
from typing import Any

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

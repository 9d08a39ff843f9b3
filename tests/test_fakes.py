"""The fake provider servers, exercised with the REAL clients over HTTP.

Nothing is patched: ChatOpenAI / the openai SDK and ChatGoogleGenerativeAI /
google-genai talk to servers on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage
from langchain_core.utils.json import parse_json_markdown
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from cadsynth.agents.faults import Fault as FaultOf
from cadsynth.agents.faults import classify
from cadsynth.fakes import (
    FakeGemini,
    FakeOpenAI,
    Fault,
    FaultPlan,
    Reply,
    check_image,
    make_png,
    request_target,
    schema_instance,
    strict_schema_problems,
)

KEY = "sk-test-123"
GKEY = "g-test-456"


# --------------------------------------------------------------------------
# Models used in the tests
# --------------------------------------------------------------------------


class Verdict(BaseModel):
    winner: Literal["A", "B", "tie"]
    score: int = Field(ge=1, le=10)
    reasons: list[str]


class Circle(BaseModel):
    kind: Literal["circle"]
    radius: float = Field(gt=0, le=100)


class Polygon(BaseModel):
    kind: Literal["polygon"]
    sides: int = Field(ge=3, le=12)
    labels: list[str] = Field(min_length=3)


class Figure(BaseModel):
    caption: str = Field(min_length=8, max_length=40)
    shape: Annotated[Circle | Polygon, Field(discriminator="kind")]


class Problem(BaseModel):
    """A nested model with a discriminated union, bounds and optionals."""

    title: str = Field(min_length=5)
    difficulty: Literal["easy", "medium", "hard"]
    figures: list[Figure] = Field(min_length=2)
    answer: float = Field(gt=-1, lt=1)
    hint: str | None = None
    tags: list[str] = Field(default_factory=list, max_length=4)


VERDICT = {"winner": "B", "score": 7, "reasons": ["clearer", "correct"]}


def _png_block(png: bytes) -> dict:
    # LangChain v1 standard image content block (langchain_core.messages.content
    # .ImageContentBlock: type="image", base64=..., mime_type=...).
    return {"type": "image", "base64": base64.b64encode(png).decode(), "mime_type": "image/png"}


def _chat(srv: FakeOpenAI, **kw) -> ChatOpenAI:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 5)
    return ChatOpenAI(base_url=srv.base_url, api_key=kw.pop("api_key", KEY),
                      model=kw.pop("model", "gpt-4o-mini"), **kw)


def _gemini(srv: FakeGemini, **kw) -> ChatGoogleGenerativeAI:
    kw.setdefault("max_retries", 1)  # google-genai: attempts incl. the first one
    kw.setdefault("timeout", 5)
    return ChatGoogleGenerativeAI(model=kw.pop("model", "gemini-2.5-flash"),
                                  api_key=kw.pop("api_key", GKEY), base_url=srv.base_url,
                                  vertexai=False, **kw)


# --------------------------------------------------------------------------
# Schema walker (no server)
# --------------------------------------------------------------------------


def test_schema_instance_valid_for_nested_discriminated_union():
    inst = schema_instance(Problem.model_json_schema())
    p = Problem.model_validate(inst)
    assert len(p.figures) == 2 and p.difficulty == "easy"
    assert isinstance(p.figures[0].shape, (Circle, Polygon))
    assert -1 < p.answer < 1 and 8 <= len(p.figures[0].caption) <= 40


def test_schema_instance_handles_strict_sdk_schema_and_keywords():
    from openai.lib._pydantic import to_strict_json_schema

    strict = to_strict_json_schema(Problem)  # what the SDK sends for json_schema
    assert strict_schema_problems(strict) == []
    Problem.model_validate(schema_instance(strict))
    odd = {
        "type": "object",
        "required": ["ids", "n", "x", "pick", "ts", "code"],
        "properties": {
            "ids": {"type": "array", "items": {"enum": ["a", "b", "c"]},
                    "minItems": 3, "uniqueItems": True},
            "n": {"type": "integer", "exclusiveMinimum": 5, "multipleOf": 4},
            "x": {"type": ["number", "null"], "minimum": 2.5, "maximum": 3},
            "pick": {"allOf": [{"$ref": "#/definitions/P"}]},
            "ts": {"type": "string", "format": "date-time"},
            "code": {"type": "string", "pattern": "^[A-Z][0-9]$"},
        },
        "definitions": {"P": {"type": "object", "required": ["ok"],
                              "properties": {"ok": {"const": True}}}},
    }
    v = schema_instance(odd)
    assert v["ids"] == ["a", "b", "c"] and v["n"] == 8 and 2.5 <= v["x"] <= 3
    assert v["pick"] == {"ok": True} and v["ts"].startswith("2024") and v["code"] == "A1"
    # Gemini OpenAPI-style upper-case types
    assert schema_instance({"type": "OBJECT", "required": ["a"],
                            "properties": {"a": {"type": "INTEGER", "minimum": 3}}}) == {"a": 3}


def test_fault_plan_is_deterministic_and_queue_first():
    a = FaultPlan(rate=0.5, seed=7, kinds=("429", "500", "hang"))
    b = FaultPlan(rate=0.5, seed=7, kinds=("429", "500", "hang"))
    seq_a = [getattr(a.draw(), "kind", None) for _ in range(40)]
    assert seq_a == [getattr(b.draw(), "kind", None) for _ in range(40)]
    assert 5 < sum(k is not None for k in seq_a) < 35
    q = FaultPlan(queue=["503", Fault("429", retry_after=2)], retry_after=9)
    assert q.pending == 2
    first, second = q.draw(), q.draw()
    assert (first.kind, first.retry_after, second.kind, second.retry_after) == ("503", 9, "429", 2)
    assert q.draw() is None
    with pytest.raises(ValueError):
        Fault("418")


# --------------------------------------------------------------------------
# OpenAI-compatible fake
# --------------------------------------------------------------------------


def test_openai_plain_invoke_usage_and_bearer_key():
    with FakeOpenAI(lambda body: "hello from the fake", api_key=KEY) as srv:
        msg = _chat(srv).invoke("Say hi")
        assert msg.content == "hello from the fake"
        assert msg.usage_metadata["input_tokens"] > 0
        assert msg.usage_metadata["output_tokens"] == 5  # ceil(19 chars / 4)
        assert msg.usage_metadata["total_tokens"] == (
            msg.usage_metadata["input_tokens"] + msg.usage_metadata["output_tokens"])
        assert msg.response_metadata["finish_reason"] == "stop"
        rec = srv.last_request
        assert rec.route == "chat.completions" and rec.model == "gpt-4o-mini"
        assert rec.headers["authorization"] == f"Bearer {KEY}" and rec.api_key == KEY
        assert rec.has_images is False and rec.response_format is None and rec.mode == "text"

        with pytest.raises(openai.AuthenticationError):
            _chat(srv, api_key="sk-wrong").invoke("Say hi")
        assert srv.stats.snapshot()["rejected"] == 1


def test_openai_default_structured_output_method_is_json_schema():
    with FakeOpenAI(lambda body: VERDICT) as srv:
        out = _chat(srv).with_structured_output(Verdict).invoke("judge")
        assert out == Verdict(**VERDICT)
        body = srv.last_request.body
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["strict"] is True
        assert "tools" not in body and srv.last_request.stream is False


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_openai_structured_output_round_trip(method):
    seen = []

    def responder(body):
        seen.append(request_target(body))
        return VERDICT

    with FakeOpenAI(responder) as srv:
        llm = _chat(srv).with_structured_output(Verdict, method=method)
        out = llm.invoke("Judge A vs B; answer in JSON")
        assert out == Verdict(**VERDICT)
        rec = srv.last_request
        if method == "json_schema":
            assert rec.response_format == "json_schema" and rec.mode == "json_schema"
            assert seen[0].name == "Verdict" and "winner" in seen[0].schema["properties"]
        elif method == "function_calling":
            assert rec.mode == "tool" and rec.response_format is None
            assert rec.tool_choice == {"type": "function", "function": {"name": "Verdict"}}
            assert rec.body["tools"][0]["function"]["name"] == "Verdict"
        else:
            assert rec.response_format == "json_object" and seen[0].schema is None


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_openai_default_responder_fills_nested_union_schema(method):
    with FakeOpenAI() as srv:
        out = _chat(srv).with_structured_output(Problem, method=method).invoke("make a problem")
        assert isinstance(out, Problem) and len(out.figures) == 2
        assert srv.stats.snapshot()["errors"] == []


def test_openai_a_lesser_model_refuses_images_json_schema_and_tools_as_real_servers_do():
    """A text-only model, one without Structured Outputs, one without tools: each refusal is the
    400 body the real server sends, and what it still takes is answered."""
    png = make_png(16, 12, "diagram")
    with FakeOpenAI(lambda body: VERDICT, vision=False, response_formats=("text", "json_object"), tools=False) as srv:
        with pytest.raises(openai.BadRequestError) as refused:
            _chat(srv).invoke([HumanMessage(content=[{"type": "text", "text": "Describe"}, _png_block(png)])])
        assert refused.value.body == {
            "message": "Invalid content type. image_url is only supported by certain models.",
            "type": "invalid_request_error", "param": "messages.[0].content.[1].type", "code": None,
        }
        with pytest.raises(openai.BadRequestError) as refused:
            _chat(srv).with_structured_output(Verdict, method="json_schema").invoke("judge")
        assert refused.value.body["param"] == "response_format"
        assert "'response_format' of type 'json_schema' is not supported with this model" in refused.value.body["message"]
        with pytest.raises(openai.BadRequestError) as refused:
            _chat(srv).with_structured_output(Verdict, method="function_calling").invoke("judge")
        assert refused.value.body["message"] == "gpt-4o-mini does not support tools"
        assert _chat(srv).with_structured_output(Verdict, method="json_mode").invoke("answer in JSON") == Verdict(**VERDICT)
        assert srv.stats.snapshot()["rejected"] == 3


def test_openai_image_block_arrives_as_png_data_url():
    png = make_png(16, 12, "diagram")
    with FakeOpenAI() as srv:
        msg = HumanMessage(content=[{"type": "text", "text": "Describe"}, _png_block(png)])
        _chat(srv).invoke([msg])
        rec = srv.last_request
        part = rec.body["messages"][0]["content"][1]
        assert part["type"] == "image_url"
        assert part["image_url"]["url"].startswith("data:image/png;base64,")
        assert rec.has_images and rec.image_sha256 == [hashlib.sha256(png).hexdigest()]
        assert rec.image_mime == ["image/png"]

        # a strict server refuses bytes that are not the PNG they claim to be
        fake = {"type": "image", "base64": base64.b64encode(b"GIF89a....").decode(),
                "mime_type": "image/png"}
        with pytest.raises(openai.BadRequestError, match="Invalid image"):
            _chat(srv).invoke([HumanMessage(content=[fake])])
        assert srv.last_request.error and srv.last_request.status == 400


def test_openai_429_retry_after_reaches_client():
    with FakeOpenAI(faults=[Fault("429", retry_after=7)]) as srv:
        with pytest.raises(openai.RateLimitError) as ei:
            _chat(srv).invoke("hi")
        assert ei.value.response.status_code == 429
        assert ei.value.response.headers["retry-after"] == "7"
        assert ei.value.code == "rate_limit_exceeded"
        assert srv.fault_counts == {"429": 1} and srv.request_count == 1

        # with retries the SDK honours the (short) Retry-After and then succeeds
        srv.inject(Fault("429", retry_after=0.05), "503")
        t0 = time.monotonic()
        assert _chat(srv, max_retries=2).invoke("hi").content
        assert time.monotonic() - t0 < 3
        assert srv.fault_counts == {"429": 2, "503": 1} and srv.request_count == 4
        assert [r.headers["x-stainless-retry-count"] for r in srv.requests[1:]] == ["0", "1", "2"]


@pytest.mark.parametrize("kind, exc", [("500", openai.InternalServerError),
                                       ("503", openai.InternalServerError),
                                       ("drop", openai.APIConnectionError)])
def test_openai_server_errors(kind, exc):
    with FakeOpenAI(faults=[kind]) as srv:
        with pytest.raises(exc):
            _chat(srv).invoke("hi")
        assert srv.fault_counts == {kind: 1}


def test_openai_hang_exceeds_client_timeout():
    with FakeOpenAI(faults=FaultPlan(queue=["hang"], hang_seconds=10)) as srv:
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            _chat(srv, timeout=0.5).invoke("hi")
        assert time.monotonic() - t0 < 3
        assert srv.fault_counts == {"hang": 1}
    # leaving the block stops the server even though a handler is still "hanging"


def test_openai_content_faults_malformed_and_fenced():
    with FakeOpenAI(lambda body: VERDICT, faults=["malformed", "fenced", "empty"]) as srv:
        structured = _chat(srv).with_structured_output(Verdict, method="json_schema")
        with pytest.raises(Exception):  # noqa: B017 - the SDK's JSON/pydantic error
            structured.invoke("judge")
        fenced = _chat(srv).invoke("judge").content
        assert fenced.startswith("Sure!") and "```json" in fenced
        assert parse_json_markdown(fenced) == VERDICT
        assert _chat(srv).invoke("judge").content == ""
        assert srv.fault_counts == {"malformed": 1, "fenced": 1, "empty": 1}


def test_openai_fault_rate_counters_under_concurrency():
    plan = FaultPlan(rate=0.5, seed=3, kinds=("500", "malformed"))
    with FakeOpenAI(faults=plan) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)

        def call(i):
            try:
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}])
                return "ok"
            except openai.InternalServerError:
                return "500"

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(call, range(24)))
        snap = srv.stats.snapshot()
        assert snap["requests"] == 24 and snap["by_route"] == {"chat.completions": 24}
        assert snap["faults"].get("500", 0) == results.count("500")
        assert 0 < snap["faults_total"] < 24
        assert sum(snap["by_status"].values()) == 24


# langchain-openai's own structured streaming trips a pydantic serializer warning
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_openai_streaming_plain_and_structured():
    with FakeOpenAI(lambda body: VERDICT if body.get("response_format") else "one two three") as srv:
        llm = _chat(srv, stream_usage=True)
        chunks = list(llm.stream("count"))
        assert "".join(c.content for c in chunks) == "one two three" and len(chunks) > 3
        total = sum(chunks[1:], chunks[0])
        assert total.usage_metadata["output_tokens"] == 4
        assert srv.last_request.stream is True
        parsed = list(llm.with_structured_output(Verdict).stream("judge"))
        assert parsed[-1] == Verdict(**VERDICT)


async def test_openai_async_client():
    with FakeOpenAI(lambda body: "async ok") as srv:
        msg = await _chat(srv).ainvoke("hi")
        assert msg.content == "async ok"
        assert srv.last_request.headers["x-stainless-async"] != "false"


def test_openai_strict_server_validation():
    with FakeOpenAI() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
        msgs = [{"role": "user", "content": "hello"}]
        loose = {"type": "object", "properties": {"a": {"type": "string"}}}
        with pytest.raises(openai.BadRequestError, match="additionalProperties"):
            client.chat.completions.create(model="m", messages=msgs, response_format={
                "type": "json_schema",
                "json_schema": {"name": "X", "strict": True, "schema": loose}})
        with pytest.raises(openai.BadRequestError, match="word 'json'"):
            client.chat.completions.create(model="m", messages=msgs,
                                           response_format={"type": "json_object"})
        with pytest.raises(openai.BadRequestError, match="data URL"):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
        with pytest.raises(openai.BadRequestError, match="tool"):
            client.chat.completions.create(model="m", messages=[
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "nope", "content": "y"}])
        assert srv.stats.snapshot()["rejected"] == 4
        assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-image-1"]


def test_openai_images_generations():
    with FakeOpenAI() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0)
        a = client.images.generate(model="gpt-image-1", prompt="a red triangle", size="1024x1024")
        b = client.images.generate(model="gpt-image-1", prompt="a blue square", size="1024x1024")
        a2 = client.images.generate(model="gpt-image-1", prompt="a red triangle", size="1024x1024")
        png_a = base64.b64decode(a.data[0].b64_json)
        assert check_image(png_a, "image/png") is None
        assert png_a == base64.b64decode(a2.data[0].b64_json) != base64.b64decode(b.data[0].b64_json)
        from PIL import Image
        import io
        assert Image.open(io.BytesIO(png_a)).size == (1024, 1024)
        url = client.images.generate(model="dall-e-3", prompt="p", size="1024x1792",
                                     response_format="url").data[0].url
        assert httpx.get(url).content[:8] == b"\x89PNG\r\n\x1a\n"
        assert srv.stats.snapshot()["by_route"]["images.generations"] == 4


# --------------------------------------------------------------------------
# Gemini fake, driven by ChatGoogleGenerativeAI (google-genai SDK)
# --------------------------------------------------------------------------


def test_gemini_plain_invoke_usage_and_key():
    with FakeGemini(lambda body: "hi from gemini", api_key=GKEY) as srv:
        msg = _gemini(srv).invoke("Say hi")
        assert msg.content == "hi from gemini"
        assert msg.usage_metadata["output_tokens"] == 4 and msg.usage_metadata["input_tokens"] > 0
        rec = srv.last_request
        assert rec.path == "/v1/models/gemini-2.5-flash:generateContent"  # google-genai >= 3 (v1beta before)
        assert rec.headers["x-goog-api-key"] == GKEY and rec.api_key == GKEY
        with pytest.raises(Exception, match="API key not valid"):
            _gemini(srv, api_key="wrong").invoke("x")


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_gemini_serves_both_api_versions(version):
    with FakeGemini(lambda body: VERDICT) as srv:
        out = _gemini(srv, api_version=version).with_structured_output(Verdict).invoke("judge")
        assert out == Verdict(**VERDICT)
        assert srv.last_request.path == f"/{version}/models/gemini-2.5-flash:generateContent"
        listed = httpx.get(f"{srv.base_url}/{version}/models", headers={"x-goog-api-key": "k"})
        assert listed.json()["models"][0]["name"] == "models/gemini-2.5-flash"
        assert httpx.post(f"{srv.base_url}/v2/models/m:generateContent", json={}).status_code == 404


def test_gemini_structured_output_round_trip_and_default():
    with FakeGemini(lambda body: VERDICT) as srv:
        out = _gemini(srv).with_structured_output(Verdict).invoke("judge")
        assert out == Verdict(**VERDICT)
        cfg = srv.last_request.body["generationConfig"]
        assert cfg["responseMimeType"] == "application/json" and "responseJsonSchema" in cfg
        assert srv.last_request.mode == "json_schema"
    with FakeGemini() as srv:
        out = _gemini(srv).with_structured_output(Problem).invoke("make a problem")
        assert isinstance(out, Problem) and len(out.figures) == 2


def test_gemini_image_block_arrives_as_inline_png():
    png = make_png(10, 10, "gemini")
    with FakeGemini() as srv:
        _gemini(srv).invoke([HumanMessage(content=[{"type": "text", "text": "what"},
                                                   _png_block(png)])])
        rec = srv.last_request
        assert rec.image_sha256 == [hashlib.sha256(png).hexdigest()]
        # the SDK really sends a mix of camelCase and snake_case keys
        assert "inlineData" in rec.body["contents"][0]["parts"][1]


def test_gemini_faults_429_and_hang():
    with FakeGemini(faults=[Fault("429", retry_after=4), "hang"]) as srv:
        with pytest.raises(Exception) as ei:
            _gemini(srv).invoke("hi")
        cause = ei.value.__cause__
        assert type(ei.value).__name__ == "GoogleRateLimitError" and cause.code == 429
        assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "4s"} in (
            cause.details["error"]["details"])
        t0 = time.monotonic()
        with pytest.raises(Exception) as hung:
            _gemini(srv, timeout=0.5).invoke("hi")
        assert time.monotonic() - t0 < 3
        # google-genai raises its transport's timeout: httpx's once, httpx2's (a fork) now.
        assert type(hung.value).__name__ == "ReadTimeout" and classify(hung.value) == FaultOf("timeout")
        assert srv.fault_counts == {"429": 1, "hang": 1}


def test_gemini_streaming_and_image_output():
    with FakeGemini(lambda body: "streamed gemini text") as srv:
        chunks = list(_gemini(srv).stream("go"))
        assert "".join(c.content for c in chunks if isinstance(c.content, str)) == \
            "streamed gemini text"
        total = sum(chunks[1:], chunks[0])
        assert total.usage_metadata["output_tokens"] == 5
        img = _gemini(srv, model="gemini-2.5-flash-image",
                      response_modalities=["TEXT", "IMAGE"]).invoke("draw a cat")
        block = next(b for b in img.content if isinstance(b, dict))
        data = block["image_url"]["url"].split(",", 1)[1]
        assert check_image(base64.b64decode(data), "image/png") is None


def test_gemini_json_wire_names_mixed_case_are_accepted():
    with FakeGemini() as srv:
        r = httpx.post(f"{srv.base_url}/v1beta/models/m:generateContent",
                       headers={"x-goog-api-key": "k"},
                       json={"contents": [{"role": "user", "parts": [{"text": "json please"}]}],
                             "generation_config": {"response_mime_type": "application/json",
                                                   "response_json_schema": Verdict.model_json_schema()}})
        assert r.status_code == 200
        Verdict.model_validate(json.loads(r.json()["candidates"][0]["content"]["parts"][0]["text"]))
        bad = httpx.post(f"{srv.base_url}/v1beta/models/m:generateContent", json={"contents": []})
        assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_reply_object_gives_full_control():
    reply = Reply(content="partial", finish_reason="length")
    with FakeOpenAI(lambda body: reply) as srv:
        msg = _chat(srv).invoke("x")
        assert msg.content == "partial" and msg.response_metadata["finish_reason"] == "length"

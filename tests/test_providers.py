"""Real provider clients, built by the one model factory, against the fake servers over HTTP.

ChatOpenAI, ChatGoogleGenerativeAI and the openai SDK run unpatched; the fakes inject the faults.
What is checked is cadsynth's side: structured output in each mode, the json_text fallback, the
retry policy (Retry-After, 5xx, timeouts), give-up outcomes, limits, painters, keys and the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from cadsynth.agents.calls import CallFailed, ModelCallError
from cadsynth.agents.limits import Window, reserve
from cadsynth.agents.models import missing_keys
from cadsynth.agents.panel import Agent, Panel
from cadsynth.config import RunConfig
from cadsynth.domain import ContextDraft, CritiqueDraft, JudgmentDraft, ProposalDraft
from cadsynth.fakes import Fault, make_png, request_target, request_text, schema_instance
from cadsynth.store.blobs import BlobStore
from cadsynth.store.cache import CallCache
from cadsynth.store.db import async_engine

JUDGMENT = {"answer": "42", "rationale": "Counted the bars.", "confidence": 0.9, "quality": 3}
FAST_RETRY = {"attempts": 4, "base_delay": 0.01, "max_delay": 0.05}
ROLE = "judge"  # what a call that gives up does: a judge abstains, any other role drops


def make_agent(
    server: Any,
    tmp_path: Path,
    *,
    provider: str = "openai",
    model: str = "gpt-4o",
    mode: str = "json_schema",
    timeout: float = 5.0,
    retry: dict[str, Any] | None = None,
    limits: list[dict[str, Any]] | None = None,
    roles: list[str] | None = None,
    cache: CallCache | None = None,
) -> Agent:
    key_env = "CADS_TEST_OPENAI_KEY" if provider == "openai" else "CADS_TEST_GEMINI_KEY"
    agent = {
        "name": "a1",
        "provider": provider,
        "model": model,
        "base_url": server.base_url,
        "api_key_env": key_env,
        "roles": roles or ["proposer", "judge"],
        "structured_output": mode,
        "timeout": timeout,
    }
    panel = [agent] if roles is None else [agent, {"name": "s1", "provider": "sim", "model": "sim", "roles": ["proposer", "judge"]}]
    config = RunConfig.model_validate(
        {"panel": panel, "adversary": False, "retry": retry or FAST_RETRY, "limits": limits or []}
    )
    return Panel(config, cache=cache, images=BlobStore(tmp_path / "data"))["a1"]


async def ask(agent: Agent, schema: type = JudgmentDraft, images: list[bytes] | None = None, role: str = ROLE) -> Any:
    return await agent._ask(schema, "Answer the question about the image.", images or [], role=role)


def fenced(obj: Any) -> str:
    return f"Sure! Here is my answer.\n\n```json\n{json.dumps(obj, indent=2)}\n```\nAnything else?"


# --- structured output in each mode -------------------------------------------------------


@pytest.mark.parametrize("mode", ["json_schema", "function_calling", "json_text"])
async def test_openai_structured_output_in_each_mode(fake_openai, tmp_path, mode):
    fake_openai.responder = lambda body: fenced(JUDGMENT) if mode == "json_text" else JUDGMENT
    png = make_png(16, 16, "chart")
    reply = await ask(make_agent(fake_openai, tmp_path, mode=mode), images=[png])
    assert reply.value == JudgmentDraft(**JUDGMENT)
    assert [(a.fault, a.outcome) for a in reply.attempts] == [(None, None)]
    assert reply.usage.input_tokens > 0 and reply.attempts[0].cost_usd > 0  # gpt-4o is priced by default
    rec = fake_openai.last_request
    assert rec.image_sha256 == [hashlib.sha256(png).hexdigest()]
    if mode == "json_schema":
        rf = rec.body["response_format"]
        assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    elif mode == "function_calling":
        assert rec.mode == "tool" and rec.body["tools"][0]["function"]["name"] == "JudgmentDraft"
    else:
        assert "response_format" not in rec.body and "tools" not in rec.body
        assert "JudgmentDraft" in request_text(rec.body) and '"confidence"' in request_text(rec.body)


@pytest.mark.parametrize("mode", ["json_schema", "function_calling", "json_text"])
async def test_gemini_structured_output_in_each_mode(fake_gemini, tmp_path, mode):
    fake_gemini.responder = lambda body: fenced(JUDGMENT) if mode == "json_text" else JUDGMENT
    png = make_png(16, 16, "gemini")
    agent = make_agent(fake_gemini, tmp_path, provider="google", model="gemini-2.5-flash", mode=mode)
    reply = await ask(agent, images=[png])
    assert reply.value == JudgmentDraft(**JUDGMENT)
    rec = fake_gemini.last_request
    assert rec.image_sha256 == [hashlib.sha256(png).hexdigest()]
    assert rec.mode == {"json_schema": "json_schema", "function_calling": "tool", "json_text": "text"}[mode]


async def test_gemini_function_calling_declares_schemas_without_warnings(fake_gemini, fake_openai, tmp_path, caplog):
    """Gemini's function declarations have no additionalProperties; OpenAI's strict tools need it."""
    fake_gemini.responder = fake_openai.responder = lambda body: JUDGMENT
    gemini = make_agent(fake_gemini, tmp_path, provider="google", model="gemini-2.5-flash", mode="function_calling")
    with caplog.at_level(logging.WARNING):
        reply = await ask(gemini)
        for schema in (ProposalDraft, CritiqueDraft, ContextDraft):  # $defs and nested objects too
            gemini.model.with_structured_output(schema, method="function_calling")
    assert reply.value == JudgmentDraft(**JUDGMENT)
    assert [r.getMessage() for r in caplog.records if "not supported in schema" in r.getMessage()] == []
    declared = fake_gemini.last_request.body["tools"][0]["functionDeclarations"][0]
    assert declared["name"] == "JudgmentDraft" and "additionalProperties" not in json.dumps(declared)
    assert set(declared["parameters"]["required"]) == set(JudgmentDraft.model_fields)
    await ask(make_agent(fake_openai, tmp_path, mode="function_calling"))
    assert fake_openai.last_request.body["tools"][0]["function"]["parameters"]["additionalProperties"] is False


@pytest.mark.parametrize("schema", [ProposalDraft, CritiqueDraft, JudgmentDraft, ContextDraft])
async def test_every_draft_schema_passes_strict_json_schema(fake_openai, tmp_path, schema):
    """The fake rejects what OpenAI's strict mode rejects; the schemas must not need strict off."""
    seen: list[dict] = []

    def responder(body: dict) -> Any:
        target = request_target(body)
        seen.append(target.schema)
        return schema_instance(target.schema)

    fake_openai.responder = responder
    reply = await ask(make_agent(fake_openai, tmp_path), schema=schema)
    assert isinstance(reply.value, schema)
    assert fake_openai.stats.snapshot()["rejected"] == 0
    sent = json.dumps(seen[0])
    # OpenAI strict mode also refuses these keywords (pydantic emits them for unions and defaults).
    assert '"oneOf"' not in sent and '"discriminator"' not in sent and '"default"' not in sent


async def test_json_text_reasks_once_with_the_parse_error(fake_openai, tmp_path):
    answers = iter(['{"answer": "42", "rationale": "cut off', fenced(JUDGMENT)])
    fake_openai.responder = lambda body: next(answers)
    reply = await ask(make_agent(fake_openai, tmp_path, mode="json_text"))
    assert reply.value.answer == "42"
    assert [(a.fault, a.outcome) for a in reply.attempts] == [("malformed", "retried"), (None, None)]
    second = fake_openai.requests[-1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"].startswith('{"answer": "42"')
    assert "could not be used: invalid JSON" in second[2]["content"]


async def test_json_text_gives_up_after_one_reask(fake_openai, tmp_path):
    fake_openai.responder = lambda body: "I would rather not answer in JSON."
    with pytest.raises(CallFailed) as failed:
        await ask(make_agent(fake_openai, tmp_path, mode="json_text"))
    assert [(a.fault, a.outcome) for a in failed.value.attempts] == [("malformed", "retried"), ("malformed", "abstained")]
    assert fake_openai.request_count == 2


async def test_structured_mode_treats_a_fenced_answer_as_malformed_and_asks_again(fake_openai, tmp_path):
    fake_openai.responder = lambda body: JUDGMENT
    fake_openai.inject("fenced")
    reply = await ask(make_agent(fake_openai, tmp_path, mode="json_schema"))
    assert [(a.fault, a.outcome) for a in reply.attempts] == [("malformed", "retried"), (None, None)]
    assert reply.attempts[0].usage.input_tokens > 0  # a 200 that could not be parsed was still billed


# --- retries -----------------------------------------------------------------------------------


async def test_retry_after_is_honoured(fake_openai, tmp_path):
    fake_openai.responder = lambda body: JUDGMENT
    fake_openai.inject(Fault("429", retry_after=0.6))
    t0 = time.monotonic()
    reply = await ask(make_agent(fake_openai, tmp_path))
    elapsed = time.monotonic() - t0
    assert 0.6 <= elapsed < 3.0  # base_delay is 0.01 s: only Retry-After explains the wait
    assert [(a.fault, a.outcome) for a in reply.attempts] == [("rate_limited", "retried"), (None, None)]
    first, second = fake_openai.requests
    assert second.started - first.started >= 0.6
    assert "x-stainless-retry-count" not in second.headers or second.headers["x-stainless-retry-count"] == "0"


async def test_gemini_retry_info_delay_is_honoured(fake_gemini, tmp_path):
    fake_gemini.responder = lambda body: JUDGMENT
    fake_gemini.inject(Fault("429", retry_after=0.5))
    agent = make_agent(fake_gemini, tmp_path, provider="google", model="gemini-2.5-flash")
    t0 = time.monotonic()
    reply = await ask(agent)
    assert time.monotonic() - t0 >= 0.5
    assert [a.fault for a in reply.attempts] == ["rate_limited", None]
    assert fake_gemini.request_count == 2  # google-genai made no retry of its own


async def test_server_errors_are_retried_then_succeed(fake_openai, tmp_path):
    fake_openai.responder = lambda body: JUDGMENT
    fake_openai.inject("500", "503", "drop")
    reply = await ask(make_agent(fake_openai, tmp_path))
    # A connection closed without an answer is no 5xx: the endpoint did not answer at all.
    expected = [("server_error", "retried")] * 2 + [("unreachable", "retried"), (None, None)]
    assert [(a.fault, a.outcome) for a in reply.attempts] == expected
    assert fake_openai.request_count == 4


async def test_a_hang_hits_the_timeout_and_is_retried(fake_openai, tmp_path):
    fake_openai.responder = lambda body: JUDGMENT
    fake_openai.inject(Fault("hang", hang_seconds=10))
    t0 = time.monotonic()
    reply = await ask(make_agent(fake_openai, tmp_path, timeout=0.4))
    assert time.monotonic() - t0 < 3.0
    assert [(a.fault, a.outcome) for a in reply.attempts] == [("timeout", "retried"), (None, None)]


async def test_a_judge_that_keeps_failing_abstains_and_others_drop(fake_openai, tmp_path):
    fake_openai.faults = ["500"] * 8
    agent = make_agent(fake_openai, tmp_path, retry={"attempts": 3, "base_delay": 0.01, "max_delay": 0.02})
    with pytest.raises(CallFailed) as judged:
        await ask(agent)
    assert [a.outcome for a in judged.value.attempts] == ["retried", "retried", "abstained"]
    with pytest.raises(CallFailed) as proposed:
        await ask(agent, role="propose")
    assert [a.outcome for a in proposed.value.attempts][-1] == "dropped"
    assert fake_openai.request_count == 6


async def test_a_rejected_key_is_fatal_and_not_retried(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("CADS_TEST_OPENAI_KEY", "sk-wrong-key")
    with pytest.raises(ModelCallError, match="AuthenticationError"):
        await ask(make_agent(fake_openai, tmp_path))
    assert fake_openai.request_count == 1


# --- limits ------------------------------------------------------------------------------------


def test_rpm_lets_a_seconds_share_go_at_once_and_no_more(fake_openai, tmp_path):
    fake_openai.responder = lambda body: JUDGMENT
    agent = make_agent(fake_openai, tmp_path, limits=[{"provider": "openai", "model": "gpt-4o", "rpm": 300}])

    async def burst() -> None:
        await asyncio.gather(*(agent._ask(JudgmentDraft, f"q{i}", [], role=ROLE) for i in range(12)))

    asyncio.run(burst())
    starts = sorted(r.started for r in fake_openai.requests)
    assert len(starts) == 12
    # 300 rpm is 5 a second: the first five leave together, and no second ever holds more.
    assert starts[4] - starts[0] < 0.5
    busiest = max(sum(1 for t in starts[i:] if t < start + 0.95) for i, start in enumerate(starts))
    assert busiest == 5
    assert starts[-1] - starts[0] >= 1.9  # the third five waits two seconds


def test_concurrency_bounds_requests_in_flight(fake_openai, tmp_path):
    fake_openai.responder = lambda body: JUDGMENT
    fake_openai.latency = 0.3
    agent = make_agent(fake_openai, tmp_path, limits=[{"provider": "openai", "model": "gpt-4o", "concurrency": 2}])

    async def burst() -> None:
        await asyncio.gather(*(agent._ask(JudgmentDraft, f"q{i}", [], role=ROLE) for i in range(6)))

    t0 = time.monotonic()
    asyncio.run(burst())
    assert fake_openai.stats.snapshot()["max_in_flight"] == 2
    assert time.monotonic() - t0 >= 0.85  # three waves of two


def test_agents_on_one_model_share_its_limit(fake_openai, tmp_path):
    fake_openai.responder = lambda body: JUDGMENT
    fake_openai.latency = 0.2
    limits = [{"provider": "openai", "model": "gpt-4o", "concurrency": 1}]
    one = make_agent(fake_openai, tmp_path, limits=limits)
    other = make_agent(fake_openai, tmp_path, limits=limits, roles=["judge"])

    async def both() -> None:
        await asyncio.gather(*(a._ask(JudgmentDraft, f"q{i}", [], role=ROLE) for i in range(3) for a in (one, other)))

    asyncio.run(both())
    assert fake_openai.stats.snapshot()["max_in_flight"] == 1


def test_token_window_waits_for_room_and_settles_to_real_usage():
    async def go() -> float:
        window = Window(1000, span=0.5)
        [first] = await reserve((window, 800))
        window.settle(first, 900)  # the provider counted more than estimated
        t0 = time.monotonic()
        await reserve((window, 200))  # 900 + 200 > 1000: waits until the first leaves the window
        return time.monotonic() - t0

    assert 0.3 <= asyncio.run(go()) < 1.5


# --- painters ------------------------------------------------------------------------------------


def test_openai_images_paint_into_the_blob_store(fake_openai, tmp_path):
    agent = make_agent(fake_openai, tmp_path, model="gpt-image-1", roles=["painter"])
    fake_openai.inject("malformed")  # half a PNG: unusable, asked again
    reply = asyncio.run(agent.paint("a red triangle on white"))
    png = BlobStore(tmp_path / "data").get(reply.value)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert [(a.fault, a.outcome) for a in reply.attempts] == [("malformed", "retried"), (None, None)]
    assert fake_openai.last_request.route == "images.generations"


def test_gemini_image_model_paints(fake_gemini, tmp_path):
    agent = make_agent(fake_gemini, tmp_path, provider="google", model="gemini-2.5-flash-image", roles=["painter"])
    reply = asyncio.run(agent.paint("a blue square"))
    assert BlobStore(tmp_path / "data").get(reply.value)[:4] == b"\x89PNG"
    assert fake_gemini.last_request.body["generationConfig"]["responseModalities"] == ["TEXT", "IMAGE"]


# --- keys and cache --------------------------------------------------------------------------------


def test_every_missing_key_is_reported(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("NOPE_GEMINI", raising=False)
    config = RunConfig.model_validate(
        {
            "adversary": False,
            "panel": [
                {"name": "gpt", "provider": "openai", "model": "gpt-4o", "roles": ["proposer"]},
                {"name": "gem", "provider": "google", "model": "gemini-2.5-pro", "api_key_env": "NOPE_GEMINI", "roles": ["judge"]},
                {"name": "qwen", "provider": "openai", "model": "qwen", "base_url": "http://127.0.0.1:9/v1", "roles": ["judge"]},
                {"name": "sim", "provider": "sim", "model": "sim", "roles": ["judge"]},
            ],
        }
    )
    lines = missing_keys(config)
    assert len(lines) == 2
    assert "'gpt'" in lines[0] and "OPENAI_API_KEY" in lines[0]
    assert "'gem'" in lines[1] and "NOPE_GEMINI" in lines[1]


def test_an_identical_call_is_answered_from_the_cache(fake_openai, tmp_path):
    fake_openai.responder = lambda body: JUDGMENT

    async def go() -> list[Any]:
        engine = async_engine(f"sqlite:///{tmp_path / 'cache.db'}")
        try:
            agent = make_agent(fake_openai, tmp_path, cache=CallCache(engine))
            png = make_png(8, 8, "same")
            first = await agent._ask(JudgmentDraft, "same prompt", [png], role=ROLE)
            again = await agent._ask(JudgmentDraft, "same prompt", [png], role=ROLE)
            other = await agent._ask(JudgmentDraft, "same prompt", [make_png(8, 8, "other")], role=ROLE)
            return [first, again, other]
        finally:
            await engine.dispose()

    first, again, other = asyncio.run(go())
    assert again.value == first.value and again.cached and not first.cached
    assert again.attempts[0].cost_usd == 0 and again.usage.input_tokens == 0
    assert not other.cached  # another image is another call
    assert fake_openai.request_count == 2

"""`cads check` against the fake providers over HTTP: a healthy panel passes; an unreachable endpoint,
a rejected key, a server refusing images and one without JSON-schema support each get their line
and the config change that fixes them; the check's requests are in the ledger, priced."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from cadsynth.fakes import request_target, request_text, schema_instance
from tests.conftest import FAKE_GEMINI_KEY, FAKE_OPENAI_KEY
from tests.helpers import cads, stats

RETRY = {"attempts": 3, "base_delay": 0.01, "max_delay": 0.05}
VEGA = {"name": "vega", "provider": "sim", "model": "sim-strong", "roles": ["proposer", "judge", "adversary"]}
PRICE = {"qwen2.5-vl": {"input": 0.5, "output": 1.5}}  # a local model, priced so its calls cost something


def qwen(base_url: str, **changes: Any) -> dict[str, Any]:
    """An OpenAI-compatible server's agent in every role a chat model plays."""
    agent = {
        "name": "qwen", "provider": "openai", "model": "qwen2.5-vl", "base_url": base_url,
        "api_key_env": "CADS_TEST_OPENAI_KEY", "roles": ["proposer", "critic", "judge", "adversary"],
    }
    return agent | changes


def check(work: Path, *panel: dict[str, Any], env: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """`cads check` of a config with this panel: its exit status, its line per agent, and its run
    (the last line names it)."""
    (work / "panel.yaml").write_text(yaml.safe_dump({"panel": list(panel), "retry": RETRY, "prices": PRICE}))
    done = cads("check", "panel.yaml", cwd=work, check=False, env=env)
    assert done.stderr == "", done.stderr
    *lines, summary = done.stdout.strip().splitlines()
    by_agent = {re.match(r"[✓✗] (\S+) ", line).group(1): line for line in lines}  # type: ignore[union-attr]
    assert list(by_agent) == [a["name"] for a in panel], done.stdout
    run = re.search(r"are in run (check-\S+) ", summary).group(1)  # type: ignore[union-attr]
    return done.returncode, by_agent, run


def test_a_healthy_panel_passes_and_its_requests_are_priced_in_the_ledger(fake_openai, fake_gemini, tmp_path):
    gemini = {
        "name": "gemini", "provider": "google", "model": "gemini-2.5-flash", "base_url": fake_gemini.base_url,
        "api_key_env": "CADS_TEST_GEMINI_KEY", "roles": ["proposer", "critic", "judge"],
    }
    artist = {"name": "artist", "provider": "openai", "model": "gpt-image-1", "base_url": fake_openai.base_url,
              "api_key_env": "CADS_TEST_OPENAI_KEY", "roles": ["painter"]}
    code, lines, run = check(tmp_path, qwen(fake_openai.base_url, model="gpt-4o-mini"), gemini, artist, VEGA)

    assert code == 0, lines
    assert lines["qwen"].startswith(
        f"✓ qwen (openai gpt-4o-mini @ {fake_openai.base_url}): reachable, key accepted, images accepted, json_schema parsed; "
    )
    assert lines["gemini"].startswith(
        f"✓ gemini (google gemini-2.5-flash @ {fake_gemini.base_url}): reachable, key accepted, images accepted, "
        "json_schema parsed; "
    )
    assert lines["artist"].startswith(f"✓ artist (openai gpt-image-1 @ {fake_openai.base_url}): reachable, key accepted, image drawn; ")
    assert lines["vega"].startswith("✓ vega (sim sim-strong): reachable, images accepted, json_schema parsed; ")
    assert all(" — " not in line for line in lines.values())  # nothing to fix
    # One request per role, each in the agent's mode, an image where the role sees one.
    chats = [r for r in fake_openai.requests if r.route == "chat.completions"]
    assert sorted(r.mode for r in chats) == ["json_schema"] * 4
    assert sorted(r.has_images for r in chats) == [False, True, True, True]  # the adversary sees none
    assert {r.mode for r in fake_gemini.requests} == {"json_schema"} and len(fake_gemini.requests) == 3
    assert [r.route for r in fake_openai.requests if r.route != "chat.completions"] == ["images.generations"]

    recorded = stats(run, tmp_path)
    assert recorded["status"] == "done" and recorded["model_calls"] == 4 + 3 + 1 + 3
    assert recorded["cost"]["usd"] > 0 and recorded["cost"]["input_tokens"] > 0
    priced = sum(float(line.rpartition(", $")[2]) for line in lines.values())  # each line's own cost
    assert priced == pytest.approx(recorded["cost"]["usd"], abs=5e-4)
    # A check's run holds requests, not a debate: nothing to resume.
    resumed = cads("resume", run, cwd=tmp_path, check=False)
    assert resumed.returncode == 2 and "has finished" in resumed.stderr
    # The keys went to the servers and nowhere else.
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("cads.db*"))
    assert FAKE_OPENAI_KEY.encode() not in stored and FAKE_GEMINI_KEY.encode() not in stored


def test_the_simulated_panel_passes_the_same_way(tmp_path):
    done = cads("check", cwd=tmp_path)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("✓ sim-") for line in lines[:4])
    assert lines[-1].startswith("4 of 4 agents pass")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_endpoint_says_start_the_server_or_fix_base_url(tmp_path, monkeypatch):
    monkeypatch.setenv("CADS_TEST_OPENAI_KEY", FAKE_OPENAI_KEY)
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    code, lines, run = check(tmp_path, qwen(url), VEGA)

    assert code == 1
    assert lines["qwen"] == (
        f"✗ qwen (openai qwen2.5-vl @ {url}): unreachable (connection refused, 2 requests) — "
        f"start the server at {url}, or fix `base_url` for agent qwen"
    )
    assert lines["vega"].startswith("✓ vega ")  # the rest of the panel is still checked
    assert stats(run, tmp_path)["faults"]["unreachable"] == 2  # a check makes two requests a call at most


def test_a_server_that_never_answers_in_time_is_told_to_raise_timeout(fake_openai, tmp_path):
    fake_openai.inject("hang", "hang")
    code, lines, run = check(tmp_path, qwen(fake_openai.base_url, timeout=0.5), VEGA)
    assert code == 1
    assert lines["qwen"] == (
        f"✗ qwen (openai qwen2.5-vl @ {fake_openai.base_url}): no answer: timeout after 2 requests — "
        f"raise `timeout` for agent qwen (now 0.5), or check the server at {fake_openai.base_url}"
    )
    assert stats(run, tmp_path)["faults"]["timeout"] == 2


@pytest.mark.parametrize("provider", ["openai", "google"])
def test_a_rejected_key_says_which_variable_to_fix(fake_openai, fake_gemini, tmp_path, provider):
    server, var = (fake_openai, "CADS_TEST_OPENAI_KEY") if provider == "openai" else (fake_gemini, "CADS_TEST_GEMINI_KEY")
    agent = qwen(server.base_url, provider=provider, model="gemini-2.5-flash" if provider == "google" else "qwen2.5-vl", api_key_env=var)
    code, lines, _ = check(tmp_path, agent, VEGA, env={var: "sk-revoked-9876"})

    said = {
        "openai": "key rejected (401: Incorrect API key provided: ...9876.)",
        "google": "key rejected (400: API key not valid. Please pass a valid API key.)",
    }[provider]
    assert code == 1
    assert lines["qwen"] == (
        f"✗ qwen ({provider} {agent['model']} @ {server.base_url}): reachable, {said} — "
        f"put a key {server.base_url} accepts in {var} (or name another variable with `api_key_env` for agent qwen)"
    )
    assert server.request_count == 1  # a rejected key is not asked again
    assert "sk-revoked-9876" not in lines["qwen"]


def test_a_missing_key_is_named_before_anything_is_asked(fake_openai, tmp_path, monkeypatch):
    monkeypatch.delenv("CADS_TEST_OPENAI_KEY")
    code, lines, _ = check(tmp_path, qwen(fake_openai.base_url), VEGA)
    assert code == 1 and fake_openai.request_count == 0
    assert lines["qwen"].endswith(
        ": key missing (CADS_TEST_OPENAI_KEY is not set or empty) — export CADS_TEST_OPENAI_KEY with agent qwen's API key"
    )


def _asked(record: Any) -> tuple[str, bool, int | None]:
    """What a request to the fake asked for: its structured-output mode, whether it had an image, its status."""
    parts = [p for m in record.body["messages"] if isinstance(m["content"], list) for p in m["content"]]
    return request_target(record.body).mode, any(p["type"] == "image_url" for p in parts), record.status


def test_a_server_refusing_images_is_told_to_use_a_vision_model_or_drop_the_roles_that_see_them(fake_openai, tmp_path):
    fake_openai.vision = False
    code, lines, run = check(tmp_path, qwen(fake_openai.base_url, roles=["proposer", "judge"]), VEGA)

    assert code == 1
    said, fix = lines["qwen"].split(" — ")
    assert said.startswith(
        f"✗ qwen (openai qwen2.5-vl @ {fake_openai.base_url}): reachable, key accepted, images refused (400: Invalid content "
        "type. image_url is only supported by certain models.), json_schema parsed without images; "
    )
    assert fix == "give agent qwen a vision model, or take judge out of its roles and set `seed_images: false`"
    # Asked again in the other modes with the image, then in its own mode without it, which worked.
    assert [_asked(r) for r in fake_openai.requests] == [
        ("json_schema", True, 400), ("tool", True, 400), ("text", True, 400), ("json_schema", False, 200),
    ]
    assert stats(run, tmp_path)["cost"]["usd"] > 0  # the answered request is priced


def follows_its_prompt(body: dict[str, Any]) -> Any:
    """A model that answers a structured request, or the JSON schema its prompt ends with (json_text)."""
    target = request_target(body)
    if target.schema is not None:
        return schema_instance(target.schema)
    text = request_text(body)
    return "Here it is:\n```json\n" + json.dumps(schema_instance(json.loads(text[text.rindex("\n{") + 1 :]))) + "\n```"


@pytest.mark.parametrize("tools", [True, False], ids=["with-tools", "without-tools"])
def test_a_server_without_json_schema_is_told_which_mode_works(fake_openai, tmp_path, tools):
    fake_openai.responder = follows_its_prompt
    fake_openai.response_formats = ("text", "json_object")
    fake_openai.tools = tools
    works = "function_calling" if tools else "json_text"
    code, lines, run = check(tmp_path, qwen(fake_openai.base_url), VEGA)

    assert code == 1
    said, fix = lines["qwen"].split(" — ")
    assert said.startswith(
        f"✗ qwen (openai qwen2.5-vl @ {fake_openai.base_url}): reachable, key accepted, images accepted, json_schema refused "
        "(400: Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.), "
        f"{works} parsed; "
    )
    assert fix == f"set `structured_output: {works}` for agent qwen"
    assert stats(run, tmp_path)["cost"]["usd"] > 0

    # The change it suggests is the one that works: every role passes in that mode.
    fake_openai.reset()
    code, lines, _ = check(tmp_path, qwen(fake_openai.base_url, structured_output=works), VEGA)
    assert code == 0, lines
    assert lines["qwen"].startswith(f"✓ qwen (openai qwen2.5-vl @ {fake_openai.base_url}): reachable, key accepted, "
                                    f"images accepted, {works} parsed; ")
    assert fake_openai.stats.snapshot()["rejected"] == 0


def test_a_bad_config_is_one_line_and_exit_2(tmp_path):
    done = cads("check", "nowhere.yaml", cwd=tmp_path, check=False)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: nowhere.yaml: no such config file; pass a YAML file or leave it out for the simulated panel"
    ]
    assert not (tmp_path / "cads.db").exists()

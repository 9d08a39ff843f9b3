"""A hostile panel: a fake OpenAI server whose answers carry what no data set should.

Markup and script, template syntax, NUL and other control characters, bidi overrides, path
traversal, 20,000-character strings and weights for capabilities that do not
exist. The run must end cleanly on SQLite and PostgreSQL; what it keeps is clean text (the markup
stays, as text), oversized answers and unknown names are asked again and, when they keep coming,
given up with their reason recorded; the export holds no control character; the context names
only known capabilities and strategies; the report, opened in Chromium, runs no script.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
import yaml

from cadsynth.domain import CAPABILITIES, STRATEGIES
from cadsynth.fakes import FakeOpenAI
from cadsynth.fakes.panelist import Panelist
from cadsynth.fakes.responders import request_target, request_text
from cadsynth.text import UNSAFE, clean
from tests.helpers import cads

KEY_ENV = "CADS_TEST_OPENAI_KEY"
KEY = "sk-hostile-0123456789"
HOSTILE = (
    " <script>alert(1)</script><img src=x onerror=alert(2)> {{7*7}} ${x} %s\x00 \x1b[31mred\x1b[0m"
    " \u202eevil\u202c \u2066iso\u2069 \x07\x7f\x85\x9b ../../etc/passwd Cafe\u0301"
)
HUGE = "A" * 20_000
ALWAYS_TOO_LONG = "r0/gpt/1"  # this proposal's every answer is 20,000 characters: it is given up


class Hostile:
    """Panelist's sensible answers, each made hostile. A request's first answer is refused for
    size (proposals, critiques) or for an unknown weight (the adversary); asked again, it passes."""

    def __init__(self) -> None:
        self.panel = Panelist()
        self.asked: Counter[str] = Counter()

    def __call__(self, body: dict[str, Any]) -> Any:
        # A json_text re-ask carries the bad answer and the error after the prompt: the prompt decides.
        first = {**body, "messages": body["messages"][:1]}
        text = request_text(first)
        self.asked[f"{body.get('model')}|{text}"] += 1
        again = self.asked[f"{body.get('model')}|{text}"] > 1
        target = request_target(body)
        name = target.name if target.schema is not None else re.search(r"a `(\w+Draft)`", text).group(1)  # type: ignore[union-attr]
        answer = self.panel(first)
        if name == "ProposalDraft" and "You proposed the problem below" not in text:
            truth = self.panel.truths[answer["question"]]
            answer["question"] += HOSTILE
            answer["visual_prompt"] += HOSTILE
            answer["solution"] += HOSTILE
            self.panel.truths[clean(answer["question"])] = truth  # how the judges will see it
            key = re.search(r"Write ONE new problem \((\S+)\)", text).group(1)  # type: ignore[union-attr]
            if key == ALWAYS_TOO_LONG or not again:
                answer["solution"] = HUGE
        elif name in ("CritiqueDraft", "ConsistencyCritiqueDraft"):
            answer["issues"] = [HUGE] if not again else [*answer["issues"], "Check the labels." + HOSTILE]
        elif name == "JudgmentDraft":
            answer["answer"] = f"\u202e{answer['answer']}\x00"  # clean, it still matches the reference
            answer["rationale"] += HOSTILE
        elif name == "ContextDraft":
            answer["guidance"] += HOSTILE
            answer["exemplars"] = [{"question": "Read the bars." + HOSTILE, "why_hard": "{{7*7}}"}]
            if not again:
                answer["capability_weights"][-1] = {"name": "B", "weight": 57.1}
                answer["strategy_weights"][-1] = {"name": "../../etc/passwd", "weight": 9.0}
        return answer


def _config(base_url: str) -> dict[str, Any]:
    common = {"base_url": base_url, "api_key_env": KEY_ENV, "timeout": 5}
    return {
        "rounds": 2,
        "target": 1000,
        "proposals_per_agent": 2,
        "seed": 4,
        "retry": {"attempts": 2, "base_delay": 0.01, "max_delay": 0.05},
        "panel": [
            {"name": "gpt", "provider": "openai", "model": "gpt-4o", "roles": ["proposer", "critic", "judge", "adversary"], **common},
            {"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "structured_output": "function_calling",
             "roles": ["proposer", "critic", "judge"], **common},
            {"name": "local", "provider": "openai", "model": "local-vl", "structured_output": "json_text",
             "roles": ["proposer", "judge"], **common},
        ],
    }


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp(f"hostile-{request.param}")
    db = f"sqlite:///{work / 'cads.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    place = ["--db", db]
    env = {KEY_ENV: KEY}
    with FakeOpenAI(Hostile(), api_key=KEY) as server:
        (work / "panel.yaml").write_text(yaml.safe_dump(_config(server.base_url)))
        cads("run", "panel.yaml", "--run-id", "hostile", *place, cwd=work, env=env)
        failures = server.stats.snapshot()["errors"]
    stats = json.loads(cads("stats", "hostile", "--json", *place, cwd=work).stdout)
    cads("export", "hostile", "--out", "data", *place, cwd=work)
    cads("export", "hostile", "--out", "chat", "--format", "sharegpt", *place, cwd=work)
    cads("report", "hostile", "--out", "report.html", *place, cwd=work)
    return {"work": work, "db": db, "place": place, "stats": stats, "server_errors": failures}


def test_the_run_ends_cleanly_and_keeps_samples(run: dict[str, Any]) -> None:
    s = run["stats"]
    assert s["status"] == "done" and len(s["rounds"]) == 2
    assert run["server_errors"] == []
    assert s["kept"] > 0
    # Every first proposal, critique and context was refused and asked again; one proposal always.
    assert s["faults"]["malformed"] >= s["proposals"] + 1 and s["faults"]["dropped"] >= 1


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [x for v in value for x in _strings(v)]
    return []


def test_the_export_holds_no_control_character(run: dict[str, Any]) -> None:
    samples = [json.loads(line) for line in (run["work"] / "data" / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    chat = json.loads((run["work"] / "chat" / "sharegpt.json").read_text(encoding="utf-8"))
    assert samples and chat
    strings = _strings(samples) + _strings(chat)
    assert [s for s in strings if UNSAFE.search(s) or "\r" in s] == []
    # The rest is data, kept as text: markup, templates and paths are not the export's to judge.
    questions = [s["question"] for s in samples]
    assert all("<script>alert(1)</script>" in q and "{{7*7}}" in q and "../../etc/passwd" in q for q in questions)
    assert all("Caf\u00e9" in q for q in questions)  # NFC: e + combining acute is one character
    assert all(len(s["solution"]) < 8000 for s in samples)


def test_the_context_names_only_known_capabilities_and_strategies(run: dict[str, Any]) -> None:
    contexts = _records(run, "cads_contexts", "record")
    assert len(contexts) >= 2  # the first context and at least one the adversary wrote
    for context in contexts:
        assert set(context["capability_weights"]) <= set(CAPABILITIES)
        assert set(context["strategy_weights"]) <= set(STRATEGIES)
    written = [c for c in contexts if c["version"] > 0]
    assert written and all("<script>" in c["guidance"] and not UNSAFE.search(c["guidance"]) for c in written)


def test_a_refused_answer_is_recorded_with_its_reason(run: dict[str, Any]) -> None:
    query = "SELECT role, target, fault, outcome, detail FROM cads_calls WHERE run = 'hostile' AND fault IS NOT NULL"
    rows = _rows(run, query + " ORDER BY attempt")
    given_up = [r for r in rows if r[1] == ALWAYS_TOO_LONG and r[0] == "proposer"]
    assert [(r[2], r[3]) for r in given_up] == [("malformed", "retried"), ("malformed", "dropped")]
    assert all(r[4] == "ProposalDraft.solution: String should have at most 8000 characters" for r in given_up)
    adversary = [r for r in rows if r[0] == "adversary"]
    assert adversary and all(r[2:4] == ("malformed", "retried") for r in adversary)
    assert all(r[4].startswith("ContextDraft.capability_weights.11.name: Input should be 'color'") for r in adversary)


@pytest.mark.slow  # a browser
def test_the_report_runs_no_script(run: dict[str, Any]) -> None:
    from tests.test_report import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium): the report is not opened")
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((run["work"] / "report.html").as_uri())
            page.wait_for_timeout(500)
            shown = page.inner_text("body")
            injected = page.evaluate("document.querySelectorAll('#cards script, #cards img[onerror]').length")
        finally:
            browser.close()
    assert dialogs == [] and errors == []
    assert injected == 0
    assert "<script>alert(1)</script>" in shown  # shown as text, escaped


def _rows(run: dict[str, Any], query: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import create_engine, text

    engine = create_engine(run["db"])
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(query))]
    finally:
        engine.dispose()


def _records(run: dict[str, Any], table: str, column: str) -> list[dict[str, Any]]:
    rows = _rows(run, f"SELECT {column} FROM {table} WHERE run = 'hostile'")
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]

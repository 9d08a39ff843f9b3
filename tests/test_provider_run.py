"""A whole `cads run` against one fake OpenAI-compatible server that fails 20% of the time.

Three agents (json_schema, function_calling and json_text) share the server. The responder answers
like a panel would: problems built from the simulated world (so their specs render), critiques,
judges that reach the reference most of the time, and an adversary. The run must finish, lose no
sample, account for every fault the server injected, and never write the API key anywhere.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cadsynth.fakes import FakeOpenAI, FaultPlan
from cadsynth.fakes.panelist import Panelist
from tests.helpers import records
from tests import helpers

KEY = "sk-cads-leakcheck-7Qe2Vx9LmT4pZr8s"  # distinctive: grepped for in every artifact
KEY_ENV = "CADS_E2E_OPENAI_KEY"
ROUNDS = 3


def cads(*args: str, cwd: Path, env: dict[str, str], log: list[str]) -> subprocess.CompletedProcess[str]:
    """`cads` in this process; what it printed goes to `log`, which is searched for the key."""
    result = helpers.cads(*args, cwd=cwd, env=env, check=False)
    log += [result.stdout, result.stderr]
    if result.returncode != 0:
        raise AssertionError(f"cads {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def panel_config(base_url: str) -> dict[str, Any]:
    common = {"base_url": base_url, "api_key_env": KEY_ENV, "timeout": 0.5}
    return {
        "rounds": ROUNDS,
        "target": 1000,
        "proposals_per_agent": 2,
        "seed": 3,
        "retry": {"attempts": 2, "base_delay": 0.02, "max_delay": 0.2},  # one retry: some calls give up
        "limits": [{"provider": "openai", "model": "gpt-4o", "concurrency": 4, "rpm": 6000}],
        "panel": [
            {"name": "gpt", "provider": "openai", "model": "gpt-4o", "roles": ["proposer", "critic", "judge", "adversary"], **common},
            {"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "structured_output": "function_calling",
             "roles": ["proposer", "critic", "judge"], **common},
            {"name": "qwen", "provider": "openai", "model": "qwen2.5-vl-7b", "structured_output": "json_text",
             "roles": ["proposer", "judge"], **common},
            {"name": "artist", "provider": "openai", "model": "gpt-image-1", "roles": ["painter"], **common},
        ],
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("provider-run")
    plan = FaultPlan(rate=0.2, seed=5, kinds=("429", "500", "hang", "malformed", "fenced"), retry_after=0.1, hang_seconds=2)
    env = {KEY_ENV: KEY}
    log: list[str] = []
    with FakeOpenAI(Panelist(), api_key=KEY, faults=plan) as server:
        (work / "panel.yaml").write_text(yaml.safe_dump(panel_config(server.base_url)))
        t0 = time.monotonic()
        cads("run", "panel.yaml", "--run-id", "real", cwd=work, env=env, log=log)
        wall = time.monotonic() - t0
        requests = server.requests
        snapshot = server.stats.snapshot()
        stats = json.loads(cads("stats", "real", "--json", cwd=work, env=env, log=log).stdout)
        cads("export", "real", "--out", "real-data", cwd=work, env=env, log=log)
        # A fork before round 1 repeats round 1's calls: the cache answers those that succeeded.
        cads("replay", "real", "--round", "1", "--run-id", "fork", cwd=work, env=env, log=log)
        fork_requests = server.request_count - len(requests)
        fork_stats = json.loads(cads("stats", "fork", "--json", cwd=work, env=env, log=log).stdout)
    return {
        "work": work,
        "wall": wall,
        "requests": requests,
        "server": snapshot,
        "stats": stats,
        "log": log,
        "fork_requests": fork_requests,
        "fork_stats": fork_stats,
    }


def _expected_faults(requests: list[Any]) -> dict[str, int]:
    """What cadsynth should have seen: a fenced answer is a fault unless the agent asked for text."""
    kinds = {"429": "rate_limited", "500": "server_error", "hang": "timeout", "malformed": "malformed", "fenced": "malformed"}
    expected = dict.fromkeys(["rate_limited", "server_error", "timeout", "unreachable", "malformed"], 0)
    for r in requests:
        if r.fault and not (r.fault == "fenced" and r.mode == "text"):
            expected[kinds[r.fault]] += 1
    return expected


def test_the_run_completes_despite_faults(run):
    s, server = run["stats"], run["server"]
    assert s["status"] == "done" and len(s["rounds"]) == ROUNDS
    assert server["errors"] == [] and server["rejected"] == 0
    assert server["faults_total"] >= 0.12 * server["requests"]  # the plan really injected ~20%
    assert s["kept"] > 0
    print(
        f"\n{server['requests']} requests, injected {server['faults']}, stats faults {s['faults']}, "
        f"{s['proposals']} proposals, {s['kept']} kept, wall {run['wall']:.1f}s, cost ${s['cost']['usd']:.4f}; "
        f"the fork made {run['fork_requests']} requests, {run['fork_stats']['cost']['cached_calls']} answers cached"
    )


def test_stats_account_for_every_injected_fault(run):
    faults = run["stats"]["faults"]
    expected = _expected_faults(run["requests"])
    assert {k: faults[k] for k in expected} == expected
    # Every failed request was either retried or ended its call (a judge abstained, else dropped).
    assert sum(expected.values()) == faults["retried"] + faults["abstained"] + faults["dropped"]
    # The ledger has one row per request the server saw (calls made = requests received).
    assert run["stats"]["model_calls"] == len(run["requests"])


def test_no_sample_is_lost(run):
    db = sqlite3.connect(run["work"] / "cads.db")
    proposals = {r[0] for r in db.execute("SELECT id FROM cads_proposals WHERE run = 'real'")}
    consensus = {r[0] for r in db.execute("SELECT proposal FROM cads_consensus WHERE run = 'real'")}
    dropped = {
        r[0]
        for r in db.execute(
            "SELECT target FROM cads_calls WHERE run = 'real' AND role = 'proposer' AND outcome = 'dropped' "
            "AND target NOT LIKE '%/revise'"
        )
    }
    # The store and the calls both name a proposal by its key within the run (r0/gpt/1).
    planned = {f"r{r}/{a}/{i}" for r in range(ROUNDS) for a in ("gpt", "mini", "qwen") for i in range(2)}
    assert proposals | dropped == planned and not proposals & dropped
    assert consensus == proposals  # every proposal that exists was routed: judged or dropped by critics
    samples = [json.loads(line) for line in (run["work"] / "real-data" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == run["stats"]["kept"] and len({s["id"] for s in samples}) == len(samples)
    abstentions = db.execute("SELECT COUNT(*) FROM cads_calls WHERE run = 'real' AND outcome = 'abstained'").fetchone()[0]
    judged_abstained = sum(j["abstained"] for j in records(run["work"], "cads_judgments", "run = 'real'"))
    assert abstentions == judged_abstained


def test_proposals_without_a_spec_are_painted_by_the_painter_model(run):
    db = sqlite3.connect(run["work"] / "cads.db")
    painted = records(run["work"], "cads_proposals", "run = 'real' AND proposer = 'qwen'")
    assert painted and all(p["image_spec"] is None for p in painted)
    # Painted unless the painter gave up on it (then the critics' review dropped it).
    gave_up = {r[0] for r in db.execute("SELECT target FROM cads_calls WHERE agent = 'artist' AND outcome = 'dropped'")}
    assert all(p["image"] for p in painted if f"r{p['round']}/{p['proposer']}/{p['index']}" not in gave_up)
    assert sum(r.route == "images.generations" for r in run["requests"]) >= len(painted)
    assert run["stats"]["cost"]["by_agent"]["artist"]["usd"] > 0  # gpt-image-1 output tokens are priced


def test_costs_are_priced_per_agent(run):
    cost = run["stats"]["cost"]
    assert cost["usd"] > 0 and cost["input_tokens"] > 0
    by_agent = cost["by_agent"]
    assert by_agent["qwen"]["usd"] == 0  # a local model with no price costs nothing
    assert by_agent["gpt"]["usd"] > 0 and by_agent["mini"]["usd"] > 0
    assert abs(sum(r["cost_usd"] for r in run["stats"]["rounds"]) - cost["usd"]) < 1e-3


def test_a_replayed_round_is_answered_from_the_cache(run):
    fork = run["fork_stats"]
    assert fork["status"] == "done"
    db = sqlite3.connect(run["work"] / "cads.db")
    parent_later = db.execute("SELECT COUNT(*) FROM cads_calls WHERE run = 'real' AND round >= 1").fetchone()[0]
    answered = db.execute(
        "SELECT COUNT(*) FROM cads_calls WHERE run = 'real' AND round >= 1 AND fault IS NULL"
    ).fetchone()[0]
    # The calls the parent got answers for are answered again from the cache, for free. (Not all
    # of them: where the parent gave up, the fork asks again and the debate can take another turn.)
    assert 0.8 * answered <= fork["cost"]["cached_calls"] <= answered
    assert fork["cost"]["usd"] < run["stats"]["cost"]["usd"] / 2
    assert run["fork_requests"] < parent_later / 3


def test_the_key_never_leaves_the_environment(run):
    needle = KEY.encode()
    found = [str(p) for p in run["work"].rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert found == []
    assert not any(KEY in text for text in run["log"])
    # ...while it was really used: the server checked it on every request.
    assert all(r.api_key == KEY for r in run["requests"])

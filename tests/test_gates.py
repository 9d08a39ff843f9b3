"""The quality gates on the harder simulated world: each failure mode reaches the kept samples with
its gate off, and far less with it on; each gate's calls are in the ledger and its figures in stats.

The gates never read the simulator's truth; the tests do, through `cads stats` (truth.*).
"""

from __future__ import annotations

import asyncio
import sqlite3
from importlib import resources
from pathlib import Path

import pytest
import yaml

from cadsynth.config import ConfigError, WorldConfig, parse_config
from cadsynth.domain import ConsistencyCritiqueDraft
from cadsynth.report import GATES as REPORT_GATES
from cadsynth.store import schema
from tests.helpers import cads, records, stats

# Failure modes common enough that a short run shows them; duplicates are the dedup gate's.
WORLD = WorldConfig(text_answerable_rate=0.25, conflict_rate=0.25, duplicate_rate=0.0, blind_spot_share=0.3, blind_spot_strength=0.7)
GATES = {
    "off": {},
    "image": {"image_necessity": True},
    "consistency": {"consistency": True},
}


def _config(gates: dict[str, bool]) -> dict:
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config.update(rounds=3, target=1000, seed=5, world=WORLD.model_dump(), gates=gates)
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("gates")
    for name, gates in GATES.items():
        (work / f"{name}.yaml").write_text(yaml.safe_dump(_config(gates)))
        cads("run", f"{name}.yaml", "--run-id", name, cwd=work)
    return work


def _truths(work: Path, world: WorldConfig, proposals: list[dict]) -> list[dict]:
    """The simulator's truth about each proposal, read from its notes the way `cads stats` does."""
    from cadsynth.agents.sim.truth import TruthBook, spec_digest_of
    from cadsynth.store.ledger import Ledger
    from cadsynth.store.notes import Notes

    async def read() -> list[dict]:
        ledger = Ledger.open(f"sqlite:///{work / 'cads.db'}")
        try:
            found = await TruthBook(world, Notes(ledger.engine)).about_many(
                [(p["question"], spec_digest_of(p["image_spec"]), p["choices"]) for p in proposals]
            )
        finally:
            await ledger.close()
        assert all(t is not None for t in found)
        return [t.model_dump() for t in found if t is not None]

    return asyncio.run(read())


def _query(work: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(work / "cads.db") as db:
        return db.execute(sql, args).fetchall()


def test_each_failure_mode_reaches_kept_samples_with_its_gate_off_and_drops_with_it_on(runs: Path) -> None:
    off, image, consistency = (stats(name, runs)["truth"] for name in GATES)
    assert off["kept_text_answerable_rate"] >= 0.08
    assert off["kept_conflict_rate"] >= 0.04
    assert image["kept_text_answerable_rate"] <= off["kept_text_answerable_rate"] / 2
    assert consistency["kept_conflict_rate"] <= off["kept_conflict_rate"] / 2
    # Each gate works on its own failure mode: the other one still gets through.
    assert image["kept_conflict_rate"] >= 0.04 and consistency["kept_text_answerable_rate"] >= 0.08
    assert consistency["kept_correct_rate"] > off["kept_correct_rate"]


def test_a_shared_mistake_reaches_kept_samples_with_every_judge_agreeing(runs: Path) -> None:
    kept_wrong = []
    proposals = records(runs, "cads_proposals", "run = 'off'")
    for p, sim in zip(proposals, _truths(runs, WORLD, proposals), strict=True):
        if sim["blind_spot"] is not None and p["reference_answer"] == sim["blind_spot"] != sim["truth"]:
            (verdict,) = records(runs, "cads_consensus", "run || '/' || proposal = ?", p["id"])
            kept_wrong.append(verdict)
    scored = [v for v in kept_wrong if v["outcome"] in ("keep", "adversarial")]
    assert scored and all(v["score"] >= 1 for v in scored)
    assert any(v["score"] >= v["judges"] - 1 for v in scored)  # most, often all, judges share it


def test_the_image_necessity_gate_asks_one_blind_judge_per_problem_and_records_its_drops(runs: Path) -> None:
    s = stats("image", runs)
    gate = s["gates"]["image_necessity"]
    assert gate["on"] and gate["removed"] >= 3
    blind_calls = _query(runs, "SELECT target, role FROM cads_calls WHERE run = 'image' AND role = 'blind_judge'")
    verdicts = records(runs, "cads_consensus", "run = 'image'")
    # One blind pass per problem that got past the critics, just before its judges.
    reached = [v for v in verdicts if v["outcome"] != "dropped" or v["reason"] == "text_answerable"]
    assert len(blind_calls) == gate["calls"] == len(reached) and all(v["blind_answer"] for v in reached)
    assert s["cost"]["by_role"]["blind_judge"]["calls"] == gate["calls"]
    text_answerable = [v for v in verdicts if v["reason"] == "text_answerable"]
    assert len(text_answerable) == gate["removed"]
    assert all(v["outcome"] == "dropped" and v["judges"] == 0 and v["blind_answer"] for v in text_answerable)
    # One definition of the counts: the drops are in the discarded figure and in the round rows.
    assert s["dropped"] >= gate["removed"] and sum(r["dropped"] for r in s["rounds"]) == s["dropped"]
    assert sum(r["discarded"] for r in s["rounds"]) == s["discarded"]
    assert s["proposals"] == s["kept"] + s["discarded"]
    off = stats("off", runs)["gates"]["image_necessity"]
    assert off == {"on": False, "removed": 0, "calls": 0, "usd": 0.0}


def test_the_consistency_gate_asks_the_explicit_checks_and_rechecks_a_revised_conflict(runs: Path) -> None:
    s = stats("consistency", runs)
    gate = s["gates"]["consistency"]
    assert gate["on"] and gate["removed"] >= 1 and gate["sent_back"] >= gate["removed"]
    critiques = records(runs, "cads_critiques", "run = 'consistency'")
    assert critiques and all(c["image_matches_question"] is not None and c["reference_matches_image"] is not None for c in critiques)
    rechecks = [c for c in critiques if c["recheck"]]
    recheck_calls = _query(runs, "SELECT count(*) FROM cads_calls WHERE run = 'consistency' AND role = 'recheck'")[0][0]
    assert len(rechecks) == recheck_calls == gate["calls"] > 0
    # Gate roles fit the ledger's role column (PostgreSQL enforces its length; SQLite does not).
    assert all(len(role) <= schema.calls.c.role.type.length for _, roles in REPORT_GATES.values() for role in roles)
    # A problem dropped as inconsistent had a conflict named again after its revision.
    for v in records(runs, "cads_consensus", "run = 'consistency'"):
        if v["reason"] == "inconsistent":
            assert any(c["recheck"] and c["proposal"] == v["proposal"] and not (c["image_matches_question"] and c["reference_matches_image"])
                       for c in rechecks)
    off = records(runs, "cads_critiques", "run = 'off'")
    assert off and all(c["image_matches_question"] is None and not c["recheck"] for c in off)


def test_stats_for_people_name_each_gate_and_the_failure_modes_kept(runs: Path) -> None:
    out = cads("stats", "image", cwd=runs).stdout
    assert "gate image_necessity (on):" in out and "problems removed" in out
    assert "answerable from the text" in out and "contradicts the question" in out
    assert "gate consistency" not in out  # off and idle: nothing to say
    shown = "\n".join(cads("show", "image", "--round", str(r), cwd=runs).stdout for r in range(3))
    assert "without the image); outcome dropped" in shown
    rechecked = "\n".join(cads("show", "consistency", "--round", str(r), cwd=runs).stdout for r in range(3))
    assert "(recheck):" in rechecked


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"gates": {"consistency": True}, "critique": False}, "critique is off"),
        ({"gates": {"image_necesity": True}}, "gates.image_necesity"),
        ({"gates": {"consistency": "maybe"}}, "'maybe'"),
        ({"world": {"conflict_rate": 1.5}}, "world.conflict_rate: 1.5"),
    ],
)
def test_bad_gate_or_world_settings_are_one_line_naming_the_value(section: dict, needle: str) -> None:
    config = _config({}) | section
    with pytest.raises(ConfigError) as caught:
        parse_config(config, "panel.yaml")
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_the_consistency_schema_suits_strict_structured_output() -> None:
    from openai.lib._pydantic import to_strict_json_schema

    from cadsynth.fakes import schema_instance, strict_schema_problems

    strict = to_strict_json_schema(ConsistencyCritiqueDraft)
    assert strict_schema_problems(strict) == []
    assert set(strict["required"]) >= {"verdict", "issues", "image_matches_question", "reference_matches_image"}
    ConsistencyCritiqueDraft.model_validate(schema_instance(strict))


def test_near_duplicate_pairs_are_counted_across_lanes(tmp_path: Path) -> None:
    config = _config({}) | {"rounds": 2, "world": WorldConfig.clean().model_copy(update={"duplicate_rate": 0.5}).model_dump()}
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump(config))
    cads("run", "dup.yaml", "--run-id", "dup", "--lanes", "2", cwd=tmp_path)
    groups: dict[str, int] = {}
    verdicts = {v["proposal"]: v for v in records(tmp_path, "cads_consensus", "run LIKE 'dup%'")}
    lanes_of: dict[str, set[str]] = {}
    proposals = records(tmp_path, "cads_proposals", "run LIKE 'dup%'")
    for p, sim in zip(proposals, _truths(tmp_path, WorldConfig.model_validate(config["world"]), proposals), strict=True):
        v = verdicts[p["id"]]
        key = sim["duplicate_of"]
        if key and v["outcome"] in ("keep", "adversarial"):
            groups[key] = groups.get(key, 0) + 1
            lanes_of.setdefault(key, set()).add(p["run"])
    assert any(len(runs) == 2 for runs in lanes_of.values())  # the lanes converged on the same problem
    assert stats("dup", tmp_path)["truth"]["kept_duplicate_pairs"] == sum(n * (n - 1) // 2 for n in groups.values()) > 0


def test_real_providers_take_the_same_gates(tmp_path: Path) -> None:
    """Against a fake OpenAI-compatible server, in every structured-output mode: the blind pass and
    the consistency checks are ordinary calls the graph makes of any agent, simulated or not."""
    import os

    from cadsynth.fakes import FakeOpenAI
    from cadsynth.fakes.panelist import Panelist

    key = "sk-cads-gates-test"
    with FakeOpenAI(Panelist(), api_key=key) as server:
        common = {"base_url": server.base_url, "api_key_env": "CADS_GATES_KEY"}
        config = {
            "rounds": 1, "target": 1000, "proposals_per_agent": 2, "seed": 2, "adversary": False,
            "gates": {"image_necessity": True, "consistency": True},
            "panel": [
                {"name": "gpt", "provider": "openai", "model": "gpt-4o", "roles": ["proposer", "critic", "judge"], **common},
                {"name": "mini", "provider": "openai", "model": "gpt-4o-mini", "structured_output": "function_calling",
                 "roles": ["proposer", "critic", "judge"], **common},
                {"name": "qwen", "provider": "openai", "model": "qwen2.5-vl-7b", "structured_output": "json_text",
                 "roles": ["critic", "judge"], **common},
            ],
        }
        (tmp_path / "real.yaml").write_text(yaml.safe_dump(config))
        cads("run", "real.yaml", "--run-id", "real", cwd=tmp_path, env={"CADS_GATES_KEY": key})
        s = stats("real", tmp_path)
    assert "truth" not in s  # real proposals carry no simulator truth
    assert s["gates"]["image_necessity"]["calls"] == s["proposals"] - s["dropped"] + s["gates"]["image_necessity"]["removed"] > 0
    critiques = records(tmp_path, "cads_critiques", "run = 'real'")
    assert critiques and all(isinstance(c["image_matches_question"], bool) for c in critiques)
    assert os.environ.get("CADS_GATES_KEY") is None

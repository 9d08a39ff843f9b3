"""The near-duplicate gate: near-duplicates drawn by the real renderer are caught, different
problems are not, and a run with duplicates exports none of a pair, the same way every time."""

from __future__ import annotations

import random
import sqlite3
from importlib import resources
from itertools import combinations
from pathlib import Path

import imagehash
import pytest
import yaml

from cadsynth.agents.painter.render import render
from cadsynth.specs import Bar, BarChart, PieChart, Slice
from cadsynth.config import ConfigError, NearDuplicatesConfig, load_config
from cadsynth.domain import Proposal
from cadsynth.graphs.dedup import Candidate, fingerprint, jaccard, near_duplicates, question_shingles
from tests.helpers import cads, content, export, stats

RULE = NearDuplicatesConfig(enabled=True)
FRUITS = ["Apple", "Banana", "Cherry", "Grape", "Lemon", "Mango"]


def _chart(values: list[float], labels: list[str] = FRUITS, title: str = "Boxes sold") -> BarChart:
    return BarChart(title=title, x_label="Fruit", y_label="Boxes", bars=[Bar(label=l, value=v) for l, v in zip(labels, values)])


def _proposal(question: str, round_: int = 0, proposer: str = "p", index: int = 0) -> Proposal:
    return Proposal(
        id=f"run/r{round_}/{proposer}/{index}", run="run", round=round_, proposer=proposer, index=index,
        strategy="numerical_variation", capabilities=["text_recognition"], visual_prompt="", question=question,
        answer_type="number", reference_answer="1", solution="", difficulty=0.3,
    )


def _candidate(spec, question: str, *, round_: int = 0, lane: int = 0, index: int = 0, kept: bool = True) -> Candidate:
    p = _proposal(question, round_, "p", index).model_copy(update={"id": f"run.lane{lane}/r{round_}/p/{index}"})
    f = fingerprint(p, render(spec))
    return Candidate(p.id, kept, round_, lane, "p", index, f.image_hash, question)


VALUES = [34.0, 71.0, 18.0, 55.0, 90.0, 42.0]
QUESTION = "What value does the bar for Mango show?"


@pytest.mark.parametrize(
    ("spec", "question"),
    [
        (_chart([v + (1 if i == 2 else 0) for i, v in enumerate(VALUES)]), QUESTION),  # one value +1
        (_chart(VALUES), "What value does the bar for Mango show in the chart?"),  # the question reworded
        (_chart([v + (1 if i == 4 else 0) for i, v in enumerate(VALUES)]), "What value does the bar for Mango show here?"),  # both
    ],
    ids=["value+1", "reworded", "both"],
)
def test_near_duplicates_from_the_renderer_are_caught(spec, question):
    first, second = _candidate(_chart(VALUES), QUESTION), _candidate(spec, question, index=1)
    [removed] = near_duplicates([second, first], RULE)
    assert removed.proposal == second.proposal and removed.duplicate_of == first.proposal
    assert removed.image_distance <= RULE.image_distance and removed.question_similarity >= RULE.question_similarity


@pytest.mark.parametrize(
    ("spec", "question"),
    [
        # Another chart of the same template: other data, the same kind of question.
        (_chart([12.0, 88.0, 47.0, 63.0, 25.0, 79.0], ["Plum", "Kiwi", "Melon", "Pear", "Peach", "Lemon"], "Crates shipped"),
         "What value does the bar for Kiwi show?"),
        # The same chart asked something else: a second problem about one image.
        (_chart(VALUES), "How many bars show a value greater than 50?"),
        # The same question over a different image.
        (PieChart(title="Boxes sold", slices=[Slice(label=l, value=v) for l, v in zip(FRUITS, VALUES)]), QUESTION),
        # The same chart and wording, a different bar asked about (another answer).
        (_chart(VALUES), "What value does the bar for Cherry show?"),
    ],
    ids=["other-data", "other-question", "other-image", "other-bar"],
)
def test_different_problems_are_not_duplicates(spec, question):
    assert near_duplicates([_candidate(_chart(VALUES), QUESTION), _candidate(spec, question, index=1)], RULE) == []


def test_the_survivor_does_not_depend_on_the_order_found():
    # One problem four times: which copy survives is the question.
    base = _candidate(_chart(VALUES), QUESTION, round_=1, lane=0)
    same_round_later_lane = _candidate(_chart(VALUES), QUESTION, round_=1, lane=2)
    earlier_round = _candidate(_chart(VALUES), QUESTION, round_=0, lane=1)
    discarded_first = _candidate(_chart(VALUES), QUESTION, round_=0, lane=0, kept=False)
    found = [base, same_round_later_lane, earlier_round, discarded_first]
    outcomes = set()
    for seed in range(6):
        random.Random(seed).shuffle(found)
        outcomes.add(tuple(sorted((d.proposal, d.duplicate_of) for d in near_duplicates(found, RULE))))
    # The earliest kept sample survives (round, then lane); a discarded one never beats a kept one.
    assert outcomes == {tuple(sorted([
        (base.proposal, earlier_round.proposal),
        (same_round_later_lane.proposal, earlier_round.proposal),
        (discarded_first.proposal, earlier_round.proposal),
    ]))}


def test_a_removed_sample_removes_nothing_after_it():
    # A ~ B and B ~ C, but A is not C: B goes, and C is compared with the survivors only.
    hashes = ["0" * 64, "0" * 58 + "ff" + "0" * 4, "0" * 54 + "ff" + "00" + "ff" + "0" * 4]  # B is 8 bits from each
    rule = NearDuplicatesConfig(enabled=True, image_distance=10)
    chain = [Candidate(f"run/r{i}/p/0", True, i, 0, "p", 0, h, QUESTION) for i, h in enumerate(hashes)]
    apart = [imagehash.hex_to_hash(a) - imagehash.hex_to_hash(b) for a, b in combinations(hashes, 2)]
    assert apart == [8, 16, 8]
    assert [(d.proposal, d.duplicate_of) for d in near_duplicates(chain, rule)] == [("run/r1/p/0", "run/r0/p/0")]


def _every_pair(candidates: list[Candidate], rule: NearDuplicatesConfig) -> list[tuple[str, str, int, float]]:
    """The pass as the module states it, each problem compared with every survivor before it: the
    oracle the index must equal."""
    survivors: list[Candidate] = []
    removed = []
    for c in sorted(candidates, key=lambda c: c.order):
        for s in survivors:
            distance = imagehash.hex_to_hash(c.image_hash) - imagehash.hex_to_hash(s.image_hash)
            similarity = jaccard(question_shingles(c.question), question_shingles(s.question))
            if distance <= rule.image_distance and similarity >= rule.question_similarity:
                removed.append((c.proposal, s.proposal, distance, round(similarity, 4)))
                break
        else:
            survivors.append(c)
    return removed


@pytest.mark.parametrize("image_distance", [0, 7, 20, 90, 256])
def test_the_index_finds_what_comparing_every_pair_finds(image_distance):
    # A crowd like a long run's: a few images (hashes) each redrawn with a few bits moved, asked a
    # few templated questions with other words; many pairs are close in one of the two, some in both.
    rng = random.Random(image_distance)
    bases = [rng.getrandbits(256) for _ in range(6)]
    templates = [f"What {w} does the bar for {{}} show in the chart?" for w in ("value", "number", "height")]
    crowd = []
    for i in range(400):
        picture = rng.choice(bases)
        for _ in range(rng.choice([0, 2, 6, 12, 30, 60])):
            picture ^= 1 << rng.randrange(256)
        question = rng.choice(templates).format(rng.choice(FRUITS)) + rng.choice(["", " now", " here please"])
        crowd.append(Candidate(f"run/r{i % 40}/p/{i}", rng.random() < 0.8, i % 40, i % 3, "p", i, f"{picture:064x}", question))
    rule = NearDuplicatesConfig(enabled=True, image_distance=image_distance)
    expected = _every_pair(crowd, rule)
    assert 0 < len(expected) < len(crowd)
    assert [(d.proposal, d.duplicate_of, d.image_distance, d.question_similarity) for d in near_duplicates(crowd, rule)] == expected


# --- a run with duplicates -------------------------------------------------------------------

# Loose thresholds: any two problems with a question of the same template are duplicates here, so
# the run has many whatever the simulated world draws.
LOOSE = {"enabled": True, "image_distance": 256, "question_similarity": 0.3}


def _config(work: Path, name: str, **changes) -> str:
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config["gates"] = {**config.get("gates", {}), **changes.pop("gates", {})}  # the default's other gates stay as they are
    config.update(rounds=2, target=1000, seed=5, lanes=2, proposals_per_agent=2, adversary=False, **changes)
    (work / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return f"{name}.yaml"


@pytest.fixture(scope="module")
def deduplicated(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("dedup")
    cads("run", _config(work, "on", gates={"near_duplicates": LOOSE}), "--run-id", "on", cwd=work)
    cads("run", _config(work, "on", gates={"near_duplicates": LOOSE}), "--run-id", "again", cwd=work)
    cads("run", _config(work, "off"), "--run-id", "off", cwd=work)
    return work


def _pairs(samples: list[dict]) -> list[tuple[str, str]]:
    """Pairs of exported samples that are near-duplicates by the rule, checked pair by pair."""
    rule = NearDuplicatesConfig(**LOOSE)
    taken = []
    for i, x in enumerate(samples):
        f = fingerprint(_proposal(x["question"]).model_copy(update={"id": x["id"]}), Path(x["image_path"]).read_bytes())
        taken.append(Candidate(x["id"], True, 0, 0, "p", i, f.image_hash, x["question"]))
    return [(a.proposal, b.proposal) for a, b in combinations(taken, 2) if near_duplicates([a, b], rule)]


def test_a_run_exports_no_pair_of_near_duplicates(deduplicated):
    s, off = stats("on", deduplicated), stats("off", deduplicated)
    samples = export("on", deduplicated)
    for x in samples:
        x["image_path"] = str(deduplicated / "on-jsonl" / x["image"])
    assert s["duplicates_removed"] > 0 and len(samples) == s["kept"] - s["duplicates_removed"]
    assert _pairs(samples) == []
    # The same debate without the gate: the same judged problems, every kept one exported.
    assert (off["kept"], off["proposals"]) == (s["kept"], s["proposals"])
    assert off["duplicates_removed"] == 0 and len(export("off", deduplicated)) == off["kept"]
    gate = s["gates"]["near_duplicates"]
    assert gate["on"] and gate["removed"] >= s["duplicates_removed"] and gate["calls"] == 0
    assert gate["fingerprinted"] == s["proposals"] - s["dropped"]  # every judged problem
    assert f"near-duplicates: {s['duplicates_removed']} kept samples removed" in cads("stats", "on", cwd=deduplicated).stdout


def test_each_removal_names_the_earlier_sample_it_duplicates(deduplicated):
    with sqlite3.connect(deduplicated / "cads.db") as db:
        rows = db.execute("SELECT proposal, duplicate_of FROM cads_duplicates WHERE run = 'on'").fetchall()
        outcome = dict(db.execute("SELECT run || '/' || proposal, outcome FROM cads_consensus WHERE run LIKE 'on.lane%'").fetchall())
    exported = {x["id"] for x in export("on", deduplicated)}
    assert rows and len(rows) == stats("on", deduplicated)["gates"]["near_duplicates"]["removed"]
    lanes = {"on.lane0": 0, "on.lane1": 1}
    for removed, of in rows:
        assert removed not in exported
        assert of in exported or outcome[of] == "discard"  # it survived: kept, or (both discarded) the earlier one
        run_r, run_o = removed.split("/"), of.split("/")
        earlier = (outcome[of] == "discard", int(run_o[1][1:]), lanes[run_o[0]]) <= (
            outcome[removed] == "discard", int(run_r[1][1:]), lanes[run_r[0]])
        assert earlier, (removed, of)
    assert {outcome[p] for p, _ in rows} & {"keep", "adversarial"}  # kept samples went, not only discarded ones


def test_the_same_seed_and_lanes_give_the_same_deduplicated_data_set(deduplicated):
    assert content(export("on", deduplicated)) == content(export("again", deduplicated))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gates: {near_duplicates: {image_distance: 300}}", "gates.near_duplicates.image_distance: 300: Input should be less"),
        ("gates: {near_duplicates: {question_similarity: 0}}", "gates.near_duplicates.question_similarity: 0: Input should be greater"),
        ("gates: {near_dupes: {enabled: true}}", "gates.near_dupes"),
    ],
)
def test_bad_gate_settings_are_one_line_naming_the_value(tmp_path, text, expected):
    path = tmp_path / "panel.yaml"
    path.write_text(f"{text}\npanel:\n  - {{name: a, provider: sim, model: m, roles: [judge, proposer, adversary]}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value) and "\n" not in str(err.value)
    run = cads("run", str(path), cwd=tmp_path, check=False)
    assert run.returncode != 0 and expected in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_a_version_5_database_gains_the_gate_tables(tmp_path):
    from sqlalchemy import create_engine

    from cadsynth.store import schema as t
    from cadsynth.store.migrate import ensure_schema

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        ensure_schema(conn)
    with sqlite3.connect(path) as db:  # back to the version 5 layout
        db.execute("DROP TABLE cads_fingerprints")
        db.execute("DROP TABLE cads_duplicates")
        db.execute("CREATE INDEX ix_cads_calls_run ON cads_calls (run)")  # dropped in version 7
        db.execute("UPDATE cads_schema SET version = 5")
    with engine.begin() as conn:
        ensure_schema(conn)
    engine.dispose()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM cads_schema").fetchone()[0] == t.SCHEMA_VERSION == 15
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"cads_fingerprints", "cads_duplicates"} <= tables
    assert "ix_cads_calls_run" not in indexes

"""Judge reliability: EM recovers known accuracies, and the weighted consensus uses them as documented."""

from __future__ import annotations

import math
import random
import sqlite3
from importlib import resources
from pathlib import Path

import pytest
import yaml

from cadsynth.config import ConfigError, ConsensusConfig, load_config
from cadsynth.domain import Judgment, Proposal
from cadsynth.graphs.consensus import outcome_for, score
from cadsynth.graphs.reliability import Votes, count_votes, estimate, fit, run_votes, votes
from tests.helpers import cads, stats


def _synthetic(rng: random.Random, accuracy: dict[str, float], problems: int, reference_right: float) -> list[Votes]:
    """Judges answering with known accuracies; a wrong answer is one of three distractors, the
    reference itself wrong some of the time (it is a candidate, not the truth)."""
    out = []
    for _ in range(problems):
        reference = "truth" if rng.random() < reference_right else f"wrong{rng.randrange(3)}"
        candidates, answers = [reference], {}
        for judge, p in accuracy.items():
            answer = "truth" if rng.random() < p else f"wrong{rng.randrange(3)}"
            if answer not in candidates:
                candidates.append(answer)
            answers[judge] = candidates.index(answer)
        out.append(Votes(answers, len(candidates)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_em_recovers_known_accuracies_and_finds_the_spammer(seed):
    true = {"sharp": 0.92, "good": 0.8, "fair": 0.65, "spammer": 0.2}
    found = estimate(_synthetic(random.Random(seed), true, 800, reference_right=0.85))
    assert list(found) == sorted(true)
    # Within 0.08: wrong answers here collide on three distractors, as real ones do, which the
    # one-coin model (a wrong answer is any other candidate, evenly) does not assume.
    for judge, p in true.items():
        assert abs(found[judge].estimated_accuracy - p) < 0.08, (judge, found[judge])
        assert found[judge].judged == 800
    ranked = sorted(found, key=lambda j: -found[j].estimated_accuracy)
    assert ranked == ["sharp", "good", "fair", "spammer"] and found["spammer"].estimated_accuracy < 0.3


def test_a_wrong_reference_does_not_count_against_the_judges():
    # The reference is wrong on 40% of problems: agreeing with it says little about a judge.
    true = {"a": 0.9, "b": 0.85, "c": 0.8}
    problems = _synthetic(random.Random(7), true, 800, reference_right=0.6)
    found = estimate(problems)
    for judge, p in true.items():
        agreed = sum(v.answers[judge] == 0 for v in problems) / len(problems)
        assert abs(found[judge].estimated_accuracy - p) < 0.05
        assert agreed < p - 0.2  # the naive estimate (agreement with the reference) is far off


def test_matching_answers_are_one_candidate_and_abstentions_no_answer():
    p = Proposal(
        id="r/r0/p/0", run="r", round=0, proposer="p", index=0, strategy="numerical_variation",
        capabilities=["counting"], visual_prompt="", question="How many?", answer_type="number",
        reference_answer="12", solution="", difficulty=0.5,
    )

    def j(judge: str, answer: str | None, **extra) -> Judgment:
        return Judgment(id=f"x/{judge}", run="r", round=0, judge=judge, proposal=p.id, answer=answer, **extra)

    v = votes(p, [j("a", "12.0"), j("b", "13"), j("c", "13.00"), j("d", None, abstained=True), j("e", "12", rationalized=True)])
    assert v == Votes({"a": 0, "b": 1, "c": 1}, 2)


def _em_problem_by_problem(problems: list[Votes], iterations: int = 200, tolerance: float = 1e-5) -> dict[str, float]:
    """The one-coin EM as the module's docstring states it, one problem at a time: the oracle the
    fit over vote counts must equal."""
    judged = {j: sum(j in v.answers for v in problems) for v in problems for j in v.answers}
    posteriors = []
    for v in problems:
        counts = [1.0 if c == 0 else 0.0 for c in range(v.candidates)]
        for c in v.answers.values():
            counts[c] += 1.0
        posteriors.append([n / sum(counts) for n in counts])
    accuracy: dict[str, float] = {}
    for _ in range(iterations):
        right = dict.fromkeys(judged, 0.0)
        for v, post in zip(problems, posteriors):
            for judge, c in v.answers.items():
                right[judge] += post[c]
        new = {j: (right[j] + 1.0) / (judged[j] + 2.0) for j in judged}
        converged = accuracy and max(abs(new[j] - accuracy[j]) for j in new) < tolerance
        accuracy = new
        if converged:
            break
        posteriors = []
        for v in problems:
            likelihood = [
                math.prod(accuracy[j] if c == truth else (1 - accuracy[j]) / (v.candidates - 1) for j, c in v.answers.items())
                for truth in range(v.candidates)
            ]
            posteriors.append([x / sum(likelihood) for x in likelihood])
    return accuracy


@pytest.mark.parametrize("seed", [4, 5])
def test_the_fit_over_vote_counts_equals_em_over_every_problem(seed):
    rng = random.Random(seed)
    problems = _synthetic(rng, {"a": 0.9, "b": 0.7, "c": 0.55, "d": 0.3}, 600, reference_right=0.8)
    for v in problems[::7]:  # abstentions: some problems have fewer answers
        del v.answers["c"]  # type: ignore[attr-defined]
    counts = count_votes(problems)
    # Four judges split at most 151 ways (with abstentions), however many problems.
    assert len(counts) < len(problems) // 5 and sum(counts.values()) == len(problems)
    oracle = _em_problem_by_problem(problems)
    found = fit(counts)
    assert {j: r.judged for j, r in found.items()} == {j: sum(j in v.answers for v in problems) for j in oracle}
    for judge, p in oracle.items():
        assert found[judge].estimated_accuracy == pytest.approx(p, abs=1e-4)
    # Counted round by round (each round added to the counts so far), the same counts and fit.
    rounds: dict[str, int] = {}
    for start in range(0, len(problems), 12):
        rounds = count_votes(problems[start : start + 12], into=rounds)
    assert rounds == counts and fit(rounds) == found == estimate(problems)
    assert all(Votes.of_pattern(key).pattern == key for key in counts)


# --- weighted consensus ----------------------------------------------------------------------


def _problem(answers: dict[str, str]) -> tuple[Proposal, list[Judgment]]:
    p = Proposal(
        id="r/r1/p/0", run="r", round=1, proposer="p", index=0, strategy="numerical_variation",
        capabilities=["counting"], visual_prompt="", question="How many?", answer_type="integer",
        reference_answer="7", solution="", difficulty=0.5,
    )
    return p, [Judgment(id=f"j/{k}", run="r", round=1, judge=k, proposal=p.id, answer=a) for k, a in answers.items()]


WEIGHTS = {"a": 0.9, "b": 0.9, "c": 0.9, "spammer": 0.3}


def test_unweighted_or_equal_weights_give_todays_outcomes():
    off, on = ConsensusConfig(), ConsensusConfig(weighted=True)
    for agree in range(5):
        answers = {k: "7" if i < agree else "8" for i, k in enumerate(WEIGHTS)}
        p, js = _problem(answers)
        today = outcome_for(agree, 4, off)
        assert score(p, js, off, weights=WEIGHTS).outcome == today  # off: weights are never read
        assert score(p, js, off).weighted_score is None
        for equal in ({}, {k: 0.7 for k in WEIGHTS}):  # round 0 has no estimate yet
            verdict = score(p, js, on, weights=equal)
            assert (verdict.outcome, verdict.weighted_score, verdict.score) == (today, agree, agree)


def test_weights_discard_what_only_an_unreliable_judge_solves_and_keep_what_only_it_misses():
    on = ConsensusConfig(weighted=True)
    alone = score(*_problem({"a": "8", "b": "8", "c": "8", "spammer": "7"}), on, weights=WEIGHTS)
    assert (alone.score, alone.outcome) == (1, "discard")  # unweighted: adversarial
    assert alone.weighted_score == pytest.approx(4 * 0.3 / 3.0)
    dissent = score(*_problem({"a": "7", "b": "7", "c": "7", "spammer": "8"}), on, weights=WEIGHTS)
    assert (dissent.score, dissent.outcome) == (3, "keep")  # unweighted: adversarial (a split)
    # A reliable judge alone, or a reliable dissent, still splits the panel.
    assert score(*_problem({"a": "7", "b": "8", "c": "8", "spammer": "8"}), on, weights=WEIGHTS).outcome == "adversarial"
    assert score(*_problem({"a": "8", "b": "7", "c": "7", "spammer": "7"}), on, weights=WEIGHTS).outcome == "adversarial"
    # A judge with no estimate yet weighs the mean of the others.
    unknown = score(*_problem({"a": "7", "b": "8", "new": "8"}), on, weights={"a": 0.9, "b": 0.5})
    assert unknown.weighted_score == pytest.approx(3 * 0.9 / (0.9 + 0.5 + 0.7))


def test_weighted_needs_a_full_jury(tmp_path):
    path = tmp_path / "panel.yaml"
    path.write_text("jury: adaptive\nconsensus: {weighted: true}\npanel:\n  - {name: a, provider: sim, model: m, roles: [judge, proposer, adversary]}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "consensus.weighted needs jury: full" in str(err.value) and "\n" not in str(err.value)


def _config(work: Path, name: str, weighted: bool, *, adversary: bool = False, rounds: int = 4) -> str:
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    # No adversary: the context never changes, so both runs judge the very same problems.
    config.update(rounds=rounds, target=1000, seed=3, adversary=adversary, consensus={"min_agree": 1, "weighted": weighted})
    (work / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return f"{name}.yaml"


def test_a_weighted_run_changes_outcomes_only_as_documented(tmp_path):
    for name, weighted in (("plain", False), ("weighted", True)):
        cads("run", _config(tmp_path, name, weighted), "--run-id", name, cwd=tmp_path)
    with sqlite3.connect(tmp_path / "cads.db") as db:
        rows = db.execute(
            "SELECT run, round, replace(proposal, run || '/', ''), outcome, score, json_extract(record, '$.judges'),"
            " json_extract(record, '$.weighted_score') FROM cads_consensus ORDER BY proposal"
        ).fetchall()
    plain = {r[2]: r for r in rows if r[0] == "plain"}
    weighted = {r[2]: r for r in rows if r[0] == "weighted"}
    assert plain.keys() == weighted.keys()
    changed = 0
    rule = ConsensusConfig()
    for key, (_, round_, _, outcome, c, k, ws) in weighted.items():
        _, _, _, before, c_plain, _, none = plain[key]
        assert none is None and c == c_plain  # the same answers: only how they are weighed differs
        if outcome == "dropped":
            continue
        assert outcome == outcome_for(ws, k, rule)  # decided on C_w, by the same thresholds
        if round_ == 0:
            assert (ws, outcome) == (c, before)  # no estimate yet: equal weights, today's outcome
        changed += outcome != before
        if outcome != before:  # a lone agreement discarded, or a lone dissent no longer a split
            assert (before, outcome) in {("adversarial", "discard"), ("adversarial", "keep")}
            assert (c, outcome) in {(1, "discard"), (k - 1, "keep")}
    assert changed > 0
    judges = stats("weighted", tmp_path)["judges"]
    assert set(judges) == {"sim-vega", "sim-lyra", "sim-orion", "sim-nova"}
    assert all(0 < j["estimated_accuracy"] < 1 and j["judged"] > 0 for j in judges.values())
    assert "judges' estimated accuracy: " in cads("stats", "weighted", cwd=tmp_path).stdout


async def _counts_at_round_starts(db: Path, run: str) -> dict[int, dict[str, int] | None]:
    """The vote counts a run's state carried into each round it ran (from its round-boundary checkpoints)."""
    from cadsynth.graphs.debate import build_graph
    from cadsynth.runner import thread
    from cadsynth.store import open_checkpointer

    found: dict[int, dict[str, int] | None] = {}
    async with open_checkpointer(f"sqlite:///{db}") as saver:
        graph = build_graph().compile(checkpointer=saver)
        async for snapshot in graph.aget_state_history(thread(run)):
            # A fork's history goes on into its parent's checkpoints, which name the parent.
            if snapshot.next == ("open_round",) and snapshot.values.get("run") == run and "round" in snapshot.values:
                found.setdefault(snapshot.values["round"], snapshot.values.get("votes"))
    return found


async def _counted_from_the_ledger(db: Path, run: str, below: int) -> dict[str, int]:
    from cadsynth.store.ledger import Ledger

    ledger = Ledger.open(f"sqlite:///{db}", create=False)
    try:
        proposals = [p for p in await ledger.proposals(run) if p.round < below]
        return count_votes(run_votes(proposals, await ledger.judgments(run)))
    finally:
        await ledger.close()


async def test_the_counts_each_round_is_weighed_by_equal_a_count_over_every_closed_round(tmp_path):
    # Weighted, then a fork without weights, then a fork of that with weights again: each round of
    # a weighted run starts from the counts of every round before it, its parents' included.
    for name, weighted in (("plain", False), ("weighted", True)):
        _config(tmp_path, name, weighted, adversary=True, rounds=5)
    cads("run", "weighted.yaml", "--run-id", "w", cwd=tmp_path)
    cads("replay", "w", "--round", "2", "--config", "plain.yaml", "--run-id", "p", cwd=tmp_path)
    cads("replay", "p", "--round", "3", "--config", "weighted.yaml", "--run-id", "w2", cwd=tmp_path)
    db = tmp_path / "cads.db"
    carried = {run: await _counts_at_round_starts(db, run) for run in ("w", "p", "w2")}
    # The fork without weights carries none after its first round; its fork counts them again.
    assert {r: bool(carried["w"].get(r)) for r in range(1, 5)} == dict.fromkeys(range(1, 5), True)
    assert (carried["p"][3], carried["p"][4], carried["w2"][3], bool(carried["w2"][4])) == (None, None, None, True)
    for run, rounds in carried.items():
        for round_, counts in rounds.items():
            if counts is not None:
                assert counts == await _counted_from_the_ledger(db, run, round_), (run, round_)


async def test_stats_estimate_the_judges_from_every_lane_as_if_read_at_once(tmp_path):
    # `stats` reads a run one lane at a time and adds up the answer patterns; the estimate must be
    # the one over all the lanes' problems together, and the duplicates' count each lane's sum.
    from cadsynth.store.ledger import Ledger

    _config(tmp_path, "plain", False, adversary=True, rounds=3)
    cads("run", "plain.yaml", "--run-id", "laned", "--lanes", "3", cwd=tmp_path)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'cads.db'}", create=False)
    try:
        lanes = [lane["id"] for lane in await ledger.lanes("laned")]
        proposals = [p for lane in lanes for p in await ledger.proposals(lane)]
        judgments = [j for lane in lanes for j in await ledger.judgments(lane)]
    finally:
        await ledger.close()
    assert len(lanes) == 3 and len({p.id for p in proposals}) == len(proposals)
    at_once = estimate(run_votes(proposals, judgments))
    judges = stats("laned", tmp_path)["judges"]
    assert judges == {name: {"estimated_accuracy": r.estimated_accuracy, "judged": r.judged} for name, r in at_once.items()}
    assert set(judges) == {"sim-vega", "sim-lyra", "sim-orion", "sim-nova"}

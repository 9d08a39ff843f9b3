"""Judge reliability: EM recovers known accuracies, and the weighted consensus uses them as documented."""

from __future__ import annotations

import random
import sqlite3
from importlib import resources
from pathlib import Path

import pytest
import yaml

from cadsynth.config import ConfigError, ConsensusConfig, load_config
from cadsynth.domain import Judgment, Proposal
from cadsynth.graphs.consensus import outcome_for, score
from cadsynth.graphs.reliability import Votes, estimate, votes
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


def _config(work: Path, name: str, weighted: bool) -> str:
    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    # No adversary: the context never changes, so both runs judge the very same problems.
    config.update(rounds=4, target=1000, seed=3, adversary=False, consensus={"min_agree": 1, "weighted": weighted})
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

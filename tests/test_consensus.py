from cadsynth.config import ConsensusConfig
from cadsynth.domain import Judgment, Proposal
from cadsynth.graphs.consensus import judge_record, judged_out, judges_to_ask, jury_order, outcome_for, score, tally


def _proposal(reference: str, answer_type: str = "number") -> Proposal:
    return Proposal(
        id="run/r0/a/0", run="run", round=0, proposer="a", index=0, strategy="numerical_variation",
        capabilities=["counting"], visual_prompt="", question="How many?", answer_type=answer_type,
        reference_answer=reference, solution="", difficulty=0.5,
    )


def _judgment(judge: str, answer: str | None, abstained: bool = False) -> Judgment:
    return Judgment(id=f"j/{judge}", run="run", round=0, judge=judge, proposal="run/r0/a/0", answer=answer, abstained=abstained)


def test_outcome_edges_follow_the_paper_partition():
    rule = ConsensusConfig()
    assert outcome_for(0, 4, rule) == "discard"
    assert [outcome_for(c, 4, rule) for c in (1, 2, 3)] == ["adversarial"] * 3
    assert outcome_for(4, 4, rule) == "keep"
    assert outcome_for(0, 0, rule) == "discard"  # nobody answered: nothing vouches for it


def test_thresholds_are_configurable():
    rule = ConsensusConfig(min_agree=2, pool_max_agree=2)
    assert outcome_for(1, 4, rule) == "discard"
    assert outcome_for(2, 4, rule) == "adversarial"
    assert outcome_for(3, 4, rule) == "keep"


def test_score_counts_matching_answers_and_shrinks_k_on_abstention():
    p = _proposal("12")
    js = [_judgment("a", "12"), _judgment("b", "12.0"), _judgment("c", "13"), _judgment("d", None, abstained=True)]
    c = score(p, js, ConsensusConfig())
    assert (c.score, c.judges, c.outcome, c.agreeing) == (2, 3, "adversarial", ["a", "b"])
    unanimous = score(p, js[:2], ConsensusConfig())
    assert (unanimous.score, unanimous.judges, unanimous.outcome) == (2, 2, "keep")


def test_an_adaptive_jury_asks_until_the_outcome_is_settled():
    rule, p = ConsensusConfig(), _proposal("7")
    agree, disagree = _judgment("a", "7"), _judgment("b", "9")
    assert judges_to_ask(p, [], 4, rule) == 2  # one answer can never settle it: two can (a split)
    assert judges_to_ask(p, [agree, disagree], 2, rule) == 0  # split: adversarial whatever follows
    assert judges_to_ask(p, [agree, _judgment("c", "7")], 2, rule) == 1  # a dissent would settle it
    assert judges_to_ask(p, [disagree, _judgment("c", "8")], 2, rule) == 1  # one agreement would
    assert judges_to_ask(p, [agree] * 3, 1, rule) == 1  # keep or adversarial: the last one decides
    assert judges_to_ask(p, [agree] * 4, 0, rule) == 0
    # With a stricter rule (C = 2 exactly is the pool) a split settles nothing: both are asked.
    strict = ConsensusConfig(min_agree=2, pool_max_agree=2)
    assert judges_to_ask(p, [agree, disagree], 2, strict) == 2
    assert judges_to_ask(p, [disagree, _judgment("c", "8"), _judgment("d", "1")], 1, strict) == 0  # C <= 1: discard


def test_the_counts_are_defined_once():
    counts = tally(["keep", "adversarial", "adversarial", "discard", "dropped", "dropped"])
    assert counts == {"kept": 3, "adversarial": 2, "discarded": 3, "dropped": 2, "discarded_by_judges": 1}
    assert judged_out(counts) == counts["discarded_by_judges"] == counts["discarded"] - counts["dropped"]


def test_an_adaptive_jury_asks_the_most_and_least_reliable_judges_first():
    judges = ["a", "b", "c", "d"]
    assert jury_order(judges, {}) == judges  # nothing known yet: the panel's order
    answers = [_judgment("a", "3"), _judgment("b", "3"), _judgment("c", "4"), _judgment("d", "3"), _judgment("d", None, True)]
    record = judge_record({"c": [0, 5]}, [j.model_copy(update={"agrees": j.answer == "3"}) for j in answers])
    assert record == {"a": [1, 1], "b": [1, 1], "c": [0, 6], "d": [1, 1]}  # an abstention is no answer
    assert jury_order(judges, record) == ["a", "c", "b", "d"]  # best, worst, then the next of each
    assert jury_order(judges, {"d": [9, 9], "a": [0, 9]}) == ["d", "a", "b", "c"]

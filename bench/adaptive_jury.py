"""The adaptive jury against the full one on the simulated panel, same seed, side by side.

Prints each jury's judge calls, kept samples and (simulated) kept-sample correctness, and how many
fewer judge calls the adaptive jury made. Figures are from the simulator, not from real models.

Then an order study: the full jury's answers replayed under other orders an adaptive jury could
use, each learned from the closed rounds only, to see how much of the ceiling any order reaches.
Three limits close it. Given each judge's true chance to agree on each problem (the simulator's
own, which no jury can know better): the best fixed order per problem, and the best way of asking
that picks each next judge by the answers so far; each is the most its kind can save on average.
And the ceiling of an order that knew the answers, which nothing that asks can reach.

Usage: python bench/adaptive_jury.py [--rounds 20] [--seed 11]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import itertools
import json
import sqlite3
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from cads_process import cads, python

JUDGES = 4  # the built-in panel's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    py = python()
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for jury in ("full", "adaptive"):
            config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
            config.update(jury=jury, rounds=args.rounds, target=100000, seed=args.seed)
            (Path(work) / f"{jury}.yaml").write_text(yaml.safe_dump(config))
            cads("run", f"{jury}.yaml", "--run-id", jury, cwd=work, interpreter=py)
            stats = json.loads(cads("stats", jury, "--json", cwd=work, interpreter=py).stdout)
            with sqlite3.connect(Path(work) / "cads.db") as db:
                calls = db.execute("SELECT count(*) FROM cads_calls WHERE run = ? AND role = 'judge'", (jury,)).fetchone()[0]
            if jury == "full":
                study = order_study(Path(work) / "cads.db")
            rows[jury] = {"calls": calls, "kept": stats["kept"], "correct": stats["truth"]["kept_correct_rate"],
                          "splits": stats["adversarial"]}
    print(f"simulated panel, seed {args.seed}, {args.rounds} rounds (simulated figures)")
    for jury, r in rows.items():
        print(f"  {jury:8s} jury: {r['calls']:6d} judge calls, {r['kept']} kept, kept-sample correctness {r['correct']:.1%}")
    full, adaptive = rows["full"], rows["adaptive"]
    print(f"  adaptive / full judge calls: {adaptive['calls'] / full['calls']:.2f} "
          f"({1 - adaptive['calls'] / full['calls']:.1%} fewer); correctness difference "
          f"{100 * (adaptive['correct'] - full['correct']):+.1f} points")
    # Only a split can settle before every judge answers, and no sooner than after two of them.
    ceiling = full["splits"] * (JUDGES - 2) / full["calls"]
    print(f"  the most any order could save on this data: {ceiling:.1%} "
          f"({full['splits']} splits, each settled after 2 of {JUDGES} judges at best)")
    print("  order study, the full jury's answers replayed (judge calls saved; simulated):")
    for name, saved in study.items():
        print(f"    {name:76s} {saved:.1%}")


def order_study(db: Path) -> dict[str, float]:
    """Calls an adaptive jury would save on the full jury's answers under several orders. Each
    order is chosen per problem from the rounds before it, as the graph would."""
    from cadsynth.agents.matching import answers_match
    from cadsynth.agents.sim.models import answer_chances
    from cadsynth.agents.sim.truth import Truth, TruthBook, spec_digest_of
    from cadsynth.config import RunConfig
    from cadsynth.domain import Judgment, Proposal
    from cadsynth.graphs.consensus import judge_record, jury_order
    from cadsynth.store.ledger import Ledger
    from cadsynth.store.notes import Notes

    with sqlite3.connect(db) as conn:
        config = RunConfig.model_validate(json.loads(conn.execute("SELECT config FROM cads_runs WHERE id = 'full'").fetchone()[0]))

    async def read() -> tuple[list[Proposal], list[Judgment], list[Truth | None]]:
        ledger = Ledger.open(f"sqlite:///{db}", create=False)
        try:
            found = await ledger.proposals("full")
            # The simulator's own truth about each problem, from its notes (as `cads stats` reads it).
            truths = await TruthBook(config.world, Notes(ledger.engine)).about_many(
                [(p.question, spec_digest_of(p.image_spec), p.choices) for p in found]
            )
            return found, await ledger.judgments("full"), truths
        finally:
            await ledger.close()

    found, judgments, truths = asyncio.run(read())
    proposals = {p.id: p for p in found}
    truth = {p.id: t for p, t in zip(found, truths, strict=True)}
    answers: dict[str, dict[str, Judgment]] = collections.defaultdict(dict)
    for j in judgments:
        if not j.rationalized and not j.abstained:
            answers[j.proposal][j.judge] = j
    judges = sorted({name for given in answers.values() for name in given})
    problems = sorted((proposals[p].round, p) for p, given in answers.items() if len(given) == len(judges))
    right = {p: {name: bool(answers[p][name].agrees) for name in judges} for _, p in problems}

    def asked(order: list[str], problem: str) -> int:
        """The adaptive rule with C >= 1 kept and C = K easy: a split settles it."""
        first = right[problem][order[0]]
        return next((i + 1 for i, name in enumerate(order[1:], 1) if right[problem][name] != first), len(order))

    features = sorted({c for p in proposals.values() for c in p.capabilities})

    def x(p: str) -> np.ndarray:
        caps = proposals[p].capabilities
        return np.array([1.0, proposals[p].difficulty, *(c in caps for c in features)], dtype=float)

    def logistic(rows: list[str], name: str) -> np.ndarray:
        """Each judge's chance on a problem from its difficulty and capabilities (ridge, Newton)."""
        X, y = np.array([x(p) for p in rows]), np.array([right[p][name] for p in rows], dtype=float)
        w = np.zeros(X.shape[1])
        for _ in range(20):
            chance = 1 / (1 + np.exp(-X @ w))
            hessian = (X.T * (chance * (1 - chance))) @ X + np.eye(len(w))
            w -= np.linalg.solve(hessian, X.T @ (chance - y) + w)
        return w

    def expected(chances: list[float]) -> float:
        """Judges asked on average in this order: a split settles it."""
        total, p_same = 1.0, 1.0
        for i in range(1, len(chances)):
            total += p_same  # judge i is asked while all before agreed (all right or all wrong)
            right_all = np.prod(chances[: i + 1])
            wrong_all = np.prod([1 - c for c in chances[: i + 1]])
            p_same = right_all + wrong_all
        return total

    def replay(choose) -> float:  # type: ignore[no-untyped-def]
        saved = total = 0
        for rnd, group in itertools.groupby(problems, key=lambda rp: rp[0]):
            before = [p for r, p in problems if r < rnd]
            learned = choose.learn(before) if before else None
            for _, p in group:
                order = choose.order(learned, p) if learned is not None else judges
                saved += len(judges) - asked(order, p)
                total += len(judges)
        return saved / total

    class Panel:  # no record: the panel's order every time
        @staticmethod
        def learn(before: list[str]) -> None:
            return None

    class InUse:  # the graph's: most and least reliable first
        @staticmethod
        def learn(before: list[str]):  # type: ignore[no-untyped-def]
            return judge_record({}, [answers[p][n] for p in before for n in judges])

        @staticmethod
        def order(record, p: str) -> list[str]:  # type: ignore[no-untyped-def]
            return jury_order(judges, record)

    class PerProblem:  # each judge's chance from the problem's difficulty and capabilities
        @staticmethod
        def learn(before: list[str]):  # type: ignore[no-untyped-def]
            return {n: logistic(before, n) for n in judges}

        @staticmethod
        def order(weights, p: str) -> list[str]:  # type: ignore[no-untyped-def]
            chance = {n: float(1 / (1 + np.exp(-x(p) @ weights[n]))) for n in judges}
            return list(min(itertools.permutations(judges), key=lambda o: expected([chance[n] for n in o])))

    class Pairs:  # the pair that split most often so far first
        @staticmethod
        def learn(before: list[str]):  # type: ignore[no-untyped-def]
            return {pair: sum(right[p][pair[0]] != right[p][pair[1]] for p in before) for pair in itertools.combinations(judges, 2)}

        @staticmethod
        def order(splits, p: str) -> list[str]:  # type: ignore[no-untyped-def]
            first = max(splits, key=splits.get)
            return [*first, *(n for n in judges if n not in first)]

    personas = {a.name: a.sim for a in config.panel}

    def agreement(p: str, name: str) -> float:
        """The simulator's own chance that this judge's answer matches the problem's reference."""
        q = proposals[p]
        sim = truth[p]
        assert sim is not None  # a simulated panel's problem
        chances = answer_chances(personas[name], config.world, q.capabilities, sim.model_dump(mode="json"))
        return sum(c for answer, c in chances.items()
                   if answers_match(answer, q.reference_answer, q.answer_type, q.choices))

    def known_chances() -> float:
        """No fixed order can do better on average than the best one for each problem's true chances."""
        asked = sum(min(expected([agreement(p, n) for n in o]) for o in itertools.permutations(judges)) for _, p in problems)
        return 1 - asked / (len(judges) * len(problems))

    def known_chances_any_policy() -> float:
        """Nor can any way of asking, even one that picks the next judge by the answers so far: the
        best such policy for each problem's true chances, by dynamic programming over who was asked."""
        total = 0.0
        for _, p in problems:
            chance = {n: agreement(p, n) for n in judges}

            @functools.cache
            def still(asked: frozenset[str], agreed: bool) -> float:  # judges yet to ask while every answer was alike
                rest = [n for n in judges if n not in asked]
                return min((1 + (chance[n] if agreed else 1 - chance[n]) * still(asked | {n}, agreed) for n in rest), default=0.0)

            total += min(1 + chance[n] * still(frozenset({n}), True) + (1 - chance[n]) * still(frozenset({n}), False)
                         for n in judges)  # the first judge's answer decides which branch follows
        return 1 - total / (len(judges) * len(problems))

    splits = sum(len(set(right[p].values())) > 1 for _, p in problems)
    return {
        "panel order": replay(Panel),
        "most and least reliable first (the graph's)": replay(InUse),
        "the pair that split most often first": replay(Pairs),
        "per problem, from a logistic fit on difficulty and capabilities": replay(PerProblem),
        "the best order for each problem, knowing the simulator's chances (expected)": known_chances(),
        "the best answer-dependent asking, knowing the simulator's chances (expected)": known_chances_any_policy(),
        "any order, knowing the answers (the ceiling)": splits * (len(judges) - 2) / (len(judges) * len(problems)),
    }


if __name__ == "__main__":
    main()

"""Latency-bound runs: three OpenAI-compatible agents on a local server that answers every request
after a fixed delay (0.8 s by default), one lane against N lanes, side by side; then one lane with
heavy-tailed latencies (lognormal, the same median).

Prints for each fixed-delay run: wall time, model calls per second, the run's wall over (model
phases on its critical path x the delay), and, from the server's own request log, the most requests
it ever had in flight and in any 60-second window, against the config's limits, and the CPU time
`cads` (with its painter workers) used per model call. For the
heavy-tailed run: each round's span over its slowest problem's chain of calls (the sum, over the
problem's steps, of the step's slowest request), both read off the server's log.

Usage: python bench/latency_bound.py [--lanes 16] [--latency 0.8] [--rounds 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

import yaml

from cads_process import cads, python, reexec_with_cadsynth

reexec_with_cadsynth()
from cadsynth.fakes import FakeOpenAI, request_target, request_text  # noqa: E402  (a real HTTP endpoint on 127.0.0.1)
from cadsynth.fakes.panelist import Panelist  # noqa: E402

RPM, CONCURRENCY = 6000, 64


def config(base_url: str, lanes: int, rounds: int) -> dict:
    agent = {"provider": "openai", "base_url": base_url, "timeout": 30}
    return {
        "rounds": rounds,
        "target": 100000,
        "lanes": lanes,
        "proposals_per_agent": 1,
        "concurrency": 256,
        "seed": 1,
        "limits": [{"provider": "openai", "model": m, "base_url": base_url, "rpm": RPM, "concurrency": CONCURRENCY}
                   for m in ("gpt-4o", "gpt-4o-mini", "qwen2.5-vl-7b")],
        "panel": [
            {"name": "gpt", "model": "gpt-4o", "roles": ["proposer", "critic", "judge", "adversary"], **agent},
            {"name": "mini", "model": "gpt-4o-mini", "structured_output": "function_calling",
             "roles": ["proposer", "critic", "judge"], **agent},
            {"name": "qwen", "model": "qwen2.5-vl-7b", "structured_output": "json_text", "roles": ["proposer", "judge"], **agent},
        ],
    }


def critical_phases(db: Path) -> int:
    """Model phases a lane had to wait for in turn: per round, each kind of call that happened."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT run, round, role, max(target LIKE '%/revise') FROM cads_calls GROUP BY run, round, role, target LIKE '%/revise'"
        ).fetchall()
    per_lane: dict[str, set[tuple[int, str, int]]] = {}
    for run, round_, role, revise in rows:
        per_lane.setdefault(run, set()).add((round_, role, revise))
    return max(len(phases) for phases in per_lane.values())


def busiest_minute(requests: list) -> int:
    """The most requests that arrived within any 60 seconds, from the server's arrival times."""
    times = sorted(r.started for r in requests)
    return max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)


class Tracing(Panelist):
    """The panelist, remembering each problem it proposed, so the server's log can be read problem
    by problem: a proposal request by the answer it got, later requests by the text they quote."""

    def __init__(self) -> None:
        super().__init__()
        self.proposed: dict[int, str] = {}  # id of a proposal request's body -> its question
        self.quoted: dict[str, str] = {}  # question or image prompt -> question

    def __call__(self, body: dict) -> object:
        answer = super().__call__(body)
        if isinstance(answer, dict) and "question" in answer:
            self.proposed[id(body)] = answer["question"]
            self.quoted[answer["question"]] = self.quoted[answer["visual_prompt"]] = answer["question"]
        return answer

    def problem_of(self, record) -> str:
        if id(record.body) in self.proposed:
            return self.proposed[id(record.body)]
        text = record.body.get("prompt") or request_text(record.body)
        return next(question for quoted, question in self.quoted.items() if quoted in text)


def lognormal(median: float, sigma: float):
    """A heavy-tailed delay per request, the same for the same request."""

    def delay(body: object) -> float:
        rng = random.Random(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest())
        return median * math.exp(rng.gauss(0.0, sigma))

    return delay


def step_of(record) -> str:
    if record.route == "images.generations":
        return "paint"
    target, text = request_target(record.body), request_text(record.body)
    # A structured-output request names its schema; a json_text one says it in the prompt.
    name = target.name if target.schema is not None else re.search(r"a `(\w+Draft)`", text).group(1)
    if name == "ProposalDraft":
        return "revise" if "You proposed the problem below" in text else "propose"
    return {"CritiqueDraft": "critique", "JudgmentDraft": "judge", "ContextDraft": "adversary"}[name]


def round_spans(server: FakeOpenAI, panelist: Tracing) -> list[tuple[float, float]]:
    """Per round: its span (the first request to the last answer before the adversary's) and its
    slowest problem's chain (the sum, over the problem's steps, of the step's slowest request)."""
    rounds: list[list] = [[]]
    for record in sorted(server.requests, key=lambda r: r.started):
        if step_of(record) == "adversary":
            rounds.append([])
        else:
            rounds[-1].append(record)
    spans = []
    for requests in filter(None, rounds):
        chains: dict[str, dict[str, float]] = {}
        for record in requests:
            steps = chains.setdefault(panelist.problem_of(record), {})
            step = step_of(record)
            steps[step] = max(steps.get(step, 0.0), record.finished - record.started)
        span = max(r.finished for r in requests) - min(r.started for r in requests)
        spans.append((span, max(sum(steps.values()) for steps in chains.values())))
    return spans


def heavy_tailed(py: str, rounds: int, median: float, sigma: float) -> list[tuple[float, float]]:
    panelist = Tracing()
    with tempfile.TemporaryDirectory() as work, FakeOpenAI(panelist, latency=lognormal(median, sigma)) as server:
        (Path(work) / "panel.yaml").write_text(yaml.safe_dump(config(server.base_url, 1, rounds)))
        cads("run", "panel.yaml", "--run-id", "tail", cwd=work, interpreter=py)
        return round_spans(server, panelist)


def cpu_of_children() -> float:
    """CPU seconds of the finished child processes (with the painter workers they waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(py: str, lanes: int, rounds: int, latency: float) -> dict:
    with tempfile.TemporaryDirectory() as work, FakeOpenAI(Panelist(), latency=latency) as server:
        (Path(work) / "panel.yaml").write_text(yaml.safe_dump(config(server.base_url, lanes, rounds)))
        start, used = time.perf_counter(), cpu_of_children()
        cads("run", "panel.yaml", "--run-id", "lat", cwd=work, interpreter=py)
        wall, cpu = time.perf_counter() - start, cpu_of_children() - used
        stats = json.loads(cads("stats", "lat", "--json", cwd=work, interpreter=py).stdout)
        phases = critical_phases(Path(work) / "cads.db")
        most, window = server.stats.max_in_flight, busiest_minute(server.requests)
        # The run itself, without the process's start-up and shut-down: its first request to its last answer.
        active = max(r.finished for r in server.requests) - min(r.started for r in server.requests)
    return {"wall": wall, "active": active, "cpu": cpu, "calls": stats["model_calls"], "kept": stats["kept"], "phases": phases,
            "in_flight": most, "per_minute": window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=0.6, help="of the heavy-tailed run's lognormal latency")
    args = parser.parse_args()
    py = python()
    print(f"local OpenAI-compatible server answering after {args.latency} s; limits per model: rpm {RPM}, "
          f"concurrency {CONCURRENCY} (3 models)")
    rows = {}
    for lanes in (1, args.lanes):
        r = rows[lanes] = measure(py, lanes, args.rounds, args.latency)
        print(
            f"  {lanes:3d} lane(s): {r['calls']} calls in {r['wall']:.1f} s ({r['calls'] / r['wall']:.1f}/s), {r['kept']} kept; "
            f"wall / ({r['phases']} phases x {args.latency} s) = {r['wall'] / (r['phases'] * args.latency):.2f} "
            f"(first request to last answer: {r['active'] / (r['phases'] * args.latency):.2f}); "
            f"server saw at most {r['in_flight']} in flight, {r['per_minute']} in a minute; "
            f"cads used {r['cpu']:.1f} CPU-s, {1000 * r['cpu'] / r['calls']:.1f} ms a call"
        )
    one, many = rows[1], rows[args.lanes]
    print(f"  calls per second, {args.lanes} lanes / 1 lane: {(many['calls'] / many['wall']) / (one['calls'] / one['wall']):.1f}x")
    print(f"heavy-tailed latency, lognormal with median {args.latency} s and sigma {args.sigma}, 1 lane:")
    for i, (span, chain) in enumerate(heavy_tailed(py, args.rounds, args.latency, args.sigma)):
        print(f"  round {i}: {span:.2f} s; its slowest problem's chain {chain:.2f} s; ratio {span / chain:.2f}")


if __name__ == "__main__":
    main()

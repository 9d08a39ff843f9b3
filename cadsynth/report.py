"""What a run produced, read back from the ledger: stats, transcripts and the exported data set."""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from cadsynth.agents.faults import FAULT_KEYS
from cadsynth.agents.matching import answers_match
from cadsynth.domain import Consensus, Proposal
from cadsynth.graphs.consensus import tally
from cadsynth.store.blobs import BlobStore
from cadsynth.store.ledger import Ledger, UnknownRunError, shown_status


class MissingImagesError(LookupError):
    """The kept samples' images are not in the data folder given (another --data, or deleted)."""


async def _require_run(ledger: Ledger, run: str) -> dict[str, Any]:
    record = await ledger.run(run)
    if record is None:
        raise UnknownRunError(f"no run {run!r} in this database; `cads runs` lists the runs")
    return record


def _correct(p: Proposal, *, raw: bool = False) -> bool:
    """Whether the reference (as kept, or as first proposed) is the world's true answer."""
    assert p.sim is not None
    reference = p.sim.proposed_reference if raw else p.reference_answer
    return answers_match(reference, p.sim.truth, p.answer_type, p.choices)


async def stats(ledger: Ledger, run: str) -> dict[str, Any]:
    """A run's figures; for a run with lanes, summed over them, with each lane's under `lanes`."""
    record = await _require_run(ledger, run)
    lanes = await ledger.lanes(run)
    if not lanes:
        return await _stats_one(ledger, record)
    return _combined(record, [await _stats_one(ledger, lane) for lane in lanes])


def _combined(record: dict[str, Any], lanes: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures from its lanes': counts and costs add up, rates are weighted."""

    def total(key: str) -> int:
        return sum(int(s[key]) for s in lanes)

    rounds: dict[int, dict[str, Any]] = {}
    for s in lanes:
        for r in s["rounds"]:
            row = rounds.setdefault(r["round"], {"round": r["round"], "proposals": 0, "kept": 0, "adversarial": 0,
                                                  "discarded": 0, "dropped": 0, "difficulty_sum": 0.0, "cost_usd": 0.0})
            for key in ("proposals", "kept", "adversarial", "discarded", "dropped"):
                row[key] += r[key]
            row["difficulty_sum"] += r["mean_difficulty"] * r["proposals"]
            row["cost_usd"] += r["cost_usd"]
    by_agent: dict[str, dict[str, Any]] = {}
    for s in lanes:
        for name, v in s["cost"]["by_agent"].items():
            row = by_agent.setdefault(name, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0})
            for key in row:
                row[key] += v[key]
    out: dict[str, Any] = {
        "run": record["id"],
        "status": shown_status(record),
        "reason": record.get("reason"),
        "parent": record["parent"],
        **{key: total(key) for key in ("proposals", "kept", "adversarial", "discarded", "dropped", "model_calls")},
        "tokens": {"input": sum(s["tokens"]["input"] for s in lanes), "output": sum(s["tokens"]["output"] for s in lanes)},
        "rounds": [
            {
                **{k: v for k, v in row.items() if k != "difficulty_sum"},
                "mean_difficulty": round(row["difficulty_sum"] / max(1, row["proposals"]), 4),
                "cost_usd": round(row["cost_usd"], 6),
            }
            for _, row in sorted(rounds.items())
        ],
        "faults": {key: sum(s["faults"][key] for s in lanes) for key in FAULT_KEYS},
        "cost": {
            "usd": round(sum(s["cost"]["usd"] for s in lanes), 6),
            "input_tokens": sum(s["cost"]["input_tokens"] for s in lanes),
            "output_tokens": sum(s["cost"]["output_tokens"] for s in lanes),
            "budget_usd": record.get("budget_usd"),
            "cached_calls": sum(s["cost"]["cached_calls"] for s in lanes),
            "by_agent": {name: {**v, "usd": round(v["usd"], 6)} for name, v in by_agent.items()},
        },
        "lanes": [
            {"lane": i, **{k: s[k] for k in ("run", "status", "reason", "proposals", "kept", "adversarial", "discarded")},
             "rounds": len(s["rounds"])}
            for i, s in enumerate(lanes)
        ],
    }
    if all("truth" in s for s in lanes):
        kept = [s for s in lanes if s["truth"]["kept_correct_rate"] is not None]
        out["truth"] = {
            "proposal_correct_rate": round(
                sum(s["truth"]["proposal_correct_rate"] * s["proposals"] for s in lanes) / max(1, out["proposals"]), 4
            ),
            "kept_correct_rate": round(sum(s["truth"]["kept_correct_rate"] * s["kept"] for s in kept) / max(1, out["kept"]), 4)
            if kept
            else None,
        }
    return out


async def _stats_one(ledger: Ledger, record: dict[str, Any]) -> dict[str, Any]:
    run = record["id"]
    proposals = await ledger.proposals(run)
    verdicts = {c.proposal: c for c in await ledger.consensus(run)}
    kept = [p for p in proposals if p.id in verdicts and verdicts[p.id].outcome in ("keep", "adversarial")]
    counts = tally(c.outcome for c in verdicts.values())
    calls = await ledger.call_totals(run)
    breakdown = await ledger.call_breakdown(run)
    by_round = breakdown["by_round"]
    out: dict[str, Any] = {
        "run": run,
        "status": shown_status(record),
        "reason": record.get("reason"),
        "parent": record["parent"],
        "proposals": len(proposals),
        **counts,
        "model_calls": calls["calls"],
        "tokens": {"input": calls["input_tokens"], "output": calls["output_tokens"]},
        "rounds": [
            {**r.model_dump(exclude={"run"}), "cost_usd": round(by_round.get(r.round, {}).get("usd", 0.0), 6)}
            for r in await ledger.rounds(run)
        ],
        # Failed requests by kind, and what followed each: retried, or the call gave up (a judge
        # abstained, anything else was dropped). Kinds add up to retried + abstained + dropped.
        "faults": {key: breakdown["faults"].get(key, 0) for key in FAULT_KEYS},
        "cost": {
            "usd": round(calls["usd"], 6),
            "input_tokens": calls["input_tokens"],
            "output_tokens": calls["output_tokens"],
            "budget_usd": record.get("budget_usd"),
            "cached_calls": breakdown["cached"],
            "by_agent": {name: {**v, "usd": round(v["usd"], 6)} for name, v in breakdown["by_agent"].items()},
        },
    }
    simulated = [p for p in proposals if p.sim is not None]
    if simulated:
        kept_sim = [p for p in kept if p.sim is not None]
        out["truth"] = {
            "proposal_correct_rate": round(sum(_correct(p, raw=True) for p in simulated) / len(simulated), 4),
            "kept_correct_rate": round(sum(map(_correct, kept_sim)) / len(kept_sim), 4) if kept_sim else None,
        }
    return out


async def transcript(ledger: Ledger, run: str, round_: int) -> dict[str, Any]:
    record = await _require_run(ledger, run)
    contexts = await ledger.contexts(run)
    before = next((c for r, c in contexts if r == round_), None)
    after = next((c for r, c in contexts if r == round_ + 1), None)
    return {
        "run": record,
        "forks": await ledger.forks(run),
        "round": round_,
        "context_before": before,
        "context_after": after,
        "proposals": await ledger.proposals(run, round_),
        "critiques": await ledger.critiques(run, round_),
        "judgments": await ledger.judgments(run, round_),
        "consensus": {c.proposal: c for c in await ledger.consensus(run, round_)},
    }


def _sample(p: Proposal, verdict: Consensus, rationales: list[str], asked: int, blobs: BlobStore, lane: int) -> dict[str, Any]:
    return {
        "id": p.id,
        "image": str(blobs.path(p.image).resolve()) if p.image else None,
        "question": p.question,
        "answer_type": p.answer_type,
        "choices": p.choices,
        "answer": p.reference_answer,
        "solution": p.solution,
        # Judges' rationales that reached the reference: extra reasoning traces for free (as in STaR).
        "rationales": rationales,
        "consensus": verdict.score,
        "judges": verdict.judges,
        "asked": asked,  # judges asked: all of them, or fewer when an adaptive jury stopped early
        "outcome": verdict.outcome,
        "run": p.run,
        "lane": lane,
        "round": p.round,
        "proposer": p.proposer,
        "seed": p.seed_id,
        "strategy": p.strategy,
        "capabilities": list(p.capabilities),
        "difficulty": p.difficulty,
    }


async def _kept_samples(ledger: Ledger, blobs: BlobStore, run: str, lane: int) -> list[dict[str, Any]]:
    verdicts = {c.proposal: c for c in await ledger.consensus(run)}
    rationales: dict[str, list[str]] = defaultdict(list)
    asked: dict[str, int] = defaultdict(int)
    for j in await ledger.judgments(run):
        asked[j.proposal] += 1
        if j.agrees:
            rationales[j.proposal].append(j.rationale)
    return [
        _sample(p, verdicts[p.id], rationales[p.id], asked[p.id], blobs, lane)
        for p in await ledger.proposals(run)
        if p.id in verdicts and verdicts[p.id].outcome in ("keep", "adversarial")
    ]


async def export_jsonl(ledger: Ledger, blobs: BlobStore, run: str, out: Path) -> int:
    """The kept samples of a run (of all its lanes, in lane order), one JSON object per line."""
    await _require_run(ledger, run)
    lanes = [lane["id"] for lane in await ledger.lanes(run)] or [run]
    samples = [s for i, lane in enumerate(lanes) for s in await _kept_samples(ledger, blobs, lane, i)]
    missing = [s for s in samples if s["image"] and not Path(s["image"]).is_file()]
    if missing:
        raise MissingImagesError(
            f"{len(missing)} of {len(samples)} images are not there (e.g. {missing[0]['image']}); "
            "pass the --data folder the run used"
        )
    # Write beside the target and rename: a failed export never leaves a half-written file.
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for sample in samples:
                fh.write(json.dumps(sample, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(samples)

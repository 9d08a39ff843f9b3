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
    record = await _require_run(ledger, run)
    proposals = await ledger.proposals(run)
    verdicts = {c.proposal: c for c in await ledger.consensus(run)}
    kept = [p for p in proposals if p.id in verdicts and verdicts[p.id].outcome in ("keep", "adversarial")]
    by_outcome: dict[str, int] = defaultdict(int)
    for c in verdicts.values():
        by_outcome[c.outcome] += 1
    calls = await ledger.call_totals(run)
    breakdown = await ledger.call_breakdown(run)
    by_round = breakdown["by_round"]
    out: dict[str, Any] = {
        "run": run,
        "status": shown_status(record),
        "reason": record.get("reason"),
        "parent": record["parent"],
        "proposals": len(proposals),
        "kept": len(kept),
        "adversarial": by_outcome["adversarial"],
        "discarded": by_outcome["discard"] + by_outcome["dropped"],
        "dropped": by_outcome["dropped"],
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


def _sample(p: Proposal, verdict: Consensus, rationales: list[str], blobs: BlobStore) -> dict[str, Any]:
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
        "outcome": verdict.outcome,
        "run": p.run,
        "round": p.round,
        "proposer": p.proposer,
        "seed": p.seed_id,
        "strategy": p.strategy,
        "capabilities": list(p.capabilities),
        "difficulty": p.difficulty,
    }


async def export_jsonl(ledger: Ledger, blobs: BlobStore, run: str, out: Path) -> int:
    await _require_run(ledger, run)
    verdicts = {c.proposal: c for c in await ledger.consensus(run)}
    rationales: dict[str, list[str]] = defaultdict(list)
    for j in await ledger.judgments(run):
        if j.agrees:
            rationales[j.proposal].append(j.rationale)
    samples = [
        _sample(p, verdicts[p.id], rationales[p.id], blobs)
        for p in await ledger.proposals(run)
        if p.id in verdicts and verdicts[p.id].outcome in ("keep", "adversarial")
    ]
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

"""What a run produced, read back from the ledger: stats and transcripts (exports: `exports.py`)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadsynth.agents.faults import FAULT_KEYS
from cadsynth.agents.matching import answers_match
from cadsynth.config import RunConfig
from cadsynth.domain import Consensus, Critique, Proposal
from cadsynth.graphs.consensus import judged_out, tally
from cadsynth.graphs.reliability import VoteCounts, count_votes, fit, run_votes
from cadsynth.store.ledger import Ledger, UnknownRunError, shown_status

if TYPE_CHECKING:
    from cadsynth.agents.sim.truth import Truth


async def _require_run(ledger: Ledger, run: str) -> dict[str, Any]:
    record = await ledger.run(run)
    if record is None:
        raise UnknownRunError(f"no run {run!r} in this database; `cads runs` lists the runs")
    return record


def _correct(p: Proposal, truth: Truth, *, raw: bool = False) -> bool:
    """Whether the reference (as kept, or as first proposed) is the world's true answer for the
    image as drawn. An image that contradicts its question has no true answer: never correct."""
    reference = (p.proposed_reference or p.reference_answer) if raw else p.reference_answer
    return truth.conflict is None and answers_match(reference, truth.truth, p.answer_type, p.choices)


def _rate(hits: int, n: int) -> float | None:
    return round(hits / n, 4) if n else None


def _pairs(groups: Counter[str]) -> int:
    return sum(n * (n - 1) // 2 for n in groups.values())


# The kind of a problem drawn by a painter model from its visual prompt (no spec).
PAINTER_KIND = "painter_model"


def image_kind(p: Proposal) -> str:
    """The problem's image kind: its spec's, or PAINTER_KIND."""
    return p.image_spec.kind if p.image_spec is not None else PAINTER_KIND


def _failure_reason(p: Proposal) -> str:
    """Why a problem has no image, its quoted values left out so equal causes count together."""
    if p.paint_refused is None:
        return "no image from a painter model"
    return re.sub(r"'[^']*'|\"[^\"]*\"", "…", p.paint_refused)


def _by_kind(proposals: list[Proposal], kept: list[Proposal]) -> dict[str, dict[str, Any]]:
    """Per image kind: proposals, render failures and why, kept (simulated correctness: `_truth`)."""
    out: dict[str, dict[str, Any]] = {}
    for p in proposals:
        row = out.setdefault(image_kind(p), {"proposals": 0, "render_failures": 0, "render_failure_reasons": {}, "kept": 0})
        row["proposals"] += 1
        if p.image is None:
            row["render_failures"] += 1
            why = _failure_reason(p)
            row["render_failure_reasons"][why] = row["render_failure_reasons"].get(why, 0) + 1
    for p in kept:
        out[image_kind(p)]["kept"] += 1
    return dict(sorted(out.items()))


async def _truth(
    ledger: Ledger, config: RunConfig, proposals: list[Proposal], kept_ids: set[str], duplicates: Counter[str]
) -> dict[str, Any] | None:
    """The simulator's truth about what was proposed and kept: correctness and the harder world's
    failure modes (agents.sim.hazards), read from the simulator's own notes. Only stats read it; no
    gate does. `duplicates` gathers the kept samples' popular problems (over a run's lanes, too).
    None when the simulator wrote none of these problems."""
    from cadsynth.agents.sim.truth import TruthBook, spec_digest_of
    from cadsynth.store.notes import Notes

    book = TruthBook(config.world, Notes(ledger.engine))
    truths = await book.about_many([(p.question, spec_digest_of(p.image_spec), p.choices) for p in proposals])
    simulated = [(p, t) for p, t in zip(proposals, truths, strict=True) if t is not None]
    if not simulated:
        return None
    kept = [(p, t) for p, t in simulated if p.id in kept_ids]
    groups = Counter(t.duplicate_of for _, t in kept if t.duplicate_of)
    duplicates.update(groups)
    checked: Counter[str] = Counter(image_kind(p) for p, _ in kept)
    correct: Counter[str] = Counter(image_kind(p) for p, t in kept if _correct(p, t))
    return {
        # Kept samples whose truth the simulator knows, and how many are right, per image kind.
        "by_kind": {kind: {"kept_checked": n, "kept_correct": correct[kind]} for kind, n in sorted(checked.items())},
        "proposal_correct_rate": round(sum(_correct(p, t, raw=True) for p, t in simulated) / len(simulated), 4),
        "kept_correct_rate": _rate(sum(_correct(p, t) for p, t in kept), len(kept)),
        "kept_text_answerable_rate": _rate(sum(t.text_answerable for _, t in kept), len(kept)),
        "kept_conflict_rate": _rate(sum(bool(t.conflict) for _, t in kept), len(kept)),
        # Kept pairs that are the same popular problem (near-duplicates by construction).
        "kept_duplicate_pairs": _pairs(groups),
    }


# The gates (config `gates:`), what each removes (a drop reason), and the ledger roles of the calls
# each adds. The consistency checks themselves ride on the critics' calls; its own calls are the
# rechecks after a revision.
GATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "image_necessity": ("text_answerable", ("blind_judge",)),
    "consistency": ("inconsistent", ("recheck",)),
    # The OCR model makes no ledger call; a painter model's second drawing is a painter call.
    "legibility": ("illegible", ()),
}


def _gates(config: dict[str, Any], verdicts: list[Consensus], critiques: list[Critique], by_role: dict[str, Any]) -> dict[str, Any]:
    reasons: Counter[str] = Counter(str(v.reason) for v in verdicts if v.outcome == "dropped")
    out: dict[str, Any] = {}
    for gate, (reason, roles) in GATES.items():
        out[gate] = {
            "on": bool((config.get("gates") or {}).get(gate, False)),
            "removed": reasons.get(reason, 0),
            "calls": sum(by_role.get(r, {}).get("calls", 0) for r in roles),
            "usd": round(sum(by_role.get(r, {}).get("usd", 0.0) for r in roles), 6),
        }
    # Problems the critics' consistency checks sent back for a revision.
    out["consistency"]["sent_back"] = len({c.proposal for c in critiques if c.conflict and not c.recheck})
    return out


@dataclass
class _RunWide:
    """What `stats` gathers over a run's lanes, one lane at a time: a run of 100,000 samples is never
    in memory at once, and each lane's records are read once."""

    removed: set[str]  # problems the near-duplicate gate took out of the whole run
    duplicates: Counter[str] = field(default_factory=Counter)  # kept samples' popular problems (simulated)
    votes: VoteCounts = field(default_factory=dict)  # the judges' answer patterns, for their reliability
    kept_removed: int = 0  # kept samples among `removed` (the export has kept - this)


async def stats(ledger: Ledger, run: str) -> dict[str, Any]:
    """A run's figures; for a run with lanes, summed over them, with each lane's under `lanes`."""
    record = await _require_run(ledger, run)
    lanes = await ledger.lanes(run)
    # The near-duplicate gate removes samples over the whole run: the truth figures are the export's.
    wide = _RunWide(removed={d.proposal for d in await ledger.duplicates(run)})
    if not lanes:
        return await _quality(ledger, run, [record], await _stats_one(ledger, record, wide), wide)
    out = _combined(record, [await _stats_one(ledger, lane, wide) for lane in lanes])
    if "batch" in out:  # lanes share jobs: counted over them all at once, each job once
        from cadsynth.store.batches import BatchStore

        out["batch"] = await BatchStore(ledger.engine).totals([lane["id"] for lane in lanes])
    if "truth" in out:
        out["truth"]["kept_duplicate_pairs"] = _pairs(wide.duplicates)  # lanes converge on the same problems too
    return await _quality(ledger, run, lanes, out, wide)


async def _quality(ledger: Ledger, run: str, lanes: list[dict[str, Any]], out: dict[str, Any], wide: _RunWide) -> dict[str, Any]:
    """`out` with the figures only the whole run gives: duplicates removed, each judge's estimated accuracy."""
    members = [m["id"] for m in lanes]
    rule = RunConfig.model_validate(lanes[0]["config"]).gates.near_duplicates
    out["duplicates_removed"] = wide.kept_removed
    out["judges"] = {
        name: {"estimated_accuracy": r.estimated_accuracy, "judged": r.judged} for name, r in fit(wide.votes).items()
    }
    # `concurrency: auto`: each endpoint's value over the run, from its start.
    samples = {e: s for m in dict.fromkeys([run, *members]) for e, s in (await ledger.concurrency(m)).items()}
    if samples:
        start = min(at for series in samples.values() for at, _, _ in series)
        out["concurrency"] = {
            endpoint: [{"seconds": round(at - start, 1), "value": value, "in_flight": in_flight}
                       for at, value, in_flight in series]
            for endpoint, series in samples.items()
        }
    # The gate asks no model: its calls and cost are nil; it hashes what was judged.
    out.setdefault("gates", {})["near_duplicates"] = {
        "on": rule.enabled,
        "fingerprinted": sum([await ledger.fingerprinted(m) for m in members]),
        "removed": len(wide.removed),
        "calls": 0,
        "usd": 0.0,
    }
    return out


async def summary(ledger: Ledger, run: str) -> dict[str, Any]:
    """The counts a finished `cads run` prints, from grouped queries: at paper scale, loading
    every record as `stats` does would make the run's last moment its largest in memory."""
    await _require_run(ledger, run)
    outcomes: Counter[str] = Counter()
    calls = 0
    for member in await ledger.lane_progress(run):
        outcomes.update(member["outcomes"])
        calls += (await ledger.call_totals(member["run"]))["calls"]
    return {**tally(outcomes.elements()), "model_calls": calls}  # type: ignore[arg-type]


def _combined(record: dict[str, Any], lanes: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures from its lanes': counts and costs add up, rates are weighted."""

    def total(key: str) -> int:
        return sum(int(s[key]) for s in lanes)

    rounds: dict[int, dict[str, Any]] = {}
    for s in lanes:
        for r in s["rounds"]:
            row = rounds.setdefault(r["round"], {"round": r["round"], "proposals": 0, "kept": 0, "adversarial": 0,
                                                  "discarded": 0, "dropped": 0, "discarded_by_judges": 0,
                                                  "difficulty_sum": 0.0, "cost_usd": 0.0})
            for key in ("proposals", "kept", "adversarial", "discarded", "dropped", "discarded_by_judges"):
                row[key] += r[key]
            row["difficulty_sum"] += r["mean_difficulty"] * r["proposals"]
            row["cost_usd"] += r["cost_usd"]
    by: dict[str, dict[str, dict[str, Any]]] = {"by_agent": {}, "by_role": {}}
    for s in lanes:
        for breakdown, rows in by.items():
            for name, v in s["cost"][breakdown].items():
                row = rows.setdefault(name, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "usd": 0.0})
                for key in row:
                    row[key] += v[key]
    out: dict[str, Any] = {
        "run": record["id"],
        "status": shown_status(record),
        "reason": record.get("reason"),
        "parent": record["parent"],
        **{key: total(key) for key in ("proposals", "kept", "adversarial", "discarded", "dropped", "discarded_by_judges", "model_calls")},
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
            **{key: round(sum(s["cost"][key] for s in lanes), 6) for key in ("batch_usd", "online_usd")},
            "batch_calls": sum(s["cost"]["batch_calls"] for s in lanes),
            **{breakdown: {name: {**v, "usd": round(v["usd"], 6)} for name, v in rows.items()} for breakdown, rows in by.items()},
        },
        "lanes": [
            {"lane": i, **{k: s[k] for k in ("run", "status", "reason", "proposals", "kept", "adversarial", "discarded")},
             "rounds": len(s["rounds"])}
            for i, s in enumerate(lanes)
        ],
    }
    if all("batch" in s for s in lanes) and lanes:
        out["batch"] = {key: sum(s["batch"][key] for s in lanes) for key in lanes[0]["batch"]}
    out["by_kind"] = _combined_kinds([s["by_kind"] for s in lanes])
    out["gates"] = {
        gate: {
            key: any(s["gates"][gate][key] for s in lanes) if key == "on" else round(sum(s["gates"][gate][key] for s in lanes), 6)
            for key in lanes[0]["gates"][gate]
        }
        for gate in lanes[0]["gates"]
    } if lanes else {}
    if all("truth" in s for s in lanes):
        kept = [s for s in lanes if s["truth"]["kept_correct_rate"] is not None]

        def kept_rate(key: str) -> float | None:
            return round(sum(s["truth"][key] * s["kept"] for s in kept) / max(1, out["kept"]), 4) if kept else None

        out["truth"] = {
            "proposal_correct_rate": round(
                sum(s["truth"]["proposal_correct_rate"] * s["proposals"] for s in lanes) / max(1, out["proposals"]), 4
            ),
            **{key: kept_rate(key) for key in ("kept_correct_rate", "kept_text_answerable_rate", "kept_conflict_rate")},
            "kept_duplicate_pairs": sum(s["truth"]["kept_duplicate_pairs"] for s in lanes),  # within lanes
        }
    return out


def _combined_kinds(lanes: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Lanes' by_kind summed; kept correctness recomputed from the summed counts."""
    out: dict[str, dict[str, Any]] = {}
    for by_kind in lanes:
        for kind, row in by_kind.items():
            into = out.setdefault(kind, {"proposals": 0, "render_failures": 0, "render_failure_reasons": {}, "kept": 0})
            for key, value in row.items():
                if key == "render_failure_reasons":
                    for reason, n in value.items():
                        into[key][reason] = into[key].get(reason, 0) + n
                elif key != "kept_correct_rate":
                    into[key] = into.get(key, 0) + value
    for row in out.values():
        if "kept_checked" in row:
            row["kept_correct_rate"] = _rate(row["kept_correct"], row["kept_checked"])
    return dict(sorted(out.items()))


async def _stats_one(ledger: Ledger, record: dict[str, Any], wide: _RunWide) -> dict[str, Any]:
    run = record["id"]
    proposals = await ledger.proposals(run)
    verdicts = {c.proposal: c for c in await ledger.consensus(run)}
    kept = [p for p in proposals if p.id in verdicts and verdicts[p.id].outcome in ("keep", "adversarial")]
    wide.kept_removed += sum(p.id in wide.removed for p in kept)
    wide.votes = count_votes(run_votes(proposals, await ledger.judgments(run)), into=wide.votes)
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
            {**r.model_dump(exclude={"run"}), "discarded_by_judges": judged_out(r.model_dump()),
             "cost_usd": round(by_round.get(r.round, {}).get("usd", 0.0), 6)}
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
            # Of the cost, what went in provider batch jobs; and what the same calls would have cost online.
            "batch_usd": round(calls["batch_usd"], 6),
            "online_usd": round(calls["online_usd"], 6),
            "batch_calls": calls["batch_calls"],
            **{
                by: {name: {**v, "usd": round(v["usd"], 6)} for name, v in breakdown[by].items()}
                for by in ("by_agent", "by_role")  # a rationalizer is a judge writing training rationales
            },
        },
    }
    out["gates"] = _gates(record.get("config") or {}, list(verdicts.values()), await ledger.critiques(run), breakdown["by_role"])
    out["by_kind"] = _by_kind(proposals, kept)
    if (record.get("config") or {}).get("batch"):
        from cadsynth.store.batches import BatchStore

        # Its provider batch jobs: how many, how many failed whole, and the requests lost inside them.
        out["batch"] = await BatchStore(ledger.engine).totals([run])
    if any(a.get("provider") == "sim" for a in (record.get("config") or {}).get("panel", [])):
        truth = await _truth(ledger, RunConfig.model_validate(record["config"]), proposals, {p.id for p in kept if p.id not in wide.removed}, wide.duplicates)
        if truth is not None:
            checked = truth.pop("by_kind")
            for kind, row in out["by_kind"].items():
                counts = checked.get(kind, {"kept_checked": 0, "kept_correct": 0})
                row.update(counts, kept_correct_rate=_rate(counts["kept_correct"], counts["kept_checked"]))
            out["truth"] = truth
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

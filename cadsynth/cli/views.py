"""`cads runs`, `show` and `stats`: read what runs made, as tables, transcripts and figures."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from cadsynth.cli.app import DEFAULT_DB, DbOption, RunArgument, check_lane, checked, console, read, require_run, rounds_opened


def _status_note(record: dict[str, Any], status: str, jobs: list[dict[str, Any]] | None = None) -> str:
    lanes = record["config"].get("lanes", 1) if record.get("lane_of") is None else 1
    note = "; ".join(n for n in (_status_reason(record, status), _jobs_note(jobs or [])) if n)
    return f"{lanes} lanes; {note}" if lanes > 1 and note else f"{lanes} lanes" if lanes > 1 else note


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _jobs_note(jobs: list[dict[str, Any]]) -> str:
    """The provider batch jobs a run waits on: their ids and ages (store.batches)."""
    import time

    if not jobs:
        return ""
    done, total = sum(j["done"] for j in jobs), sum(j["requests"] for j in jobs)
    listed = ", ".join(f"{j['provider_id'] or j['id']} ({j['state']}, {_age(time.time() - j['created_at'])})" for j in jobs)
    return f"{len(jobs)} batch job{'s' * (len(jobs) != 1)}, {done} of {total} requests done: {listed}"


def _batch_jobs(db: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The open batch jobs holding a batching run's requests (its own, or its lanes')."""
    if not record["config"].get("batch"):
        return []
    from cadsynth.store.batches import BatchStore

    async def jobs(ledger: Any) -> list[dict[str, Any]]:
        members = [record["id"], *(lane["id"] for lane in await ledger.lanes(record["id"]))]
        return await BatchStore(ledger.engine).waiting_jobs(members)  # type: ignore[no-any-return]

    return read(db, jobs)  # type: ignore[no-any-return]


def _status_reason(record: dict[str, Any], status: str) -> str:
    if status == "failed":
        return str(record.get("reason") or "")
    if status == "interrupted":
        return f"its process is gone; `cads resume {record['id']}` continues it"
    if status == "stopped":
        return f"at its budget; `cads resume {record['id']} --budget USD`"
    if status == "waiting for review":
        return f"`cads review {record['id']}` decides the round's outcomes and continues it"
    if status == "waiting for batch":
        return f"`cads resume {record['id']}` collects its batch jobs and continues it"
    return ""


def runs(db: DbOption = DEFAULT_DB) -> None:
    """List the runs in the database, with their status (and why a run failed or stopped)."""
    from rich.table import Table

    from cadsynth.store.ledger import shown_status

    rows = read(db, lambda ledger: ledger.runs())
    headers = ("run", "status", "parent", "seed", "created")
    cells = []
    for r in rows:
        status = shown_status(r)
        parent = f"{r['parent']}@{r['fork_round']}" if r["parent"] else ""
        jobs = _batch_jobs(db, r) if status not in ("done", "failed") and r.get("lane_of") is None else []
        cells.append((r["id"], status, parent, str(r["seed"]), str(r["created_at"])[:19], _status_note(r, status, jobs)))
    # Ids are what people copy, and the status is what they came for: neither is ever wrapped or
    # cut. A terminal too narrow for them gets a wider table (its lines wrap, the cells do not).
    table = Table()
    for name in headers:
        table.add_column(name, no_wrap=True)
    table.add_column("note", min_width=20)
    for row in cells:
        table.add_row(*row)
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(headers)]
    needed = sum(widths) + 20 + 3 * (len(headers) + 1) + 1  # cells, note, padding and rules
    (console if needed <= console.width else Console(width=needed)).print(table)


def show(
    run_name: RunArgument,
    round_: Annotated[int, typer.Option("--round", help="Which round's debate to show")] = 0,
    lane: Annotated[int | None, typer.Option("--lane", help="Only this lane (default: every lane)")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """The debate transcript of one round: proposals, critiques, judges' answers, consensus, context."""
    from cadsynth.report import stats, transcript
    from cadsynth.store.ledger import shown_status

    record = require_run(db, run_name)
    check_lane(db, run_name, lane)
    checked(lambda checks: checks.round_number(round_, rounds_opened(db, run_name, lane), run_name))
    status = shown_status(record)
    header = f"run {run_name}  status {status}  round {round_}"
    if record["parent"]:
        header += f"  forked from {record['parent']} at round {record['fork_round']}"
    console.print(header, markup=False)
    note = _status_note(record, status, _batch_jobs(db, record) if status not in ("done", "failed") else [])
    if note:
        console.print(f"{status}: {note}", markup=False)
    lanes = read(db, lambda ledger: ledger.lanes(run_name))
    if lanes:
        for row in read(db, lambda ledger: stats(ledger, run_name))["lanes"]:
            console.print(
                f"lane {row['lane']}: {row['run']} {row['status']}, {row['rounds']} rounds, {row['proposals']} proposals, "
                f"{row['kept']} kept ({row['adversarial']} adversarial)",
                markup=False,
            )
    members = [r["id"] for r in lanes] if lanes else [run_name]
    for member in members if lane is None else members[lane : lane + 1]:
        if lanes:
            console.rule(f"lane {member}", characters="=")
        _print_transcript(read(db, lambda ledger: transcript(ledger, member, round_)))


def _print_transcript(t: dict[str, Any]) -> None:
    if t["forks"]:
        console.print(f"forks: {', '.join(t['forks'])}", markup=False)
    if t["context_before"] is not None:
        ctx = t["context_before"]
        console.print(f"\ncontext v{ctx.version} difficulty {ctx.difficulty_target:.2f}: {ctx.guidance}", markup=False)
    for p in t["proposals"]:
        verdict = t["consensus"].get(p.id)
        console.rule(p.id)
        console.print(f"{p.strategy}; {', '.join(p.capabilities)}; difficulty {p.difficulty:.2f}; revision {p.revision}", markup=False)
        console.print(f"Q: {p.question}", markup=False)
        if p.choices:
            console.print("   " + "  ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(p.choices)), markup=False)
        console.print(f"reference: {p.reference_answer}", markup=False)
        for c in t["critiques"]:
            if c.proposal == p.id:
                check = " (recheck)" if c.recheck else ""
                console.print(f"  critic {c.critic}{check}: {c.verdict} {'; '.join(c.issues)}", markup=False)
        for j in t["judgments"]:
            if j.proposal == p.id:
                mark = "-" if j.abstained else ("=" if j.agrees else "x")
                console.print(f"  judge {j.judge} [{mark}] {j.answer} (confidence {j.confidence:.2f})", markup=False)
        if verdict is None:
            console.print("consensus: pending", markup=False)
        elif verdict.score is None:
            why = {"text_answerable": f"a blind judge answered {verdict.blind_answer!r} without the image",
                   "inconsistent": "image, question and reference still conflict after a revision",
                   "unpainted": f"no image: {p.paint_refused}" if p.paint_refused else "no image",
                   "illegible": "the OCR model could not read its labels"}.get(verdict.reason or "", "dropped by the critics")
            console.print(f"consensus: none ({why}); outcome {verdict.outcome}", markup=False)
        else:
            console.print(f"consensus: C={verdict.score} of K={verdict.judges} judges; outcome {verdict.outcome}", markup=False)
    if t["context_after"] is not None:
        ctx = t["context_after"]
        console.print(f"\nadversary -> context v{ctx.version} difficulty {ctx.difficulty_target:.2f}", markup=False)
        console.print(f"reflection: {ctx.reflection}\nguidance: {ctx.guidance}", markup=False)


def stats_cmd(
    run_name: RunArgument,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="One JSON object for scripts")] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Counts, per-round figures and (for simulated runs) how accurate the kept data really is."""
    from rich.table import Table

    from cadsynth.report import stats

    require_run(db, run_name)
    s = read(db, lambda ledger: stats(ledger, run_name))
    if as_json:
        sys.stdout.write(json.dumps(s) + "\n")
        return
    table = Table("round", "proposals", "kept", "adversarial", "discarded", "mean difficulty")
    for r in s["rounds"]:
        table.add_row(*(str(r[k]) for k in ("round", "proposals", "kept", "adversarial", "discarded")), f"{r['mean_difficulty']:.2f}")
    console.print(table)
    simulated = "truth" in s
    kinds = Table("image kind", "proposals", "unpainted", "kept", *(["kept correct (simulated)"] if simulated else []))
    for kind, k in s["by_kind"].items():
        rate = k.get("kept_correct_rate")
        kinds.add_row(kind, str(k["proposals"]), str(k["render_failures"]), str(k["kept"]),
                      *([("-" if rate is None else f"{rate:.1%}")] if simulated else []))
    if s["by_kind"]:
        console.print(kinds)
    console.print(
        f"{s['run']} ({s['status']}): {s['proposals']} proposals, {s['kept']} kept, {s['adversarial']} adversarial, "
        f"{s['discarded']} discarded, {s['model_calls']} model calls",
        markup=False,
    )
    if s.get("reason"):
        console.print(f"failed: {s['reason']}", markup=False)
    cost = s["cost"]
    budget = f" of a ${cost['budget_usd']:.4f} budget" if cost["budget_usd"] is not None else ""
    console.print(
        f"cost: ${cost['usd']:.4f}{budget} ({cost['input_tokens']:,} input, {cost['output_tokens']:,} output tokens); "
        f"{cost['cached_calls']} calls answered from the cache",
        markup=False,
    )
    faults = {k: v for k, v in s["faults"].items() if v}
    if faults:
        console.print("faults: " + ", ".join(f"{k} {v}" for k, v in faults.items()), markup=False)
    if s.get("judges"):
        console.print(
            "judges' estimated accuracy: "
            + ", ".join(f"{name} {j['estimated_accuracy']:.1%} ({j['judged']} judged)" for name, j in s["judges"].items()),
            markup=False,
        )
    for gate, g in s.get("gates", {}).items():
        if g["on"] or g["removed"] or g["calls"]:
            sent = f", {g['sent_back']} sent back for revision" if "sent_back" in g else ""
            console.print(
                f"gate {gate} ({'on' if g['on'] else 'off'}): {g['removed']} problems removed{sent}, "
                f"{g['calls']} calls, ${g['usd']:.4f}",
                markup=False,
            )
    if s.get("gates", {}).get("near_duplicates", {}).get("on"):
        console.print(f"near-duplicates: {s['duplicates_removed']} kept samples removed", markup=False)
    if "truth" in s:
        truth = s["truth"]
        console.print(
            f"simulated truth: {truth['proposal_correct_rate']:.1%} of proposals correct, "
            f"{(truth['kept_correct_rate'] or 0):.1%} of kept samples correct",
            markup=False,
        )
        if truth.get("kept_text_answerable_rate") is not None:
            console.print(
                f"simulated truth of kept samples: {truth['kept_text_answerable_rate']:.1%} answerable from the text, "
                f"{truth['kept_conflict_rate']:.1%} with an image that contradicts the question, "
                f"{truth['kept_duplicate_pairs']} near-duplicate pairs",
                markup=False,
            )


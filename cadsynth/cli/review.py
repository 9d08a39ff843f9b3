"""`cads review`: decide the outcomes of a round that waits for a person, then continue the run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cadsynth.cli.app import (
    DEFAULT_DB,
    DataOption,
    DbOption,
    NoCacheOption,
    RunArgument,
    check_keys,
    check_writer,
    console,
    fail,
    read,
    require_run,
)
from cadsynth.cli.run import advance, summarize


def _reviewer() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "unknown"


def _pairs(option: str, given: list[str]) -> dict[str, str]:
    """`ID=VALUE` items of a repeatable option, by id; a malformed one is a one-line error."""
    pairs = {}
    for item in given:
        pid, eq, value = item.partition("=")
        if not eq or not pid:
            fail(f"{option} {item!r}: write ID=VALUE, with ID as `cads review` lists it")
        pairs[pid] = value
    return pairs


def _show_waiting(waiting: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from cadsynth.graphs.review import AS_DECISION

    laned = len(waiting) > 1 or waiting[0]["lane"] is not None
    table = Table(title=f"waiting for review: round {', '.join(sorted({str(w['round']) for w in waiting}))}")
    for name in [*(["lane"] if laned else []), "problem", "question", "reference", "C/K", "outcome"]:
        table.add_column(name, no_wrap=name in ("problem", "outcome"))
    for w in waiting:
        for p in w["problems"]:
            question = p["question"] or ""
            score = "-" if p["score"] is None else f"{p['score']}/{p['judges']}"
            outcome = AS_DECISION.get(p["outcome"], p["outcome"])
            table.add_row(*([str(w["lane"])] if laned else []), p["id"], question[:70] + ("…" if len(question) > 70 else ""),
                          str(p["reference_answer"] or ""), score, outcome)
        if w.get("error"):
            console.print(f"lane {w['lane']}: an earlier answer was refused: {w['error']}", markup=False)
    console.print(table)


def _ask_decisions(waiting: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """At a terminal: each judged problem's outcome (Enter keeps it) and a note when it changes."""
    from rich.prompt import Prompt

    from cadsynth.graphs.review import AS_DECISION, reviewable

    outcomes, notes = {}, {}
    for w in waiting:
        for p in reviewable(w):
            computed = AS_DECISION[p["outcome"]]
            chosen = Prompt.ask(f"{p['id']}", choices=["keep", "discard", "pool"], default=computed, console=console)
            if chosen != computed:
                outcomes[p["id"]] = chosen
                note = Prompt.ask("  note (optional)", default="", console=console)
                if note:
                    notes[p["id"]] = note
    return outcomes, notes


def review(
    run_name: RunArgument,
    accept_all: Annotated[bool, typer.Option("--accept-all", metavar="", help="Keep every computed outcome")] = False,
    decide: Annotated[
        list[str] | None, typer.Option("--set", metavar="ID=OUTCOME", help="Decide a problem: keep, discard or pool (repeatable)")
    ] = None,
    notes: Annotated[list[str] | None, typer.Option("--note", metavar="ID=TEXT", help="A note on a problem's decision (repeatable)")] = None,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="Who decides, as the ledger records it (default: the OS user)")] = None,
    db: DbOption = DEFAULT_DB,
    data: DataOption = Path("cads-data"),
    no_cache: NoCacheOption = False,
) -> None:
    """Decide the outcomes of a round waiting for review (`review: true`), then continue the run."""
    from cadsynth.config import RunConfig
    from cadsynth.graphs.review import AS_DECISION, ReviewError, check
    from cadsynth.runner import waiting_for_review
    from cadsynth.store.ledger import WAITING_FOR_REVIEW, shown_status

    record = require_run(db, run_name, mode="write")
    if record["status"] != WAITING_FOR_REVIEW:
        fail(f"run {run_name!r} is not waiting for review (it is {shown_status(record)}); only a run with `review: true` pauses for one")
    if accept_all and decide:
        fail(f"--accept-all with --set {decide[0]!r}: accept all, or change some, not both")
    check_keys(RunConfig.model_validate(record["config"]))
    check_writer(db, data)
    waiting = read(db, lambda ledger: waiting_for_review(ledger, run_name), mode="write")
    if not waiting:
        # Its process stopped between marking the run and saving the pause: run it up to the pause.
        console.print(f"run {run_name} has no round waiting in its checkpoints yet; continuing it to its pause", markup=False)
        if not advance(db, data, not no_cache, run_name):
            summarize(db, run_name)
        return
    outcomes, noted = _pairs("--set", decide or []), _pairs("--note", notes or [])
    asked = not (accept_all or outcomes or noted)
    if asked:
        if not sys.stdin.isatty():
            fail("say what to decide: --accept-all, or --set ID=keep|discard|pool (and --note ID=TEXT)")
        _show_waiting(waiting)
        outcomes, noted = _ask_decisions(waiting)
    lane_of = {p["id"]: w["run"] for w in waiting for p in w["problems"]}
    computed = {p["id"]: p["outcome"] for w in waiting for p in w["problems"]}
    answers: dict[str, Any] = {w["run"]: {"reviewer": _reviewer() if reviewer is None else reviewer, "decisions": {}} for w in waiting}
    for pid in [*outcomes, *noted]:
        if pid not in lane_of:
            option = "--set" if pid in outcomes else "--note"
            fail(f"{option} {pid!r}: no such problem waits for review in run {run_name!r}; the table above lists them")
        # A note alone keeps the computed outcome and records why.
        outcome = outcomes.get(pid, AS_DECISION.get(computed[pid], computed[pid]))
        answers[lane_of[pid]]["decisions"][pid] = {"outcome": outcome, "note": noted.get(pid)}
    for w in waiting:  # the graph checks the same way: nothing is sent unless every lane's answer holds
        try:
            check(answers[w["run"]], w)
        except ReviewError as exc:
            fail(str(exc))
    if not asked:
        _show_waiting(waiting)  # what was decided on, as a record in the terminal
    if not advance(db, data, not no_cache, run_name, review=answers):
        summarize(db, run_name)


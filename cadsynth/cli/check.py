"""`cads check`: before a run, ask every agent one small request per role and say what to change."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cadsynth.cli.app import DEFAULT_DB, DbOption, console, load_run_config, read

if TYPE_CHECKING:
    from cadsynth.preflight import AgentCheck


def usd(amount: float) -> str:
    """Dollars to four places; a check's few cheap requests can cost less than that, so to six."""
    return f"${amount:.4f}" if amount == 0 or amount >= 0.0001 else f"${amount:.6f}"


def line(found: AgentCheck) -> str:
    """One agent's line: ✓ or ✗, who and where, what the check found, its cost, and the fix."""
    from cadsynth.agents.calls import DEFAULT_ENDPOINTS, endpoint

    agent = found.agent
    where = f" @ {endpoint(agent)}" if agent.base_url or agent.provider in DEFAULT_ENDPOINTS else ""
    text = f"{'✓' if found.ok else '✗'} {agent.name} ({agent.provider} {agent.model}{where}): {', '.join(found.found)}"
    if found.seconds or found.tokens:
        text += f"; {found.seconds:.2f} s, {found.tokens:,} tokens, {usd(found.usd)}"
    return text + (f" — {found.fix}" if found.fix else "")


def check(
    config_path: Annotated[Path | None, typer.Argument(metavar="CONFIG.yaml", help="Panel config; none = simulated panel")] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Before a run: one small request per agent and role; one line per agent, exit 1 unless all pass."""
    from cadsynth.preflight import check as check_panel

    config = load_run_config(config_path)
    with console.status("asking each agent one small request per role..."):
        report = read(db, lambda ledger: check_panel(ledger, config), mode="new")
    for found in report.agents:
        console.print(line(found), markup=False, highlight=False)
    passed = sum(found.ok for found in report.agents)
    spent = sum(found.usd for found in report.agents)
    console.print(
        f"{passed} of {len(report.agents)} agents pass; the check's requests cost {usd(spent)} and are in run "
        f"{report.run} (`cads stats {report.run}`)",
        markup=False,
        highlight=False,
    )
    if not report.ok:
        raise typer.Exit(1)

"""`cads check`: before a run, one small request per agent and role, to find what would stop it.

Each agent is asked what its roles ask of it in a run, in miniature and by the same path: the role's
prompt file and schema, in the agent's structured-output mode, with an image where the role sees one,
through the call's limits and retries. A judge and a critic look at a tiny rendered bar chart, a
proposer gets a seed (with the chart, if it attaches seed images), an adversary reflects on a small
round, and a painter draws once. The call cache is off, since a check must reach the server, and a
call makes at most two requests, so that a check answers in seconds.

When a request is refused or its answer does not parse, the check asks again in the other
structured-output modes, then without the image, until one works: that names the config change
that fixes the agent. An agent's first failing role ends its check (its other roles would meet the
same fault). Every request is written to the ledger under a run of its own (`check-...`), so
`cads stats` prices it like any run's.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, get_args

from cadsynth import lifecycle
from cadsynth.agents.calls import (
    Attempt,
    CallFailed,
    EndpointUnreachable,
    ModelCallError,
    Reply,
    endpoint,
)
from cadsynth.agents.faults import reason
from cadsynth.agents.models import MissingKeyError, api_key
from cadsynth.agents.painter.render import render
from cadsynth.agents.panel import Agent, SeedView, make_agent
from cadsynth.config import AgentConfig, RunConfig, StructuredOutput
from cadsynth.domain import Context, Proposal, Role
from cadsynth.graphs.calls import call_records
from cadsynth.runner import new_run_id
from cadsynth.specs import Bar, BarChart
from cadsynth.store.blobs import BlobStore
from cadsynth.store.ledger import Ledger

MODES: tuple[StructuredOutput, ...] = get_args(StructuredOutput)
# The order an agent's roles are asked in: the small requests with an image first.
ROLES: tuple[Role, ...] = ("judge", "critic", "proposer", "adversary", "painter")
ATTEMPTS = 2  # requests a call makes at most: one retry tells a blip from a fault

# The adversary's round in miniature: three proposals, one of which split the panel.
ROUND: dict[str, Any] = {
    "proposals": 3, "dropped": 0, "kept": 2, "adversarial": 1, "discarded": 1, "split_share": 1 / 3,
    "capability_splits": {"counting": 0.5}, "strategy_splits": {"numerical_variation": 0.5},
    "unanimous_share": 1 / 3, "discard_share": 1 / 3,
}


@cache
def problem() -> tuple[Proposal, bytes]:
    """The problem every check shows: three bars, and the PNG the renderer draws of them."""
    chart = BarChart(width=160, height=120, bars=[Bar(label="A", value=3), Bar(label="B", value=5), Bar(label="C", value=2)])
    proposal = Proposal(
        id="check/r0/check/0", run="check", round=0, proposer="check", index=0,
        strategy="numerical_variation", capabilities=["counting"], image_spec=chart,
        visual_prompt="A bar chart of three bars labelled A, B and C, of heights 3, 5 and 2.",
        question="How many bars does the chart show?", answer_type="integer", choices=None,
        reference_answer="3", solution="The chart shows the bars A, B and C: 3 bars.", difficulty=0.1,
    )
    return proposal, render(chart)


@dataclass
class AgentCheck:
    """What the check found about one agent, in the order it found it, and what would fix it."""

    agent: AgentConfig
    found: list[str] = field(default_factory=list)  # "reachable", "key accepted", "images accepted", "json_schema parsed"
    asking: Role | None = None  # the role being asked
    parsed: list[Role] = field(default_factory=list)  # the roles whose answers parsed in the agent's own mode
    problem: str | None = None
    fix: str | None = None  # the config change (or what to do) that fixes the problem
    seconds: float = 0.0  # the slowest answered call
    tokens: int = 0
    usd: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem is None

    def saw(self, *what: str) -> None:
        self.found += [w for w in what if w not in self.found]

    def fail(self, problem: str, fix: str, *, name_role: bool = False) -> None:
        if self.parsed:  # some roles passed: say which
            self.found.append(f"{self.agent.structured_output} parsed for {' and '.join(self.parsed)}")
        if self.parsed or name_role:
            problem = f"{self.asking}: {problem}"
        self.found.append(problem)
        self.problem, self.fix = problem, fix


@dataclass(frozen=True)
class Report:
    run: str  # the ledger's run holding the check's requests
    agents: list[AgentCheck]

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.agents)


def _sees_image(agent: AgentConfig, role: Role) -> bool:
    return role in ("critic", "judge") or (role == "proposer" and agent.sees_seed_images)


def _images_fix(agent: AgentConfig) -> str:
    seeing = [r for r in ("critic", "judge") if r in agent.roles]
    seeds = "proposer" in agent.roles and agent.sees_seed_images
    if not seeing:
        return f"set `seed_images: false` for agent {agent.name}"
    fix = f"give agent {agent.name} a vision model, or take {' and '.join(seeing)} out of its roles"
    return fix + (" and set `seed_images: false`" if seeds else "")


def _key_fix(agent: AgentConfig, where: str) -> str:
    var = agent.needs_key()
    if var is None:  # a local server that wants a key after all
        return f"{where} wants a key: name its variable with `api_key_env` for agent {agent.name} and export it"
    return f"put a key {where} accepts in {var} (or name another variable with `api_key_env` for agent {agent.name})"


class _Checker:
    """One check: the run's config, the ledger, the check's run id and the problem shown."""

    def __init__(self, config: RunConfig, ledger: Ledger, run: str, images: BlobStore):
        self.config = config
        self.ledger = ledger
        self.run = run
        self.images = images
        self.gate = asyncio.Semaphore(config.concurrency) if config.concurrency != "auto" else None

    def _agent(self, agent: AgentConfig) -> Agent:
        return make_agent(self.config, agent, self.gate, images=self.images)

    async def _call(self, agent: Agent, role: Role, image: bool) -> Reply[Any]:
        proposal, png = problem()
        shown = png if image else None
        if role == "judge":
            return await agent.judge(proposal, shown)
        if role == "critic":
            return await agent.critique(proposal, shown, consistency=self.config.gates.consistency)
        if role == "proposer":
            seed = SeedView(id="check", text="A bar chart of three bars; ask about their heights.", image=shown)
            return await agent.propose("check/proposer", Context(), seed, "numerical_variation", ["counting"])
        if role == "adversary":
            pool = [{"agreeing": 1, "judges": 2, "question": proposal.question, "reference_answer": "3", "answers": ["3", "4"]}]
            return await agent.reflect(Context(), ROUND, pool)
        return await agent.paint(proposal.visual_prompt)

    async def _ask(self, found: AgentCheck, agent: Agent, role: Role, image: bool, target: str) -> Exception | None:
        """One call, its requests written to the ledger; the error it ended with, or None."""
        started = time.perf_counter()
        attempts: tuple[Attempt, ...] = ()
        error: Exception | None = None
        try:
            attempts = (await self._call(agent, role, image)).attempts
            found.seconds = max(found.seconds, time.perf_counter() - started)
        except (CallFailed, EndpointUnreachable) as exc:
            attempts, error = exc.attempts, exc
        except ModelCallError as exc:  # refused: nothing was answered, nothing paid
            error = exc
        await self.ledger.write(calls=call_records(agent, {"run": self.run, "round": 0}, role, target, attempts))
        found.tokens += sum(a.usage.total for a in attempts)
        found.usd += sum(a.cost_usd for a in attempts)
        return error

    async def check_agent(self, config: AgentConfig) -> AgentCheck:
        """Each of the agent's roles in turn, until one fails."""
        found = AgentCheck(config)
        try:
            api_key(config)
        except MissingKeyError:
            var = config.needs_key()
            found.fail(f"key missing ({var} is not set or empty)", f"export {var} with agent {config.name}'s API key")
            return found
        agent = self._agent(config)
        for role in (r for r in ROLES if r in config.roles):
            image = _sees_image(config, role)
            found.asking = role
            error = await self._ask(found, agent, role, image, f"check/{role}")
            if error is not None:
                await self._diagnose(found, role, image, error)
                return found
            found.saw("reachable", *(["key accepted"] if config.needs_key() else []), *(["images accepted"] if image else []))
            if role == "painter":  # an image model: no structured output (a painter has no other role)
                found.saw("image drawn")
            else:
                found.parsed.append(role)
        found.saw(*([f"{config.structured_output} parsed"] if found.parsed else []))
        return found

    async def _diagnose(self, found: AgentCheck, role: Role, image: bool, error: Exception) -> None:
        """Why the role's call failed, and what fixes it: other modes, then no image, are tried."""
        config = found.agent
        where = endpoint(config)
        if isinstance(error, EndpointUnreachable):
            n = len(error.attempts)
            if error.attempts and error.attempts[-1].fault == "timeout":
                found.fail(f"no answer within {config.timeout:g} s ({n} requests)",
                           f"raise `timeout` for agent {config.name} (now {config.timeout:g}), or check the server at {where}")
            elif config.base_url:
                found.fail(f"unreachable ({reason(error)}, {n} requests)",
                           f"start the server at {where}, or fix `base_url` for agent {config.name}")
            else:
                found.fail(f"unreachable ({reason(error)}, {n} requests)", f"check this machine's connection to {where}")
            return
        if not isinstance(error, CallFailed) or any(a.fault not in ("timeout", "unreachable") for a in error.attempts):
            found.saw("reachable")  # it answered, if not well
        if isinstance(error, CallFailed) and error.fault != "malformed":
            fixes = {
                "rate_limited": f"try again later, or lower the `limits:` for {config.provider}/{config.model}",
                "timeout": f"raise `timeout` for agent {config.name} (now {config.timeout:g}), or check the server at {where}",
            }
            found.fail(f"no answer: {error.fault} after {len(error.attempts)} requests",
                       fixes.get(error.fault, f"the server at {where} is failing; try again later"))
            return
        refusal = error.refusal if isinstance(error, ModelCallError) else None
        if refusal is not None and refusal.about == "key":
            found.fail(f"key rejected ({refusal})", _key_fix(config, where))
            return
        found.saw(*(["key accepted"] if config.needs_key() else []))
        if refusal is not None and refusal.about == "model":
            found.fail(f"model not found ({refusal})", f"fix `model` (or `base_url`) for agent {config.name}: {where} has no {config.model!r}")
            return
        # The server's words on a refusal; validation's on an answer that did not parse.
        first = str(refusal) if refusal is not None else str(error.attempts[-1].detail if isinstance(error, CallFailed) else error)
        if role == "painter":
            found.fail(f"no image ({first})", f"give agent {config.name} an image model {where} serves")
            return
        await self._try_others(found, role, image, refused=refusal is not None, first=first)

    async def _first_that_works(self, found: AgentCheck, role: Role, tries: list[tuple[StructuredOutput, bool]]) -> tuple[StructuredOutput, bool] | None:
        """The first (mode, with the image or not) in which the role's call works."""
        without = "/no-image" if _sees_image(found.agent, role) else ""
        for mode, image in tries:
            other = self._agent(found.agent.model_copy(update={"structured_output": mode}))
            if await self._ask(found, other, role, image, f"check/{role}/{mode}" + ("" if image else without)) is None:
                return mode, image
        return None

    async def _try_others(self, found: AgentCheck, role: Role, image: bool, *, refused: bool, first: str) -> None:
        """Ask in the other modes (with the image, if the role sees one), then in every mode without
        it: the first that works says whether the images, the mode or both are what fails."""
        config = found.agent
        mine = config.structured_output
        others = [m for m in MODES if m != mine]
        tries = [(m, True) for m in others] + [(m, False) for m in [mine, *others]] if image else [(m, False) for m in others]
        works = await self._first_that_works(found, role, tries)
        if works is None:
            what = "refused" if refused else "answered with nothing that parses"
            forms = ", with or without its image" if image else ""
            found.fail(f"{what} in every structured-output mode{forms} ({first})",
                       f"give agent {config.name} another model: {endpoint(config)} takes cadsynth's {role} request in no form",
                       name_role=True)
            return
        mode, with_image = works
        causes, fixes = [], []
        if image and not with_image:
            causes.append("images refused")
            fixes.append(_images_fix(config))
        elif image:
            found.saw("images accepted")
        if mode != mine:
            causes.append(f"{mine} {'refused' if refused else 'answer did not parse'}")
            fixes.append(f"set `structured_output: {mode}` for agent {config.name}")
        found.fail(f"{' and '.join(causes)} ({first})", "; ".join(fixes))
        found.saw(f"{mode} parsed" + ("" if with_image or not image else " without images"))


async def check(ledger: Ledger, config: RunConfig) -> Report:
    """Check every agent of the panel at once; their requests go to a new run, `check-...`."""
    run = new_run_id("check")
    config = config.model_copy(update={"retry": config.retry.model_copy(update={"attempts": min(ATTEMPTS, config.retry.attempts)})})
    await lifecycle.begin_check(ledger, run, config.model_dump(mode="json"), config.seed)
    with tempfile.TemporaryDirectory(prefix="cads-check-") as folder:  # where a painter's image goes
        checker = _Checker(config, ledger, run, BlobStore(Path(folder)))
        agents = await asyncio.gather(*(checker.check_agent(agent) for agent in config.panel))
    return Report(run, list(agents))

"""The panel: each agent proposes, critiques, revises, judges or reflects through its chat model.

Every call goes the same way: render the role's prompt file, attach images as standard image
content blocks, ask for the role's structured output, and return the answer with its token usage.
The task payload rides along in the call's metadata for the simulated panel; real providers never
send metadata to the model.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from cadsynth.agents.models import make_chat_model
from cadsynth.config import AgentConfig, RunConfig
from cadsynth.domain import (
    Capability,
    Context,
    ContextDraft,
    Critique,
    CritiqueDraft,
    JudgmentDraft,
    Proposal,
    ProposalDraft,
    Role,
    SimTruth,
    Strategy,
)
from cadsynth.prompts import render_prompt

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Reply(Generic[T]):
    value: T
    usage: Usage


@dataclass(frozen=True)
class SeedView:
    """What a proposer is shown of its seed. `world_key` names a simulated-world seed."""

    id: str
    text: str
    image: bytes | None = None
    world_key: str | None = None

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "world_key": self.world_key}


def image_block(png: bytes) -> dict[str, Any]:
    return {"type": "image", "base64": base64.b64encode(png).decode("ascii"), "mime_type": "image/png"}


def _choices_line(choices: list[str] | None) -> str:
    if not choices:
        return ""
    return "Choices: " + "  ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))


def _weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.2f}" for k, v in sorted(weights.items(), key=lambda kv: -kv[1])) or "(all equal)"


def public_view(proposal: Proposal) -> dict[str, Any]:
    """A proposal as agents may see it: without the simulator's ground truth or storage fields."""
    return proposal.model_dump(mode="json", exclude={"sim", "image", "run", "id"})


class Agent:
    def __init__(self, config: AgentConfig, model: BaseChatModel):
        self.config = config
        self.model = model

    @property
    def name(self) -> str:
        return self.config.name

    async def _ask(self, schema: type[T], prompt: str, images: list[bytes], task: dict[str, Any]) -> Reply[T]:
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}, *map(image_block, images)]
        runnable = self.model.with_structured_output(schema, include_raw=True)
        out = await runnable.ainvoke([HumanMessage(content=content)], config={"metadata": {"cads_task": task}})  # type: ignore[arg-type]
        if out.get("parsing_error") is not None or out.get("parsed") is None:
            raise ValueError(f"agent {self.name}: {schema.__name__} could not be parsed: {out.get('parsing_error')}")
        meta = getattr(out["raw"], "usage_metadata", None) or {}
        usage = Usage(int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0)))
        return Reply(out["parsed"], usage)

    async def propose(
        self,
        key: str,
        context: Context,
        seed: SeedView,
        strategy: Strategy,
        capabilities: list[Capability],
    ) -> Reply[ProposalDraft]:
        exemplars = "\n".join(f"- {e.question} ({e.why_hard})" for e in context.exemplars) or "(none yet)"
        prompt = render_prompt(
            "propose",
            context_version=context.version,
            guidance=context.guidance or "(no guidance yet: start from the seed)",
            difficulty_target=f"{context.difficulty_target:.2f}",
            capability_weights=_weights(context.capability_weights),
            strategy_weights=_weights(context.strategy_weights),
            exemplars=exemplars,
            seed=seed.text,
            strategy=strategy,
            capabilities=", ".join(capabilities),
        )
        task = {
            "role": "propose",
            "key": key,
            "strategy": strategy,
            "capabilities": capabilities,
            "difficulty_target": context.difficulty_target,
            "seed": seed.payload(),
        }
        return await self._ask(ProposalDraft, prompt, [seed.image] if seed.image else [], task)

    async def critique(self, key: str, proposal: Proposal, image: bytes | None) -> Reply[CritiqueDraft]:
        prompt = render_prompt(
            "critique",
            question=proposal.question,
            answer_type=proposal.answer_type,
            choices=_choices_line(proposal.choices),
            reference_answer=proposal.reference_answer,
            solution=proposal.solution,
            visual_prompt=proposal.visual_prompt,
        )
        task = {"role": "critique", "key": key, "proposal": proposal.model_dump(mode="json")}
        return await self._ask(CritiqueDraft, prompt, [image] if image else [], task)

    async def revise(
        self, key: str, proposal: Proposal, critiques: list[Critique], image: bytes | None
    ) -> Reply[ProposalDraft]:
        prompt = render_prompt(
            "revise",
            proposal=json.dumps(public_view(proposal), indent=2),
            critiques="\n".join(f"- {c.critic} ({c.verdict}): {'; '.join(c.issues) or 'no issues'}" for c in critiques),
        )
        task = {
            "role": "revise",
            "key": key,
            "proposal": proposal.model_dump(mode="json"),
            "critiques": [c.model_dump(mode="json") for c in critiques],
        }
        return await self._ask(ProposalDraft, prompt, [image] if image else [], task)

    async def judge(self, key: str, proposal: Proposal, image: bytes | None) -> Reply[JudgmentDraft]:
        # The judge sees the image and the question only: never the reference answer or solution.
        prompt = render_prompt(
            "judge",
            question=proposal.question,
            answer_type=proposal.answer_type,
            choices=_choices_line(proposal.choices),
        )
        task = {
            "role": "judge",
            "key": key,
            "capabilities": list(proposal.capabilities),
            "sim": _sim_view(proposal.sim),
        }
        return await self._ask(JudgmentDraft, prompt, [image] if image else [], task)

    async def reflect(
        self, key: str, context: Context, stats: dict[str, Any], pool: list[dict[str, Any]]
    ) -> Reply[ContextDraft]:
        def rates(splits: dict[str, float]) -> str:
            return ", ".join(f"{k} {v:.0%}" for k, v in sorted(splits.items(), key=lambda kv: -kv[1])) or "(none)"

        pool_text = "\n".join(
            f"- [{item['agreeing']}/{item['judges']} agreed] {item['question']} reference={item['reference_answer']!r} "
            f"judges={item['answers']}"
            for item in pool
        )
        prompt = render_prompt(
            "adversary",
            context_version=context.version,
            context=context.model_dump_json(indent=2, exclude={"reflection"}),
            proposals=stats["proposals"],
            kept=stats["kept"],
            adversarial=stats["adversarial"],
            discarded=stats["discarded"],
            capability_splits=rates(stats["capability_splits"]),
            strategy_splits=rates(stats["strategy_splits"]),
            unanimous_share=f"{stats['unanimous_share']:.0%}",
            discard_share=f"{stats['discard_share']:.0%}",
            pool=pool_text or "(empty: no problem split the panel)",
        )
        task = {"role": "reflect", "key": key, "context": context.model_dump(mode="json"), "stats": stats, "pool": pool}
        return await self._ask(ContextDraft, prompt, [], task)


def _sim_view(sim: SimTruth | None) -> dict[str, Any] | None:
    # The simulated judge "perceives" the image through the world's truth; the flaw flag is the
    # proposer's secret and stays out of the judge's view.
    return None if sim is None else sim.model_dump(mode="json", exclude={"flawed", "proposed_reference"})


class Panel:
    """The agents of one run, built once from its config."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.agents = {a.name: Agent(a, make_chat_model(a, seed=config.seed)) for a in config.panel}

    def by_role(self, role: Role) -> list[Agent]:
        return [agent for agent in self.agents.values() if role in agent.config.roles]

    def __getitem__(self, name: str) -> Agent:
        return self.agents[name]

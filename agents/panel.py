"""The panel: each agent proposes, critiques, revises, judges, reflects or paints through its model.

Every call goes the same way (`Agent._ask`): render the role's prompt file, attach images as
standard image content blocks, ask for the role's structured output in the agent's mode, and return
the answer with every request it took (`agents.calls`: cache, limits, retries, cost). What a
model is told is all in its messages: a simulated model answers from them as a real one does.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableSequence
from pydantic import BaseModel, ValidationError

from cadsynth.agents import jsontext
from cadsynth.agents.batch import BatchOffice
from cadsynth.agents.calls import (
    Attempt,
    CallCache,
    CallFailed,
    Caller,
    InFlight,
    Reply,
    Usage,
    cached_reply,
    fingerprint,
    schema_digest,
    usage_of,
)
from cadsynth.agents.faults import Malformed, Outcome
from cadsynth.agents.limits import limiter_for
from cadsynth.agents.models import ImageModel, make_chat_model, make_image_model, model_identity
from cadsynth.config import AgentConfig, RetryConfig, RunConfig
from cadsynth.domain import (
    Capability,
    ConsistencyCritiqueDraft,
    Context,
    ContextDraft,
    Critique,
    CritiqueDraft,
    JudgmentDraft,
    Proposal,
    ProposalDraft,
    Role,
    Strategy,
)
from cadsynth.prompts import render_prompt

T = TypeVar("T", bound=BaseModel)

__all__ = ["Agent", "Attempt", "CallFailed", "Panel", "Reply", "SeedView", "Usage", "make_agent"]


class ImageSink(Protocol):
    """Where painted images go (store.blobs.BlobStore): content-addressed PNGs."""

    def put(self, data: bytes) -> str: ...

    def exists(self, ref: str) -> bool: ...


@dataclass(frozen=True)
class SeedView:
    """What a proposer is shown of its seed (`world:...` names a seed of the procedural world)."""

    id: str
    text: str
    image: bytes | None = None


def image_block(png: bytes) -> dict[str, Any]:
    return {"type": "image", "base64": base64.b64encode(png).decode("ascii"), "mime_type": "image/png"}


def _choices_line(choices: list[str] | None) -> str:
    if not choices:
        return ""
    return "Choices: " + "  ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices))


def _weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.2f}" for k, v in sorted(weights.items(), key=lambda kv: -kv[1])) or "(all equal)"


def public_view(proposal: Proposal) -> dict[str, Any]:
    """A proposal as agents may see it: without its storage fields."""
    return proposal.model_dump(mode="json", exclude={"image", "run", "id", "proposed_reference"})


def as_png(data: bytes) -> bytes:
    """The image as PNG bytes (image models may answer JPEG or WebP); a broken image is malformed."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.format == "PNG":
                return data
            out = io.BytesIO()
            im.convert("RGBA" if "A" in im.getbands() else "RGB").save(out, format="PNG")
            return out.getvalue()
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unusable answer
        raise Malformed(f"the image could not be decoded: {exc}") from None


def context_from_draft(draft: BaseModel, version: int) -> Context:
    """The adversary's draft as the context it stands for: weight lists become dicts."""
    data = draft.model_dump()
    for key in ("capability_weights", "strategy_weights"):
        data[key] = {w["name"]: w["weight"] for w in data[key]}
    return Context(**data, version=version)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        model: BaseChatModel | None,
        gate: asyncio.Semaphore | None = None,
        *,
        run: RunConfig | None = None,
        cache: CallCache | None = None,
        images: ImageSink | None = None,
        in_flight: InFlight | None = None,
        batches: BatchOffice | None = None,
    ):
        self.config = config
        self.model = model
        # Shared by the panel: bounds the model calls in flight, whatever the graph schedules;
        # not those of an endpoint that finds its own concurrency (config.RunConfig.bounds_panel).
        self.gate = gate if run is not None else gate or asyncio.Semaphore(8)
        limit = run.limit(config) if run else None
        batching = run is not None and batches is not None and run.batches(config)
        self.caller = Caller(
            config,
            run.retry if run else RetryConfig(),
            limiter_for(config.provider, config.model, config.base_url, limit),
            run.price(config.model) if run else None,
            self.gate if run is None or run.bounds_panel(config) else None,
            in_flight,
            desk=batches.desk(config, run.batching, run.retry) if batching and run and batches else None,
            fallback=run.batch_fallback if run else "batch",
        )
        self.cache = cache
        self.images = images
        # What besides the messages decides this model's answers: part of every call's fingerprint.
        self.identity = model_identity(config, seed=run.seed if run else 0, world=run.world if run else None)
        self._image_model: ImageModel | None = None
        self._structured: dict[type[BaseModel], tuple[Runnable[Any, Any], Runnable[Any, Any]]] = {}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def mode(self) -> str:
        return self.config.structured_output

    async def _send(self, schema: type[T], messages: list[BaseMessage]) -> tuple[T, Usage]:
        assert self.model is not None, f"agent {self.name} is a painter and has no chat model"
        if self.mode == "json_text":
            message = await self.model.ainvoke(messages)
            usage = usage_of(message)
            try:
                return jsontext.parse(message.content, schema), usage
            except jsontext.JsonTextError as exc:
                exc.answer = message.content if isinstance(message.content, str) else json.dumps(message.content)  # type: ignore[attr-defined]
                exc.usage = usage  # type: ignore[attr-defined]
                raise
        ask, parse = self._structured_steps(schema)
        raw = await ask.ainvoke(messages)
        usage = usage_of(raw)
        try:
            parsed = await parse.ainvoke(raw)
        except Exception as exc:  # the parser's own errors, a refusal among them: the answer is malformed
            error = Malformed(f"{schema.__name__} could not be parsed: {exc}")
            error.usage = usage  # type: ignore[attr-defined]
            raise error from exc
        if parsed is None:
            error = Malformed(f"{schema.__name__} could not be parsed: no structured answer")
            error.usage = usage  # type: ignore[attr-defined]
            raise error
        return cast(T, parsed), usage

    def _structured_steps(self, schema: type[BaseModel]) -> tuple[Runnable[Any, Any], Runnable[Any, Any]]:
        """The model bound to answer in `schema`, and the parser of its answers: LangChain's own
        structured output (`model | parser`), built once per schema and run as its two halves, so
        the raw answer (its usage) is in hand without `include_raw`'s map, assign and fallback
        wrappers around every call."""
        steps = self._structured.get(schema)
        if steps is None:
            assert self.model is not None
            method = "function_calling" if self.mode == "function_calling" else "json_schema"
            chain = self.model.with_structured_output(schema, method=method)
            assert isinstance(chain, RunnableSequence), type(chain)
            first, *rest = chain.steps
            steps = self._structured[schema] = (first, rest[0] if len(rest) == 1 else RunnableSequence(*rest))
        return steps

    async def _ask(self, schema: type[T], prompt: str, images: list[bytes], *, role: Role | str) -> Reply[T]:
        if self.mode == "json_text":
            prompt += jsontext.instructions(schema)
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}, *map(image_block, images)]
        messages: list[BaseMessage] = [HumanMessage(content=content)]  # type: ignore[arg-type]
        key = None
        if self.cache is not None:
            key = fingerprint(self.config, messages, mode=self.mode, schema=schema_digest(schema), **self.identity)
            hit = await self.cache.get(key)
            if hit is not None:
                try:
                    return cached_reply(schema.model_validate(hit["value"]))
                except ValidationError:
                    pass  # stored by an older schema: ask again
        give_up: Outcome = "abstained" if role == "judge" else "dropped"
        reply = await self.caller.call(
            lambda msgs: self._send(schema, msgs), messages, give_up=give_up, json_text=self.mode == "json_text",
            kind=str(role),
        )
        if key is not None and self.cache is not None:
            await self.cache.put(key, self.config, {"value": reply.value.model_dump(mode="json")}, reply.usage)
        return reply

    async def paint(self, prompt: str) -> Reply[str]:
        """An image for the prompt from this painter's image model, stored; the reply is its hash."""
        assert self.images is not None, "the panel was built without an image store"
        messages: list[BaseMessage] = [HumanMessage(content=prompt)]
        key = None
        if self.cache is not None:
            key = fingerprint(self.config, messages, mode="paint")
            hit = await self.cache.get(key)
            if hit is not None and self.images.exists(hit["value"]["image"]):
                return cached_reply(hit["value"]["image"])
        if self._image_model is None:
            self._image_model = make_image_model(self.config)
        model = self._image_model

        async def send(msgs: list[BaseMessage]) -> tuple[str, Usage]:
            data, usage = await model.generate(prompt)
            png = await asyncio.to_thread(as_png, data)
            return await asyncio.to_thread(self.images.put, png), Usage(usage["input_tokens"], usage["output_tokens"])  # type: ignore[union-attr]

        reply = await self.caller.call(send, messages, give_up="dropped", kind="painter")
        if key is not None and self.cache is not None:
            await self.cache.put(key, self.config, {"value": {"image": reply.value}}, reply.usage)
        return reply

    async def propose(
        self,
        problem: str,
        context: Context,
        seed: SeedView,
        strategy: Strategy,
        capabilities: list[Capability],
    ) -> Reply[ProposalDraft]:
        """A new problem. `problem` names its place in the run (r3/gpt/1): it makes each slot's
        request its own, so the call cache answers a request made again (resume, replay), never
        another slot that happens to draw the same seed, strategy and capabilities."""
        exemplars = "\n".join(f"- {e.question} ({e.why_hard})" for e in context.exemplars) or "(none yet)"
        prompt = render_prompt(
            "propose",
            context_version=context.version,
            guidance=context.guidance or "(no guidance yet: start from the seed)",
            difficulty_target=f"{context.difficulty_target:.2f}",
            capability_weights=_weights(context.capability_weights),
            strategy_weights=_weights(context.strategy_weights),
            exemplars=exemplars,
            seed_id=seed.id,
            seed=seed.text,
            problem=problem,
            strategy=strategy,
            capabilities=", ".join(capabilities),
        )
        return await self._ask(ProposalDraft, prompt, [seed.image] if seed.image else [], role="propose")

    async def critique(self, proposal: Proposal, image: bytes | None, *, consistency: bool = False) -> Reply[CritiqueDraft]:
        """A critic's review; with `consistency` (the gate) it also answers the explicit checks."""
        prompt = render_prompt(
            "critique",
            consistency=render_prompt("consistency") if consistency else "",
            question=proposal.question,
            answer_type=proposal.answer_type,
            choices=_choices_line(proposal.choices),
            reference_answer=proposal.reference_answer,
            solution=proposal.solution,
            visual_prompt=proposal.visual_prompt,
        )
        schema: type[CritiqueDraft] = ConsistencyCritiqueDraft if consistency else CritiqueDraft
        return await self._ask(schema, prompt, [image] if image else [], role="critique")

    async def revise(self, proposal: Proposal, critiques: list[Critique], image: bytes | None) -> Reply[ProposalDraft]:
        prompt = render_prompt(
            "revise",
            proposal=json.dumps(public_view(proposal), indent=2),
            critiques="\n".join(f"- {c.critic} ({c.verdict}): {'; '.join(c.issues) or 'no issues'}" for c in critiques),
        )
        return await self._ask(ProposalDraft, prompt, [image] if image else [], role="revise")

    async def judge(self, proposal: Proposal, image: bytes | None) -> Reply[JudgmentDraft]:
        # The judge sees the image and the question only: never the reference answer or solution.
        prompt = render_prompt(
            "judge",
            question=proposal.question,
            answer_type=proposal.answer_type,
            choices=_choices_line(proposal.choices),
        )
        return await self._ask(JudgmentDraft, prompt, [image] if image else [], role="judge")

    async def blind_judge(self, proposal: Proposal) -> Reply[JudgmentDraft]:
        """The image necessity gate (MMEvol's elimination): the question without its image. A
        question a judge can answer this way does not need its image."""
        prompt = render_prompt(
            "blind_judge",
            question=proposal.question,
            answer_type=proposal.answer_type,
            choices=_choices_line(proposal.choices),
        )
        return await self._ask(JudgmentDraft, prompt, [], role="blind_judge")

    async def rationalize(self, proposal: Proposal, earlier: str | None, image: bytes | None) -> Reply[JudgmentDraft]:
        """STaR's rationalization: a judge that missed the reference is shown it and asked for
        reasoning that reaches it from the image, as a training rationale (never a vote)."""
        prompt = render_prompt(
            "rationalize",
            earlier=repr(earlier),
            reference_answer=repr(proposal.reference_answer),
            question=proposal.question,
            answer_type=proposal.answer_type,
            choices=_choices_line(proposal.choices),
        )
        return await self._ask(JudgmentDraft, prompt, [image] if image else [], role="rationalize")

    async def reflect(self, context: Context, stats: dict[str, Any], pool: list[dict[str, Any]]) -> Reply[Context]:
        """The next context (version + 1) from the adversary's reflection on this round."""
        def rates(splits: dict[str, float]) -> str:
            return ", ".join(f"{k} {v:.1%}" for k, v in sorted(splits.items(), key=lambda kv: -kv[1])) or "(none)"

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
            dropped=stats["dropped"],
            kept=stats["kept"],
            adversarial=stats["adversarial"],
            split_share=f"{stats['split_share']:.1%}",
            discarded=stats["discarded"],
            capability_splits=rates(stats["capability_splits"]),
            strategy_splits=rates(stats["strategy_splits"]),
            unanimous_share=f"{stats['unanimous_share']:.1%}",
            discard_share=f"{stats['discard_share']:.1%}",
            pool=pool_text or "(empty: no problem split the panel)",
        )
        reply = await self._ask(ContextDraft, prompt, [], role="adversary")
        return Reply(context_from_draft(reply.value, context.version + 1), reply.usage, reply.attempts)


def make_agent(
    run: RunConfig,
    config: AgentConfig,
    gate: asyncio.Semaphore | None,
    *,
    cache: CallCache | None = None,
    images: ImageSink | None = None,
    notes: Any = None,
    in_flight: InFlight | None = None,
    batches: BatchOffice | None = None,
) -> Agent:
    """One agent of the run's panel. A painter has no chat model: its image model is made when it
    first paints. A missing key raises agents.models.MissingKeyError."""
    model = None if config.roles == ["painter"] else make_chat_model(config, seed=run.seed, world=run.world, notes=notes)
    return Agent(config, model, gate, run=run, cache=cache, images=images, in_flight=in_flight, batches=batches)


class Panel:
    """The agents of one run, built once from its config."""

    def __init__(
        self,
        config: RunConfig,
        *,
        cache: CallCache | None = None,
        images: ImageSink | None = None,
        gate: asyncio.Semaphore | None = None,
        notes: Any = None,
        in_flight: InFlight | None = None,
        batches: BatchOffice | None = None,
    ):
        """`gate` bounds the calls in flight; the lanes of a run share one (see graphs.settings).
        `notes` (store.notes.Notes) is where a model may keep records of its own. `in_flight` is
        the process's: stopping it refuses every call not yet sent. `batches` is where the calls of
        a batching run (`batch: true`) go as provider batch jobs (agents.batch)."""
        self.config = config
        if gate is None and config.concurrency != "auto":
            gate = asyncio.Semaphore(config.concurrency)
        self.agents = {
            a.name: make_agent(
                config, a, gate, cache=cache, images=images, notes=notes, in_flight=in_flight, batches=batches
            )
            for a in config.panel
        }

    def by_role(self, role: Role) -> list[Agent]:
        return [agent for agent in self.agents.values() if role in agent.config.roles]

    def __getitem__(self, name: str) -> Agent:
        return self.agents[name]

"""The simulated panel member: a LangChain chat model that stands in for a multimodal LLM.

It is NOT a language model. It is sent the same messages a real model is (the rendered prompt and
the images) and answers from them alone: it reads its prompt back into the values it was rendered
from (prompts.read_prompt), sees an image as the spec digest the painter stamped on it, and looks
up the world's truth about the problem in notes of its own (agents.sim.truth), which its proposers
wrote. So it walks the path a real model's answer takes: through the call cache, the limits, the
retries and the structured-output mode the agent is configured with. Its behaviour is seeded per
call (a proposer's by the problem its prompt names, any other call's by its messages), so a run
is reproducible.

How it behaves, per role:
- proposer: asks the world for a problem with the strategy, capabilities and difficulty its prompt
  names; with probability `flaw_rate` (higher for harder problems) its reference answer is a
  plausible wrong one;
- the harder world (`agents.sim.hazards`, rates in the run's `world:`): a proposal may converge on
  a popular problem, state its data in the question, or come with an image that contradicts it; on
  a blind-spot template the proposer's wrong reference is the mistake every model tends to make;
- critic: spots a wrong reference with probability `detect_rate` (much less on a blind spot); asked
  the consistency checks, it spots a wrong reference or an image that contradicts the question
  with `check_rate`, and recomputing from the image cuts a blind spot's pull to a third; unasked,
  it rarely notices a conflict;
- reviser: fixes a spotted wrong reference with probability `fix_rate`; it cannot redraw an image;
- judge: answers right with probability sigmoid(3.5 + skill + capability skill - 5 * difficulty),
  otherwise gives one of the world's plausible wrong answers; on a blind-spot template it makes
  the shared mistake with probability `blind_spot_strength`; where the image lacks what the
  question names it guesses, often the intended answer;
- blind judge (no image): solves a question that states its data; otherwise mostly says it cannot
  tell, and sometimes guesses;
- adversary: moves capability and strategy weights toward what split the panel and the difficulty
  target toward where the panel splits.
A problem it has no truth for (a real proposer's, a painter model's image) it cannot see: its
judges answer "unknown" and its critics find nothing.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import json
import math
import re
from functools import cached_property
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSequence
from pydantic import BaseModel, ConfigDict

from cadsynth.agents.calls import estimate_tokens
from cadsynth.agents.matching import answers_match
from cadsynth.agents.painter.render import spec_stamp
from cadsynth.agents.sim.hazards import Hazards
from cadsynth.agents.sim.truth import Truth, TruthBook, spec_digest_of
from cadsynth.agents.sim.world import LETTERS, Problem, World
from cadsynth.config import SimPersona, WorldConfig
from cadsynth.domain import (
    Capability,
    CapabilityWeight,
    ConsistencyCritiqueDraft,
    ContextDraft,
    CritiqueDraft,
    Exemplar,
    JudgmentDraft,
    ProposalDraft,
    StrategyWeight,
    Verdict,
)
from cadsynth.prompts import read_prompt
from cadsynth.rng import rng_for, sigmoid

# The prompts a simulated agent knows how to read, in the order it tries them.
ROLES = ("propose", "revise", "critique", "judge", "blind_judge", "rationalize", "adversary")


class SimPromptError(ValueError):
    """The simulator was sent a prompt it cannot read (a prompt file changed its placeholders)."""


class _Call:
    """One call as the simulator reads it: which prompt, its values, the images by spec digest."""

    def __init__(self, messages: list[BaseMessage]):
        texts: list[str] = []
        self.images: list[str] = []  # base64, as sent: the simulator reads only their first bytes
        for message in messages:
            content = message.content if isinstance(message.content, list) else [message.content]
            for part in content:
                if isinstance(part, str):
                    texts.append(part)
                elif part.get("type") == "text":
                    texts.append(part["text"])
                elif part.get("type") == "image":
                    self.images.append(part["base64"])
        self.text = "\n".join(texts)
        for role in ROLES:
            values = read_prompt(role, self.text)
            if values is not None:
                self.role, self.values = role, values
                break
        else:
            raise SimPromptError(f"the simulated panel cannot read this prompt: {self.text[:80]!r}...")
        if self.role == "propose":
            # A proposer's draws are keyed by the problem it writes (its place in the run), so
            # what else its prompt says (the exemplars' wording) moves no draw: only what it reads.
            self.key = self.values["problem"]
        else:
            digest = hashlib.sha256(self.text.encode())
            for image in self.images:
                digest.update(hashlib.sha256(image.encode()).digest())
            self.key = digest.hexdigest()

    @property
    def spec(self) -> str | None:
        """The spec digest of the image the call shows, if a renderer drew it."""
        # The stamp sits in the chunks before the pixels: the first few hundred bytes carry it.
        return spec_stamp(base64.b64decode(self.images[0][:1024])) if self.images else None

    def __getitem__(self, name: str) -> str:
        return self.values[name]


def _choices(line: str) -> list[str]:
    """`Choices: (A) 12  (B) 15` back into its options (panel._choices_line writes it)."""
    return re.findall(r"\([A-Z]\) (.*?)(?=  \([A-Z]\) |$)", line.strip().removeprefix("Choices: "))


def _rates(text: str) -> dict[str, float]:
    """`counting 41.7%, ocr 10.0%` back into shares (the adversary's prompt writes them so)."""
    return {name: float(pct) / 100 for name, pct in re.findall(r"([\w-]+) ([\d.]+)%", text)}


def _share(text: str) -> float:
    return float(text.strip().rstrip("%")) / 100


class _Answer(Runnable[Any, AIMessage]):
    """A simulated agent's structured answer as a model gives it: a message whose text is the JSON,
    with its usage. A plain Runnable rather than a RunnableLambda: the lambda's per-call
    bookkeeping (signature inspection, a callback manager) cost the simulated panel more than its
    answers do, and nothing downstream listens to its callbacks."""

    def __init__(self, model: SimChatModel, schema: type[BaseModel]):
        self.model, self.schema = model, schema

    def invoke(self, input: list[BaseMessage], config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        raise NotImplementedError("the simulated panel answers asynchronously (ainvoke)")

    async def ainvoke(self, input: list[BaseMessage], config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        parsed = await self.model.answer(input)
        if not isinstance(parsed, self.schema):
            raise TypeError(f"the simulated panel answered {type(parsed).__name__}, not {self.schema.__name__}")
        text = parsed.model_dump_json()
        return AIMessage(content=text, usage_metadata=_usage(estimate_tokens(input), text))


class _Parse(Runnable[AIMessage, BaseModel]):
    """The answer's JSON read into its schema, as a real model's structured output is parsed."""

    def __init__(self, schema: type[BaseModel]):
        self.schema = schema

    def invoke(self, input: AIMessage, config: RunnableConfig | None = None, **kwargs: Any) -> BaseModel:
        return self.schema.model_validate_json(str(input.content))

    async def ainvoke(self, input: AIMessage, config: RunnableConfig | None = None, **kwargs: Any) -> BaseModel:
        return self.invoke(input)


def judge_chance(persona: SimPersona, capabilities: list[Capability], sim: dict[str, Any]) -> float:
    """A simulated judge's chance to read a problem right, before a blind spot's pull."""
    cap_skill = sum(persona.capability_skill.get(c, 0.0) for c in capabilities) / max(1, len(capabilities))
    p = sigmoid(3.5 + persona.skill + cap_skill - 5.0 * sim["difficulty"])
    if sim.get("conflict"):
        p *= 0.5  # what the question names is not in the image: it reads the nearest thing instead
    return p


def answer_chances(
    persona: SimPersona, world: WorldConfig, capabilities: list[Capability], sim: dict[str, Any]
) -> dict[str, float]:
    """Each answer's chance from a simulated judge: the distribution its judging draws from. For
    analysis (bench/adaptive_jury.py's bound on what any jury order could save)."""
    chances: dict[str, float] = {}
    pull = world.blind_spot_strength if sim.get("blind_spot") is not None else 0.0
    if pull:
        chances[sim["blind_spot"]] = pull
    p = judge_chance(persona, capabilities, sim)
    chances[sim["truth"]] = chances.get(sim["truth"], 0.0) + (1 - pull) * p
    distractors = sim["distractors"]
    for k, answer in enumerate(distractors):  # the k-th for an exponential draw in [k, k+1), the last for the tail
        share = math.exp(-k) - (math.exp(-k - 1) if k < len(distractors) - 1 else 0.0)
        chances[answer] = chances.get(answer, 0.0) + (1 - pull) * (1 - p) * share
    return chances


class SimChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    agent: str
    model_name: str = "sim"
    persona: SimPersona = SimPersona()
    seed: int = 0
    world_config: WorldConfig = WorldConfig()
    notes: Any = None  # where the truth is kept (a truth.NoteStore: store.notes.Notes); in memory without

    @property
    def _llm_type(self) -> str:
        return "cads-sim"

    @cached_property
    def world(self) -> World:
        return World()

    @cached_property
    def hazards(self) -> Hazards:
        return Hazards(self.world_config, self.world)

    @cached_property
    def book(self) -> TruthBook:
        return TruthBook.shared(self.world_config, self.notes)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("the simulated panel answers asynchronously (ainvoke)")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """A plain call (the `json_text` mode): the structured answer as JSON text."""
        text = (await self.answer(messages)).model_dump_json()
        message = AIMessage(content=text, usage_metadata=_usage(estimate_tokens(messages), text))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def with_structured_output(  # type: ignore[override]
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        """The answer and its parsing, two steps as a real model's structured output is (the panel
        runs them apart, agents.panel.Agent._structured_steps)."""
        if include_raw:
            raise NotImplementedError("the simulated panel's structured output has no include_raw; run its two steps apart")
        return RunnableSequence(_Answer(self, schema), _Parse(schema))

    # --- behaviour ---------------------------------------------------------------------------

    async def answer(self, messages: list[BaseMessage]) -> BaseModel:
        """What this simulated agent says to these messages."""
        if self.persona.latency:
            await asyncio.sleep(self.persona.latency)  # a model's response time
        call = _Call(messages)
        rng = rng_for(self.seed, call.role, self.agent, call.key)
        if call.role == "propose":
            return await self._propose(rng, call)
        if call.role == "critique":
            return await self._critique(rng, call)
        if call.role == "revise":
            return await self._revise(rng, call)
        if call.role == "judge":
            return await self._judge(rng, call)
        if call.role == "blind_judge":
            return await self._blind_judge(rng, call)
        if call.role == "rationalize":
            return self._rationalize(rng, call)
        return self._reflect(call)

    async def _propose(self, rng: Any, call: _Call) -> ProposalDraft:
        # A world seed is regenerated from its id: the seed travels as an id, not an object.
        seed_id = call["seed_id"]
        base: Problem | None = None
        if seed_id.startswith("world:"):
            base = self.world.seed(rng_for(self.seed, "seed", seed_id.removeprefix("world:")))
        capabilities = [c.strip() for c in call["capabilities"].split(",") if c.strip()]
        target = min(1.0, max(0.0, float(call["difficulty_target"]) + rng.gauss(0.0, 0.08)))
        problem = self.world.evolve(rng, base, call["strategy"], capabilities, target)  # type: ignore[arg-type]
        # The world's failure modes draw from their own generator, so changing their rates leaves
        # every other draw of the proposal (and of the run) as it was.
        hazard_rng = rng_for(self.seed, "hazards", self.agent, call.key)
        converged = self.hazards.converge(hazard_rng, problem)
        if converged:
            problem = converged[0]
        conflicted = self.hazards.conflict(hazard_rng, problem)
        if conflicted:
            problem = conflicted[0]
        given_away = self.hazards.give_away(hazard_rng, problem)
        problem = given_away or problem
        blind_spot = self.hazards.blind_spot(problem)
        # Harder problems are easier to get wrong; on a blind spot the proposer is a model too.
        flaw = self.persona.flaw_rate * (0.5 + problem.difficulty)
        if blind_spot is not None:
            flaw += (1.0 - flaw) * 0.3 * self.world_config.blind_spot_strength
        flawed = rng.random() < flaw
        if flawed and blind_spot is not None:
            reference = blind_spot
        else:
            reference = problem.distractors[0 if rng.random() < 0.6 else 1] if flawed else problem.truth
        solution = problem.solution if not flawed else f"{problem.solution}\nSo the answer is {reference}."
        truth = Truth(
            truth=problem.truth,
            distractors=list(problem.distractors),
            difficulty=problem.difficulty,
            capabilities=list(problem.capabilities),
            template=problem.template,
            kind=problem.kind,
            text_answerable=given_away is not None,
            conflict=conflicted[1] if conflicted else None,
            duplicate_of=converged[1] if converged else None,
            blind_spot=blind_spot,
        )
        await self.book.write(problem.question, spec_digest_of(problem.spec) or "", truth, problem.choices)
        return ProposalDraft(
            strategy=call["strategy"],  # type: ignore[arg-type]
            capabilities=list(problem.capabilities),
            image_spec=problem.spec,
            visual_prompt=problem.visual_prompt,
            question=problem.question,
            answer_type=problem.answer_type,
            choices=problem.choices,
            reference_answer=reference,
            solution=solution,
            difficulty=round(problem.difficulty, 3),
        )

    @staticmethod
    def _wrong(reference: str, truth: Truth, answer_type: str, choices: list[str] | None) -> bool:
        return not answers_match(reference, truth.truth, answer_type, choices)  # type: ignore[arg-type]

    async def _critique(self, rng: Any, call: _Call) -> CritiqueDraft:
        truth = await self.book.about(call["question"], call.spec, _choices(call["choices"]))
        reference = call["reference_answer"]
        checks = bool(call["consistency"].strip())
        # A pointed question (is this label in the image? is this the value drawn?) is easier to
        # get right than a general review.
        detect = self.persona.check_rate if checks else self.persona.detect_rate
        if truth is not None and truth.blind_spot is not None and reference == truth.blind_spot:
            # The critic shares the mistake; reading each value off the image for the check helps.
            pull = self.world_config.blind_spot_strength
            detect *= 1.0 - (pull / 3 if checks else pull)
        flawed = truth is not None and self._wrong(reference, truth, call["answer_type"], _choices(call["choices"]) or None)
        wrong = flawed and rng.random() < detect
        # Unasked, a critic seldom compares what the question names with what the image shows.
        conflict = bool(truth and truth.conflict) and rng.random() < (
            self.persona.check_rate if checks else 0.2 * self.persona.detect_rate
        )
        issues = []
        if wrong:
            assert truth is not None
            issues.append(f"The reference answer {reference!r} does not match the image; I get {truth.truth!r}.")
        if conflict:
            issues.append("The image does not show what the question refers to, as the question says it.")
        if issues:
            verdict: Verdict = "drop" if rng.random() < 0.25 else "revise"
        elif rng.random() < 0.04:
            verdict, issues = "revise", ["The solution skips a step; spell out the arithmetic."]
        else:
            verdict = "keep"
        if checks:
            return ConsistencyCritiqueDraft(
                verdict=verdict, issues=issues, image_matches_question=not conflict, reference_matches_image=not wrong
            )
        return CritiqueDraft(verdict=verdict, issues=issues)

    async def _revise(self, rng: Any, call: _Call) -> ProposalDraft:
        proposal = json.loads(call["proposal"])
        truth = await self.book.about(proposal["question"], spec_digest_of(proposal.get("image_spec")), proposal.get("choices"))
        flagged = "does not match the image" in call["critiques"]
        flawed = truth is not None and self._wrong(
            proposal["reference_answer"], truth, proposal["answer_type"], proposal.get("choices")
        )
        if truth is not None and flawed and flagged and rng.random() < self.persona.fix_rate:
            proposal["reference_answer"] = truth.truth
            proposal["solution"] = f"{proposal['solution']}\nCorrection: recomputed from the image, the answer is {truth.truth}."
        return ProposalDraft.model_validate({name: proposal[name] for name in ProposalDraft.model_fields if name in proposal})

    async def _judge(self, rng: Any, call: _Call) -> JudgmentDraft:
        truth = await self.book.about(call["question"], call.spec, _choices(call["choices"]))
        if truth is None:
            # Not a problem of the simulated world (a real proposer's, a painter model's image): it cannot see it.
            return JudgmentDraft(answer="unknown", rationale="The simulator has no ground truth here.", confidence=0.0, quality=1)
        sim = truth.model_dump()
        p = judge_chance(self.persona, truth.capabilities, sim)  # type: ignore[arg-type]
        if truth.blind_spot is not None and rng.random() < self.world_config.blind_spot_strength:
            answer = truth.blind_spot
            confidence = max(0.3, p)  # the shared mistake feels right
            quality = int(min(5, max(1, round(1.5 + 4 * truth.difficulty))))
            return JudgmentDraft(answer=answer, rationale=f"Reading the values off the image gives {answer}.",
                                 confidence=round(confidence, 3), quality=quality)
        if rng.random() < p:
            answer = truth.truth
            rationale = f"Reading the values off the image and working it through gives {answer}."
            confidence = p
        else:
            # The first distractors are the commonest mistakes, so wrong judges often agree.
            distractors = truth.distractors
            answer = distractors[min(int(rng.expovariate(1.0)), len(distractors) - 1)]  # see answer_chances
            rationale = f"From the image I estimate the relevant values and get {answer}."
            confidence = max(0.05, p - 0.25)
        confidence = min(1.0, max(0.0, confidence + rng.gauss(0.0, 0.08)))
        quality = int(min(5, max(1, round(1.5 + 4 * truth.difficulty + rng.gauss(0.0, 0.6)))))
        return JudgmentDraft(answer=answer, rationale=rationale, confidence=round(confidence, 3), quality=quality)

    async def _blind_judge(self, rng: Any, call: _Call) -> JudgmentDraft:
        truth = await self.book.about_question(call["question"])
        if truth is None:
            return JudgmentDraft(answer="unanswerable", rationale="The simulator has no ground truth here.", confidence=0.0, quality=1)
        # The question states the values: like judging with nothing to misread, only the reasoning.
        p = sigmoid(4.5 + self.persona.skill - 3.0 * truth.difficulty)
        if truth.text_answerable and rng.random() < p:
            answer = truth.truth
            return JudgmentDraft(answer=answer, rationale=f"The question gives the values; they give {answer}.", confidence=0.9, quality=1)
        if rng.random() < 0.85:
            return JudgmentDraft(answer="unanswerable", rationale="The question needs the image.", confidence=0.9, quality=3)
        # A guess: a letter for a multiple-choice question, a plausible value otherwise.
        choices = _choices(call["choices"])
        guess = rng.choice(LETTERS[: len(choices)]) if choices else (truth.distractors or ["unknown"])[0]
        return JudgmentDraft(answer=guess, rationale="A guess without the image.", confidence=0.2, quality=2)

    def _rationalize(self, rng: Any, call: _Call) -> JudgmentDraft:
        # Told the answer, the simulated judge writes reasoning that reaches it, right or not: a
        # wrong reference gets a rationale too, which is STaR's risk and why the truth is kept.
        reference = str(ast.literal_eval(call["reference_answer"]))
        rationale = f"Reading the relevant values off the image and working them through step by step gives {reference}."
        return JudgmentDraft(answer=reference, rationale=rationale, confidence=round(0.6 + 0.3 * rng.random(), 3), quality=3)

    def _reflect(self, call: _Call) -> ContextDraft:
        context = json.loads(call["context"])
        split_share = _share(call["split_share"])
        unanimous_share, discard_share = _share(call["unanimous_share"]), _share(call["discard_share"])
        capability_weights = _shift(context["capability_weights"], _rates(call["capability_splits"]), split_share)
        strategy_weights = _shift(context["strategy_weights"], _rates(call["strategy_splits"]), split_share)
        # Easy rounds push difficulty up, broken rounds pull it down.
        step = 0.25 * (unanimous_share - discard_share)
        target = round(min(0.9, max(0.05, context["difficulty_target"] + step)), 3)
        top_caps = sorted(capability_weights, key=lambda c: -capability_weights[c])[:3]
        top_strategies = sorted(strategy_weights, key=lambda s: -strategy_weights[s])[:2]
        pool = re.findall(r"^- \[(\d+)/(\d+) agreed\] (.*?) reference=", call["pool"], re.MULTILINE | re.DOTALL)
        exemplars = [
            Exemplar(question=question, why_hard=f"{agreeing} of {judges} judges agreed")
            for agreeing, judges, question in pool[:3]
        ]
        guidance = (
            f"Write problems that need {', '.join(top_caps)} together; prefer the "
            f"{' and '.join(s.replace('_', ' ') for s in top_strategies)} strategies. "
            f"Aim for difficulty {target:.2f}: multi-step reading of exact values, with one clear answer."
        )
        reflection = (
            f"{len(pool)} problems split the panel. Splits were most frequent for {', '.join(top_caps)}; "
            f"{unanimous_share:.0%} were solved by every judge and {discard_share:.0%} by none."
        )
        return ContextDraft(
            reflection=reflection,
            guidance=guidance,
            capability_weights=[CapabilityWeight.model_validate({"name": n, "weight": w}) for n, w in capability_weights.items()],
            strategy_weights=[StrategyWeight.model_validate({"name": n, "weight": w}) for n, w in strategy_weights.items()],
            difficulty_target=target,
            exemplars=exemplars,
        )


class SimImageModel:
    """Stands in for an image model in dry runs: a plain PNG and the tokens such a call would use."""

    def __init__(self, agent: str):
        self.agent = agent

    async def generate(self, prompt: str) -> tuple[bytes, dict[str, int]]:
        import hashlib
        import io

        from PIL import Image

        shade = hashlib.sha256(prompt.encode()).digest()[:3]
        out = io.BytesIO()
        Image.new("RGB", (64, 64), tuple(shade)).save(out, format="PNG")
        # A 1024x1024 image is about 1,300 output tokens on the image APIs this stands in for.
        return out.getvalue(), {"input_tokens": math.ceil(len(prompt) / 4), "output_tokens": 1300}


def _shift(weights: dict[str, float], splits: dict[str, float], mean_split: float, eta: float = 2.0) -> dict[str, float]:
    """Multiplicative update toward what split the panel more than average; mean weight stays 1."""
    names = sorted(set(weights) | set(splits))
    raw = {n: weights.get(n, 1.0) * math.exp(eta * (splits.get(n, mean_split) - mean_split)) for n in names}
    mean = sum(raw.values()) / max(1, len(raw))
    return {n: round(min(5.0, max(0.2, w / mean)), 4) for n, w in raw.items()}


def _usage(input_tokens: int, output: str) -> dict[str, int]:
    output_tokens = math.ceil(len(output) / 4)
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}


"""The simulated panel member: a LangChain chat model that stands in for a multimodal LLM.

It is NOT a language model. It receives the same rendered prompts and images a real model would
(so token counts and costs can be estimated from them), but decides what to say from the task
payload the agent layer attaches to the call (`config["metadata"]["cads_task"]`) and from the
procedural world's ground truth. Its behaviour is seeded per task, so a run is reproducible.

How it behaves, per role:
- proposer: asks the world for a problem with the planned strategy, capabilities and difficulty;
  with probability `flaw_rate` (higher for harder problems) its reference answer is a plausible
  wrong one;
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
"""

from __future__ import annotations

import asyncio
import math
from functools import cached_property
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel

from cadsynth.agents.calls import estimate_tokens
from cadsynth.agents.sim.hazards import Hazards
from cadsynth.agents.sim.rng import rng_for, sigmoid
from cadsynth.agents.sim.world import LETTERS, Problem, World
from cadsynth.config import SimPersona, WorldConfig
from cadsynth.domain import (
    Capability,
    ConsistencyCritiqueDraft,
    ContextDraft,
    CritiqueDraft,
    Exemplar,
    JudgmentDraft,
    ProposalDraft,
    SimTruth,
    Verdict,
    Weight,
)


class _Structured(Runnable[Any, Any]):
    """A simulated agent's structured answer. A plain Runnable rather than a RunnableLambda: the
    lambda's per-call bookkeeping (signature inspection, a callback manager) cost the simulated
    panel more than its answers do, and nothing downstream listens to its callbacks."""

    def __init__(self, model: SimChatModel, schema: type[BaseModel], include_raw: bool):
        self.model, self.schema, self.include_raw = model, schema, include_raw

    def invoke(self, input: list[BaseMessage], config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        task = ((config or {}).get("metadata") or {}).get("cads_task")
        if not isinstance(task, dict):
            raise ValueError("the simulated panel needs the task payload the cadsynth agent layer attaches")
        parsed = self.model.respond(task)
        if not isinstance(parsed, self.schema):
            raise TypeError(f"simulated {task['role']} produced {type(parsed).__name__}, not {self.schema.__name__}")
        if not self.include_raw:
            return parsed
        text = parsed.model_dump_json()
        raw = AIMessage(content=text, usage_metadata=_usage(estimate_tokens(input), text))
        return {"raw": raw, "parsed": parsed, "parsing_error": None}

    async def ainvoke(self, input: list[BaseMessage], config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self.model.persona.latency:
            await asyncio.sleep(self.model.persona.latency)  # a model's response time
        return self.invoke(input, config)


class SimProposalDraft(ProposalDraft):
    """A proposal plus the world's ground truth, which only the simulator ever sees."""

    sim: SimTruth


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
    agent: str
    model_name: str = "sim"
    persona: SimPersona = SimPersona()
    seed: int = 0
    world_config: WorldConfig = WorldConfig()

    @property
    def _llm_type(self) -> str:
        return "cads-sim"

    @cached_property
    def world(self) -> World:
        return World()

    @cached_property
    def hazards(self) -> Hazards:
        return Hazards(self.world_config, self.world)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Free-form chat is not part of the simulation; answer briefly so plain calls still work.
        text = f"{self.agent} (simulated) has nothing to add."
        message = AIMessage(content=text, usage_metadata=_usage(estimate_tokens(messages), text))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def with_structured_output(  # type: ignore[override]
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        return _Structured(self, schema, include_raw)

    # --- behaviour ---------------------------------------------------------------------------

    def respond(self, task: dict[str, Any]) -> BaseModel:
        role = task["role"]
        rng = rng_for(self.seed, role, self.agent, task["key"])
        if role == "propose":
            return self._propose(rng, task)
        if role == "critique":
            return self._critique(rng, task)
        if role == "revise":
            return self._revise(rng, task)
        if role == "judge":
            return self._judge(rng, task)
        if role == "blind_judge":
            return self._blind_judge(rng, task)
        if role == "rationalize":
            return self._rationalize(rng, task)
        if role == "reflect":
            return self._reflect(task)
        raise ValueError(f"unknown simulated task role {role!r}")

    def _propose(self, rng: Any, task: dict[str, Any]) -> SimProposalDraft:
        seed = task.get("seed") or {}
        # World seeds are regenerated from their key: the seed travels as a key, not an object.
        base: Problem | None = self.world.seed(rng_for(self.seed, "seed", seed["world_key"])) if seed.get("world_key") else None
        target = min(1.0, max(0.0, task["difficulty_target"] + rng.gauss(0.0, 0.08)))
        problem = self.world.evolve(rng, base, task["strategy"], task["capabilities"], target)
        # The world's failure modes draw from their own generator, so changing their rates leaves
        # every other draw of the proposal (and of the run) as it was.
        hazard_rng = rng_for(self.seed, "hazards", self.agent, task["key"])
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
        return SimProposalDraft(
            strategy=task["strategy"],
            capabilities=list(problem.capabilities),
            image_spec=problem.spec,
            visual_prompt=problem.visual_prompt,
            question=problem.question,
            answer_type=problem.answer_type,
            choices=problem.choices,
            reference_answer=reference,
            solution=solution,
            difficulty=round(problem.difficulty, 3),
            sim=_truth(problem, flawed, reference).model_copy(update={
                "text_answerable": given_away is not None,
                "conflict": conflicted[1] if conflicted else None,
                "duplicate_of": converged[1] if converged else None,
                "blind_spot": blind_spot,
            }),
        )

    def _critique(self, rng: Any, task: dict[str, Any]) -> CritiqueDraft:
        proposal = task["proposal"]
        sim = proposal.get("sim") or {}
        checks = task.get("consistency", False)
        # A pointed question (is this label in the image? is this the value drawn?) is easier to
        # get right than a general review.
        detect = self.persona.check_rate if checks else self.persona.detect_rate
        if sim.get("blind_spot") is not None and proposal["reference_answer"] == sim["blind_spot"]:
            # The critic shares the mistake; reading each value off the image for the check helps.
            pull = self.world_config.blind_spot_strength
            detect *= 1.0 - (pull / 3 if checks else pull)
        wrong = bool(sim.get("flawed")) and rng.random() < detect
        # Unasked, a critic seldom compares what the question names with what the image shows.
        conflict = bool(sim.get("conflict")) and rng.random() < (self.persona.check_rate if checks else 0.2 * self.persona.detect_rate)
        issues = []
        if wrong:
            issues.append(f"The reference answer {proposal['reference_answer']!r} does not match the image; I get {sim['truth']!r}.")
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

    def _revise(self, rng: Any, task: dict[str, Any]) -> SimProposalDraft:
        proposal = dict(task["proposal"])
        sim = SimTruth.model_validate(proposal["sim"])
        flagged = any("does not match the image" in issue for c in task["critiques"] for issue in c["issues"])
        if sim.flawed and flagged and rng.random() < self.persona.fix_rate:
            sim = sim.model_copy(update={"flawed": False})
            proposal["reference_answer"] = sim.truth
            proposal["solution"] = f"{proposal['solution']}\nCorrection: recomputed from the image, the answer is {sim.truth}."
        fields = {name: proposal[name] for name in ProposalDraft.model_fields}
        return SimProposalDraft(**fields, sim=sim)

    def _judge(self, rng: Any, task: dict[str, Any]) -> JudgmentDraft:
        sim = task.get("sim")
        if not sim:
            # A problem from a real proposer: the simulator cannot see images, so it guesses.
            return JudgmentDraft(answer="unknown", rationale="The simulator has no ground truth here.", confidence=0.0, quality=1)
        p = judge_chance(self.persona, task["capabilities"], sim)
        if sim.get("blind_spot") is not None and rng.random() < self.world_config.blind_spot_strength:
            answer = sim["blind_spot"]
            confidence = max(0.3, p)  # the shared mistake feels right
            quality = int(min(5, max(1, round(1.5 + 4 * sim["difficulty"]))))
            return JudgmentDraft(answer=answer, rationale=f"Reading the values off the image gives {answer}.",
                                 confidence=round(confidence, 3), quality=quality)
        if rng.random() < p:
            answer = sim["truth"]
            rationale = f"Reading the values off the image and working it through gives {answer}."
            confidence = p
        else:
            # The first distractors are the commonest mistakes, so wrong judges often agree.
            distractors = sim["distractors"]
            answer = distractors[min(int(rng.expovariate(1.0)), len(distractors) - 1)]  # see answer_chances
            rationale = f"From the image I estimate the relevant values and get {answer}."
            confidence = max(0.05, p - 0.25)
        confidence = min(1.0, max(0.0, confidence + rng.gauss(0.0, 0.08)))
        quality = int(min(5, max(1, round(1.5 + 4 * sim["difficulty"] + rng.gauss(0.0, 0.6)))))
        return JudgmentDraft(answer=answer, rationale=rationale, confidence=round(confidence, 3), quality=quality)

    def _blind_judge(self, rng: Any, task: dict[str, Any]) -> JudgmentDraft:
        sim = task.get("sim")
        if not sim:
            return JudgmentDraft(answer="unanswerable", rationale="The simulator has no ground truth here.", confidence=0.0, quality=1)
        # The question states the values: like judging with nothing to misread, only the reasoning.
        p = sigmoid(4.5 + self.persona.skill - 3.0 * sim["difficulty"])
        if sim.get("text_answerable") and rng.random() < p:
            answer = sim["truth"]
            return JudgmentDraft(answer=answer, rationale=f"The question gives the values; they give {answer}.", confidence=0.9, quality=1)
        if rng.random() < 0.85:
            return JudgmentDraft(answer="unanswerable", rationale="The question needs the image.", confidence=0.9, quality=3)
        # A guess: a letter for a multiple-choice question, a plausible value otherwise.
        choices = task.get("choices") or []
        guess = rng.choice(LETTERS[: len(choices)]) if choices else (sim["distractors"] or ["unknown"])[0]
        return JudgmentDraft(answer=guess, rationale="A guess without the image.", confidence=0.2, quality=2)

    def _rationalize(self, rng: Any, task: dict[str, Any]) -> JudgmentDraft:
        # Told the answer, the simulated judge writes reasoning that reaches it, right or not: a
        # wrong reference gets a rationale too, which is STaR's risk and why the truth is kept.
        reference = task["reference_answer"]
        rationale = f"Reading the relevant values off the image and working them through step by step gives {reference}."
        return JudgmentDraft(answer=reference, rationale=rationale, confidence=round(0.6 + 0.3 * rng.random(), 3), quality=3)

    def _reflect(self, task: dict[str, Any]) -> ContextDraft:
        context, stats = task["context"], task["stats"]
        capability_weights = _shift(context["capability_weights"], stats["capability_splits"], stats["split_share"])
        strategy_weights = _shift(context["strategy_weights"], stats["strategy_splits"], stats["split_share"])
        # Easy rounds push difficulty up, broken rounds pull it down.
        step = 0.25 * (stats["unanimous_share"] - stats["discard_share"])
        target = round(min(0.9, max(0.05, context["difficulty_target"] + step)), 3)
        top_caps = sorted(capability_weights, key=lambda c: -capability_weights[c])[:3]
        top_strategies = sorted(strategy_weights, key=lambda s: -strategy_weights[s])[:2]
        pool = task["pool"]
        exemplars = [
            Exemplar(question=item["question"], why_hard=f"{item['agreeing']} of {item['judges']} judges agreed")
            for item in pool[:3]
        ]
        guidance = (
            f"Write problems that need {', '.join(top_caps)} together; prefer the "
            f"{' and '.join(s.replace('_', ' ') for s in top_strategies)} strategies. "
            f"Aim for difficulty {target:.2f}: multi-step reading of exact values, with one clear answer."
        )
        reflection = (
            f"{len(pool)} problems split the panel. Splits were most frequent for {', '.join(top_caps)}; "
            f"{stats['unanimous_share']:.0%} were solved by every judge and {stats['discard_share']:.0%} by none."
        )
        return ContextDraft(
            reflection=reflection,
            guidance=guidance,
            capability_weights=[Weight(name=n, weight=w) for n, w in capability_weights.items()],
            strategy_weights=[Weight(name=n, weight=w) for n, w in strategy_weights.items()],
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


def _truth(problem: Problem, flawed: bool, reference: str) -> SimTruth:
    return SimTruth(
        truth=problem.truth,
        distractors=list(problem.distractors),
        difficulty=problem.difficulty,
        flawed=flawed,
        proposed_reference=reference,
        template=problem.template,
        kind=problem.kind,
    )


def _usage(input_tokens: int, output: str) -> dict[str, int]:
    output_tokens = math.ceil(len(output) / 4)
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}


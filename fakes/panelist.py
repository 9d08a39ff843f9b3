"""A fake server's brain: answers each structured request of a debate the way a sensible panel would.

Give it to a fake server (``FakeOpenAI(Panelist())``, an HTTP server on 127.0.0.1 standing in for
a paid API in tests and benchmarks) and a whole `cads run` with real-model agents can go through it.

Problems come from the simulated world (so their specs render and their truths are known), critics
mostly keep, judges reach the truth most of the time, and the adversary writes a valid context.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Collection
from itertools import count
from typing import Any

from cadsynth.agents.sim.world import TEMPLATES, World
from cadsynth.domain import CAPABILITIES, STRATEGIES, ProposalDraft

from .responders import request_target, request_text


class Panelist:
    """The fake server's brain: answers each structured request the way a sensible model would."""

    def __init__(self, kinds: Collection[str] = ()) -> None:
        """kinds: the image kinds its problems take in turn (every kind the world has when empty)."""
        self.world = World()
        self.truths: dict[str, tuple[str, list[str]]] = {}
        self.kinds = sorted(kinds)
        self._turn = count()

    def __call__(self, body: dict[str, Any]) -> Any:
        target = request_target(body)
        text = request_text(body)
        name = target.name if target.schema is not None else re.search(r"a `(\w+Draft)`", text).group(1)  # type: ignore[union-attr]
        rng = random.Random(hashlib.sha256(f"{body.get('model')}|{text}".encode()).hexdigest())
        if name == "ProposalDraft":
            if "You proposed the problem below" in text:
                return self.revise(text)
            # The local model writes no image_spec: the painter model draws from its visual_prompt.
            return self.propose(rng, text, with_spec=body.get("model") != "qwen2.5-vl-7b")
        if name in ("CritiqueDraft", "ConsistencyCritiqueDraft"):
            checks = {"image_matches_question": True, "reference_matches_image": True} if name != "CritiqueDraft" else {}
            if rng.random() < 0.2:
                return {"verdict": "revise", "issues": ["State the unit of the answer."], **checks}
            return {"verdict": "keep", "issues": [], **checks}
        if name == "JudgmentDraft" and "NOT shown" in text:
            return {"answer": "unanswerable", "rationale": "It needs the image.", "confidence": 0.9, "quality": 3}
        if name == "JudgmentDraft":
            question = re.search(r"Question: (.*)\nAnswer type:", text, re.S).group(1)  # type: ignore[union-attr]
            truth, distractors = self.truths.get(question, ("unknown", ["unknown"]))
            answer = truth if rng.random() < 0.65 else rng.choice(distractors)
            return {"answer": answer, "rationale": f"Read off the image: {answer}.", "confidence": 0.7, "quality": 3}
        if name == "ContextDraft":
            return {
                "reflection": "The panel split on multi-step reading.",
                "guidance": "Compose counting with numeric reasoning.",
                "capability_weights": [{"name": c, "weight": 1.0 + (c == "counting")} for c in CAPABILITIES],
                "strategy_weights": [{"name": s, "weight": 1.0} for s in STRATEGIES],
                "difficulty_target": 0.45,
                "exemplars": [],
            }
        raise AssertionError(f"unexpected schema {name}")

    def propose(self, rng: random.Random, text: str, with_spec: bool) -> dict[str, Any]:
        strategy = re.search(r"strategy `(\w+)`", text).group(1)  # type: ignore[union-attr]
        if self.kinds:
            kind = self.kinds[next(self._turn) % len(self.kinds)]
            forward = sorted(t.id for t in TEMPLATES.values() if t.kind == kind and not t.reverse)
            problem = self.world.generate(rng, rng.choice(forward), rng.uniform(0.0, 0.5))
        else:
            problem = self.world.seed(rng)
        self.truths[problem.question] = (problem.truth, list(problem.distractors))
        return {
            "strategy": strategy,
            "capabilities": list(problem.capabilities)[:3],
            "image_spec": problem.spec.model_dump(mode="json") if with_spec else None,
            "visual_prompt": problem.visual_prompt,
            "question": problem.question,
            "answer_type": problem.answer_type,
            "choices": problem.choices,
            "reference_answer": problem.truth,
            "solution": problem.solution,
            "difficulty": round(problem.difficulty, 3),
        }

    def revise(self, text: str) -> dict[str, Any]:
        mine = json.loads(re.search(r"Your problem:\n(.*)\n\nThe critiques:", text, re.S).group(1))  # type: ignore[union-attr]
        return {k: mine[k] for k in ProposalDraft.model_fields}

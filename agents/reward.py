"""The reward an RL trainer gives a rollout: the judges' own rule (`answers_match`) on its final answer.

A rollout is scored 1 when its final answer — the last `\\boxed{...}`, or else the last `Answer:`
line — agrees with the reference by exactly the rule that decided which judges agreed, and 0
otherwise (no final answer is 0). The format score is 1 when the reasoning is inside
`<think> </think>` and a final answer follows it.

This module and `matching` use the standard library only: an RL export writes the two of them as
one file (`cadsynth.rl_exports.reward_source`) that a trainer loads by path, with no cadsynth
installed. The trainers' entry points are at the end, one per trainer, with the signatures they call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from cadsynth.agents.matching import answers_match

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "Answer: 12", "**Final answer:** 12", "The answer: 12": the rest of the line, bold marks aside.
_ANSWER_LINE = re.compile(r"^[ \t*#>_]*(?:the\s+)?(?:final\s+)?answer\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*(.*?)\s*(?:\*\*)?\s*$",
                          re.I | re.M)
_THOUGHT = re.compile(r"^\s*<think>.*?</think>(?P<after>.*)$", re.S)
# Qwen2.5-VL-32B writes "< think >"; EasyR1's own math reward folds such spaces the same way.
_TAG_SPACES = re.compile(r"<\s*(/?)\s*think\s*>")


def _last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}`, nested braces and all; None when there is none whole."""
    found = None
    for m in _BOX_OPEN.finditer(text):
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                found = text[start:i]
                break
    return found


def final_answer(rollout: str) -> str | None:
    """The answer a rollout ends on: its last `\\boxed{}`, else its last `Answer:` line; None if neither."""
    text = str(rollout)
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    lines = _ANSWER_LINE.findall(text)
    return lines[-1] if lines and lines[-1] else None


def accuracy(rollout: str, reference: str, answer_type: str | None = None, choices: Sequence[str] | None = None) -> float:
    answer = final_answer(rollout)
    return 1.0 if answer is not None and answers_match(answer, reference, answer_type, list(choices) if choices else None) else 0.0


def well_formed(rollout: str) -> float:
    """1.0 when the rollout reasons inside <think></think> and then gives a final answer the rule finds."""
    m = _THOUGHT.match(_TAG_SPACES.sub(r"<\1think>", str(rollout)))
    return 1.0 if m and final_answer(m.group("after")) is not None else 0.0


def reference_of(ground_truth: Any) -> tuple[str, str | None, list[str] | None]:
    """(reference, answer type, choices) from a ground truth as an export writes it: a JSON object
    with `answer`, `answer_type` and `choices` (EasyR1's single answer column), or the plain answer."""
    if isinstance(ground_truth, dict):
        record: Any = ground_truth
    else:
        try:
            record = json.loads(str(ground_truth))
        except ValueError:
            record = None
    if isinstance(record, dict) and "answer" in record:
        choices = record.get("choices")
        return str(record["answer"]), record.get("answer_type"), [str(c) for c in choices] if choices else None
    return str(ground_truth), None, None


def _text(completion: Any) -> str:
    """A TRL completion as text: a string (standard format) or messages (conversational format)."""
    if isinstance(completion, str):
        return completion
    message = completion[-1] if isinstance(completion, (list, tuple)) and completion else completion
    content = message.get("content", "") if isinstance(message, dict) else message
    if isinstance(content, (list, tuple)):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


# --- the trainers' entry points ------------------------------------------------------------------

# EasyR1 reads these from the module it loads: a batch reward gets every rollout of a step at once.
REWARD_NAME = "cadsynth"
REWARD_TYPE = "batch"


def compute_score(data_source: Any, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None,
                  **kwargs: Any) -> float:
    """verl (`custom_reward_function.path=reward.py`, name `compute_score`): the answer's reward.
    The export's `extra_info` carries the answer type and the options of a multiple-choice question."""
    reference, answer_type, choices = reference_of(ground_truth)
    info = extra_info if isinstance(extra_info, dict) else {}
    answer_type = info.get("answer_type", answer_type)
    given = info.get("choices")
    return accuracy(solution_str, reference, answer_type, [str(c) for c in given] if given is not None and len(given) else choices)


def compute_score_batch(reward_inputs: list[dict[str, Any]], format_weight: float = 0.1) -> list[dict[str, float]]:
    """EasyR1 (`worker.reward.reward_function=reward.py:compute_score_batch`): overall, format and accuracy
    per rollout, overall weighing the format by `format_weight` as EasyR1's own math reward does."""
    scores = []
    for item in reward_inputs:
        reference, answer_type, choices = reference_of(item["ground_truth"])
        right, shaped = accuracy(item["response"], reference, answer_type, choices), well_formed(item["response"])
        scores.append({"overall": (1 - format_weight) * right + format_weight * shaped, "format": shaped, "accuracy": right})
    return scores


def accuracy_reward(completions: list[Any], solution: list[str], answer_type: list[str | None] | None = None,
                    choices: list[Sequence[str] | None] | None = None, **kwargs: Any) -> list[float]:
    """TRL's GRPOTrainer (`reward_funcs=[accuracy_reward, format_reward]`): the dataset's `solution`,
    `answer_type` and `choices` columns arrive as keyword arguments, one value per completion."""
    types = answer_type if answer_type is not None else [None] * len(completions)
    options = choices if choices is not None else [None] * len(completions)
    return [accuracy(_text(c), ref, kind, opts) for c, ref, kind, opts in zip(completions, solution, types, options)]


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """TRL: 1.0 for a completion that reasons inside <think></think>, then gives its final answer."""
    return [well_formed(_text(c)) for c in completions]

"""A run's samples as RL trainers load them (verl, EasyR1, TRL's GRPO), with the reward beside them.

Each export is one folder: a Parquet file per split (`train.parquet`, and `val.parquet` and
`test.parquet` with `--split`), images inside them as bytes, a dataset card, and `reward.py`: the
judges' answer rule (`agents/matching.py`) and the rollout reward (`agents/reward.py`) as one file
that needs nothing but the standard library, with each trainer's entry point. So a trainer scores
rollouts with the rule that decided which judges agreed. The rows:
- verl: `data_source`, `prompt` (chat messages, `<image>` where the image goes), `images`,
  `ability`, `reward_model` {style: rule, ground_truth}, `extra_info` (what the reward reads besides
  the ground truth, and C/K and the judges' answers);
- EasyR1: `problem` (with `<image>`), `answer` (the ground truth the reward reads: a JSON object of
  reference, answer type and options), `images`;
- TRL: `prompt` (chat messages; TRL puts the image in), `image`, `solution` with `answer_type` and
  `choices` (the columns its reward functions receive).
Every row also carries `consensus` (C), `judges` (K), `pass_rate` (C/K) and the judges' `answers`.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cadsynth.agents import matching, reward
from cadsynth.prompts import render_prompt
from cadsynth.samples import Sample, image_name
from cadsynth.splits import Split
from cadsynth.store.blobs import BlobStore
from cadsynth.text import clean_tree

FORMATS = ("verl", "easyr1", "trl")
REWARD_FILE = "reward.py"
ABILITY = "visual_reasoning"


# --- the reward file -----------------------------------------------------------------------------


def _body(path: Path, drop: tuple[str, ...] = ()) -> tuple[str, set[str]]:
    """A module's code without its docstring, its `from __future__` line and the lines in `drop`;
    and the names it defines. Refuses a module that imports beyond the standard library."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            outside = [n for n in names if n.split(".")[0] not in sys.stdlib_module_names and n != "__future__"]
            if outside and ast.get_source_segment(source, node) not in drop:
                raise RuntimeError(f"{path.name} imports {outside[0]}: the exported reward must need only the standard library")
    lines = source.splitlines()
    start = (tree.body[0].end_lineno or 0) if ast.get_docstring(tree) else 0
    kept, found = [], set()
    for line in lines[start:]:
        if line in drop:
            found.add(line)
        elif line != "from __future__ import annotations":
            kept.append(line)
    if found != set(drop):
        raise RuntimeError(f"{path.name} no longer has {sorted(set(drop) - found)}; update cadsynth.rl_exports")
    defined = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
               for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    defined |= {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    return "\n".join(kept).strip("\n"), defined


def reward_source() -> str:
    """`reward.py` as an export writes it: matching.py, then reward.py, as one module."""
    rule, rule_names = _body(Path(matching.__file__))
    score, score_names = _body(Path(reward.__file__), drop=("from cadsynth.agents.matching import answers_match",))
    if rule_names & score_names:  # one namespace now: a name defined twice would change the rule
        raise RuntimeError(f"agents/reward.py redefines {sorted(rule_names & score_names)} of agents/matching.py")
    return (
        '"""The reward for rollouts on a cadsynth export: the rule its judges were scored by.\n\n'
        "Written by `cads export` from cadsynth's agents/matching.py and agents/reward.py; do not edit\n"
        "(export again instead). Needs only the standard library. Entry points:\n"
        "- verl: custom_reward_function.path=reward.py custom_reward_function.name=compute_score\n"
        "- EasyR1: worker.reward.reward_function=reward.py:compute_score_batch\n"
        "- TRL: GRPOTrainer(reward_funcs=[accuracy_reward, format_reward], ...)\n"
        '"""\n\nfrom __future__ import annotations\n\n' + rule + "\n\n\n# --- the rollout reward " + "-" * 74 + "\n\n" + score + "\n"
    )


# --- rows ------------------------------------------------------------------------------------------


def rollout_prompt(s: Sample) -> str:
    """What a rollout is asked: the question with its options (as in the SFT formats), and how to answer."""
    from cadsynth.exports import prompt  # here: cadsynth.exports imports this module

    return render_prompt("rollout", question=prompt(s)).strip()


def _difficulty(s: Sample) -> dict[str, Any]:
    """The curriculum signal: C of K judges agreed (`pass_rate`), and what each judge answered."""
    k, c = s.verdict.judges, s.verdict.score
    return {
        "consensus": c, "judges": k, "pass_rate": (c / k) if c is not None and k else None, "outcome": s.outcome,
        "answers": [{"judge": a.judge, "answer": a.answer, "agrees": a.agrees} for a in s.answers],
    }


def _row(fmt: str, s: Sample, image: dict[str, Any] | None, split: str, index: int, run: str) -> dict[str, Any]:
    from cadsynth.exports import IMAGE_TOKEN  # verl and EasyR1 read LLaVA's token too: the image goes there

    p = s.proposal
    text = rollout_prompt(s)
    placed = f"{IMAGE_TOKEN}{text}" if image else text
    kind = {"answer_type": p.answer_type, "choices": list(p.choices or [])}
    if fmt == "verl":
        return {
            "data_source": f"cadsynth/{run}",
            "prompt": [{"role": "user", "content": placed}],
            "images": [image] if image else [],
            "ability": ABILITY,
            "reward_model": {"style": "rule", "ground_truth": p.reference_answer},
            "extra_info": {"split": split, "index": index, "id": s.id, "question": p.question, "answer": p.reference_answer}
            | kind | _difficulty(s),
        }
    if fmt == "easyr1":  # EasyR1 hands the reward only `answer`, so it carries the type and options too
        truth = json.dumps({"answer": p.reference_answer} | kind, ensure_ascii=False)
        return {"problem": placed, "answer": truth, "images": [image] if image else [], "id": s.id} | _difficulty(s)
    return {"prompt": [{"role": "user", "content": text}], "image": image, "solution": p.reference_answer,
            "id": s.id} | kind | _difficulty(s)


def _features(fmt: str) -> Any:
    from datasets import Features, Image, List, Value  # type: ignore[import-untyped]

    text, integer, real, flag = Value("string"), Value("int32"), Value("float32"), Value("bool")
    messages = List({"role": text, "content": text})
    difficulty = {"consensus": integer, "judges": integer, "pass_rate": real, "outcome": text,
                  "answers": List({"judge": text, "answer": text, "agrees": flag})}
    kind = {"answer_type": text, "choices": List(text)}
    if fmt == "verl":
        return Features({
            "data_source": text, "prompt": messages, "images": List(Image()), "ability": text,
            "reward_model": {"style": text, "ground_truth": text},
            "extra_info": {"split": text, "index": integer, "id": text, "question": text, "answer": text} | kind | difficulty,
        })
    if fmt == "easyr1":
        return Features({"problem": text, "answer": text, "images": List(Image()), "id": text} | difficulty)
    return Features({"prompt": messages, "image": Image(), "solution": text, "id": text} | kind | difficulty)


def write(fmt: str, chosen: list[Sample], run: str, split: Split | None, folder: Path, blobs: BlobStore) -> dict[str, int]:
    """Write `fmt`'s Parquet files (one per split that has samples) and reward.py into `folder`; the
    samples written per split."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    names = list(split.shares) if split else ["train"]
    sizes = {}
    cache = folder / ".cache"
    for name in names:
        members = [s for s in chosen if (split.of[s.id] if split else "train") == name]

        def rows(members: list[Sample] = members, name: str = name) -> Iterator[dict[str, Any]]:
            for index, s in enumerate(members):
                image = {"bytes": blobs.get(s.image), "path": image_name(s.image)} if s.image else None
                yield clean_tree(_row(fmt, s, image, name, index, run))

        sizes[name] = len(members)
        if not members:  # a share too small for any group: no file, which `datasets` could not load
            continue
        # Built a batch at a time in `cache`, not in memory; the fingerprint names the split.
        dataset = datasets.Dataset.from_generator(rows, features=_features(fmt), cache_dir=str(cache),
                                                  fingerprint=f"cadsynth-{fmt}-{name}-{len(members)}")
        dataset.to_parquet(str(folder / f"{name}.parquet"))
        del dataset
    shutil.rmtree(cache, ignore_errors=True)
    (folder / REWARD_FILE).write_text(reward_source(), encoding="utf-8")
    return sizes


# --- what the card says of each format -------------------------------------------------------------

_DIFFICULTY = ("Every row also has `consensus` (C), `judges` (K), `pass_rate` (C/K, the panel's pass rate: a "
               "curriculum's difficulty signal), `outcome` and the judges' `answers` (`judge`, `answer`, `agrees`).")
LAYOUT = {
    "verl": "\nThis export lays each sample out as verl's RL data sets do: `data_source`, `prompt` (chat "
            "messages; `<image>` marks the image), `images`, `ability`, `reward_model` (`style: rule` and the "
            "`ground_truth`), and `extra_info` (`answer_type` and `choices`, which the reward reads, and the "
            "provenance). " + _DIFFICULTY + "\n",
    "easyr1": "\nThis export lays each sample out as EasyR1 reads it: `problem` (`<image>` marks the image), "
              "`answer` (what EasyR1 hands the reward: a JSON object of the reference `answer`, `answer_type` and "
              "`choices`) and `images`. " + _DIFFICULTY + "\n",
    "trl": "\nThis export lays each sample out as TRL's GRPOTrainer reads it for a vision-language model: "
           "`prompt` (chat messages; the trainer puts the image in), `image`, and `solution`, `answer_type` and "
           "`choices`, which reach the reward functions as keyword arguments. " + _DIFFICULTY + "\n",
}
_REWARD = ("\n`reward.py` scores a rollout by the rule that decided which judges agreed with the reference "
           "(numbers within 1%, integers exactly, fractions, percents, units, choice letters): 1 when its final "
           "answer (the last `\\boxed{}`, else the last `Answer:` line) matches, 0 otherwise. It needs only the "
           "standard library.\n\n")


def training(fmt: str, names: list[str]) -> str:
    """The card's lines on training with this export: the reward, and the trainer's command."""
    val = next((name for name in ("val", "test") if name in names), "train")
    return _REWARD + {
        "verl": "```bash\npython3 -m verl.trainer.main_ppo algorithm.adv_estimator=grpo \\\n"
                f"    data.train_files=PATH/train.parquet data.val_files=PATH/{val}.parquet data.image_key=images \\\n"
                "    custom_reward_function.path=PATH/reward.py custom_reward_function.name=compute_score \\\n"
                "    actor_rollout_ref.model.path=Qwen/Qwen2.5-VL-7B-Instruct actor_rollout_ref.rollout.n=5 ...\n```\n",
        "easyr1": "```bash\npython3 -m verl.trainer.main config=examples/config.yaml \\\n"
                  f"    data.train_files=PATH/train.parquet data.val_files=PATH/{val}.parquet \\\n"
                  "    data.prompt_key=problem data.answer_key=answer data.image_key=images data.format_prompt=null \\\n"
                  "    worker.reward.reward_function=PATH/reward.py:compute_score_batch ...\n```\n",
        "trl": "```python\nimport importlib.util\nfrom trl import GRPOTrainer\n\n"
               'spec = importlib.util.spec_from_file_location("reward", "PATH/reward.py")\n'
               "reward = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(reward)\n"
               'trainer = GRPOTrainer(model="Qwen/Qwen2.5-VL-3B-Instruct", train_dataset=ds["train"],\n'
               "                      reward_funcs=[reward.accuracy_reward, reward.format_reward])\n```\n",
    }[fmt]

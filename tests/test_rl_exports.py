"""`cads export --format verl|easyr1|trl`: RL data the trainers load, with the judges' rule as their reward.

Each export is copied to another folder before it is read, and read with `datasets` as the trainer
reads it; the fields each test checks are the ones the trainer's documentation and data loader name:
- verl (examples/data_preprocess/geo3k.py, RLHFDataset): data_source, prompt (chat messages whose
  `<image>` marks each image), images, ability, reward_model {style, ground_truth}, extra_info;
- EasyR1 (verl/utils/dataset.py RLHFDataset): problem (`<image>` per image), answer (handed to the
  reward as ground_truth), images;
- TRL (GRPOTrainer, "Vision-Language Model Training" and "Using a custom reward function"): prompt
  (conversational), image, and the columns the reward functions receive as keyword arguments.
The exported reward.py is run with only the standard library (`python -I -S`).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from cadsynth.agents.matching import answers_match
from tests.helpers import cads, stats, store_of

RL_FORMATS = ("verl", "easyr1", "trl")
SPLIT = "train=0.8,val=0.1,test=0.1"
IMAGE = "<image>"


@pytest.fixture(scope="module")
def moved(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each RL format exported with --split (and the JSONL export to compare with), then moved."""
    made = tmp_path_factory.mktemp("rl-made")
    for fmt in RL_FORMATS:
        cads("export", "small", "--format", fmt, "--split", SPLIT, "--out", fmt, *store_of(small_run), cwd=made)
    cads("export", "small", "--out", "jsonl", *store_of(small_run), cwd=made)
    elsewhere = tmp_path_factory.mktemp("rl-moved") / "data"
    shutil.copytree(made, elsewhere)
    shutil.rmtree(made)  # nothing may point back at where it was made
    return elsewhere


@pytest.fixture(scope="module")
def facts(small_run: Path) -> dict:
    return stats("small", small_run)


@pytest.fixture(scope="module")
def samples(moved: Path) -> dict[str, dict]:
    return {s["id"]: s for s in map(json.loads, (moved / "jsonl" / "samples.jsonl").read_text().splitlines())}


def _load(folder: Path, cache: Path):
    """The export as a DatasetDict, by its card's configs (one split per Parquet file)."""
    from datasets import load_dataset

    return load_dataset(str(folder), cache_dir=str(cache))


def _decoded(image) -> tuple[int, int]:
    image.load()  # every pixel, not only the header
    return image.size


def _difficulty(row: dict, sample: dict) -> None:
    """C/K and the judges' answers travel with every row."""
    assert (row["consensus"], row["judges"]) == (sample["consensus"], sample["judges"])
    assert row["pass_rate"] == pytest.approx(sample["consensus"] / sample["judges"])
    assert [(a["judge"], a["answer"], a["agrees"]) for a in row["answers"]] == \
        [(a["judge"], a["answer"], a["agrees"]) for a in sample["answers"]]


def _options_in(text: str, sample: dict) -> None:
    assert sample["question"] in text and "\\boxed{}" in text
    for i, choice in enumerate(sample["choices"] or []):
        assert f"\n{'ABCD'[i]}. {choice}" in text


def test_verl_rows_have_the_fields_verl_reads(moved: Path, samples: dict, facts: dict, tmp_path: Path) -> None:
    data = _load(moved / "verl", tmp_path)
    assert set(data) == {"train", "val", "test"} and sum(map(len, data.values())) == facts["kept"]
    for name, rows in data.items():
        for row in rows:
            info = row["extra_info"]
            sample = samples[info["id"]]
            assert row["data_source"] == "cadsynth/small" and row["ability"]
            [message] = row["prompt"]
            assert message["role"] == "user" and message["content"].count(IMAGE) == len(row["images"]) == 1
            _options_in(message["content"], sample)
            assert _decoded(row["images"][0]) == (640, 480)
            assert row["reward_model"] == {"style": "rule", "ground_truth": sample["answer"]}
            assert (info["split"], info["answer_type"], info["choices"]) == (name, sample["answer_type"], sample["choices"] or [])
            _difficulty(info, sample)


def test_easyr1_rows_have_the_fields_easyr1_reads(moved: Path, samples: dict, tmp_path: Path) -> None:
    from datasets import load_dataset

    # EasyR1's RLHFDataset reads a file path with the builder named by its extension.
    rows = load_dataset("parquet", data_files=str(moved / "easyr1" / "train.parquet"), split="train", cache_dir=str(tmp_path))
    assert len(rows) > 0
    for row in rows:
        sample = samples[row["id"]]
        assert row["problem"].count(IMAGE) == len(row["images"]) == 1  # EasyR1 splits the problem at each <image>
        _options_in(row["problem"], sample)
        assert _decoded(row["images"][0]) == (640, 480)
        truth = json.loads(row["answer"])
        assert truth == {"answer": sample["answer"], "answer_type": sample["answer_type"], "choices": sample["choices"] or []}
        _difficulty(row, sample)


def test_trl_rows_have_the_fields_grpo_reads(moved: Path, samples: dict, tmp_path: Path) -> None:
    rows = _load(moved / "trl", tmp_path)["train"]
    reward = _module(moved / "trl" / "reward.py")
    for row in rows:
        sample = samples[row["id"]]
        [message] = row["prompt"]
        assert message["role"] == "user" and IMAGE not in message["content"]  # TRL places the image itself
        _options_in(message["content"], sample)
        assert _decoded(row["image"]) == (640, 480)
        assert (row["solution"], row["answer_type"]) == (sample["answer"], sample["answer_type"])
        _difficulty(row, sample)
    # As GRPOTrainer calls them: conversational completions, and every column but the prompt as keyword arguments.
    columns = {k: rows[k] for k in rows.column_names if k != "prompt"}
    right = [[{"role": "assistant", "content": f"<think>I read it.</think> \\boxed{{{s}}}"}] for s in rows["solution"]]
    wrong = [[{"role": "assistant", "content": "<think>I read it.</think> \\boxed{no such thing}"}] for _ in rows["solution"]]
    assert reward.accuracy_reward(completions=right, prompts=rows["prompt"], **columns) == [1.0] * len(rows)
    assert reward.accuracy_reward(completions=wrong, prompts=rows["prompt"], **columns) == [0.0] * len(rows)
    assert reward.format_reward(completions=right) == [1.0] * len(rows)
    assert reward.format_reward(completions=[[{"role": "assistant", "content": "\\boxed{1}"}]]) == [0.0]


def test_include_adversarial_is_the_hard_but_solvable_subset(small_run: Path, facts: dict, tmp_path: Path) -> None:
    cads("export", "small", "--format", "verl", "--include", "adversarial", "--out", "hard", *store_of(small_run), cwd=tmp_path)
    rows = _load(tmp_path / "hard", tmp_path / "cache")["train"]
    assert len(rows) == facts["adversarial"] > 0
    for info in rows["extra_info"]:
        assert info["outcome"] == "adversarial" and 0 < info["pass_rate"] < 1


# --- the reward ------------------------------------------------------------------------------------

CHOICES = ["12", "16", "22", "38"]
# (final answer, reference, answer type, options, agrees): every answer type, and near misses that score 0.
CASES: list[tuple[str, str, str | None, list[str] | None, bool]] = [
    ("12", "12", "number", None, True), ("12.0", "12", "number", None, True),
    ("12.1", "12", "number", None, True), ("12.2", "12", "number", None, False),
    ("3.14", "3.1416", "number", None, True), ("3.0", "3.1416", "number", None, False),
    ("1,234", "1234", "number", None, True), ("1,234", "1334", "number", None, False),
    ("-5", "5", "number", None, False), ("\u22125", "-5", "number", None, True),
    ("0.0000001", "0", "number", None, True), ("0.001", "0", "number", None, False),
    ("2.5e3", "2500", "number", None, True), ("2.5 \\times 10^{3}", "2500", "number", None, True),
    ("2.5 \\times 10^{4}", "2500", "number", None, False), ("seven", "7", "number", None, True),
    ("eight", "7", "number", None, False), ("about 41", "41.2", "number", None, True),
    ("x = 41", "41", "number", None, True), ("x = 44", "41", "number", None, False),
    ("7", "7", "integer", None, True), ("7.0", "7", "integer", None, True),
    ("7.04", "7", "integer", None, False), ("8", "7", "integer", None, False),
    ("100", "101", "integer", None, False), ("101", "100", "number", None, True),
    ("1/2", "0.5", "number", None, True), ("\\frac{1}{2}", "0.5", "number", None, True),
    ("\\dfrac{3}{4}", "3/4", "number", None, True), ("2/3", "0.67", "number", None, True),
    ("2/3", "0.6", "number", None, False), ("1 1/2", "1.5", "number", None, True),
    ("1/3", "1/4", "number", None, False), ("\\frac{1}{3}", "\\frac{1}{4}", "number", None, False),
    ("50%", "50", "number", None, True), ("50\\%", "50", "number", None, True),
    ("50 percent", "50%", "number", None, True), ("0.5", "50%", "number", None, False),
    ("51%", "50%", "number", None, False), ("49.9%", "50%", "number", None, True),
    ("1 m", "100 cm", "number", None, True), ("100 cm", "1 m", "number", None, True),
    ("5 cm", "5 mm", "number", None, False), ("30°", "30", "number", None, True),
    ("30^\\circ", "30°", "number", None, True), ("30°", "30 rad", "number", None, False),
    ("$5", "5 dollars", "number", None, True), ("5 apples", "5", "number", None, True),
    ("5 cm", "5 apples", "number", None, False), ("12 cm²", "12 cm^2", "number", None, True),
    ("1200 mm^2", "12 cm^2", "number", None, True), ("12 cm^2", "12 cm", "number", None, False),
    ("3 or 4", "3", "number", None, False),
    ("A", "A", "choice", CHOICES, True), ("(a)", "A", "choice", CHOICES, True),
    ("Option A", "A", "choice", CHOICES, True), ("A. 12", "A", "choice", CHOICES, True),
    ("12", "A", "choice", CHOICES, True), ("16", "B", "choice", CHOICES, True),
    ("B", "A", "choice", CHOICES, False), ("16", "A", "choice", CHOICES, False),
    ("E", "A", "choice", CHOICES, False), ("(c)", "D", "choice", CHOICES, False),
    ("red", "Red", "text", None, True), ("circle", "circles", "text", None, True),
    ("square", "circle", "text", None, False), ("blue", "red", "text", None, False),
    ("Paris, France", "Paris", "text", None, False), ("yes", "Yes.", "text", None, True),
    ("no", "yes", "text", None, False), ("the bar for 2021", "bar for 2021", "text", None, True),
    ("bar for 2021", "bar for 2022", "text", None, False), ("twelve", "12", None, None, True),
]
# How rollouts end: the last \boxed{} wins, else the last Answer: line.
WRAPPERS = (
    "<think>Reading the figure bar by bar.</think>\nThe final answer is \\boxed{%s}.",
    "First the axis, then the values.\nSo the total follows.\nAnswer: %s",
    "<think>Is it \\boxed{0}? No: the legend says otherwise.</think> It is \\boxed{%s}",
    "Working it out step by step.\n\n**Final answer:** %s",
)
NO_ANSWER = "<think>Looking at it</think> I believe it is %s, but I am not sure."  # no final answer: 0


def _corpus() -> list[dict]:
    pairs = [
        {"rollout": wrapper % answer, "answer": answer, "reference": reference, "answer_type": kind, "choices": choices,
         "agrees": agrees}
        for answer, reference, kind, choices, agrees in CASES for wrapper in WRAPPERS
    ]
    pairs += [{"rollout": NO_ANSWER % answer, "answer": None, "reference": reference, "answer_type": kind,
               "choices": choices, "agrees": False} for answer, reference, kind, choices, agrees in CASES if agrees]
    return pairs


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_reward_{abs(hash(path))}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Every entry point of the exported file, fed as each trainer feeds it; run with `python -I -S`.
_RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("reward", sys.argv[1])
reward = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reward)
corpus = json.load(sys.stdin)
verl = [reward.compute_score("cadsynth/small", p["rollout"], p["reference"],
                             {"answer_type": p["answer_type"], "choices": p["choices"] or []}) for p in corpus]
easyr1 = [s["accuracy"] for s in reward.compute_score_batch([
    {"response": p["rollout"], "response_length": len(p["rollout"]),
     "ground_truth": json.dumps({"answer": p["reference"], "answer_type": p["answer_type"], "choices": p["choices"] or []})}
    for p in corpus])]
trl = reward.accuracy_reward(completions=[[{"role": "assistant", "content": p["rollout"]}] for p in corpus],
                             solution=[p["reference"] for p in corpus], answer_type=[p["answer_type"] for p in corpus],
                             choices=[p["choices"] or [] for p in corpus])
outside = sorted(m for m in sys.modules if m.split(".")[0] in ("cadsynth", "pydantic", "datasets", "numpy"))
print(json.dumps({"verl": verl, "easyr1": easyr1, "trl": trl, "outside": outside, "path": sys.path}))
"""


def test_exported_reward_agrees_with_the_project_matcher(moved: Path, tmp_path: Path) -> None:
    corpus = _corpus()
    assert len(corpus) >= 200
    kinds = {p["answer_type"] for p in corpus}
    assert kinds == {"number", "integer", "choice", "text", None}
    assert sum(not p["agrees"] for p in corpus) >= 80  # near misses and missing answers, which must score 0
    # The labels are the project's rule: the judges' matcher says the same of each final answer.
    for p in corpus:
        assert answers_match(p["answer"], p["reference"], p["answer_type"], p["choices"]) is p["agrees"], p
    # The file every RL export writes is the same file, and it is made from the project's code.
    from cadsynth.rl_exports import reward_source

    files = {fmt: (moved / fmt / "reward.py").read_text() for fmt in RL_FORMATS}
    assert set(files.values()) == {reward_source()}
    runner = tmp_path / "runner.py"
    runner.write_text(_RUNNER)
    done = subprocess.run([sys.executable, "-I", "-S", str(runner), str(moved / "verl" / "reward.py")], cwd=tmp_path,
                          input=json.dumps(corpus), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    scored = json.loads(done.stdout)
    assert scored["outside"] == [] and not any("site-packages" in entry for entry in scored["path"])
    expected = [float(p["agrees"]) for p in corpus]
    for trainer in ("verl", "easyr1", "trl"):
        misses = [(p["rollout"], p["reference"], s) for p, s in zip(corpus, scored[trainer]) if s != float(p["agrees"])]
        assert scored[trainer] == expected, (trainer, misses[:5])


def test_easyr1_reward_weighs_the_format_as_easyr1_does(moved: Path) -> None:
    reward = _module(moved / "easyr1" / "reward.py")
    truth = json.dumps({"answer": "B", "answer_type": "choice", "choices": CHOICES})
    scores = reward.compute_score_batch([
        {"response": "<think>The second bar.</think> \\boxed{B}", "response_length": 9, "ground_truth": truth},
        {"response": "The second bar. \\boxed{16}", "response_length": 7, "ground_truth": truth},
        {"response": "<think>The first bar.</think> \\boxed{A}", "response_length": 9, "ground_truth": truth},
    ])
    assert scores == [
        {"overall": 1.0, "format": 1.0, "accuracy": 1.0},
        {"overall": pytest.approx(0.9), "format": 0.0, "accuracy": 1.0},
        {"overall": pytest.approx(0.1), "format": 1.0, "accuracy": 0.0},
    ]
    assert reward.REWARD_TYPE == "batch"


# --- splits ----------------------------------------------------------------------------------------


def _split_rows(folder: Path, cache: Path) -> dict[str, list[dict]]:
    """verl's rows per split, images as their PNG bytes."""
    from datasets import Image, List

    data = _load(folder, cache)
    return {name: list(rows.cast_column("images", List(Image(decode=False)))) for name, rows in data.items()}


def test_splits_keep_near_twins_together_and_follow_the_seed(small_run: Path, moved: Path, samples: dict,
                                                             facts: dict, tmp_path: Path) -> None:
    from cadsynth.config import NearDuplicatesConfig
    from cadsynth.graphs.dedup import image_hash, images_near, jaccard, question_shingles, questions_near

    assert facts["gates"]["near_duplicates"]["on"] is False  # no twin was removed while the run ran
    rule = NearDuplicatesConfig()  # the run's thresholds: its config leaves them at their defaults
    rows = _split_rows(moved / "verl", tmp_path / "a")
    where = {r["extra_info"]["id"]: name for name, split in rows.items() for r in split}
    assert len(where) == facts["kept"] and all(rows.values())
    problems = [(r["extra_info"]["id"], image_hash(r["images"][0]["bytes"]), question_shingles(r["extra_info"]["question"]))
                for split in rows.values() for r in split]
    twins = [(a, b) for i, (a, pa, qa) in enumerate(problems) for b, pb, qb in problems[i + 1:]
             if images_near((int(pa, 16) ^ int(pb, 16)).bit_count(), rule) and questions_near(jaccard(qa, qb), rule)]
    assert twins  # the run has near twins (the gate was off), so the check below can fail
    assert all(where[a] == where[b] for a, b in twins)
    for key in ("image", "seed"):  # one image, one seed family: one split
        families: dict[str, set[str]] = {}
        for i, s in samples.items():
            if s[key]:
                families.setdefault(s[key], set()).add(where[i])
        assert all(len(splits) == 1 for splits in families.values())
    card = (moved / "verl" / "README.md").read_text()
    _, header, _ = card.split("---\n", 2)
    assert [f["split"] for f in yaml.safe_load(header)["configs"][0]["data_files"]] == ["train", "val", "test"]
    sizes = {name: len(split) for name, split in rows.items()}
    for name, n in sizes.items():
        assert f"| {name} | {n} |" in card
    assert f"{len(twins)} pairs of near twins among the samples, 0 of them across two splits" in card
    # The same seed splits the same way (the run's seed, 5, by default); another seed, otherwise.
    for seed, same in (("5", True), ("6", False)):
        cads("export", "small", "--format", "verl", "--split", SPLIT, "--seed", seed, "--out", f"s{seed}",
             *store_of(small_run), cwd=tmp_path)
        again = {r["extra_info"]["id"]: name for name, split in _split_rows(tmp_path / f"s{seed}", tmp_path / seed).items()
                 for r in split}
        assert (again == where) is same


@pytest.mark.parametrize("spec, named", [
    ("train=0.9,val=0.05", "add up to 0.95"),
    ("train=0.9,dev=0.1", "no split 'dev'"),
    ("train=0.9,test=0.1,test=0.0", "test is given twice"),
    ("train=lots,test=0.1", "train=lots"),
    ("train=1.5,test=-0.5", "train=1.5"),
    ("val=0.5,test=0.5", "no train split"),
    ("train 0.9", "'train 0.9' is not NAME=FRACTION"),
])
def test_a_bad_split_is_one_line_and_writes_nothing(small_run: Path, tmp_path: Path, spec: str, named: str) -> None:
    done = cads("export", "small", "--format", "trl", "--split", spec, "--out", "out", *store_of(small_run), cwd=tmp_path,
                check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert named in done.stderr and repr(spec) in done.stderr
    assert list(tmp_path.iterdir()) == []  # no export, and nothing staged beside it


def test_split_is_for_the_rl_formats(small_run: Path, tmp_path: Path) -> None:
    done = cads("export", "small", "--format", "llava", "--split", SPLIT, "--out", "out", *store_of(small_run), cwd=tmp_path,
                check=False)
    assert done.returncode == 2 and "only the RL formats" in done.stderr and list(tmp_path.iterdir()) == []


def test_a_share_too_small_for_any_group_has_no_file(small_run: Path, tmp_path: Path) -> None:
    done = cads("export", "small", "--format", "easyr1", "--split", "train=0.998,val=0.001,test=0.001", "--out", "out",
                *store_of(small_run), cwd=tmp_path)
    assert "val 0, test 0" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "reward.py", "train.parquet"]
    assert "val and test got no samples, and have no file." in (tmp_path / "out" / "README.md").read_text()
    assert list(_load(tmp_path / "out", tmp_path / "cache")) == ["train"]

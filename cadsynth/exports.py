"""A run's samples in the shapes training frameworks load: JSONL, LLaVA, ShareGPT, Parquet, HF, and
for reinforcement learning verl, EasyR1 and TRL (`cadsynth.rl_exports`, with their reward).

Every export is one folder that can be moved to a training machine as it is: JSONL, LLaVA and
ShareGPT reference their images by paths relative to it (`images/<sha256>.png`), Parquet, HF and
the RL formats carry the image bytes in a `datasets` Image column. The folder is built beside its
destination and renamed into place, so a failed export leaves nothing behind and an old one is
replaced whole.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

from cadsynth import rl_exports
from cadsynth.report import stats
from cadsynth.samples import INCLUDE, Sample, image_name, samples
from cadsynth.splits import Split
from cadsynth.store.blobs import BlobStore
from cadsynth.store.ledger import Ledger
from cadsynth.text import clean, clean_tree

FORMATS = ("jsonl", "llava", "sharegpt", "parquet", "hf", *rl_exports.FORMATS)
HUB_FORMATS = ("parquet", "hf")  # the ones a `datasets` user loads from the Hub
CARD_FORMATS = (*HUB_FORMATS, *rl_exports.FORMATS)  # the ones with a dataset card
IMAGE_TOKEN = "<image>"  # what LLaVA and LLaMA-Factory replace with the image's features
SHARD_BYTES = 400 * 2**20  # parquet files the Hub's viewer and loaders handle well


# No generated repr: Python 3.11's asyncio.run reprs its main task, result and all, as it returns,
# which for 20,000 samples took longer than reading them.
@dataclass(frozen=True, repr=False)
class Found:
    """What an export needs from the ledger: the chosen samples and the facts for the card."""

    run: str
    include: str
    chosen: list[Sample]
    judged: list[Sample]  # every judged sample of the run, for the consensus histogram
    config: dict[str, Any]  # the run's config as stored: names of key variables at most, never keys
    stats: dict[str, Any] | None  # only for a dataset card


async def gather(ledger: Ledger, run: str, include: str, *, card: bool) -> Found:
    judged = await samples(ledger, run, INCLUDE["all"])
    record = await ledger.run(run)
    assert record is not None  # `samples` refused an unknown run
    chosen = [s for s in judged if s.outcome in INCLUDE[include]]
    return Found(run, include, chosen, judged, dict(record["config"]), await stats(ledger, run) if card else None)


def write(found: Found, fmt: str, out: Path, blobs: BlobStore, *, overwrite: bool, license_id: str,
          split: Split | None = None) -> int:
    """Write the export folder `out` in format `fmt` (an RL format split by `split`, if given); the
    number of samples written."""
    writers: dict[str, Callable[[Found, Path, BlobStore], None]] = {
        "jsonl": _jsonl, "llava": _llava, "sharegpt": _sharegpt, "parquet": _parquet, "hf": _hf,
    }
    with _staged(out, overwrite) as staging:
        if fmt in rl_exports.FORMATS:
            rl_exports.write(fmt, found.chosen, found.run, split, staging, blobs)
        else:
            writers[fmt](found, staging, blobs)
        if fmt in CARD_FORMATS:
            (staging / "README.md").write_text(clean(card(found, fmt, license_id, split)), encoding="utf-8")
    return len(found.chosen)


def split(found: Found, blobs: BlobStore, shares: dict[str, float], seed: int | None) -> Split:
    """`found`'s samples split by `shares`, near twins by the run's own near-duplicate rule kept
    together (whether or not its gate ran); `seed` defaults to the run's."""
    from cadsynth.config import RunConfig
    from cadsynth.graphs.dedup import image_hash
    from cadsynth.splits import split as split_samples

    config = RunConfig.model_validate(found.config)
    seed = config.seed if seed is None else seed
    return split_samples(found.chosen, lambda ref: image_hash(blobs.get(ref)), shares, seed, config.gates.near_duplicates)


# What an export folder holds at its top (save_to_disk adds data-NNNNN-of-NNNNN.arrow files).
_EXPORT_NAMES = {"samples.jsonl", "llava.json", "sharegpt.json", "dataset_info.json", "images", "data", "README.md",
                 "state.json", rl_exports.REWARD_FILE, "train.parquet", "val.parquet", "test.parquet"}


def not_an_export(out: Path) -> str | None:
    """Why `out` is not an earlier export that --overwrite may replace (other work never is), or None."""
    if out.is_dir():
        for entry in sorted(out.iterdir()):
            if entry.name not in _EXPORT_NAMES and not fnmatch(entry.name, "data-*-of-*.arrow"):
                return f"is a folder that holds {entry.name!r}, which no export writes"
    elif os.path.lexists(out):
        return "is a file, and an export is a folder"
    return None


@contextmanager
def _staged(out: Path, overwrite: bool) -> Iterator[Path]:
    """A folder beside `out` to build in; on success it becomes `out` (an old `out` goes only then)."""
    staging = out.parent / f".{out.name}.{secrets.token_hex(6)}.part"
    staging.mkdir()  # not mkdtemp: its folder is private (0700), and the export is for others too
    try:
        yield staging
        if os.path.lexists(out):
            if not overwrite:
                raise FileExistsError(f"{out} appeared while exporting; nothing was replaced")
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / out.name)  # aside first: `out` is missing only between two renames
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _images(chosen: list[Sample], blobs: BlobStore, folder: Path) -> dict[str, str]:
    """Copy the samples' images into `folder/images`; each image's path relative to `folder`."""
    (folder / "images").mkdir()
    paths: dict[str, str] = {}
    for s in chosen:
        if s.image and s.image not in paths:
            paths[s.image] = f"images/{image_name(s.image)}"
            shutil.copyfile(blobs.path(s.image), folder / paths[s.image])
    return paths


# Model text is cleaned where it enters (cadsynth.text); what an export writes is cleaned once
# more, so that no control character reaches training data, whatever a ledger holds.
def _write_json(path: Path, value: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(clean_tree(value), fh, ensure_ascii=False)


def _jsonl(found: Found, folder: Path, blobs: BlobStore) -> None:
    paths = _images(found.chosen, blobs, folder)
    with (folder / "samples.jsonl").open("w", encoding="utf-8") as fh:
        for s in found.chosen:
            fh.write(json.dumps(clean_tree(s.record(paths.get(s.image or ""))), ensure_ascii=False) + "\n")


def prompt(s: Sample) -> str:
    """The question as a model is asked it: with the options of a multiple-choice question."""
    p = s.proposal
    options = "".join(f"\n{chr(65 + i)}. {c}" for i, c in enumerate(p.choices or []))
    return f"{p.question}{options}"


def response(s: Sample) -> str:
    """The answer turn to train on: the proposer's worked solution, then the reference answer."""
    return f"{s.proposal.solution}\nAnswer: {s.proposal.reference_answer}"


def _llava(found: Found, folder: Path, blobs: BlobStore) -> None:
    paths = _images(found.chosen, blobs, folder)
    records = []
    for s in found.chosen:
        record: dict[str, Any] = {"id": s.id}
        question = prompt(s)
        if s.image:  # LLaVA reads a sample without `image` as text-only
            record["image"] = paths[s.image]
            question = f"{IMAGE_TOKEN}\n{question}"
        record["conversations"] = [{"from": "human", "value": question}, {"from": "gpt", "value": response(s)}]
        records.append(record)
    _write_json(folder / "llava.json", records)


def _sharegpt(found: Found, folder: Path, blobs: BlobStore) -> None:
    paths = _images(found.chosen, blobs, folder)
    records = []
    for s in found.chosen:
        images = [paths[s.image]] if s.image else []
        user = IMAGE_TOKEN * len(images) + prompt(s)
        records.append({
            "id": s.id,
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": response(s)}],
            "images": images,
        })
    _write_json(folder / "sharegpt.json", records)
    # LLaMA-Factory's registry of data sets: with `dataset_dir` set to this folder, `dataset: RUN`
    # loads the file, and image paths resolve against the same folder.
    _write_json(folder / "dataset_info.json", {found.run: {
        "file_name": "sharegpt.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }})


# --- Parquet and HF: a `datasets` data set with an Image column ------------------------------


def _features() -> Any:
    from datasets import Features, Image, List, Value  # type: ignore[import-untyped]

    text, integer, real, flag = Value("string"), Value("int32"), Value("float32"), Value("bool")
    return Features({
        "id": text, "image": Image(), "question": text, "answer_type": text, "choices": List(text), "answer": text,
        "solution": text,
        "rationales": List({"by": text, "role": text, "text": text, "rationalized": flag}),
        "consensus": integer, "judges": integer, "asked": integer, "outcome": text,
        "answers": List({"judge": text, "answer": text, "confidence": real, "agrees": flag, "abstained": flag}),
        "run": text, "lane": integer, "round": integer, "proposer": text, "seed": text, "strategy": text,
        "capabilities": List(text), "difficulty": real,
    })


def _dataset(found: Found, blobs: BlobStore, cache: Path) -> Any:
    """The samples as a `datasets.Dataset`, built a batch at a time in `cache` (not in memory)."""
    import datasets  # type: ignore[import-untyped]

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()

    def rows() -> Iterator[dict[str, Any]]:
        for s in found.chosen:
            image = {"bytes": blobs.get(s.image), "path": image_name(s.image)} if s.image else None
            yield clean_tree(s.record(None)) | {"image": image}

    # The fingerprint names this export; without it `datasets` would hash the generator's closure.
    return datasets.Dataset.from_generator(
        rows, features=_features(), cache_dir=str(cache), fingerprint=f"cadsynth-{len(found.chosen)}"
    )


def _image_bytes(found: Found, blobs: BlobStore) -> int:
    return sum(blobs.path(s.image).stat().st_size for s in found.chosen if s.image)


def _parquet(found: Found, folder: Path, blobs: BlobStore) -> None:
    cache = folder / ".cache"
    dataset = _dataset(found, blobs, cache)
    (folder / "data").mkdir()
    shards = max(1, math.ceil(_image_bytes(found, blobs) / SHARD_BYTES))
    for i in range(shards):  # the Hub's layout: data/<split>-NNNNN-of-NNNNN.parquet
        shard = dataset.shard(num_shards=shards, index=i, contiguous=True)
        shard.to_parquet(str(folder / "data" / f"train-{i:05d}-of-{shards:05d}.parquet"))
    del dataset, shard
    shutil.rmtree(cache)


def _hf(found: Found, folder: Path, blobs: BlobStore) -> None:
    cache = folder.parent / f"{folder.name}.cache"  # beside: save_to_disk wants its folder to itself
    try:
        _dataset(found, blobs, cache).save_to_disk(str(folder))
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# --- the dataset card --------------------------------------------------------------------------


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    return next((name for bound, name in bounds if n < bound), "1M<n<10M")


def histogram(judged: list[Sample]) -> list[tuple[int, int, int]]:
    """(K judges, C agreeing, samples), by K then C: how the jury voted on every judged problem."""
    counts = Counter((s.verdict.judges, s.verdict.score) for s in judged if s.verdict.score is not None)
    return [(k, c, n) for (k, c), n in sorted(counts.items())]


def card(found: Found, fmt: str, license_id: str, split: Split | None = None) -> str:
    """The data set's README.md: YAML metadata the Hub reads, then what the data is and how it was made."""
    import yaml

    header: dict[str, Any] = {
        "license": license_id,
        "pretty_name": f"cadsynth run {found.run}",
        "language": ["en"],
        "task_categories": ["visual-question-answering"],
        "tags": ["synthetic", "cads", "cadsynth", "multimodal-reasoning"],
        "size_categories": [_size_category(len(found.chosen))],
    }
    if fmt == "parquet":
        header["configs"] = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]
    written = [name for name, n in split.sizes().items() if n] if split else ["train"]
    if fmt in rl_exports.FORMATS:
        header["configs"] = [{"config_name": "default", "data_files": [{"split": n, "path": f"{n}.parquet"} for n in written]}]
        header["task_categories"].append("reinforcement-learning")
    panel = found.config.get("panel", [])
    simulated = any(agent.get("provider") == "sim" for agent in panel)
    s = found.stats
    assert s is not None, "gather(card=True) reads the figures a card shows"
    rows = [f"| {a['name']} | {a['provider']} | {a['model']} | {', '.join(a['roles'])} |" for a in panel]
    chosen = Counter((x.verdict.judges, x.verdict.score) for x in found.chosen)
    bars = [f"| {k} | {c} | {n} | {chosen[(k, c)]} |" for k, c, n in histogram(found.judged)]
    load = {
        "parquet": 'load_dataset("parquet", data_dir="PATH/data")  # or load_dataset("PATH"), or from the Hub',
        "hf": 'load_from_disk("PATH")',
    }.get(fmt, 'load_dataset("PATH")  # a split per Parquet file; images decode to PIL')
    template = Template(files("cadsynth").joinpath("templates", "dataset_card.md").read_text(encoding="utf-8"))
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n" + template.substitute(
        run=found.run,
        simulated=(
            "\n> **Simulated.** This data set was made by cadsynth's offline simulator (provider `sim`), not by "
            "language models. Its figures say nothing about any real model.\n"
            if simulated else ""
        ),
        samples=len(found.chosen),
        include={
            "kept": "every kept problem, C >= 1",
            "adversarial": "the adversarial pool only, 1 <= C <= K-1",
            "all": "every judged problem, the discarded ones too",
        }[found.include],
        panel="\n".join(rows),
        lanes=max(1, len(s.get("lanes", []))),
        rounds=len(s["rounds"]),
        proposals=s["proposals"], kept=s["kept"], adversarial=s["adversarial"], discarded=s["discarded"],
        judged_out=s["discarded_by_judges"], dropped=s["dropped"],
        histogram="\n".join(bars),
        license=license_id,
        load=load,
        layout=rl_exports.LAYOUT.get(fmt, ""),
        splits=_splits(split, len(found.chosen), fmt),
        train=rl_exports.training(fmt, written) if fmt in rl_exports.FORMATS else "",
    )


def _splits(split: Split | None, samples: int, fmt: str) -> str:
    if split is None:
        offer = " (`--split` makes train, val and test splits)" if fmt in rl_exports.FORMATS else ""
        return f"One split, `train`: all {samples} samples{offer}."
    sizes = split.sizes()
    shares = ",".join(f"{name}={share:g}" for name, share in split.shares.items())
    rows = "\n".join(f"| {name} | {sizes[name]} |" for name in split.shares)
    empty = [name for name in split.shares if not sizes[name]]
    if empty:  # every group is larger than what its share asked for
        rows += f"\n\n{' and '.join(empty)} got no samples, and {'have' if len(empty) > 1 else 'has'} no file."
    rule = split.rule
    return (
        f"`--split {shares}`, seed {split.seed}. Samples are split in {split.groups} groups (the largest of "
        f"{split.largest}), never one by one: a group holds the samples tied by the near-duplicate rule (perceptual "
        f"hashes of the images at most {rule.image_distance} of 256 bits apart and word-pair Jaccard similarity of the "
        f"questions at least {rule.question_similarity:g}), by one image, or by one seed, each tie carried through "
        f"(a twin of a twin is in the group too).\n\n| split | samples |\n| --- | --- |\n{rows}\n\n"
        f"Leakage check: {split.twins} pairs of near twins among the samples, {split.across} of them across two splits."
    )


# --- the Hub -------------------------------------------------------------------------------------


def hub_token() -> str | None:
    """The Hugging Face token the hub client would use (HF_TOKEN, or a stored login), if any."""
    from huggingface_hub import get_token

    return get_token()


def check_repo(repo: str) -> str | None:
    """Why `repo` is not a Hub repository id, or None."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        return str(exc).splitlines()[0].rstrip(".")
    return None


def push(out: Path, fmt: str, repo: str, token: str) -> str:
    """Upload the export to a private (if new) data set repository on the Hub; its address."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
    if fmt == "hf":  # the Hub reads Parquet, not save_to_disk's Arrow files: `datasets` converts
        from datasets import load_from_disk  # type: ignore[import-untyped]

        load_from_disk(str(out)).push_to_hub(repo, token=token)
        api.upload_file(path_or_fileobj=str(out / "README.md"), path_in_repo="README.md", repo_id=repo, repo_type="dataset")
    else:
        api.upload_folder(folder_path=str(out), repo_id=repo, repo_type="dataset")
    return str(url)

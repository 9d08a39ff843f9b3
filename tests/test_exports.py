"""`cads export` in every format, loaded back with the libraries and rules the training frameworks use.

Exports are made from another folder than the run's (with --db and --data given), which is how a
path that only worked from the run's own folder would show. Every image of every format is decoded.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.helpers import cads, stats, store_of

FORMATS = ("jsonl", "llava", "sharegpt", "parquet", "hf")
IMAGE = "<image>"


@pytest.fixture(scope="module")
def exported(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export of `small` per format, as the folders out/<format>."""
    out = tmp_path_factory.mktemp("exports")
    for fmt in FORMATS:
        cads("export", "small", "--format", fmt, "--out", fmt, *store_of(small_run), cwd=out)
    return out


@pytest.fixture(scope="module")
def facts(small_run: Path) -> dict:
    return stats("small", small_run)


def _decode(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()  # decodes every pixel, not only the header
        return image.size


def _jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def test_jsonl_carries_provenance_rationales_and_images_beside_it(exported: Path, facts: dict) -> None:
    samples = _jsonl(exported / "jsonl")
    assert len(samples) == facts["kept"] > 0
    assert {s["lane"] for s in samples} == {0, 1}
    for s in samples:
        assert not Path(s["image"]).is_absolute() and _decode(exported / "jsonl" / s["image"]) == (640, 480)
        assert s["outcome"] in ("keep", "adversarial") and s["consensus"] >= 1
        # Every judge's answer is there, and C counts those that agreed.
        assert len(s["answers"]) == s["asked"] == s["judges"]
        assert sum(bool(a["agrees"]) for a in s["answers"]) == s["consensus"]
        # Training rationales: the proposer's solution, then each agreeing judge's.
        first, *judged = s["rationales"]
        assert first == {"by": s["proposer"], "role": "proposer", "text": s["solution"], "rationalized": False}
        agreeing = {a["judge"] for a in s["answers"] if a["agrees"]}
        assert {r["by"] for r in judged} == agreeing and all(r["role"] == "judge" and r["text"] for r in judged)
    images = {s["image"] for s in samples}
    assert {f"images/{p.name}" for p in (exported / "jsonl" / "images").iterdir()} == images


def test_a_moved_export_still_finds_its_images(exported: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(exported / "jsonl", moved)
    for s in _jsonl(moved):
        assert (moved / s["image"]).is_file()


def test_llava_is_what_llava_loads(exported: Path, facts: dict) -> None:
    folder = exported / "llava"
    records = json.loads((folder / "llava.json").read_text())
    by_id = {s["id"]: s for s in _jsonl(exported / "jsonl")}
    assert len(records) == facts["kept"] and {r["id"] for r in records} == set(by_id)
    for r in records:
        turns = r["conversations"]
        # LLaVA's preprocessing: turns alternate human, gpt from the first; the image token once, in the first.
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2) and turns
        assert turns[0]["value"].startswith(IMAGE + "\n")
        assert sum(t["value"].count(IMAGE) for t in turns) == 1
        assert _decode(folder / r["image"]) == (640, 480)  # relative to --image_folder, this folder
        sample = by_id[r["id"]]
        assert sample["question"] in turns[0]["value"]
        assert turns[1]["value"] == f"{sample['solution']}\nAnswer: {sample['answer']}"
        for i, choice in enumerate(sample["choices"] or []):
            assert f"\n{'ABCD'[i]}. {choice}" in turns[0]["value"]


def test_sharegpt_is_what_llama_factory_loads(exported: Path, facts: dict, tmp_path: Path) -> None:
    from datasets import load_dataset

    folder = exported / "sharegpt"
    entry = json.loads((folder / "dataset_info.json").read_text())["small"]
    assert entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"] == {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    # LLaMA-Factory reads the file with datasets' JSON builder, then checks each conversation.
    rows = load_dataset("json", data_files=str(folder / entry["file_name"]), split="train", cache_dir=str(tmp_path))
    assert len(rows) == facts["kept"]
    for row in rows:
        roles = [m[entry["tags"]["role_tag"]] for m in row["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
        tokens = sum(m["content"].count(IMAGE) for m in row["messages"])
        assert tokens == len(row["images"]) == 1
        for image in row["images"]:
            assert _decode(folder / image) == (640, 480)  # relative to dataset_dir, this folder


def _card(folder: Path) -> tuple[dict, str]:
    _, header, body = (folder / "README.md").read_text().split("---\n", 2)
    return yaml.safe_load(header), body


def _check_card(folder: Path, facts: dict) -> dict:
    header, body = _card(folder)
    assert header["license"] == "other" and header["task_categories"] == ["visual-question-answering"]
    assert "Simulated." in body and "| sim-vega | sim | sim-strong |" in body
    # The consensus histogram covers every judged problem; its last column, this data set.
    rows = [line.split("|")[1:-1] for line in body.splitlines() if line.count("|") == 5 and line.split("|")[1].strip().isdigit()]
    assert sum(int(r[2]) for r in rows) == facts["kept"] + facts["discarded"] - facts["dropped"]
    assert sum(int(r[3]) for r in rows) == facts["kept"]
    return header


def _check_rows(dataset, facts: dict) -> None:
    from datasets import Image as ImageFeature

    assert len(dataset) == facts["kept"]
    assert isinstance(dataset.features["image"], ImageFeature)
    for row in dataset:
        assert row["image"].size == (640, 480)
        row["image"].load()
        assert row["rationales"][0]["role"] == "proposer" and row["rationales"][0]["rationalized"] is False
        assert len(row["answers"]) == row["asked"]


def test_parquet_loads_with_pyarrow_and_datasets(exported: Path, facts: dict, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from datasets import load_dataset

    folder = exported / "parquet"
    header = _check_card(folder, facts)
    assert header["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    files = sorted((folder / "data").glob("train-*.parquet"))
    table = pq.read_table(files[0])
    assert sum(pq.read_metadata(f).num_rows for f in files) == facts["kept"]
    assert b"huggingface" in table.schema.metadata  # the features, so `datasets` decodes the Image column
    _check_rows(load_dataset("parquet", data_files=[str(f) for f in files], split="train", cache_dir=str(tmp_path)), facts)
    # The folder is a Hub data set repository as it is: its card says where the data is.
    assert len(load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "by-card"))) == facts["kept"]


def test_hf_loads_from_disk(exported: Path, facts: dict) -> None:
    from datasets import load_from_disk

    _check_card(exported / "hf", facts)
    _check_rows(load_from_disk(str(exported / "hf")), facts)


def test_include_chooses_outcomes(small_run: Path, facts: dict, tmp_path: Path) -> None:
    for include, outcomes, expected in (
        ("adversarial", {"adversarial"}, facts["adversarial"]),
        ("all", {"keep", "adversarial", "discard"}, facts["kept"] + facts["discarded"] - facts["dropped"]),
    ):
        cads("export", "small", "--include", include, "--out", include, *store_of(small_run), cwd=tmp_path)
        samples = _jsonl(tmp_path / include)
        assert len(samples) == expected and {s["outcome"] for s in samples} <= outcomes
    assert any(s["outcome"] == "discard" for s in _jsonl(tmp_path / "all"))


def test_an_export_is_replaced_only_when_asked(small_run: Path, facts: dict, tmp_path: Path) -> None:
    cads("export", "small", "--format", "llava", "--out", "data", *store_of(small_run), cwd=tmp_path)
    before = (tmp_path / "data" / "llava.json").read_text()
    refused = cads("export", "small", "--out", "data", *store_of(small_run), cwd=tmp_path, check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "'data'" in refused.stderr
    assert "--overwrite" in refused.stderr and (tmp_path / "data" / "llava.json").read_text() == before
    cads("export", "small", "--include", "adversarial", "--out", "data", "--overwrite", *store_of(small_run), cwd=tmp_path)
    samples = _jsonl(tmp_path / "data")
    assert len(samples) == facts["adversarial"] and not (tmp_path / "data" / "llava.json").exists()
    # Replaced whole: only this export's images, and nothing left beside it.
    assert len(list((tmp_path / "data" / "images").iterdir())) == len({s["image"] for s in samples})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_rationalized_rationale_is_marked_and_is_no_answer(small_run: Path, tmp_path: Path) -> None:
    from cadsynth.domain import Judgment
    from cadsynth.store.ledger import Ledger

    work = tmp_path / "run"
    shutil.copytree(small_run, work)
    before = {s["id"]: s for s in _jsonl(_export_to(work, "before"))}
    sample = next(s for s in before.values() if s["outcome"] == "adversarial")
    wrong = next(a["judge"] for a in sample["answers"] if not a["agrees"])
    # As STaR's rationalization will store it: the judge, shown the reference, reaches it.
    lane = f"small.lane{sample['lane']}"
    judgment = Judgment(
        id=f"{sample['id']}/judge/{wrong}/rationalized", run=lane, round=sample["round"], judge=wrong, proposal=sample["id"],
        answer=sample["answer"], rationale="Given the answer, the bars read so: ...", agrees=True, rationalized=True,
    )

    async def put() -> None:
        ledger = Ledger.open(f"sqlite:///{work / 'cads.db'}")
        try:
            await ledger.put_judgments([judgment])
        finally:
            await ledger.close()

    asyncio.run(put())
    after = {s["id"]: s for s in _jsonl(_export_to(work, "after"))}
    changed = after[sample["id"]]
    assert changed["rationales"][:-1] == sample["rationales"]
    assert changed["rationales"][-1] == {"by": wrong, "role": "judge", "text": judgment.rationale, "rationalized": True}
    # It adds a training rationale, never an answer: the jury is as it was.
    assert {k: v for k, v in changed.items() if k != "rationales"} == {k: v for k, v in sample.items() if k != "rationales"}
    assert all(after[i] == s for i, s in before.items() if i != sample["id"])


def _export_to(work: Path, name: str) -> Path:
    cads("export", "small", "--out", name, cwd=work)
    return work / name

"""The run report: one self-contained HTML page to browse what a run made before training on it.

Python gathers the figures (the same `stats` as `cads stats`), draws the plots, diffs the context
round by round and makes the gallery's thumbnails; the page (templates/report.html) renders them
from one JSON blob. Everything is inline (data URIs, inline CSS and JS), so the file opens from
anywhere with no network. The gallery is paged in the browser, so 20,000 samples stay usable: only
one page of cards is in the document at a time.
"""

from __future__ import annotations

import base64
import difflib
import io
import json
import os
import re
import tempfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from cadsynth import plots
from cadsynth.domain import Context
from cadsynth.report import image_kind, stats
from cadsynth.samples import OUTCOMES, Sample, lanes, samples
from cadsynth.store.blobs import BlobStore
from cadsynth.store.ledger import Ledger

THUMB_SIZE = (160, 120)  # the images are 640x480: a quarter each way
THUMB_QUALITY = 50  # lossy WebP at 50 keeps a chart legible at this size in about 2 KB
PAGE_SIZE = 24  # cards a gallery page shows


@dataclass(frozen=True, repr=False)  # see exports.Found: asyncio.run would repr it all
class Gathered:
    record: dict[str, Any]
    stats: dict[str, Any]
    samples: list[Sample]
    contexts: list[list[tuple[int, Context]]]  # per lane
    calls: dict[int, int]  # model calls per round, over all lanes


async def gather(ledger: Ledger, run: str) -> Gathered:
    members = await lanes(ledger, run)
    record = await ledger.run(run)
    assert record is not None  # `lanes` refused an unknown run
    calls: Counter[int] = Counter()
    for member in members:
        for round_, row in (await ledger.call_breakdown(member))["by_round"].items():
            calls[round_] += row["calls"]
    return Gathered(
        record=dict(record),
        stats=await stats(ledger, run),
        samples=await samples(ledger, run, OUTCOMES),
        contexts=[await ledger.contexts(member) for member in members],
        calls=dict(calls),
    )


# --- the context, round by round -----------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


def guidance_diff(before: str, after: str) -> list[tuple[str, str]]:
    """Word-level diff: ("=", kept text), ("-", removed text), ("+", added text)."""
    a, b = _words(before), _words(after)
    ops: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            ops.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            ops.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            ops.append(("+", "".join(b[j1:j2])))
    return ops


def _weight_changes(kind: str, before: dict[str, float], after: dict[str, float]) -> list[tuple[str, str, float, float]]:
    names = sorted(set(before) | set(after), key=lambda n: (-abs(after.get(n, 1.0) - before.get(n, 1.0)), n))
    return [
        (kind, name, round(before.get(name, 1.0), 3), round(after.get(name, 1.0), 3))
        for name in names
        if abs(after.get(name, 1.0) - before.get(name, 1.0)) >= 5e-4
    ]


def context_changes(contexts: list[tuple[int, Context]]) -> list[dict[str, Any]]:
    """The context each round opened with, as what changed since the round before (the first in full)."""
    newest: dict[int, Context] = {}
    for round_, context in contexts:  # ordered by round, then version: the last one steered the round
        newest[round_] = context
    out: list[dict[str, Any]] = []
    previous: Context | None = None
    for round_, context in sorted(newest.items()):
        before = previous or Context(guidance="", capability_weights={}, strategy_weights={})
        out.append({
            "round": round_,
            "version": context.version,
            "difficulty": [None if previous is None else previous.difficulty_target, context.difficulty_target],
            "weights": _weight_changes("capability", before.capability_weights, context.capability_weights)
            + _weight_changes("strategy", before.strategy_weights, context.strategy_weights),
            "guidance": guidance_diff(before.guidance, context.guidance),
            "reflection": context.reflection,
            "exemplars": [e.question for e in context.exemplars],
        })
        previous = context
    return out


# --- the gallery ---------------------------------------------------------------------------------


def _thumbnail(path: str) -> str:
    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail(THUMB_SIZE)
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="WEBP", quality=THUMB_QUALITY, method=4)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()


def thumbnails(refs: list[str], blobs: BlobStore) -> list[str]:
    """One small WebP data URI per image, made on every core: at 20,000 images this is the report's main cost."""
    paths = [str(blobs.path(ref)) for ref in refs]
    workers = min(os.cpu_count() or 1, 8)
    if workers == 1 or len(paths) < 200:
        return [_thumbnail(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_thumbnail, paths, chunksize=64))


def _gallery(chosen: list[Sample], judges: list[str], blobs: BlobStore) -> dict[str, Any]:
    refs = sorted({s.image for s in chosen if s.image})
    index = {ref: i for i, ref in enumerate(refs)}
    judge_index = {name: i for i, name in enumerate(judges)}
    rows = []
    for s in chosen:
        p = s.proposal
        answers = [[judge_index.setdefault(a.judge, len(judge_index)), a.answer, a.agrees] for a in s.answers]
        rows.append([p.id, s.lane, p.round, s.outcome, s.verdict.score, s.verdict.judges, p.question, p.choices or [],
                     p.reference_answer, answers, index[s.image] if s.image else -1, image_kind(p)])
    return {
        # Rows are arrays, not objects: at 20,000 samples the repeated keys would cost megabytes.
        "columns": ["id", "lane", "round", "outcome", "C", "K", "question", "choices", "reference", "answers", "thumb", "kind"],
        "judges": sorted(judge_index, key=judge_index.__getitem__),
        "rows": rows,
        "thumbs": thumbnails(refs, blobs),
    }


# --- the page ------------------------------------------------------------------------------------


def report_data(g: Gathered, blobs: BlobStore) -> dict[str, Any]:
    s, config = g.stats, g.record["config"]
    panel = [{k: a[k] for k in ("name", "provider", "model", "roles")} for a in config.get("panel", [])]
    simulated = any(a["provider"] == "sim" for a in panel)
    by_round: dict[int, dict[int, int]] = defaultdict(dict)
    for sample in g.samples:
        if sample.verdict.score is not None:
            counts = by_round[sample.proposal.round]
            counts[sample.verdict.score] = counts.get(sample.verdict.score, 0) + 1
    targets: dict[int, list[float]] = defaultdict(list)
    for lane in g.contexts:
        for change in context_changes(lane):
            targets[change["round"]].append(change["difficulty"][1])
    judges = [a["name"] for a in panel if "judge" in a["roles"]]
    return {
        "run": g.record["id"],
        "status": s["status"],
        "reason": s.get("reason"),
        "simulated": simulated,
        "panel": panel,
        "summary": {
            "lanes": max(1, len(s.get("lanes", []))),
            "rounds": len(s["rounds"]),
            **{k: s[k] for k in ("proposals", "kept", "adversarial", "discarded", "dropped", "discarded_by_judges", "model_calls")},
            "cost_usd": s["cost"]["usd"],
            "input_tokens": s["cost"]["input_tokens"],
            "output_tokens": s["cost"]["output_tokens"],
            "kept_correct_rate": (s.get("truth") or {}).get("kept_correct_rate"),
            "proposal_correct_rate": (s.get("truth") or {}).get("proposal_correct_rate"),
        },
        "plots": [
            {"title": "Outcomes per round", "src": plots.outcomes(s["rounds"])},
            {"title": "Consensus score per round", "src": plots.consensus(dict(by_round))},
            {"title": "Mean difficulty per round", "src": plots.difficulty(
                s["rounds"], {r: sum(v) / len(v) for r, v in targets.items()})},
            {"title": "Cost per round", "src": plots.cost(s["rounds"], g.calls)},
        ],
        "contexts": [context_changes(lane) for lane in g.contexts],
        "outcomes": list(OUTCOMES),
        "colours": plots.COLOURS,
        "page_size": PAGE_SIZE,
        "gallery": _gallery(g.samples, judges, blobs),
    }


def render(data: dict[str, Any]) -> str:
    template = files("cadsynth").joinpath("templates", "report.html").read_text(encoding="utf-8")
    # `</` inside the JSON would end the script element early; `<\/` reads the same to JSON.parse.
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    title = f"cadsynth run {data['run']}".replace("&", "&amp;").replace("<", "&lt;")
    return template.replace("{{title}}", title).replace("{{data}}", blob)


GENERATOR = '<meta name="generator" content="cadsynth report">'  # in the template's head


def is_report(path: Path) -> bool:
    """Whether `path` is a page this command wrote: --overwrite replaces nothing else."""
    with path.open("rb") as fh:
        return GENERATOR.encode() in fh.read(2048)


def write(g: Gathered, blobs: BlobStore, out: Path) -> int:
    """Write the report to `out` (through a temporary file beside it); its size in bytes."""
    page = render(report_data(g, blobs)).encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(page)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; a report is for others to open
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(page)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

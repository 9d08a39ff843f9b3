"""Bad input, across every command and option: one line that names the bad value, exit 2, nothing written.

Each case runs `cads` in a copy of a folder that holds one finished run (`r1`, in `cads.db` and
`cads-data/`), then checks the one line on stderr, the exit status, that no traceback was printed,
and that the folder (files and every database row) is exactly as it was.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import cads

SIM = "{name: a, provider: sim, model: m, roles: [proposer, critic, judge, adversary]}"
GOOD_PANEL = f"panel:\n  - {SIM}\n"


def _write(name: str, text: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)

    return setup


def _seed_image(content: bytes | None) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        (work / "seeds.jsonl").write_text('{"id": "s1", "image": "img/s1.png", "question": "How many?", "answer": "3"}\n')
        (work / "panel.yaml").write_text(f"seeds: seeds.jsonl\n{GOOD_PANEL}")
        if content is not None:
            (work / "img").mkdir()
            (work / "img" / "s1.png").write_bytes(content)

    return setup


def _folder(name: str) -> Callable[[Path], None]:
    return lambda work: (work / name).mkdir()


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    names: str  # what the message must name (the bad value)
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2


PG_DOWN = "postgresql+psycopg://postgres@127.0.0.1:1/test"

CASES = [
    # configs
    Case("config-missing", ("run", "absent.yaml"), "absent.yaml"),
    Case("config-not-yaml", ("run", "bad.yaml"), "bad.yaml", _write("bad.yaml", "panel: [")),
    Case("config-empty", ("run", "empty.yaml"), "NoneType", _write("empty.yaml", "")),
    Case("config-a-list", ("run", "list.yaml"), "list", _write("list.yaml", "- a\n- b\n")),
    Case("config-a-folder", ("run", "cfg"), "cfg", _folder("cfg")),
    Case("config-unknown-key", ("run", "c.yaml"), "roundz", _write("c.yaml", f"roundz: 3\n{GOOD_PANEL}")),
    Case("config-negative-rounds", ("run", "c.yaml"), "-1", _write("c.yaml", f"rounds: -1\n{GOOD_PANEL}")),
    Case("config-unknown-provider", ("run", "c.yaml"), "'nope'",
         _write("c.yaml", "panel:\n  - {name: a, provider: nope, model: m, roles: [judge]}\n")),
    Case("config-no-judge", ("run", "c.yaml"), "'judge'",
         _write("c.yaml", "panel:\n  - {name: a, provider: sim, model: m, roles: [proposer, adversary]}\n")),
    Case("config-duplicate-agent", ("run", "c.yaml"), "'a'", _write("c.yaml", f"panel:\n  - {SIM}\n  - {SIM}\n")),
    Case("config-bad-agent-name", ("run", "c.yaml"), "'a b'",
         _write("c.yaml", "panel:\n  - {name: a b, provider: sim, model: m, roles: [proposer, judge, adversary]}\n")),
    Case("config-bad-base-url", ("run", "c.yaml"), "localhost:8000",
         _write("c.yaml", "adversary: false\npanel:\n  - {name: q, provider: openai, model: m, base_url: 'localhost:8000', roles: [proposer, judge]}\n")),
    Case("config-bad-key-variable", ("run", "c.yaml"), "1KEY",
         _write("c.yaml", "adversary: false\npanel:\n  - {name: g, provider: openai, model: m, api_key_env: 1KEY, roles: [proposer, judge]}\n")),
    Case("config-bad-budget-field", ("run", "c.yaml"), "'soon'",
         _write("c.yaml", f"retry: {{attempts: soon}}\n{GOOD_PANEL}")),
    # seed files and their images
    Case("seeds-missing", ("run", "c.yaml"), "missing.jsonl", _write("c.yaml", f"seeds: missing.jsonl\n{GOOD_PANEL}")),
    Case("seeds-bad-json", ("run", "panel.yaml"), "line 2",
         lambda w: (_write("seeds.jsonl", '{"id": "t", "task": "count"}\n{oops\n')(w), _write("panel.yaml", f"seeds: seeds.jsonl\n{GOOD_PANEL}")(w))),
    Case("seed-image-missing", ("run", "panel.yaml"), "s1.png", _seed_image(None)),
    Case("seed-image-not-an-image", ("run", "panel.yaml"), "s1.png", _seed_image(b"not a png")),
    # API keys in the environment
    Case("key-not-set", ("run", "c.yaml"), "CADS_NOPE_KEY",
         _write("c.yaml", "adversary: false\npanel:\n  - {name: g, provider: openai, model: gpt-4o, api_key_env: CADS_NOPE_KEY, roles: [proposer, judge]}\n")),
    Case("key-empty", ("run", "c.yaml"), "CADS_EMPTY_KEY",
         _write("c.yaml", "adversary: false\npanel:\n  - {name: g, provider: google, model: gemini-2.5-flash, api_key_env: CADS_EMPTY_KEY, roles: [proposer, judge]}\n"),
         env={"CADS_EMPTY_KEY": ""}),
    # database URLs
    Case("db-mysql", ("run", "--db", "mysql://root@127.0.0.1/test"), "mysql"),
    Case("db-unknown-backend", ("run", "--db", "oracle://x/y"), "oracle"),
    Case("db-not-a-url", ("run", "--db", "just words"), "just words"),
    Case("db-folder-missing", ("run", "--db", "sqlite:///no/such/folder/cads.db"), "no/such/folder"),
    Case("db-is-a-folder", ("run", "--db", "sqlite:///dbdir"), "dbdir", _folder("dbdir")),
    Case("db-in-memory", ("run", "--db", "sqlite:///:memory:"), ":memory:"),
    Case("db-postgres-down", ("run", "--db", PG_DOWN), "127.0.0.1:1"),
    Case("db-postgres-down-reader", ("runs", "--db", PG_DOWN), "127.0.0.1:1"),
    Case("db-env-variable", ("run",), "mysql://x/y", env={"CADS_DB": "mysql://x/y"}),
    Case("db-missing-for-stats", ("stats", "r1", "--db", "sqlite:///other.db"), "other.db"),
    Case("db-missing-for-runs", ("runs", "--db", "sqlite:///other.db"), "other.db"),
    Case("db-missing-for-export", ("export", "r1", "--out", "x.jsonl", "--db", "sqlite:///other.db"), "other.db"),
    # data folders
    Case("data-is-a-file", ("run", "--data", "afile"), "afile", _write("afile", "x")),
    Case("data-under-a-file", ("run", "--data", "afile/images"), "afile/images", _write("afile", "x")),
    Case("data-not-writable", ("run", "--data", "/sys/cads-data"), "/sys/cads-data"),
    Case("data-env-variable", ("run",), "afile", _write("afile", "x"), env={"CADS_DATA": "afile"}),
    Case("data-is-a-file-on-replay", ("replay", "r1", "--round", "1", "--data", "afile"), "afile", _write("afile", "x")),
    # run ids
    Case("run-id-bad-characters", ("run", "--run-id", "bad id!"), "bad id!"),
    Case("run-id-exists", ("run", "--run-id", "r1"), "'r1'"),
    Case("resume-unknown-run", ("resume", "nope"), "'nope'"),
    Case("resume-finished-run", ("resume", "r1"), "'r1'"),
    Case("show-unknown-run", ("show", "nope"), "'nope'"),
    Case("stats-unknown-run", ("stats", "nope"), "'nope'"),
    Case("export-unknown-run", ("export", "nope", "--out", "x.jsonl"), "'nope'"),
    Case("replay-unknown-run", ("replay", "nope", "--round", "1"), "'nope'"),
    # rounds
    Case("show-round-too-high", ("show", "r1", "--round", "99"), "--round 99"),
    Case("show-round-negative", ("show", "r1", "--round", "-1"), "--round -1"),
    Case("show-round-not-a-number", ("show", "r1", "--round", "x"), "'x'"),
    Case("replay-round-too-high", ("replay", "r1", "--round", "99"), "--round 99"),
    Case("replay-round-zero", ("replay", "r1", "--round", "0"), "--round 0"),
    Case("replay-config-missing", ("replay", "r1", "--round", "1", "--config", "absent.yaml"), "absent.yaml"),
    # options
    Case("rounds-zero", ("run", "--rounds", "0"), "0"),
    Case("target-negative", ("run", "--target", "-5"), "-5"),
    Case("seed-not-a-number", ("run", "--seed", "abc"), "'abc'"),
    Case("budget-negative", ("run", "--budget", "-1"), "'-1'"),
    Case("budget-not-a-number", ("run", "--budget", "lots"), "'lots'"),
    Case("resume-budget-not-a-number", ("resume", "r1", "--budget", "x"), "'x'"),
    Case("unknown-option", ("run", "--nope"), "--nope"),
    Case("export-unknown-format", ("export", "r1", "--out", "x.jsonl", "--format", "xml"), "'xml'"),
    # output paths
    Case("export-out-not-writable", ("export", "r1", "--out", "/sys/x.jsonl"), "/sys/x.jsonl"),
    Case("export-out-folder-missing", ("export", "r1", "--out", "nodir/x.jsonl"), "nodir/x.jsonl"),
    Case("export-out-is-a-folder", ("export", "r1", "--out", "outdir"), "outdir", _folder("outdir")),
    Case("export-images-elsewhere", ("export", "r1", "--out", "x.jsonl", "--data", "elsewhere"), "elsewhere"),
    Case("export-overwrite-other-work", ("export", "r1", "--out", "mine", "--overwrite"), "notes.txt", _write("mine/notes.txt", "x")),
    Case("export-overwrite-a-file", ("export", "r1", "--out", "cads.db", "--overwrite"), "cads.db"),
    Case("export-unknown-include", ("export", "r1", "--out", "x", "--include", "some"), "'some'"),
    Case("export-bad-license", ("export", "r1", "--out", "x", "--format", "hf", "--license", "CC BY"), "'CC BY'"),
    Case("export-push-without-token", ("export", "r1", "--out", "x", "--format", "parquet", "--push-to-hub", "me/data"),
         "'me/data'", env={"HF_HOME": "hf-home"}),
    Case("export-push-jsonl", ("export", "r1", "--out", "x", "--push-to-hub", "me/data"), "jsonl"),
    Case("export-push-bad-repo", ("export", "r1", "--out", "x", "--format", "hf", "--push-to-hub", "bad repo!"), "bad repo!"),
    Case("report-unknown-run", ("report", "nope", "--out", "r.html"), "'nope'"),
    Case("report-out-exists", ("report", "r1", "--out", "r.html"), "r.html", _write("r.html", "mine")),
    Case("report-overwrite-other-file", ("report", "r1", "--out", "notes.html", "--overwrite"), "notes.html",
         _write("notes.html", "<!DOCTYPE html><p>mine</p>")),
    Case("report-out-is-a-folder", ("report", "r1", "--out", "outdir", "--overwrite"), "outdir", _folder("outdir")),
    Case("report-out-folder-missing", ("report", "r1", "--out", "nodir/r.html"), "nodir/r.html"),
    Case("report-images-elsewhere", ("report", "r1", "--out", "r.html", "--data", "elsewhere"), "elsewhere"),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A folder with one finished two-round run, `r1`."""
    work = tmp_path_factory.mktemp("finished")
    cads("run", "--run-id", "r1", "--rounds", "2", "--target", "1000", cwd=work)
    for leftover in work.glob("cads.db-*"):
        leftover.unlink()
    return work


def _snapshot(work: Path) -> dict[str, str]:
    """Every file (but SQLite's transient -wal/-shm), by content; the database by its rows."""
    seen: dict[str, str] = {}
    for path in sorted(work.rglob("*")):
        if path.is_dir() or path.name.endswith(("-wal", "-shm", "-journal")):
            continue
        key = str(path.relative_to(work))
        if path.name.endswith(".db"):
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                seen[key] = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
        else:
            seen[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, finished: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(finished, work)
    if case.setup:
        case.setup(work)
    before = _snapshot(work)
    result = cads(*case.args, cwd=work, check=False, env=case.env)
    assert result.returncode == case.code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.names in lines[0], lines[0]
    assert _snapshot(work) == before, "something was written"


def test_the_corpus_is_broad() -> None:
    assert len(CASES) >= 40
    commands = {c.args[0] for c in CASES}
    assert commands >= {"run", "resume", "replay", "runs", "show", "stats", "export", "report"}


def test_a_reader_creates_no_database(tmp_path: Path) -> None:
    for command in (["runs"], ["stats", "r"], ["show", "r"], ["export", "r", "--out", "x.jsonl"], ["report", "r", "--out", "r.html"]):
        result = cads(*command, cwd=tmp_path, check=False)
        assert result.returncode == 2 and "no database at cads.db" in result.stderr
    assert list(tmp_path.iterdir()) == []

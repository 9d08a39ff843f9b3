"""Helpers the tests share: drive `cads` as a user would, and read back what it made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CADS = [sys.executable, "-m", "cadsynth.cli"]


def cads(*args: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the CLI in `cwd` without the caller's CADS_DB, CADS_DATA or API keys (plus `env`)."""
    full = {**os.environ, "COLUMNS": "200"}
    for var in ("CADS_DB", "CADS_DATA", "OPENAI_API_KEY", "GOOGLE_API_KEY"):
        full.pop(var, None)
    full.update(env or {})
    result = subprocess.run([*CADS, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"cads {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def stats(run: str, cwd: Path, *extra: str) -> dict:
    return json.loads(cads("stats", run, "--json", *extra, cwd=cwd).stdout)


def export(run: str, cwd: Path) -> list[dict]:
    out = cwd / f"{run}.jsonl"
    cads("export", run, "--out", str(out), cwd=cwd)
    return [json.loads(line) for line in out.read_text().splitlines()]


def content(samples: list[dict]) -> list[dict]:
    """A data set without what differs between equal runs (run ids, data folders)."""
    return [
        {**{k: v for k, v in s.items() if k not in ("id", "run", "image")}, "image": Path(s["image"]).name}
        for s in samples
    ]

"""The structure the project keeps: the simulator behind the provider seam, one writer of a run's
status, files of one concern each, and tests/ imported by nothing outside it. Read from the sources."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("agents", "graphs", "prompts", "store", "cadsynth", "fakes", "bench") for p in (ROOT / folder).rglob("*.py")]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_graph_and_the_domain_do_not_know_the_simulator() -> None:
    for path in [*(ROOT / "graphs").glob("*.py"), ROOT / "cadsynth" / "domain.py"]:
        text = path.read_text()
        assert not any(name.startswith("cadsynth.agents.sim") for name in _imports(path)), path
        # No branch on a simulated provider, no simulator field, no task payload for it.
        assert not re.search(r"\bsim\b|simulat|cads_task", text, re.IGNORECASE), path


def test_only_the_lifecycle_writes_a_run_status() -> None:
    writers = {
        path.relative_to(ROOT).as_posix()
        for path in SOURCES
        if re.search(r"\.(set_status|start_run)\(", path.read_text())
    }
    assert writers == {"cadsynth/lifecycle.py"}


def test_no_source_file_over_600_lines_but_the_simulated_world() -> None:
    long = {
        path.relative_to(ROOT).as_posix(): n
        for path in SOURCES
        if path.parts[len(ROOT.parts)] != "bench" and (n := len(path.read_text().splitlines())) > 600
    }
    assert set(long) <= {"agents/sim/world.py"}, long


def test_nothing_outside_tests_imports_tests() -> None:
    assert not [p for p in SOURCES if any(n == "tests" or n.startswith("tests.") for n in _imports(p))]

"""How the benchmarks start `cads` (the Python that has cadsynth installed, as a separate process)
and read a process's memory."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def python() -> str:
    """This interpreter if it has cadsynth, else the repository's .venv; otherwise say what to do."""
    for candidate in (sys.executable, str(REPO / ".venv" / "bin" / "python")):
        if Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import cadsynth"], capture_output=True)
            if probe.returncode == 0:
                return candidate
    sys.exit(f"error: cadsynth is not installed for {sys.executable} and there is no {REPO / '.venv'}; "
             "install it first (see the README's first command)")


def reexec_with_cadsynth() -> None:
    """For a benchmark that imports cadsynth itself: start again under the Python that has it."""
    if importlib.util.find_spec("cadsynth") is None:
        interpreter = python()
        os.execv(interpreter, [interpreter, *sys.argv])


def cads(*args: str, cwd: str | Path, interpreter: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `cads ARGS`; a failure ends the benchmark with the command and its last error line."""
    cmd = [interpreter or python(), "-m", "cadsynth.cli", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(f"error: `cads {' '.join(args)}` exited {result.returncode}: {last}")
    return result


def memory_mib(field: str, pid: int | str = "self") -> float:
    """A process's VmRSS, or VmHWM (its peak resident memory so far), in MiB; 0 once it is gone.
    Linux only (it reads /proc)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith(f"{field}:")), 0.0)

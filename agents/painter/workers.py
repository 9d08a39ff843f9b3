"""Rendering beside the event loop, in worker processes.

Pillow draws text holding the GIL, so a thread would still take the event loop's core: the loop
that runs every task, ledger write and checkpoint would wait on the painter. A process pool puts
the painter on the other cores. Specs go in and PNG bytes come back; nothing else crosses.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from cadsynth.agents.painter.render import render
from cadsynth.specs import ImageSpec

_pool: ProcessPoolExecutor | None = None
_starting = threading.Lock()
_no_workers = False  # workers could not start here (a script without a __main__ guard): threads


def _end_with(parent: int) -> None:
    """A worker's watch on the process that started it: a worker outlives a killed parent
    otherwise (its call queue's pipe never reports the end, since the worker holds both ends)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _start_worker(parent: int) -> None:
    """A worker leaves Ctrl-C to the process that started it: a terminal sends SIGINT to the whole
    process group, and a run that stops gracefully still paints what its finished calls need."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with(parent)


def _started() -> ProcessPoolExecutor | None:
    """The process's pool, its workers up (started in a thread: spawning blocks); None when
    workers cannot start in this process."""
    global _pool, _no_workers
    with _starting:
        if _pool is None and not _no_workers:
            workers = max(1, min(4, (os.cpu_count() or 2) - 1))  # one core stays the event loop's
            # spawn: workers start clean, not as a fork of a process running threads.
            pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(os.getpid(),)
            )
            try:
                for started in [pool.submit(int) for _ in range(workers)]:
                    started.result()
            except BrokenProcessPool:
                _no_workers = True
                pool.shutdown(wait=False)
                return None
            _pool = pool
        return _pool


async def render_async(spec: ImageSpec) -> bytes:
    """The spec's PNG, rendered in a worker process (the same bytes as `render`)."""
    global _pool
    pool = _pool or await asyncio.to_thread(_started)
    if pool is None:
        return await asyncio.to_thread(render, spec)
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, render, spec)
    except BrokenProcessPool:
        # A worker was killed: the next image gets a new pool, this one is drawn here.
        _pool = None
        return await asyncio.to_thread(render, spec)

"""Rendering beside the event loop, in worker processes.

Pillow draws text holding the GIL, so a thread would still take the event loop's core: the loop
that runs every task, ledger write and checkpoint would wait on the painter. A process pool puts
the painter on the other cores. Specs go in and PNG bytes come back; nothing else crosses.

The untrusted kinds (a model-written Vega-Lite spec or SVG: agents.painter.untrusted) are drawn
only here, never in the caller's process, and under limits: a worker's data memory is capped
(RLIMIT_DATA), a render has a CPU-time limit (RLIMIT_CPU) and a wall-time limit, and a worker that
passes one is replaced. A
render refused for any of these raises RenderRefused with the reason; the next image is drawn by
a fresh worker.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, TypeVar

from cadsynth.agents.painter.render import render
from cadsynth.agents.painter.untrusted import RenderRefused
from cadsynth.specs import ImageSpec

T = TypeVar("T")
UNTRUSTED = frozenset({"vega_lite", "svg"})
# A worker's data segment (heap and private mappings). RLIMIT_DATA, not RLIMIT_AS: vl-convert's
# JavaScript engine reserves tens of GB of address space it never touches, and aborts under any
# address-space cap; what it and matplotlib, RDKit or resvg really allocate stays far below this.
WORKER_MEMORY = 1536 << 20
# An untrusted render's CPU time (its worker's, every thread): past it the kernel ends the worker
# (SIGXCPU), however loaded the machine. CPU, not wall time, so that a render's fate does not
# depend on what else runs: with 32 runs on 2 cores a 0.1 s chart takes seconds of wall time.
RENDER_CPU_SECONDS = 10
# An untrusted render's wall time, for what burns no CPU (a renderer stuck waiting); a worker still
# drawing then is killed and replaced.
RENDER_SECONDS = 120.0

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
    resource.setrlimit(resource.RLIMIT_DATA, (WORKER_MEMORY, WORKER_MEMORY))


def _render_here(spec: ImageSpec) -> bytes:
    """A worker's render: running out of its memory refuses this image, and the worker goes on."""
    try:
        if spec.kind in UNTRUSTED:
            return _limited(RENDER_CPU_SECONDS, render, spec)
        return render(spec)
    except MemoryError:
        raise RenderRefused(f"drawing it needed more than the worker's {WORKER_MEMORY >> 20} MB") from None


def _limited(cpu_seconds: int, draw: Callable[..., T], *args: Any) -> T:
    """`draw(*args)` with at most `cpu_seconds` more CPU for this process; the limit is lifted after."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(usage.ru_utime + usage.ru_stime) + cpu_seconds, resource.RLIM_INFINITY))
    try:
        return draw(*args)
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


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


def _replace(pool: ProcessPoolExecutor) -> None:
    """Ends a pool whose worker hangs or died; the next image starts a new one."""
    global _pool
    with _starting:
        if _pool is pool:
            _pool = None
    for process in list((pool._processes or {}).values()):  # ProcessPoolExecutor kills no worker itself
        process.kill()
    pool.shutdown(wait=False)  # its other jobs fail as BrokenProcessPool, and are drawn again


def worker_pids() -> list[int]:
    """The live workers' process ids (for benchmarks and tests that watch their memory)."""
    pool = _pool
    return [p.pid for p in (pool._processes or {}).values() if p.pid] if pool is not None else []


async def render_async(spec: ImageSpec) -> bytes:
    """The spec's PNG, rendered in a worker process (the same bytes as `render`). An untrusted
    kind is refused (RenderRefused) when it breaks a limit or there is no worker to draw it in."""
    global _pool
    untrusted = spec.kind in UNTRUSTED
    for attempt in range(2):
        pool = _pool or await asyncio.to_thread(_started)
        if pool is None:
            if untrusted:
                raise RenderRefused("no worker process to draw untrusted input in (a script needs a __main__ guard)")
            return await asyncio.to_thread(render, spec)
        job = asyncio.wrap_future(pool.submit(_render_here, spec))
        try:
            return await (asyncio.wait_for(job, RENDER_SECONDS) if untrusted else job)
        except asyncio.TimeoutError:
            _replace(pool)
            raise RenderRefused(f"drawing it took over {RENDER_SECONDS:g} s; the worker was replaced") from None
        except BrokenProcessPool:
            # A worker died (killed, or aborted inside a renderer), and every image its pool was
            # drawing failed with it: each is drawn again by a new pool. Not here: the caller
            # would load every renderer (some 50 MB) for the rest of its life.
            _replace(pool)
            if not attempt:
                continue
            if not untrusted:
                return await asyncio.to_thread(render, spec)  # it broke a fresh pool too: drawn here
            raise RenderRefused(  # this spec is what kills workers
                f"the worker drawing it died (over {RENDER_CPU_SECONDS} s of CPU, its memory, or aborted); it was replaced"
            ) from None
    raise AssertionError("unreachable")

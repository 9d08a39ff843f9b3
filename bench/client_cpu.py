"""The client's CPU per model call: what cadsynth and its model layer spend to make one request.

A judge's call (its prompt, a 320x240 chart, structured output) by the real path (`Agent._ask`:
the prompt, LangChain's chat model, the SDK, the limiter) against a fake server in a process of its
own that answers at once, 16 calls at a time; the figure is this process's CPU time (user + system)
over the calls, painting excluded. Once for the OpenAI path (ChatOpenAI, json_schema) and once
for the Gemini path (ChatGoogleGenerativeAI).

Usage: python bench/client_cpu.py [--calls 600] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import resource
from typing import Any

from cads_process import python, reexec_with_cadsynth

reexec_with_cadsynth()

KEY = "sk-bench-cpu"
VERDICT = {"answer": "3", "rationale": "three bars", "confidence": 0.9, "quality": 4}


def _serve(kind: str, urls: Any) -> None:
    import threading

    from cadsynth.fakes import FakeGemini, FakeOpenAI

    server = (FakeOpenAI if kind == "openai" else FakeGemini)(lambda body: VERDICT, api_key=KEY).start()
    urls.put(server.base_url if kind == "openai" else server.url)
    threading.Event().wait()


def cpu_per_call(kind: str, calls: int, profile: bool) -> float:
    from cadsynth.agents.painter.render import render
    from cadsynth.agents.panel import Panel
    from cadsynth.config import parse_config
    from cadsynth.domain import JudgmentDraft
    from cadsynth.specs import Bar, BarChart

    spawn = multiprocessing.get_context("spawn")
    urls = spawn.Queue()
    server = spawn.Process(target=_serve, args=(kind, urls), daemon=True)
    server.start()
    try:
        url = urls.get(timeout=60)
        os.environ["CADS_BENCH_KEY"] = KEY
        agent_config = {"name": "m", "provider": kind, "model": "gpt-4o" if kind == "openai" else "gemini-2.5-flash",
                        "base_url": url, "api_key_env": "CADS_BENCH_KEY", "roles": ["proposer", "judge"]}
        agent = Panel(parse_config({"concurrency": 16, "adversary": False, "panel": [agent_config]}))["m"]
        chart = render(BarChart(width=320, height=240, bars=[Bar(label="A", value=3), Bar(label="B", value=5)]))
        question = "How many bars does the chart show? Look at it carefully. " * 20

        async def ask(n: int) -> None:
            gate = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with gate:
                    await agent._ask(JudgmentDraft, f"{i}: {question}", [chart], role="judge")

            await asyncio.gather(*(one(i) for i in range(n)))

        async def measure() -> float:
            await ask(50)  # connections open, imports done
            before = resource.getrusage(resource.RUSAGE_SELF)
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            await ask(calls)
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            after = resource.getrusage(resource.RUSAGE_SELF)
            return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / calls

        return asyncio.run(measure())
    finally:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(f"client CPU per model call ({args.calls} judge calls with a 320x240 image, a fake answering at once "
          "in another process; painting excluded):")
    for kind in ("openai", "google"):
        print(f"  {kind:7} {cpu_per_call(kind, args.calls, args.profile) * 1000:6.2f} ms")


if __name__ == "__main__":
    python()
    main()

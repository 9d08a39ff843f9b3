"""The hostile corpus (fakes.hostile): every case is refused with a reason, twice over.

First as a model's answer: `parse_spec` (or, for a SMILES or an expression its schema lets
through, the renderer) raises SpecError naming the problem (a proposer's answer carrying it is
malformed, or the problem is left unpainted, and the reason is recorded). Then, as if validation had been
skipped, by the painter itself: handed the same document unvalidated, a worker refuses it within
the time limit, no worker passes its memory limit, nothing is fetched from the local server or read
from the canary files, and the painter draws the next image.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from cadsynth.agents.painter import workers
from cadsynth.agents.painter.render import render
from cadsynth.specs import SpecError, SvgImage, VegaLiteChart, parse_spec
from cadsynth.fakes.hostile import CASES, Case, Trap

GOOD = parse_spec({"kind": "svg", "svg": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4" fill="teal"/></svg>'})
UNVALIDATED = {"svg": SvgImage, "vega_lite": VegaLiteChart}


@pytest.fixture(scope="module")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Trap:
    folder = tmp_path_factory.mktemp("hostile")
    trap = Trap(folder)
    yield trap
    trap.close()


@pytest.fixture(scope="module")
def painter(trap: Trap) -> None:
    """Workers started in the canary's folder, so a relative reference would resolve to it."""
    mp = pytest.MonkeyPatch()
    mp.chdir(trap.folder)
    if workers._pool is not None:
        workers._replace(workers._pool)
    asyncio.run(workers.render_async(GOOD))
    yield
    mp.undo()


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert {"svg", "vega_lite"} <= {c.kind for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hostile_spec_is_refused_by_validation(case: Case, trap: Trap) -> None:
    """Refused before anything is drawn: by the schema, or (a declarative kind's SMILES or
    expression the schema lets through) by its renderer, with a SpecError either way."""
    trap.arm()
    start = time.perf_counter()
    with pytest.raises(SpecError) as refused:
        spec = parse_spec(case.build(trap))
        if case.kind not in UNVALIDATED:  # a declarative kind: what its schema lets through, its renderer refuses
            render(spec)
    assert time.perf_counter() - start < workers.RENDER_CPU_SECONDS
    reason = str(refused.value)
    assert reason and "\n" not in reason and len(reason) < 400
    assert trap.fetches == [] and trap.canaries_read() == []


@pytest.mark.slow  # worker processes
@pytest.mark.parametrize("case", [c for c in CASES if c.kind in UNVALIDATED], ids=[c.name for c in CASES if c.kind in UNVALIDATED])
def test_the_painter_refuses_it_unvalidated_and_draws_the_next_image(case: Case, trap: Trap, painter: None) -> None:
    data = case.build(trap)
    spec = UNVALIDATED[case.kind].model_construct(**{k: v for k, v in data.items() if k != "kind"})
    trap.arm()
    start = time.perf_counter()
    with pytest.raises(ValueError) as refused:
        asyncio.run(workers.render_async(spec))
    took = time.perf_counter() - start
    assert str(refused.value)
    assert took < workers.RENDER_CPU_SECONDS
    assert trap.fetches == [], trap.fetches
    assert trap.canaries_read() == []
    assert all(_peak(pid) < workers.WORKER_MEMORY for pid in workers.worker_pids())
    assert asyncio.run(workers.render_async(GOOD)) == render(GOOD)


@pytest.mark.slow  # worker processes
def test_a_render_over_the_time_limit_is_refused_and_its_worker_replaced(painter: None, monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(workers.worker_pids())
    monkeypatch.setattr(workers, "RENDER_SECONDS", 0.0)
    with pytest.raises(workers.RenderRefused, match="took over 0 s; the worker was replaced"):
        asyncio.run(workers.render_async(GOOD))
    monkeypatch.undo()
    assert asyncio.run(workers.render_async(GOOD)) == render(GOOD)
    assert before and not before & set(workers.worker_pids())


@pytest.mark.slow  # worker processes
def test_a_render_past_its_cpu_time_ends_its_worker_and_the_next_image_is_drawn(painter: None) -> None:
    """RLIMIT_CPU: a render that burns CPU (here: summing a huge range, with one second to spend)
    is ended by the kernel, whatever the load; the painter draws the next image in a new worker."""
    from concurrent.futures.process import BrokenProcessPool

    pool = workers._pool
    assert pool is not None
    start = time.perf_counter()
    with pytest.raises(BrokenProcessPool):
        pool.submit(workers._limited, 1, sum, range(10**12)).result(timeout=60)
    assert time.perf_counter() - start < 30
    workers._replace(pool)
    assert asyncio.run(workers.render_async(GOOD)) == render(GOOD)


@pytest.mark.slow  # worker processes
def test_a_worker_is_capped_below_its_memory_limit_and_lives_on(painter: None) -> None:
    """An allocation past RLIMIT_DATA fails inside the worker (MemoryError, which a render turns
    into RenderRefused), and the same worker draws the next image."""
    pids = set(workers.worker_pids())
    pool = workers._pool
    assert pool is not None
    with pytest.raises(MemoryError):
        pool.submit(bytearray, workers.WORKER_MEMORY + (256 << 20)).result(timeout=30)
    assert asyncio.run(workers.render_async(GOOD)) == render(GOOD)
    assert set(workers.worker_pids()) == pids


def _peak(pid: int) -> int:
    """A process's peak resident memory in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow  # worker processes
def test_a_refused_spec_leaves_its_problem_unpainted_with_the_reason(painter: None) -> None:
    """The graph's paint step: a document the painter refuses leaves the proposal without an image
    (review drops it as unpainted) and says why; the run goes on."""
    from types import SimpleNamespace

    from cadsynth.domain import Proposal
    from cadsynth.graphs.calls import _paint

    hostile = VegaLiteChart.model_construct(vega_lite='{"data": {"url": "file:///etc/passwd"}, "mark": "bar"}')
    drawable = VegaLiteChart(vega_lite='{"data": {"values": [{"a": 1}]}, "mark": "nonsense"}')
    stored: list[bytes] = []
    res = SimpleNamespace(blobs=SimpleNamespace(put=lambda png: stored.append(png) or "sha"))
    for spec, why in ((hostile, "Vega-Lite spec.data.url"), (drawable, "vega-lite could not draw it")):
        proposal = Proposal.model_construct(image_spec=spec, image=None, round=0, proposer="p", index=0)
        painted = asyncio.run(_paint(res, proposal))  # type: ignore[arg-type]
        assert painted.image is None and painted.paint_refused is not None
        assert painted.paint_refused.startswith(why), painted.paint_refused
    assert stored == []
    assert asyncio.run(workers.render_async(GOOD)) == render(GOOD)


@pytest.mark.parametrize("template", ["vl.bar_lookup", "svg.tag_lookup"])
async def test_a_real_proposer_writes_an_untrusted_kind_over_the_openai_protocol(fake_openai, tmp_path, template: str) -> None:
    """A proposer's structured answer (strict JSON schema, over the fake OpenAI server) can carry a
    Vega-Lite or SVG spec; one carrying a hostile document is a malformed answer, its reason kept."""
    import random

    from cadsynth.agents.sim.world import World
    from cadsynth.domain import ProposalDraft
    from tests.test_providers import ask, make_agent

    problem = World().generate(random.Random(2), template, 0.5)
    answer = {
        "strategy": "numerical_variation", "capabilities": ["text_recognition"],
        "image_spec": problem.spec.model_dump(mode="json"), "visual_prompt": problem.visual_prompt,
        "question": problem.question, "answer_type": problem.answer_type, "choices": None,
        "reference_answer": problem.truth, "solution": problem.solution, "difficulty": 0.3,
    }
    fake_openai.responder = lambda body: answer
    reply = await ask(make_agent(fake_openai, tmp_path), schema=ProposalDraft)
    assert reply.value.image_spec == problem.spec
    assert fake_openai.stats.snapshot()["rejected"] == 0

    hostile = Trap(tmp_path)
    try:
        bad = next(c for c in CASES if c.kind == problem.spec.kind and "url" in c.name).build(hostile)
    finally:
        hostile.close()
    fake_openai.responder = lambda body: {**answer, "image_spec": bad}
    with pytest.raises(Exception) as failed:
        await ask(make_agent(fake_openai, tmp_path), schema=ProposalDraft)
    details = [a.detail or "" for a in getattr(failed.value, "attempts", ())]
    assert details and all(a.fault == "malformed" for a in failed.value.attempts)
    assert any("url" in d.lower() or "href" in d.lower() for d in details), details

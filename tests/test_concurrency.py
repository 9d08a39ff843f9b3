"""`concurrency: auto`: how the controller answers each signal an endpoint gives, and the gate it
drives. Behaviour, not timings: each test feeds answers and checks what the controller did."""

from __future__ import annotations

import asyncio
import time

import pytest

from cadsynth.agents.limits import AdaptiveGate, Concurrency, Limiter
from cadsynth.config import AutoConcurrency, Limit

LATENCY = 0.5  # the endpoint unloaded, in these feeds


def round_trip(c: Concurrency, latency: float = LATENCY, *, busy: bool = True, kind: str = "judge") -> None:
    """One round trip's answers at `latency`, with the requests using all the room (`busy`) or not."""
    c.sent(c.limit if busy else max(1, c.limit // 2))
    for _ in range(max(4, c.limit)):
        c.answered(kind, latency, now=0.0)


def settled(c: Concurrency) -> Concurrency:
    """Past slow start: one overload ended it."""
    for _ in range(3):
        round_trip(c)
    c.overloaded(None, now=0.0)
    round_trip(c)
    return c


def test_slow_start_doubles_while_the_requests_use_the_room() -> None:
    c = Concurrency(AutoConcurrency())
    seen = [c.limit]
    for _ in range(4):
        round_trip(c)
        seen.append(c.limit)
    assert seen == [4, 8, 16, 32, 64]


def test_no_rise_when_the_room_is_not_used() -> None:
    c = Concurrency(AutoConcurrency())
    for _ in range(5):
        round_trip(c, busy=False)
    assert c.limit == 4


@pytest.mark.parametrize("fault", ["server_error", "timeout"])  # 5xx, no answer in time
def test_each_failure_under_load_backs_off_once_a_round_trip(fault: str) -> None:
    async def go() -> None:
        c = settled(Concurrency(AutoConcurrency()))
        gate = AdaptiveGate(c)
        before = c.value
        for _ in range(2):  # the same round trip's second refusal: the first cut answered it
            await gate.acquire()
            gate.release("judge", LATENCY, fault, None)
        assert c.value == pytest.approx(before * 0.75)
        round_trip(c)  # the round trip ends: no rise in it
        assert c.value == pytest.approx(before * 0.75)
        round_trip(c)
        assert c.value > before * 0.75  # the next one recovers

    asyncio.run(go())


def test_a_429_backs_off_to_what_the_rate_let_through_supports() -> None:
    """Little's law: 10 answers a second at 0.5 s each is 5 in flight; more only meets the limit."""
    async def go() -> None:
        c = Concurrency(AutoConcurrency())
        c.value = 24.0
        for i in range(20):  # the last two seconds: 10 answers a second
            c.answered("judge", LATENCY, now=100.0 + i / 10)
        c.overloaded(0.01, now=102.0, rate_limited=True)
        assert c.limit == 5 and c.ceiling == pytest.approx(5.0)
        assert c.held_until == pytest.approx(102.01)

    asyncio.run(go())


def test_after_a_429_requests_leave_spaced_at_the_rate_let_through() -> None:
    """A rate limit is a bucket: after it empties, what the room allows at once would empty it
    again. Requests leave one per 1/rate seconds, the spacing loosening each quiet round trip."""
    async def go() -> tuple[list[float], float, float]:
        c = Concurrency(AutoConcurrency())
        c.value = 8.0
        now = time.monotonic()
        for i in range(40):  # 20 answers a second over the last two seconds
            c.answered("judge", LATENCY, now=now - 2 + i / 20)
        c.overloaded(None, now=now, rate_limited=True)
        gate = AdaptiveGate(c)
        sent: list[float] = []

        async def call() -> None:
            await gate.acquire()
            sent.append(time.monotonic())
            gate.release("judge", LATENCY, None, None)

        await asyncio.gather(*(call() for _ in range(5)))
        spacing = c.spacing
        round_trip(c)  # the cut's round trip ends
        round_trip(c)  # a quiet one: looser
        return sent, spacing, c.spacing

    sent, spacing, looser = asyncio.run(go())
    assert spacing == pytest.approx(1 / 20)
    assert all(b - a >= spacing * 0.9 for a, b in zip(sent, sent[1:]))  # one per 1/rate, not all at once
    assert looser < spacing


def test_a_refused_key_or_a_cancelled_call_teaches_nothing() -> None:
    async def go() -> None:
        c = settled(Concurrency(AutoConcurrency()))
        gate = AdaptiveGate(c)
        before = c.value
        for fault in ("fatal", "cancelled", "unreachable"):
            await gate.acquire()
            gate.release("judge", 100.0, fault, None)
        assert c.value == before and c.held_until == 0.0

    asyncio.run(go())


def test_a_queueing_server_is_backed_off_from_by_its_latency_alone() -> None:
    c = settled(Concurrency(AutoConcurrency()))
    before = c.value
    round_trip(c, LATENCY * 2)  # twice the unloaded latency: the server queues, and never says 429
    assert c.value == pytest.approx(before * 0.9)
    round_trip(c, LATENCY * 1.1)  # within tolerance, and busy: it rises again
    assert c.value > before * 0.9


def test_latency_is_judged_per_kind_of_request() -> None:
    """A proposal taking four times a verdict's latency is not the server queueing."""
    c = settled(Concurrency(AutoConcurrency()))
    round_trip(c, 4 * LATENCY, kind="proposer")  # first sight of proposals: they set their own bar
    before = c.value
    round_trip(c, 4 * LATENCY, kind="proposer")
    round_trip(c, LATENCY, kind="judge")
    assert c.value > before


def test_it_recovers_to_where_overload_came_then_probes_past_it() -> None:
    c = settled(Concurrency(AutoConcurrency()))
    c.value = 40.0
    c.overloaded(None, now=0.0)  # overload at 40: down to 30
    round_trip(c)  # the cut's round trip
    climb = []
    for _ in range(16):
        round_trip(c)
        climb.append(c.limit)
    assert climb[:3] == [35, 37, 38]  # halfway back at once, and again
    assert climb == sorted(climb) and max(climb) > 40  # and on, past where it last overloaded
    near = climb[climb.index(39):]
    assert set(near) >= {39, 40, 41} and all(near.count(v) == Concurrency.PROBE for v in near[:-1] if v != near[-1])


def test_it_never_leaves_min_and_max() -> None:
    c = Concurrency(AutoConcurrency(min=3, max=20))
    for _ in range(10):
        round_trip(c)
    assert c.limit == 20
    for _ in range(10):
        c.overloaded(None, now=0.0)
        round_trip(c)
    assert c.limit == 3


def test_the_gate_holds_every_new_request_for_the_retry_after() -> None:
    async def go() -> tuple[float, float]:
        gate = AdaptiveGate(Concurrency(AutoConcurrency()))
        await gate.acquire()
        refused = time.monotonic()
        gate.release("judge", 0.1, "rate_limited", 0.3)  # 429, Retry-After: 0.3 s
        await gate.acquire()  # room, but held
        return refused, time.monotonic()

    refused, admitted = asyncio.run(go())
    assert admitted - refused >= 0.3


def test_the_gate_admits_no_more_than_the_limit_and_in_order() -> None:
    async def go() -> tuple[int, list[int]]:
        gate = AdaptiveGate(Concurrency(AutoConcurrency(max=4)))
        most, order = 0, []

        async def call(i: int) -> None:
            nonlocal most
            await gate.acquire()
            order.append(i)
            most = max(most, gate.in_flight)
            await asyncio.sleep(0.01)
            gate.release("judge", 0.01, None, None)

        await asyncio.gather(*(call(i) for i in range(40)))
        return most, order

    most, order = asyncio.run(go())
    assert most == 4 and order == list(range(40))


def test_a_limiter_learns_from_what_its_requests_met() -> None:
    """Through `Limiter.admit`, as calls use it: a request raising a 429 lowers the concurrency."""
    from cadsynth.fakes import FakeOpenAI

    limiter = Limiter(Limit(provider="openai", model="m", concurrency="auto"))
    control = limiter.concurrency
    assert control is not None

    async def go() -> None:
        import openai

        with FakeOpenAI(api_key="k") as server:
            client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
            for _ in range(3):
                async with limiter.admit(10, kind="judge"):
                    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            before = control.value
            server.inject("429")
            with pytest.raises(openai.RateLimitError):
                async with limiter.admit(10, kind="judge"):
                    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert control.value == pytest.approx(before * 0.9)  # a 429 with too few answers to measure a rate
            assert control.held_until > time.monotonic() - 5  # the fake's Retry-After was read

    asyncio.run(go())


def test_a_run_with_concurrency_auto_shows_each_endpoints_value_over_the_run(tmp_path) -> None:
    """Each endpoint's controller, sampled as the run goes, in `stats --json`; a fixed
    concurrency records nothing."""
    import json
    from importlib import resources

    import yaml

    from tests.helpers import cads

    config = yaml.safe_load(resources.files("cadsynth").joinpath("default.yaml").read_text())
    config["concurrency"] = "auto"
    for agent in config["panel"]:
        agent["sim"]["latency"] = 0.02
    (tmp_path / "auto.yaml").write_text(yaml.safe_dump(config))
    cads("run", "auto.yaml", "--run-id", "auto", "--rounds", "2", "--lanes", "2", "--target", "1000", cwd=tmp_path)
    stats = json.loads(cads("stats", "auto", "--json", cwd=tmp_path).stdout)
    endpoints = {f"sim {agent['model']}" for agent in config["panel"]}
    assert set(stats["concurrency"]) == endpoints
    for series in stats["concurrency"].values():
        assert series[0]["seconds"] >= 0 and all(1 <= s["value"] <= 256 for s in series)
        assert [s["seconds"] for s in series] == sorted(s["seconds"] for s in series)
    assert any(s["value"] > 4 for series in stats["concurrency"].values() for s in series)  # rose from its start
    cads("run", "--run-id", "fixed", "--rounds", "1", cwd=tmp_path)
    assert "concurrency" not in json.loads(cads("stats", "fixed", "--json", cwd=tmp_path).stdout)

"""Local fake LLM servers speaking the real HTTP protocols (no pytest needed).

    from tests.fakes import FakeOpenAI, FakeGemini, FaultPlan

    with FakeOpenAI(api_key="sk-test-123", faults=FaultPlan(rate=0.2, seed=1)) as srv:
        ChatOpenAI(base_url=srv.base_url, api_key="sk-test-123", model="gpt-4o-mini")
        srv.inject("429", "hang")          # queue faults for the next requests
        srv.requests[-1].image_sha256      # what arrived
        srv.stats.snapshot()               # counters
"""

from .gemini_server import FakeGemini
from .openai_server import (
    FAULT_KINDS,
    FakeOpenAI,
    Fault,
    FaultPlan,
    Reply,
    RequestRecord,
    Stats,
    Target,
    check_image,
    default_responder,
    make_png,
    request_target,
    request_text,
    schema_instance,
    strict_schema_problems,
)

__all__ = [
    "FAULT_KINDS",
    "FakeGemini",
    "FakeOpenAI",
    "Fault",
    "FaultPlan",
    "Reply",
    "RequestRecord",
    "Stats",
    "Target",
    "check_image",
    "default_responder",
    "make_png",
    "request_target",
    "request_text",
    "schema_instance",
    "strict_schema_problems",
]

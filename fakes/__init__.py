"""Fake model providers: HTTP servers on 127.0.0.1 speaking the real protocols.

Each fake stands in for a paid API in tests and benchmarks: the real clients (the ``openai`` SDK,
``ChatOpenAI``, ``ChatGoogleGenerativeAI``) talk to it over HTTP, unpatched. Nothing here needs
pytest.

    from cadsynth.fakes import FakeOpenAI, FakeGemini, FaultPlan

    with FakeOpenAI(api_key="sk-test-123", faults=FaultPlan(rate=0.2, seed=1)) as srv:
        ChatOpenAI(base_url=srv.base_url, api_key="sk-test-123", model="gpt-4o-mini")
        srv.inject("429", "hang")          # queue faults for the next requests
        srv.requests[-1].image_sha256      # what arrived
        srv.stats.snapshot()               # counters

The protocols: :mod:`.openai_chat` (:class:`FakeOpenAI`, with :mod:`.openai_images` and
:mod:`.openai_base`) and :mod:`.gemini` (:class:`FakeGemini`), both on the threaded server in
:mod:`.http`. What they share: fault plans (:mod:`.faults`), request records and counters
(:mod:`.records`), what a responder sees and returns (:mod:`.responders`), schema instances and
OpenAI's strict-schema rules (:mod:`.schemas`), PNGs and image checks (:mod:`.images`).
:mod:`.panelist` is a responder that answers a whole debate like a sensible panel.
"""

from .faults import FAULT_KINDS, Fault, FaultPlan
from .gemini import FakeGemini
from .images import check_image, make_png
from .openai_chat import FakeOpenAI
from .records import RequestRecord, Stats
from .responders import Reply, Target, default_responder, request_target, request_text
from .schemas import schema_instance, strict_schema_problems

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

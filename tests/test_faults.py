"""Fault classification against real exception instances of the installed libraries, and a dead
endpoint seen through the real clients (a closed port on 127.0.0.1: refused at once, nothing mocked).

google-genai moved from httpx to httpx2 (a fork under another import name) without notice; these
tests hold each transport's errors to the same kinds, so the next such move shows up here.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import get_args

import google.genai.errors as genai_errors
import httpcore
import httpcore2
import httpx
import httpx2
import openai
import pytest
import requests
import urllib3.exceptions
from langchain_core.exceptions import ModelConnectionError, ModelTimeoutError

from cadsynth.agents.calls import SILENT_CALLS, CallFailed, EndpointUnreachable, ModelCallError, endpoint
from cadsynth.agents.faults import FAULT_KEYS, Fault, FaultKind, Malformed, classify, reason
from cadsynth.config import AgentConfig
from tests.test_providers import ask, make_agent

TRANSPORTS = [httpx, httpx2]


def wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer`, raised from `inner`, as an SDK wraps a transport error."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


def kind(exc: BaseException) -> str | None:
    fault = classify(exc)
    return fault.kind if fault else None


# --- the kinds -------------------------------------------------------------------------------


def test_fault_keys_list_every_kind_in_stats_order():
    assert FAULT_KEYS == (
        "rate_limited", "server_error", "timeout", "unreachable", "malformed", "expired", "retried", "abstained", "dropped"
    )
    assert set(get_args(FaultKind)) <= set(FAULT_KEYS)


# --- transports: httpx and its fork httpx2 classify alike ------------------------------------


@pytest.mark.parametrize("lib", TRANSPORTS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ReadTimeout", "timeout"),
        ("ConnectTimeout", "timeout"),
        ("WriteTimeout", "timeout"),
        ("PoolTimeout", "timeout"),
        ("ConnectError", "unreachable"),
        ("ReadError", "unreachable"),
        ("WriteError", "unreachable"),
        ("RemoteProtocolError", "unreachable"),
    ],
)
def test_transport_errors(lib, name, expected):
    exc = getattr(lib, name)("boom")
    assert kind(exc) == expected
    assert kind(wrapped(RuntimeError("the SDK wrapped it"), exc)) == expected


@pytest.mark.parametrize("lib", TRANSPORTS, ids=lambda m: m.__name__)
def test_transport_status_errors(lib):
    request = lib.Request("POST", "http://127.0.0.1/v1/chat/completions")

    def status_error(code: int, headers: dict[str, str] | None = None) -> BaseException:
        response = lib.Response(code, headers=headers, request=request)
        return lib.HTTPStatusError(f"{code}", request=request, response=response)

    assert classify(status_error(429, {"retry-after": "3"})) == Fault("rate_limited", 3.0)
    assert classify(status_error(503, {"retry-after-ms": "1500"})) == Fault("server_error", 1.5)
    assert classify(status_error(500)) == Fault("server_error")
    assert classify(status_error(401)) is None  # a bad key: asking again cannot help


@pytest.mark.parametrize("core", [httpcore, httpcore2], ids=lambda m: m.__name__)
def test_httpcore_errors_under_the_transport(core):
    assert kind(core.ReadTimeout("timed out")) == "timeout"
    assert kind(core.ConnectError("refused")) == "unreachable"
    assert kind(core.RemoteProtocolError("Server disconnected without sending a response.")) == "unreachable"
    assert kind(core.LocalProtocolError("our bug")) is None


def test_requests_and_urllib3_errors():
    assert kind(requests.ConnectTimeout("connect timed out")) == "timeout"  # also a ConnectionError
    assert kind(requests.ReadTimeout("read timed out")) == "timeout"
    assert kind(requests.ConnectionError("refused")) == "unreachable"
    # urllib3's NewConnectionError (ECONNREFUSED) subclasses ConnectTimeoutError: the most specific name decides.
    assert kind(urllib3.exceptions.NewConnectionError(None, "Connection refused")) == "unreachable"  # type: ignore[arg-type]
    dns = urllib3.exceptions.NameResolutionError("nowhere.invalid", None, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
    assert kind(dns) == "unreachable"
    assert kind(urllib3.exceptions.ReadTimeoutError(None, "/v1", "Read timed out.")) == "timeout"  # type: ignore[arg-type]
    response = requests.Response()
    response.status_code = 429
    assert kind(requests.HTTPError("429", response=response)) == "rate_limited"
    assert kind(requests.exceptions.MissingSchema("no scheme")) is None  # an OSError subclass, not the network


def test_aiohttp_errors():
    aiohttp = pytest.importorskip("aiohttp")
    key = SimpleNamespace(host="127.0.0.1", port=9, is_ssl=False, ssl=None)
    assert kind(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))) == "unreachable"
    assert kind(aiohttp.ServerDisconnectedError()) == "unreachable"
    assert kind(aiohttp.ServerTimeoutError("read timeout")) == "timeout"  # also a ServerConnectionError
    info = SimpleNamespace(real_url="http://127.0.0.1/v1")
    assert kind(aiohttp.ClientResponseError(info, (), status=503)) == "server_error"


# --- the stdlib ------------------------------------------------------------------------------


def test_stdlib_errors():
    assert kind(ConnectionRefusedError(111, "Connection refused")) == "unreachable"
    assert kind(ConnectionResetError(104, "Connection reset by peer")) == "unreachable"
    assert kind(socket.gaierror(-2, "Name or service not known")) == "unreachable"
    assert kind(OSError("All connection attempts failed")) == "unreachable"  # what anyio raises
    assert kind(TimeoutError()) == "timeout"
    assert kind(FileNotFoundError(2, "No such file")) is None  # an OSError, but not the network
    assert kind(ValueError("nothing to do with the network")) is None


def test_the_chain_is_walked_to_the_socket_error():
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")
    chain = wrapped(RuntimeError("outer"), wrapped(OSError("All connection attempts failed"), refused))
    assert kind(chain) == "unreachable"
    assert reason(chain) == "connection refused"
    assert reason(wrapped(RuntimeError("outer"), socket.gaierror(-2, "Name or service not known"))) == (
        "cannot resolve the host (Name or service not known)"
    )
    # An answer that arrived but cannot be used stays malformed, whatever failed below it: PIL
    # raises a bare OSError for a truncated image, which alone would read as a network fault.
    try:
        try:
            raise OSError("image file is truncated")
        except OSError:
            raise Malformed("the image could not be decoded") from None
    except Malformed as exc:
        assert kind(exc) == "malformed"


# --- SDK errors -------------------------------------------------------------------------------


def test_openai_sdk_errors():
    request = httpx2.Request("POST", "https://api.openai.com/v1/chat/completions")  # the SDK's transport

    def response(code: int, **headers: str) -> httpx2.Response:
        return httpx2.Response(code, headers=headers, request=request)

    assert kind(openai.APITimeoutError(request=request)) == "timeout"
    assert kind(openai.APIConnectionError(request=request)) == "unreachable"
    limited = openai.RateLimitError("slow down", response=response(429, **{"retry-after": "2"}), body=None)
    assert classify(limited) == Fault("rate_limited", 2.0)
    assert kind(openai.InternalServerError("oops", response=response(500), body=None)) == "server_error"
    assert kind(openai.AuthenticationError("bad key", response=response(401), body={"code": "invalid_api_key"})) is None
    # LangChain's wrappers, raised from the SDK's errors, as ChatOpenAI does.
    assert kind(wrapped(ModelTimeoutError("timed out"), openai.APITimeoutError(request=request))) == "timeout"
    assert kind(wrapped(ModelConnectionError("no route"), httpx.ConnectError("refused"))) == "unreachable"


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "4s"}


def gemini_error(cls: type, code: int, *details: dict) -> BaseException:
    return cls(code, {"error": {"code": code, "message": "m", "status": "S", "details": list(details)}})


def test_google_genai_errors():
    from langchain_google_genai.chat_models import GoogleRateLimitError

    assert classify(gemini_error(genai_errors.ClientError, 429, RETRY_INFO)) == Fault("rate_limited", 4.0)
    assert classify(gemini_error(genai_errors.ServerError, 500)) == Fault("server_error")
    assert classify(gemini_error(genai_errors.ServerError, 503)) == Fault("server_error")
    assert classify(gemini_error(genai_errors.ClientError, 403)) is None
    assert classify(gemini_error(genai_errors.ClientError, 400)) is None
    # ChatGoogleGenerativeAI raises GoogleRateLimitError(msg) from the ClientError: the delay is below.
    outer = wrapped(GoogleRateLimitError("rate limited"), gemini_error(genai_errors.ClientError, 429, RETRY_INFO))
    assert classify(outer) == Fault("rate_limited", 4.0)


# --- endpoints and messages ---------------------------------------------------------------------


def test_endpoint_names_the_server_without_credentials():
    def agent(provider: str, base_url: str | None = None) -> AgentConfig:
        return AgentConfig(name="a", provider=provider, model="m", base_url=base_url, roles=["judge"])  # type: ignore[arg-type]

    assert endpoint(agent("openai")) == "api.openai.com"
    assert endpoint(agent("google")) == "generativelanguage.googleapis.com"
    assert endpoint(agent("openai", "http://127.0.0.1:8000/v1")) == "http://127.0.0.1:8000/v1"
    assert endpoint(agent("openai", "https://me:sk-secret@llm.example/v1?key=sk-secret")) == "https://llm.example/v1"


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


RETRY = {"attempts": 3, "base_delay": 0.001, "max_delay": 0.002}
SECRET = "sk-secret-0123456789"


@pytest.mark.parametrize(("provider", "model", "path"), [("openai", "gpt-4o", "/v1"), ("google", "gemini-2.5-flash", "")])
async def test_a_closed_port_is_an_unreachable_endpoint(tmp_path, monkeypatch, provider, model, path):
    """The real ChatOpenAI / ChatGoogleGenerativeAI against a closed port: the run must stop, saying where."""
    monkeypatch.setenv("CADS_TEST_OPENAI_KEY", SECRET)
    monkeypatch.setenv("CADS_TEST_GEMINI_KEY", SECRET)
    url = f"http://127.0.0.1:{closed_port()}{path}"
    agent = make_agent(SimpleNamespace(base_url=url), tmp_path, provider=provider, model=model, retry=RETRY)
    with pytest.raises(EndpointUnreachable) as dead:
        await ask(agent)
    assert str(dead.value) == f"agent 'a1' cannot reach {url} (unreachable: connection refused after 3 attempts)"
    assert isinstance(dead.value, ModelCallError) and not isinstance(dead.value, CallFailed)
    assert [(a.fault, a.outcome) for a in dead.value.attempts] == [("unreachable", "retried")] * 2 + [("unreachable", "abstained")]
    assert SECRET not in str(dead.value)


async def test_a_call_that_ends_refused_is_an_unreachable_endpoint(fake_openai, tmp_path):
    fake_openai.faults = ["hang", "hang", "drop"]
    with pytest.raises(EndpointUnreachable, match=r"^agent 'a1' cannot reach http://127\.0\.0\.1:\d+/v1 \(unreachable: .* after 3 attempts\)$") as dead:
        await ask(make_agent(fake_openai, tmp_path, timeout=0.3, retry=RETRY), role="propose")
    assert [a.fault for a in dead.value.attempts] == ["timeout", "timeout", "unreachable"]
    assert dead.value.attempts[-1].outcome == "dropped"


@pytest.mark.slow  # waits out 3 x SILENT_CALLS real timeouts
async def test_a_server_that_only_times_out_is_down_after_several_silent_calls(fake_openai, tmp_path):
    """A timeout may be a slow server under load: one silent call gives up alone, SILENT_CALLS in a row stop the run."""
    agent = make_agent(fake_openai, tmp_path, timeout=0.3, retry=RETRY)
    fake_openai.faults = ["hang"] * 3 * SILENT_CALLS
    for _ in range(SILENT_CALLS - 1):
        with pytest.raises(CallFailed) as failed:
            await ask(agent)
        assert not isinstance(failed.value, ModelCallError)
    with pytest.raises(EndpointUnreachable, match=r"\(timeout: no answer within 0\.3s after 3 attempts\)$"):
        await ask(agent)


@pytest.mark.slow  # waits out 6 x (SILENT_CALLS - 1) real timeouts
async def test_an_answer_between_silent_calls_keeps_the_server_alive(fake_openai, tmp_path):
    agent = make_agent(fake_openai, tmp_path, timeout=0.3, retry=RETRY)
    for _ in range(2):
        fake_openai.faults = ["hang"] * 3 * (SILENT_CALLS - 1)
        for _ in range(SILENT_CALLS - 1):
            with pytest.raises(CallFailed):
                await ask(agent)
        fake_openai.faults = []
        await ask(agent)  # answered: the count starts again


async def test_an_endpoint_that_answered_once_is_not_dead(fake_openai, tmp_path):
    fake_openai.faults = ["500", "drop", "drop"]
    with pytest.raises(CallFailed) as failed:
        await ask(make_agent(fake_openai, tmp_path, retry=RETRY))
    assert not isinstance(failed.value, ModelCallError)
    assert [a.fault for a in failed.value.attempts] == ["server_error", "unreachable", "unreachable"]

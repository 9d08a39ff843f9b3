"""The threaded HTTP server every fake provider server is built on.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. :class:`FakeServerBase` is what they
share: a thread per request on a random port, a record of each request, counters, fault
injection, latency, and shutting down cleanly (hanging requests included). A subclass speaks the
protocol (:meth:`FakeServerBase._route`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .capacity import Capacity
from .faults import HTTP_FAULTS, Fault, FaultPlan
from .images import check_image
from .records import RequestRecord, Stats
from .responders import default_responder


class HttpError(Exception):
    """Raised by route code to answer with an error status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive sockets are closed after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")  # type: ignore[attr-defined]

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")  # type: ignore[attr-defined]

    # -- writing helpers --------------------------------------------------
    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537).strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_bytes(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def start_chunked(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeServerBase:
    """Thread-per-request HTTP server on 127.0.0.1 with records, counters and
    fault injection.  Subclasses implement :meth:`_route`."""

    api = "base"

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], Any] | None = None,
        *,
        faults: FaultPlan | Iterable[str | Fault] | None = None,
        api_key: str | None = None,
        allowed_image_mimes: Iterable[str] = ("image/png",),
        latency: float | Callable[[Any], float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder = responder or default_responder
        self.api_key = api_key
        self.allowed_image_mimes = tuple(allowed_image_mimes)
        self.latency = latency
        # What the server can serve at once (fakes.capacity): set it to serve chat requests through it.
        self.capacity: Capacity | None = None
        self.stats = Stats()
        self._faults = self._as_plan(faults)
        self._host, self._port = host, port
        self._records: list[RequestRecord] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "FakeServerBase":
        if self._httpd is not None:
            return self
        self._stop.clear()
        httpd = _Server((self._host, self._port), Handler)
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fake-{self.api}-{httpd.server_address[1]}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()  # wakes "hang" faults
        httpd.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):  # noqa: ANN204
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # -- addresses ----------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self._host}:{self.port}"

    # -- faults -------------------------------------------------------------
    @staticmethod
    def _as_plan(faults: FaultPlan | Iterable[str | Fault] | None) -> FaultPlan:
        if faults is None:
            return FaultPlan()
        if isinstance(faults, FaultPlan):
            return faults
        return FaultPlan(queue=faults)

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan | Iterable[str | Fault] | None) -> None:
        self._faults = self._as_plan(plan)

    def inject(self, *faults: str | Fault) -> None:
        """Queue faults for the next requests."""
        self._faults.push(*faults)

    # -- records ------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        with self._cond:
            return list(self._records)

    @property
    def last_request(self) -> RequestRecord | None:
        with self._cond:
            return self._records[-1] if self._records else None

    @property
    def request_count(self) -> int:
        return self.stats.snapshot()["requests"]

    @property
    def fault_counts(self) -> dict[str, int]:
        return self.stats.snapshot()["faults"]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._records) >= n, timeout)

    def reset(self) -> None:
        """Forget records and counters (the fault plan is kept)."""
        with self._cond:
            self._records.clear()
        self.stats.reset()

    # -- dispatch -----------------------------------------------------------
    def _handle(self, h: Handler, method: str) -> None:
        parts = urlsplit(h.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._cond:
            self._seq += 1
            rec = RequestRecord(self._seq, method, parts.path, "", headers, started=time.monotonic())
        raw = h.read_body()
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.stats._enter()
        try:
            self._route(h, rec, method, parts.path, query, raw)
        except HttpError as e:
            if 400 <= e.status < 500 and rec.fault is None:
                rec.error = str(e.body)
                self.stats._add_rejected()
            self._finish(h, rec, e.status, lambda: h.send_json(e.status, e.body, e.headers))
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug in the fake or the responder
            self.stats._add_error(f"{type(exc).__name__}: {exc}")
            body = self._error_body(500, f"fake server error: {exc}", "internal")
            self._finish(h, rec, 500, lambda: h.send_json(500, body))
        finally:
            rec.finished = time.monotonic()
            self.stats._leave()

    def _register(self, rec: RequestRecord, route: str) -> None:
        rec.route = route
        self.stats._add_request(route)
        with self._cond:
            self._records.append(rec)
            self._cond.notify_all()

    def _finish(self, h: Handler, rec: RequestRecord, status: int, send: Callable[[], None]) -> None:
        rec.status = status
        if rec.route:
            self.stats._add_status(status)
        try:
            send()
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _apply_http_fault(self, h: Handler, rec: RequestRecord, fault: Fault | None) -> bool:
        """Serve an HTTP-level fault. True if the request is done."""
        if fault is None or fault.kind not in HTTP_FAULTS:
            return False
        rec.fault = fault.kind
        self.stats._add_fault(fault.kind)
        if fault.kind == "hang":
            self._stop.wait(fault.hang_seconds)
            h.close_connection = True
            rec.status = 0
            return True
        if fault.kind == "drop":
            h.close_connection = True
            rec.status = 0
            return True
        status = int(fault.kind)
        body, headers = self._fault_response(status, fault)
        raise HttpError(status, body, headers)

    def _maybe_sleep(self, body: Any = None, rec: RequestRecord | None = None) -> None:
        """Take as long as answering takes: the latency, or the server's capacity's say (which
        may refuse the request instead: `rec` then records the fault)."""
        if self.capacity is not None:
            fault = self.capacity.serve(self._stop)
            if fault is not None and rec is not None:
                rec.fault = fault.kind
                self.stats._add_fault(fault.kind)
            if fault is not None:
                raise HttpError(int(fault.kind), *self._fault_response(int(fault.kind), fault))
            return
        delay = self.latency(body) if callable(self.latency) else self.latency
        if delay > 0:
            self._stop.wait(delay)

    def _call_responder(self, body: dict[str, Any]) -> Any:
        return self.responder(body)

    def _check_image(self, data: bytes, mime: str) -> str | None:
        if mime not in self.allowed_image_mimes:
            return f"image mime type {mime!r} is not accepted (allowed: {list(self.allowed_image_mimes)})"
        return check_image(data, mime)

    # -- to be provided by subclasses --------------------------------------
    def _route(self, h: Handler, rec: RequestRecord, method: str, path: str,
               query: dict[str, str], raw: bytes) -> None:
        raise NotImplementedError

    def _error_body(self, status: int, message: str, kind: str) -> dict[str, Any]:
        raise NotImplementedError

    def _fault_response(self, status: int, fault: Fault) -> tuple[dict[str, Any], dict[str, str]]:
        raise NotImplementedError

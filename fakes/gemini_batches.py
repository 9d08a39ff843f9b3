"""The fake Gemini Developer API's batch mode, with inline requests or an input file.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. A client creates a batch of inline
requests (``POST /{version}/models/{model}:batchGenerateContent``), gets it
(``GET /{version}/batches/{id}``; its ``metadata.output`` holds the inline responses once it has
succeeded), lists them (``GET /{version}/batches``) or cancels one (``:cancel``), as the google-genai
SDK's ``client.batches`` does. A batch beyond 20 MB of inline requests names an input file instead:
a JSONL file of ``{"key", "request"}`` lines uploaded with the Files API's resumable protocol
(``POST /upload/{version}/files``, then the upload URL it hands back); its answers are a file of
``{"key", "response" | "error"}`` lines (``metadata.output.responsesFile``), read with
``GET /{version}/files/{id}:download?alt=media``. Each request is answered as the same request sent
online to ``:generateContent`` would be, so a run gives the same answers either way.

A batch goes PENDING -> RUNNING -> SUCCEEDED over ``batch_delay`` seconds (measured when it is
polled); ``batch_error_rate`` makes a share of its requests answer with an error;
``batch_outcomes`` queues whole-batch outcomes (``"failed"``, ``"expired"``, ``"cancelled"``).
Every request a batch carried is in ``batch_lines`` (:class:`.openai_batches.BatchLine`).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .http import HttpError
from .openai_batches import BatchLine
from .records import RequestRecord

INLINE_BYTES = 20 * 1024 * 1024  # inline requests of one batch, at most (beyond: an input file)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Capture:
    """Where the online handler writes its answer when a batch line is answered: nothing is sent."""

    close_connection = False

    def __init__(self) -> None:
        self.status = 0
        self.body: Any = None

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.body = status, obj


@dataclass
class _GeminiBatch:
    name: str
    model: str
    display_name: str
    requests: list[dict[str, Any]]
    outcome: str | None
    from_file: bool = False  # answered in a responses file, as its requests came
    created: float = field(default_factory=time.monotonic)
    state: str = "BATCH_STATE_PENDING"
    output: list[dict[str, Any]] | None = None
    create_time: str = field(default_factory=_now)


class GeminiBatchesMixin:
    """Batch mode for :class:`.gemini.FakeGemini`."""

    def _init_batches(self, delay: float, error_rate: float, seed: int) -> None:
        self.batch_delay = delay
        self.batch_error_rate = error_rate
        self.batch_outcomes: deque[str] = deque()
        self.batch_lines: list[BatchLine] = []
        self._batch_rng = random.Random(seed)
        self._gbatches: dict[str, _GeminiBatch] = {}
        self._gbatch_lock = threading.RLock()
        self._gbatch_seq = 0
        self.files: dict[str, bytes] = {}  # the Files API's store, by name ("files/...")
        self._uploads: dict[str, tuple[str, bytearray]] = {}  # resumable uploads under way: id -> (display name, bytes so far)

    def _batch_obj(self, b: _GeminiBatch) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{b.model}", "displayName": b.display_name, "state": b.state,
            "createTime": b.create_time, "updateTime": _now(),
            "batchStats": {"requestCount": str(len(b.requests))},
        }
        if b.output is not None and b.from_file:
            metadata["output"] = {"responsesFile": self._responses_file(b)}
        elif b.output is not None:
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": b.output}}
        done = b.state not in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING")
        return {"name": b.name, "metadata": metadata, "done": done}

    def _batch_create(self, rec: RequestRecord, model: str, body: dict[str, Any]) -> dict[str, Any]:
        batch = body.get("batch") or {}
        source = batch.get("inputConfig") or {}
        file_name = source.get("fileName")
        requests = self._file_requests(file_name) if file_name else (source.get("requests") or {}).get("requests")
        if not isinstance(requests, list) or not requests:
            raise HttpError(400, {"error": {"code": 400, "message": "batch.input_config.requests is required",
                                            "status": "INVALID_ARGUMENT"}})
        if not file_name and len(json.dumps(requests)) > INLINE_BYTES:
            raise HttpError(400, {"error": {"code": 400, "message": "inline requests exceed 20 MB; use an input file",
                                            "status": "INVALID_ARGUMENT"}})
        with self._gbatch_lock:
            self._gbatch_seq += 1
            name = f"batches/fake{self._gbatch_seq:06d}"
            outcome = self.batch_outcomes.popleft() if self.batch_outcomes else None
            b = _GeminiBatch(name, model, str(batch.get("displayName") or ""), requests, outcome, from_file=bool(file_name))
            self._gbatches[name] = b
            for i, item in enumerate(requests):
                key = self._key(item, i)
                digest = hashlib.sha256(json.dumps(item.get("request"), sort_keys=True).encode()).hexdigest()
                self.batch_lines.append(BatchLine(name, key, digest))
            return self._batch_obj(b)

    def _batch_get(self, name: str) -> dict[str, Any]:
        with self._gbatch_lock:
            b = self._gbatches.get(name)
            if b is None:
                raise HttpError(404, {"error": {"code": 404, "message": f"Batch {name} not found.", "status": "NOT_FOUND"}})
            self._advance(b)
            return self._batch_obj(b)

    def _batch_list(self) -> dict[str, Any]:
        with self._gbatch_lock:
            return {"operations": [self._batch_obj(b) for b in sorted(self._gbatches.values(), key=lambda b: b.name, reverse=True)]}

    def _batch_cancel(self, name: str) -> dict[str, Any]:
        with self._gbatch_lock:
            b = self._gbatches.get(name)
            if b is None:
                raise HttpError(404, {"error": {"code": 404, "message": f"Batch {name} not found.", "status": "NOT_FOUND"}})
            if b.state in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                self._end(b, "BATCH_STATE_CANCELLED")
            return {}

    def _advance(self, b: _GeminiBatch) -> None:
        elapsed = time.monotonic() - b.created
        if b.state not in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
            return
        if b.outcome == "failed" and elapsed >= self.batch_delay / 3:
            self._end(b, "BATCH_STATE_FAILED")
        elif elapsed >= self.batch_delay:
            end = {"expired": "BATCH_STATE_EXPIRED", "cancelled": "BATCH_STATE_CANCELLED"}.get(b.outcome or "", "BATCH_STATE_SUCCEEDED")
            self._end(b, end)
        elif elapsed >= self.batch_delay / 3:
            b.state = "BATCH_STATE_RUNNING"

    def _end(self, b: _GeminiBatch, state: str) -> None:
        b.state = state
        outcomes = {}
        if state == "BATCH_STATE_SUCCEEDED":
            b.output = []
            for i, item in enumerate(b.requests):
                key = self._key(item, i)
                # An inline answer carries its request's metadata; a line of a responses file, its key.
                tag = {"key": key} if b.from_file else {"metadata": item.get("metadata")}
                if self._batch_rng.random() < self.batch_error_rate:
                    b.output.append({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}, **tag})
                    outcomes[key] = "errored"
                    continue
                status, answer = self._answer_line(b.model, dict(item.get("request") or {}))
                if status == 200:
                    b.output.append({"response": answer, **tag})
                    outcomes[key] = "answered"
                else:
                    b.output.append({"error": answer.get("error", {"code": status}), **tag})
                    outcomes[key] = "rejected"
        lost = {"BATCH_STATE_FAILED": "failed", "BATCH_STATE_EXPIRED": "expired", "BATCH_STATE_CANCELLED": "cancelled"}.get(state)
        for line in self.batch_lines:
            if line.batch == b.name:
                line.outcome = outcomes.get(line.custom_id, lost or line.outcome)

    @staticmethod
    def _key(item: dict[str, Any], i: int) -> str:
        """A request's key: a file line's own, or an inline request's metadata."""
        return str(item["key"] if "key" in item else (item.get("metadata") or {}).get("key", i))

    def _responses_file(self, b: _GeminiBatch) -> str:
        name = f"files/{b.name.removeprefix('batches/')}-responses"
        if name not in self.files:
            self.files[name] = b"".join((json.dumps(line) + "\n").encode() for line in b.output or ())
        return name

    def _file_requests(self, name: str) -> list[dict[str, Any]]:
        data = self.files.get(name)
        if data is None:
            raise HttpError(400, {"error": {"code": 400, "message": f"File {name} not found.", "status": "INVALID_ARGUMENT"}})
        try:
            return [json.loads(text) for text in data.decode().splitlines() if text.strip()]
        except ValueError as exc:
            raise HttpError(400, {"error": {"code": 400, "message": f"File {name} is not JSONL: {exc}",
                                            "status": "INVALID_ARGUMENT"}}) from None

    # --- the Files API: resumable upload, download --------------------------------------------

    def _upload_start(self, body: dict[str, Any], headers: dict[str, str], base: str) -> tuple[dict[str, Any], dict[str, str]]:
        if (headers.get("x-goog-upload-protocol"), headers.get("x-goog-upload-command")) != ("resumable", "start"):
            raise HttpError(400, {"error": {"code": 400, "message": "only resumable uploads are served", "status": "INVALID_ARGUMENT"}})
        with self._gbatch_lock:
            self._gbatch_seq += 1
            upload = f"up{self._gbatch_seq:06d}"
            self._uploads[upload] = (str((body.get("file") or {}).get("displayName") or ""), bytearray())
        url = f"{base}/upload/v1beta/files?upload_id={upload}&upload_protocol=resumable"
        return {}, {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}

    def _upload_chunk(self, upload: str, raw: bytes, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        with self._gbatch_lock:
            if upload not in self._uploads:
                raise HttpError(404, {"error": {"code": 404, "message": f"upload {upload} not found", "status": "NOT_FOUND"}})
            display, data = self._uploads[upload]
            if int(headers.get("x-goog-upload-offset") or 0) != len(data):
                raise HttpError(400, {"error": {"code": 400, "message": "upload offset does not match", "status": "INVALID_ARGUMENT"}})
            data += raw
            if "finalize" not in (headers.get("x-goog-upload-command") or ""):
                return {}, {"X-Goog-Upload-Status": "active"}
            del self._uploads[upload]
            name = f"files/{upload}"
            self.files[name] = bytes(data)
        file = {"name": name, "displayName": display, "mimeType": "application/jsonl", "sizeBytes": str(len(data)),
                "createTime": _now(), "state": "ACTIVE", "source": "UPLOADED"}
        return {"file": file}, {"X-Goog-Upload-Status": "final"}

    def _download(self, name: str) -> bytes:
        with self._gbatch_lock:
            data = self.files.get(name)
        if data is None:
            raise HttpError(404, {"error": {"code": 404, "message": f"File {name} not found.", "status": "NOT_FOUND"}})
        return data

    def _answer_line(self, model: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One inline request answered as the same request online would be. Online, the model is in
        the URL, not the body: it is taken out, so the responder sees the same body either way."""
        from .responders import gemini_camel

        request.pop("model", None)
        rec = RequestRecord(0, "POST", f"/v1beta/models/{model}:generateContent", "batch.generateContent", {})
        rec.model, rec.body = model, request
        body = gemini_camel(request)
        capture = _Capture()
        try:
            self._validate(rec, body)  # type: ignore[attr-defined]
            self._generate(capture, rec, body)  # type: ignore[attr-defined]
        except HttpError as exc:
            return exc.status, exc.body
        return capture.status, capture.body

"""The fake OpenAI-compatible server's Batch API: ``/v1/files`` and ``/v1/batches``.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. A client uploads a JSONL file of
requests (``POST /v1/files``, purpose ``batch``), creates a batch over it (``POST /v1/batches``),
polls it (``GET /v1/batches/{id}``, or lists them) and reads its output and error files
(``GET /v1/files/{id}/content``), as with OpenAI. Each request is answered as the same request sent
online would be (the responder sees the same body), so a run gives the same answers either way.

A batch goes validating -> in_progress -> finalizing -> completed over ``batch_delay`` seconds
(measured when it is polled). ``batch_error_rate`` and ``batch_expiry_rate`` make a share of its
requests answer 500 or expire; ``batch_outcomes`` queues whole-batch outcomes (``"failed"``,
``"expired"``, ``"cancelled"``) for the next batches created. Every request a batch carried is in
``batch_lines`` (its batch, custom id and body digest): tests read it to prove nothing was sent twice.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .http import Handler, HttpError
from .openai_base import bad, oai_error
from .records import RequestRecord

MAX_REQUESTS = 50_000  # OpenAI's limits on one batch's input file
MAX_FILE_BYTES = 200 * 1024 * 1024
ENDPOINTS = ("/v1/chat/completions",)


@dataclass
class BatchLine:
    """One request a batch carried, as the fake saw it."""

    batch: str
    custom_id: str
    digest: str  # sha256 of the request's body
    outcome: str = "pending"  # answered | errored | expired | rejected (a 4xx) | cancelled


@dataclass
class _Batch:
    obj: dict[str, Any]
    lines: list[dict[str, Any]]
    outcome: str | None  # a whole-batch outcome queued for it
    created: float = field(default_factory=time.monotonic)
    done: bool = False


class OpenAIBatchesMixin:
    """Files and batches for the OpenAI fake; mixed into :class:`.openai_chat.FakeOpenAI`."""

    batch_create_delay: float
    file_content_delay: float

    def _init_batches(self, delay: float, error_rate: float, expiry_rate: float, seed: int) -> None:
        self.batch_delay = delay
        self.batch_error_rate = error_rate
        self.batch_expiry_rate = expiry_rate
        self.batch_outcomes: deque[str] = deque()
        self.batch_lines: list[BatchLine] = []
        self._batch_rng = random.Random(seed)
        self._files: dict[str, dict[str, Any]] = {}
        self._batches: dict[str, _Batch] = {}
        self._batch_lock = threading.RLock()
        self._batch_seq = 0

    def _next_id(self, prefix: str) -> str:
        with self._batch_lock:
            self._batch_seq += 1
            return f"{prefix}-fake{self._batch_seq:06d}"

    # -- files --------------------------------------------------------------------
    def _file_obj(self, fid: str) -> dict[str, Any]:
        f = self._files[fid]
        return {"id": fid, "object": "file", "bytes": len(f["data"]), "created_at": f["created_at"],
                "filename": f["filename"], "purpose": f["purpose"], "status": "processed", "expires_at": None,
                "status_details": None}

    def _keep_file(self, data: bytes, filename: str, purpose: str) -> str:
        fid = self._next_id("file")
        with self._batch_lock:
            self._files[fid] = {"data": data, "filename": filename, "purpose": purpose, "created_at": int(time.time())}
        return fid

    def _files_create(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        ctype = rec.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise bad("Expected a multipart/form-data body with 'file' and 'purpose'")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
        if "file" not in fields:
            raise bad("Missing required parameter: 'file'.", param="file")
        purpose = fields.get("purpose", (None, b""))[1].decode()
        if purpose not in ("batch", "assistants", "fine-tune", "vision", "user_data"):
            raise bad(f"Invalid value for 'purpose': {purpose!r}", param="purpose")
        data = fields["file"][1]
        if len(data) > MAX_FILE_BYTES:
            raise bad(f"File is too large: {len(data)} bytes; a batch input file holds at most 200 MB", param="file")
        fid = self._keep_file(data, fields["file"][0] or "upload.jsonl", purpose)
        self._finish(h, rec, 200, lambda: h.send_json(200, self._file_obj(fid)))  # type: ignore[attr-defined]

    def _file_of(self, path: str, suffix: str = "") -> str:
        fid = path[len("/v1/files/"):].removesuffix(suffix)
        if fid not in self._files:
            raise HttpError(404, oai_error(f"No such File object: {fid}", param="id", code="not_found"))
        return fid

    def _files_retrieve(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        fid = self._file_of(rec.path)
        self._finish(h, rec, 200, lambda: h.send_json(200, self._file_obj(fid)))  # type: ignore[attr-defined]

    def _files_content(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        fid = self._file_of(rec.path, "/content")
        data = self._files[fid]["data"]
        self._stop.wait(self.file_content_delay)  # type: ignore[attr-defined]
        self._finish(h, rec, 200, lambda: h.send_bytes(200, data, "application/octet-stream"))  # type: ignore[attr-defined]

    # -- batches ------------------------------------------------------------------
    def _batches_create(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        body = self._parse_json(raw)  # type: ignore[attr-defined]
        fid, endpoint = body.get("input_file_id"), body.get("endpoint")
        if body.get("completion_window") != "24h":
            raise bad("Invalid value for 'completion_window': only '24h' is supported", param="completion_window")
        if endpoint not in ENDPOINTS:
            raise bad(f"Invalid value for 'endpoint': {endpoint!r}", param="endpoint")
        if fid not in self._files or self._files[fid]["purpose"] != "batch":
            raise bad(f"Invalid 'input_file_id': {fid!r} is not a file uploaded for batch", param="input_file_id")
        metadata = body.get("metadata") or {}
        if len(metadata) > 16 or any(len(str(k)) > 64 or len(str(v)) > 512 for k, v in metadata.items()):
            raise bad("'metadata' holds at most 16 pairs, keys of 64 and values of 512 characters", param="metadata")
        lines, problem = self._read_input(self._files[fid]["data"], endpoint)
        bid = self._next_id("batch")
        now = int(time.time())
        obj = {
            "id": bid, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": fid,
            "completion_window": "24h", "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": now, "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "metadata": metadata or None,
            "model": lines[0]["body"].get("model") if lines else None,
        }
        with self._batch_lock:
            outcome = "invalid" if problem else (self.batch_outcomes.popleft() if self.batch_outcomes else None)
            batch = _Batch(obj, lines, outcome)
            if problem:
                obj["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": problem, "param": None, "line": None}]}
            self._batches[bid] = batch
            for line in lines:
                digest = hashlib.sha256(json.dumps(line.get("body"), sort_keys=True).encode()).hexdigest()
                self.batch_lines.append(BatchLine(bid, str(line.get("custom_id")), digest))
        answer = json.loads(json.dumps(obj))
        self._stop.wait(self.batch_create_delay)  # type: ignore[attr-defined]
        self._finish(h, rec, 200, lambda: h.send_json(200, answer))  # type: ignore[attr-defined]

    @staticmethod
    def _read_input(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], str | None]:
        """The input file's requests, and why the batch fails validation (None when it does not)."""
        lines: list[dict[str, Any]] = []
        seen: set[str] = set()
        models: set[str] = set()
        for n, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except ValueError:
                return lines, f"line {n}: not valid JSON"
            if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str) or line.get("method") != "POST":
                return lines, f"line {n}: needs custom_id, method POST, url and body"
            if line["custom_id"] in seen:
                return lines, f"line {n}: custom_id {line['custom_id']!r} is not unique in the file"
            if line.get("url") != endpoint:
                return lines, f"line {n}: url {line.get('url')!r} is not the batch's endpoint {endpoint}"
            seen.add(line["custom_id"])
            models.add(str((line.get("body") or {}).get("model")))
            lines.append(line)
        if len(lines) > MAX_REQUESTS:
            return lines, f"the file has {len(lines)} requests; a batch holds at most {MAX_REQUESTS}"
        if len(models) > 1:
            return lines, f"the file's requests name {len(models)} models; a batch's requests use one model"
        if not lines:
            return lines, "the file has no requests"
        return lines, None

    def _advance(self, batch: _Batch) -> None:
        """Move the batch along its states by the time since it was created; answer it at the end."""
        obj, elapsed = batch.obj, time.monotonic() - batch.created
        now = int(time.time())
        if batch.done or obj["status"] in ("cancelling", "cancelled"):
            if obj["status"] == "cancelling":
                self._finish_batch(batch, "cancelled")
            return
        if batch.outcome == "invalid" or (batch.outcome == "failed" and elapsed >= self.batch_delay / 3):
            if not obj["errors"]:
                obj["errors"] = {"object": "list", "data": [
                    {"code": "server_error", "message": "The batch failed while being processed.", "param": None, "line": None}]}
            obj.update(status="failed", failed_at=now)
            batch.done = True
            for line in self.batch_lines:
                if line.batch == obj["id"]:
                    line.outcome = "failed"
            return
        if elapsed < self.batch_delay / 3:
            return
        if obj["status"] == "validating":
            obj.update(status="in_progress", in_progress_at=now)
        total = len(batch.lines)
        obj["request_counts"]["completed"] = min(total, int(total * elapsed / max(self.batch_delay, 1e-9)))
        if elapsed < 2 * self.batch_delay / 3:
            return
        if obj["status"] == "in_progress":
            obj.update(status="finalizing", finalizing_at=now)
        if elapsed < self.batch_delay:
            return
        self._finish_batch(batch, "expired" if batch.outcome == "expired" else "completed")

    def _finish_batch(self, batch: _Batch, status: str) -> None:
        """Answer the batch's requests into its output and error files, as its end state allows."""
        obj = batch.obj
        out: list[dict[str, Any]] = []
        err: list[dict[str, Any]] = []
        outcomes: dict[str, str] = {}
        for line in batch.lines:
            cid = line["custom_id"]
            base = {"id": f"batch_req_{hashlib.sha256((obj['id'] + cid).encode()).hexdigest()[:24]}", "custom_id": cid}
            draw = self._batch_rng.random()
            if status in ("expired", "cancelled") or draw < self.batch_expiry_rate:
                code = "batch_cancelled" if status == "cancelled" else "batch_expired"
                why = "cancelled" if status == "cancelled" else "expired"
                err.append({**base, "response": None, "error": {
                    "code": code, "message": "This request could not be executed before the batch ended."}})
                outcomes[cid] = why
                continue
            if draw < self.batch_expiry_rate + self.batch_error_rate:
                err.append({**base, "response": {"status_code": 500, "request_id": f"req_{base['id']}",
                                                 "body": oai_error("The server had an error while processing your request.", "server_error")},
                            "error": None})
                outcomes[cid] = "errored"
                continue
            status_code, resp = self._answer_line(line["body"])
            row = {**base, "response": {"status_code": status_code, "request_id": f"req_{base['id']}", "body": resp}, "error": None}
            (out if status_code == 200 else err).append(row)
            outcomes[cid] = "answered" if status_code == 200 else "rejected"
        now = int(time.time())
        if out:
            obj["output_file_id"] = self._keep_file("".join(json.dumps(r) + "\n" for r in out).encode(), "output.jsonl", "batch_output")
        if err:
            obj["error_file_id"] = self._keep_file("".join(json.dumps(r) + "\n" for r in err).encode(), "errors.jsonl", "batch_output")
        obj["request_counts"] = {"total": len(batch.lines), "completed": len(out), "failed": len(err)}
        obj.update(status=status, **{f"{status}_at": now})
        if status == "completed" and not obj["in_progress_at"]:
            obj.update(in_progress_at=now, finalizing_at=now)
        batch.done = True
        with self._batch_lock:
            for logged in self.batch_lines:
                if logged.batch == obj["id"]:
                    logged.outcome = outcomes.get(logged.custom_id, logged.outcome)

    def _answer_line(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One request of a batch answered as the same request online would be: validated, then answered."""
        rec = RequestRecord(0, "POST", "/v1/chat/completions", "batch.chat.completions", {})
        rec.body = body
        try:
            self._validate_chat(rec, body)  # type: ignore[attr-defined]
        except HttpError as exc:
            return exc.status, exc.body
        return 200, self._completion(rec, body, None)  # type: ignore[attr-defined]

    @property
    def batches_made(self) -> list[tuple[dict[str, Any], float]]:
        """Every batch created, as its object now reads, with when it was made (time.monotonic)."""
        with self._batch_lock:
            return [(json.loads(json.dumps(b.obj)), b.created) for b in self._batches.values()]

    def _batch_of(self, path: str, suffix: str = "") -> _Batch:
        bid = path[len("/v1/batches/"):].removesuffix(suffix)
        if bid not in self._batches:
            raise HttpError(404, oai_error(f"No batch found with id '{bid}'.", param="id", code="not_found"))
        return self._batches[bid]

    def _batches_retrieve(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        batch = self._batch_of(rec.path)
        with self._batch_lock:
            self._advance(batch)
            obj = json.loads(json.dumps(batch.obj))
        self._finish(h, rec, 200, lambda: h.send_json(200, obj))  # type: ignore[attr-defined]

    def _batches_cancel(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        batch = self._batch_of(rec.path, "/cancel")
        with self._batch_lock:
            if batch.obj["status"] in ("validating", "in_progress", "finalizing"):
                batch.obj.update(status="cancelling", cancelling_at=int(time.time()))
            obj = json.loads(json.dumps(batch.obj))
        self._finish(h, rec, 200, lambda: h.send_json(200, obj))  # type: ignore[attr-defined]

    def _batches_list(self, h: Handler, rec: RequestRecord, raw: bytes, query: dict[str, str]) -> None:
        """Newest first, `limit` a page, `after` the last id of the page before (OpenAI's cursor)."""
        limit = max(1, min(100, int(query.get("limit") or 20)))
        with self._batch_lock:
            ids = sorted(self._batches, reverse=True)
            if query.get("after") in self._batches:
                ids = ids[ids.index(query["after"]) + 1:]
            page = [json.loads(json.dumps(self._batches[i].obj)) for i in ids[:limit]]
        body = {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(ids) > limit}
        self._finish(h, rec, 200, lambda: h.send_json(200, body))  # type: ignore[attr-defined]

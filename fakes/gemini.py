"""A fake Gemini Developer API server: an HTTP server on 127.0.0.1 speaking its real protocol.

It stands in for a paid API (Google's ``generativelanguage`` wire format) in tests and benchmarks.

``langchain_google_genai.ChatGoogleGenerativeAI`` (google-genai SDK) can be
pointed at it with ``base_url``; the SDK then calls
``{base_url}/{api_version}/models/{model}:generateContent`` over plain http
(``v1`` by default since google-genai 3, ``v1beta`` before, or whatever
``api_version=`` says). Like the real service, every version is served the
same way::

    with FakeGemini(api_key="g-test") as srv:
        llm = ChatGoogleGenerativeAI(model="gemini-2.5-flash", api_key="g-test",
                                     base_url=srv.base_url, vertexai=False,
                                     max_retries=1)

Endpoints: ``POST /{v1beta|v1|v1alpha}/models/{model}:generateContent``,
``:streamGenerateContent`` (``?alt=sse``), ``:countTokens`` and
``GET /{version}/models``; batch mode's ``:batchGenerateContent`` and ``/{version}/batches``
(:mod:`.gemini_batches`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from .faults import CONTENT_FAULTS, Fault, FaultPlan, fence, truncate
from .http import FakeServerBase, Handler, HttpError
from .gemini_batches import GeminiBatchesMixin
from .images import b64decode_any, make_png
from .records import RequestRecord
from .responders import (
    Reply,
    estimate_tokens,
    gemini_camel,
    pieces,
    request_target,
    request_text,
    to_text,
)

__all__ = ["FakeGemini"]

_PATH = re.compile(r"^/(?P<ver>v1beta|v1|v1alpha)/models/(?P<model>[^/:]+):(?P<verb>\w+)$")
_PART_KEYS = {
    "text", "inlineData", "fileData", "functionCall", "functionResponse",
    "executableCode", "codeExecutionResult", "thought", "thoughtSignature",
    "videoMetadata", "mediaResolution", "partMetadata", "toolCall", "toolResponse",
}
_DATA_KEYS = _PART_KEYS - {"thought", "thoughtSignature", "videoMetadata", "mediaResolution",
                           "partMetadata"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
           404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_IMAGE_TOKENS = 258  # what Gemini bills per image


def _gerr(code: int, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}
    if details:
        err["details"] = details
    return {"error": err}


def _bad(message: str) -> HttpError:
    return HttpError(400, _gerr(400, message))


class FakeGemini(GeminiBatchesMixin, FakeServerBase):
    """Fake Gemini API server.

    Same design as :class:`FakeOpenAI`: ``responder(request_json)`` returns a
    dict/list (serialised as the JSON text part, or as ``functionCall.args``
    when function calling is forced with mode ANY), a str (text part verbatim)
    or a :class:`Reply`.  If ``responseModalities`` asks for ``IMAGE`` and the
    reply has no images, a PNG made from the prompt is added as inline data.
    The responder gets the request with field names normalised to camelCase
    (the API accepts snake_case too, and the SDK sends a mix);
    ``RequestRecord.body`` keeps the body exactly as received.

    Args:
        api_key: if set, ``x-goog-api-key`` (or ``?key=``) must match
            (400 API_KEY_INVALID, like Google).
        models: if set, only these model ids are accepted (404 otherwise).
        faults / allowed_image_mimes / latency: as for FakeOpenAI.  A 429
            carries a ``google.rpc.RetryInfo`` detail (``retryDelay``) and no
            Retry-After header, like the real API.
    """

    api = "gemini"

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], Any] | None = None,
        *,
        faults: FaultPlan | Iterable[str | Fault] | None = None,
        api_key: str | None = None,
        models: Iterable[str] | None = None,
        allowed_image_mimes: Iterable[str] = ("image/png",),
        latency: float | Callable[[Any], float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        batches: bool = True,
        batch_delay: float = 0.0,
        batch_error_rate: float = 0.0,
        batch_seed: int = 0,
    ) -> None:
        super().__init__(
            responder, faults=faults, api_key=api_key,
            allowed_image_mimes=allowed_image_mimes, latency=latency, host=host, port=port,
        )
        self.models = list(models) if models is not None else None
        self.batches = batches  # batch mode (:mod:`.gemini_batches`); False answers 404 there
        self._init_batches(batch_delay, batch_error_rate, batch_seed)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` -- pass as ``base_url`` (the SDK adds
        ``/v1/...`` or ``/v1beta/...``)."""
        return self.url

    # -- errors ---------------------------------------------------------------
    def _error_body(self, status: int, message: str, kind: str) -> dict[str, Any]:
        return _gerr(status, message)

    def _fault_response(self, status: int, fault: Fault) -> tuple[dict[str, Any], dict[str, str]]:
        if status == 429:
            ra = float(fault.retry_after if fault.retry_after is not None else 1)
            return _gerr(429, "Resource has been exhausted (e.g. check quota).", [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                 "generate_content_requests", "quotaId": "FakeQuota"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{ra:g}s"},
            ]), {}
        if status == 503:
            return _gerr(503, "The model is overloaded. Please try again later."), {}
        return _gerr(500, "An internal error has occurred. Please retry or report in "
                          "https://developers.generativeai.google/guide/troubleshooting"), {}

    # -- routing --------------------------------------------------------------
    def _route(self, h: Handler, rec: RequestRecord, method: str, path: str,
               query: dict[str, str], raw: bytes) -> None:
        m = _PATH.match(path)
        if self.batches and self._batch_route(rec, method, path, m, query, raw, h):
            return
        if method == "GET" and re.match(r"^/(v1beta|v1|v1alpha)/models/?$", path):
            self._register(rec, "models.list")
            self._auth(rec, query)
            ids = self.models if self.models is not None else ["gemini-2.5-flash"]
            body = {"models": [{"name": f"models/{i}", "displayName": i,
                                "supportedGenerationMethods": ["generateContent", "countTokens"]}
                               for i in ids]}
            self._finish(h, rec, 200, lambda: h.send_json(200, body))
            return
        if method != "POST" or m is None or m["verb"] not in (
                "generateContent", "streamGenerateContent", "countTokens"):
            self._register(rec, "unknown")
            raise HttpError(404, _gerr(404, f"Method not found: {method} {path}"))
        self._register(rec, m["verb"])
        self._auth(rec, query)
        rec.model = m["model"]
        if self.models is not None and rec.model not in self.models:
            raise HttpError(404, _gerr(404, f"models/{rec.model} is not found for API version "
                                            f"{m['ver']}, or is not supported for generateContent."))
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _bad(f"Invalid JSON payload received. {exc}") from None
        if not isinstance(body, dict):
            raise _bad("Invalid JSON payload received. Expected an object.")
        rec.body = body  # as received
        body = gemini_camel(body)  # what validation and the responder see
        if m["verb"] == "countTokens":
            inner = body.get("generateContentRequest") or body
            self._validate(rec, inner)
            total = self._prompt_tokens(inner, rec)
            self._finish(h, rec, 200, lambda: h.send_json(200, {"totalTokens": total}))
            return
        rec.stream = m["verb"] == "streamGenerateContent"
        if rec.stream and query.get("alt") != "sse":
            raise _bad("this fake only streams with ?alt=sse")
        self._validate(rec, body)
        self._generate(h, rec, body)

    def _batch_route(self, rec: RequestRecord, method: str, path: str, m: re.Match[str] | None,
                     query: dict[str, str], raw: bytes, h: Handler) -> bool:
        """Batch mode's endpoints (:mod:`.gemini_batches`); False for any other request."""
        batch = re.match(r"^/(v1beta|v1|v1alpha)/(?P<name>batches/[^/:]+)(?::(?P<verb>\w+))?$", path)
        download = re.match(r"^/(v1beta|v1|v1alpha)/(?P<name>files/[^/:]+):download$", path)
        if method == "POST" and re.match(r"^/upload/(v1beta|v1|v1alpha)/files/?$", path):
            self._register(rec, "files.upload")
            if "upload_id" in query:  # the upload URL is the session's credential, as Google's is: no key
                answer, headers = self._upload_chunk(query["upload_id"], raw, rec.headers)
            else:
                self._auth(rec, query)
                answer, headers = self._upload_start(json.loads(raw.decode("utf-8") or "{}"), rec.headers, self.base_url)
            self._finish(h, rec, 200, lambda: h.send_json(200, answer, headers))
            return True
        if download is not None and method == "GET":
            self._register(rec, "files.download")
            self._auth(rec, query)
            data = self._download(download["name"])
            self._finish(h, rec, 200, lambda: h.send_bytes(200, data, "application/octet-stream"))
            return True
        if m is not None and method == "POST" and m["verb"] == "batchGenerateContent":
            self._register(rec, "batches.create")
            self._auth(rec, query)
            answer = self._batch_create(rec, m["model"], json.loads(raw.decode("utf-8") or "{}"))
        elif method == "GET" and re.match(r"^/(v1beta|v1|v1alpha)/batches/?$", path):
            self._register(rec, "batches.list")
            self._auth(rec, query)
            answer = self._batch_list()
        elif batch is not None and method == "GET" and batch["verb"] is None:
            self._register(rec, "batches.get")
            self._auth(rec, query)
            answer = self._batch_get(batch["name"])
        elif batch is not None and method == "POST" and batch["verb"] == "cancel":
            self._register(rec, "batches.cancel")
            self._auth(rec, query)
            answer = self._batch_cancel(batch["name"])
        else:
            return False
        self._finish(h, rec, 200, lambda: h.send_json(200, answer))
        return True

    def _auth(self, rec: RequestRecord, query: dict[str, str]) -> None:
        rec.api_key = rec.headers.get("x-goog-api-key") or query.get("key")
        if self.api_key is not None and rec.api_key != self.api_key:
            if not rec.api_key:
                raise HttpError(403, _gerr(403, "Method doesn't allow unregistered callers "
                                                "(callers without established identity). Please "
                                                "use API Key or other form of API consumer "
                                                "identity to call this API."))
            raise HttpError(400, _gerr(400, "API key not valid. Please pass a valid API key.", [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com"}]))

    # -- validation ---------------------------------------------------------------
    def _validate(self, rec: RequestRecord, body: dict[str, Any]) -> None:
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _bad("* GenerateContentRequest.contents: contents is not specified")
        for i, c in enumerate(contents):
            if not isinstance(c, dict):
                raise _bad(f"* GenerateContentRequest.contents[{i}]: must be an object")
            role = c.get("role")
            if role not in (None, "user", "model", "function", "tool"):
                raise _bad(f"Please use a valid role: user, model. (contents[{i}].role={role!r})")
            self._validate_parts(rec, c.get("parts"), f"contents[{i}]")
        si = body.get("systemInstruction")
        if si is not None:
            if not isinstance(si, dict):
                raise _bad("* GenerateContentRequest.system_instruction: must be an object")
            self._validate_parts(rec, si.get("parts"), "system_instruction", allow_media=False)
        cfg = body.get("generationConfig") or {}
        if not isinstance(cfg, dict):
            raise _bad("* GenerateContentRequest.generation_config: must be an object")
        mime = cfg.get("responseMimeType")
        if mime is not None and mime not in ("text/plain", "application/json", "text/x.enum"):
            raise _bad(f"* GenerateContentRequest.generation_config.response_mime_type: "
                       f"allowed mimetypes are `text/plain`, `application/json`, and "
                       f"`text/x.enum`. (got {mime!r})")
        has_schema = "responseSchema" in cfg or "responseJsonSchema" in cfg
        if "responseSchema" in cfg and "responseJsonSchema" in cfg:
            raise _bad("* GenerateContentRequest.generation_config: response_schema and "
                       "response_json_schema cannot both be set")
        if has_schema and mime not in ("application/json", "text/x.enum"):
            raise _bad("* GenerateContentRequest.generation_config.response_mime_type: "
                       "response_mime_type must be application/json or text/x.enum when "
                       "response_schema is set")
        rec.response_format = (
            "json_schema" if has_schema else "json_object" if mime == "application/json" else None)
        names: list[str] = []
        for i, t in enumerate(body.get("tools") or []):
            if not isinstance(t, dict):
                raise _bad(f"* GenerateContentRequest.tools[{i}]: must be an object")
            for j, d in enumerate(t.get("functionDeclarations") or []):
                if not isinstance(d, dict) or not isinstance(d.get("name"), str) \
                        or not re.match(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$", d["name"]):
                    raise _bad(f"* GenerateContentRequest.tools[{i}].function_declarations[{j}]"
                               ".name: Invalid function name.")
                if "parameters" in d and "parametersJsonSchema" in d:
                    raise _bad("parameters and parameters_json_schema cannot both be set")
                names.append(d["name"])
        fcc = (body.get("toolConfig") or {}).get("functionCallingConfig")
        if fcc is not None:
            rec.tool_choice = fcc
            mode = str(fcc.get("mode", "AUTO")).upper()
            if mode not in ("AUTO", "ANY", "NONE", "VALIDATED", "MODE_UNSPECIFIED"):
                raise _bad(f"Invalid function calling mode {mode!r}")
            for n in fcc.get("allowedFunctionNames") or []:
                if n not in names:
                    raise _bad(f"* GenerateContentRequest.tool_config.function_calling_config."
                               f"allowed_function_names: {n!r} is not a declared function")
            if fcc.get("allowedFunctionNames") and mode != "ANY":
                raise _bad("allowed_function_names may only be set when mode is ANY")

    def _validate_parts(self, rec: RequestRecord, parts: Any, where: str,
                        allow_media: bool = True) -> None:
        if not isinstance(parts, list) or not parts:
            raise _bad(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
        for j, p in enumerate(parts):
            pw = f"{where}.parts[{j}]"
            if not isinstance(p, dict) or not (set(p) & _DATA_KEYS):
                raise _bad(f"* GenerateContentRequest.{pw}.data: required oneof field 'data' "
                           "must have one initialized field")
            unknown = set(p) - _PART_KEYS
            if unknown:
                raise _bad(f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r} "
                           f"at '{pw}': Cannot find field.")
            if len(set(p) & _DATA_KEYS) > 1:
                raise _bad(f"* GenerateContentRequest.{pw}.data: oneof field 'data' is already set")
            if "text" in p and not isinstance(p["text"], str):
                raise _bad(f"* GenerateContentRequest.{pw}.text: must be a string")
            if "inlineData" in p:
                if not allow_media:
                    raise _bad(f"* GenerateContentRequest.{pw}: only text is allowed here")
                self._inline(rec, p["inlineData"], pw)

    def _inline(self, rec: RequestRecord, blob: Any, pw: str) -> None:
        if not isinstance(blob, dict) or not isinstance(blob.get("mimeType"), str) \
                or not isinstance(blob.get("data"), str):
            raise _bad(f"* GenerateContentRequest.{pw}.inline_data: mime_type and data are required")
        try:
            data = b64decode_any(blob["data"])
        except (binascii.Error, ValueError):
            raise _bad(f"Invalid value at '{pw}.inline_data.data' (TYPE_BYTES), Base64 decoding "
                       "failed") from None
        mime = blob["mimeType"]
        if mime.startswith("image/"):
            problem = self._check_image(data, mime)
            if problem:
                raise _bad(f"Unable to process input image: {problem}")
            rec.has_images = True
            rec.image_sha256.append(hashlib.sha256(data).hexdigest())
            rec.image_mime.append(mime)

    # -- answering ------------------------------------------------------------------
    def _prompt_tokens(self, body: dict[str, Any], rec: RequestRecord) -> int:
        return estimate_tokens(request_text(body)) + _IMAGE_TOKENS * len(rec.image_sha256)

    def _generate(self, h: Handler, rec: RequestRecord, body: dict[str, Any]) -> None:
        target = request_target(body)
        rec.mode = target.mode
        fault = self._faults.draw()
        if self._apply_http_fault(h, rec, fault):
            return
        self._maybe_sleep(body, rec)

        answer = self._call_responder(body)
        reply = answer if isinstance(answer, Reply) else None
        text: str | None = None
        calls: list[dict[str, Any]] = []
        images: list[bytes] = []
        finish = "STOP"
        if reply is not None:
            text = to_text(reply.content) if reply.content is not None else None
            calls = [{"name": c["name"], "args": c.get("args", {})} for c in reply.tool_calls or []]
            images = list(reply.images or [])
            finish = reply.finish_reason or finish
        elif target.mode == "tool":
            args = answer
            if isinstance(answer, str):  # a responder may send raw text as args
                try:
                    args = json.loads(answer)
                except ValueError:
                    args = {"_raw": answer}
            calls = [{"name": target.name, "args": args}]
        else:
            text = to_text(answer)
        modalities = [str(x).upper() for x in
                      (body.get("generationConfig") or {}).get("responseModalities") or []]
        if "IMAGE" in modalities and not images:
            prompt = request_text(body)
            images = [make_png(64, 64, prompt, text=prompt)]

        if fault is not None and fault.kind in CONTENT_FAULTS:
            rec.fault = fault.kind
            self.stats._add_fault(fault.kind)
            payload = json.dumps(calls[0]["args"]) if calls else (text or "")
            calls = []
            if fault.kind == "malformed":
                text = truncate(payload)
                images = [png[: len(png) // 2] for png in images]
            elif fault.kind == "fenced":
                text = fence(payload)
            else:
                text, images = "", []

        parts: list[dict[str, Any]] = []
        if text is not None:
            parts.append({"text": text})
        for png in images:
            parts.append({"inlineData": {"mimeType": "image/png",
                                         "data": base64.b64encode(png).decode()}})
        for c in calls:
            parts.append({"functionCall": {"name": c["name"], "args": c["args"]}})
        if not parts:
            parts.append({"text": ""})

        prompt_tokens = self._prompt_tokens(body, rec)
        out_tokens = estimate_tokens((text or "") + "".join(json.dumps(c["args"]) for c in calls))
        out_tokens += _IMAGE_TOKENS * len(images)
        response_id = f"fake{rec.seq:06d}"

        def usage(n_out: int) -> dict[str, Any]:
            return {"promptTokenCount": prompt_tokens, "candidatesTokenCount": n_out,
                    "totalTokenCount": prompt_tokens + n_out,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}]}

        def response(parts_: list[dict[str, Any]], finish_: str | None, n_out: int) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"role": "model", "parts": parts_}, "index": 0}
            if finish_:
                cand["finishReason"] = finish_
            return {"candidates": [cand], "usageMetadata": usage(n_out),
                    "modelVersion": rec.model, "responseId": response_id}

        if not rec.stream:
            resp = response(parts, finish, out_tokens)
            self._finish(h, rec, 200, lambda: h.send_json(200, resp))
            return

        def send_stream() -> None:
            h.start_chunked(200, "text/event-stream")
            chunks: list[list[dict[str, Any]]] = [[{"text": s}] for s in pieces(text or "")]
            chunks += [[p] for p in parts if "text" not in p]
            if not chunks:
                chunks = [[{"text": ""}]]
            sent = ""
            for k, ch in enumerate(chunks):
                last = k == len(chunks) - 1
                sent += "".join(p.get("text", "") for p in ch)
                done = out_tokens if last else min(out_tokens, estimate_tokens(sent))
                obj = response(ch, finish if last else None, done)
                h.write_chunk(b"data: " + json.dumps(obj).encode() + b"\r\n\r\n")
            h.end_chunked()

        self._finish(h, rec, 200, send_stream)

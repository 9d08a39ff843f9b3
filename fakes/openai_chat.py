"""A fake OpenAI-compatible server: an HTTP server on 127.0.0.1 speaking OpenAI's real protocol.

It stands in for a paid API (OpenAI, or vLLM / Ollama behind the same protocol) in tests and
benchmarks. The real ``openai`` SDK and ``langchain_openai.ChatOpenAI`` are pointed at it with
``base_url``::

    with FakeOpenAI(api_key="sk-test-123") as srv:
        llm = ChatOpenAI(base_url=srv.base_url, api_key="sk-test-123", model="m")

Endpoints: ``POST /v1/chat/completions`` (plain, ``response_format`` json_schema
/ json_object, function calling, SSE streaming), ``POST /v1/images/generations``
(:mod:`.openai_images`), ``GET /v1/models`` and ``GET /v1/models/{id}`` (:mod:`.openai_base`),
the Batch API's ``/v1/files`` and ``/v1/batches`` (:mod:`.openai_batches`).
Nothing here depends on pytest.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import time
from typing import Any

from .faults import CONTENT_FAULTS, fence, truncate
from .http import Handler, HttpError
from .images import DATA_URL, b64decode_any
from .openai_base import bad, oai_error
from .openai_batches import OpenAIBatchesMixin
from .openai_images import OpenAIImages
from .records import RequestRecord
from .responders import Reply, estimate_tokens, pieces, request_target, request_text, to_text
from .schemas import strict_schema_problems

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_USER_PART_TYPES = {"text", "image_url", "input_audio", "file"}
_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_IMAGE_TOKENS = 85  # what OpenAI bills for a low-detail image


class FakeOpenAI(OpenAIBatchesMixin, OpenAIImages):
    """Fake OpenAI-compatible server (also stands in for vLLM / Ollama).

    Args:
        responder: ``responder(request_json) -> dict | list | str | Reply``.
            A dict/list is serialised as JSON into ``message.content``
            (json_schema / json_object / plain) or into the tool call's
            ``arguments`` (function calling); a str is used verbatim.
            Default: :func:`default_responder` (schema-valid minimal object).
        faults: a :class:`FaultPlan`, or an iterable of kinds/Faults to queue.
        api_key: if set, ``Authorization: Bearer <api_key>`` is required (401).
        models: if set, only these model ids are accepted (404 otherwise) and
            listed by ``GET /v1/models``.
        allowed_image_mimes: image types accepted in ``image_url`` data URLs.
        vision: False for a text-only model: an image part is refused as OpenAI refuses one
            (400 "Invalid content type. image_url is only supported by certain models.").
        response_formats: the ``response_format`` types the model takes; another is refused as
            OpenAI refuses json_schema to a model without Structured Outputs (400).
        tools: False for a model without tool support: a request with ``tools`` is refused as
            Ollama refuses one (400 "<model> does not support tools").
        check_strict_schemas: reject ``strict: true`` schemas that break
            OpenAI's strict-mode rules (see :func:`strict_schema_problems`).
        latency: seconds to wait before each normal answer, or a function of the request body
            giving them (heavy-tailed latencies).
        batches: serve the Batch API (``/v1/files``, ``/v1/batches``; :mod:`.openai_batches`);
            False answers 404 there, as vLLM and most local servers do.
        batch_delay, batch_error_rate, batch_expiry_rate, batch_seed: how a batch behaves
            (see :mod:`.openai_batches`).
    """

    def __init__(self, *args: Any, batches: bool = True, batch_delay: float = 0.0, batch_error_rate: float = 0.0,
                 batch_expiry_rate: float = 0.0, batch_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches = batches
        self._init_batches(batch_delay, batch_error_rate, batch_expiry_rate, batch_seed)
        # Seconds before answering a batch's creation (made already) and a file's content: the
        # moments a client is between the provider's act and its own record of it (kill tests).
        self.batch_create_delay = 0.0
        self.file_content_delay = 0.0

    # -- routing --------------------------------------------------------------
    def _route(self, h: Handler, rec: RequestRecord, method: str, path: str,
               query: dict[str, str], raw: bytes) -> None:
        if path.startswith("/_fake/images/") and method == "GET":
            self._image_file(h, rec, path)
            return
        routes = {
            ("POST", "/v1/chat/completions"): ("chat.completions", self._chat),
            ("POST", "/v1/images/generations"): ("images.generations", self._images_generate),
            ("GET", "/v1/models"): ("models.list", self._models_list),
        }
        if self.batches:
            routes |= {
                ("POST", "/v1/files"): ("files.create", self._files_create),
                ("POST", "/v1/batches"): ("batches.create", self._batches_create),
                ("GET", "/v1/batches"): ("batches.list", lambda h, rec, raw: self._batches_list(h, rec, raw, query)),
            }
        key = (method, path.rstrip("/"))
        if key in routes:
            route, fn = routes[key]
        elif method == "GET" and path.startswith("/v1/models/"):
            route, fn = "models.retrieve", self._models_retrieve
        elif self.batches and method == "GET" and path.startswith("/v1/files/"):
            route, fn = ("files.content", self._files_content) if path.endswith("/content") else ("files.retrieve", self._files_retrieve)
        elif self.batches and method == "POST" and path.startswith("/v1/batches/") and path.endswith("/cancel"):
            route, fn = "batches.cancel", self._batches_cancel
        elif self.batches and method == "GET" and path.startswith("/v1/batches/"):
            route, fn = "batches.retrieve", self._batches_retrieve
        else:
            self._register(rec, "unknown")
            raise HttpError(404, oai_error(f"Invalid URL ({method} {path})", code="unknown_url"))
        self._register(rec, route)
        self._auth(rec)
        fn(h, rec, raw)

    # -- POST /v1/chat/completions ------------------------------------------------
    def _validate_chat(self, rec: RequestRecord, body: dict[str, Any]) -> None:
        self._check_model(rec, body)
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise bad("'messages' must be a non-empty array", param="messages")
        pending_calls: set[str] = set()
        for i, m in enumerate(msgs):
            p = f"messages[{i}]"
            if not isinstance(m, dict):
                raise bad(f"{p} must be an object", param=p)
            role = m.get("role")
            if role not in _ROLES:
                raise bad(f"Invalid value for '{p}.role': {role!r}", param=f"{p}.role")
            content = m.get("content")
            if role == "assistant":
                calls = m.get("tool_calls")
                if content is None and not calls and not m.get("function_call"):
                    raise bad(f"'{p}.content' is required unless 'tool_calls' is set",
                              param=f"{p}.content")
                if calls is not None:
                    if not isinstance(calls, list):
                        raise bad(f"'{p}.tool_calls' must be an array", param=f"{p}.tool_calls")
                    for j, c in enumerate(calls):
                        fn = c.get("function") if isinstance(c, dict) else None
                        if (not isinstance(c, dict) or not isinstance(c.get("id"), str)
                                or not isinstance(fn, dict) or not isinstance(fn.get("name"), str)
                                or not isinstance(fn.get("arguments"), str)):
                            raise bad(f"'{p}.tool_calls[{j}]' is malformed",
                                      param=f"{p}.tool_calls[{j}]")
                        pending_calls.add(c["id"])
            elif role == "tool":
                tcid = m.get("tool_call_id")
                if not isinstance(tcid, str):
                    raise bad(f"'{p}.tool_call_id' is required", param=f"{p}.tool_call_id")
                if tcid not in pending_calls:
                    raise bad("Invalid parameter: messages with role 'tool' must be a response "
                              "to a preceeding message with 'tool_calls'.", param=f"{p}.role")
            if role != "assistant" and content is None:
                raise bad(f"'{p}.content' is required", param=f"{p}.content")
            if content is None or isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise bad(f"'{p}.content' must be a string or an array of parts",
                          param=f"{p}.content")
            for j, part in enumerate(content):
                pp = f"{p}.content[{j}]"
                if not isinstance(part, dict) or "type" not in part:
                    raise bad(f"'{pp}' must be an object with a 'type'", param=pp)
                ptype = part["type"]
                allowed = _USER_PART_TYPES if role == "user" else (
                    {"text", "refusal"} if role == "assistant" else {"text"})
                if ptype not in allowed:
                    raise bad(f"Invalid value: '{ptype}'. Supported values for role "
                              f"'{role}' are: {sorted(allowed)}.", param=f"{pp}.type")
                if ptype == "text" and not isinstance(part.get("text"), str):
                    raise bad(f"'{pp}.text' must be a string", param=f"{pp}.text")
                if ptype == "image_url" and not self.vision:
                    raise bad("Invalid content type. image_url is only supported by certain models.",
                              param=f"messages.[{i}].content.[{j}].type")
                if ptype == "image_url":
                    self._image_part(rec, part, pp)
        self._validate_formats(rec, body)

    def _image_part(self, rec: RequestRecord, part: dict[str, Any], pp: str) -> None:
        iu = part.get("image_url")
        url = iu.get("url") if isinstance(iu, dict) else None
        if not isinstance(url, str):
            raise bad(f"'{pp}.image_url.url' must be a string", param=f"{pp}.image_url")
        if isinstance(iu, dict) and iu.get("detail") not in (None, "auto", "low", "high"):
            raise bad(f"Invalid value for '{pp}.image_url.detail'", param=f"{pp}.image_url.detail")
        m = DATA_URL.match(url)
        if m is None:
            raise bad(f"'{pp}.image_url.url' must be a base64 data URL "
                      "(this server cannot download images)", param=f"{pp}.image_url.url",
                      code="invalid_image_url")
        try:
            data = b64decode_any(m.group("data"))
        except (binascii.Error, ValueError):
            raise bad("Invalid base64 image data", param=f"{pp}.image_url.url",
                      code="invalid_image_format") from None
        problem = self._check_image(data, m.group("mime"))
        if problem:
            raise bad(f"Invalid image: {problem}", param=f"{pp}.image_url.url",
                      code="invalid_image_format")
        rec.has_images = True
        rec.image_sha256.append(hashlib.sha256(data).hexdigest())
        rec.image_mime.append(m.group("mime"))

    def _validate_formats(self, rec: RequestRecord, body: dict[str, Any]) -> None:
        rf = body.get("response_format")
        if rf is not None:
            if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
                raise bad("Invalid 'response_format.type'", param="response_format.type")
            rec.response_format = rf["type"]
            if rf["type"] not in self.response_formats:
                raise bad(f"Invalid parameter: 'response_format' of type '{rf['type']}' is not "
                          "supported with this model.", param="response_format")
            if rf["type"] == "json_schema":
                js = rf.get("json_schema")
                if not isinstance(js, dict):
                    raise bad("Missing required parameter: 'response_format.json_schema'.",
                              param="response_format.json_schema")
                if not isinstance(js.get("name"), str) or not _SCHEMA_NAME.match(js["name"]):
                    raise bad("Invalid 'response_format.json_schema.name': must match "
                              "^[a-zA-Z0-9_-]{1,64}$", param="response_format.json_schema.name")
                if "schema" in js and not isinstance(js["schema"], dict):
                    raise bad("'response_format.json_schema.schema' must be an object",
                              param="response_format.json_schema.schema")
                if js.get("strict") is True and self.check_strict_schemas:
                    problems = strict_schema_problems(js.get("schema") or {})
                    if problems:
                        raise bad(f"Invalid schema for response_format '{js['name']}': "
                                  + "; ".join(problems), param="response_format",
                                  code="invalid_json_schema")
            if rf["type"] == "json_object":
                if "json" not in request_text(body).lower():
                    raise bad("'messages' must contain the word 'json' in some form, to use "
                              "'response_format' of type 'json_object'.", param="messages")
        tools = body.get("tools")
        names: list[str] = []
        if tools and not self.tools:
            raise HttpError(400, oai_error(f"{body['model']} does not support tools", "api_error"))
        if tools is not None:
            if not isinstance(tools, list):
                raise bad("'tools' must be an array", param="tools")
            for i, t in enumerate(tools):
                fn = t.get("function") if isinstance(t, dict) else None
                if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
                    raise bad(f"'tools[{i}]' must be a function tool", param=f"tools[{i}]")
                if not isinstance(fn.get("name"), str) or not _SCHEMA_NAME.match(fn["name"]):
                    raise bad(f"Invalid 'tools[{i}].function.name'", param=f"tools[{i}].function.name")
                params = fn.get("parameters")
                if params is not None and not isinstance(params, dict):
                    raise bad(f"'tools[{i}].function.parameters' must be an object",
                              param=f"tools[{i}].function.parameters")
                if fn.get("strict") is True and self.check_strict_schemas:
                    problems = strict_schema_problems(params or {})
                    if problems:
                        raise bad(f"Invalid schema for function '{fn['name']}': "
                                  + "; ".join(problems), param=f"tools[{i}].function.parameters",
                                  code="invalid_function_parameters")
                names.append(fn["name"])
        choice = body.get("tool_choice")
        rec.tool_choice = choice
        if choice is not None:
            if not tools:
                raise bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                          "'tools' are specified.", param="tool_choice")
            if isinstance(choice, str):
                if choice not in ("none", "auto", "required"):
                    raise bad(f"Invalid value for 'tool_choice': {choice!r}", param="tool_choice")
            elif isinstance(choice, dict):
                name = (choice.get("function") or {}).get("name")
                if choice.get("type") != "function" or name not in names:
                    raise bad(f"Invalid 'tool_choice': function {name!r} is not among the tools",
                              param="tool_choice")
            else:
                raise bad("Invalid type for 'tool_choice'", param="tool_choice")
        if body.get("n") not in (None, 1):
            raise bad("this fake only supports n=1", param="n")
        stream_options = body.get("stream_options")
        if stream_options is not None and not body.get("stream"):
            raise bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                      param="stream_options")

    def _chat(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        body = self._parse_json(raw)
        rec.body = body
        rec.stream = bool(body.get("stream"))
        self._validate_chat(rec, body)
        target = request_target(body)
        rec.mode = target.mode
        fault = self._faults.draw()
        if self._apply_http_fault(h, rec, fault):
            return
        self._maybe_sleep(body, rec)
        resp = self._completion(rec, body, fault)
        headers = {"x-request-id": f"req_fake{rec.seq:06d}", "openai-processing-ms": "1"}
        if rec.stream:
            choice = resp["choices"][0]
            message = choice["message"]
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._finish(h, rec, 200, lambda: self._stream_chat(
                h, resp["id"], resp["created"], rec.model or "", message["content"], message.get("tool_calls", []),
                message["refusal"], choice["finish_reason"], resp["usage"] if include_usage else None, headers))
            return
        self._finish(h, rec, 200, lambda: h.send_json(200, resp, headers))

    def _completion(self, rec: RequestRecord, body: dict[str, Any], fault: Any) -> dict[str, Any]:
        """The chat completion answering a validated request (its content fault applied): what the
        online answer's body and a batch job's output line both carry."""
        target = request_target(body)
        answer = self._call_responder(body)
        reply = answer if isinstance(answer, Reply) else None
        content: str | None
        tool_calls: list[dict[str, Any]] = []
        refusal = None
        if reply is not None:
            content = to_text(reply.content) if reply.content is not None else None
            refusal = reply.refusal
            for k, tc in enumerate(reply.tool_calls or []):
                tool_calls.append({"id": f"call_{rec.seq}_{k}", "type": "function",
                                   "function": {"name": tc["name"],
                                                "arguments": to_text(tc.get("args", {}))}})
        elif target.mode == "tool" or (
            not isinstance(answer, str) and body.get("tools") and body.get("tool_choice") != "none"
            and target.mode == "text"
        ):
            name = target.name or body["tools"][0]["function"]["name"]
            content = None
            tool_calls = [{"id": f"call_{rec.seq}_0", "type": "function",
                           "function": {"name": name, "arguments": to_text(answer)}}]
        else:
            content = to_text(answer)

        if fault is not None and fault.kind in CONTENT_FAULTS:
            rec.fault = fault.kind
            self.stats._add_fault(fault.kind)
            payload = tool_calls[0]["function"]["arguments"] if tool_calls else (content or "")
            if fault.kind == "malformed":
                if tool_calls:
                    tool_calls[0]["function"]["arguments"] = truncate(payload)
                else:
                    content = truncate(payload)
            elif fault.kind == "fenced":
                tool_calls, content = [], fence(payload)
            else:  # empty
                tool_calls, content = [], ""

        if reply is not None and reply.finish_reason:
            finish = reply.finish_reason
        elif tool_calls:
            forced = isinstance(body.get("tool_choice"), dict)
            finish = "stop" if forced else "tool_calls"
        else:
            finish = "stop"

        prompt_tokens = estimate_tokens(request_text(body)) + 4 * len(body["messages"]) \
            + _IMAGE_TOKENS * len(rec.image_sha256)
        out_text = (content or "") + "".join(t["function"]["arguments"] for t in tool_calls)
        completion_tokens = estimate_tokens(out_text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        }
        message: dict[str, Any] = {"role": "assistant", "content": content,
                                   "refusal": refusal, "annotations": []}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {
            "id": f"chatcmpl-fake{rec.seq:06d}", "object": "chat.completion", "created": int(time.time()),
            "model": rec.model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "usage": usage,
        }

    def _stream_chat(self, h: Handler, cid: str, created: int, model: str, content: str | None,
                     tool_calls: list[dict[str, Any]], refusal: str | None, finish: str,
                     usage: dict[str, Any] | None, headers: dict[str, str]) -> None:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None,
                  with_choice: bool = True, usage_: Any = None) -> None:
            obj: dict[str, Any] = {
                "id": cid, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish_reason}] if with_choice else [],
            }
            if usage is not None:
                obj["usage"] = usage_
            h.write_chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

        h.start_chunked(200, "text/event-stream; charset=utf-8", headers)
        chunk({"role": "assistant", "content": "", "refusal": None})
        if refusal:
            chunk({"refusal": refusal})
        for piece in pieces(content or ""):
            chunk({"content": piece})
        for k, tc in enumerate(tool_calls):
            chunk({"tool_calls": [{"index": k, "id": tc["id"], "type": "function",
                                   "function": {"name": tc["function"]["name"], "arguments": ""}}]})
            for piece in pieces(tc["function"]["arguments"]):
                chunk({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
        chunk({}, finish)
        if usage is not None:
            chunk({}, with_choice=False, usage_=usage)
        h.write_chunk(b"data: [DONE]\n\n")
        h.end_chunked()

"""What the fake OpenAI-compatible server's endpoints share: its error bodies, keys and models.

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. :class:`OpenAIBase` is the OpenAI
side's common ground: the constructor, OpenAI's error format (and the 429/5xx answers of its
faults), the Bearer key, the model ids (``GET /v1/models``) and JSON bodies. The endpoints are
added on top: :mod:`.openai_images`, then :mod:`.openai_chat` (:class:`FakeOpenAI`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .faults import Fault, FaultPlan
from .http import FakeServerBase, Handler, HttpError
from .records import RequestRecord


def oai_error(message: str, type_: str = "invalid_request_error",
              param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> HttpError:
    return HttpError(400, oai_error(message, param=param, code=code))


class OpenAIBase(FakeServerBase):
    """The OpenAI fake without its endpoints; see :class:`.openai_chat.FakeOpenAI` for the arguments."""

    api = "openai"

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], Any] | None = None,
        *,
        faults: FaultPlan | Iterable[str | Fault] | None = None,
        api_key: str | None = None,
        models: Iterable[str] | None = None,
        allowed_image_mimes: Iterable[str] = ("image/png",),
        vision: bool = True,
        response_formats: Iterable[str] = ("text", "json_object", "json_schema"),
        tools: bool = True,
        check_strict_schemas: bool = True,
        latency: float | Callable[[Any], float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(
            responder, faults=faults, api_key=api_key,
            allowed_image_mimes=allowed_image_mimes, latency=latency, host=host, port=port,
        )
        self.models = list(models) if models is not None else None
        self.vision = vision
        self.response_formats = tuple(response_formats)
        self.tools = tools
        self.check_strict_schemas = check_strict_schemas
        self._images: dict[str, bytes] = {}
        self._images_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` -- what the SDKs call ``base_url``."""
        return f"{self.url}/v1"

    # -- errors ---------------------------------------------------------------
    def _error_body(self, status: int, message: str, kind: str) -> dict[str, Any]:
        return oai_error(message, "server_error" if status >= 500 else kind)

    def _fault_response(self, status: int, fault: Fault) -> tuple[dict[str, Any], dict[str, str]]:
        if status == 429:
            ra = float(fault.retry_after if fault.retry_after is not None else 1)
            ra_txt = str(int(ra)) if ra == int(ra) else f"{ra:g}"
            return (
                oai_error(
                    f"Rate limit reached for requests. Please try again in {ra_txt}s.",
                    "requests", None, "rate_limit_exceeded",
                ),
                {"Retry-After": ra_txt, "retry-after-ms": str(int(ra * 1000)),
                 "x-ratelimit-remaining-requests": "0"},
            )
        if status == 503:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{float(fault.retry_after):g}"
            return oai_error("The engine is currently overloaded, please try again later",
                             "server_error"), headers
        return oai_error("The server had an error while processing your request. Sorry about that!",
                         "server_error"), {}

    def _auth(self, rec: RequestRecord) -> None:
        auth = rec.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            rec.api_key = auth[7:].strip()
        if self.api_key is not None and rec.api_key != self.api_key:
            shown = (rec.api_key or "")[-4:]
            msg = ("You didn't provide an API key." if not rec.api_key else
                   f"Incorrect API key provided: ...{shown}.")
            raise HttpError(401, oai_error(msg, code="invalid_api_key"))

    def _check_model(self, rec: RequestRecord, body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise bad("you must provide a model parameter", param="model")
        rec.model = model
        if self.models is not None and model not in self.models:
            raise HttpError(404, oai_error(
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model", code="model_not_found"))
        return model

    @staticmethod
    def _parse_json(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad(f"We could not parse the JSON body of your request. ({exc})") from None
        if not isinstance(body, dict):
            raise bad("The request body must be a JSON object.")
        return body

    # -- GET /v1/models -----------------------------------------------------------
    def _model_obj(self, mid: str) -> dict[str, Any]:
        return {"id": mid, "object": "model", "created": 1700000000, "owned_by": "fake"}

    def _models_list(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        ids = self.models if self.models is not None else ["gpt-4o-mini", "gpt-image-1"]
        body = {"object": "list", "data": [self._model_obj(m) for m in ids]}
        self._finish(h, rec, 200, lambda: h.send_json(200, body))

    def _models_retrieve(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        mid = rec.path[len("/v1/models/"):]
        if self.models is not None and mid not in self.models:
            raise HttpError(404, oai_error(f"The model '{mid}' does not exist",
                                           param="model", code="model_not_found"))
        self._finish(h, rec, 200, lambda: h.send_json(200, self._model_obj(mid)))

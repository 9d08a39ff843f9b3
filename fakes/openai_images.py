"""The fake OpenAI-compatible server's images endpoint (``POST /v1/images/generations``).

The fakes (:mod:`cadsynth.fakes`) are HTTP servers on 127.0.0.1 that speak a provider's real
protocol, standing in for a paid API in tests and benchmarks. This one draws a PNG from the
prompt (:func:`.images.make_png`) and answers with it as ``b64_json`` or as a URL it then serves
itself (``GET /_fake/images/{key}.png``), with the usage ``gpt-image-*`` models report.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from .faults import CONTENT_FAULTS
from .http import Handler, HttpError
from .images import garbled, make_lettered_png, make_png
from .openai_base import OpenAIBase, bad, oai_error
from .records import RequestRecord
from .responders import estimate_tokens

_IMAGE_SIZES = {
    "auto", "256x256", "512x512", "1024x1024", "1536x1024", "1024x1536",
    "1792x1024", "1024x1792",
}


class OpenAIImages(OpenAIBase):
    """The OpenAI fake with its images endpoint; :class:`.openai_chat.FakeOpenAI` adds chat.

    By default it paints bands of colour. With ``lettering`` on it writes the prompt's text on the
    image (:func:`.images.make_lettered_png`), and garbles the labels of a ``garble_labels``
    share of prompts (:func:`.images.garbled` says which): a painter for the legibility gate.
    """

    lettering: bool = False
    garble_labels: float = 0.0

    # -- GET /_fake/images/{key}.png ---------------------------------------------
    def _image_file(self, h: Handler, rec: RequestRecord, path: str) -> None:
        self._register(rec, "images.file")
        with self._images_lock:
            data = self._images.get(path.rsplit("/", 1)[-1].removesuffix(".png"))
        if data is None:
            raise HttpError(404, oai_error("no such image", code="not_found"))
        self._finish(h, rec, 200, lambda: h.send_bytes(200, data, "image/png"))

    # -- POST /v1/images/generations ----------------------------------------------
    def _images_generate(self, h: Handler, rec: RequestRecord, raw: bytes) -> None:
        body = self._parse_json(raw)
        rec.body = body
        model = body.get("model") or "dall-e-2"
        if not isinstance(model, str):
            raise bad("'model' must be a string", param="model")
        rec.model = model
        if self.models is not None and model not in self.models:
            raise HttpError(404, oai_error(f"The model `{model}` does not exist.",
                                           param="model", code="model_not_found"))
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise bad("Missing required parameter: 'prompt'.", param="prompt")
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10:
            raise bad("'n' must be an integer between 1 and 10", param="n")
        size = body.get("size") or "auto"
        if size not in _IMAGE_SIZES:
            raise bad(f"Invalid value: '{size}'. Supported values are: {sorted(_IMAGE_SIZES)}",
                      param="size")
        fmt = body.get("response_format")
        if fmt is None:
            fmt = "b64_json" if model.startswith("gpt-image") else "url"
        if fmt not in ("url", "b64_json"):
            raise bad(f"Invalid value for 'response_format': {fmt!r}", param="response_format")
        rec.response_format = fmt
        rec.mode = "image"
        fault = self._faults.draw()
        if self._apply_http_fault(h, rec, fault):
            return
        self._maybe_sleep()
        w, hgt = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        data = []
        for i in range(n):
            if self.lettering:
                png = make_lettered_png(w, hgt, prompt, garble=garbled(prompt, self.garble_labels))
            else:
                png = make_png(w, hgt, f"{prompt}#{i}" if i else prompt, text=prompt)
            if fault is not None and fault.kind in CONTENT_FAULTS:
                png = png[: len(png) // 2] if fault.kind != "empty" else b""
            if fmt == "b64_json":
                item = {"b64_json": base64.b64encode(png).decode(), "revised_prompt": prompt}
            else:
                key = f"img{rec.seq}_{i}"
                with self._images_lock:
                    self._images[key] = png
                item = {"url": f"{self.url}/_fake/images/{key}.png", "revised_prompt": prompt}
            data.append(item)
        if fault is not None and fault.kind in CONTENT_FAULTS:
            rec.fault = fault.kind
            self.stats._add_fault(fault.kind)
            if fault.kind == "empty":
                data = []
        resp: dict[str, Any] = {"created": int(time.time()), "data": data}
        if model.startswith("gpt-image"):
            pt = estimate_tokens(prompt)
            resp["usage"] = {"input_tokens": pt, "output_tokens": 1056 * n,
                             "total_tokens": pt + 1056 * n,
                             "input_tokens_details": {"text_tokens": pt, "image_tokens": 0}}
        self._finish(h, rec, 200, lambda: h.send_json(200, resp))

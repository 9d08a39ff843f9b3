"""The providers' batch APIs, as the batch desk (agents.batch) uses them: send a job, find it
again by cadsynth's id, poll it, read its answers.

`OpenAIBatches`: OpenAI's Batch API (or an OpenAI-compatible server's) through the official SDK.
`GeminiBatches`: the Gemini Developer API's batch mode through google-genai's `client.batches`.
Each speaks in the same words: a `Polled` job (OpenAI's state names), an `Answer` per request
(the HTTP status and body its online request would have had, or why it was lost).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Literal

from cadsynth.config import AgentConfig


@dataclass(frozen=True)
class Polled:
    """A job as the provider last described it."""

    state: str  # the provider's word: validating, in_progress, finalizing, completed, failed, expired, cancelled...
    done: int
    total: int
    reason: str | None = None
    files: tuple[str | None, ...] = ()  # where its answers are (OpenAI: the output and error files)
    inline: tuple[Any, ...] = ()  # ... or the answers themselves (Gemini: inline responses)

    @property
    def open(self) -> bool:
        return self.state in ("validating", "in_progress", "finalizing", "cancelling")


@dataclass(frozen=True)
class Answer:
    """One request's end in a job: the HTTP status and body the server answered it with, or why it was lost."""

    status: int | None = None
    body: dict[str, Any] | None = None
    lost: str | None = None  # expired, cancelled, job_failed, missing


class OpenAIBatches:
    """OpenAI's Batch API, or an OpenAI-compatible server's (a LiteLLM proxy, Azure OpenAI), through
    the official SDK: upload a JSONL file, create a batch over it for `/v1/chat/completions`,
    retrieve it, read its output and error files."""

    URL: Literal["/v1/chat/completions"] = "/v1/chat/completions"
    PATH_END = "/chat/completions"  # the online request a batching call's transport hands over

    def __init__(self, agent: AgentConfig):
        import openai

        from cadsynth.agents.models import api_key, tls_context

        self.client = openai.AsyncOpenAI(
            api_key=api_key(agent) or "not-needed", base_url=agent.base_url, max_retries=2, timeout=600,
            http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()),
        )

    def line(self, key: str, body: dict[str, Any]) -> bytes:
        return (json.dumps({"custom_id": key, "method": "POST", "url": self.URL, "body": body}) + "\n").encode()

    async def supported(self) -> bool:
        """Whether the server has the Batch API: most self-hosted servers answer 404 there."""
        import openai

        try:
            await self.client.batches.list(limit=1)
        except (openai.NotFoundError, openai.BadRequestError):
            return False
        except openai.APIStatusError as exc:
            return exc.status_code != 405
        except openai.APIConnectionError:
            return True  # a server that does not answer: the job's own requests say so, as online calls would
        return True

    async def submit(self, job: str, data: bytes) -> str:
        """The job's input file uploaded and a batch created over it; the batch carries the job's id."""
        upload = await self.client.files.create(file=(f"{job}.jsonl", data), purpose="batch")
        batch = await self.client.batches.create(
            input_file_id=upload.id, endpoint=self.URL, completion_window="24h", metadata={"cads_job": job}
        )
        return batch.id

    async def find(self, job: str, since: float) -> str | None:
        """The provider's id of the batch that carries `job`, if one was created (the newest first,
        back to shortly before the job was stored)."""
        async for batch in self.client.batches.list(limit=100):
            if (batch.metadata or {}).get("cads_job") == job:
                return batch.id
            if batch.created_at < since - 300:
                return None
        return None

    async def poll(self, provider_id: str) -> Polled:
        batch = await self.client.batches.retrieve(provider_id)
        counts = batch.request_counts
        errors = [e.message for e in (batch.errors.data if batch.errors and batch.errors.data else []) if e.message]
        return Polled(
            state=batch.status, done=(counts.completed + counts.failed) if counts else 0, total=counts.total if counts else 0,
            reason=errors[0] if errors else None, files=(batch.output_file_id, batch.error_file_id),
        )

    async def answers(self, polled: Polled) -> dict[str, Answer]:
        """Every request the output and error files speak of, by custom id."""
        found: dict[str, Answer] = {}
        for file_id in polled.files:
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for text in content.text.splitlines():
                if not text.strip():
                    continue
                row = json.loads(text)
                response, error = row.get("response"), row.get("error")
                if response and response.get("body") is not None:
                    found[row["custom_id"]] = Answer(status=int(response.get("status_code") or 500), body=response["body"])
                else:
                    code = str((error or {}).get("code") or "missing")
                    found[row["custom_id"]] = Answer(lost="expired" if "expired" in code else code[:64])
        return found

    async def close(self) -> None:
        await self.client.close()


class GeminiBatches:
    """The Gemini Developer API's batch mode through google-genai's `client.aio.batches`. A job's
    requests travel inline while they fit its 20 MB limit, each carrying its key as metadata, and the
    answers come back inline too; a bigger job is uploaded as a JSONL input file (the Files API) and
    answered in a responses file. Either way no Cloud Storage bucket or Vertex AI is involved."""

    PATH_END = ":generateContent"
    INLINE_BYTES = 19_000_000  # under the API's 20 MB of inline requests; a bigger job goes as a file
    STATES = {  # google-genai's job states in the words the desk uses (OpenAI's)
        "JOB_STATE_PENDING": "validating", "JOB_STATE_QUEUED": "validating", "JOB_STATE_RUNNING": "in_progress",
        "JOB_STATE_SUCCEEDED": "completed", "JOB_STATE_FAILED": "failed", "JOB_STATE_CANCELLED": "cancelled",
        "JOB_STATE_CANCELLING": "cancelling", "JOB_STATE_EXPIRED": "expired", "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    }
    # What a generateContent body holds beside its contents and generationConfig: in the SDK's
    # request they are fields of its config.
    CONFIG_FIELDS = ("systemInstruction", "tools", "toolConfig", "safetySettings", "cachedContent", "labels")

    def __init__(self, agent: AgentConfig):
        from google import genai
        from google.genai import types

        from cadsynth.agents.models import api_key

        options = types.HttpOptions(base_url=agent.base_url) if agent.base_url else None
        self.client = genai.Client(api_key=api_key(agent) or "not-needed", http_options=options)
        self.model = agent.model

    def line(self, key: str, body: dict[str, Any]) -> bytes:
        """A line of batch mode's input file: the request's key and its generateContent body."""
        return (json.dumps({"key": key, "request": body}) + "\n").encode()

    async def supported(self) -> bool:
        from google.genai import errors

        try:
            await self.client.aio.batches.list(config={"page_size": 1})
        except errors.ClientError as exc:
            return exc.code not in (404, 405)
        except errors.APIError:
            return True
        return True

    def _request(self, key: str, body: dict[str, Any]) -> Any:
        """The SDK's inline request for a generateContent body (JSON, so its images decode)."""
        from google.genai import types

        config = {**(body.get("generationConfig") or {}), **{k: body[k] for k in self.CONFIG_FIELDS if k in body}}
        return types.InlinedRequest.model_validate_json(
            json.dumps({"contents": body.get("contents"), "config": config, "metadata": {"key": key}})
        )

    async def submit(self, job: str, data: bytes) -> str:
        src: Any
        if len(data) <= self.INLINE_BYTES:
            lines = [json.loads(text) for text in data.decode().splitlines() if text.strip()]
            src = [self._request(x["key"], x["request"]) for x in lines]
        else:
            upload = await self.client.aio.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl", "display_name": job})
            src = str(upload.name)
        batch = await self.client.aio.batches.create(model=self.model, src=src, config={"display_name": job})
        return str(batch.name)

    async def find(self, job: str, since: float) -> str | None:
        async for batch in await self.client.aio.batches.list(config={"page_size": 100}):
            if batch.display_name == job:
                return str(batch.name)
            created = batch.create_time.timestamp() if batch.create_time else since
            if created < since - 300:
                return None
        return None

    async def poll(self, provider_id: str) -> Polled:
        batch = await self.client.aio.batches.get(name=provider_id)
        state = self.STATES.get(batch.state.name if batch.state else "", "validating")
        answers = tuple(batch.dest.inlined_responses or ()) if batch.dest else ()
        files = (batch.dest.file_name,) if batch.dest and batch.dest.file_name else ()
        reason = batch.error.message if batch.error and batch.error.message else None
        return Polled(state=state, done=len(answers), total=len(answers), reason=reason, files=files, inline=answers)

    async def answers(self, polled: Polled) -> dict[str, Answer]:
        """Each response (inline, or a line of the responses file) as the body generateContent would
        have answered with, by its key."""
        found: dict[str, Answer] = {}
        for name in polled.files:
            data = await self.client.aio.files.download(file=str(name))
            for text in data.decode().splitlines():
                if text.strip():
                    row = json.loads(text)
                    found[str(row["key"])] = self._answer(row.get("response"), row.get("error"))
        for item in polled.inline:
            key = (item.metadata or {}).get("key")
            if key is None:
                continue
            response = item.response.model_dump(
                mode="json", by_alias=True, exclude_none=True,
                exclude={"sdk_http_response", "automatic_function_calling_history", "parsed"},
            ) if item.response is not None else None
            error = item.error.model_dump(mode="json", exclude_none=True) if item.error is not None else None
            found[key] = self._answer(response, error)
        return found

    @staticmethod
    def _answer(response: dict[str, Any] | None, error: dict[str, Any] | None) -> Answer:
        """A generateContent body as the online request would have had it, or the error it met."""
        if response is not None:
            return Answer(status=200, body=response)
        code = int((error or {}).get("code") or 500)
        message = str((error or {}).get("message") or "")
        return Answer(status=code, body={"error": {"code": code, "message": message,
                                                   "status": "INTERNAL" if code >= 500 else "INVALID_ARGUMENT"}})

    async def close(self) -> None:
        await self.client.aio.aclose()

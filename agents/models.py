"""The one model factory: every agent's chat model (and a painter's image model) is built here.

Clients are built with their own retries off (ChatOpenAI max_retries=0; google-genai counts the
first request as an attempt, so max_retries=1 is no retry): cadsynth's retry policy is the only
one, so every fault is seen and counted. Keys are read from the environment when a model is
built and live only inside the client.
"""

from __future__ import annotations

import base64
import functools
import functools
import logging
import os
import re
import ssl
import warnings
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from cadsynth.agents.faults import Malformed
from cadsynth.config import AgentConfig, RunConfig, WorldConfig


class MissingKeyError(RuntimeError):
    pass


def _missing(agent: AgentConfig) -> str | None:
    var = agent.needs_key()
    if var is None or os.environ.get(var):
        return None
    return f"agent {agent.name!r} ({agent.provider} {agent.model}): environment variable {var} is {'empty' if var in os.environ else 'not set'}; export it with the API key"


def missing_keys(config: RunConfig) -> list[str]:
    """One line per agent whose key is not in the environment: checked before any call or write."""
    return [line for line in map(_missing, config.panel) if line]


def api_key(agent: AgentConfig) -> str | None:
    """The agent's key, read from the environment; never stored anywhere."""
    problem = _missing(agent)
    if problem:
        raise MissingKeyError(problem)
    var = agent.needs_key()
    return os.environ[var] if var else None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings every HTTP client shares (httpx's defaults, SSL_CERT_FILE honoured).

    Building them reads the whole CA bundle, about 25 ms here: once per client, a run of 16 lanes
    with three agents each spent over a second on it before its first request.
    """
    import httpx

    return httpx.create_ssl_context()


def model_identity(agent: AgentConfig, *, seed: int = 0, world: WorldConfig | None = None) -> dict[str, Any]:
    """What decides a model's answer besides its messages and the agent's model, endpoint and
    temperature (which every call fingerprint holds): for a simulated model, its persona, the
    run's seed and the world it simulates."""
    if agent.provider != "sim":
        return {}
    return {"persona": agent.sim.model_dump(mode="json"), "seed": seed, "world": (world or WorldConfig()).model_dump(mode="json")}


def make_chat_model(
    agent: AgentConfig, *, seed: int = 0, world: WorldConfig | None = None, notes: Any = None
) -> BaseChatModel:
    """The agent's chat model. `notes` (store.notes.Notes) is where a simulated model keeps its truth."""
    if agent.provider == "sim":
        from cadsynth.agents.sim.models import SimChatModel

        return SimChatModel(
            agent=agent.name, model_name=agent.model, persona=agent.sim, seed=seed, world_config=world or WorldConfig(),
            notes=notes,
        )
    if agent.provider == "openai":
        import httpx
        from langchain_openai import ChatOpenAI

        from cadsynth.agents.batch import BatchTransport

        # A local OpenAI-compatible server (vLLM, Ollama, SGLang) takes any key. The HTTP client is
        # the model's own: langchain-openai's default is shared process-wide, and its pooled
        # connections break when a second event loop (a later run, a test) uses them. Its transport
        # sends a batching call's request to its batch desk instead (agents.batch).
        online = httpx.AsyncHTTPTransport(verify=tls_context())
        return ChatOpenAI(
            model=agent.model,
            base_url=agent.base_url,
            api_key=SecretStr(api_key(agent) or "not-needed"),
            temperature=agent.temperature,
            timeout=agent.timeout,
            max_retries=0,
            http_async_client=httpx.AsyncClient(timeout=agent.timeout, transport=BatchTransport(online)),
        )
    if agent.provider == "google":
        import httpx
        from langchain_google_genai import ChatGoogleGenerativeAI

        from cadsynth.agents.batch import BatchTransport

        # The client's transport sends a batching call's request to its batch desk (agents.batch).
        # Only its async client is ever used (`ainvoke`); the sync one is built with the same
        # arguments and left alone.
        return ChatGoogleGenerativeAI(
            model=agent.model,
            api_key=SecretStr(api_key(agent) or "not-needed"),
            base_url=agent.base_url,
            vertexai=False,
            temperature=agent.temperature,
            timeout=agent.timeout,
            max_retries=1,
            client_args={"transport": BatchTransport(httpx.AsyncHTTPTransport(verify=tls_context()))},
        )
    raise ValueError(f"agent {agent.name!r}: unknown provider {agent.provider!r}")


class _SchemaKeywordsDropped(logging.Filter):
    """Drops langchain-google-genai's "Key 'additionalProperties' is not supported in schema" lines.

    Our schemas forbid extra keys (OpenAI's strict mode needs additionalProperties: false) and
    nest models under $defs. Gemini's function declarations have neither keyword, so the client
    leaves them out, which is what we want, and logs it on every call.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not re.fullmatch(r"Key '(additionalProperties|\$defs)' is not supported in schema, ignoring", record.getMessage())


logging.getLogger("langchain_google_genai._function_utils").addFilter(_SchemaKeywordsDropped())
# langchain-openai also warns on stderr when a server refuses json_schema, with advice about its own
# API; cadsynth says it in its own words (the call's one-line error, `cads check`'s suggestion).
warnings.filterwarnings("ignore", message="This model does not support OpenAI's structured output feature", category=UserWarning)


def _block_types_once() -> None:
    """langchain-core works out its data content block types from their type hints on every check
    (`typing.get_type_hints` over a union, three times a message with an image): 9% of a call's
    client CPU, measured. The answer depends only on the installed langchain-core, so it is kept."""
    from langchain_core.messages import content

    found = getattr(content, "_get_data_content_block_types", None)
    if found is not None and not hasattr(found, "cache_info"):
        content._get_data_content_block_types = functools.cache(found)  # type: ignore[attr-defined]


_block_types_once()


# --- painters ---------------------------------------------------------------------------------


class ImageModel(Protocol):
    async def generate(self, prompt: str) -> tuple[bytes, dict[str, int]]:
        """A PNG for the prompt and the call's token usage."""
        ...


class OpenAIImages:
    """The images API (gpt-image-1, dall-e-3) on OpenAI or a compatible server."""

    def __init__(self, agent: AgentConfig):
        import openai

        self.model = agent.model
        self.client = openai.AsyncOpenAI(
            api_key=api_key(agent) or "not-needed", base_url=agent.base_url, timeout=agent.timeout, max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=tls_context()),
        )

    async def generate(self, prompt: str) -> tuple[bytes, dict[str, int]]:
        extra: dict[str, Any] = {}
        if not self.model.startswith("gpt-image"):
            extra["response_format"] = "b64_json"  # gpt-image models always answer in base64
        out = await self.client.images.generate(model=self.model, prompt=prompt, n=1, size="1024x1024", **extra)
        if not out.data or not out.data[0].b64_json:
            raise Malformed("the images API answered without an image")
        usage = getattr(out, "usage", None)
        return base64.b64decode(out.data[0].b64_json), {
            "input_tokens": int(getattr(usage, "input_tokens", 0) or 0),
            "output_tokens": int(getattr(usage, "output_tokens", 0) or 0),
        }


_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,(.*)$", re.S)


class GeminiImages:
    """A Gemini image model: a chat call whose answer carries the image inline."""

    def __init__(self, agent: AgentConfig):
        from langchain_google_genai import ChatGoogleGenerativeAI

        self.chat = ChatGoogleGenerativeAI(
            model=agent.model,
            api_key=SecretStr(api_key(agent) or "not-needed"),
            base_url=agent.base_url,
            vertexai=False,
            timeout=agent.timeout,
            max_retries=1,
            response_modalities=["TEXT", "IMAGE"],
        )

    async def generate(self, prompt: str) -> tuple[bytes, dict[str, int]]:
        message = await self.chat.ainvoke(prompt)
        meta: dict[str, Any] = dict(message.usage_metadata or {})
        usage = {"input_tokens": int(meta.get("input_tokens", 0)), "output_tokens": int(meta.get("output_tokens", 0))}
        for block in message.content if isinstance(message.content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "image" and block.get("base64"):
                return base64.b64decode(block["base64"]), usage
            match = _DATA_URL.match(str((block.get("image_url") or {}).get("url", "")))
            if match:
                return base64.b64decode(match.group(1)), usage
        raise Malformed("the image model answered without an image")


def make_image_model(agent: AgentConfig) -> ImageModel:
    if agent.provider == "openai":
        return OpenAIImages(agent)
    if agent.provider == "google":
        return GeminiImages(agent)
    from cadsynth.agents.sim.models import SimImageModel

    return SimImageModel(agent=agent.name)

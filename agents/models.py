"""The one model factory: every agent's chat model is built here, from its config."""

from __future__ import annotations

import os

from langchain_core.language_models import BaseChatModel

from cadsynth.config import AgentConfig


class MissingKeyError(RuntimeError):
    pass


def api_key(agent: AgentConfig) -> str | None:
    """The agent's key, read from the environment at call time; never stored anywhere."""
    if agent.api_key_env is None:
        return None
    value = os.environ.get(agent.api_key_env)
    if not value:
        raise MissingKeyError(
            f"agent {agent.name!r}: environment variable {agent.api_key_env} is not set; export it with the API key"
        )
    return value


def make_chat_model(agent: AgentConfig, *, seed: int = 0) -> BaseChatModel:
    if agent.provider == "sim":
        from cadsynth.agents.sim.models import SimChatModel

        return SimChatModel(agent=agent.name, model_name=agent.model, persona=agent.sim, seed=seed)
    if agent.provider == "openai":
        from langchain_openai import ChatOpenAI

        # A base_url without a key is a local OpenAI-compatible server (vLLM, Ollama, SGLang).
        key = api_key(agent) or ("not-needed" if agent.base_url else None)
        return ChatOpenAI(model=agent.model, base_url=agent.base_url, api_key=key, temperature=agent.temperature)
    if agent.provider == "google":
        from langchain_google_genai import ChatGoogleGenerativeAI

        return ChatGoogleGenerativeAI(model=agent.model, google_api_key=api_key(agent), temperature=agent.temperature)
    raise ValueError(f"agent {agent.name!r}: unknown provider {agent.provider!r}")

"""Run configuration: a YAML file validated by pydantic, or the built-in simulated panel.

Only the *names* of environment variables holding API keys live here; the keys themselves are
read at call time and never reach the config that is stored with a run.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cadsynth.domain import Capability, Role

Provider = Literal["sim", "openai", "google"]


class ConfigError(ValueError):
    """A config problem, phrased as one line that names the field and what to do."""


class SimPersona(BaseModel):
    """How a simulated agent behaves: the knobs that stand in for a real model's strengths."""

    model_config = ConfigDict(extra="forbid")

    skill: float = Field(default=0.0, ge=-3.0, le=3.0, description="Judging skill offset (logit)")
    flaw_rate: float = Field(default=0.15, ge=0.0, le=1.0, description="Chance a proposal's reference is wrong")
    capability_skill: dict[Capability, float] = Field(default_factory=dict)
    detect_rate: float = Field(default=0.6, ge=0.0, le=1.0, description="Chance a critic spots a wrong reference")
    fix_rate: float = Field(default=0.8, ge=0.0, le=1.0, description="Chance a revision fixes a wrong reference")


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    provider: Provider
    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    roles: list[Role] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    sim: SimPersona = Field(default_factory=SimPersona)


class ConsensusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_agree: int = Field(default=1, ge=1, description="C at or above this keeps a problem")
    pool_max_agree: int | None = Field(
        default=None, ge=1, description="C at or below this (and >= min_agree) joins the adversarial pool; default K-1"
    )


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    panel: list[AgentConfig] = Field(min_length=1)
    rounds: int = Field(default=8, ge=1, le=1000)
    target: int = Field(default=40, ge=1, description="Stop once this many samples are kept")
    proposals_per_agent: int = Field(default=3, ge=1, le=50)
    seed: int = 0
    seeds: Path | None = Field(default=None, description="JSONL file of seed problems or task descriptions")
    consensus: ConsensusConfig = Field(default_factory=ConsensusConfig)
    adversary: bool = True
    critique: bool = True

    @model_validator(mode="after")
    def _check_panel(self) -> RunConfig:
        names = [agent.name for agent in self.panel]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"agent name {duplicate!r} appears twice; give every agent its own name")
        for role in ("proposer", "judge"):
            if not self.agents(role):
                raise ValueError(f"no agent has the role {role!r}; add it to some agent's roles")
        if self.adversary and not self.agents("adversary"):
            raise ValueError("adversary is on but no agent has the role 'adversary'; add it or set adversary: false")
        return self

    def agents(self, role: Role) -> list[AgentConfig]:
        return [agent for agent in self.panel if role in agent.roles]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}"


def parse_config(data: object, source: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None
    return config


def load_config(path: Path | None) -> RunConfig:
    """Read a YAML config; None means the built-in simulated panel."""
    if path is None:
        text = resources.files("cadsynth").joinpath("default.yaml").read_text()
        return parse_config(yaml.safe_load(text), "built-in panel")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; pass a YAML file or leave it out for the simulated panel")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    config = parse_config(data, str(path))
    if config.seeds is not None and not config.seeds.is_absolute():
        # Seed files are named relative to the config that names them.
        config = config.model_copy(update={"seeds": (path.parent / config.seeds)})
    return config

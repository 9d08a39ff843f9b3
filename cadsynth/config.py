"""Run configuration: a YAML file validated by pydantic, or the built-in simulated panel.

Only the *names* of environment variables holding API keys live here; the keys themselves are
read at call time and never reach the config that is stored with a run.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cadsynth.domain import Capability, Role

Provider = Literal["sim", "openai", "google"]
# How an agent asks for structured output. json_text is for servers without JSON-schema support:
# the schema goes into the prompt and the JSON is parsed from the answer's text.
StructuredOutput = Literal["json_schema", "function_calling", "json_text"]

# List prices in USD per million tokens (input, output) when this was written; `prices:` in a
# config overrides or adds to them. Models not listed (local servers, the simulator) cost 0.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-image-1": (5.00, 40.00),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash-image": (0.30, 30.00),
}


class ConfigError(ValueError):
    """A config problem, phrased as one line that names the field and what to do."""


class SimPersona(BaseModel):
    """How a simulated agent behaves: the knobs that stand in for a real model's strengths."""

    model_config = ConfigDict(extra="forbid")

    skill: float = Field(default=0.0, ge=-3.0, le=3.0, description="Judging skill offset (logit)")
    flaw_rate: float = Field(default=0.15, ge=0.0, le=1.0, description="Chance a proposal's reference is wrong")
    capability_skill: dict[Capability, float] = Field(default_factory=dict)
    detect_rate: float = Field(default=0.6, ge=0.0, le=1.0, description="Chance a critic spots a wrong reference")
    check_rate: float = Field(
        default=0.85, ge=0.0, le=1.0,
        description="Chance a critic asked the consistency gate's explicit checks spots a conflict or a wrong reference",
    )
    fix_rate: float = Field(default=0.8, ge=0.0, le=1.0, description="Chance a revision fixes a wrong reference")
    latency: float = Field(default=0.0, ge=0.0, le=60.0, description="Seconds each call takes, like a model's")


class WorldConfig(BaseModel):
    """The simulated world's failure modes, each at its own rate, each recorded in the simulator's
    truth so stats can measure what reached the kept samples. Only simulated agents read these."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(default=0, description="The world's own seed: shared by lanes, so proposers converge across them")
    text_answerable_rate: float = Field(
        default=0.08, ge=0.0, le=1.0, description="Chance a proposed question states the values it asks about"
    )
    conflict_rate: float = Field(
        default=0.08, ge=0.0, le=1.0, description="Chance the image lacks or contradicts what the question refers to"
    )
    duplicate_rate: float = Field(
        default=0.10, ge=0.0, le=1.0, description="Chance a proposer converges on a popular problem others also write"
    )
    blind_spot_share: float = Field(
        default=0.15, ge=0.0, le=1.0, description="Share of templates on which the models share one mistake"
    )
    blind_spot_strength: float = Field(
        default=0.6, ge=0.0, le=1.0, description="Chance a judge makes the shared mistake on such a template"
    )

    @classmethod
    def clean(cls) -> WorldConfig:
        """The world without failure modes (before issue 11): for tests about something else."""
        return cls(text_answerable_rate=0.0, conflict_rate=0.0, duplicate_rate=0.0, blind_spot_share=0.0)


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    provider: Provider
    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    roles: list[Role] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    structured_output: StructuredOutput = "json_schema"
    timeout: float = Field(default=120.0, gt=0.0, le=3600.0, description="Seconds before one request is abandoned")
    sim: SimPersona = Field(default_factory=SimPersona)
    stand_in_for: str | None = Field(
        default=None, description="Dry runs only: the provider this simulated agent stands in for"
    )
    seed_images: bool | None = Field(
        default=None,
        description="Attach a seed's image to the proposer's prompt (default: yes, except for a simulated "
        "agent, which does not look at it, unless it stands in for a real one)",
    )
    batch: bool | None = Field(
        default=None, description="false: this agent answers online even when the run batches (`batch: true`)"
    )

    @property
    def sees_seed_images(self) -> bool:
        if self.seed_images is not None:
            return self.seed_images
        return self.provider != "sim" or self.stand_in_for is not None

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, url: str | None) -> str | None:
        if url is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
            raise ValueError("use a server's http(s) URL, e.g. http://127.0.0.1:8000/v1")
        return url

    @model_validator(mode="after")
    def _check_painter(self) -> AgentConfig:
        if self.roles == ["painter"] or "painter" not in self.roles:
            return self
        raise ValueError(f"agent {self.name!r}: a painter is an image model; give it no other role")

    def needs_key(self) -> str | None:
        """The env var this agent's key must be in, or None (simulated, or a local server)."""
        if self.provider == "sim":
            return None
        if self.api_key_env:
            return self.api_key_env
        if self.base_url:
            return None  # vLLM, Ollama, SGLang, LM Studio: no key unless api_key_env says so
        return "OPENAI_API_KEY" if self.provider == "openai" else "GOOGLE_API_KEY"


class AutoConcurrency(BaseModel):
    """`concurrency: auto`: how many requests an endpoint serves best at once, found while running
    (agents.limits.Concurrency), between `min` and `max`."""

    model_config = ConfigDict(extra="forbid")

    min: int = Field(default=1, ge=1)
    max: int = Field(default=256, ge=1, le=4096)

    @model_validator(mode="after")
    def _check_bounds(self) -> AutoConcurrency:
        if self.min > self.max:
            raise ValueError(f"concurrency min {self.min} is above max {self.max}")
        return self


def _auto(value: Any) -> Any:
    """`auto` or `{min: N, max: M}` as an AutoConcurrency; a number as it is."""
    if value == "auto":
        return AutoConcurrency()
    if isinstance(value, dict):
        try:
            return AutoConcurrency.model_validate(value)
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    if isinstance(value, str):
        raise ValueError("give a number of requests, auto, or {min: N, max: M}")
    return value


class Limit(BaseModel):
    """What a provider allows one model: shared by every agent and task that calls it."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider
    model: str = Field(min_length=1)
    base_url: str | None = Field(default=None, description="Only calls to this server; null = any")
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="Tokens (input + output) per minute")
    concurrency: Annotated[int, Field(ge=1)] | AutoConcurrency | None = Field(
        default=None, description="Requests in flight at once: a number, or auto (optionally {min: N, max: M})"
    )

    @field_validator("concurrency", mode="before")
    @classmethod
    def _auto_concurrency(cls, value: Any) -> Any:
        return _auto(value)


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0.0, description="USD per million input tokens")
    output: float = Field(ge=0.0, description="USD per million output tokens")
    batch_input: float | None = Field(default=None, ge=0.0, description="In a batch job; default: half of input")
    batch_output: float | None = Field(default=None, ge=0.0, description="In a batch job; default: half of output")

    def batched(self) -> Price:
        """The price of the same tokens in a provider's batch job (OpenAI and Gemini charge half)."""
        return Price(
            input=self.input / 2 if self.batch_input is None else self.batch_input,
            output=self.output / 2 if self.batch_output is None else self.batch_output,
        )


class BatchConfig(BaseModel):
    """How a batching run (`batch: true`) gathers its calls into provider batch jobs and waits for them."""

    model_config = ConfigDict(extra="forbid")

    gather: float = Field(
        default=2.0, gt=0.0, le=600.0, description="Seconds without a new call before a phase's calls go as one job"
    )
    poll: float = Field(default=10.0, gt=0.0, le=3600.0, description="Seconds between a job's first polls (backs off to 10x)")
    max_requests: int = Field(default=50_000, ge=1, le=50_000, description="Requests per job at most (OpenAI: 50,000)")
    max_bytes: int = Field(
        default=190_000_000, ge=1_000, le=200_000_000, description="Bytes of a job's input file at most (OpenAI: 200 MB)"
    )
    job_failures: int = Field(
        default=3, ge=1, le=100, description="Jobs in a row that fail whole before the run stops"
    )


class RetryConfig(BaseModel):
    """cadsynth's retry policy for 429, 5xx, timeouts and dropped connections (the clients' own is off)."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(default=5, ge=1, le=20, description="Requests per call at most, the first included")
    base_delay: float = Field(default=1.0, ge=0.0, le=600.0, description="Backoff before the first retry, seconds")
    max_delay: float = Field(default=60.0, ge=0.0, le=3600.0, description="Longest backoff, seconds")


class ConsensusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_agree: int = Field(default=1, ge=1, description="C at or above this keeps a problem")
    pool_max_agree: int | None = Field(
        default=None, ge=1, description="C at or below this (and >= min_agree) joins the adversarial pool; default K-1"
    )
    weighted: bool = Field(
        default=False,
        description="Weigh each judge by its estimated accuracy over the closed rounds (graphs.consensus); needs jury: full",
    )


class NearDuplicatesConfig(BaseModel):
    """Near-duplicate removal over a whole run (graphs.dedup): a duplicate is close in image AND in question."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    image_distance: int = Field(
        default=20, ge=0, le=256, description="Perceptual hashes (256 bits) at most this many bits apart count as the same image"
    )
    question_similarity: float = Field(
        default=0.6, gt=0.0, le=1.0, description="Questions whose word-pair Jaccard similarity reaches this count as the same"
    )


class GatesConfig(BaseModel):
    """Quality gates beyond the consensus rule, each a switch of its own; each costs calls (or
    hashing) and removes problems."""

    model_config = ConfigDict(extra="forbid")

    image_necessity: bool = Field(
        default=False, description="One blind judge per problem; a problem it solves without the image is dropped"
    )
    consistency: bool = Field(
        default=False,
        description="Critics check image, question and reference against each other; a conflict is revised once, then dropped",
    )
    legibility: bool = Field(
        default=False,
        description="An OCR model (Tesseract) reads every image; texts the question names must be read, or it is drawn once more, then dropped",
    )
    near_duplicates: NearDuplicatesConfig = Field(default_factory=NearDuplicatesConfig)


class RayConfig(BaseModel):
    """Where a run's lanes go when they run on a Ray cluster (see cadsynth.cluster)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        default=None,
        description="auto: the cluster `ray start` made on this machine; HOST:PORT or ray://HOST:PORT: that cluster; null: start one here",
    )
    lane_cpus: float = Field(default=1.0, gt=0.0, le=64.0, description="CPUs Ray reserves per lane (painting is CPU work)")
    retries: int = Field(default=3, ge=0, le=100, description="Times a lane is started again after its worker died")

    @field_validator("address")
    @classmethod
    def _check_address(cls, address: str | None) -> str | None:
        if address is not None and not re.fullmatch(r"auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d+", address):
            raise ValueError("use auto, HOST:PORT or ray://HOST:PORT, or null to start a cluster here")
        return address


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    panel: list[AgentConfig] = Field(min_length=1)
    rounds: int = Field(default=8, ge=1, le=10_000)  # per lane; the run's recursion_limit allows 20,000 (5 steps a round)
    target: int = Field(default=40, ge=1, description="Stop once this many samples are kept")
    proposals_per_agent: int = Field(default=3, ge=1, le=50)
    concurrency: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        default=8,
        description="Model calls in flight at once, over all lanes; auto: each endpoint finds its own (limits)",
    )
    jury: Literal["full", "adaptive"] = Field(
        default="full", description="adaptive: ask judges in order and stop once the outcome is settled"
    )
    checkpoints: Literal["rounds", "all"] = Field(
        default="rounds", description="rounds: keep the checkpoints between rounds (resume, replay); all: every step (Studio)"
    )
    lanes: int = Field(default=1, ge=1, le=256, description="Independent debates run side by side; the target is split")
    lane: int | None = Field(default=None, ge=0, description="Set by cadsynth in a lane's own config: which lane it is")
    seed: int = 0
    seeds: Path | None = Field(default=None, description="JSONL file of seed problems or task descriptions")
    consensus: ConsensusConfig = Field(default_factory=ConsensusConfig)
    adversary: bool = True
    critique: bool = True
    rationalize: bool = Field(
        default=False,
        description="STaR: judges that missed an adversarial-pool problem are shown the reference and write a rationale reaching it",
    )
    review: bool = Field(
        default=False,
        description="Pause after each round's consensus until a person keeps, discards or pools its problems (`cads review`, Studio)",
    )
    paint: Literal["spec", "model"] = Field(
        default="spec", description="spec: render image_spec (a painter model only when a proposal has none); model: always the painter"
    )
    gates: GatesConfig = Field(default_factory=GatesConfig)
    world: WorldConfig = Field(default_factory=WorldConfig, description="The simulated world (provider sim only)")
    limits: list[Limit] = Field(default_factory=list)
    prices: dict[str, Price] = Field(default_factory=dict, description="Per model name, USD per million tokens")
    retry: RetryConfig = Field(default_factory=RetryConfig)
    batch: bool = Field(
        default=False,
        description="Send each phase's calls as provider batch jobs (half price, answered within 24 hours); "
        "agents without a batch endpoint, and simulated ones, answer online",
    )
    batch_fallback: Literal["batch", "online"] = Field(
        default="batch", description="Where a request that errored or expired inside a job is sent again"
    )
    batching: BatchConfig = Field(default_factory=BatchConfig)
    ray: RayConfig | None = Field(default=None, description="Run the lanes on a Ray cluster (PostgreSQL store only)")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _number_or_auto(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "auto":
            raise ValueError("give a number of calls, or auto")
        return value

    @model_validator(mode="after")
    def _check_panel(self) -> RunConfig:
        if self.lanes > self.target:
            raise ValueError(f"lanes {self.lanes} > target {self.target}: every lane needs a share of the target")
        if self.lane is not None and self.lane >= self.lanes:
            raise ValueError(f"lane {self.lane} is not below lanes {self.lanes}")
        names = [agent.name for agent in self.panel]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise ValueError(f"agent name {duplicate!r} appears twice; give every agent its own name")
        for role in ("proposer", "judge"):
            if not self.agents(role):
                raise ValueError(f"no agent has the role {role!r}; add it to some agent's roles")
        if self.adversary and not self.agents("adversary"):
            raise ValueError("adversary is on but no agent has the role 'adversary'; add it or set adversary: false")
        if self.consensus.weighted and self.jury == "adaptive":
            # An adaptive jury settles on counts; under weights a count cannot say the outcome is settled.
            raise ValueError("consensus.weighted needs jury: full; an adaptive jury settles on unweighted counts")
        if self.paint == "model" and not self.agents("painter"):
            raise ValueError("paint is 'model' but no agent has the role 'painter'; add one or set paint: spec")
        for painter in self.agents("painter"):
            if painter.provider == "sim" and painter.stand_in_for is None:
                raise ValueError(f"agent {painter.name!r}: the simulator cannot paint; use provider openai or google")
        if self.gates.consistency and not self.critique:
            raise ValueError("gates.consistency is on but critique is off; the critics run the check, so turn critique on")
        if self.gates.consistency and not self.agents("critic"):
            raise ValueError("gates.consistency is on but no agent has the role 'critic'; add one or turn the gate off")
        seen = set()
        for limit in self.limits:
            key = (limit.provider, limit.model, limit.base_url)
            if key in seen:
                raise ValueError(f"limits: {limit.provider}/{limit.model} is limited twice; merge the entries")
            seen.add(key)
        return self

    def price(self, model: str) -> Price | None:
        """The model's price: the config's, else the default list; dated snapshots match their family."""
        name = model.removeprefix("models/")
        table = {k: Price(input=i, output=o) for k, (i, o) in DEFAULT_PRICES.items()} | self.prices
        if name in table:
            return table[name]
        # A dated snapshot (gpt-4o-2024-08-06) is priced as its model; gpt-4.1-mini is not gpt-4.1.
        family = next((k for k in table if name.startswith(k + "-") and name[len(k) + 1 : len(k) + 2].isdigit()), None)
        return table[family] if family else None

    def batches(self, agent: AgentConfig) -> bool:
        """Whether the agent's calls go in batch jobs: the run batches, the agent did not opt out,
        and it is a chat model of a provider with a batch API (a painter and the simulator answer online)."""
        return self.batch and agent.batch is not False and agent.provider in ("openai", "google") and agent.roles != ["painter"]

    def limit(self, agent: AgentConfig) -> Limit | None:
        """The agent's endpoint's limits. Under `concurrency: auto` an endpoint given no number
        of its own finds its concurrency while running."""
        matches = [
            lim
            for lim in self.limits
            if lim.provider == agent.provider and lim.model == agent.model and lim.base_url in (None, agent.base_url)
        ]
        # A limit naming the server wins over one for the model anywhere.
        found = max(matches, key=lambda lim: lim.base_url is not None, default=None)
        if self.concurrency != "auto":
            return found
        if found is None:
            return Limit(provider=agent.provider, model=agent.model, concurrency=AutoConcurrency())
        return found if found.concurrency is not None else found.model_copy(update={"concurrency": AutoConcurrency()})

    def bounds_panel(self, agent: AgentConfig) -> bool:
        """Whether the top-level `concurrency` bounds this agent's calls: not when its endpoint
        finds its own (an auto limit), which the panel's fixed number would cap."""
        limit = self.limit(agent)
        return self.concurrency != "auto" and not (limit and isinstance(limit.concurrency, AutoConcurrency))

    def lane_config(self, lane: int) -> RunConfig:
        """Lane `lane`'s own config: its share of the target, and a seed of its own.

        The seed is derived from the run's seed and the lane, so the same seed and lane count
        give the same data set; its share of a seed file is every `lanes`-th seed (graphs.plan).
        """
        share = self.target // self.lanes + (1 if lane < self.target % self.lanes else 0)
        digest = hashlib.sha256(f"{self.seed}/lane{lane}".encode()).digest()
        seed = int.from_bytes(digest[:4], "big")
        return self.model_copy(update={"lane": lane, "target": share, "seed": seed})

    @property
    def proposals_per_round(self) -> int:
        return len(self.agents("proposer")) * self.proposals_per_agent

    def agents(self, role: Role) -> list[AgentConfig]:
        return [agent for agent in self.panel if role in agent.roles]


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if isinstance(value, (str, int, float, bool)) and err["type"] != "missing":
        return f"{where}: {value!r}: {msg}"  # name the bad value, not only the field
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
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; pass a YAML file or leave it out for the simulated panel")
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

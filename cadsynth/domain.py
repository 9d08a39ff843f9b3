"""The debate's vocabulary: what agents say to each other and what a round produces.

Ids are deterministic (derived from run, round, agent and index) so that re-running a step after a
crash overwrites the same record instead of adding a second copy.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode

from cadsynth.specs import ImageSpec
from cadsynth.text import Clean, cleaned

Role = Literal["proposer", "critic", "judge", "adversary", "painter"]

# The four CAD-Generate meta-strategies, then MMEvol's three evolution operators (fine-grained
# perception, cognitive reasoning, interaction: a change of format). The context weighs them all.
MetaStrategy = Literal["numerical_variation", "logic_reversion", "auxiliary_extension", "isomorphic_transfer"]
EvolutionOperator = Literal["fine_grained_perception", "cognitive_reasoning", "interaction"]
Strategy = Literal[
    "numerical_variation", "logic_reversion", "auxiliary_extension", "isomorphic_transfer",
    "fine_grained_perception", "cognitive_reasoning", "interaction",
]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
META_STRATEGIES: tuple[MetaStrategy, ...] = get_args(MetaStrategy)
EVOLUTION_OPERATORS: tuple[EvolutionOperator, ...] = get_args(EvolutionOperator)

# COMPACT's ten atomic visual capabilities, plus the two reasoning skills charts and figures need.
Capability = Literal[
    "color",
    "shape",
    "object_recognition",
    "action_recognition",
    "text_recognition",
    "spatial_recognition",
    "counting",
    "spatial_relationship",
    "object_interaction",
    "scene_understanding",
    "numeric_reasoning",
    "geometric_reasoning",
]
CAPABILITIES: tuple[Capability, ...] = get_args(Capability)

AnswerType = Literal["number", "integer", "choice", "text"]
Verdict = Literal["keep", "revise", "drop"]
# discard: nobody agreed with the reference; keep: everyone (or enough) did;
# adversarial: kept, and the panel split on it; dropped: removed before judging (why: DropReason).
Outcome = Literal["discard", "keep", "adversarial", "dropped"]
# critics: a majority said drop; unpainted: no image; text_answerable: the blind judge solved it
# (image necessity gate); inconsistent: image, question and reference still conflict after a revision;
# illegible: the OCR model could not read the texts it names, after one more drawing (legibility gate).
DropReason = Literal["critics", "unpainted", "text_answerable", "inconsistent", "illegible"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- what models are asked to produce (structured-output schemas) ---------------------------
# Every string a model writes is `Clean` (cadsynth.text) and bounded: generously for a sensible
# answer, far below a runaway one. An answer over a bound is malformed, and asked again.

Line = Annotated[str, Field(max_length=500), cleaned]  # an option, an issue


class PortableJsonSchema(GenerateJsonSchema):
    """JSON schema that strict structured-output APIs accept.

    OpenAI's strict mode refuses `oneOf` (pydantic's discriminated unions), `discriminator` and
    `default`; Gemini's response schema is happier without them too. `anyOf` over the tagged
    variants says the same thing, and strict mode makes every field required anyway.
    """

    def generate(self, schema: Any, mode: JsonSchemaMode = "validation") -> dict[str, Any]:
        return _portable(super().generate(schema, mode))


def _portable(node: Any) -> Any:
    if isinstance(node, list):
        return [_portable(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("discriminator", "default"):
            continue
        if key == "properties":  # property names are data, never keywords
            out[key] = {name: _portable(v) for name, v in value.items()}
        elif key in ("anyOf", "oneOf"):
            # A nullable union nests one anyOf in another: flatten it.
            variants = [_portable(v) for v in value]
            out["anyOf"] = [w for v in variants for w in (v["anyOf"] if list(v) == ["anyOf"] else [v])]
        else:
            out[key] = _portable(value)
    return out


class Draft(Record):
    """A structured-output schema: its JSON schema is the portable one, whoever asks for it."""

    @classmethod
    def model_json_schema(  # type: ignore[override]
        cls,
        by_alias: bool | None = None,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = PortableJsonSchema,
        mode: JsonSchemaMode = "validation",
        **kwargs: Any,
    ) -> dict[str, Any]:
        # Provider SDKs call model_json_schema() with no generator: they get the portable one.
        if schema_generator is GenerateJsonSchema:
            schema_generator = PortableJsonSchema
        if kwargs:
            return super().model_json_schema(by_alias, ref_template, schema_generator, mode, **kwargs)
        # Asked for on every call (structured output, the call cache's key): generated once per
        # class, copied because callers may edit what they get.
        key = (cls, by_alias, ref_template, schema_generator, mode)
        if key not in _SCHEMAS:
            _SCHEMAS[key] = super().model_json_schema(by_alias, ref_template, schema_generator, mode)
        return copy.deepcopy(_SCHEMAS[key])


_SCHEMAS: dict[tuple[Any, ...], dict[str, Any]] = {}


class ProposalDraft(Draft):
    """A new problem as a proposer writes it."""

    strategy: Strategy
    capabilities: list[Capability] = Field(min_length=1, max_length=3)
    image_spec: ImageSpec | None = Field(
        default=None, description="Declarative image spec the renderer draws; null when a painter model draws"
    )
    visual_prompt: Clean = Field(
        max_length=4000, description="Detailed description of the image: layout, objects, values, labels"
    )
    question: Clean = Field(max_length=2000)
    answer_type: AnswerType
    choices: list[Line] | None = Field(
        default=None, max_length=10, description="Options for a multiple-choice question, A-D"
    )
    reference_answer: Clean = Field(max_length=500)
    solution: Clean = Field(max_length=8000, description="Worked solution that reaches the reference answer")
    difficulty: float = Field(ge=0.0, le=1.0, description="The proposer's estimate, 0 easy .. 1 hard")


class CritiqueDraft(Draft):
    verdict: Verdict
    issues: list[Line] = Field(default_factory=list, max_length=20)


class ConsistencyCritiqueDraft(CritiqueDraft):
    """A critique with the consistency gate's explicit checks (asked only when the gate is on)."""

    image_matches_question: bool = Field(description="Everything the question refers to is in the image, as the question says")
    reference_matches_image: bool = Field(description="Recomputed from the image, the answer is the reference answer")

    @property
    def conflict(self) -> bool:
        return not (self.image_matches_question and self.reference_matches_image)


class JudgmentDraft(Draft):
    """A judge's blind answer: it never sees the reference answer."""

    answer: Clean = Field(max_length=500)
    rationale: Clean = Field(max_length=8000)
    confidence: float = Field(ge=0.0, le=1.0)
    quality: int = Field(ge=1, le=5, description="Vote on the problem's value as training data")


class Exemplar(Record):
    question: Clean = Field(max_length=2000)
    why_hard: Clean = Field(max_length=1000)


# The adversary weighs only what the planner draws from: an unknown name is a malformed answer.
class CapabilityWeight(Record):
    name: Capability
    weight: float = Field(ge=0.0, le=100.0)


class StrategyWeight(Record):
    name: Strategy
    weight: float = Field(ge=0.0, le=100.0)


class ContextDraft(Draft):
    """The adversary's rewrite of the shared generation context.

    Weights are lists of {name, weight}: strict structured output cannot express a free-form
    mapping (`additionalProperties`). `Context` keeps them as dicts.
    """

    reflection: Clean = Field(max_length=4000, description="Why the panel split on the pool's problems")
    guidance: Clean = Field(max_length=4000)
    capability_weights: list[CapabilityWeight] = Field(
        max_length=len(CAPABILITIES), description="One entry per capability; higher means use more"
    )
    strategy_weights: list[StrategyWeight] = Field(
        max_length=len(STRATEGIES), description="One entry per meta-strategy; higher means use more"
    )
    difficulty_target: float = Field(ge=0.0, le=1.0)
    exemplars: list[Exemplar] = Field(default_factory=list, max_length=5)


# --- what the ledger keeps ---------------------------------------------------------------------


class Proposal(ProposalDraft):
    id: str
    run: str
    round: int
    proposer: str
    index: int
    seed_id: str | None = None
    image: str | None = Field(default=None, description="Content hash of the painted PNG in the blob store")
    # Why the painter refused the image spec (a SpecError's one line, or a limit an untrusted
    # document broke), when it did: the problem is dropped as unpainted, and this says why.
    paint_refused: str | None = None
    revision: int = 0
    # The reference as first proposed, when a revision changed it (None: never changed).
    proposed_reference: str | None = None

    @property
    def key(self) -> str:
        """The proposal's place in its run, without the run id: what seeded behaviour is keyed by."""
        return f"r{self.round}/{self.proposer}/{self.index}"


class Critique(CritiqueDraft):
    id: str
    run: str
    round: int
    critic: str
    proposal: str
    # The consistency gate's checks; None when the gate was off.
    image_matches_question: bool | None = None
    reference_matches_image: bool | None = None
    recheck: bool = False  # the consistency gate's second look, after a revision

    @property
    def conflict(self) -> bool:
        return self.image_matches_question is False or self.reference_matches_image is False


class Judgment(Record):
    id: str
    run: str
    round: int
    judge: str
    proposal: str
    answer: Clean | None
    rationale: Clean = ""
    confidence: float = 0.0
    quality: int | None = None
    abstained: bool = False
    agrees: bool | None = None
    # Written after the judge was shown the reference (STaR's rationalization): a training
    # rationale only, never an answer that counts towards the consensus.
    rationalized: bool = False


class Consensus(Record):
    proposal: str
    run: str
    round: int
    score: int | None  # C: judges whose answer matches the reference; None when dropped
    judges: int  # K: judges that answered (abstentions shrink it)
    outcome: Outcome
    reason: DropReason | None = None  # why a dropped problem was dropped
    blind_answer: str | None = None  # the image necessity gate's answer without the image, when it ran
    agreeing: list[str] = Field(default_factory=list)
    # An adaptive jury stops asking once the outcome is settled: the judges it never asked.
    unasked: list[str] = Field(default_factory=list)
    # consensus: {weighted: true}: C_w, the score the outcome was decided on (graphs.consensus).
    weighted_score: float | None = None


class Context(Record):
    version: int = 0
    guidance: Clean = ""
    capability_weights: dict[str, float] = Field(default_factory=dict)
    strategy_weights: dict[str, float] = Field(default_factory=dict)
    difficulty_target: float = Field(default=0.3, ge=0.0, le=1.0)
    exemplars: list[Exemplar] = Field(default_factory=list)
    reflection: Clean = ""


class RoundSummary(Record):
    run: str
    round: int
    proposals: int
    kept: int
    adversarial: int
    discarded: int
    dropped: int
    mean_difficulty: float
    context_version: int


def proposal_id(run: str, round_: int, proposer: str, index: int) -> str:
    return f"{run}/r{round_}/{proposer}/{index}"


def critique_id(proposal: str, critic: str) -> str:
    return f"{proposal}/critique/{critic}"


def judgment_id(proposal: str, judge: str) -> str:
    return f"{proposal}/judge/{judge}"

"""Every table the store keeps, in one place: the round ledger and LangGraph's checkpoints.

A record is kept as JSON beside the few columns that queries filter on, so the ledger follows the
domain model without a migration for every new field. The JSON holds only what those columns do
not (RECORD_COLUMNS): a fact is stored once, and the ledger's reads put the record back together.
SCHEMA_VERSION names the layout; bump it and add a step to `store.migrate` when a table changes.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
)

SCHEMA_VERSION = 15  # 2: cads_runs.budget_usd, cads_calls.outcome, cads_call_cache; 3: cads_runs.reason, lane_of, lane;
# 4: cads_runs.seed is 64-bit (a lane's derived seed is a 32-bit unsigned number), cads_calls.attempt (one row per request);
# 5: a named run's checkpoints under its UUID thread (store.thread_id);
# 6: new tables only (create_all adds them): cads_fingerprints and cads_duplicates (the
# near-duplicate gate), cads_reviews (human review); 7: cads_calls loses ix_cads_calls_run (the
# request key's index starts with run and serves those reads); 8: a record's JSON leaves out the
# fields its table's columns hold (RECORD_COLUMNS; older rows are read as they are); 9: a call's
# target is its place within the run (r0/gpt/1), no longer prefixed with the run's id; 10: cads_calls
# is keyed by the request (CALL_KEY; no seq column, no unique index), cads_critiques and
# cads_judgments by (run, round, id) with no other index, all three WITHOUT ROWID on SQLite; a
# record's id and proposal columns hold its key within its run (RUN_RELATIVE); 11: cads_notes, a new
# table (an agent's own records: the simulator's truth), and proposals no longer hold that truth;
# 12: cads_calls.detail (why an answer was refused); 13: cads_calls.batch and online_cost_usd, and
# two new tables, cads_batch_jobs and cads_batch_requests (provider batch jobs); 14: cads_concurrency,
# a new table; 15: ix_cads_contexts_run_round

metadata = MetaData()

schema_info = Table(
    "cads_schema",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

# --- the round ledger ------------------------------------------------------------------------

runs = Table(
    "cads_runs",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),  # running | done | stopped | failed | review (waiting for a person)
    Column("reason", Text, nullable=True),  # why a failed run failed: one line, shown by `cads runs/show`
    Column("config", JSON, nullable=False),  # the validated config, secrets excluded
    Column("seed", BigInteger, nullable=False),
    Column("parent", String(128), nullable=True),  # the run this one was forked from
    # A run with lanes is many independent debates: each lane is a run of its own, marked here.
    Column("lane_of", String(128), nullable=True, index=True),
    Column("lane", Integer, nullable=True),
    Column("fork_round", Integer, nullable=True),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("updated_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    # A lease keeps two processes from advancing one run at once.
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
    # `cads run/resume --budget`: the run stops at a round boundary before it could spend more.
    Column("budget_usd", Float, nullable=True),
)

rounds = Table(
    "cads_rounds",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("summary", JSON, nullable=False),  # domain.RoundSummary
)

contexts = Table(
    "cads_contexts",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("round", Integer, nullable=False),  # the round this context steered
    Column("record", JSON, nullable=False),  # domain.Context
    # The live progress asks each lane's furthest round every few seconds: from this index, not by
    # reading every context's row (100,000 samples hold 10 MB of contexts).
    Index("ix_cads_contexts_run_round", "run", "round"),
)

# A record's id, and the proposal it is about, are kept as its key within its run (r3/gpt/1,
# r3/gpt/1/judge/mini; RUN_RELATIVE): the run column says whose, and the ledger puts the whole id
# (the run's id first) back together when it reads.
proposals = Table(
    "cads_proposals",
    metadata,
    Column("id", String(255), nullable=False),
    Column("run", String(128), nullable=False),
    Column("round", Integer, nullable=False),
    Column("proposer", String(64), nullable=False),
    Column("record", JSON, nullable=False),  # domain.Proposal
    PrimaryKeyConstraint("run", "id"),
    Index("ix_cads_proposals_run_round", "run", "round"),
)

# A problem's many small rows (critiques, judgments) are read by run and round: on SQLite they live
# in one B-tree in that order (WITHOUT ROWID), where a row id, a unique index on the id and an
# index on (run, round) kept three copies of their keys (about 0.7 KB per kept sample).
critiques = Table(
    "cads_critiques",
    metadata,
    Column("id", String(255), nullable=False),
    Column("run", String(128), nullable=False),
    Column("round", Integer, nullable=False),
    Column("proposal", String(255), nullable=False),
    Column("record", JSON, nullable=False),  # domain.Critique
    PrimaryKeyConstraint("run", "round", "id"),
    sqlite_with_rowid=False,
)

judgments = Table(
    "cads_judgments",
    metadata,
    Column("id", String(255), nullable=False),
    Column("run", String(128), nullable=False),
    Column("round", Integer, nullable=False),
    Column("proposal", String(255), nullable=False),
    Column("record", JSON, nullable=False),  # domain.Judgment
    PrimaryKeyConstraint("run", "round", "id"),
    sqlite_with_rowid=False,
)

consensus = Table(
    "cads_consensus",
    metadata,
    Column("proposal", String(255), nullable=False),
    Column("run", String(128), nullable=False),
    Column("round", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("score", Integer, nullable=True),
    Column("record", JSON, nullable=False),  # domain.Consensus
    PrimaryKeyConstraint("run", "proposal"),
    Index("ix_cads_consensus_run_outcome", "run", "outcome"),
)

# The columns of a record table that hold a record's own fields: its JSON leaves them out (stores
# written before schema 8 still have them there too, which the reads accept).
RECORD_COLUMNS: dict[str, tuple[str, ...]] = {
    "cads_proposals": ("id", "run", "round", "proposer"),
    "cads_critiques": ("id", "run", "round", "proposal"),
    "cads_judgments": ("id", "run", "round", "proposal"),
    "cads_consensus": ("proposal", "run", "round", "outcome", "score"),
}
RUN_RELATIVE = ("id", "proposal")  # the record columns that hold an id within the row's run

# --- `concurrency: auto` (agents.limits.Concurrency) ---------------------------------------------
# An endpoint's concurrency as it changed, sampled by the process driving the run.
concurrency = Table(
    "cads_concurrency",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("endpoint", String(255), primary_key=True),  # agents.limits.endpoint_label
    Column("at", Float, primary_key=True),  # seconds since the epoch
    Column("value", Integer, nullable=False),
    Column("in_flight", Integer, nullable=False),
)

# --- the near-duplicate gate (graphs.dedup) -----------------------------------------------------
# A judged problem's fingerprints, written at its round's barrier: never the image itself.
fingerprints = Table(
    "cads_fingerprints",
    metadata,
    Column("proposal", String(255), primary_key=True),
    Column("run", String(128), nullable=False),
    Column("round", Integer, nullable=False),
    Column("image_hash", String(64), nullable=False),  # perceptual hash of the PNG, hex
    Column("question_minhash", JSON, nullable=False),  # MinHash signature of the question's word pairs
    Index("ix_cads_fingerprints_run_round", "run", "round"),
)

# The run-wide pass's removals: keyed by the run it went over (a run with lanes: the run, not a lane),
# each naming the sample it duplicates.
duplicates = Table(
    "cads_duplicates",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("proposal", String(255), primary_key=True),
    Column("duplicate_of", String(255), nullable=False),
    Column("image_distance", Integer, nullable=False),
    Column("question_similarity", Float, nullable=False),
)

# A person's decision on a problem's outcome (`review: true`): one row per problem of a reviewed
# round, keyed by run and proposal so a decision recorded twice (a crash before the checkpoint) is one row.
reviews = Table(
    "cads_reviews",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("proposal", String(255), primary_key=True),
    Column("round", Integer, nullable=False),
    Column("computed", String(16), nullable=False),  # the consensus rule's outcome
    Column("decided", String(16), nullable=False),  # the outcome the round goes on with
    Column("note", Text, nullable=True),
    Column("reviewer", String(128), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
)

# One row per request made (each retry adds a row: this is what was paid), and one per answer served
# from the call cache (cached, cost 0), keyed by the request: its agent's role on a target of its run,
# and its place among the call's retries. A request is recorded once: a call re-run after a crash
# whose first run was already recorded (its answer now comes from the call cache) adds nothing.
# On SQLite the rows live in the key's own B-tree (WITHOUT ROWID): one copy of each key, where a
# row id and a unique index on the key kept two (about 1 KB per kept sample with default run ids).
calls = Table(
    "cads_calls",
    metadata,
    Column("run", String(128), primary_key=True),
    Column("round", Integer, nullable=False),
    Column("agent", String(64), primary_key=True),
    Column("role", String(16), primary_key=True),
    # What the call was about within its run: a proposal's key (r0/gpt/1, r0/gpt/1/revise) or a
    # round's (r0/context). The run column says whose; its id is not repeated here.
    Column("target", String(255), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("cached", Boolean, nullable=False, default=False),
    Column("fault", String(32), nullable=True),  # rate_limited | server_error | timeout | malformed
    Column("outcome", String(16), nullable=True),  # after a fault: retried | abstained | dropped
    Column("detail", Text, nullable=True),  # why a malformed answer was refused, in one line
    Column("batch", Boolean, nullable=True),  # the request went in a provider batch job (batch price)
    Column("online_cost_usd", Float, nullable=True),  # a batched request's cost at the online price
    # The request's place among its call's retries; a row from before schema 4 has -(its old row id).
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    sqlite_with_rowid=False,
)
CALL_KEY = tuple(c.name for c in calls.primary_key.columns)  # a call is its agent's role on a target

# --- call cache --------------------------------------------------------------------------------
# Answers by the fingerprint of everything that decides them (agents.calls.fingerprint), so resume
# and replay never pay twice for an identical call. Shared by every run in the database.

call_cache = Table(
    "cads_call_cache",
    metadata,
    Column("key", String(64), primary_key=True),  # sha256 hex
    Column("agent", String(64), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    Column("value", JSON, nullable=False),  # {"value": the parsed answer} or {"value": {"image": ref}}
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)

# --- provider batch jobs (agents.batch) --------------------------------------------------------
# A job is stored, with the requests in it, before it is sent to the provider and before the run
# waits on it: a process killed at any moment leaves what the next one needs to collect it, and no
# request is sent again unless its answer failed or expired. Shared by every run in the database
# (the lanes of a run share jobs); a request row names its run.

batch_jobs = Table(
    "cads_batch_jobs",
    metadata,
    Column("id", String(64), primary_key=True),  # cadsynth's own: the provider's job carries it as metadata
    Column("provider", String(32), nullable=False),
    Column("endpoint", String(255), nullable=False),  # the server, without credentials (agents.calls.endpoint)
    Column("model", String(128), nullable=False),
    Column("provider_id", String(128), nullable=True),  # the provider's id, once the job is created
    # preparing (stored, maybe not sent) | submitted | validating | in_progress | finalizing |
    # collected (answers stored) | failed (whole) | abandoned (never reached the provider)
    Column("state", String(16), nullable=False),
    Column("requests", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("done", Integer, nullable=False, default=0),  # requests the provider has finished, as last polled
    Column("reason", Text, nullable=True),  # why a job failed whole, in one line
    Column("created_at", Float, nullable=False),  # time.time(): ages are shown by `cads runs`
    Column("updated_at", Float, nullable=False),
    Index("ix_cads_batch_jobs_state", "state"),
)

batch_requests = Table(
    "cads_batch_requests",
    metadata,
    Column("run", String(128), nullable=False),
    Column("key", String(64), nullable=False),  # the request's custom id: its agent and body, hashed
    Column("job", String(64), nullable=False),
    # waiting | answered (200) | errored (another status: asked again) | lost (expired, its job failed, missing)
    Column("state", String(16), nullable=False),
    Column("status", Integer, nullable=True),  # the HTTP status the provider answered the request with
    Column("response", JSON, nullable=True),  # the answer's body, as the online request would have had it
    Column("reason", String(64), nullable=True),  # why it was lost: expired, job_failed, cancelled, missing
    PrimaryKeyConstraint("run", "key", "job"),
    Index("ix_cads_batch_requests_job", "job"),
)

# --- agents' notes ----------------------------------------------------------------------------
# What a model keeps for itself, by book and key (store.notes): the simulated panel's truth about
# the problems it wrote. Shared by every run in the database, like the call cache.

notes = Table(
    "cads_notes",
    metadata,
    Column("book", String(32), nullable=False),
    Column("key", String(64), nullable=False),
    Column("value", JSON, nullable=False),
    PrimaryKeyConstraint("book", "key"),
    sqlite_with_rowid=False,
)

# --- LangGraph checkpoints -----------------------------------------------------------------
# Written by store.checkpoint's saver. A checkpoint row holds the serialized checkpoint with only
# small scalar channel values inline; every other channel value lives once per
# (thread, namespace, channel, version) in cads_checkpoint_blobs, so a channel that does not
# change between steps is not stored again. Serialized columns are `(type, bytes)` pairs from the
# saver's serde. Text keys: SQLite and PostgreSQL do not need lengths on them.

from sqlalchemy.dialects.postgresql import JSONB  # noqa: E402  (kept inside this section)

_Json = JSON().with_variant(JSONB(), "postgresql")
# Keys compare bytewise on PostgreSQL as on SQLite, whatever the database's locale: the saver
# relies on checkpoint ids sorting as strings do in Python.
_Key = Text().with_variant(Text(collation="C"), "postgresql")

checkpoints = Table(
    "cads_checkpoints",
    metadata,
    Column("thread_id", _Key, primary_key=True),
    Column("checkpoint_ns", _Key, primary_key=True),
    Column("checkpoint_id", _Key, primary_key=True),
    Column("parent_checkpoint_id", _Key, nullable=True),
    Column("run_id", Text, nullable=True),  # metadata["run_id"], for delete_for_runs
    Column("type", Text, nullable=False),
    Column("checkpoint", LargeBinary, nullable=False),
    # The checkpoint's channel_versions again, as JSON: lets one query fetch its blobs with it.
    Column("channel_versions", _Json, nullable=False),
    Column("metadata_type", Text, nullable=False),
    Column("metadata", LargeBinary, nullable=False),
    # The JSON-representable top-level metadata keys, for `list(filter=...)` in SQL.
    Column("metadata_json", _Json, nullable=False),
    Index("ix_cads_checkpoints_run_id", "run_id"),
)

checkpoint_blobs = Table(
    "cads_checkpoint_blobs",
    metadata,
    Column("thread_id", _Key, primary_key=True),
    Column("checkpoint_ns", _Key, primary_key=True),
    Column("channel", _Key, primary_key=True),
    Column("version", _Key, primary_key=True),
    Column("type", Text, nullable=False),
    Column("blob", LargeBinary, nullable=True),
)

checkpoint_writes = Table(
    "cads_checkpoint_writes",
    metadata,
    Column("thread_id", _Key, primary_key=True),
    Column("checkpoint_ns", _Key, primary_key=True),
    Column("checkpoint_id", _Key, primary_key=True),
    Column("task_id", _Key, primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("channel", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("blob", LargeBinary, nullable=False),
    Column("task_path", Text, nullable=False, server_default=""),
)

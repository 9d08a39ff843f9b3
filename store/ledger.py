"""The round ledger: every run of a database and every record of every run, behind one class.

Two concerns, one module each: the run registry (store.runs: run rows, leases, status read from
lanes) and the records (store.records: proposals, critiques, judgments, consensus, contexts,
rounds, calls, fingerprints, duplicates, reviews). `Ledger` joins them on one engine and one
`init`; writers (the graph, cadsynth.lifecycle) and readers (`cads show/stats/export`) use it.

The names below were importable from here before the split and still are.
"""

from __future__ import annotations

from cadsynth.store.records import CallRecord, Duplicate, Fingerprint, Fingerprinted, Records, _record
from cadsynth.store.runs import (
    LEASE_SECONDS,
    WAITING_FOR_BATCH,
    WAITING_FOR_REVIEW,
    LeaseError,
    RunRegistry,
    UnknownRunError,
    lanes_status,
    lease_owner,
    shown_status,
)

__all__ = [
    "LEASE_SECONDS",
    "WAITING_FOR_BATCH",
    "WAITING_FOR_REVIEW",
    "CallRecord",
    "Duplicate",
    "Fingerprint",
    "Fingerprinted",
    "Ledger",
    "LeaseError",
    "UnknownRunError",
    "_record",
    "lanes_status",
    "lease_owner",
    "shown_status",
]


class Ledger(RunRegistry, Records):
    """A database's runs and their records, on one engine."""

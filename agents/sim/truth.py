"""The simulator's truth about the problems its proposers write, kept in notes of its own.

A simulated model works from the messages it is sent, as a real one does. What a real model would
see in the image, the simulator looks up: the painter stamps every PNG with its spec's digest
(agents.painter.render), and the truth of a problem is noted under its world, its question and
that digest when a simulated proposer writes it. A judge shown the question and the image finds
it there; a blind judge, shown the question alone, finds what the question gives away.

Only the simulator and `cads stats` (through `truth_of`) read these notes: no gate, no graph.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from pydantic import BaseModel

from cadsynth.specs import ImageSpec
from cadsynth.config import WorldConfig

BOOK = "sim-truth"


class Truth(BaseModel):
    """What the simulated world knows about one problem (its question on its image)."""

    truth: str
    distractors: list[str]
    difficulty: float
    capabilities: list[str]
    template: str
    kind: str
    # The harder world's failure modes (WorldConfig): what the problem really is, for stats only.
    text_answerable: bool = False  # the question states the values it asks about
    conflict: str | None = None  # how the image contradicts the question (missing_label, ...), if it does
    duplicate_of: str | None = None  # the popular problem it converged on, if it did
    blind_spot: str | None = None  # the mistake the models share on this template, if they share one


class NoteStore(Protocol):
    """Where notes are kept (store.notes.Notes)."""

    async def get_many(self, book: str, keys: Any) -> dict[str, dict[str, Any]]: ...

    async def put(self, book: str, values: dict[str, dict[str, Any]]) -> None: ...


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _world(world: WorldConfig) -> str:
    # Two runs in one database with other failure-mode rates can write the same problem with
    # another truth (a blind spot, say): the world is part of every key.
    return world.model_dump_json()


def problem_key(world: WorldConfig, question: str, spec_digest: str, choices: list[str] | None = None) -> str:
    # A multiple-choice problem's options are part of it: one image and one question with the
    # options in another order is another problem, with another true letter.
    if choices:
        return _key(_world(world), question, spec_digest, "\x1e".join(choices))
    return _key(_world(world), question, spec_digest)


def question_key(world: WorldConfig, question: str) -> str:
    return _key(_world(world), question)


def spec_digest_of(spec: ImageSpec | dict[str, Any] | None) -> str | None:
    from pydantic import TypeAdapter

    from cadsynth.agents.painter.render import spec_digest

    if spec is None:
        return None
    if isinstance(spec, dict):
        spec = TypeAdapter(ImageSpec).validate_python(spec)
    return spec_digest(spec)


_SHARED: dict[tuple[int, str], TruthBook] = {}


class TruthBook:
    """The simulator's truth, by what the messages carry. Kept in notes when the panel has a store
    (every run has); in memory alone otherwise (unit tests). A process keeps what it wrote or read
    in memory too: the same problem is looked up by every critic and judge."""

    # Keys held in memory before the oldest half is dropped: the problems in flight (a round of
    # every lane) many times over. Older ones are read from the notes again; memory stays flat.
    _LIMIT = 4_096

    def __init__(self, world: WorldConfig, notes: NoteStore | None = None):
        self.world = world
        self.notes = notes
        self._known: dict[str, dict[str, Any]] = {}

    def _remember(self, values: dict[str, dict[str, Any]]) -> None:
        if len(self._known) + len(values) > self._LIMIT:
            for key in list(self._known)[: len(self._known) // 2]:
                del self._known[key]
        self._known.update(values)

    @classmethod
    def shared(cls, world: WorldConfig, notes: NoteStore | None) -> TruthBook:
        """The book every simulated agent of a process keeps for this world in these notes: a
        proposer's judges find what it wrote without asking the database."""
        if notes is None:
            return cls(world)
        key = (id(notes), world.model_dump_json())
        book = _SHARED.get(key)
        if book is None or book.notes is not notes:
            book = _SHARED[key] = cls(world, notes)
        return book

    async def write(self, question: str, spec_digest: str, truth: Truth, choices: list[str] | None = None) -> None:
        value = truth.model_dump(mode="json")
        # The question alone finds it for a blind judge; the first problem with that question keeps
        # it (the notes keep a key's first value). Where the notes hold it, memory learns it from
        # them, not from this writer: another problem may have written the same question first.
        own, first = problem_key(self.world, question, spec_digest, choices), question_key(self.world, question)
        if self.notes is not None:
            await self.notes.put(BOOK, {own: value, first: value})
        elif first not in self._known:
            self._remember({first: value})
        self._remember({own: value})

    async def _read(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        found = {k: self._known[k] for k in keys if k in self._known}
        missing = [k for k in keys if k not in found]
        if missing and self.notes is not None:
            read = await self.notes.get_many(BOOK, missing)
            self._remember(read)
            found.update(read)
        return found

    async def about(self, question: str, spec_digest: str | None, choices: list[str] | None = None) -> Truth | None:
        """The truth of this question (with these options) on the image with this spec digest, if a
        simulated proposer wrote it."""
        return (await self.about_many([(question, spec_digest, choices)]))[0]

    async def about_question(self, question: str) -> Truth | None:
        key = question_key(self.world, question)
        value = (await self._read([key])).get(key)
        return None if value is None else Truth.model_validate(value)

    async def about_many(self, problems: list[tuple[str, str | None]] | list[tuple[str, str | None, list[str] | None]]) -> list[Truth | None]:
        """`about` for many (question, spec digest[, options]) at once: what stats read. A problem
        with options written before they were part of its key is found without them."""
        keys = [[problem_key(self.world, q, d, *rest), problem_key(self.world, q, d)] if d is not None else []
                for q, d, *rest in problems]
        found = await self._read(sorted({k for ks in keys for k in ks}))
        return [next((Truth.model_validate(found[k]) for k in ks if k in found), None) for ks in keys]

"""Content-addressed image storage: graph state and checkpoints carry the hash, never the bytes."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

PREFIX = "sha256:"


class BlobStore:
    """PNGs under `root/blobs/`, by hash. The last `recent` images written or read stay in memory:
    a problem's image is read by every critic and judge right after it is painted."""

    def __init__(self, root: Path, recent: int = 128):
        self.root = Path(root)
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._room = recent
        self._lock = threading.Lock()  # put and get run in worker threads

    def _remember(self, ref: str, data: bytes) -> None:
        with self._lock:
            self._recent[ref] = data
            self._recent.move_to_end(ref)
            while len(self._recent) > self._room:
                self._recent.popitem(last=False)

    def recent(self, ref: str) -> bytes | None:
        """The image if it is in memory: no file read, no thread."""
        with self._lock:
            return self._recent.get(ref)

    def path(self, ref: str) -> Path:
        if not ref.startswith(PREFIX) or len(ref) != len(PREFIX) + 64:
            raise ValueError(f"{ref!r} is not a blob reference (sha256:<64 hex digits>)")
        digest = ref[len(PREFIX) :]
        return self.root / "blobs" / digest[:2] / f"{digest}.png"

    def put(self, data: bytes) -> str:
        ref = PREFIX + hashlib.sha256(data).hexdigest()
        self._remember(ref, data)
        target = self.path(ref)
        if target.exists():
            return ref
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a crash never leaves a truncated file under a valid name.
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return ref

    def exists(self, ref: str) -> bool:
        return self.path(ref).is_file()

    def get(self, ref: str) -> bytes:
        data = self.recent(ref)
        if data is None:
            data = self.path(ref).read_bytes()
            self._remember(ref, data)
        return data

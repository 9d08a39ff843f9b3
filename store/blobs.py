"""Content-addressed image storage: graph state and checkpoints carry the hash, never the bytes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

PREFIX = "sha256:"


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, ref: str) -> Path:
        if not ref.startswith(PREFIX) or len(ref) != len(PREFIX) + 64:
            raise ValueError(f"{ref!r} is not a blob reference (sha256:<64 hex digits>)")
        digest = ref[len(PREFIX) :]
        return self.root / "blobs" / digest[:2] / f"{digest}.png"

    def put(self, data: bytes) -> str:
        ref = PREFIX + hashlib.sha256(data).hexdigest()
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
        return self.path(ref).read_bytes()

"""The default store: content-addressed blocks in a directory, no daemon needed.

Layout: `<dir>/blocks/<2 chars>/<cid>`, the two chars being the CID string's next-to-last pair
(as IPFS's flatfs shards), so no directory grows past ~1,024 entries per million blocks.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from dapp.content.cid import Cid

from client.storage.base import ContentStore
from client.storage.errors import StorageError

DEFAULT_DIRECTORY = Path(".run") / "content"


class EmbeddedStore(ContentStore):
    """Blocks as files named by CID; writes are atomic (temp file, fsync, rename)."""

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY) -> None:
        self.directory = Path(directory)
        self._blocks = self.directory / "blocks"
        try:
            self._blocks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the content store at {self.directory}: {exc}") from exc

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.directory)!r})"

    __str__ = __repr__

    def path_of(self, cid: Cid | str) -> Path:
        text = str(Cid.parse(cid))
        return self._blocks / text[-3:-1] / text

    def has(self, cid: Cid | str) -> bool:
        return self.path_of(cid).is_file()

    def get_block(self, cid: Cid | str) -> bytes | None:
        parsed = Cid.parse(cid)
        try:
            data = self.path_of(parsed).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read block {parsed} from {self.directory}: {exc}") from exc
        return self._verified(parsed, data, "holds corrupt bytes")

    def put_block(self, cid: Cid | str, data: bytes) -> None:
        parsed = Cid.parse(cid)
        parsed.verify(data)
        path = self.path_of(parsed)
        if path.is_file() and parsed.matches(path.read_bytes()):
            return  # content-addressed: the same name always holds the same bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

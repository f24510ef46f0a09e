"""Content addressing for the backend: CIDv1 ids, UnixFS files of raw leaves, content sources.

See docs/ARCHITECTURE.md ("Content addressing"). Pure stdlib: it runs unchanged in the riscv64
Cartesi machine and on the host, and the client and node share it so the same bytes get the
same id everywhere.
"""
from dapp.content.cid import DAG_PB, RAW, Cid, cid_for_block
from dapp.content.errors import (
    CidError,
    ContentError,
    ContentMalformed,
    ContentMismatch,
    ContentMissing,
    ContentOverBudget,
    ContentTooLarge,
    ContentUnavailable,
)

__all__ = [
    "DAG_PB",
    "RAW",
    "Cid",
    "cid_for_block",
    "CidError",
    "ContentError",
    "ContentMalformed",
    "ContentMismatch",
    "ContentMissing",
    "ContentOverBudget",
    "ContentTooLarge",
    "ContentUnavailable",
]

"""Typed errors of content addressing.

Every error carries the CID it is about (when there is one) so a report can say which object
failed; catch `ContentError` to handle them all. `ContentMalformed` is a `ContentMismatch`: an
object whose blocks hash right but do not form a valid UnixFS file is, to the market, content
that does not match what its id promises (`ContentOverBudget`, a DAG out of proportion to its
size, is one). `ContentUnavailable` is the one error that is not about the content at all: the
source could not be asked, and no decision may be taken on it.
"""
from __future__ import annotations


class ContentError(Exception):
    """Base of all content errors; `cid` is the object's id as a string, or None."""

    def __init__(self, message: str, cid: str | None = None) -> None:
        super().__init__(message)
        self.cid = cid


class CidError(ContentError, ValueError):
    """A CID that is not a CIDv1 sha2-256 raw/dag-pb id in base32 or binary form."""


class ContentMissing(ContentError):
    """A block the object needs cannot be had from the source."""


class ContentMismatch(ContentError):
    """Bytes whose hash is not the one their CID names."""


class ContentMalformed(ContentMismatch):
    """A dag-pb/UnixFS block that hashes right but is not a file we accept."""


class ContentTooLarge(ContentError):
    """An object larger than the caller's cap (detected before fetching its leaves)."""


class ContentOverBudget(ContentMalformed):
    """A DAG with more blocks than its size warrants (e.g. a 1 MB file of 1-byte leaves).

    Refused from the declared structure, before the surplus blocks are fetched: every fetch has
    a block budget derived from the file size (see `dapp.content.unixfs.leaf_budget`), so a
    hostile DAG costs a few requests, not one per byte.
    """


class ContentUnavailable(ContentMissing):
    """The source could not be asked right now (its store is down, or it answered "temporarily
    unavailable"): NOT a verdict about the content.

    A deterministic application must never decide on it (refuse an input, credit a deposit):
    another replica whose store is up would decide otherwise. The market lets it propagate out
    of `advance` so the rollup loop stops or retries the input instead. It is a ContentMissing
    by inheritance only so tools that just want the bytes (the client) report it as "cannot
    have it now"; the market intercepts it before any generic handling.
    """

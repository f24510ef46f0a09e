"""Typed errors of content addressing.

Every error carries the CID it is about (when there is one) so a report can say which object
failed; catch `ContentError` to handle them all. `ContentMalformed` is a `ContentMismatch`: an
object whose blocks hash right but do not form a valid UnixFS file is, to the market, content
that does not match what its id promises.
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

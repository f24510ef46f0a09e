"""Errors of the client's content stores (content errors themselves come from dapp.content)."""
from __future__ import annotations


class StorageError(Exception):
    """A store could not do what was asked, for a reason other than the content itself."""


class StoreUnavailable(StorageError):
    """The store cannot be reached (e.g. no IPFS daemon at the given API address)."""


class StoreSpecError(StorageError, ValueError):
    """A store spec that is neither a directory path nor `ipfs:<multiaddr>`."""

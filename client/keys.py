"""Signing keys: from an encrypted keystore file or from the environment, never from argv.

Why not a command-line option: arguments end up in shell history and in `ps` output for every
user of the machine. The two sources are:

* `--keystore FILE` (an Ethereum V3 keystore JSON, as geth, foundry's `cast wallet` and
  eth-account write) with its password in `TRIBUTARY_KEYSTORE_PASSWORD`;
* `TRIBUTARY_PRIVATE_KEY` (0x-prefixed hex), convenient on a devnet.

`tributary keys new FILE` writes a fresh keystore (password from the same variable).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

PRIVATE_KEY_ENV = "TRIBUTARY_PRIVATE_KEY"
PASSWORD_ENV = "TRIBUTARY_KEYSTORE_PASSWORD"


class KeyError_(Exception):
    """No usable key; the message says where the client looked and what to set."""


@dataclass(frozen=True)
class Signer:
    """An account the client signs with. `repr` never shows the key."""

    address: str
    private_key: str

    def __repr__(self) -> str:
        return f"Signer({self.address})"


def from_private_key(key: str) -> Signer:
    key = key.strip()
    if not key.startswith("0x"):
        key = "0x" + key
    try:
        acct = Account.from_key(key)
    except Exception as exc:
        raise KeyError_(f"the private key is not valid 32-byte hex: {type(exc).__name__}") from None
    return Signer(acct.address, key)


def load_signer(keystore: str | None = None) -> Signer:
    """The signer for this invocation: the keystore if given, else the environment variable."""
    if keystore:
        path = Path(keystore)
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise KeyError_(f"--keystore {path} needs its password in ${PASSWORD_ENV}")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyError_(f"cannot read keystore {path}: {exc}") from exc
        try:
            raw = Account.decrypt(data, password)
        except ValueError as exc:
            raise KeyError_(f"cannot decrypt keystore {path}: {exc} (check "
                            f"${PASSWORD_ENV})") from None
        return from_private_key("0x" + bytes(raw).hex())
    key = os.environ.get(PRIVATE_KEY_ENV)
    if key:
        return from_private_key(key)
    raise KeyError_(f"no signing key: pass --keystore FILE (password in ${PASSWORD_ENV}) or set "
                    f"${PRIVATE_KEY_ENV}. Keys are never accepted on the command line.")


def new_keystore(path: Path, password: str) -> str:
    """Create an account and write its encrypted keystore; returns the address."""
    acct = Account.create()
    data = Account.encrypt(acct.key, password)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise KeyError_(f"{path} exists; refusing to overwrite a keystore")
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)
    return str(acct.address)

"""Where the client finds the chain, the node, the content store and its own local files.

Why one module: every command needs the same four things (an Ethereum RPC, the node's API, the
Application's address, a content store) and a new user should not have to type them. On a
devnet they all come from `.run/devnet/deployment.json` (written by `python -m rollup devnet`);
each can be overridden by a global option or an environment variable:

| what | option | environment | default |
|---|---|---|---|
| deployment JSON | `--deployment` | `TRIBUTARY_DEPLOYMENT` | `.run/devnet/deployment.json` |
| Ethereum JSON-RPC | `--rpc-url` | `TRIBUTARY_RPC_URL` | the deployment's `rpc_url` |
| node API | `--node` | `TRIBUTARY_NODE` | the deployment's `node_url`, else `http://127.0.0.1:10011` |
| content store | `--store` | `TRIBUTARY_STORE` | `.run/content` (embedded); `ipfs:/ip4/127.0.0.1/tcp/5001/http` for IPFS |
| local client state | `--home` | `TRIBUTARY_HOME` | `.run/client` |

Local client state holds what only this user may know: the owner's validation salts and shard
ids, a trainer's salts between commit and reveal. It never holds keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DEPLOYMENT = Path(".run/devnet/deployment.json")
DEFAULT_NODE_URL = "http://127.0.0.1:10011"
DEFAULT_STORE = ".run/content"
DEFAULT_HOME = Path(".run/client")


class ConfigError(Exception):
    """The client cannot find or read its configuration; the message says what to do."""


@dataclass
class Config:
    """Resolved settings; `deployment` is the parsed deployment JSON (may be empty)."""

    rpc_url: str | None
    node_url: str
    app: str | None
    store_spec: str
    home: Path
    deployment: dict[str, Any] = field(default_factory=dict)
    deployment_path: Path | None = None

    def require_app(self) -> str:
        if not self.app:
            raise ConfigError(
                "no Application address: start a devnet (`python -m rollup devnet`) or pass "
                "--deployment FILE pointing at a deployment JSON")
        return self.app

    def require_rpc(self) -> str:
        if not self.rpc_url:
            raise ConfigError(
                "no Ethereum JSON-RPC URL: pass --rpc-url URL or --deployment FILE "
                "(a devnet writes .run/devnet/deployment.json)")
        return self.rpc_url

    def contract(self, name: str) -> str:
        addr = self.deployment.get("contracts", {}).get(name)
        if addr:
            return str(addr)
        from rollup.deploy import EXPECTED_ADDRESSES  # canonical CREATE2 addresses

        if name in EXPECTED_ADDRESSES:
            return str(EXPECTED_ADDRESSES[name])
        raise ConfigError(f"the deployment names no {name} contract")


def load_deployment_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"deployment file {path} does not exist: start a devnet with "
                          f"`python -m rollup devnet` or pass --deployment FILE") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read deployment file {path}: {exc}") from exc
    if not isinstance(data, dict) or "application" not in data:
        raise ConfigError(f"{path} is not a deployment JSON (no 'application' field)")
    return data


def resolve(deployment: str | None = None, rpc_url: str | None = None, node: str | None = None,
            store: str | None = None, home: str | None = None) -> Config:
    """Merge options, environment and the deployment file, in that order of precedence."""
    dep_arg = deployment or os.environ.get("TRIBUTARY_DEPLOYMENT")
    dep_path = Path(dep_arg) if dep_arg else DEFAULT_DEPLOYMENT
    dep: dict[str, Any] = {}
    if dep_arg or dep_path.exists():
        dep = load_deployment_file(dep_path)
    rpc = rpc_url or os.environ.get("TRIBUTARY_RPC_URL") or dep.get("rpc_url")
    node_url = (node or os.environ.get("TRIBUTARY_NODE") or dep.get("node_url")
                or _node_url_beside(dep_path) or DEFAULT_NODE_URL)
    return Config(
        rpc_url=rpc, node_url=node_url.rstrip("/"),
        app=dep.get("application"),
        store_spec=store or os.environ.get("TRIBUTARY_STORE") or DEFAULT_STORE,
        home=Path(home or os.environ.get("TRIBUTARY_HOME") or DEFAULT_HOME),
        deployment=dep, deployment_path=dep_path if dep else None)


def _node_url_beside(dep_path: Path) -> str | None:
    """A `node.json` next to the deployment (written by the demo and tests) names the node."""
    f = dep_path.parent / "node.json"
    try:
        data = json.loads(f.read_text())
        return str(data["node_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_node_file(dep_path: Path, node_url: str) -> None:
    (dep_path.parent / "node.json").write_text(json.dumps({"node_url": node_url}) + "\n")


# --- local client state ---------------------------------------------------------------------

def state_file(home: Path, *parts: str) -> Path:
    path = home.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise ConfigError(f"local state file {path} is corrupt: {exc}") from exc


def write_json(path: Path, data: Any) -> None:
    """Atomic write (temp file + rename), so a crash never leaves half a salt file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass


# --- the per-invocation context -------------------------------------------------------------

class Context:
    """What a command works with, built lazily so that `--help` and offline commands never
    touch the network: the chain, the node client, the content store, the signer."""

    def __init__(self, cfg: Config, keystore: str | None = None) -> None:
        self.cfg = cfg
        self.keystore = keystore
        self._chain: Any = None
        self._node: Any = None
        self._store: Any = None
        self._signer: Any = None

    @property
    def chain(self) -> Any:
        if self._chain is None:
            from client.chain import Chain

            self._chain = Chain(self.cfg)
        return self._chain

    @property
    def node(self) -> Any:
        if self._node is None:
            from client.node_api import NodeClient

            self._node = NodeClient(self.cfg.node_url, self.cfg.app)
        return self._node

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = open_content_store(self.cfg.store_spec)
        return self._store

    @property
    def signer(self) -> Any:
        if self._signer is None:
            from client.keys import load_signer

            self._signer = load_signer(self.keystore)
        return self._signer

    def with_signer(self, signer: Any) -> "Context":
        """The same chain, node and store, acting as another account (the demo's actors)."""
        other = Context(self.cfg, None)
        other._chain, other._node, other._store, other._signer = (
            self._chain, self._node, self._store, signer)
        return other


def open_content_store(spec: str) -> Any:
    """The content store named by `spec` (client.storage.open_store): a directory for the
    embedded store, or `ipfs:<multiaddr>` for an IPFS node's HTTP RPC. Every read verifies."""
    try:
        from client.storage import open_store
    except ImportError as exc:  # pragma: no cover - the storage package ships with the client
        raise ConfigError(f"the content store package is unavailable: {exc}") from None
    try:
        return open_store(spec)
    except Exception as exc:
        raise ConfigError(f"cannot open content store {spec!r}: {exc}") from None

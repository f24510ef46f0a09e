"""Where the client finds the chain, the node, the content store and its own local files.

Why one module: every command needs the same four things (an Ethereum RPC, the node's API, the
Application's address, a content store) and a new user should not have to type them. On a
devnet they all come from `.run/devnet/deployment.json` (written by `python -m rollup devnet`);
each can be overridden by a global option or an environment variable:

| what | option | environment | default |
|---|---|---|---|
| everything below | | `TRIBUTARY_HOME` | `./.run` if it holds a devnet, else `~/.tributary` |
| deployment JSON | `--deployment` | `TRIBUTARY_DEPLOYMENT` | `<home>/devnet/deployment.json` |
| Ethereum JSON-RPC | `--rpc-url` | `TRIBUTARY_RPC_URL` | the deployment's `rpc_url` |
| node API | `--node` | `TRIBUTARY_NODE` | the deployment's `node_url`, else `http://127.0.0.1:10011` |
| content store | `--store` | `TRIBUTARY_STORE` | `<home>/content` (embedded); `ipfs:/ip4/127.0.0.1/tcp/5001/http` for IPFS |
| local client state | `--home` | `TRIBUTARY_CLIENT_HOME` | `<home>/client` |

Why a home directory: defaults relative to the current directory made every command fail with
an unrelated error when run from another folder. The legacy layout (`./.run/devnet`,
`./.run/content`, `./.run/client`, written by `python -m rollup devnet` run in the repository)
still works: when `./.run/devnet/deployment.json` exists and $TRIBUTARY_HOME is unset, `./.run`
is the home. Every default is an absolute path, so `tributary` works from any folder.

Local client state holds what only this user may know: the owner's validation salts and shard
ids, a trainer's salts between commit and reveal. It never holds keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_NODE_URL = "http://127.0.0.1:10011"
LEGACY_ROOT = Path(".run")
HOME_ENV = "TRIBUTARY_HOME"


def tributary_home() -> Path:
    """The absolute folder every default lives under: $TRIBUTARY_HOME, else `./.run` when it
    holds a devnet deployment (the layout `python -m rollup devnet` writes in the repository),
    else `~/.tributary`. A devnet launcher that wants the client to find it without options
    writes its deployment to `tributary_home() / "devnet" / "deployment.json"`."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    if (LEGACY_ROOT / "devnet" / "deployment.json").exists():
        return LEGACY_ROOT.resolve()
    return (Path.home() / ".tributary").resolve()


def default_deployment() -> Path:
    return tributary_home() / "devnet" / "deployment.json"


def default_store() -> str:
    return str(tributary_home() / "content")


def default_client_home() -> Path:
    return tributary_home() / "client"


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
    node_store: str | None = None
    """Where the node reads content over GIO, when its launcher said so in node.json (a store
    spec like --store's, or "none"); None: unknown. Preflight compares it with `store_spec`."""

    def require_app(self) -> str:
        if not self.app:
            raise ConfigError(
                f"no Application address: no deployment at {default_deployment()}; start a "
                f"devnet (`python -m rollup devnet`), set $TRIBUTARY_HOME to the folder that "
                f"holds devnet/deployment.json, or pass --deployment FILE")
        return self.app

    def require_rpc(self) -> str:
        if not self.rpc_url:
            raise ConfigError(
                f"no Ethereum JSON-RPC URL: pass --rpc-url URL or --deployment FILE "
                f"(looked for {default_deployment()})")
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
    dep_path = Path(dep_arg).expanduser() if dep_arg else default_deployment()
    dep: dict[str, Any] = {}
    if dep_arg or dep_path.exists():
        dep = load_deployment_file(dep_path)
    rpc = rpc_url or os.environ.get("TRIBUTARY_RPC_URL") or dep.get("rpc_url")
    node_url = (node or os.environ.get("TRIBUTARY_NODE") or dep.get("node_url")
                or _node_url_beside(dep_path) or DEFAULT_NODE_URL)
    return Config(
        rpc_url=rpc, node_url=node_url.rstrip("/"),
        app=dep.get("application"),
        store_spec=store or os.environ.get("TRIBUTARY_STORE") or default_store(),
        home=(Path(home).expanduser() if home else Path(os.environ["TRIBUTARY_CLIENT_HOME"])
              if os.environ.get("TRIBUTARY_CLIENT_HOME") else default_client_home()),
        deployment=dep, deployment_path=dep_path if dep else None,
        node_store=_node_store(dep_path, node_url))


def _node_file(dep_path: Path) -> dict[str, Any]:
    try:
        data = json.loads((dep_path.parent / "node.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _node_store(dep_path: Path, node_url: str) -> str | None:
    """node.json's `store`, when node.json describes the node this client talks to."""
    nf = _node_file(dep_path)
    if str(nf.get("node_url", "")).rstrip("/") != node_url.rstrip("/"):
        return None
    store = nf.get("store")
    return str(store) if store else None


def _node_url_beside(dep_path: Path) -> str | None:
    """A `node.json` next to the deployment (written by the devnet, the demo and tests) names
    the node; optionally (`store`) where it reads content over GIO."""
    url = _node_file(dep_path).get("node_url")
    return str(url) if url else None


def write_node_file(dep_path: Path, node_url: str, store: str | None = None) -> None:
    """`store`: the node's GIO content source as a store spec (a directory, `ipfs:<addr>`), or
    "none" when it serves no GIO; lets the client check content is reachable before paying."""
    data: dict[str, Any] = {"node_url": node_url}
    if store is not None:
        data["store"] = store
    (dep_path.parent / "node.json").write_text(json.dumps(data) + "\n")


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
    """Durable atomic write: temp file (mode 0600) + fsync + rename + fsync of the folder.

    Why all of it: salts and shard secrets are written *before* the transaction that depends
    on them; if the machine dies right after that transaction, the file must be there, whole,
    with the new content (rename alone can be lost on power failure without the fsyncs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
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
        self.relay_url: str | None = None  # trainer messages go to this relayer when set

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

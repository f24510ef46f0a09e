"""``tributary dev up`` (= ``python -m rollup devnet``): a working local market in one command.

Why one command: a chain alone cannot open a job (the backend fetches the spec, model and
shards over GIO from the node's content store), and a node without a store must not answer
"not found" (rollup.gio). So this brings up, in order, and tears down in reverse on Ctrl-C or
SIGTERM: the content store (the embedded store at ``<home>/content``, the client's default; or,
with ``--ipfs``, the bundled js-ipfs daemon on port 5001, repo ``<home>/ipfs``; or any IPFS
node with ``--ipfs-api``), anvil on 127.0.0.1:<port> with the real Cartesi v2.2.0 contracts, an
Authority and an Application, and the node running the market's backend (``<this python> -m
dapp``; ``--backend`` for another, ``--no-node`` for the chain only). It prints the endpoints,
the contracts and the funded dev accounts, and writes ``<state-dir>/node.json`` so that the
client finds the node. ``<home>`` is the client's (``client.config.tributary_home``:
$TRIBUTARY_HOME, else ./.run if it holds a devnet, else ~/.tributary), so ``tributary`` needs no
options. Every child (anvil, the backend, the IPFS daemon) also dies with this process if it is
SIGKILLed (PR_SET_PDEATHSIG).

Restart rules: a second run loads the saved chain (``<state-dir>/anvil-state.json``, saved every
few seconds and at exit) and reuses the deployment if the chain still holds it and the epoch
length matches; the node resumes from its store, replaying the recorded GIO answers. If the state
file cannot be loaded it is moved aside (``anvil-state.json.broken-<time>``) and the chain starts
fresh; whenever a *new* Application is deployed, the node's folder ``<state-dir>/node`` (its
SQLite store and GIO journal) is cleared, since it described another chain.

Keys: account 0 of anvil's default mnemonic deploys, owns the Authority (so it is the node's
claimer) and owns the Application. These are PUBLIC TEST KEYS (see ``rollup.anvil.DEV_ACCOUNTS``):
never use them on a public network.

Library use (tests, client demo)::

    from rollup.devnet import start_devnet
    net = start_devnet(port=None, epoch_length=5, state_dir=tmp)   # port None: a free port
    net.deployment, net.deployment_path, net.anvil.url
    net.stop()                                                        # or `with start_devnet(...) as net:`
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollup.anvil import DEV_ACCOUNTS, Anvil, AnvilError

if TYPE_CHECKING:  # web3 and the artifacts load lazily: `tributary --help` must stay fast
    from rollup.deploy import Deployment

log = logging.getLogger(__name__)

STATE_FILE = "anvil-state.json"
DEPLOYMENT_FILE = "deployment.json"
NODE_DIR = "node"
STATE_INTERVAL_S = 5  # anvil also dumps at a clean exit; this bounds the loss after a SIGKILL


@dataclass
class Devnet:
    anvil: Anvil
    deployment: Deployment
    deployment_path: Path
    state_dir: Path
    reused: bool  # True when the deployment came from a previous run

    @property
    def node_dir(self) -> Path:
        return self.state_dir / NODE_DIR

    def stop(self) -> None:
        self.anvil.stop()

    def __enter__(self) -> "Devnet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_anvil(port: int | None, state_path: Path, block_time: float | None) -> Anvil:
    def start() -> Anvil:
        return Anvil(port, block_time=block_time, state_path=state_path, state_interval=STATE_INTERVAL_S).start()

    try:
        return start()
    except AnvilError as exc:
        if not state_path.exists():
            raise
        broken = state_path.with_name(f"{state_path.name}.broken-{int(time.time())}")
        log.warning("saved chain state %s is unusable (%s); moved to %s, starting fresh", state_path, exc, broken)
        state_path.replace(broken)
        return start()


def start_devnet(
    port: int | None = 8545,
    epoch_length: int = 10,
    state_dir: Path | str = Path(".run/devnet"),
    *,
    block_time: float | None = None,
    template_hash: bytes | None = None,
) -> Devnet:
    """Start (or resume) the chain and make sure the deployment exists; returns a running Devnet."""
    from rollup.chain import connect
    from rollup.deploy import DEFAULT_TEMPLATE_HASH, Deployment, DeployError, deploy_devnet, deployment_is_live

    if template_hash is None:
        template_hash = DEFAULT_TEMPLATE_HASH
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    chain = _start_anvil(port, state_dir / STATE_FILE, block_time)
    try:
        w3 = connect(chain.url)
        dep_path = state_dir / DEPLOYMENT_FILE
        key = DEV_ACCOUNTS[0].private_key
        dep: Deployment | None = None
        if dep_path.exists():
            try:
                old = Deployment.load(dep_path)
                if old.epoch_length == epoch_length and deployment_is_live(w3, old):
                    dep = old
                else:
                    log.info("saved deployment does not match this chain or epoch length; deploying anew")
            except DeployError as exc:
                log.warning("ignoring %s: %s", dep_path, exc)
        reused = dep is not None
        if dep is None:
            dep = deploy_devnet(w3, key, epoch_length=epoch_length, template_hash=template_hash,
                                rpc_url=chain.url)
            node_dir = state_dir / NODE_DIR
            if node_dir.exists():
                log.warning("new deployment: clearing the node's old state in %s", node_dir)
                shutil.rmtree(node_dir)
        dep.rpc_url = chain.url
        # The chain reaches anvil-state.json within STATE_INTERVAL_S (and at a clean exit). If we
        # are SIGKILLed before that, the next run finds no code at the saved addresses and simply
        # deploys again.
        dep.save(dep_path)
        return Devnet(chain, dep, dep_path, state_dir, reused)
    except BaseException:
        chain.stop()
        raise


# ------------------------------------------------------------------------------ the local market
NODE_FILE = "node.json"  # read by client.config: where the node's API is
HOME_HELP = "$TRIBUTARY_HOME, else ./.run if it holds a devnet, else ~/.tributary"


def market_home() -> Path:
    """The folder the client looks in by default (`client.config.tributary_home`): the market
    puts its deployment, content store and IPFS repo there, so `tributary` finds them with no
    options, from any folder."""
    try:
        from client.config import tributary_home
    except ImportError:  # the client is not installed: keep the repository layout
        return Path(".run").resolve()
    return tributary_home()


def default_backend() -> str:
    """The market's backend, run by this interpreter (so it works without an activated venv)."""
    return f"{shlex.quote(sys.executable)} -m dapp"


def _resolver(content_store: Path | None, ipfs_api: str | None) -> Any:
    from rollup.gio import NullResolver, resolver_from_args

    if content_store is None and ipfs_api is None:
        return NullResolver()
    if content_store is not None:
        content_store.mkdir(parents=True, exist_ok=True)
    return resolver_from_args(content_store=str(content_store) if content_store else None, ipfs_api=ipfs_api)


class _NoNodeErrorTraceback(logging.Formatter):
    """Log format for the market's terminal: a NodeError carries its own clear message (it ends
    the command with it too), so its traceback is noise there; any other error keeps one."""

    def formatException(self, ei: Any) -> str:
        from rollup.node import NodeError

        return "" if isinstance(ei[1], NodeError) else super().formatException(ei)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).rstrip()


def _setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:  # `tributary dev up`; `python -m rollup -v devnet` configures its own
        logging.basicConfig(level=logging.WARNING)
    for handler in root.handlers:
        handler.setFormatter(_NoNodeErrorTraceback("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def _line(name: str, value: str) -> None:
    click.echo(f"{name:<29}{value}")


def print_market(net: Devnet, node: Any, content: str, client_env: dict[str, str], gateway: Any = None) -> None:
    """What a user needs to talk to the market: endpoints, contracts, funded accounts.

    The first line is `anvil <url> ...`, and `keys ... PUBLIC TEST KEYS` follows the
    `deployment` line: scripts and tests read those."""
    from rollup.chain import connect

    dep = net.deployment
    _line("anvil", f"{net.anvil.url} (chain id {dep.chain_id})" + (" [resumed]" if net.reused else ""))
    if node is not None:
        _line("node API", f"{node.api_url} (JSON-RPC /rpc, inspect /inspect/{node.app_name}, /health)")
        _line("rollup API", f"{node.rollup_url} (the backend's; node state in {net.node_dir.resolve()})")
        if gateway is not None:
            _line("cartesi-run endpoint", f"{gateway.url}: /anvil, /rpc, /inspect/{node.app_name}")
    else:
        _line("node", "not started (--no-node)")
    if content:
        _line("content", content)
    for name, addr in dep.contracts.items():
        _line(name, addr)
    _line("Authority", f"{dep.authority} (epoch length {dep.epoch_length}, owner {dep.owner})")
    _line("Application", f"{dep.application} (deployed in block {dep.deploy_block})")
    _line("deployment", str(net.deployment_path.resolve()))
    _line("keys", "anvil's default mnemonic: PUBLIC TEST KEYS, never use them for real funds")
    w3 = connect(net.anvil.url)
    click.echo("Funded dev accounts (#0 deploys and is the node's claimer: use #1-#9 for the client):")
    for acc in DEV_ACCOUNTS:
        eth = w3.eth.get_balance(acc.address) // 10**18
        click.echo(f"  #{acc.index} {acc.address}  {eth:>6} ETH  key {acc.private_key}")
    if node is not None:
        click.echo("In another shell:")
        if sys.prefix != sys.base_prefix:  # a virtual environment: `tributary` is on PATH once activated
            click.echo(f"  . {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}")
        for k, v in client_env.items():
            click.echo(f"  export {k}={v}")
        click.echo(f"  export TRIBUTARY_PRIVATE_KEY={DEV_ACCOUNTS[1].private_key}   # account #1")
        click.echo("  tributary trainer jobs")
    click.echo("Ctrl-C stops everything.")


def run_market(*, port: int | None, epoch_length: int, state_dir: Path, block_time: float | None,
               backend: str | None, no_node: bool, http_port: int | None, api_port: int | None,
               content_store: Path | None, ipfs: bool, ipfs_api: str | None, ipfs_port: int,
               ipfs_repo: Path, stop: threading.Event, app_name: str | None = None,
               gateway_port: int = 0, dashboard_port: int = 0) -> None:
    """Bring up (IPFS daemon,) chain and node; serve until `stop` is set; tear down in reverse.

    Everything started here is stopped in `finally`, whatever happened; the children also die
    with this process if it is killed (PR_SET_PDEATHSIG), so nothing is left running."""
    from rollup.node import DEFAULT_API_PORT, DEFAULT_HTTP_PORT, Node, NodeError

    home = market_home()
    if home != (Path.home() / ".tributary").resolve():
        client_env_home = {"TRIBUTARY_HOME": str(home)}
    else:
        client_env_home = {}
    daemon = None
    net: Devnet | None = None
    node: Node | None = None
    gateway: Any = None
    dashboard: Any = None
    client_env: dict[str, str] = dict(client_env_home)
    try:
        if ipfs:
            from rollup.ipfsd import IpfsDaemon, IpfsDaemonError

            click.echo(f"starting the bundled IPFS daemon (repo {ipfs_repo})...", err=True)
            try:
                daemon = IpfsDaemon(ipfs_repo, ipfs_port).start()
            except IpfsDaemonError as exc:
                raise click.ClickException(str(exc)) from exc
            ipfs_api = daemon.api
        if ipfs_api:
            content_store = None
            api = ipfs_api[len("ipfs:"):] if ipfs_api.startswith("ipfs:") else ipfs_api
            content = f"IPFS API {api}" + (f" (bundled js-ipfs, repo {ipfs_repo.resolve()})" if daemon else "")
            client_env["TRIBUTARY_STORE"] = f"ipfs:{api}"
        elif content_store is not None:
            content = f"embedded store {content_store.resolve()}"
            if content_store.resolve() != home / "content":
                client_env["TRIBUTARY_STORE"] = str(content_store.resolve())
        else:
            content = "" if no_node else "none (the node answers every content request as unavailable)"
        from rollup.deploy import DeployError

        try:
            net = start_devnet(port, epoch_length, state_dir, block_time=block_time)
        except (AnvilError, DeployError) as exc:
            raise click.ClickException(str(exc)) from exc
        if state_dir.resolve() != home / "devnet":
            client_env["TRIBUTARY_DEPLOYMENT"] = str(net.deployment_path.resolve())
        node_file = state_dir / NODE_FILE
        if not no_node:
            net.node_dir.mkdir(parents=True, exist_ok=True)
            try:
                node = Node(net.deployment_path, backend or default_backend(), net.node_dir,
                            rpc_url=net.anvil.url, claimer_key=DEV_ACCOUNTS[0].private_key,
                            resolver=_resolver(content_store, ipfs_api),
                            http_port=DEFAULT_HTTP_PORT if http_port is None else http_port,
                            api_port=DEFAULT_API_PORT if api_port is None else api_port,
                            app_name=app_name).start()
            except (NodeError, OSError) as exc:
                raise click.ClickException(f"the node could not start: {exc}") from exc
            # Where the node reads content, so the client can check it before paying.
            store = (f"ipfs:{api}" if ipfs_api else
                     str(content_store.resolve()) if content_store is not None else "none")
            node_file.write_text(json.dumps({"node_url": node.api_url, "store": store}) + "\n")
            if gateway_port:
                from rollup.gateway import Gateway

                try:  # a convenience: a busy port is reported, not fatal
                    gateway = Gateway(node.api_url, net.anvil.url, port=gateway_port).start()
                except OSError as exc:
                    click.echo(f"the cartesi-run endpoint could not listen on {gateway_port}: {exc}", err=True)
            if dashboard_port:
                dashboard = _start_dashboard(node, net, store, dashboard_port)
        print_market(net, node, content, client_env, gateway)
        if dashboard is not None:
            _line("dashboard", f"{dashboard.url} (jobs, rounds, payouts traced to the chain)")
        while not stop.is_set():
            if node is not None and node.error is not None:
                raise click.ClickException(f"the node stopped: {node.error}")
            if daemon is not None and daemon.proc is not None and daemon.proc.poll() is not None:
                raise click.ClickException(f"the IPFS daemon exited: {daemon.log_tail(500)}")
            stop.wait(0.2)
    finally:
        if dashboard is not None:
            dashboard.stop()
        if gateway is not None:
            gateway.stop()
        if node is not None:
            node.stop()
            with contextlib.suppress(OSError):
                (state_dir / NODE_FILE).unlink()
        if net is not None:
            net.stop()
        if daemon is not None:
            daemon.stop()
        log.info("local market stopped")


def _start_dashboard(node: Any, net: Devnet, store: str, port: int) -> Any:
    """The read-only dashboard (client/dashboard) on `port`, fed by this market's node, chain and
    content store; a convenience like the gateway: a busy port is reported, not fatal."""
    from client.dashboard.data import make_views
    from client.dashboard.server import DashboardServer
    from client.storage import open_store

    try:
        views = make_views(node.api_url, net.deployment.application, net.anvil.url,
                           None if store == "none" else open_store(store))
        return DashboardServer(views, "127.0.0.1", port).start()
    except OSError as exc:
        click.echo(f"the dashboard could not listen on {port}: {exc}", err=True)
        return None


def _app_name(flag: str | None) -> str | None:
    """The app's name: the flag, else `name` in ./cartesi.toml (None: the node's default)."""
    from rollup.gateway import GatewayError, app_name, app_name_from_toml

    try:
        return app_name(flag) if flag else app_name_from_toml()
    except GatewayError as exc:
        raise click.BadParameter(str(exc), param_hint="--app-name") from exc


@click.command("devnet")
@click.option("--port", default=8545, show_default=True, type=click.IntRange(0, 65535),
              help="anvil's port on 127.0.0.1 (0: any free port)")
@click.option("--epoch-length", default=10, show_default=True, type=click.IntRange(min=1), help="blocks per epoch")
@click.option("--state-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help=f"chain state, deployment.json and the node's state  [default: <home>/devnet; home: {HOME_HELP}]")
@click.option("--block-time", default=None, type=float, help="seconds per block (default: mine on each transaction)")
@click.option("--backend", default=None,
              help="backend command the node runs  [default: the market, '<this python> -m dapp']")
@click.option("--no-node", is_flag=True, help="only run the chain (no node, no content)")
@click.option("--http-port", default=None, type=int, help="node's rollup HTTP API port  [default: 5004]")
@click.option("--api-port", default=None, type=int, help="node's JSON-RPC/inspect port  [default: 10011]")
@click.option("--content-store", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="embedded content store the node serves over GIO  [default: <home>/content, the client's]")
@click.option("--ipfs", is_flag=True,
              help="start the bundled js-ipfs daemon (tools/ipfs, `make ipfs`) and serve content from it")
@click.option("--ipfs-api", default=None, metavar="MULTIADDR",
              help="serve content from this running IPFS node's HTTP RPC instead of the embedded store")
@click.option("--ipfs-port", default=5001, show_default=True, type=click.IntRange(0, 65535),
              help="API port of the bundled daemon (--ipfs)")
@click.option("--ipfs-repo", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="repo of the bundled daemon (--ipfs)  [default: <home>/ipfs]")
@click.option("--app-name", default=None,
              help="the application's name (/inspect/<name>, JSON-RPC)  [default: `name` in ./cartesi.toml, "
                   "else tributary]")
@click.option("--gateway-port", default=6751, show_default=True, type=click.IntRange(0, 65535),
              help="one port serving /anvil, /rpc and /inspect/<app>, as `cartesi run` does (0: none)")
@click.option("--dashboard-port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="serve the dashboard (`tributary dashboard`) on this port (0: none)")
def devnet_command(port: int, epoch_length: int, state_dir: Path | None, block_time: float | None,
                   backend: str | None, no_node: bool, http_port: int | None, api_port: int | None,
                   content_store: Path | None, ipfs: bool, ipfs_api: str | None, ipfs_port: int,
                   ipfs_repo: Path | None, app_name: str | None, gateway_port: int,
                   dashboard_port: int) -> None:
    """A working local market in one command: chain (anvil with the Cartesi v2.2.0 contracts and
    an Application), the node running the market's backend, and a content store (embedded in
    .run/content, or IPFS with --ipfs). Prints the endpoints and the funded dev accounts;
    Ctrl-C stops everything."""
    if ipfs and ipfs_api:
        raise click.UsageError("give --ipfs (start the bundled daemon) or --ipfs-api (use a running one), not both")
    _setup_logging()
    home = market_home()
    state_dir = state_dir or home / "devnet"
    content_store = content_store or home / "content"
    ipfs_repo = ipfs_repo or home / "ipfs"
    stop = threading.Event()
    # SIGINT and SIGTERM both stop everything cleanly, so `kill` is as good as Ctrl-C.
    old = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run_market(port=port or None, epoch_length=epoch_length, state_dir=state_dir, block_time=block_time,
                   backend=backend, no_node=no_node, http_port=http_port, api_port=api_port,
                   content_store=None if no_node else content_store, ipfs=ipfs and not no_node,
                   ipfs_api=None if no_node else ipfs_api, ipfs_port=ipfs_port, ipfs_repo=ipfs_repo, stop=stop,
                   app_name=_app_name(app_name), gateway_port=gateway_port,
                   dashboard_port=0 if no_node else dashboard_port)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)

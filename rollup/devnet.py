"""``python -m rollup devnet``: a local chain with the real Cartesi v2.2.0 contracts, and our node.

What it does: starts anvil (from node_modules) on 127.0.0.1:<port> with its state kept in
``<state-dir>/anvil-state.json`` (loaded at start, saved every few seconds and at exit), deploys
the Cartesi core contracts at their canonical addresses (idempotent), creates an Authority and an
Application (or reuses the ones recorded in ``<state-dir>/deployment.json`` if the chain still
holds them and the epoch length matches), writes ``<state-dir>/deployment.json``, then runs the
node (``rollup.node.run_node``) until Ctrl-C. ``--no-node`` keeps only the chain up.

Restart rules: a second run loads the saved chain and reuses the deployment. If the state file
cannot be loaded it is moved aside (``anvil-state.json.broken-<time>``) and the chain starts
fresh; whenever a *new* Application is deployed, the node's folder ``<state-dir>/node`` (its
SQLite store) is cleared, since it described another chain.

Keys: account 0 of anvil's default mnemonic deploys, owns the Authority (so it is the claimer)
and owns the Application. These are PUBLIC TEST KEYS (see ``rollup.anvil.DEV_ACCOUNTS``):
never use them on a public network.

Library use (tests, client demo)::

    from rollup.devnet import start_devnet
    net = start_devnet(port=None, epoch_length=5, state_dir=tmp)   # port None: a free port
    net.deployment, net.deployment_path, net.anvil.url
    net.stop()                                                        # or `with start_devnet(...) as net:`

What the node gets: ``run_node(deployment_path, backend, <state-dir>/node, rpc_url=<anvil url>,
claimer_key=<account 0 key>, http_port=<--http-port or rollup.node.DEFAULT_HTTP_PORT>,
api_port=<--api-port or rollup.node.DEFAULT_API_PORT>, block=False)``, then ``node.run_forever()``.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click

from rollup.anvil import DEV_ACCOUNTS, Anvil, AnvilError
from rollup.chain import connect
from rollup.deploy import DEFAULT_TEMPLATE_HASH, Deployment, DeployError, deploy_devnet, deployment_is_live

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
    template_hash: bytes = DEFAULT_TEMPLATE_HASH,
) -> Devnet:
    """Start (or resume) the chain and make sure the deployment exists; returns a running Devnet."""
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


def _call_run_node(net: Devnet, backend: str, http_port: int | None, api_port: int | None) -> None:
    from rollup.node import DEFAULT_API_PORT, DEFAULT_HTTP_PORT, run_node

    net.node_dir.mkdir(parents=True, exist_ok=True)
    # the node's standard ports unless given (its library default is "any free port")
    node = run_node(net.deployment_path, backend, net.node_dir, block=False, rpc_url=net.anvil.url,
                    claimer_key=DEV_ACCOUNTS[0].private_key,
                    http_port=DEFAULT_HTTP_PORT if http_port is None else http_port,
                    api_port=DEFAULT_API_PORT if api_port is None else api_port)
    click.echo(f"{'rollup API':<13}{node.rollup_url}")
    click.echo(f"{'node API':<13}{node.api_url}")
    click.echo(f"node state   {net.node_dir.resolve()}  (Ctrl-C stops node and chain)")
    node.run_forever()  # returns on SIGINT/SIGTERM, after stopping the node


def _wait_forever() -> None:
    stop = threading.Event()
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass


@click.command("devnet")
@click.option("--port", default=8545, show_default=True, type=click.IntRange(0, 65535),
              help="anvil's port on 127.0.0.1 (0: any free port)")
@click.option("--epoch-length", default=10, show_default=True, type=click.IntRange(min=1), help="blocks per epoch")
@click.option("--state-dir", default=".run/devnet", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--block-time", default=None, type=float, help="seconds per block (default: mine on each transaction)")
@click.option("--backend", default=None, help="backend command the node runs (e.g. 'python -m dapp')")
@click.option("--no-node", is_flag=True, help="only run the chain")
@click.option("--http-port", default=None, type=int, help="node's rollup HTTP API port (node default if unset)")
@click.option("--api-port", default=None, type=int, help="node's JSON-RPC/inspect port (node default if unset)")
def devnet_command(port: int, epoch_length: int, state_dir: Path, block_time: float | None, backend: str | None,
                   no_node: bool, http_port: int | None, api_port: int | None) -> None:
    """Run a local chain with the Cartesi v2.2.0 contracts, an Application, and the node."""
    # SIGTERM behaves like Ctrl-C so `kill` also tears everything down cleanly.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        net = start_devnet(port or None, epoch_length, state_dir, block_time=block_time)
    except (AnvilError, DeployError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        dep = net.deployment
        click.echo(f"anvil        {net.anvil.url} (chain id {dep.chain_id})"
                   + (" [resumed]" if net.reused else ""))
        for name, addr in dep.contracts.items():
            click.echo(f"{name:<29}{addr}")
        click.echo(f"{'Authority':<29}{dep.authority} (epoch length {dep.epoch_length}, owner {dep.owner})")
        click.echo(f"{'Application':<29}{dep.application} (deployed in block {dep.deploy_block})")
        click.echo(f"deployment   {net.deployment_path.resolve()}")
        click.echo("keys         anvil's default mnemonic: PUBLIC TEST KEYS, never use them for real funds")
        if no_node or not backend:
            if not no_node:
                click.echo("no --backend given: running the chain only (Ctrl-C to stop)")
            _wait_forever()
        else:
            _call_run_node(net, backend, http_port, api_port)
    except KeyboardInterrupt:
        pass
    finally:
        net.stop()
        log.info("devnet stopped")

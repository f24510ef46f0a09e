"""The host-mode Cartesi v2 node: reader, backend supervisor, rollup HTTP server, store, claimer
and client API in one process, with the backend as a child process.

How it plays the machine (CARTESI_V2.md §1): one worker thread feeds inputs to the backend
strictly in index order and serves inspects between them. An accepted input's vouchers and
notices join the outputs tree; a rejected or exception input's are dropped and their indices
reused; reports always stay.

Where host mode cannot be the machine, the choices are:
- reject: the machine rolls back to its snapshot before the input. A host process cannot, so by
  default the backend is trusted to leave its state untouched when it rejects (the backend
  contract, also what `dapp/` does). `replay_on_reject=True` restarts it and replays every
  accepted input instead, which is exact but costs a replay per reject.
- exception (`/exception`): the backend is restarted and its state rebuilt by replaying the
  accepted inputs (it may be mid-way through an input, and is not expected to go on).
- the backend dies mid-input: the input counts as rejected, with a report from the node saying
  so (`NODE_DIED_REPORT_PREFIX`), and the backend is restarted and replayed. A backend that dies
  deterministically on an input gives the same verdict under `verify`; one killed from outside
  may not, which is why the node's report names the exit code.
- who may talk to the rollup server: inside the machine only the backend can; here any local
  process could reach the port, so the server serves only under a per-run secret path prefix that
  only the backend gets (in `ROLLUP_HTTP_SERVER_URL`; see `rollup.server`). `rollup_url` is the
  address without the secret, safe to print.
- crash safety: each processed input is one SQLite transaction; after a restart the backend is
  rebuilt by replaying accepted inputs and every replayed output must equal the stored one
  (`NonDeterministicBackendError` otherwise), so nothing is lost or appended twice.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from eth_utils import to_checksum_address

from rollup.gio import ContentResolver, NullResolver
from rollup.merkle import OutputsTree
from rollup.server import (ACCEPTED, DIED, EXCEPTION, REJECTED, MachineRequest, RollupHttpServer,
                           RollupMachine)
from rollup.store import InputRecord, Store
from rollup.supervisor import Supervisor

log = logging.getLogger(__name__)

NODE_DIED_REPORT_PREFIX = b"tributary-node: backend died while processing the input"
DEFAULT_HTTP_PORT = 5004
DEFAULT_API_PORT = 10011
MAX_PENDING_INSPECTS = 64  # queued inspects (each holds up to 2 MiB); more get "busy" (503)


class NodeError(Exception):
    """The node cannot go on (configuration, chain or state problem)."""


class NonDeterministicBackendError(NodeError):
    """Replaying an accepted input gave other outputs than the stored ones."""


class BackendStartError(NodeError):
    """The backend died without ever taking a request (bad command, crash at import)."""


class BackendTimeoutError(NodeError):
    """The backend did not finish a request within the node's request timeout."""


class NodeBusyError(NodeError):
    """Too many inspects are waiting already; the client should retry later."""


class ContentUnavailableError(NodeError):
    """A replayed input needs content the node served before and cannot serve now (rollup.gio)."""


@dataclass
class RequestResult:
    status: str
    outputs: list[bytes] = field(default_factory=list)
    reports: list[bytes] = field(default_factory=list)
    exception_payload: bytes | None = None


@dataclass
class InspectResult:
    status: str  # "Accepted" | "Rejected" | "Exception"
    reports: list[bytes]
    processed_input_count: int
    exception_payload: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        """The official inspect answer: `exception` (text) only when the backend raised one, and
        `reports` null when there are none (Go's nil slice), as rollups-node v2 sends them."""
        out: dict[str, Any] = {"status": self.status}
        if self.status == "Exception":
            detail = "the backend died" if self.exception_payload is None else \
                self.exception_payload.decode("utf-8", "replace")
            out["exception"] = f"Error on the machine while inspecting: {detail}"
        out["reports"] = [{"payload": "0x" + r.hex()} for r in self.reports] or None
        out["processed_input_count"] = self.processed_input_count
        return out


_INSPECT_STATUS = {ACCEPTED: "Accepted", REJECTED: "Rejected", EXCEPTION: "Exception", DIED: "Exception"}


def load_deployment(deployment: Any) -> dict[str, Any]:
    """A deployment JSON as a dict, from a path, a dict or rollup.deploy.Deployment."""
    if isinstance(deployment, (str, Path)):
        try:
            return json.loads(Path(deployment).read_text())
        except (OSError, ValueError) as exc:
            raise NodeError(f"cannot read deployment file {deployment}: {exc}") from exc
    if hasattr(deployment, "to_json"):
        return dict(deployment.to_json())
    return dict(deployment)


class Node:
    """One application's node. `start()` returns once servers listen; `stop()` tears down.

    Parameters worth knowing: `claim=False` makes a read-only node (verify and reference runs);
    `head_block` stops reading the chain at that block (verify replays a fixed history);
    `resolver` answers `/gio`; ports 0 pick free ports (tests).
    """

    def __init__(
        self,
        deployment: Any,
        backend: str | Sequence[str],
        state_dir: str | Path | None = None,
        *,
        http_port: int = 0,
        api_port: int | None = 0,
        poll_interval: float = 0.5,
        resolver: ContentResolver | None = None,
        claim: bool = True,
        claimer_key: str | None = None,
        replay_on_reject: bool = False,
        app_name: str | None = None,
        rpc_url: str | None = None,
        head_block: int | None = None,
        backend_env: dict[str, str] | None = None,
        backend_log: IO[bytes] | str | Path | None = None,
        request_timeout: float | None = None,
    ) -> None:
        self.deployment = load_deployment(deployment)
        dep = self.deployment
        self.app = to_checksum_address(dep["application"])
        self.authority = to_checksum_address(dep["authority"])
        self.input_box = to_checksum_address(dep["contracts"]["InputBox"])
        self.epoch_length = int(dep["epoch_length"])
        self.deploy_block = int(dep.get("deploy_block", 0))
        self.chain_id = int(dep["chain_id"])
        self.rpc_url = rpc_url or dep["rpc_url"]
        self.app_name = app_name or dep.get("name") or "tributary"
        self.backend = backend
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.http_port = http_port
        self.api_port = api_port
        self.poll_interval = poll_interval
        self.claim = claim
        self.claimer_key = claimer_key
        self.replay_on_reject = replay_on_reject
        self.head_block = head_block
        self.backend_env = backend_env
        self.backend_log = backend_log
        self.request_timeout = request_timeout

        self.machine = RollupMachine(resolver or NullResolver())
        self.tree = OutputsTree()
        self.tree_lock = threading.RLock()
        self.store: Store | None = None
        self.http: RollupHttpServer | None = None
        self.api: Any = None
        self.supervisor: Supervisor | None = None
        self.error: BaseException | None = None
        self.replayed_inputs = 0
        self._log_file: IO[bytes] | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        # wait_caught_up() asks for a fresh poll by bumping _want; the worker records in
        # _caught_gen the request number its last complete poll started after, so a poll that
        # began before the request can never answer it.
        self._want = 0
        self._caught_gen = 0
        self._wake = threading.Event()
        self._inspects: queue.Queue[tuple[bytes, Future]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._tmpdir: Any = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def rollup_url(self) -> str:
        """The rollup HTTP server's address, without the secret prefix the backend gets."""
        assert self.http is not None
        return self.http.base_url

    @property
    def backend_restarts(self) -> int:
        """How many times the backend was restarted (exception, death, replay on reject)."""
        return 0 if self.supervisor is None else self.supervisor.restarts

    @property
    def api_url(self) -> str:
        assert self.api is not None
        return self.api.url

    @property
    def processed_count(self) -> int:
        assert self.store is not None
        return self.store.processed_count

    def start(self) -> "Node":
        from rollup.chain import connect

        if self.state_dir is None:
            import tempfile

            self._tmpdir = tempfile.TemporaryDirectory(prefix="tributary-node-")
            self.state_dir = Path(self._tmpdir.name)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.state_dir / "node.sqlite")
        self.store.check_identity(chain_id=self.chain_id, application=self.app.lower(),
                                  epoch_length=self.epoch_length)
        self.w3 = connect(self.rpc_url)
        if int(self.w3.eth.chain_id) != self.chain_id:
            raise NodeError(f"{self.rpc_url} is chain {self.w3.eth.chain_id}, deployment says {self.chain_id}")
        from rollup.reader import InputReader

        self.reader = InputReader(self.w3, self.input_box, self.app, self.deploy_block,
                                  self.epoch_length, self.store)
        with self.tree_lock:
            self.tree = OutputsTree.from_leaves(self.store.output_hashes())
        self.claimer = None
        if self.claim:
            from rollup.claimer import Claimer

            self.claimer = Claimer(self.w3, self.authority, self.app, self.store, self.claimer_key)

        from rollup.gio import journaled  # GIO verdicts recorded per input, unavailability retried

        self.gio = self.machine.resolver = journaled(self.machine.resolver, self.state_dir, self._stop)
        self.http = RollupHttpServer(self.machine, port=self.http_port).start()
        if self.api_port is not None:
            from rollup.rpc import ApiServer

            self.api = ApiServer(self, port=self.api_port).start()
        log_target = self.backend_log
        if log_target is None:
            log_target = self.state_dir / "backend.log"
        if isinstance(log_target, (str, Path)):
            # owner-only: a backend may print its ROLLUP_HTTP_SERVER_URL, which holds the secret
            fd = os.open(log_target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._log_file = os.fdopen(fd, "ab")
            log_target = self._log_file
        # http.url carries the per-run secret prefix: only the backend learns it
        self.supervisor = Supervisor(self.backend, self.http.url, env=self.backend_env,
                                     log_file=log_target)
        self._worker = threading.Thread(target=self._run, name="node-worker", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=15)
        if self.supervisor is not None:
            self.supervisor.stop()
        self.machine.reset()
        if self.api is not None:
            self.api.stop()
        if self.http is not None:
            self.http.stop()
        if self.store is not None:
            self.store.close()
        if getattr(self, "gio", None) is not None:
            self.gio.close()
        if self._log_file is not None:
            self._log_file.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check(self) -> None:
        """Re-raise the worker's fatal error, if any (tests and the CLI call this)."""
        if self.error is not None:
            raise self.error

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the backend is started and replayed."""
        self._wait(self._ready.is_set, timeout, "the backend to be ready")

    def wait_processed(self, count: int, timeout: float = 60) -> None:
        self._wait(lambda: self.processed_count >= count, timeout, f"{count} processed inputs")

    def wait_caught_up(self, timeout: float = 60) -> None:
        """Until the node has read the chain head (or `head_block`) and processed everything."""
        self._want += 1
        gen = self._want
        self._wake.set()
        self._wait(lambda: self._caught_gen >= gen, timeout, "the node to catch up")

    def _wait(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.02)
        self.check()

    def run_forever(self) -> None:
        """Serve until SIGINT/SIGTERM (CLI); a fatal worker error is raised."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            while not stop.is_set() and self.error is None:
                stop.wait(0.2)
        finally:
            self.stop()
        self.check()

    # ------------------------------------------------------------------ inspect (API threads)
    def inspect(self, payload: bytes, timeout: float = 60.0) -> InspectResult:
        if self._inspects.qsize() >= MAX_PENDING_INSPECTS:
            raise NodeBusyError(f"{MAX_PENDING_INSPECTS} inspects are already waiting; retry later")
        fut: Future = Future()
        self._inspects.put((bytes(payload), fut))
        self._wake.set()
        return fut.result(timeout=timeout)

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        try:
            assert self.supervisor is not None and self.store is not None
            self.supervisor.start()
            self._replay()
            self._ready.set()
            last_poll = 0.0
            while not self._stop.is_set():
                self._serve_inspects()
                now = time.monotonic()
                polled = False
                if now - last_poll >= self.poll_interval or self._wake.is_set():
                    self._wake.clear()
                    poll_gen = self._want
                    self._poll_chain()
                    last_poll, polled = now, True
                rec = self.store.next_unprocessed()
                if rec is not None:
                    self._process(rec)
                    continue
                self._close_and_claim()
                if polled and self.store.next_unprocessed() is None:
                    self._caught_gen = max(self._caught_gen, poll_gen)
                self._wake.wait(max(0.0, self.poll_interval - (time.monotonic() - last_poll)))
        except BaseException as exc:  # recorded for check(); the node stops serving inputs
            if not self._stop.is_set():
                log.exception("node worker stopped")
                self.error = exc
        finally:
            self._fail_inspects()

    def _poll_chain(self) -> None:
        head = int(self.w3.eth.block_number)
        if self.head_block is not None:
            head = min(head, self.head_block)
        self.reader.poll(head)
        self.reader.poll_executions(head)

    def _close_and_claim(self) -> None:
        from rollup.claimer import close_ready_epochs

        assert self.store is not None
        with self.tree_lock:
            close_ready_epochs(self.store, self.tree)
        if self.claimer is not None:
            from rollup.claimer import ClaimConflictError

            try:
                self.claimer.submit_closed()
            except ClaimConflictError:
                raise
            except Exception as exc:  # chain hiccups, nonce races, reverts: retried next poll
                log.warning("claim failed, will retry: %s", exc)

    def _pending_inspects(self) -> Iterator[tuple[bytes, Future]]:
        """The queued inspects whose callers still wait, each marked running."""
        while True:
            try:
                payload, fut = self._inspects.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                yield payload, fut

    def _serve_inspects(self) -> None:
        for payload, fut in self._pending_inspects():
            try:
                res = self._run_request(MachineRequest("inspect", payload))
                fut.set_result(InspectResult(_INSPECT_STATUS[res.status], res.reports,
                                             self.processed_count, res.exception_payload))
                if res.status in (EXCEPTION, DIED):
                    self._restart_backend()
            except BaseException as exc:
                fut.set_exception(exc)
                raise

    def _fail_inspects(self) -> None:
        for _, fut in self._pending_inspects():
            fut.set_exception(NodeError("the node stopped"))

    def _run_request(self, req: MachineRequest) -> RequestResult:
        assert self.supervisor is not None
        self.machine.submit(req)
        started = time.monotonic()
        while not req.done.wait(0.05):
            if self._stop.is_set():
                self.machine.abort(req)
                raise NodeError("node stopping")
            if not self.supervisor.alive():
                # An /exception may land just before the process exits: give it a moment.
                if req.done.wait(0.1):
                    break
                self.machine.abort(req)
                break
            if getattr(self, "gio", None) is not None and self.gio.fatal is not None:
                self.machine.abort(req)  # a replay that cannot rebuild history (rollup.gio)
                raise ContentUnavailableError(
                    f"cannot replay: {self.gio.fatal}. Make that content reachable (e.g. run the "
                    f"node with the store that served it) and start the node again")
            if self.request_timeout is not None and time.monotonic() - started > self.request_timeout:
                self.machine.abort(req)
                raise BackendTimeoutError(f"the backend did not finish a {req.kind} request in "
                                          f"{self.request_timeout} s")
        reports = list(req.reports)
        if req.status == DIED and not req.picked:
            # It never took the request: a broken command or a crash at start-up, not a verdict
            # on this input. Marking inputs rejected for it would be a lie that gets claimed.
            raise BackendStartError(
                f"the backend exited (code {self.supervisor.returncode}) before taking a request;"
                f" see {self.state_dir / 'backend.log' if self.backend_log is None else 'its log'}")
        if req.status == DIED:
            reports.append(NODE_DIED_REPORT_PREFIX + f" (exit code {self.supervisor.returncode})".encode())
        return RequestResult(req.status or DIED, list(req.outputs), reports, req.exception_payload)

    def _process(self, rec: InputRecord) -> None:
        assert self.store is not None
        base = len(self.tree)
        if self.machine.output_count != base:
            raise NodeError(f"machine counts {self.machine.output_count} outputs, tree {base}")
        self.gio.begin(rec.index)
        res = self._run_request(MachineRequest("advance", rec.payload, rec.metadata()))
        unavailable = self.gio.end()
        if unavailable is not None:
            # No verdict without the content: drop this run (the backend may be half-way through
            # the input), rebuild the backend and try the same input again after a pause.
            log.error("input %d not processed, will retry: %s", rec.index, unavailable)
            self._restart_backend()
            self._stop.wait(1.0)
            return
        status = REJECTED if res.status == DIED else res.status
        outputs = res.outputs if status == ACCEPTED else []
        written = self.store.commit_input(rec, status, outputs, res.reports, res.exception_payload, base)
        with self.tree_lock:
            for out in written:
                self.tree.append(out.hash)
        log.debug("input %d: %s, %d outputs, %d reports", rec.index, status, len(outputs), len(res.reports))
        if res.status in (EXCEPTION, DIED) or (status == REJECTED and self.replay_on_reject):
            self._restart_backend()

    def _restart_backend(self) -> None:
        assert self.supervisor is not None
        self.supervisor.stop()
        self.machine.reset()
        self.supervisor.start()
        self._replay()

    def _replay(self) -> None:
        """Rebuild the backend's state from the accepted inputs, checking every output."""
        assert self.store is not None
        self.machine.output_count = 0
        for rec in self.store.accepted_inputs():
            if self._stop.is_set():
                raise NodeError("node stopping")
            stored = [o.raw for o in self.store.outputs_of_input(rec.index)]
            if self.machine.output_count != rec.output_base:
                raise NonDeterministicBackendError(
                    f"replay of input {rec.index}: output index {self.machine.output_count},"
                    f" stored {rec.output_base}")
            self.gio.begin(rec.index, replay=True)
            res = self._run_request(MachineRequest("advance", rec.payload, rec.metadata()))
            unavailable = self.gio.end()
            if unavailable is not None:
                raise ContentUnavailableError(
                    f"cannot replay input {rec.index}: {unavailable}. Make that content reachable "
                    f"(e.g. run the node with the store that served it) and start the node again")
            if res.status != ACCEPTED or res.outputs != stored:
                raise NonDeterministicBackendError(
                    f"replay of input {rec.index} gave status {res.status} and {len(res.outputs)} outputs;"
                    f" stored ACCEPTED with {len(stored)} outputs"
                    + ("" if res.status != ACCEPTED else
                       f" (first difference at output {next((i for i, (a, b) in enumerate(zip(res.outputs, stored)) if a != b), min(len(res.outputs), len(stored)))})"))
            self.replayed_inputs += 1
        if self.machine.output_count != len(self.tree):
            raise NonDeterministicBackendError(
                f"after replay the machine counts {self.machine.output_count} outputs, the store {len(self.tree)}")


def run_node(
    deployment: Any,
    backend: str | Sequence[str],
    state_dir: str | Path | None = None,
    *,
    block: bool = True,
    **kwargs: Any,
) -> Node:
    """Start a node (devnet and the CLI call this). With `block=True` serve until SIGINT/SIGTERM."""
    node = Node(deployment, backend, state_dir, **kwargs).start()
    if block:
        node.run_forever()
    return node


# ------------------------------------------------------------------------------------------ CLI
import click  # noqa: E402  (kept below the library part: importing the node needs no click)


@click.command("node")
@click.option("--deployment", "deployment_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="deployment JSON written by `rollup devnet` (or by hand)")
@click.option("--backend", required=True, help="backend command (shell string)")
@click.option("--rpc-url", default=None, help="Ethereum JSON-RPC URL (default: $CARTESI_BLOCKCHAIN_HTTP_ENDPOINT, "
              "else the deployment's rpc_url)")
@click.option("--state-dir", default=".run/node", show_default=True, type=click.Path(file_okay=False))
@click.option("--http-port", default=DEFAULT_HTTP_PORT, show_default=True, type=int,
              help="rollup HTTP server port (the backend's ROLLUP_HTTP_SERVER_URL)")
@click.option("--api-port", default=None, type=int,
              help=f"JSON-RPC (/rpc), inspect (/inspect/<app>) and /health port (default: the port of "
                   f"$CARTESI_JSONRPC_API_ADDRESS, else {DEFAULT_API_PORT})")
@click.option("--poll-interval", default=0.5, show_default=True, type=float, help="chain polling, seconds")
@click.option("--content-store", default=None, type=click.Path(file_okay=False),
              help="embedded content store directory served over GIO")
@click.option("--ipfs-api", default=None, help="IPFS HTTP RPC multiaddr served over GIO")
@click.option("--no-claim", is_flag=True, help="read-only: never submit claims "
              "(also CARTESI_FEATURE_CLAIM_SUBMISSION_ENABLED=false)")
@click.option("--replay-on-reject", is_flag=True,
              help="restart and replay the backend after every rejected input (exact machine rollback)")
@click.option("--app-name", default=None, help="the application's name in /inspect/<name> and the JSON-RPC "
              "(default: `name` in ./cartesi.toml, else the deployment's name, else tributary)")
@click.option("--gateway", "gateway", is_flag=True,
              help="also serve /anvil, /rpc and /inspect/<app> on one port, as `cartesi run` does")
@click.option("--gateway-port", default=None, type=int,
              help="the gateway's port (implies --gateway; default: $CARTESI_HTTP_PORT, else 6751)")
def node_command(deployment_path: str, backend: str, rpc_url: str | None, state_dir: str, http_port: int,
                 api_port: int | None, poll_interval: float, content_store: str | None, ipfs_api: str | None,
                 no_claim: bool, replay_on_reject: bool, app_name: str | None, gateway: bool,
                 gateway_port: int | None) -> None:
    """Run the host-mode node for one application; the key comes from $CARTESI_AUTH_PRIVATE_KEY or
    $TRIBUTARY_CLAIMER_KEY (default: anvil's public account 0). The official node's CARTESI_*
    settings that the two share are read too (rollup.gateway.node_settings_from_env)."""
    from rollup.gateway import DEFAULT_GATEWAY_PORT, Gateway, GatewayError, app_name_from_toml
    from rollup.gateway import app_name as gateway_app_name
    from rollup.gateway import node_settings_from_env
    from rollup.gio import resolver_from_args

    try:
        env = node_settings_from_env(load_deployment(deployment_path))
        name = gateway_app_name(app_name) if app_name else app_name_from_toml()
    except (GatewayError, NodeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if "log_level" in env:
        logging.getLogger().setLevel(env["log_level"])
    extra = {k: env[k] for k in ("claimer_key",) if k in env}
    claim = not no_claim and env.get("claim", True)
    resolver = resolver_from_args(content_store=content_store, ipfs_api=ipfs_api)
    try:
        node = Node(deployment_path, backend, state_dir, http_port=http_port,
                    api_port=api_port if api_port is not None else env.get("api_port", DEFAULT_API_PORT),
                    poll_interval=poll_interval, resolver=resolver, claim=claim,
                    replay_on_reject=replay_on_reject, app_name=name, rpc_url=rpc_url or env.get("rpc_url"),
                    **extra).start()
    except (NodeError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"node for {node.app} ({node.app_name}): rollup API {node.rollup_url}, node API {node.api_url}, "
               f"state {state_dir}", err=True)
    gw = None
    if gateway or gateway_port is not None or "gateway_port" in env:
        port = gateway_port if gateway_port is not None else env.get("gateway_port", DEFAULT_GATEWAY_PORT)
        try:
            gw = Gateway(node.api_url, node.rpc_url, env.get("gateway_host", "127.0.0.1"), port).start()
        except OSError as exc:
            node.stop()
            raise click.ClickException(f"cannot serve the gateway on port {port}: {exc}") from exc
        click.echo(f"cartesi-run endpoint {gw.url}: /anvil, /rpc, /inspect/{node.app_name}", err=True)
    try:
        node.run_forever()
    except NodeError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if gw is not None:
            gw.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node_command()

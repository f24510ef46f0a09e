"""`python -m rollup verify`: anyone can check the node operator's claims.

Given only an RPC URL, the app address and the backend, replay every input from the chain through
a fresh backend (the node's own pipeline, read-only, in a temporary state dir), rebuild each
epoch's outputs root and compare it with the claims accepted on chain. Everything else comes from
the chain: the InputBox from the app's data availability, the Authority from the app's outputs
root validator, the epoch length from the Authority. A claim is only as good as this replay: the
backend must be deterministic (CARTESI_V2 §9).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import click
from eth_abi import decode as abi_decode
from eth_utils import to_checksum_address

from rollup.chain import call_fn, connect, contract
from rollup.deploy import DATA_AVAILABILITY_INPUTBOX
from rollup.node import Node

log = logging.getLogger(__name__)

OK = "OK"
MISMATCH = "MISMATCH"
UNCLAIMED = "UNCLAIMED"
OPEN = "OPEN"


class VerifyError(Exception):
    """The app's setup cannot be read from the chain, or the replay could not finish."""


@dataclass
class EpochVerdict:
    epoch: int
    first_block: int
    last_block: int
    inputs: int
    verdict: str
    computed_root: bytes
    claimed_root: bytes | None = None
    claim_tx: str | None = None

    def line(self) -> str:
        head = f"epoch {self.epoch} (blocks {self.first_block}-{self.last_block}, {self.inputs} inputs): {self.verdict}"
        if self.verdict == OK:
            return f"{head} root 0x{self.computed_root.hex()}"
        if self.verdict == MISMATCH:
            assert self.claimed_root is not None
            return (f"{head}\n    claimed  0x{self.claimed_root.hex()} (tx {self.claim_tx})"
                    f"\n    computed 0x{self.computed_root.hex()}")
        return f"{head} computed 0x{self.computed_root.hex()}"


@dataclass
class VerifyReport:
    app: str
    authority: str
    epoch_length: int
    head_block: int
    processed_inputs: int
    epochs: list[EpochVerdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e.verdict != MISMATCH for e in self.epochs)

    def mismatches(self) -> list[EpochVerdict]:
        return [e for e in self.epochs if e.verdict == MISMATCH]


def app_setup(w3: Any, app: str) -> dict[str, Any]:
    """What the chain says about the app: InputBox, Authority, epoch length, deployment block."""
    c = contract(w3, "Application", app)
    da = bytes(call_fn(c.functions.getDataAvailability()))
    if da[:4] != DATA_AVAILABILITY_INPUTBOX:
        raise VerifyError(f"app {app} does not take its inputs from an InputBox (data availability 0x{da[:4].hex()})")
    (input_box,) = abi_decode(["address"], da[4:])
    authority = to_checksum_address(call_fn(c.functions.getOutputsMerkleRootValidator()))
    epoch_length = int(call_fn(contract(w3, "Authority", authority).functions.getEpochLength()))
    deploy_block = int(call_fn(c.functions.getDeploymentBlockNumber()))
    return {"input_box": to_checksum_address(input_box), "authority": authority,
            "epoch_length": epoch_length, "deploy_block": deploy_block}


def verify(rpc_url: str, app: str, backend: str | Sequence[str], from_block: int | None = None,
           state_dir: str | Path | None = None, timeout: float = 600.0,
           resolver: Any = None) -> VerifyReport:
    """Replay and compare; returns the per-epoch verdicts (raises VerifyError if it cannot).

    `resolver` answers the backend's GIO requests during the replay: a backend that reads
    content by id (the market) needs the same content the node had, from any store that holds
    it (the backend checks every hash itself, so the store need not be trusted). A store that
    cannot be reached (or no store) is waited for, never answered "not found" (rollup.gio): the
    replay then ends in a VerifyError naming the CID. A reachable store that lacks a block the
    node served answers "not found", and the replay may then show a MISMATCH: GIO mode trusts
    the node for content availability (README, "Content availability")."""
    w3 = connect(rpc_url)
    app = to_checksum_address(app)
    setup = app_setup(w3, app)
    start = setup["deploy_block"] if from_block is None else from_block
    head = int(w3.eth.block_number)
    L = setup["epoch_length"]
    deployment = {
        "chain_id": int(w3.eth.chain_id), "rpc_url": rpc_url,
        "contracts": {"InputBox": setup["input_box"]}, "application": app,
        "authority": setup["authority"], "epoch_length": L, "deploy_block": start, "owner": "",
    }
    tmp = None
    if state_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tributary-verify-")
        state_dir = tmp.name
    node = Node(deployment, backend, state_dir, claim=False, api_port=None, head_block=head,
                poll_interval=0.2, resolver=resolver)
    try:
        node.start()
        node.wait_caught_up(timeout)
        store = node.store
        assert store is not None
        report = VerifyReport(app, setup["authority"], L, head, store.processed_count)

        claims: dict[int, tuple[bytes, str]] = {}
        auth = contract(w3, "Authority", setup["authority"])
        for ev in auth.events.ClaimAccepted().get_logs(from_block=start, to_block=head,
                                                        argument_filters={"appContract": app}):
            epoch = int(ev["args"]["lastProcessedBlockNumber"]) // L
            claims[epoch] = (bytes(ev["args"]["outputsMerkleRoot"]), "0x" + bytes(ev["transactionHash"]).hex())

        epochs_with_inputs = {e.index for e in store.list_epochs()[0]}
        for epoch in sorted(epochs_with_inputs | set(claims)):
            first, last = epoch * L, epoch * L + L - 1
            inputs = store.list_inputs(epoch, limit=1)[1]
            with node.tree_lock:
                computed = node.tree.root(store.output_count_through_epoch(epoch))
            if epoch in claims:
                claimed, tx = claims[epoch]
                verdict = OK if claimed == computed else MISMATCH
                report.epochs.append(EpochVerdict(epoch, first, last, inputs, verdict, computed, claimed, tx))
            else:
                verdict = OPEN if last >= head else UNCLAIMED
                report.epochs.append(EpochVerdict(epoch, first, last, inputs, verdict, computed))
        return report
    except TimeoutError as exc:
        stalled = getattr(getattr(node, "gio", None), "last_unavailable", None)
        raise VerifyError(f"replay did not finish in {timeout} s"
                          + (f": waiting for content: {stalled}" if stalled else "")) from exc
    finally:
        node.stop()
        if tmp is not None:
            tmp.cleanup()


@click.command("verify")
@click.option("--rpc-url", required=True, help="Ethereum JSON-RPC URL")
@click.option("--app", "app", required=True, help="Application contract address")
@click.option("--backend", required=True, help="backend command (shell string) to replay the inputs with")
@click.option("--from-block", default=None, type=int, help="first block to read (default: the app's deployment block)")
@click.option("--timeout", default=600.0, show_default=True, type=float, help="seconds allowed for the replay")
@click.option("--content-store", default=None, type=click.Path(file_okay=False),
              help="embedded content store that serves the backend's GIO reads during the replay")
@click.option("--ipfs-api", default=None, help="or an IPFS HTTP RPC multiaddr serving them")
def verify_command(rpc_url: str, app: str, backend: str, from_block: int | None, timeout: float,
                   content_store: str | None, ipfs_api: str | None) -> None:
    """Replay every input of APP through BACKEND and check each claimed outputs root."""
    from rollup.gio import resolver_from_args

    try:
        resolver = resolver_from_args(content_store=content_store, ipfs_api=ipfs_api)
        report = verify(rpc_url, app, backend, from_block, timeout=timeout, resolver=resolver)
    except Exception as exc:
        raise click.ClickException(f"verify failed: {exc}") from exc
    click.echo(f"app {report.app}, authority {report.authority}, epoch length {report.epoch_length}, "
               f"{report.processed_inputs} inputs up to block {report.head_block}")
    for ep in report.epochs:
        click.echo(ep.line())
    bad = report.mismatches()
    if bad:
        click.echo(f"VERDICT: MISMATCH in {len(bad)} epoch(s): {', '.join(str(e.epoch) for e in bad)}")
        raise SystemExit(1)
    claimed = sum(1 for e in report.epochs if e.verdict == OK)
    click.echo(f"VERDICT: OK ({claimed} claimed epoch(s) match)")

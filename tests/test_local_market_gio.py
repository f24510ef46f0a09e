"""Issue 13, findings 4/5: a node that cannot reach content waits or stops, never decides.

Real anvil, real Cartesi contracts, the real node with the echo backend (`gio:` inputs echo the
GIO answer as a notice). The content source is a dict behind `BlockStoreResolver`, switched
between "answers", "down" (raises, as an unreachable IPFS API does) and "changed" (a different
store), so each case is exact:
- unreachable content is retried, the input is left undecided, and decided once reachable;
- a node without any content store never answers "not found";
- a "not found" given for an input is recorded and re-served on replay even after the content
  appeared (a restarted node keeps its history valid);
- content that was found must still be found on replay; if the new source lacks it the node stops
  with a message naming the CID, not a NonDeterministicBackendError.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dapp.content.cid import RAW, Cid
from rollup.deploy import Deployment
from rollup.gio import (CODE_NOT_FOUND, CODE_OK, CODE_UNAVAILABLE, DOMAIN_BLOCK_BY_CID, JOURNAL_FILE,
                        BlockStoreResolver, JournaledResolver, NullResolver)
from rollup.node import ContentUnavailableError, Node
from tests.node_fixtures import ECHO, Chain, chain, result, rpc  # noqa: F401

pytestmark = pytest.mark.chain

BLOCK = b"a model block"
CID = Cid.for_block(RAW, BLOCK)
GIO_INPUT = b"gio:" + DOMAIN_BLOCK_BY_CID.to_bytes(2, "big") + CID.to_bytes()


class Source:
    """A content source that can be switched off and on."""

    def __init__(self, blocks: dict[bytes, bytes] | None = None) -> None:
        self.blocks = dict(blocks or {})
        self.down = False
        self.asked = 0

    def get_block(self, cid: bytes) -> bytes | None:
        self.asked += 1
        if self.down:
            raise ConnectionError("no IPFS API answers at /ip4/127.0.0.1/tcp/5001/http")
        return self.blocks.get(bytes(cid))


@pytest.fixture
def start_node(chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Node]]:  # noqa: F811
    monkeypatch.setenv("TRIBUTARY_GIO_RETRY_S", "0.5")
    nodes: list[Node] = []

    def start(dep: Deployment, resolver: Any, state: str = "node") -> Node:
        node = Node(dep, ECHO, tmp_path / state, poll_interval=0.05, resolver=resolver).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


def gio_notices(node: Node) -> list[bytes]:
    outs = result(rpc(node.api_url, "cartesi_listOutputs", {"limit": 1000}))["data"]
    pays = [bytes.fromhex(o["decoded_data"]["payload"][2:]) for o in outs]
    return [p for p in pays if p.startswith(b"gio=")]


def wait_gio_notices(node: Node, count: int, timeout: float = 10) -> list[bytes]:
    """The node API may show an input's outputs a moment after `processed_count` counts it."""
    deadline = time.monotonic() + timeout
    while len(found := gio_notices(node)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def code_of(notice: bytes) -> int:
    return int.from_bytes(notice[4:6], "big")


def test_unreachable_content_is_never_answered_not_found(chain: Chain, start_node: Callable[..., Node]) -> None:  # noqa: F811
    dep = chain.deploy()
    source = Source({CID.to_bytes(): BLOCK})
    source.down = True
    node = start_node(dep, BlockStoreResolver(source.get_block))
    chain.add_input(dep, GIO_INPUT)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        node.check()
        assert node.processed_count == 0, "the node decided an input without its content"
        time.sleep(0.1)
    assert source.asked >= 3  # retried with backoff, and the backend restarted between tries
    source.down = False
    node.wait_processed(1, 30)
    notices = wait_gio_notices(node, 1)
    assert [code_of(n) for n in notices] == [CODE_OK] and notices[0][6:] == BLOCK


def test_a_node_without_a_content_store_waits(chain: Chain, start_node: Callable[..., Node]) -> None:  # noqa: F811
    assert NullResolver().resolve(DOMAIN_BLOCK_BY_CID, CID.to_bytes()).code == CODE_UNAVAILABLE
    dep = chain.deploy()
    node = start_node(dep, NullResolver())
    chain.add_input(dep, GIO_INPUT)
    chain.add_input(dep, b"plain")
    time.sleep(3)
    node.check()
    assert node.processed_count == 0  # neither the GIO input nor the one after it was decided
    assert gio_notices(node) == []


def test_recorded_not_found_is_replayed_after_the_content_appears(
        chain: Chain, start_node: Callable[..., Node], tmp_path: Path) -> None:  # noqa: F811
    dep = chain.deploy()
    source = Source()
    first = start_node(dep, BlockStoreResolver(source.get_block), "n")
    chain.add_input(dep, GIO_INPUT)
    first.wait_processed(1, 30)
    assert [code_of(n) for n in wait_gio_notices(first, 1)] == [CODE_NOT_FOUND]
    first.stop()
    journal = JournaledResolver(NullResolver(), tmp_path / "n" / JOURNAL_FILE)
    assert journal.recorded(0, DOMAIN_BLOCK_BY_CID, CID.to_bytes())[0] == CODE_NOT_FOUND  # type: ignore[index]
    journal.close()

    # the content appears and the node restarts on another source: history stays as it was
    other = Source({CID.to_bytes(): BLOCK})
    again = start_node(dep, BlockStoreResolver(other.get_block), "n")
    again.wait_ready(30)
    assert again.replayed_inputs == 1 and other.asked == 0
    chain.add_input(dep, GIO_INPUT)  # a new input gets today's answer
    again.wait_processed(2, 30)
    assert [code_of(n) for n in wait_gio_notices(again, 2)] == [CODE_NOT_FOUND, CODE_OK]


def test_found_content_missing_on_replay_stops_the_node_with_the_cid(
        chain: Chain, start_node: Callable[..., Node]) -> None:  # noqa: F811
    dep = chain.deploy()
    first = start_node(dep, BlockStoreResolver(Source({CID.to_bytes(): BLOCK}).get_block), "m")
    chain.add_input(dep, GIO_INPUT)
    first.wait_processed(1, 30)
    first.stop()
    # restarted on a source that lacks the block (e.g. --ipfs-api instead of --content-store)
    empty = start_node(dep, BlockStoreResolver(Source().get_block), "m")
    with pytest.raises(ContentUnavailableError, match=str(CID)) as err:
        empty.wait_ready(30)
    assert "found when input 0 was first processed" in str(err.value)
    # and with the original store back, it replays cleanly
    back = start_node(dep, BlockStoreResolver(Source({CID.to_bytes(): BLOCK}).get_block), "m")
    back.wait_ready(30)
    assert back.replayed_inputs == 1


# ----------------------------------------------------------------- the journal alone (no chain)

def test_store_errors_are_unavailable_and_inspects_never_wait(tmp_path: Path) -> None:
    source = Source({CID.to_bytes(): BLOCK})
    source.down = True
    assert BlockStoreResolver(source.get_block).resolve(DOMAIN_BLOCK_BY_CID, CID.to_bytes()).code == CODE_UNAVAILABLE
    journal = JournaledResolver(BlockStoreResolver(source.get_block), tmp_path / JOURNAL_FILE, retry_budget=30)
    t0 = time.monotonic()
    assert journal.resolve(DOMAIN_BLOCK_BY_CID, CID.to_bytes()).code == CODE_UNAVAILABLE  # an inspect
    assert time.monotonic() - t0 < 5 and journal.retries == 0
    source.down = False
    assert journal.resolve(DOMAIN_BLOCK_BY_CID, CID.to_bytes()).data == BLOCK
    assert journal.recorded(0, DOMAIN_BLOCK_BY_CID, CID.to_bytes()) is None  # inspects are not recorded
    journal.close()


def test_answers_are_recorded_at_the_end_of_the_input(tmp_path: Path) -> None:
    import hashlib

    source = Source({CID.to_bytes(): BLOCK})
    journal = JournaledResolver(BlockStoreResolver(source.get_block), tmp_path / JOURNAL_FILE, retry_budget=0.3)
    missing = Cid.for_block(RAW, b"nobody stored this").to_bytes()
    journal.begin(7)
    assert journal.resolve(DOMAIN_BLOCK_BY_CID, CID.to_bytes()).code == CODE_OK
    assert journal.resolve(DOMAIN_BLOCK_BY_CID, missing).code == CODE_NOT_FOUND
    assert journal.recorded(7, DOMAIN_BLOCK_BY_CID, missing) is None  # not durable before end()
    assert journal.end() is None
    assert journal.recorded(7, DOMAIN_BLOCK_BY_CID, CID.to_bytes()) == (CODE_OK, hashlib.sha256(BLOCK).digest())
    assert journal.recorded(7, DOMAIN_BLOCK_BY_CID, missing)[0] == CODE_NOT_FOUND  # type: ignore[index]
    # a stalled input: the message names the CID; a later try that finds the content is served
    # (a backend retrying by itself gets it), but the run is still reported as stalled
    source.down = True
    journal.begin(8)
    assert journal.resolve(DOMAIN_BLOCK_BY_CID, CID.to_bytes()).code == CODE_UNAVAILABLE
    assert journal.fatal is None  # first processing: wait, never stop
    source.down = False
    assert journal.resolve(DOMAIN_BLOCK_BY_CID, CID.to_bytes()).code == CODE_OK
    why = journal.end()
    assert why is not None and str(CID) in why and "ConnectionError" in why
    assert journal.recorded(8, DOMAIN_BLOCK_BY_CID, CID.to_bytes()) is None  # the run is discarded
    # a replay whose recorded block is gone: fatal, naming the CID
    source.blocks.clear()
    journal.begin(7, replay=True)
    assert journal.resolve(DOMAIN_BLOCK_BY_CID, CID.to_bytes()).code == CODE_UNAVAILABLE
    assert journal.fatal is not None and str(CID) in journal.fatal
    assert journal.resolve(DOMAIN_BLOCK_BY_CID, missing).code == CODE_NOT_FOUND  # the recorded verdict
    journal.end()
    journal.close()

"""Our CIDs and blocks are what a real IPFS node (js-ipfs 0.66.1) makes and serves.

`add` with cidVersion 1 + rawLeaves + 256 KiB chunks must give our root CID for every size
class (one raw leaf, exactly one chunk, one byte over, ~1 MB, a two-level tree), and the daemon
must `cat` our root after we `block put` only our own blocks.
"""
from __future__ import annotations

import io
import random
import warnings

import pytest

from dapp.content.cid import RAW, Cid
from dapp.content.unixfs import CHUNK_SIZE, MAX_LINKS, chunk
from tests.ipfs_daemon import IpfsDaemon, ipfs_api  # noqa: F401

ipfshttpclient = pytest.importorskip("ipfshttpclient")
pytestmark = pytest.mark.ipfs
warnings.filterwarnings("ignore", message="The 'strict' parameter", category=FutureWarning)


def client(daemon: IpfsDaemon) -> object:
    return ipfshttpclient.Client(daemon.api, timeout=60)


def ipfs_add(daemon: IpfsDaemon, data: bytes) -> str:
    resp = client(daemon).add(io.BytesIO(data), cid_version=1, raw_leaves=True,
                              chunker=f"size-{CHUNK_SIZE}", opts={"cid-base": "base32"})
    return str(resp["Hash"])


@pytest.mark.parametrize("size", [0, 5, CHUNK_SIZE, CHUNK_SIZE + 1, 1_000_000])
def test_add_gives_our_cid(ipfs_api: IpfsDaemon, size: int) -> None:  # noqa: F811
    data = random.Random(size).randbytes(size)
    assert ipfs_add(ipfs_api, data) == str(chunk(data)[0])


def test_add_gives_our_cid_two_levels(ipfs_api: IpfsDaemon) -> None:  # noqa: F811
    data = random.Random(1).randbytes((MAX_LINKS + 1) * CHUNK_SIZE + 17)
    root, blocks = chunk(data)
    assert sum(1 for c in blocks if Cid.parse(c).codec != RAW) == 3  # root + 2 inner nodes
    assert ipfs_add(ipfs_api, data) == str(root)


@pytest.mark.parametrize("size", [100, 3 * CHUNK_SIZE + 1])
def test_cat_serves_our_blocks(ipfs_api: IpfsDaemon, size: int) -> None:  # noqa: F811
    data = random.Random(size + 99).randbytes(size)
    root, blocks = chunk(data)
    c = client(ipfs_api)
    for cid, block in blocks.items():
        codec = Cid.parse(cid).codec_name
        resp = c.block.put(io.BytesIO(block), opts={"format": codec, "mhtype": "sha2-256",
                                                     "version": 1, "cid-base": "base32"})
        assert resp["Key"] == cid
    assert c.cat(str(root)) == data

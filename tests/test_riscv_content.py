"""Content addressing on riscv64: CIDs, UnixFS blocks and reassembly of a deterministic ~1 MB
object are byte-identical under qemu-riscv64 (Debian trixie userland) and on the host."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.riscv import REPO_ROOT, run_riscv_python

# Runs unchanged on both sides; prints one line per fact compared.
SCRIPT = r"""
import hashlib, platform, sys
from dapp.content.cid import Cid
from dapp.content.errors import ContentMismatch
from dapp.content.unixfs import assemble, chunk, decode_node

def data(n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])

for size in (0, 5, 262144, 262145, 1_000_003):
    d = data(size)
    root, blocks = chunk(d)
    print(size, root, hashlib.sha256(b"".join(blocks.values())).hexdigest())
    for cid, block in blocks.items():
        print(" ", cid, len(block))
    back = assemble(str(root), lambda c: blocks[str(c)], max_size=size)
    print(" assembled", hashlib.sha256(back).hexdigest(), back == d)
    if root.codec == 0x70:
        node = decode_node(root, blocks[str(root)])
        print(" node", node.filesize, node.blocksizes)
        leaf = next(iter(blocks))
        bad = dict(blocks)
        bad[leaf] = b"x" + bad[leaf][1:]
        try:
            assemble(root, lambda c: bad[str(c)], max_size=size)
        except ContentMismatch as exc:
            print(" refused", exc)
print("parsed", Cid.parse(bytes(Cid.parse(str(chunk(b"abc")[0])))))
print("machine", platform.machine(), file=sys.stderr)
"""


@pytest.mark.riscv
def test_content_is_identical_on_riscv64() -> None:
    host = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True, env={"PYTHONPATH": str(REPO_ROOT)})
    riscv = run_riscv_python(["-c", SCRIPT], cwd=str(REPO_ROOT), timeout=300)
    assert riscv.returncode == 0, riscv.stderr[-3000:]
    assert riscv.stderr.strip().endswith("machine riscv64")
    assert riscv.stdout == host.stdout
    assert host.stdout.count(" refused ") == 2
    assert "bafybei" in host.stdout

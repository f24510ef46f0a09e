"""Signed batches and batched payouts on RISC-V: the pure-integer secp256k1 recovery, the batch
parser and the market's outputs for a batch of joins (with a forgery and a replay), a payout and
a returned payout are the same bytes under qemu-riscv64 (Debian trixie's python3) as on the
host. The messages are signed on the host (eth-keys is a client dependency, not the backend's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from client.relay import sign
from dapp.market import protocol as p
from tests.riscv import run_riscv_python

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import sys, time
from dapp.market import batch as b
from dapp.market import payout
from dapp.market import protocol as p
from dapp.market.app import Market
from dapp.market.protocol import ETHER_PORTAL
from dapp.loop import handle_advance
from dapp.rollup_api import Metadata

APP = "0x" + "ab" * 20
messages = bytes.fromhex(open(sys.argv[1]).read().strip())
t0 = time.perf_counter()
for i, body in enumerate(b.split(messages)):
    try:
        m = b.parse(body, 31337, APP)
        print("message", i, m.signer, type(m.call).__name__, m.call.job_id)
    except b.MessageError as exc:
        print("message", i, "refused", exc)
print(f"{(time.perf_counter() - t0) / len(b.split(messages)) * 1000:.1f} ms per message",
      file=sys.stderr)

market = Market(None)
index = 0
def send(sender, payload):
    global index
    meta = Metadata(31337, APP, sender, 100 + index, 1_700_000_000 + index, "0x" + "00" * 32, index)
    index += 1
    ok, out = handle_advance(market, meta, payload)
    print("input", index - 1, ok)
    for o in out.emitted:
        print("  output", type(o).__name__, getattr(o, "destination", ""), o.payload.hex())
    for r in out.reports:
        print("  report", r.hex())
def deposit(sender, value, data=b""):
    send(ETHER_PORTAL, bytes.fromhex(sender[2:]) + value.to_bytes(32, "big") + data)
for i in range(3):
    deposit("0x" + f"{i + 1:02x}" * 20, 10**15 + i)
send("0x" + "77" * 20, p.Batch(messages).encode())
send("0x" + "77" * 20, p.Payout(p.ETH).encode())
deposit(APP, 10**15, payout.RETURNED + bytes(12) + bytes.fromhex("01" * 20))
print("digest", market.digest().hex())
'''


@pytest.mark.riscv
@pytest.mark.slow
def test_signed_batch_and_payout_outputs_are_identical_on_riscv64(tmp_path):
    keys = [bytes([i + 1]) * 32 for i in range(4)]
    app = "0x" + "ab" * 20
    framed = [sign(p.Join(1), k, 31337, app) for k in keys]
    forged = bytearray(framed[1])
    forged[-1] ^= 1
    framed += [bytes(forged), framed[0], sign(p.Commit(1, 0, b"\x05" * 32), keys[2], 31337, app)]
    msgs = tmp_path / "messages.hex"
    msgs.write_text(b"".join(framed).hex())
    script = tmp_path / "batch_riscv.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    host = subprocess.run([sys.executable, str(script), str(msgs)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout.splitlines()
    riscv = run_riscv_python([str(script), str(msgs)], cwd=str(ROOT))
    assert riscv.returncode == 0, riscv.stderr[-3000:]
    print("riscv64 under qemu:", riscv.stderr.strip().splitlines()[-1])
    assert riscv.stdout.splitlines() == host
    assert sum(line.startswith("message") and "refused" not in line for line in host) == 7
    assert any("DelegateCallVoucher" in line for line in host)

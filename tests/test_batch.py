"""Batched, signed submissions (issue 15), in process: trainers sign join, commit and reveal as
EIP-712 typed data; anyone posts many in one `batch` input; a bad signature, a replay or a
refused message affects only itself. Plus the recovery's agreement with eth-keys/eth-account."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from client.relay import sign
from dapp.market import batch as b
from dapp.market import eip712
from dapp.market import protocol as p
from tests.market_harness import APP, TRAINERS, digits_job

CHAIN = 31337
KEYS = [bytes([i + 1]) * 32 for i in range(6)]
ADDRS = [keys.PrivateKey(k).public_key.to_checksum_address().lower() for k in KEYS]
RELAYER = TRAINERS[-1]


def _batch_report(res) -> dict:
    return next(json.loads(r) for r in res.reports if '"type":"batch"' in r)


# ---- signatures --------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_recovery_agrees_with_eth_keys(secret: bytes, digest: bytes) -> None:
    n = int.from_bytes(secret, "big")
    if not 0 < n < eip712.N:
        return
    key = keys.PrivateKey(secret)
    sig = key.sign_msg_hash(digest)
    r, s, v = sig.r, sig.s, sig.v
    if s > eip712.N // 2:
        s, v = eip712.N - s, v ^ 1
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + v])
    assert eip712.recover_address(digest, raw) == key.public_key.to_checksum_address().lower()
    high = r.to_bytes(32, "big") + (eip712.N - s).to_bytes(32, "big") + bytes([27 + (v ^ 1)])
    with pytest.raises(eip712.SignatureError, match="upper half"):
        eip712.recover_address(digest, high)  # the malleable twin is refused (EIP-2)


def test_typed_digest_is_eip712_as_wallets_compute_it() -> None:
    """The same digest eth-account signs for `eth_signTypedData_v4`, so any wallet can sign."""
    domain = {"name": "Tributary", "version": "1", "chainId": CHAIN, "verifyingContract": APP,
              "salt": (7).to_bytes(32, "big")}
    fields = {"Reveal": [{"name": "jobId", "type": "uint256"},
                         {"name": "round", "type": "uint256"},
                         {"name": "modelCid", "type": "string"},
                         {"name": "dataCid", "type": "string"},
                         {"name": "salt", "type": "bytes32"}]}
    msg = {"jobId": 7, "round": 2, "modelCid": "bafkm", "dataCid": "bafkd", "salt": b"\x05" * 32}
    signed = Account.sign_message(encode_typed_data(domain, fields, msg), KEYS[0])
    call = p.Reveal(7, 2, "bafkm", "bafkd", b"\x05" * 32)
    digest = b.digest_of(call, CHAIN, APP)
    assert digest == bytes(signed.message_hash)
    assert eip712.recover_address(digest, bytes(signed.signature)) == ADDRS[0]


# ---- the market ------------------------------------------------------------------------------

def _submissions(job, round_: int, n: int):
    rng = np.random.default_rng(round_)
    subs = []
    for i in range(n):
        idx = rng.choice(len(job.y), 150, replace=False)
        model = job.train(_global(job), idx, steps=5, seed=i)
        subs.append(job.submit(ADDRS[i], round_, model, idx, salt=bytes([i + 1]) * 32))
    return subs


def _global(job):
    market = job.sim.market
    return market._models[market.state.jobs[job.job_id].global_model_hash]


def _commit(job, i: int, round_: int, sub) -> bytes:
    c = p.commitment(ADDRS[i], job.job_id, round_, *sub)
    return sign(p.Commit(job.job_id, round_, c), KEYS[i], CHAIN, APP)


def _reveal(job, i: int, round_: int, sub) -> bytes:
    return sign(p.Reveal(job.job_id, round_, *sub), KEYS[i], CHAIN, APP)


def test_a_whole_round_through_batches_with_a_forgery_and_a_replay() -> None:
    job = digits_job(rounds=1)
    sim = job.sim
    n = 4
    joins = [sign(p.Join(job.job_id), k, CHAIN, APP) for k in KEYS[:n]]
    res = sim.send(RELAYER, b.batch_input(joins))
    assert res.accepted
    assert sim.market.state.jobs[job.job_id].trainers == sorted(ADDRS[:n])
    # the same batch again: every join is a replay, refused one by one, nothing changes
    before = sim.market.digest()
    res = sim.send(RELAYER, b.batch_input(joins))
    assert res.accepted and sim.market.digest() == before
    rep = _batch_report(res)
    assert rep["taken"] == [] and all("already joined" in r["reason"] for r in rep["refused"])

    sim.advance(10)
    subs = _submissions(job, 0, n)
    commits = [_commit(job, i, 0, subs[i]) for i in range(n)]
    forged = bytearray(commits[1])
    forged[-1] ^= 1                      # the commitment changed after signing: another signer
    bad_sig = bytearray(commits[2])
    bad_sig[3 + 64] = 29                 # v out of range
    res = sim.send(RELAYER, b.batch_input([commits[0], bytes(forged), bytes(bad_sig),
                                           commits[3], commits[0]]))
    assert res.accepted
    rep = _batch_report(res)
    assert [t["signer"] for t in rep["taken"]] == [ADDRS[0], ADDRS[3]]
    reasons = {r["index"]: r["reason"] for r in rep["refused"]}
    assert "has not joined" in reasons[1]           # recovers some stranger's address
    assert "v must be 27 or 28" in reasons[2]
    assert "already committed" in reasons[4]         # the replay inside the same batch
    rnd = sim.market.state.jobs[job.job_id].current
    assert sorted(rnd.commits) == sorted([ADDRS[0], ADDRS[3]])
    # the honest two late-comers commit in a second batch (the forgery cost them nothing)
    assert sim.send(RELAYER, b.batch_input([commits[1], commits[2]])).accepted
    assert len(sim.market.state.jobs[job.job_id].current.commits) == 4

    sim.advance(100)
    reveals = [_reveal(job, i, 0, subs[i]) for i in range(n)]
    # a reveal signed by trainer 0 for trainer 1's submission: refused as not matching
    stolen = sign(p.Reveal(job.job_id, 0, *subs[1]), KEYS[0], CHAIN, APP)
    res = sim.send(RELAYER, b.batch_input([stolen] + reveals))
    rep = _batch_report(res)
    assert len(rep["taken"]) == n and rep["refused"][0]["index"] == 0
    assert "does not match your commitment" in rep["refused"][0]["reason"]
    assert sorted(sim.market.state.jobs[job.job_id].current.reveals) == sorted(ADDRS[:n])

    assert job.reveal_validation(0).accepted
    sim.advance(200)
    res = job.close(0)
    assert res.accepted, res.reports
    [notice] = [n_ for n_ in res.notices if n_["type"] == "round_closed"]
    assert {t["address"] for t in notice["trainers"]} == set(ADDRS[:n])


def test_signatures_are_bound_to_chain_app_and_job() -> None:
    """A message signed for another chain, Application or job recovers some other address
    here, never the trainer's: it cannot act for the trainer."""
    job = digits_job(rounds=1)
    sim = job.sim
    assert sim.send(RELAYER, b.batch_input([sign(p.Join(job.job_id), KEYS[0], CHAIN, APP)])
                    ).accepted
    sim.advance(10)
    commit = p.Commit(job.job_id, 0, keccak(b"c"))
    wrong = [sign(commit, KEYS[0], CHAIN + 1, APP), sign(commit, KEYS[0], CHAIN, "0x" + "cd" * 20)]
    sig_other_job = sign(p.Commit(job.job_id + 1, 0, keccak(b"c")), KEYS[0], CHAIN, APP)
    wrong.append(b.encode(commit, sig_other_job[3:68]))
    res = sim.send(RELAYER, b.batch_input(wrong))
    rep = _batch_report(res)
    assert rep["taken"] == [] and len(rep["refused"]) == 3
    assert all(r["signer"] != ADDRS[0] and "has not joined" in r["reason"]
               for r in rep["refused"])
    assert sim.market.state.jobs[job.job_id].current.commits == {}


def test_malformed_batches_and_messages() -> None:
    job = digits_job(rounds=1)
    sim = job.sim
    before = sim.market.digest()
    for messages in (b"", b"\x00", b"\x00\x05abc"):
        res = sim.send(RELAYER, p.Batch(messages).encode())
        assert not res.accepted and "batch" in " ".join(res.reports)
        assert sim.market.digest() == before
    good = sign(p.Join(job.job_id), KEYS[0], CHAIN, APP)
    junk = [b"\x00\x01\x09", b"\x00\x03\x01\x00\x00", b"\x00\x00"]
    res = sim.send(RELAYER, b.batch_input(junk + [good]))
    rep = _batch_report(res)
    assert [t["signer"] for t in rep["taken"]] == [ADDRS[0]]
    assert [r["index"] for r in rep["refused"]] == [0, 1, 2]
    assert "unknown message kind" in rep["refused"][0]["reason"]
    assert "join message is 74 bytes" in rep["refused"][1]["reason"]


def test_wire_format_sizes() -> None:
    """What a message costs in bytes (the gas bench measures the gas)."""
    c = sign(p.Commit(1, 0, keccak(b"x")), KEYS[0], CHAIN, APP)
    assert len(c) == 2 + 1 + 65 + 8 + 4 + 32

"""The relayer's queue is bounded: per signer and in all, until the next flush; duplicates are
dropped without counting; a flush frees room again."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from client import relay as r
from dapp.market import protocol as p

CHAIN = 31337
APP = "0x" + "ab" * 20
KEYS = [bytes([i + 1]) * 32 for i in range(3)]


class _Chain:
    app = APP

    def __init__(self) -> None:
        self.inputs: list[bytes] = []

    def add_input(self, signer, payload: bytes):
        self.inputs.append(payload)
        return SimpleNamespace(index=len(self.inputs) - 1, gas_used=0)


def test_queue_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(r, "MAX_PER_SIGNER", 3)
    monkeypatch.setattr(r, "MAX_QUEUED", 5)
    relay = r.Relay(_Chain(), None, CHAIN)
    msgs = [[r.sign(p.Join(job), k, CHAIN, APP) for job in range(4)] for k in KEYS]
    for m in msgs[0][:3]:
        relay.accept(m)
    relay.accept(msgs[0][0])  # a duplicate: dropped, not refused
    assert len(relay.queue) == 3
    with pytest.raises(ValueError, match="from this signer"):
        relay.accept(msgs[0][3])
    relay.accept(msgs[1][0])
    relay.accept(msgs[1][1])
    with pytest.raises(ValueError, match="holds 5 messages"):
        relay.accept(msgs[2][0])
    relay.flush()
    assert relay.queue == [] and relay.sent[-1]["messages"] == 5
    relay.accept(msgs[0][3])  # room again after the flush
    relay.accept(msgs[2][0])
    assert len(relay.queue) == 2

"""Client pieces that need no chain: training, DP accountant, data loaders and cards, keys,
job specs (checked by the market's own parsers), amounts."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client.cli import parse_amount
from client.data import DataError, data_card, demo_split, load_trainer_data, merkle_root, sample_leaves
from client.jobs import (DIGITS_CNN, build_spec, carve_public_shard, deterministic_initial_model,
                         spec_bytes, store_shards)
from client.keys import KeyError_, load_signer, new_keystore
from client.training import DPConfig, accuracy_float, dp_card_fields, dp_epsilon, train_local
from dapp.market.datacard import parse_data_card
from dapp.market.spec import parse_spec
from dapp.ml.arch import ArchSpec
from dapp.ml.model_format import decode_model

ARCH = ArchSpec.from_dict(DIGITS_CNN)
HP = {"learning_rate": [1, 5], "local_epochs": 3, "batch_size": 16}


class Mem:
    def __init__(self) -> None:
        self.d: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        from dapp.content.unixfs import chunk

        cid = str(chunk(data)[0])
        self.d[cid] = data
        return cid

    def get(self, cid: str, *, max_size: int) -> bytes:
        return self.d[cid]


def _init():
    return decode_model(deterministic_initial_model(ARCH), ARCH, max_bytes=1 << 20)


def test_local_training_improves_and_quantizes() -> None:
    split = demo_split(1)
    x, y = split.parts["alice"]
    start = _init()
    model, stats = train_local(ARCH, start, x, y, HP, seed=1)
    assert stats.steps == 3 * math.ceil(len(y) / 16) and stats.epsilon is None
    tx, ty = split.test
    assert accuracy_float(ARCH, model, tx, ty) > accuracy_float(ARCH, start, tx, ty) + 0.2
    assert all(a.dtype == np.int32 for a in model.values())


def test_dp_training_and_its_accountant() -> None:
    # the closed-form minimiser equals a brute-force search over alpha
    e, s, d = 3, 1.2, 1e-5
    brute = min(e * a / (2 * s * s) + math.log(1 / d) / (a - 1) for a in np.linspace(1.01, 200, 200000))
    assert abs(dp_epsilon(e, s, d) - brute) < 1e-3
    assert dp_epsilon(e, 2 * s, d) < dp_epsilon(e, s, d)
    x, y = demo_split(1).parts["bob"]
    dp = DPConfig(clip=1.0, noise_multiplier=1.2)
    model, stats = train_local(ARCH, _init(), x, y, HP, dp=dp, seed=2)
    assert stats.epsilon == pytest.approx(dp_epsilon(3, 1.2, 1e-5))
    fields = dp_card_fields(dp, 3)
    assert fields["epsilon"] >= Fraction(stats.epsilon).limit_denominator(10**9)
    card, _ = data_card(x, y, ARCH, dp=fields)
    spec = parse_spec(_spec_bytes())
    parsed = parse_data_card(card, spec.data_schema)
    assert parsed.dp_epsilon == f"{fields['epsilon'].numerator}/{fields['epsilon'].denominator}"


def _spec_bytes() -> bytes:
    store = Mem()
    public, secret = carve_public_shard(demo_split(2).shards)
    shards = store_shards(store, secret, ARCH)
    spec = build_spec(name="t", arch=DIGITS_CNN, initial_model_cid=store.put(deterministic_initial_model(ARCH)),
                      shards=shards, public_validation=store_shards(store, [public], ARCH)[0].cid)
    return spec_bytes(spec)


def test_spec_and_card_pass_the_markets_parsers() -> None:
    spec = parse_spec(_spec_bytes())
    assert spec.rounds == 2 and len(spec.validation_commitments) == 2
    x, y = demo_split(2).parts["carol"]
    card, salt = data_card(x, y, ARCH)
    parsed = parse_data_card(card, spec.data_schema)
    assert parsed.num_samples == len(y) and sum(parsed.label_histogram) == len(y)
    assert parsed.data_commitment == merkle_root(sample_leaves(x, y, salt))
    # another salt, another commitment: guesses cannot be tested against the root
    assert data_card(x, y, ARCH, salt=b"\x01" * 32)[0] != data_card(x, y, ARCH, salt=b"\x02" * 32)[0]


def test_demo_split_is_deterministic_disjoint_and_non_iid() -> None:
    a, b = demo_split(5), demo_split(5)
    for name in a.parts:
        assert np.array_equal(a.parts[name][1], b.parts[name][1])
    hists = [np.bincount(y, minlength=10) for x, y in a.parts.values() if len(y)]
    assert max(h.max() / h.sum() for h in hists) > 0.3  # someone is heavily skewed
    assert len(a.shards) == 5 and all(len(s[1]) == 80 for s in a.shards)


def test_loaders(tmp_path: Path) -> None:
    x, y = demo_split(1).parts["dave"]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "folder").mkdir()
    np.save(tmp_path / "folder" / "x.npy", x)
    np.save(tmp_path / "folder" / "y.npy", y)
    for p in (tmp_path / "d.npz", tmp_path / "folder"):
        lx, ly = load_trainer_data(p, ARCH)
        assert lx.shape == x.shape and np.array_equal(ly, y)
    np.savez(tmp_path / "bad.npz", x=x.reshape(len(y), 64), y=y)
    with pytest.raises(DataError, match="the job needs x"):
        load_trainer_data(tmp_path / "bad.npz", ARCH)
    np.savez(tmp_path / "lbl.npz", x=x, y=y + 10)
    with pytest.raises(DataError, match="labels"):
        load_trainer_data(tmp_path / "lbl.npz", ARCH)
    with pytest.raises(DataError, match="not found"):
        load_trainer_data(tmp_path / "nothing", ARCH)


def test_keys_from_keystore_or_env_never_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIBUTARY_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("TRIBUTARY_KEYSTORE_PASSWORD", raising=False)
    with pytest.raises(KeyError_, match="never accepted on the command line"):
        load_signer(None)
    addr = new_keystore(tmp_path / "k.json", "pw")
    with pytest.raises(KeyError_, match="TRIBUTARY_KEYSTORE_PASSWORD"):
        load_signer(str(tmp_path / "k.json"))
    monkeypatch.setenv("TRIBUTARY_KEYSTORE_PASSWORD", "wrong")
    with pytest.raises(KeyError_, match="cannot decrypt"):
        load_signer(str(tmp_path / "k.json"))
    monkeypatch.setenv("TRIBUTARY_KEYSTORE_PASSWORD", "pw")
    s = load_signer(str(tmp_path / "k.json"))
    assert s.address == addr and s.private_key not in repr(s)
    monkeypatch.setenv("TRIBUTARY_PRIVATE_KEY", "0x" + "11" * 32)
    assert load_signer(None).address != addr


def test_amounts() -> None:
    assert parse_amount("1eth") == 10**18
    assert parse_amount("0.5 ether") == 5 * 10**17
    assert parse_amount("3gwei") == 3 * 10**9
    assert parse_amount("1000") == 1000
    import click

    for bad in ("1.5wei", "-1eth", "lots"):
        with pytest.raises(click.BadParameter):
            parse_amount(bad)


def test_a_trainer_s_rewards_include_its_share_of_the_job_s_end() -> None:
    """A job paying at a price pays part of every reward when it finishes (the job_finished
    notice's leftover): `trainer rewards` and `trainer run` total the rows, so the end share
    must be a row, or the total is short of what the balance holds."""
    from types import SimpleNamespace

    from client.node_api import Notice
    from client.trainer import contributions

    me, other = "0x" + "aa" * 20, "0x" + "bb" * 20

    def closed(r: int, rewards: dict[str, int], **extra: Any) -> Notice:
        return Notice(r, r, 0, {"round": r, "token": "0x" + "00" * 20, **extra, "trainers": [
            {"address": a, "verdict": "accepted", "contribution": "1/1", "reward": str(v)}
            for a, v in rewards.items()]})

    notices = [closed(0, {me: 30, other: 70}),
               closed(1, {me: 5, other: 5}, job_finished={
                   "refund": "0", "owner": "0x" + "cc" * 20,
                   "leftover": {me: "12", other: "28"}})]
    ctx = SimpleNamespace(signer=SimpleNamespace(address=me),
                          node=SimpleNamespace(round_notices=lambda job: notices))
    rows = contributions(ctx, 1)  # type: ignore[arg-type]
    assert [r["round"] for r in rows] == [0, 1, "end"]
    assert sum(int(r["reward"]) for r in rows) == 30 + 5 + 12
    assert rows[-1]["verdict"] == "job finished" and rows[-1]["contribution"] is None
    assert "pro rata to what you earned" in rows[-1]["reason"]
    # a job that settles says so: the end row is what tops the trainer up to its value share
    notices[-1].data["job_finished"]["leftover_by"] = "value"
    assert "your share of the value you created" in contributions(ctx, 1)[-1]["reason"]  # type: ignore[arg-type]

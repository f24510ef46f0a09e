"""Issue 12, the default rule against colluders: near-identical updates (A Little Is Enough,
Min-Max, one update sold under several identities) from addresses whose data cards claim
different data are rejected and paid nothing, while one trainer's own work split over
identities with the same card stays one player paid once (issue 10's guarantee). On digits,
through the validated rule and through the market backend's close_round."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import tests.mechanism_scenarios as ms
from dapp.ml.aggregation import (DEFAULT_COLLUSION_COS, ClientUpdate, ValidationContext,
                                 build_strategy, flatten, sq_norm, unflatten_like)
from dapp.ml.errors import StrategyConfigError
from dapp.ml.model_format import Model
from tests.mechanism_scenarios import (ARCH, VALIDATED, Trainer, digits, fixed,
                                       owner_initial_model, run_job, split_pool, trainer_models)

SIZES = [150, 250, 300, 140, 160, 170]
COLLUDERS = [3, 4, 5]


@pytest.fixture(scope="module")
def parts() -> list[np.ndarray]:
    return split_pool(SIZES)


def alie_updates(parts: list[np.ndarray], g: Model, same_card: bool) -> list[ClientUpdate]:
    """Three honest trainers, and three colluders who train honestly on their own shards, then
    all submit mean - z * std of those benign deltas (Baruch et al.; z for n = 6, f = 3), each
    with independent +-1 jitter so that no two are exact copies."""
    honest = [ClientUpdate(a, m, n) for i in range(3)
              for a, m, n in trainer_models(Trainer(i, parts[i]), g, 0)]
    gv = flatten(g)
    benign = np.stack([flatten(trainer_models(Trainer(i, parts[i]), g, 0)[0][1]) - gv
                       for i in COLLUDERS]).astype(np.float64)
    mal = np.round(benign.mean(0) - 0.43 * benign.std(0)).astype(np.int64)
    rng = np.random.default_rng(7)
    out = list(honest)
    for j, i in enumerate(COLLUDERS):
        u = gv + mal + rng.integers(-1, 2, mal.shape)
        out.append(ClientUpdate(ms.trainer_address(i), unflatten_like(u, g),
                                200 if same_card else len(parts[i]) + j))
    return out


def test_colluders_with_different_cards_are_rejected_and_honest_ones_kept(parts):
    g = owner_initial_model()
    d = digits()
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    res = build_strategy(VALIDATED).aggregate(g, alie_updates(parts, g, same_card=False),
                                              validation=ctx)
    bad = [ms.trainer_address(i) for i in COLLUDERS]
    for a in bad:
        assert "colluding" in res.rejected[a], res.rejected
        assert a not in res.accepted
    assert all(ms.trainer_address(i) in res.accepted for i in range(3)), res.rejected


def test_colluders_that_fake_one_card_are_one_player_at_most(parts):
    """What colluders can fake: identical cards. Then nothing proves collusion, and the copies
    are one player (one cluster, value shared), never three."""
    g = owner_initial_model()
    d = digits()
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    res = build_strategy(VALIDATED).aggregate(g, alie_updates(parts, g, same_card=True),
                                              validation=ctx)
    bad = {ms.trainer_address(i) for i in COLLUDERS}
    assert not any("colluding" in r for r in res.rejected.values())
    got = [m for m in res.members.values() if set(m) & bad]
    # the colluders with one card are admitted as exactly one player, paid once
    assert len(got) == 1 and set(got[0]) >= bad & set(res.accepted)
    assert sum(res.shares[a] for a in bad if a in res.accepted) == 1


def test_claims_default_to_the_weights_and_inputs_order_does_not_matter(parts):
    g = owner_initial_model()
    d = digits()
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    ups = alie_updates(parts, g, same_card=False)
    s = build_strategy(VALIDATED)
    a = s.aggregate(g, ups, validation=ctx)
    b = s.aggregate(g, list(reversed(ups)), validation=ctx,
                    claims={u.key: u.weight for u in ups})
    assert a.rejected == b.rejected and a.accepted == b.accepted
    assert flatten(a.model).tolist() == flatten(b.model).tolist()
    # the same claims for every colluder: merged, not rejected as colluding
    c = s.aggregate(g, ups, validation=ctx, claims={u.key: 7 for u in ups})
    assert not any("colluding" in r for r in c.rejected.values())


def test_new_fields_config():
    s = build_strategy(VALIDATED)
    assert s.collusion_cos == DEFAULT_COLLUSION_COS == Fraction(99, 100)
    assert s.weighting == "root4_gain_norm"
    # new fields at their defaults leave the canonical form of earlier specs unchanged
    assert s.to_dict() == VALIDATED
    off = build_strategy(dict(VALIDATED, collusion_cos=None, weighting="gain"))
    assert off.collusion_cos is None and off.weighting == "gain"
    assert build_strategy(off.to_dict()).to_dict() == off.to_dict()
    for bad in ({"collusion_cos": [0, 1]}, {"collusion_cos": [3, 2]}, {"collusion_cos": "x"},
                {"weighting": "samples"}, {"weighting": 1}):
        with pytest.raises(StrategyConfigError):
            build_strategy(dict(VALIDATED, **bad))


def test_template_rule_is_the_robust_one():
    from client.jobs import DEMO_AGGREGATION

    s = build_strategy(DEMO_AGGREGATION)
    assert (s.collusion_cos, s.weighting, s.max_norm_ratio) == (Fraction(99, 100), "root4_gain_norm",
                                                                  Fraction(2))
    assert (s.evidence_on, s.step, s.clip) == ("card_classes", Fraction(1, 2), "score")
    # long steps are clipped, not refused, when their collateral holds (robustness_50, README)
    assert (s.reject_norm_ratio, s.collateral) == (Fraction(4), Fraction(2))
    # pay is valued in class-balanced correct predictions plus margin (robustness_30, README)
    assert s.score_utility == "balanced" and s.utility == "margin"


def test_evidence_config_round_trips_and_is_checked():
    earlier = {k: v for k, v in VALIDATED.items() if k != "evidence"}  # a spec from before
    assert "evidence" not in build_strategy(earlier).to_dict()  # keeps its canonical form
    s = build_strategy(dict(VALIDATED, evidence="card_classes"))
    assert s.to_dict()["evidence"] == "card_classes"
    assert build_strategy(s.to_dict()).to_dict() == s.to_dict()
    for bad in ("classes", 1, None):
        with pytest.raises(StrategyConfigError, match="evidence"):
            build_strategy(dict(VALIDATED, evidence=bad))


def test_score_utility_config_round_trips_and_is_checked():
    earlier = {k: v for k, v in VALIDATED.items() if k != "score_utility"}
    assert "score_utility" not in build_strategy(earlier).to_dict()
    assert build_strategy(earlier).score_utility == "margin"  # "rule": the gate's utility
    s = build_strategy(dict(VALIDATED, score_utility="correct"))
    assert s.score_utility == "correct" and s.to_dict()["score_utility"] == "correct"
    assert build_strategy(s.to_dict()).to_dict() == s.to_dict()
    for bad in ("accuracy", 0, None):
        with pytest.raises(StrategyConfigError, match="score_utility"):
            build_strategy(dict(VALIDATED, score_utility=bad))
    assert build_strategy(dict(VALIDATED, score_utility="balanced")).score_utility == "balanced"


def _class_push(g: Model, label: int, logits: float) -> Model:
    m = {k: v.copy() for k, v in g.items()}
    m["fc.bias"][label] += int(logits * (1 << ARCH.scale_bits))
    return Model(m)


def test_the_balanced_utility_weighs_every_class_the_same():
    """On a shard holding 9 samples of class 0 for each of class 1, a model that answers 0 to
    everything gets 9x the correct predictions of one that answers 1, but the same balanced
    utility (up to the floor of each class's weight): a trainer holding a class that the random
    shard under-samples is not valued at a fraction of what the class is worth."""
    d = digits()
    y = np.asarray(d.y_public)
    zeros, ones = np.flatnonzero(y == 0)[:9], np.flatnonzero(y == 1)[:1]
    sel = np.concatenate([zeros, ones])
    ctx = ValidationContext(ARCH, fixed(d.x_public)[sel], y[sel])
    g = owner_initial_model()
    says0, says1 = _class_push(g, 0, 100.0), _class_push(g, 1, 100.0)
    assert ctx.utility("correct", says0) == 9 and ctx.utility("correct", says1) == 1
    b0, b1 = ctx.utility("balanced", says0), ctx.utility("balanced", says1)
    unit = 1 << ARCH.scale_bits
    # one class all right at the full margin (4 logits, plus 2 for being right by at least
    # one), the other all wrong at -4
    assert b0 == 9 * (65536 // 9) * 6 * unit - 65536 * 4 * unit
    assert b1 == 65536 * 6 * unit - 9 * (65536 // 9) * 4 * unit
    assert abs(b0 - b1) * 1000 < b0  # the floor of 2**16 / 9 apart, nothing else


def test_a_card_s_classes_are_those_holding_the_uniform_share():
    d = digits()
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    y = np.asarray(d.y_public)
    assert ctx.class_mask(()) is None and ctx.class_mask([0] * 10) is None
    assert ctx.class_mask([91, 9] + [0] * 8).tolist() == (y == 0).tolist()
    assert ctx.class_mask([10, 10] + [0] * 8).tolist() == np.isin(y, [0, 1]).tolist()
    assert ctx.class_mask([1] * 10).all()  # a balanced card is judged on every sample


def _class_zero_push(g: Model, logits: float) -> Model:
    """What training on class 0 alone does in the extreme: class 0's bias up by ``logits``."""
    m = {k: v.copy() for k, v in g.items()}
    m["fc.bias"][0] += int(logits * (1 << ARCH.scale_bits))
    return Model(m)


def test_a_skewed_update_is_judged_on_the_classes_its_card_declares():
    """A trainer holding only class 0 moves everything towards class 0: on a balanced public
    shard that lowers the total margin (every other class loses), so judging it on every sample
    rejects honest skewed work (issue 12: the largest honest trainers were rejected under label
    skew). Judged on the samples of its own classes, it passes; the same update under a card
    that claims class 5 is rejected, with the reason."""
    d = digits()
    g = trainer_models(Trainer(0, split_pool(SIZES)[0]), owner_initial_model(), 0)[0][1]
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    skewed = ClientUpdate("0x" + "a1" * 20, _class_zero_push(g, 2.0), 100)
    base = dict(VALIDATED, second_chance=False, or_correct=False, step=[1, 1], evidence="all")
    total = ctx.utility("margin", skewed.model) - ctx.utility("margin", g)
    assert total < 0  # the premise: it hurts the balanced shard as a whole
    everything = build_strategy(base).aggregate(g, [skewed], validation=ctx)
    assert skewed.key in everything.rejected
    own = build_strategy(dict(base, evidence="card_classes"))
    ok = own.aggregate(g, [skewed], validation=ctx, histograms={skewed.key: [100] + [0] * 9})
    assert ok.accepted == (skewed.key,) and ok.gains[skewed.key] > 0
    lie = own.aggregate(g, [skewed], validation=ctx, histograms={skewed.key: [0] * 5 + [100] + [0] * 4})
    assert "classes its data card declares" in lie.rejected[skewed.key]
    # no histogram (a legacy caller): every sample counts, as before
    legacy = own.aggregate(g, [skewed], validation=ctx)
    assert legacy.rejected == everything.rejected


def test_clip_score_aggregates_in_full_and_values_at_the_median_norm(parts):
    """``clip = "score"``: the model is the unclipped combination (what ``"none"`` builds), the
    players that Shapley values are clipped to the median norm (what ``"median"`` scores), so a
    trainer cannot raise its value by stretching its step while the model keeps every step."""
    d = digits()
    g = owner_initial_model()
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    ups = [ClientUpdate(ms.trainer_address(i), m, w) for i, part in enumerate(parts[:3])
           for _, m, w in trainer_models(Trainer(i, part), g, 0)[:1]]
    ups.append(ClientUpdate(ms.trainer_address(3), unflatten_like(
        flatten(g) + (flatten(ups[0].model) - flatten(g)) * 3 // 2, g), 140))  # a stretched step
    out = {c: build_strategy(dict(VALIDATED, clip=c, collusion_cos=None, cluster_cos=[1, 1]))
           .aggregate(g, ups, validation=ctx) for c in ("median", "score", "none")}
    assert out["score"].accepted == out["none"].accepted == out["median"].accepted
    assert len(out["score"].accepted) == 4
    assert all(np.array_equal(out["score"].model[k], out["none"].model[k]) for k in g)
    assert not all(np.array_equal(out["score"].model[k], out["median"].model[k]) for k in g)
    assert [flatten(p.model).tolist() for p in out["score"].players] == \
        [flatten(p.model).tolist() for p in out["median"].players]
    valued = {a for a, n in out["score"].notes.items() if "valued at the median accepted norm" in n}
    assert valued and valued == {a for a, n in out["median"].notes.items() if "delta clipped" in n}
    assert build_strategy(dict(VALIDATED, clip="score")).to_dict()["clip"] == "score"
    with pytest.raises(StrategyConfigError, match="clip"):
        build_strategy(dict(VALIDATED, clip="max"))


def twice(i: int, model: Model) -> list[ClientUpdate]:
    """Trainer i's honest update under two addresses, one unit apart (not merged as copies):
    the honest evidence then outweighs one long step's in the median norm."""
    bumped = Model({k_: v + (k_ == "fc.bias") for k_, v in model.items()})
    return [ClientUpdate(ms.trainer_address(i), model, 100),
            ClientUpdate(ms.trainer_address(10 + i), bumped, 100)]


def test_a_longer_step_is_clipped_and_only_a_boost_is_rejected(parts):
    """``reject_norm_ratio``: a delta between max_norm_ratio (2x) and reject_norm_ratio (4x)
    the evidence-weighted median norm is a longer step than most (a large or skewed dataset):
    accepted, counted clipped to 2x the median, with a note; above 4x it is a boost and is
    rejected. Without the option, 2x rejects, as before."""
    d = digits()
    g = owner_initial_model()
    gf = flatten(g)
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    models = [trainer_models(Trainer(i, part), g, 0)[0][1] for i, part in enumerate(parts[:5])]
    others = [0, 1, 3, 4]
    ups = [u for i in others for u in twice(i, models[i])]
    norms = sorted(math.isqrt(sq_norm(flatten(models[i]) - gf)) for i in others)

    def stretched(m: Model, k: float, key: str) -> ClientUpdate:
        return ClientUpdate(key, unflatten_like(gf + np.round((flatten(m) - gf) * k).astype(np.int64), g),
                            100)

    # 3.5x the others' lower median norm: between 2x and 4x the median of the weighty ones
    k = 7 * norms[1] / 2 / math.isqrt(sq_norm(flatten(models[2]) - gf))
    longer = stretched(models[2], k, "0x" + "b3" * 20)
    boost = stretched(models[1], 10, "0x" + "b6" * 20)
    rule = dict(VALIDATED, collusion_cos=None, reject_norm_ratio=[4, 1], collateral=None)
    out = build_strategy(rule).aggregate(g, ups + [longer, boost], validation=ctx)
    assert "boosted update" in out.rejected[boost.key]
    assert longer.key in out.accepted and "delta clipped to 2 x" in out.notes[longer.key]
    player = {p.key: p for p in out.players}[longer.key]
    assert sq_norm(flatten(player.model) - gf) < sq_norm(flatten(longer.model) - gf)
    old = build_strategy({k_: v for k_, v in rule.items()
                          if k_ not in ("reject_norm_ratio", "collateral")})
    assert "boosted update" in old.aggregate(g, ups + [longer, boost], validation=ctx).rejected[longer.key]
    assert build_strategy(rule).to_dict()["reject_norm_ratio"] == [4, 1]
    for bad in ({"reject_norm_ratio": [1, 1]}, {"reject_norm_ratio": [4, 1], "max_norm_ratio": None},
                {"reject_norm_ratio": "x"}):
        with pytest.raises(StrategyConfigError):
            build_strategy(dict(rule, **bad))


def test_market_pays_colluders_nothing(parts, monkeypatch):
    """Through the market backend: trainer 3 sends one update under three identities whose
    cards claim different sample counts; the honest trainers get all but dust."""
    real = ms.trainer_models

    def lying(t: Trainer, g: Model, round_: int):
        out = real(t, g, round_)
        if t.mode == "split_noise":
            out = [(a, m, n + j) for j, (a, m, n) in enumerate(out)]
        return out

    monkeypatch.setattr(ms, "trainer_models", lying)
    tr = [Trainer(i, parts[i]) for i in range(3)] + [Trainer(3, parts[3], "split_noise", 3)]
    run = run_job(tr)
    assert run.total(tr[3].addresses()) == 0
    assert run.total([a for t in tr[:3] for a in t.addresses()]) >= 10**18 - 100
    reasons = [e.get("reason", "") for n in run.notices for e in n["trainers"]
               if e["address"] in tr[3].addresses()]
    assert reasons and all("colluding" in r for r in reasons), reasons


def test_a_long_step_that_costs_the_classes_its_card_leaves_out_is_rejected(parts):
    """``collateral``: a long step (between max_norm_ratio and reject_norm_ratio) is admitted,
    clipped, only when what it costs the public samples of the classes its card does not
    declare stays within ``collateral`` x what it adds to the declared ones, per sample. A
    skewed honest trainer's long step pushes every class towards its own and passes; labels
    flipped under a card that claims the flipped classes gain a little on those (a bias push)
    while destroying the classes really held, and are rejected."""
    d = digits()
    g = owner_initial_model()
    gf = flatten(g)
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    pool = np.arange(ms.OWNER_POOL, len(d.y_pool))
    low = pool[np.isin(d.y_pool[pool], [3, 4, 5])]      # 250 images of three classes
    others = [0, 1, 3, 4]
    models = {i: trainer_models(Trainer(i, parts[i]), g, 0)[0][1] for i in others}
    pairs = [(u, i) for i in others for u in twice(i, models[i])]
    ups = [u for u, _ in pairs]
    hists = {u.key: np.bincount(d.y_pool[parts[i]], minlength=10).tolist() for u, i in pairs}
    median = sorted(math.isqrt(sq_norm(flatten(models[i]) - gf)) for i in others)[1]

    def long(model: Model, key: str) -> ClientUpdate:
        step = flatten(model) - gf
        k = 5 * median / 2 / math.isqrt(sq_norm(step))   # 2.5x the median: between 2x and 4x
        return ClientUpdate(key, unflatten_like(gf + np.round(step * k).astype(np.int64), g), 100)

    skewed = long(trainer_models(Trainer(20, low), g, 0)[0][1], "0x" + "c1" * 20)
    flipper = long(trainer_models(Trainer(21, low, mode="label_flip"), g, 0)[0][1], "0x" + "c2" * 20)
    counts = np.bincount(d.y_pool[low], minlength=10)
    hists[skewed.key] = counts.tolist()
    hists[flipper.key] = counts[::-1].tolist()           # the card of the labels it trained on
    rule = dict(VALIDATED, collusion_cos=None, reject_norm_ratio=[4, 1], collateral=[2, 1])
    out = build_strategy(rule).aggregate(g, ups + [skewed, flipper], validation=ctx,
                                         histograms=hists)
    assert skewed.key in out.accepted and "delta clipped to 2 x" in out.notes[skewed.key], (
        out.rejected.get(skewed.key), out.rejected.get(flipper.key))
    assert "flipped labels?" in out.rejected[flipper.key], out.rejected.get(flipper.key)
    loose = {k_: v for k_, v in rule.items() if k_ != "collateral"}
    before = build_strategy(loose).aggregate(g, ups + [skewed, flipper], validation=ctx,
                                             histograms=hists)
    assert flipper.key in before.accepted      # what the collateral test adds
    assert build_strategy(rule).to_dict()["collateral"] == [2, 1]
    for bad in ({"collateral": [0, 1]}, {"collateral": [2, 1], "reject_norm_ratio": None}):
        with pytest.raises(StrategyConfigError):
            build_strategy(dict(rule, **bad))

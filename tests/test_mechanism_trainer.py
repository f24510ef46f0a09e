"""Issue 10, trainer side: splitting one's work over several identities, or over-reporting
one's sample count, earns nothing more; more and better data still earns more; attackers earn
0. Whole jobs with real training on digits through the market backend
(tests/mechanism_scenarios.py), and the validated rule's integer parts on their own."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from dapp.ml.aggregation import (ClientUpdate, Validated, ValidationContext, build_strategy,
                                 dot_exact, flatten, sq_norm, weighted_lower_median)
from dapp.ml.errors import AggregationError, StrategyConfigError
from dapp.ml.model_format import Model
from tests.mechanism_scenarios import (ARCH, VALIDATED, JobRun, Trainer, digits, fixed,
                                       owner_initial_model, run_job, split_pool, trainer_models)

SIZES = [150, 250, 300, 140]


@pytest.fixture(scope="module")
def parts() -> list[np.ndarray]:
    return split_pool(SIZES)


@pytest.fixture(scope="module")
def alone(parts) -> JobRun:
    return run_job([Trainer(i, parts[i]) for i in range(3)])


def with_trainer1(parts, mode: str, k: int = 1) -> tuple[JobRun, Trainer]:
    tr = [Trainer(i, parts[i]) for i in range(3)]
    tr[1] = Trainer(1, parts[1], mode, k)
    return run_job(tr), tr[1]


@pytest.mark.parametrize("mode", ["split_noise", "duplicate_data", "subsample"])
@pytest.mark.parametrize("k", [2, 4, 8])
def test_splitting_over_identities_earns_at_most_5_percent_more(parts, alone, mode, k):
    single = alone.total(Trainer(1, parts[1]).addresses())
    run, t = with_trainer1(parts, mode, k)
    assert single > 0
    assert run.total(t.addresses()) * 100 <= single * 105, (mode, k, run.total(t.addresses()),
                                                             single)


def test_over_reporting_the_sample_count_gains_nothing(parts, alone):
    run, t = with_trainer1(parts, "overreport")
    assert run.balances == alone.balances


@pytest.mark.parametrize("k", [15, 19])
def test_a_longer_step_is_not_paid_as_more_data(parts, alone, k):
    """Stretching one's delta (x1.5, x1.9: under the template's 2x boosted-update threshold)
    carries no more data: the template values each player clipped to the median norm, so it
    earns at most 5 % more (valued unclipped, x1.9 earned 1.31x: bench/mechanism.py)."""
    single = alone.total(Trainer(1, parts[1]).addresses())
    run, t = with_trainer1(parts, "stretch", k)
    assert run.total(t.addresses()) * 100 <= single * 105, (k, run.total(t.addresses()), single)


def test_more_data_earns_more(alone, parts):
    """Trainers with 150, 250 and 300 samples of the same distribution."""
    pay = [alone.total(Trainer(i, parts[i]).addresses()) for i in range(3)]
    assert pay[0] < pay[1] < pay[2], pay


def test_better_data_earns_more(parts):
    """Same sizes; trainer 1's labels are 60 % random."""
    tr = [Trainer(0, parts[1][:120]), Trainer(1, parts[1][120:240], label_noise=60),
          Trainer(2, parts[2])]
    run = run_job(tr)
    clean, noisy = (run.total(t.addresses()) for t in tr[:2])
    assert clean > noisy, (clean, noisy)


@pytest.mark.parametrize("attack", ["label_flip", "sign_flip", "scaled", "noise", "free_rider"])
def test_attackers_earn_nothing(parts, attack):
    tr = [Trainer(i, parts[i]) for i in range(3)] + [Trainer(3, parts[3], attack)]
    run = run_job(tr)
    assert run.total(tr[3].addresses()) == 0
    assert run.total([a for t in tr[:3] for a in t.addresses()]) >= 10**18 - 100  # all but dust


# ---- the rule's parts ------------------------------------------------------------------------

def test_exact_dot_and_cosine_match_python_integers():
    rng = np.random.default_rng(5)
    for bound in (3, 1 << 20, (1 << 32) - 1):
        a = rng.integers(-bound, bound + 1, 5000, dtype=np.int64)
        b = rng.integers(-bound, bound + 1, 5000, dtype=np.int64)
        assert dot_exact(a, b) == sum(int(x) * int(y) for x, y in zip(a, b))
    v = Validated(cluster_cos=Fraction(1, 2))
    d1 = np.array([2, 0], dtype=np.int64)
    for d2, same in (([1, 1], True), ([1, 2], False), ([-1, 0], False), ([1, 0], True)):
        d2a = np.array(d2, dtype=np.int64)
        assert v.similar(d1, d2a, sq_norm(d1), sq_norm(d2a)) is same   # cos 45 deg = 0.707


def test_weighted_median_ignores_many_light_values():
    assert weighted_lower_median([1] * 9 + [100, 120], [1] * 9 + [50, 50]) == 100
    assert weighted_lower_median([5, 1, 3], [1, 1, 1]) == 3
    with pytest.raises(AggregationError):
        weighted_lower_median([], [])


def test_validated_config_is_checked_and_round_trips():
    s = build_strategy(VALIDATED)
    assert build_strategy(s.to_dict()).to_dict() == s.to_dict() == VALIDATED
    for bad in ({"utility": "loss"}, {"min_gain": [0, 1]}, {"cluster_cos": [3, 2]},
                {"clip": "max"}, {"extra": 1}, {"pay": "later"}):
        with pytest.raises(StrategyConfigError):
            build_strategy(dict(VALIDATED, **bad))
    # a spec written before `pay` existed keeps its canonical form and pays per round
    old = {k: v for k, v in VALIDATED.items() if k != "pay"}
    assert build_strategy(old).to_dict() == old and build_strategy(old).pay == "round"


def test_validated_needs_validation_data_and_ignores_input_order(parts):
    g = owner_initial_model()
    d = digits()
    ups = [ClientUpdate(a, m, n) for i in range(3)
           for a, m, n in trainer_models(Trainer(i, parts[i], "split_noise" if i == 1 else
                                                 "honest", 3 if i == 1 else 1), g, 0)]
    s = build_strategy(VALIDATED)
    with pytest.raises(AggregationError, match="needs validation data"):
        s.aggregate(g, ups)
    ctx = ValidationContext(ARCH, fixed(d.x_public), d.y_public)
    a = s.aggregate(g, ups, validation=ctx)
    b = s.aggregate(g, list(reversed(ups)), validation=ctx)
    assert flatten(a.model).tolist() == flatten(b.model).tolist()
    assert a.members == b.members and a.shares == b.shares
    # the three noisy copies are one player whose shares add up to 1
    split = [k for k in a.accepted if k not in (ups[0].key, ups[-1].key)]
    assert len(split) == 3 and sum(a.shares[k] for k in split) == 1
    assert any(set(split) <= set(m) for m in a.members.values())
    # a nudge of one fixed-point unit is no training
    nudged = {k: v.copy() for k, v in g.items()}
    nudged["fc.bias"][3] += 1
    c = s.aggregate(g, ups + [ClientUpdate("0x" + "ee" * 20, Model(nudged), 400)],
                    validation=ctx)
    assert "no measurable training" in c.rejected["0x" + "ee" * 20]


@pytest.mark.parametrize("attack", ["label_flip", "sign_flip", "scaled", "noise", "free_rider"])
def test_the_suite_s_cnn_attackers_earn_nothing_under_the_validated_rule(attack):
    """tests/ml_scenarios.py's non-IID CNN round (10 trainers, 3 attackers), scored as the
    market does (dapp.market.closing): the attackers are paid 0, honest trainers are paid, and
    accuracy stays within 4 points of plain FedAvg without attackers."""
    from types import SimpleNamespace

    from dapp.market.closing import _score_validated
    from dapp.ml.inference import count_correct
    from dapp.ml.rewards import split_reward
    from tests.ml_scenarios import attacked_round

    s = build_strategy(VALIDATED)
    clean = attacked_round(None)
    fed = build_strategy("fedavg").aggregate(clean.global_model, clean.updates).model
    base = count_correct(clean.arch, fed, clean.x_test, clean.y_test)
    r = attacked_round(attack)
    ctx = ValidationContext(r.arch, r.x_val, r.y_val)
    agg = s.aggregate(r.global_model, r.updates, validation=ctx)
    spec = SimpleNamespace(arch=r.arch, contribution={"method": "shapley",
                                                      "exact_max_players": 10})
    scores, _, _ = _score_validated(spec, s, r.global_model, agg, (r.x_val, r.y_val),
                                 (r.x_val, r.y_val), b"test")
    pay = split_reward(10**18, scores).payouts
    assert all(pay.get(k, 0) == 0 for k in r.attackers)
    assert sum(pay.values()) >= 10**18 - 100
    assert count_correct(r.arch, agg.model, r.x_test, r.y_test) >= base - 16   # 4 % of 400

"""What closing a round can cost, bounded before a job opens.

Every job shares one backend: a round whose close takes hours, or more memory than the machine
has, stops every other job. So the work of the worst round a spec allows is computed, in declared
integer units, when the job is created, and a spec above the budget is refused with a report
that says by how much. The model is deliberately pessimistic (worst case over everything the
spec lets trainers and the owner do: a full shard, every trainer revealing, no truncation) and
deliberately simple, so anyone can check it by hand:

* ``ops`` = sample-evaluations x operations per sample + coalitions x players x parameters
  + players^2 x parameters. One *evaluation* runs a model over a validation shard (the round's
  secret shard, the job's public one, or their union) and builds the coalition's aggregate
  (``players x parameters``). A round needs, per contribution pass, the method's evaluations
  (exact Shapley: 2**n coalitions, n capped by ``exact_max_players``; sampled Shapley:
  ``permutations x players`` prefixes; leave-one-out: ``players + 1``) over the scoring set;
  the ``validated`` rule's gate (3 per update plus 4, on the public shard) and its declared
  fallback passes (leave-one-out); each update's overflow check and the accuracy of the global and new models.
  ``players^2 x parameters`` covers pairwise distances (Multi-Krum, clustering).
* operations per sample: multiply-accumulates of linear and conv layers, plus one per element
  read by pooling and activation layers.
* ``peak_bytes``: the shard as int64, one inference batch's activations as int64 (conv layers
  materialise im2col), and every revealed model three times over (int32 as decoded, int64 when
  stacked, int64 when combined), plus the global model.

The budget (``MAX_CLOSE_OPS``, ``MAX_CLOSE_BYTES``) is chosen so that the worst accepted round
closes within one epoch of ``cartesi run`` (720 blocks x 2 s = 24 min) inside the Cartesi
machine, and within half of the machine image's 512 MiB. Measured (bench/close_budget.py): the
worst accepted specs close in 3-10 s on this 2-core host (1.2-3.6 G declared ops/s) with a peak
RSS of 62-65 MiB, and guest code runs ~65x slower inside the machine (TOOLCHAIN.md): at most
~11 min there, and typically far less.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dapp.ml.arch import ArchSpec
from dapp.ml.contribution import evaluations_bound, parse_method
from dapp.ml.inference import DEFAULT_BATCH

MAX_CLOSE_OPS = 12 * 10**9
MAX_CLOSE_BYTES = 192 << 20


@dataclass(frozen=True)
class CloseCost:
    """The declared worst case of closing one round of a job."""

    evaluations: int
    ops_per_sample: int
    ops: int
    peak_bytes: int

    def over_budget(self) -> list[str]:
        """Human-readable reasons this cost is above the budget (empty when it fits)."""
        out = []
        if self.ops > MAX_CLOSE_OPS:
            out.append(f"closing a round may take {self.ops:,} operations "
                       f"({self.ops / MAX_CLOSE_OPS:.1f}x the budget of {MAX_CLOSE_OPS:,}: "
                       f"{self.evaluations:,} shard evaluations of {self.ops_per_sample:,} "
                       f"operations per validation sample)")
        if self.peak_bytes > MAX_CLOSE_BYTES:
            out.append(f"closing a round may hold {self.peak_bytes:,} bytes "
                       f"({self.peak_bytes / MAX_CLOSE_BYTES:.1f}x the budget of "
                       f"{MAX_CLOSE_BYTES:,})")
        return out


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


def layer_costs(arch: ArchSpec) -> tuple[int, int]:
    """(operations per sample, largest per-sample working set in values) of one forward pass."""
    shapes = arch.shapes()
    ops = 0
    working = _prod(shapes[0])
    for i, layer in enumerate(arch.layers):
        before, after = shapes[i], shapes[i + 1]
        if layer.type == "linear":
            ops += layer.in_features * layer.out_features
            here = _prod(before) + _prod(after)
        elif layer.type == "conv2d":
            cols = after[1] * after[2] * layer.in_channels * layer.kernel_size ** 2
            ops += cols * layer.out_channels
            here = cols + _prod(after)        # im2col matrix and output
        else:
            ops += _prod(before)
            here = _prod(before) + _prod(after)
        working = max(working, here)
    return ops, working


def evaluations(method: Mapping[str, Any], players: int) -> int:
    """Worst-case coalition evaluations of one contribution pass over at most `players`
    distinct updates: exact Shapley below the cap (2**n, largest at n = the cap), sampled orders
    above it (2 + permutations x n), leave-one-out n + 1 (dapp.ml.contribution's own bound)."""
    if players <= 0:
        return 0
    raw = dict(method)            # the spec's own config: parse_method is not idempotent
    cfg = parse_method(raw)
    if cfg["method"] == "loo":
        return evaluations_bound(raw, players)
    return max(evaluations_bound(raw, min(players, cfg["exact_max_players"]) or 1),
               evaluations_bound(raw, players))


def close_cost(arch: ArchSpec, method: Mapping[str, Any], players: int, shard_samples: int,
               *, public_shard: bool = False, validated: bool = False,
               utility: str = "correct") -> CloseCost:
    """The declared worst case of one round close (see the module docstring).

    `shard_samples` bounds each shard (the round's secret one and, with `public_shard`, the
    job's public one: the round is then scored on their union). The `validated` rule also gates
    each update on the public shard (its probe, the rule's utility and correct predictions,
    and a second chance on top of the accepted ones: at most 3 evaluations per update plus 4)
    and declares fallback contribution passes by leave-one-out: the public shard, then correct
    predictions on the union and on the public shard."""
    params = arch.param_count()
    ops_per_sample, working = layer_costs(arch)
    m = shard_samples
    scoring = 2 * m if public_shard else m
    contrib = evaluations(method, players)
    fallback_samples = fallback_evals = gate = 0
    if validated:
        # Fallback passes run leave-one-out (players + 1 coalitions each).
        passes = ([scoring, m] if public_shard else [scoring]) * (2 if utility != "correct" else 1)
        fallback_samples = (players + 1) * sum(passes[1:])
        fallback_evals = (players + 1) * (len(passes) - 1)
        gate = (3 * players + 4) * m
    # Sample-evaluations: the contribution pass, the fallbacks, the gate, each update's overflow
    # check and the global and new models' accuracy on the scoring set.
    sample_evals = contrib * scoring + fallback_samples + gate + (players + 2) * scoring
    coalitions = contrib + fallback_evals
    evals = coalitions + (3 * players + 4 if validated else 0) + players + 2
    ops = (sample_evals * ops_per_sample + coalitions * players * params
           + players * players * params)
    batch = min(scoring, DEFAULT_BATCH)
    peak = (scoring * _prod(arch.input_shape) * 8 + batch * working * 8
            + (players + 1) * params * (4 + 8 + 8))
    return CloseCost(evals, ops_per_sample, ops, peak)

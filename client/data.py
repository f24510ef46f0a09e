"""Training data for trainers: their own files, the demo's built-in digits, and the data card.

A trainer's own data, two accepted layouts (features are float32 in the model's input units,
shaped `[N, *input_shape]` of the job's arch; labels are integers in `[0, num_classes)`):

* one `.npz` file with arrays `x` and `y` (`numpy.savez(path, x=x, y=y)`);
* a folder holding `x.npy` and `y.npy` (the same two arrays, `numpy.save`).

Files are read with `allow_pickle=False`: a data file can never run code.

The demo's data is scikit-learn's digits (1,797 8x8 images, pixel values 0..16 scaled to
[0, 1]), split non-IID: each trainer draws its labels from its own Dirichlet mix, with its own
size and label-noise rate, and held-out samples make one validation shard per round.

The data card (dapp/market/datacard.py) says what a trainer trained on without revealing it:
sample count, label histogram, feature shape, a commitment to the samples, and the DP
parameters. The commitment is a Merkle root (keccak-256):
    leaf_i = keccak(salt || uint64_be(i) || x_i as float32 little-endian || int32_be(y_i))
    node   = keccak(left || right); an odd level's last node is paired with itself
The salt (32 random bytes, kept by the trainer) stops anyone from testing guesses of samples
against the root; opening a leaf later proves a sample was in the set.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dapp.canonical import dumps, fraction_str
from dapp.hashing import keccak
from dapp.ml.arch import ArchSpec


class DataError(Exception):
    """The trainer's data cannot be used for this job; the message says why."""


def load_trainer_data(path: str | Path, arch: ArchSpec) -> tuple[np.ndarray, np.ndarray]:
    """Load and check a trainer's data against the job's arch; returns (x float32, y int64)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    try:
        if path.is_dir():
            x = np.load(path / "x.npy", allow_pickle=False)
            y = np.load(path / "y.npy", allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z or "y" not in z:
                    raise DataError(f"{path} must hold arrays 'x' and 'y' (has {sorted(z.files)})")
                x, y = z["x"], z["y"]
        else:
            raise DataError(f"{path}: expected a .npz file or a folder with x.npy and y.npy")
    except FileNotFoundError as exc:
        raise DataError(f"data not found: {exc.filename or path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return check_data(x, y, arch, str(path))


def check_data(x: np.ndarray, y: np.ndarray, arch: ArchSpec, where: str = "data"
               ) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if y.ndim != 1 or x.shape != (len(y), *arch.input_shape):
        raise DataError(f"{where}: x has shape {list(x.shape)} and y {list(y.shape)}; the job "
                        f"needs x [N, {', '.join(map(str, arch.input_shape))}] and y [N]")
    if len(y) == 0:
        raise DataError(f"{where}: no samples")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= arch.num_classes:
        raise DataError(f"{where}: labels must be integers in [0, {arch.num_classes - 1}]")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: features contain NaN or infinity")
    return x, y.astype(np.int64)


# --- the demo's data -----------------------------------------------------------------------

def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as x float32 [1797, 1, 8, 8] in [0, 1], y int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return x, d.target.astype(np.int64)


@dataclass(frozen=True)
class Profile:
    """One demo participant's data: how many samples, how skewed, how noisy, and its role."""

    name: str
    size: int
    alpha: float          # Dirichlet concentration of its label mix (small = very non-IID)
    noise: float          # fraction of labels replaced by a random other label
    role: str = "honest"  # honest | label_flip | sign_flip | free_rider


DEMO_PROFILES: tuple[Profile, ...] = (
    Profile("alice", 200, 5.0, 0.00),
    Profile("bob", 160, 1.0, 0.00),
    Profile("carol", 130, 1.0, 0.05),
    Profile("dave", 110, 0.5, 0.00),
    Profile("erin", 90, 0.5, 0.10),
    Profile("frank", 70, 1.0, 0.30),
    Profile("grace", 60, 0.3, 0.00),
    Profile("heidi", 50, 0.5, 0.15),
    Profile("mallory", 100, 5.0, 0.00, "label_flip"),
    Profile("oscar", 100, 5.0, 0.00, "sign_flip"),
    Profile("trudy", 0, 1.0, 0.00, "free_rider"),
)


@dataclass
class DemoSplit:
    parts: dict[str, tuple[np.ndarray, np.ndarray]]
    shards: list[tuple[np.ndarray, np.ndarray]]   # one validation shard per round
    test: tuple[np.ndarray, np.ndarray]           # held out from everything (benchmarks)


def demo_split(rounds: int, shard_size: int = 80, test_size: int = 297,
               profiles: tuple[Profile, ...] = DEMO_PROFILES, seed: int = 7) -> DemoSplit:
    """Deterministic non-IID split of digits: validation shards, a test set, trainer parts."""
    x, y = digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    need = rounds * shard_size + test_size
    held, pool = order[:need], order[need:]
    shards = [(x[held[i * shard_size:(i + 1) * shard_size]], y[held[i * shard_size:(i + 1) * shard_size]])
              for i in range(rounds)]
    test_idx = held[rounds * shard_size:]
    by_class = {c: list(pool[y[pool] == c]) for c in range(10)}
    for c in by_class:
        rng.shuffle(by_class[c])
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for prof in profiles:
        if prof.size == 0:
            parts[prof.name] = (np.zeros((0, 1, 8, 8), np.float32), np.zeros(0, np.int64))
            continue
        mix = rng.dirichlet([prof.alpha] * 10)
        want = rng.multinomial(prof.size, mix)
        idx: list[int] = []
        for c in range(10):  # take what the class has left; top up from the largest classes
            take = min(int(want[c]), len(by_class[c]))
            idx += [by_class[c].pop() for _ in range(take)]
        while len(idx) < prof.size:
            c = max(by_class, key=lambda k: len(by_class[k]))
            if not by_class[c]:
                raise DataError("the digits pool is exhausted: profiles ask for too many samples")
            idx.append(by_class[c].pop())
        xi, yi = x[idx], y[idx].copy()
        if prof.noise > 0:
            flip = rng.random(len(yi)) < prof.noise
            yi[flip] = (yi[flip] + rng.integers(1, 10, int(flip.sum()))) % 10
        parts[prof.name] = (xi, yi)
    return DemoSplit(parts, shards, (x[test_idx], y[test_idx]))


# --- the data card --------------------------------------------------------------------------

def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return b"\x00" * 32
    level = list(leaves)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def sample_leaves(x: np.ndarray, y: np.ndarray, salt: bytes) -> list[bytes]:
    xs = np.ascontiguousarray(x, dtype="<f4")
    return [keccak(salt + i.to_bytes(8, "big") + xs[i].tobytes() + int(y[i]).to_bytes(4, "big", signed=True))
            for i in range(len(y))]


def data_card(x: np.ndarray, y: np.ndarray, arch: ArchSpec, *, salt: bytes | None = None,
              dp: dict[str, Fraction] | None = None, claimed_samples: int | None = None
              ) -> tuple[bytes, bytes]:
    """The card's canonical JSON bytes and the salt of its commitment.

    `claimed_samples` lets the demo's attackers lie about their size (the job's weight cap
    bounds what a lie buys); honest use leaves it None.
    """
    salt = salt if salt is not None else secrets.token_bytes(32)
    hist = np.bincount(np.asarray(y, dtype=np.int64), minlength=arch.num_classes).tolist()
    n = int(len(y))
    if claimed_samples is not None and claimed_samples != n:
        scale = claimed_samples / max(n, 1)
        hist = [int(h * scale) for h in hist]
        hist[int(np.argmax(hist))] += claimed_samples - sum(hist)
        n = claimed_samples
    card: dict[str, Any] = {
        "version": 1, "num_samples": n, "label_histogram": [int(h) for h in hist],
        "feature_shape": list(arch.input_shape),
        "data_commitment": "0x" + merkle_root(sample_leaves(x, y, salt)).hex(),
        "dp": None if dp is None else {k: fraction_str(v) for k, v in sorted(dp.items())},
    }
    return dumps(card), salt

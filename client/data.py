"""Training data for trainers: their own files, the demo's built-in digits, and the data card.

A trainer's own data (features are float32 in the model's input units, shaped
`[N, *input_shape]` of the job's arch, e.g. channels-first [N, C, H, W]; labels are integers in
`[0, num_classes)`), in any of these layouts:

* one `.npz` file with arrays `x` and `y` (`numpy.savez(path, x=x, y=y)`);
* a folder holding `x.npy` and `y.npy` (the same two arrays, `numpy.save`);
* an image folder with one subfolder per class, named by its label (`0/`, `1/`, ...) or, when
  no name is a number, by class name in sorted order (torchvision's ImageFolder rule): `.npy`
  images always, `.png`/`.jpg` when Pillow is installed; pixels 0..255 are divided by 255;
* a `.csv` file: one sample per row, the label in a column named `label` (or `y`, or the first
  column when there is no header), the features flattened in the other columns.

Channels-last images (torchvision/Keras style `[N, H, W, C]`) are moved to channels-first with a
note. Raw 8-bit pixels (integers 0..255) are refused with the fix (divide by 255): training on
them silently gives a model the job's validation shard cannot score.

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


def load_trainer_data(path: str | Path, arch: ArchSpec, *,
                      notes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load and check a trainer's data against the job's arch; returns (x float32, y int64).
    `notes` (if given) collects what was converted (layout, scale), for the CLI to print."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    notes = notes if notes is not None else []
    try:
        if path.is_dir():
            if (path / "x.npy").exists() or (path / "y.npy").exists():
                x = np.load(path / "x.npy", allow_pickle=False)
                y = np.load(path / "y.npy", allow_pickle=False)
            else:
                x, y = _image_folder(path, notes)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z or "y" not in z:
                    raise DataError(f"{path} must hold arrays 'x' and 'y' (has {sorted(z.files)})")
                x, y = z["x"], z["y"]
        elif path.suffix.lower() == ".csv":
            x, y = _csv(path, arch, notes)
        else:
            raise DataError(f"{path}: expected a .npz file, a .csv file, a folder with x.npy and "
                            f"y.npy, or an image folder with one subfolder per class")
    except FileNotFoundError as exc:
        raise DataError(f"data not found: {exc.filename or path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return check_data(x, y, arch, str(path), notes=notes)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _image_folder(path: Path, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    classes = sorted(d for d in path.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{path}: a data folder needs x.npy and y.npy, or one subfolder of "
                        f"images per class")
    if all(d.name.isdigit() for d in classes):
        labels = {d: int(d.name) for d in classes}
    else:
        labels = {d: i for i, d in enumerate(classes)}
        notes.append("class subfolders numbered in sorted order: " + ", ".join(
            f"{d.name}={i}" for d, i in labels.items()))
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for d in classes:
        for f in sorted(d.iterdir()):
            if f.suffix == ".npy":
                xs.append(np.load(f, allow_pickle=False))
            elif f.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    from PIL import Image
                except ImportError:
                    raise DataError(f"{f}: reading {f.suffix} images needs Pillow "
                                    f"(`pip install pillow`), or save each image as .npy") from None
                with Image.open(f) as im:
                    xs.append(np.asarray(im))
            else:
                continue
            if xs[-1].shape != xs[0].shape:  # say so at the first odd one, before reading on
                raise DataError(f"{path}: images of different shapes "
                                f"{sorted({xs[0].shape, xs[-1].shape})} ({f.name}): resize "
                                f"them to the job's input size first")
            ys.append(labels[d])
    if not xs:
        raise DataError(f"{path}: no .npy or image files in the class subfolders")
    x = np.stack(xs)
    if x.ndim == 3:  # grey images [N, H, W]: one channel
        x = x[:, None, :, :]
    return x, np.asarray(ys, dtype=np.int64)


def _csv(path: Path, arch: ArchSpec, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import csv

    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise DataError(f"{path}: empty CSV")
    header = rows[0]
    try:
        [float(v) for v in header]
        col, body = 0, rows
        notes.append(f"{path.name}: no header; the first column is the label")
    except ValueError:
        names = [h.strip().lower() for h in header]
        col = names.index("label") if "label" in names else names.index("y") if "y" in names else 0
        body = rows[1:]
    try:
        a = np.asarray([[float(v) for v in r] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path}: every cell must be a number ({exc})") from None
    if a.ndim != 2 or a.shape[1] < 2:
        raise DataError(f"{path}: need a label column and feature columns")
    y = a[:, col]
    if not np.all(y == np.round(y)):
        raise DataError(f"{path}: the label column holds non-integers")
    x = np.delete(a, col, axis=1)
    n = int(np.prod(arch.input_shape))
    if x.shape[1] != n:
        raise DataError(f"{path}: {x.shape[1]} feature columns; the job needs {n} "
                        f"(= {' x '.join(map(str, arch.input_shape))}, flattened channels-first)")
    int_valued = bool(np.all(x == np.round(x)))
    x = x.reshape(len(y), *arch.input_shape)
    if int_valued and x.size and x.max() > 1:  # numbers read from text carry no dtype
        x = x.astype(np.int64)
    return x, y.astype(np.int64)


def _to_channels_first(x: np.ndarray, arch: ArchSpec, where: str, notes: list[str]) -> np.ndarray:
    shape = tuple(arch.input_shape)
    if len(shape) == 3 and x.ndim == 4 and x.shape[1:] == (shape[1], shape[2], shape[0]) \
            and x.shape[1:] != shape:
        notes.append(f"{where}: channels-last images [N, H, W, C] moved to channels-first "
                     f"[N, C, H, W] as the job's arch expects")
        return np.ascontiguousarray(np.moveaxis(x, -1, 1))
    if len(shape) == 3 and shape[0] == 1 and x.ndim == 3 and x.shape[1:] == shape[1:]:
        notes.append(f"{where}: grey images [N, H, W] given one channel")
        return x[:, None, :, :]
    return x


def check_data(x: np.ndarray, y: np.ndarray, arch: ArchSpec, where: str = "data", *,
               notes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    notes = notes if notes is not None else []
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim == 1 and len(y) == len(x):
        x = _to_channels_first(x, arch, where, notes)
    images = len(arch.input_shape) == 3  # tabular features may be counts: no pixel rule
    if not images:
        pass
    elif np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        if x.size and x.max() > 1:
            raise DataError(f"{where}: features are integers up to {int(x.max())} (raw 8-bit "
                            f"pixels?); the job's model expects floats, typically in [0, 1]: "
                            f"divide by 255 first (x = x.astype('float32') / 255)")
    elif x.size and np.all(np.isfinite(x)) and float(x.max()) > 2.0 and float(x.min()) >= 0 \
            and float(x.max()) <= 255 and bool(np.all(x == np.round(x))):
        raise DataError(f"{where}: features are whole numbers from {float(x.min()):g} to "
                        f"{float(x.max()):g}: raw 0..255 pixels stored as floats? Divide by 255 "
                        f"first (x = x / 255)")
    x = np.asarray(x, dtype=np.float32)
    if y.ndim != 1 or x.shape != (len(y), *arch.input_shape):
        raise DataError(f"{where}: x has shape {list(x.shape)} and y {list(y.shape)}; the job "
                        f"needs x [N, {', '.join(map(str, arch.input_shape))}] (channels-first) "
                        f"and y [N]")
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

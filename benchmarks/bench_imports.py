"""Benchmark import times: what a command pays before it does any work.

Each import runs in a fresh interpreter (``python -c "import X"``), ``--repeats`` times; the
fastest wall time is kept (the first run also warms the page cache). The baseline is
``import torch``, measured in the same run: a stage that needs torch cannot start faster,
so ``geoseg.predict`` against it is geoseg's own overhead. The table also says whether
Lightning and torchmetrics were loaded (the predictor, the bundle layer and the exporter
must not load them; tests/foundation/test_layers.py checks it).

    python benchmarks/bench_imports.py [--repeats 5] [--compare OLD_CHECKOUT]

``--compare`` also times every geoseg import from another checkout (e.g. ``git worktree add
/tmp/old <commit>``) in the same run, for a before/after column.

Writes docs/benchmarks_imports.md; prints every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._machine import machine  # noqa: E402

MODULES = ("torch", "geoseg.io", "geoseg.cli.main", "geoseg.bundle", "geoseg.predict", "geoseg.export",
           "geoseg.train", "lightning")
HEAVY = ("lightning", "torchmetrics")


def time_import(module: str, repeats: int, tree: Path = REPO) -> tuple[float, list[str]]:
    """Fastest wall seconds of ``import module`` in a fresh interpreter, and the heavy modules it loaded.

    ``tree`` is the checkout whose ``geoseg`` is imported (first on ``PYTHONPATH``).
    """
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    best, loaded = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree,
                             env=env)
        best = min(best, time.perf_counter() - start)
        loaded = [m for m in out.stdout.strip().split(",") if m]
    return best, loaded


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compare", type=Path, default=None, help="an older checkout to time beside this one")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks_imports.md")
    args = p.parse_args()
    load_start = os.getloadavg()[0]
    results = {m: time_import(m, args.repeats) for m in MODULES}
    old: dict[str, tuple[float, list[str]]] = {}
    if args.compare is not None:
        for m in MODULES:
            with contextlib.suppress(subprocess.CalledProcessError):  # a module the checkout lacks
                old[m] = time_import(m, args.repeats, args.compare) if m.startswith("geoseg") else results[m]
    base = results["torch"][0]
    rows = []
    for module, (seconds, loaded) in results.items():
        row = f"| `import {module}` | {seconds:.2f} | {seconds / base:.2f}x | {', '.join(loaded) or 'no'} |"
        if args.compare is not None:
            before = old.get(module)
            row += (f" {before[0]:.2f} | {', '.join(before[1]) or 'no'} |" if before else " — | — |")
        print(row)
        rows.append(row)
    lines = [
        "# Import benchmark",
        "",
        f"`python benchmarks/bench_imports.py --repeats {args.repeats}"
        + (f" --compare {args.compare}" if args.compare else "") + f"`: fastest of {args.repeats} fresh "
        f"interpreters each. Machine: {machine()}; load average (1 min) {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end."
        + (f" The last columns import geoseg from the checkout `{args.compare}` in the same run." if args.compare else ""),
        "",
        "| import | wall s | vs `import torch` | loads Lightning / torchmetrics |"
        + (f" at {args.compare.name}: wall s | loads |" if args.compare else ""),
        "|---|---:|---:|---|" + ("---:|---|" if args.compare else ""),
        *rows,
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Rebuild docs/benchmarks.md from the per-area tables the benchmark scripts write.

    python benchmarks/collect.py

Each ``benchmarks/bench_<area>.py`` writes ``docs/benchmarks_<area>.md`` (its figures, the
baseline of the same run and the machine); this page gathers them in pipeline order.
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
ORDER = ["inspect", "features", "tiler", "models", "train", "loader", "predict", "predict_engine", "predict_archs", "engines", "predict_fulltile", "pipeline", "series", "imports", "suite"]
HEADER = """# Benchmarks

Latest figures of every script in `benchmarks/`, each against a baseline measured in the same
run; every section names the machine and its load average during the run (the development
machine is shared, so absolute times can be inflated — the same-run ratios and CPU-second
columns are the meaningful figures). Rerun one with `python benchmarks/bench_<area>.py`, then
`python benchmarks/collect.py` to rebuild this page.
"""


def _body(text: str) -> str:
    """A table file without its own top-level title; its headings moved one level down."""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(re.sub(r"^(#{2,5}) ", r"#\1 ", line) for line in lines).strip()


def main() -> None:
    found = {p.stem.removeprefix("benchmarks_"): p for p in DOCS.glob("benchmarks_*.md")}
    areas = [a for a in ORDER if a in found] + sorted(set(found) - set(ORDER))
    parts = [HEADER]
    for area in areas:
        parts.append(f"## {area}\n\n(from [{found[area].name}]({found[area].name}))\n\n{_body(found[area].read_text())}\n")
    (DOCS / "benchmarks.md").write_text("\n".join(parts))
    print(f"wrote {DOCS / 'benchmarks.md'} ({', '.join(areas)})")


if __name__ == "__main__":
    main()

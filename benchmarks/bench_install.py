"""Benchmark the default install: size and time of ``pip install geoseg`` into a fresh venv.

Each variant is geoseg's source at ``--ref`` (``git archive``) with one ``pyproject.toml``:
``before`` = the ref's own, ``after`` = the working tree's. Each is installed non-editable,
without extras, into a new ``python -m venv`` under ``--work``; the wall time of ``pip install``
and the size of ``site-packages`` (``du -sb``) are recorded, with the load average around each
install (the machine may be shared). The first install may also fill pip's cache (PyPI
downloads), so ``before`` is installed once more after ``after``: compare the last two rows.

    python benchmarks/bench_install.py [--ref HEAD] [--work /tmp/geoseg-install]

Writes docs/benchmarks_install.md; prints every figure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._machine import machine  # noqa: E402


def source_tree(ref: str, pyproject: bytes, dest: Path) -> Path:
    """geoseg's files at ``ref`` in ``dest``, with ``pyproject`` as its pyproject.toml."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / "pyproject.toml").write_bytes(pyproject)
    return dest


def largest(site: Path, n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` largest entries of ``site`` (folder name, bytes)."""
    out = subprocess.run(["du", "-sb", *map(str, site.iterdir())], check=True, capture_output=True, text=True).stdout
    sizes = [(Path(path).name, int(size)) for size, path in (line.split("\t", 1) for line in out.splitlines())]
    return sorted(sizes, key=lambda item: -item[1])[:n]


def install(src: Path, venv: Path) -> tuple[float, int, list[str]]:
    """Wall seconds of ``pip install src``, bytes of site-packages, and the distributions installed."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_PROGRESS_BAR": "off"}
    start = time.perf_counter()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)], check=True, env=env)
    seconds = time.perf_counter() - start
    site = next((venv / "lib").glob("python3*/site-packages"))
    size = int(subprocess.run(["du", "-sb", str(site)], check=True, capture_output=True, text=True).stdout.split()[0])
    dists = sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions(path=[str(site)]))
    return seconds, size, dists


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="git ref whose pyproject.toml is 'before'")
    parser.add_argument("--work", type=Path, default=Path("/tmp/geoseg-install"))
    args = parser.parse_args()
    old = subprocess.run(["git", "-C", str(REPO), "show", f"{args.ref}:pyproject.toml"], check=True,
                         capture_output=True).stdout
    new = (REPO / "pyproject.toml").read_bytes()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.ref], check=True,
                            capture_output=True, text=True).stdout.strip()
    trees = {"before": source_tree(args.ref, old, args.work / "src-before"),
             "after": source_tree(args.ref, new, args.work / "src-after")}
    rows, dists, sizes = [], {}, {}
    for i, variant in enumerate(("before", "after", "before")):
        load = os.getloadavg()[0]
        seconds, sizes[variant], dists[variant] = install(trees[variant], args.work / f"venv-{variant}")
        size = sizes[variant]
        cache = "as left by earlier installs" if i == 0 else "filled by the installs above"
        rows.append(f"| {i + 1} | {variant} | {cache} | {seconds:.0f} | {size / 1e6:.1f} | {len(dists[variant])} "
                    f"| {load:.1f} / {os.getloadavg()[0]:.1f} |")
        print(rows[-1], flush=True)
    site = next((args.work / "venv-after" / "lib").glob("python3*/site-packages"))
    big = ", ".join(f"{name}/ {size / 1e6:.0f} MB" for name, size in largest(site))
    gone = sorted(set(dists["before"]) - set(dists["after"]))
    added = sorted(set(dists["after"]) - set(dists["before"]))
    text = "\n".join([
        "# Install size",
        "",
        f"`python benchmarks/bench_install.py --ref {args.ref}`: `pip install .` (non-editable, no extras) into a "
        f"fresh venv, `before` with the pyproject.toml of {commit}, `after` with the working tree's; the same "
        f"source otherwise. Size is `du -sb` of site-packages. Machine: {machine()}; torch comes from the "
        "machine's local wheel index (the CUDA build with its nvidia-* wheels), the rest from PyPI.",
        "",
        "| # | pyproject | pip cache | pip install wall s | site-packages MB | distributions | load (1 min) before / after |",
        "|---:|---|---|---:|---:|---:|---|",
        *rows,
        "",
        f"after − before: {(sizes['after'] - sizes['before']) / 1e6:+.1f} MB, "
        f"{len(dists['after']) - len(dists['before']):+d} distributions. Not installed any more by the default "
        f"install: {', '.join(gone) or 'none'}. Newly installed: {', '.join(added) or 'none'}. The largest parts "
        f"of the install: {big}. Wall time is mostly pip unpacking and byte-compiling those; on a shared "
        "machine it follows the load (last column) more than the dependency list.",
        "",
    ])
    out = REPO / "docs" / "benchmarks_install.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

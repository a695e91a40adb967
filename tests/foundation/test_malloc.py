"""geoseg.utils.memory: freed batch-sized arrays are reused instead of page-faulted afresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, sys
import numpy as np
from geoseg.utils.memory import keep_freed_memory
if sys.argv[1] == "tuned":
    keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(40 * 2**20 // 8)  # 40 MB: above glibc's largest dynamic mmap threshold (32 MB)
start = faults()
for _ in range(20):
    a = np.ones(40 * 2**20 // 8)
    del a
print(json.dumps({"faults": faults() - start}))
"""


def _faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's own defaults
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["faults"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_large_arrays_are_reused_without_page_faults():
    default, tuned = _faults("default"), _faults("tuned")
    # glibc's default: mmap + munmap every time, i.e. at least one fault per 2 MB (huge) page
    assert default >= 20 * 20
    assert tuned <= default / 50  # kept in the heap and reused

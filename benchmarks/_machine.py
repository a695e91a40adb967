"""Describe the machine a benchmark ran on (for the tables in docs/benchmarks*.md)."""

from __future__ import annotations

import os
import platform
import resource


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numpy
    import rasterio

    parts = [cpu, f"{os.cpu_count()} cores", f"Python {platform.python_version()}",
             f"numpy {numpy.__version__}", f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM (ru_maxrss keeps the parent's peak across fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

"""What the run records and benchmarks say about the machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask), SMT siblings included."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_count() -> int:
    return len(usable_cpus())


def describe_device(model) -> str:
    """Where a model computes: the TensorFlow backend names its device; numnet's engines use the CPU."""
    return getattr(model, "device", None) or f"CPU: {cpu_name()} ({core_count()} cores)"

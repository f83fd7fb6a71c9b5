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


def core_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe_device(model) -> str:
    """Where a model computes: the TensorFlow backend names its device; numnet's engines use the CPU."""
    return getattr(model, "device", None) or f"CPU: {cpu_name()} ({core_count()} cores)"

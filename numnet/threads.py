"""How many threads numnet's kernels use, and how the thread pools behave between kernels.

The count: one thread per physical core this process may use (SMT siblings counted once, a cgroup
CPU quota honoured), or `NUMNET_NUM_THREADS`. A second hardware thread on a core only competes for
the same FMA units, so it slows the step down (benchmarks/RESULTS.md). `use_threads` applies the
count to Numba and to BLAS (through threadpoolctl) when a kernel module loads, so it holds whatever
was imported first.

The pools' idle behaviour: Numba's kernels and OpenBLAS's matrix products take turns on the same
cores. By default each pool keeps its threads spinning for a while after its work is done, so the
other pool's threads find the cores busy; idle threads that sleep at once give the cores back.
OpenMP reads its setting when Numba starts
its pool, which `use_threads` does; OpenBLAS reads its own only when NumPy loads it, so that one
applies only if numnet (or the variable) comes before NumPy: `blas_sleeps_when_idle` says whether it did.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from numnet.errors import NumnetError
from numnet.machine import usable_cpus

BLAS_SPIN = "OPENBLAS_THREAD_TIMEOUT"
_BLAS_LOADED_FIRST = "numpy" in sys.modules and BLAS_SPIN not in os.environ
os.environ.setdefault(BLAS_SPIN, "4")  # OpenBLAS: spin the minimum (2^4 cycles)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # OpenMP (Numba's threading layer): sleep when idle

ENVIRONMENT_VARIABLE = "NUMNET_NUM_THREADS"


class ThreadSettingError(NumnetError, ValueError):
    """NUMNET_NUM_THREADS is not a positive whole number."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_cpu_limit(cgroup: Path) -> int | None:
    """CPUs a cgroup v2 quota allows ("max 100000" is no limit), rounded up."""
    text = _read(cgroup / "cpu.max")
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max" or not period:
        return None
    try:
        return max(1, -(-int(quota) // int(period)))
    except ValueError:
        return None


def physical_cores(sysfs: Path = Path("/sys"), cpus: list[int] | None = None) -> int:
    """Distinct physical cores among the CPUs this process may run on.

    Reads each CPU's (package, core) from sysfs; a CPU whose topology is unreadable counts as its
    own core, so the answer is never below the truth on a machine without SMT.
    """
    cpus = usable_cpus() if cpus is None else cpus
    cores = set()
    for cpu in cpus:
        topology = sysfs / "devices/system/cpu" / f"cpu{cpu}" / "topology"
        package, core = _read(topology / "physical_package_id"), _read(topology / "core_id")
        cores.add((package, core) if package is not None and core is not None else ("cpu", cpu))
    count = len(cores) or 1
    quota = _cgroup_cpu_limit(sysfs / "fs/cgroup")
    return min(count, quota) if quota else count


def thread_count() -> int:
    """NUMNET_NUM_THREADS if set, else one thread per physical core."""
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if value is None or value.strip() == "":
        return physical_cores()
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ThreadSettingError(f"{ENVIRONMENT_VARIABLE}={value!r} is not a positive whole number of threads")
    return count


def use_threads(count: int | None = None, numba_pool: bool = False) -> int:
    """Applies `count` (default `thread_count()`) to BLAS and, if asked, to Numba's pool; returns it.

    Numba cannot go above the pool it started with (NUMBA_NUM_THREADS, all CPUs by default).
    """
    from threadpoolctl import threadpool_limits

    count = thread_count() if count is None else count
    threadpool_limits(limits=count, user_api="blas")
    if numba_pool:
        import numba

        global NUMBA_THREADS
        count = min(count, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(count)
        NUMBA_THREADS = count
    return count


NUMBA_THREADS: int | None = None  # what use_threads last gave Numba's pool


def numba_threads_here() -> None:
    """Gives the calling thread the count use_threads chose. Numba keeps the count per thread: a
    thread that never set it (a web server's worker, the Tk app's) would run on every CPU."""
    import numba

    if NUMBA_THREADS is not None and numba.get_num_threads() != NUMBA_THREADS:
        numba.set_num_threads(NUMBA_THREADS)


def blas_sleeps_when_idle() -> bool:
    """False if NumPy (so OpenBLAS) loaded before numnet could ask its threads to sleep when idle."""
    return not _BLAS_LOADED_FIRST

"""Thread settings numnet makes before NumPy starts OpenBLAS and Numba starts OpenMP.

Numba's kernels and OpenBLAS's matrix products take turns on the same cores. By default each pool
keeps its threads spinning for a while after its work is done, so the other pool's threads find
the cores busy: measured on 2 cores, a seed-CNN training step took 0.78 s that way and 0.52 s with
idle threads sleeping at once. Both settings only apply if the user has not set them and only if
this module runs before NumPy is first imported (`import numnet` first, or the numnet CLIs).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # OpenBLAS: spin the minimum (2^4 cycles)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # OpenMP (Numba's threading layer): sleep when idle

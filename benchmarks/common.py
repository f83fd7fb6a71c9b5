"""What the benchmarks share: the machine's description, its matmul peak, FLOP counts, results files.

FLOPs are counted from the spec, as is usual for training throughput: a multiply-add is 2 FLOPs;
a Conv2D forward costs 2*Ho*Wo*k*k*Cin*Cout per sample and a Dense 2*in*out; a training step costs
3x the forward (the forward pass, then the input and weight gradients). Elementwise layers
(batch norm, ReLU, pooling, dropout, softmax) are not counted. The same count is used for every
framework, so achieved GFLOP/s compares them fairly and against the matmul peak.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def forward_flops_per_sample(spec: dict) -> int:
    import numnet

    model = numnet.build(spec, backend="numpy")
    flops = 0
    for layer in model.layers:
        if layer.type == "Conv2D":
            ho, wo, cout = layer.output_shape
            k = layer.config["kernel_size"]
            flops += 2 * ho * wo * k * k * layer.input_shape[-1] * cout
        elif layer.type == "Dense":
            flops += 2 * layer.input_shape[0] * layer.config["units"]
    return flops


def training_flops_per_sample(spec: dict) -> int:
    return 3 * forward_flops_per_sample(spec)


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The float32 GEMM rate NumPy's BLAS reaches on this machine: the best of several runs, since
    a peak is what the hardware can do when nothing else (e.g. a noisy neighbour) gets in the way."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = np.random.default_rng(1).random((size, size), dtype=np.float32)
    a @ b
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return max(rates)


def machine() -> dict:
    from numnet.machine import core_count, cpu_name

    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info = {
        "cpu": cpu_name(),
        "cores": core_count(),
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        pass
    gpu = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
    ) if _has("nvidia-smi") else None  # fmt: skip
    info["gpu"] = gpu.stdout.strip() if gpu and gpu.returncode == 0 else None
    return info


def _has(command: str) -> bool:
    from shutil import which

    return which(command) is not None


def run_child(module_args: list[str], env: dict | None = None, timeout: int = 1800) -> dict:
    """Runs one measurement in a fresh process (own memory peak, own thread settings); it prints JSON last."""
    result = subprocess.run(
        [sys.executable, *module_args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        return {"error": f"exit {result.returncode}: {tail}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def save(name: str, data: dict, markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)
    print(f"\nwrote {RESULTS / (name + '.json')} and {name}.md")

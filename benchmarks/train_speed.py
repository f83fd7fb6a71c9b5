"""Training speed, side by side in one run: numnet-numpy, numnet-numba, and Keras 3 on TensorFlow,
JAX and PyTorch where installed, on the CPU (and the GPU where there is one).

    python benchmarks/train_speed.py [--quick]

Each contender runs in its own process on the seed specs at the seed's batch sizes (CNN 1024,
MLP 100). After a warm-up, `fit` runs on a fixed number of real MNIST samples several times; the
median is scaled to a 60,000-sample epoch. TensorFlow on the CPU runs with oneDNN on and off and
the better one is its figure. Reports seconds per epoch, samples/s, peak memory (max RSS of the
process, data included), achieved GFLOP/s (see common.py) against the measured matmul peak, and
the time from process start to the end of the first training step (compilation or cache load).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))

EPOCH = 60000
BATCH = {"cnn": 1024, "mlp": 100}
KERAS_FRAMEWORKS = ("tensorflow", "jax", "torch")


def child(framework: str, model_name: str, samples: int, repeats: int) -> dict:
    import numpy as np

    import numnet
    from numnet import specs

    (x_train, y_train), _ = numnet.data.load_mnist()
    x, y = numnet.data.to_model_input(x_train[:samples]), y_train[:samples].astype(np.int64)
    spec = specs.resolve(model_name)
    batch = BATCH[model_name]
    if framework in KERAS_FRAMEWORKS:
        model = numnet.build(spec, backend=framework, seed=0)
        device = model.device or "CPU"
    else:
        model = numnet.build(spec, backend=framework, seed=0)
        device = "CPU"
    model.fit(x[: 2 * batch], y[: 2 * batch], epochs=1, batch_size=batch, verbose=0)  # warm-up, compile
    first_step = time.perf_counter() - START
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
        seconds.append(time.perf_counter() - start)
    return {
        "seconds": seconds,
        "device": device,
        "first_step_seconds": first_step,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def contenders(gpu: bool) -> list[tuple[str, str, dict]]:
    """(label, framework, environment) for each contender; Keras backends only where installed."""
    import importlib.util

    cpu_only = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    rows = [("numnet-numpy", "numpy", {}), ("numnet-numba", "numba", {})]
    installed = {f for f in KERAS_FRAMEWORKS if importlib.util.find_spec(f) and importlib.util.find_spec("keras")}
    if "tensorflow" in installed:
        rows += [
            ("tensorflow-cpu (oneDNN on)", "tensorflow", {**cpu_only, "TF_ENABLE_ONEDNN_OPTS": "1"}),
            ("tensorflow-cpu (oneDNN off)", "tensorflow", {**cpu_only, "TF_ENABLE_ONEDNN_OPTS": "0"}),
        ]
    rows += [(f"keras-{f}-cpu", f, cpu_only) for f in ("jax", "torch") if f in installed]
    if gpu:
        rows += [("tensorflow-gpu" if f == "tensorflow" else f"keras-{f}-gpu", f, {}) for f in sorted(installed)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("FRAMEWORK", "MODEL", "SAMPLES", "REPEATS"))
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    parser.add_argument("--models", default="cnn,mlp")
    parser.add_argument("--skip", default="", help="comma-separated contender labels to leave out")
    args = parser.parse_args()
    if args.child:
        framework, model_name, samples, repeats = args.child
        print(json.dumps(child(framework, model_name, int(samples), int(repeats))))
        return

    from common import machine, matmul_peak_gflops, run_child, save, training_flops_per_sample

    import numnet

    info = machine()
    peak = matmul_peak_gflops()
    print(f"machine: {info}\nfloat32 matmul peak: {peak:.0f} GFLOP/s")
    numnet.data.load_mnist()  # fetch once, before any timing
    results = []
    for model_name in args.models.split(","):
        spec = numnet.specs.resolve(model_name)
        flops = training_flops_per_sample(spec)
        for label, framework, env in contenders(gpu=bool(info["gpu"])):
            if label in args.skip.split(","):
                continue
            if model_name == "cnn":
                batches = {"numpy": 3, "numba": 10}.get(framework, 10)
                samples, repeats = BATCH["cnn"] * (batches // 2 if args.quick else batches), 3
            else:
                samples, repeats = (12000 if args.quick else EPOCH), 3
            print(f"-- {model_name} {label}: {samples} samples x {repeats}", flush=True)
            measured = run_child([__file__, "--child", framework, model_name, str(samples), str(repeats)], env)
            row = {"model": model_name, "contender": label, "samples": samples, **measured}
            if "seconds" in measured:
                epoch = statistics.median(measured["seconds"]) * EPOCH / samples
                row.update(
                    epoch_seconds=epoch,
                    samples_per_second=EPOCH / epoch,
                    gflops=flops * EPOCH / epoch / 1e9,
                    percent_of_peak=100 * flops * EPOCH / epoch / 1e9 / peak,
                )
                print(f"   {epoch:.2f} s/epoch, {row['gflops']:.0f} GFLOP/s", flush=True)
            else:
                print(f"   failed: {measured['error']}", flush=True)
            results.append(row)
    save("train_speed", {"machine": info, "matmul_peak_gflops": peak, "results": results}, table(results, info, peak))


def table(results: list[dict], info: dict, peak: float) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB"
        + (f", GPU {info['gpu']}" if info["gpu"] else ", no GPU")
        + f"; float32 matmul peak {peak:.0f} GFLOP/s.",
        "",
        "| model | contender | s/epoch | samples/s | GFLOP/s | % of peak | peak RSS MiB | start to 1st step s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        if "epoch_seconds" not in row:
            lines.append(f"| {row['model']} | {row['contender']} | failed | | | | | |")
            continue
        lines.append(
            f"| {row['model']} | {row['contender']} | {row['epoch_seconds']:.2f} | {row['samples_per_second']:,.0f}"
            f" | {row['gflops']:.1f} | {row['percent_of_peak']:.0f} | {row['peak_rss_mib']:,.0f}"
            f" | {row['first_step_seconds']:.1f} |"
        )
    for model in sorted({r["model"] for r in results}):
        rows = {r["contender"]: r for r in results if r["model"] == model and "epoch_seconds" in r}
        tf = [r["epoch_seconds"] for k, r in rows.items() if k.startswith("tensorflow-cpu")]
        if "numnet-numba" in rows and tf:
            ratio = min(tf) / rows["numnet-numba"]["epoch_seconds"]
            lines.append(f"\n{model}: numnet-numba is {ratio:.2f}x faster per epoch than TensorFlow's best CPU run.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()

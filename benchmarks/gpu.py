"""numnet's own engine on a GPU against the frameworks on the same GPU, in one run.

    python benchmarks/gpu.py [--rounds 2] [--cnn-epochs 3] [--out DIR]     # on a GPU machine

Contenders, each in its own process, in alternating order round after round:
  - numnet-cuda (numnet's CUDA kernels, `--backend cuda`), and again with its matrix products by
    cuBLAS through CuPy (NUMNET_CUDA_PRODUCTS=cupy) where CuPy is installed;
  - Keras 3 on every framework installed here (jax, torch, tensorflow), through numnet's Model API;
  - PyTorch's own torch.nn (benchmarks/torch_native.py) on the GPU.
Each measures, on all 60,000 MNIST images: the seed CNN at batch 1024 (seconds per epoch after the
first; the first epoch's extra seconds, tracing and compiling; test accuracy), the seed MLP at batch
100 (seconds per epoch after the first), one drawn digit to probabilities (median of 200 calls) and
10,000 images to probabilities (median of 5). The table gives medians and ranges over every round.
Needs no network: MNIST from $NUMNET_HOME's cache. Prepared to finish in under 5 minutes on one GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# name: (kind, backend, environment)
CONTENDERS = {
    "numnet-cuda": ("numnet", "cuda", {}),
    "numnet-cuda, cuBLAS products": ("numnet", "cuda", {"NUMNET_CUDA_PRODUCTS": "cupy"}),
    "keras-jax": ("numnet", "jax", {}),
    "keras-torch": ("numnet", "torch", {}),
    "keras-tensorflow": ("numnet", "tensorflow", {}),
    "torch.nn": ("torch", "torch", {}),
}
NEEDS = {"cuda": ["numba_cuda"], "jax": ["jax", "keras"], "torch": ["torch", "keras"],
         "tensorflow": ["tensorflow", "keras"]}  # fmt: skip


def mnist():
    import numnet

    (x_train, y_train), (x_test, y_test) = numnet.data.load_mnist()
    samples = int(os.environ.get("GPU_BENCH_SAMPLES", len(x_train)))  # --samples: a quick look on a CPU
    x_train, y_train = x_train[:samples], y_train[:samples]
    return (numnet.data.to_model_input(x_train), y_train), (numnet.data.to_model_input(x_test), y_test)


def median_ms(call, repeats: int, warm: int) -> float:
    for _ in range(warm):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def numnet_child(backend: str, cnn_epochs: int) -> dict:
    """Any backend behind numnet's Model API: numnet's engine or Keras on a framework."""
    import numnet

    (x_train, y_train), (x_test, y_test) = mnist()
    cnn = numnet.build(numnet.specs.cnn(), backend=backend, seed=0)
    cnn_seconds = cnn.fit(x_train, y_train, epochs=cnn_epochs, batch_size=1024, verbose=0)["seconds"]
    mlp = numnet.build(numnet.specs.mlp(), backend=backend, seed=0)
    mlp_seconds = mlp.fit(x_train, y_train, epochs=2, batch_size=100, verbose=0)["seconds"]
    return {
        "device": cnn.device or "CPU",
        "cnn_epoch_seconds": cnn_seconds[1:],
        "cnn_first_epoch_extra_seconds": cnn_seconds[0] - statistics.median(cnn_seconds[1:]),
        "cnn_test_accuracy": cnn.evaluate(x_test, y_test, verbose=0)["accuracy"],
        "mlp_epoch_seconds": mlp_seconds[1:],
        "one_digit_ms": median_ms(lambda: cnn.predict(x_test[:1]), 200, 20),
        "ten_thousand_ms": median_ms(lambda: cnn.predict(x_test[:10000], batch_size=1024), 5, 1),
    }


def torch_child(cnn_epochs: int) -> dict:
    import torch
    from torch_native import Trainer

    (x_train, y_train), (x_test, y_test) = mnist()
    result = {"device": f"GPU: {torch.cuda.get_device_name()}"}
    for name, batch, epochs in (("cnn", 1024, cnn_epochs), ("mlp", 100, 2)):
        trainer = Trainer(name, device="cuda")
        seconds = []
        for _ in range(epochs):
            start = time.perf_counter()
            trainer.fit(x_train, y_train, epochs=1, batch_size=batch)
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        result[f"{name}_epoch_seconds"] = seconds[1:]
        if name == "cnn":
            result["cnn_first_epoch_extra_seconds"] = seconds[0] - statistics.median(seconds[1:])
            result["cnn_test_accuracy"] = float((trainer.predict(x_test).argmax(axis=1) == y_test).mean())
            result["one_digit_ms"] = median_ms(lambda t=trainer: t.predict(x_test[:1]), 200, 20)
            result["ten_thousand_ms"] = median_ms(lambda t=trainer: t.predict(x_test[:10000]), 5, 1)
    return result


def available(name: str) -> str | None:
    """Why a contender cannot run here, or None."""
    kind, backend, environment = CONTENDERS[name]
    missing = [module for module in NEEDS[backend] if importlib.util.find_spec(module) is None]
    if environment.get("NUMNET_CUDA_PRODUCTS") == "cupy" and importlib.util.find_spec("cupy") is None:
        missing.append("cupy")
    return f"not installed here: {', '.join(missing)}" if missing else None


def spread(values: list[float], digits: int = 2) -> str:
    """'median [lowest-highest]' of every round's figures."""
    if not values:
        return ""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f}" + (f" [{low:.{digits}f}–{high:.{digits}f}]" if high > low else "")


def table(results: dict, info: dict, rounds: int, cnn_epochs: int) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores" + (f", GPU {info['gpu']}" if info["gpu"] else ", no GPU"),
        f"{rounds} rounds, contenders alternating; seed CNN {cnn_epochs} epochs per round (the first not timed).",
        "Medians [ranges] over every timed epoch or call of every round.",
        "",
        "| contender | device | CNN s/epoch | CNN 1st-epoch extra s | CNN test acc | MLP s/epoch | one digit ms "
        "| 10,000 images ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        errors = [run["error"] for run in runs if "error" in run]
        runs = [run for run in runs if "error" not in run]
        if not runs:
            lines.append(f"| {name} | {errors[0].splitlines()[-1][:90]} | | | | | | |")
            continue

        def pooled(key: str, runs: list = runs) -> list[float]:
            return [v for run in runs for v in (run[key] if isinstance(run[key], list) else [run[key]])]

        lines.append(
            f"| {name} | {runs[0]['device']} | {spread(pooled('cnn_epoch_seconds'))} "
            f"| {spread(pooled('cnn_first_epoch_extra_seconds'), 1)} "
            f"| {spread([100 * a for a in pooled('cnn_test_accuracy')])} % | {spread(pooled('mlp_epoch_seconds'))} "
            f"| {spread(pooled('one_digit_ms'), 3)} | {spread(pooled('ten_thousand_ms'), 1)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("KIND", "BACKEND", "CNN_EPOCHS"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cnn-epochs", type=int, default=3)
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="a comma-separated subset")
    parser.add_argument("--samples", type=int, default=None, help="train on fewer images (a quick look)")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results")
    args = parser.parse_args()
    if args.samples:
        os.environ["GPU_BENCH_SAMPLES"] = str(args.samples)
    if args.child:
        kind, backend, epochs = args.child
        result = torch_child(int(epochs)) if kind == "torch" else numnet_child(backend, int(epochs))
        print(json.dumps(result))
        return

    from common import RESULTS, machine, run_child

    info = machine()
    print(f"machine: {info}", flush=True)
    names = [name for name in args.contenders.split(",") if name]
    results: dict[str, list] = {name: [] for name in names}
    started = time.perf_counter()
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else names[::-1]  # each contender early in one round, late in another
        for name in order:
            reason = available(name)
            if reason:
                results[name] = [{"error": reason}]
                continue
            kind, backend, environment = CONTENDERS[name]
            run = run_child([__file__, "--child", kind, backend, str(args.cnn_epochs)], env=environment)
            results[name].append(run)
            print(f"round {round_ + 1} {name}: {json.dumps(run)}  [{time.perf_counter() - started:.0f} s]", flush=True)
    markdown = table(results, info, args.rounds, args.cnn_epochs)
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    data = {"machine": info, "rounds": args.rounds, "cnn_epochs": args.cnn_epochs, "results": results}
    (out / "gpu.json").write_text(json.dumps(data, indent=2))
    (out / "gpu.md").write_text(markdown)
    print(markdown)
    print(f"total {time.perf_counter() - started:.0f} s; wrote {out / 'gpu.json'} and gpu.md")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()

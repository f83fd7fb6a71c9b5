"""CPU vs GPU: the lab's Table 1 first row on every Keras backend present, beside numnet-numba.

    python benchmarks/gpu.py [--epochs 25] [--out DIR]     # on a GPU machine, in under 5 minutes

Needs nothing from the network: MNIST from $NUMNET_HOME's cache, Keras 3 and whichever of
TensorFlow, JAX and PyTorch are installed. Each contender runs in its own process (Keras runs one
backend per process), through numnet's own Model API (`numnet.build(spec, backend="jax")`):
  - the seed CNN, batch 1024, `--epochs` full epochs on all 60,000 images: seconds per epoch
    (median of epochs 2..N), the first epoch's extra seconds (tracing and compiling), test accuracy;
  - the seed MLP, batch 100, 3 epochs: seconds per epoch;
  - one drawn digit to probabilities (`model.predict` on one image): median of 200 calls.
numnet-numba runs the same CNN on this machine's CPU (10 batches after a warm-up, scaled to an
epoch), and its training step at 1, 2, 4, ... threads up to the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

KERAS_BACKENDS = ("jax", "torch", "tensorflow")
EPOCH = 60000


def mnist():
    import numnet

    (x_train, y_train), (x_test, y_test) = numnet.data.load_mnist()
    samples = int(os.environ.get("GPU_BENCH_SAMPLES", len(x_train)))  # a quick look on a CPU: fewer
    x_train, y_train = x_train[:samples], y_train[:samples]
    return (numnet.data.to_model_input(x_train), y_train), (numnet.data.to_model_input(x_test), y_test)


def latency_ms(model, image, calls: int = 200) -> float:
    for _ in range(20):
        model.predict(image)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model.predict(image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def keras_child(backend: str, epochs: int) -> dict:
    import numnet

    (x_train, y_train), (x_test, y_test) = mnist()
    cnn = numnet.build(numnet.specs.cnn(), backend=backend, seed=0)
    history = cnn.fit(x_train, y_train, epochs=epochs, batch_size=1024, verbose=0)
    seconds = history["seconds"]
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    result = {
        "device": cnn.device or "CPU",
        "cnn_epoch_seconds": steady,
        "cnn_epoch_seconds_range": [min(seconds[1:] or seconds), max(seconds[1:] or seconds)],
        "cnn_first_epoch_extra_seconds": seconds[0] - steady,
        "cnn_train_seconds": sum(seconds),
        "cnn_epochs": epochs,
        "cnn_test_accuracy": cnn.evaluate(x_test, y_test)["accuracy"],
        "cnn_one_image_ms": latency_ms(cnn, x_test[:1]),
    }
    mlp = numnet.build(numnet.specs.mlp(), backend=backend, seed=0)
    mlp_seconds = mlp.fit(x_train, y_train, epochs=3, batch_size=100, validation_split=0.2, verbose=0)["seconds"]
    result.update(
        mlp_epoch_seconds=statistics.median(mlp_seconds[1:]),
        mlp_first_epoch_seconds=mlp_seconds[0],
        mlp_test_accuracy=mlp.evaluate(x_test, y_test)["accuracy"],
        mlp_one_image_ms=latency_ms(mlp, x_test[:1]),
    )
    return result


def numba_child(batches: int) -> dict:
    import numba

    import numnet
    from numnet.machine import core_count
    from numnet.threads import use_threads

    (x_train, y_train), (x_test, _) = mnist()
    model = numnet.build(numnet.specs.cnn(), backend="numba", seed=0)
    x, y = x_train[: batches * 1024], y_train[: batches * 1024]
    model.fit(x[:2048], y[:2048], epochs=1, batch_size=1024, verbose=0)  # compile (or load the cache)
    start = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=1024, verbose=0)
    epoch = (time.perf_counter() - start) * EPOCH / len(x)
    threads, scaling = 1, {}
    while threads <= min(core_count(), numba.config.NUMBA_NUM_THREADS):  # SMT siblings included
        use_threads(threads, numba_pool=True)
        model.train_step(x[:1024], y[:1024])
        times = []
        for i in range(3):
            batch = slice(i * 1024, (i + 1) * 1024)
            begin = time.perf_counter()
            model.train_step(x[batch], y[batch])
            times.append(time.perf_counter() - begin)
        scaling[threads] = statistics.median(times)
        threads *= 2
    use_threads(numba_pool=True)  # back to the default: one per physical core
    return {
        "device": "CPU",
        "cnn_epoch_seconds": epoch,
        "cnn_step_seconds_by_threads": scaling,
        "cnn_one_image_ms": latency_ms(model, x_test[:1]),
        "numba_threads": numba.get_num_threads(),
    }


def table(results: dict, info: dict, epochs: int) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores" + (f", GPU {info['gpu']}" if info["gpu"] else ", no GPU"),
        "",
        f"| contender | device | CNN s/epoch | CNN 1st-epoch extra s | CNN test acc ({epochs} ep) | MLP s/epoch "
        "| one image ms (CNN / MLP) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        if "error" in row:
            lines.append(f"| {name} | {row['error'].splitlines()[-1][:80]} | | | | | |")
            continue
        mlp = f"{row['mlp_epoch_seconds']:.2f}" if "mlp_epoch_seconds" in row else ""
        accuracy = f"{100 * row['cnn_test_accuracy']:.2f} %" if "cnn_test_accuracy" in row else ""
        extra = f"{row['cnn_first_epoch_extra_seconds']:.1f}" if "cnn_first_epoch_extra_seconds" in row else ""
        images = f"{row['cnn_one_image_ms']:.2f}" + (
            f" / {row['mlp_one_image_ms']:.2f}" if "mlp_one_image_ms" in row else ""
        )
        lines.append(f"| {name} | {row['device']} | {row['cnn_epoch_seconds']:.2f} | {extra} | {accuracy} | {mlp} "
                     f"| {images} |")  # fmt: skip
    scaling = results.get("numnet-numba (CPU)", {}).get("cnn_step_seconds_by_threads")
    if scaling:
        one = scaling.get("1") or scaling.get(1)
        lines += ["", "numnet-numba seed-CNN training step (batch 1024) by threads:", "",
                  "| threads | s/step | speed-up | parallel efficiency |", "|---:|---:|---:|---:|"]  # fmt: skip
        for threads, seconds in scaling.items():
            lines.append(f"| {threads} | {seconds:.3f} | {one / seconds:.2f} | {one / seconds / int(threads):.0%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "SIZE"))
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batches", type=int, default=10, help="numnet-numba CPU: batches timed")
    parser.add_argument("--backends", default=",".join(KERAS_BACKENDS))
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results")
    args = parser.parse_args()
    if args.child:
        backend, size = args.child
        result = numba_child(int(size)) if backend == "numba" else keras_child(backend, int(size))
        print(json.dumps(result))
        return

    import importlib.util

    from common import RESULTS, machine, run_child

    info = machine()
    print(f"machine: {info}", flush=True)
    results, started = {}, time.perf_counter()
    for backend in args.backends.split(","):
        framework = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
        if importlib.util.find_spec(framework) is None or importlib.util.find_spec("keras") is None:
            print(f"-- keras-{backend}: not installed here", flush=True)
            continue
        print(f"-- keras-{backend}: seed CNN x {args.epochs} epochs, seed MLP x 3, one-image latency", flush=True)
        results[f"keras-{backend}"] = run_child([__file__, "--child", backend, str(args.epochs)])
        print(f"   {json.dumps(results[f'keras-{backend}'])}  [{time.perf_counter() - started:.0f} s]", flush=True)
    print(f"-- numnet-numba on the CPU: {args.batches} CNN batches, threads scaling", flush=True)
    results["numnet-numba (CPU)"] = run_child([__file__, "--child", "numba", str(args.batches)])
    print(f"   {json.dumps(results['numnet-numba (CPU)'])}  [{time.perf_counter() - started:.0f} s]", flush=True)
    markdown = table(results, info, args.epochs)
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"machine": info, "epochs": args.epochs, "results": results}, indent=2))
    (out / "gpu.md").write_text(markdown)
    print(markdown)
    print(f"total {time.perf_counter() - started:.0f} s; wrote {out / 'gpu.json'} and gpu.md")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()

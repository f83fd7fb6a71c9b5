"""Inference latency: one image to probabilities, and a 10,000-image batch.

    python benchmarks/infer_latency.py

For both seed specs: numnet-numba (and numnet-numpy) against Keras' `model.predict` and
`model(x, training=False)`. "One image" starts from a uint8 28x28 MNIST digit and includes the
preprocessing into model input. Each figure is the median of many calls after warm-up.
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


def median_seconds(call, repeats: int) -> float:
    call()
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child(framework: str, model_name: str) -> dict:
    import numnet

    (_, _), (x_test, _) = numnet.data.load_mnist()
    digit = x_test[0]
    batch = numnet.data.to_model_input(x_test)
    spec = numnet.specs.resolve(model_name)
    if framework == "tensorflow":
        model = numnet.build(spec, backend="tensorflow").keras_model
        return {
            "keras predict, 1 image": median_seconds(
                lambda: model.predict(numnet.data.to_model_input(digit), verbose=0), 50
            ),
            "keras model(x), 1 image": median_seconds(
                lambda: model(numnet.data.to_model_input(digit), training=False).numpy(), 200
            ),
            "keras predict, 10000 images": median_seconds(lambda: model.predict(batch, batch_size=1000, verbose=0), 5),
        }
    model = numnet.build(spec, backend=framework)
    return {
        f"numnet-{framework}, 1 image": median_seconds(lambda: model.predict(numnet.data.to_model_input(digit)), 1000),
        f"numnet-{framework}, 10000 images": median_seconds(lambda: model.predict(batch, batch_size=1000), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "MODEL"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    from common import machine, run_child, save

    info = machine()
    results = {}
    for model_name in ("cnn", "mlp"):
        results[model_name] = {}
        for framework in ("numba", "numpy", "tensorflow"):
            env = {"CUDA_VISIBLE_DEVICES": ""} if framework == "tensorflow" else {}
            measured = run_child([__file__, "--child", framework, model_name], env)
            results[model_name].update(measured)
            print(model_name, framework, measured, flush=True)
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores (TensorFlow on the CPU).",
        "",
        "| model | path | median time |",
        "|---|---|---:|",
    ]
    for model_name, rows in results.items():
        for label, seconds in rows.items():
            if label == "error":
                lines.append(f"| {model_name} | failed: {seconds[:80]} | |")
                continue
            shown = f"{seconds * 1000:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"
            lines.append(f"| {model_name} | {label} | {shown} |")
    save("infer_latency", {"machine": info, "results": results}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()

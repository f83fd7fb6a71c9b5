"""Where a training step's time goes, op by op: `python benchmarks/profile_step.py [--backend numba] [--model cnn]`.

Wraps every op's forward and backward (and the optimizer step) with a timer and reports the mean
over a few steps after warm-up, on a real MNIST batch at the seed's batch size.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numnet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba", choices=("numpy", "numba"))
    parser.add_argument("--model", default="cnn", choices=("mlp", "cnn", "best"))
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    batch = {"cnn": 1024, "mlp": 100, "best": numnet.specs.BEST_BATCH}[args.model]
    (x_train, y_train), _ = numnet.data.load_mnist()
    x, y = numnet.data.to_model_input(x_train[:batch]), y_train[:batch]
    model = numnet.build(numnet.specs.resolve(args.model), backend=args.backend)
    for _ in range(3):
        model.train_step(x, y)

    seconds: dict[tuple[int, str, str], float] = defaultdict(float)

    def timed(key, call):
        def wrapper(*a, **k):
            start = time.perf_counter()
            result = call(*a, **k)
            seconds[key] += time.perf_counter() - start
            return result

        return wrapper

    for i, op in enumerate(model.ops):
        for kind in ("forward", "backward"):
            setattr(op, kind, timed((i, op.type, kind), getattr(op, kind)))
    model.optimizer.step = timed((len(model.ops), "optimizer", "step"), model.optimizer.step)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_step(x, y)
    step = (time.perf_counter() - start) / args.steps
    print(f"{args.model} on {args.backend}, batch {batch}: {step * 1000:.1f} ms per step\n")
    print("| # | op | pass | ms per step |\n|---:|---|---|---:|")
    for (i, name, kind), total in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| {i} | {name} | {kind} | {total / args.steps * 1000:.1f} |")


if __name__ == "__main__":
    main()

"""What augmentation costs a training step: the seed CNN's step (batch 1024) against the same batch
through the best recipe's augmentation layers (`numnet.specs.augmentation()`), on the numba engine.

    python benchmarks/augment_cost.py [--rounds 10]

The two are timed alternately on real MNIST batches, so a busy neighbour slows both alike; the
ratio of their medians is also the ratio per epoch (both scale with the number of batches).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, save  # noqa: E402

import numnet  # noqa: E402

AUGMENTATION = numnet.specs.augmentation()
BATCH = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    (x_train, y_train), _ = numnet.data.load_mnist()
    x, y = numnet.data.to_model_input(x_train[: BATCH * 4]), y_train[: BATCH * 4]
    spec = numnet.specs.cnn()
    model = numnet.build({**spec, "layers": [*AUGMENTATION, *spec["layers"]]}, backend="numba")
    augment, network = model.layers[: len(AUGMENTATION)], numnet.build(spec, backend="numba")

    def augment_batch(batch):
        for layer in augment:
            batch = layer.forward(batch, training=True)
        return batch

    step_seconds, augment_seconds = [], []
    for round_ in range(args.rounds + 1):  # round 0 compiles and warms up
        batch = slice((round_ % 4) * BATCH, (round_ % 4 + 1) * BATCH)
        start = time.perf_counter()
        network.train_step(x[batch], y[batch])
        middle = time.perf_counter()
        augment_batch(x[batch])
        end = time.perf_counter()
        if round_:
            step_seconds.append(middle - start)
            augment_seconds.append(end - middle)
    ratios = [a / s for a, s in zip(augment_seconds, step_seconds)]
    result = {
        "machine": machine(),
        "batch": BATCH,
        "augmentation": AUGMENTATION,
        "step_seconds": step_seconds,
        "augment_seconds": augment_seconds,
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }
    layers = " + ".join(layer["type"] for layer in AUGMENTATION)
    markdown = (
        f"# Augmentation cost ({result['machine']['cpu']}, {result['machine']['cores']} cores)\n\n"
        f"`python benchmarks/augment_cost.py --rounds {args.rounds}`\n\n"
        f"| per batch of {BATCH} | median | range |\n|---|---:|---:|\n"
        f"| seed-CNN training step | {statistics.median(step_seconds):.3f} s | "
        f"{min(step_seconds):.3f}-{max(step_seconds):.3f} s |\n"
        f"| {layers} | {statistics.median(augment_seconds) * 1000:.1f} ms | "
        f"{min(augment_seconds) * 1000:.1f}-{max(augment_seconds) * 1000:.1f} ms |\n"
        f"| augmentation / step | **{result['ratio_median']:.1%}** | "
        f"{result['ratio_range'][0]:.1%}-{result['ratio_range'][1]:.1%} |\n"
    )
    save("augment_cost", result, markdown)
    return 0 if np.isfinite(result["ratio_median"]) else 1


if __name__ == "__main__":
    sys.exit(main())

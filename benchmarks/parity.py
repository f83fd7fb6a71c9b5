"""Parity report: numnet against Keras, layer by layer, and both training curves on one figure.

    python benchmarks/parity.py [--model mlp|cnn] [--epochs N]

1. The same weights in a Keras model and a numnet model (numpy backend, whose layers keep every
   intermediate output): the largest difference of each layer's output on real MNIST, in float32.
2. The gradient of one batch, per parameter, in float64 (where only a bug could differ).
3. numnet-numba and TensorFlow trained from the same spec and seed: loss and accuracy per epoch,
   plotted together (benchmarks/results/parity_<model>.png).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def layer_outputs_numnet(model, x):
    """Output of each spec layer (after its activation, as Keras reports it)."""
    outputs, h = [], x
    ops = iter(model.ops)
    for layer in model.layers:
        h = next(ops).forward(h, training=False)
        if layer.type in ("Dense", "Conv2D") and layer.config.get("activation") not in (None, "linear"):
            h = next(ops).forward(h, training=False)
        outputs.append(h)
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=("mlp", "cnn"))
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    import keras
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from common import RESULTS, save

    import numnet
    from numnet.keras.bridge import keras_model

    spec = numnet.specs.resolve(args.model)
    (x_train, y_train), (x_test, y_test) = numnet.data.load_mnist()
    x_train, x_test = numnet.data.to_model_input(x_train), numnet.data.to_model_input(x_test)

    reference = keras_model(spec, seed=0)
    model = numnet.build(spec, backend="numpy")
    model.set_weights(reference.get_weights())
    probe = keras.Model(reference.inputs, [layer.output for layer in reference.layers])
    theirs = probe(x_test[:500], training=False)
    lines = [f"## {args.model}: layer outputs, same weights, 500 test images, float32", "",
             "| layer | output shape | max abs difference |", "|---|---|---:|"]  # fmt: skip
    for name, ours, their in zip(model.layer_names, layer_outputs_numnet(model, x_test[:500]), theirs):
        lines.append(f"| {name} | {tuple(ours.shape[1:])} | {np.abs(ours - np.asarray(their)).max():.2e} |")

    import tensorflow as tf

    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        reference64 = keras_model(
            {**spec, "layers": [layer for layer in spec["layers"] if layer["type"] != "Dropout"]}, seed=0
        )
        model64 = numnet.build({**spec, "layers": [layer for layer in spec["layers"] if layer["type"] != "Dropout"]},
                               dtype=np.float64)  # fmt: skip
        model64.set_weights(reference64.get_weights())
        xb, yb = x_train[:128].astype(np.float64), y_train[:128]
        with tf.GradientTape() as tape:
            loss = keras.losses.SparseCategoricalCrossentropy()(yb, reference64(xb, training=True))
        keras_grads = [g.numpy() for g in tape.gradient(loss, reference64.trainable_variables)]
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")
    _, gradients = model64.loss_and_gradients(xb, yb)
    names = [f"{n}.{p}" for n, layer in zip(model64.layer_names, model64.layers) for p in layer.params]
    lines += ["", "## gradients of one batch of 128, float64 (dropout off)", "",
              "| parameter | max relative difference |", "|---|---:|"]  # fmt: skip
    for name, ours, their in zip(names, gradients, keras_grads):
        lines.append(f"| {name} | {np.abs(ours - their).max() / max(np.abs(their).max(), 1e-300):.2e} |")

    histories = {}
    for backend in ("numba", "tensorflow"):
        trained = numnet.build(spec, backend=backend, seed=0)
        batch = 100 if args.model == "mlp" else 1024
        histories[backend] = trained.fit(x_train, y_train, epochs=args.epochs, batch_size=batch,
                                         validation_data=(x_test, y_test), verbose=0)  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = range(1, args.epochs + 1)
    for backend, history in histories.items():
        for ax, key in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, history[key], marker="o", label=f"{backend} train")
            ax.plot(epochs, history[f"val_{key}"], marker="s", linestyle="--", label=f"{backend} test")
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"seed {args.model}: numnet-numba vs TensorFlow, same spec and seed")
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    figure = RESULTS / f"parity_{args.model}.png"
    fig.savefig(figure, dpi=100)
    lines += ["", f"## training, {args.epochs} epochs, same spec and seed ({figure.name})", "",
              "| backend | final train loss | final test accuracy |", "|---|---:|---:|"]  # fmt: skip
    for backend, history in histories.items():
        lines.append(f"| {backend} | {history['loss'][-1]:.4f} | {history['val_accuracy'][-1]:.4f} |")
    save(f"parity_{args.model}", {k: v for k, v in histories.items()}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Every layer of the shared list against its Keras twin, forward and backward in float64, on the
Keras backend this process runs (TensorFlow or JAX: Keras runs one per process).

`test_parity.py` runs it in its own process on TensorFlow, and runs this file as a script under
KERAS_BACKEND=jax; the script prints one line per case that disagrees and exits 1 if any does.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from layer_cases import LAYER_CASES, build_layer  # noqa: E402

from numnet.backends import numpy_kernels  # noqa: E402
from numnet.layers import layer_from_config  # noqa: E402

# Keras draws its own masks and transforms: random layers are compared in inference here, and on
# Keras' own draws in test_augmentation.py.
KERAS_CASES = [
    (config, shape, training)
    for config, shape in LAYER_CASES
    for training in (False, True)
    if not (training and layer_from_config(config).random_stream)
]


# Where Keras' answer has float32's precision even for float64 layers, so the comparison is made at
# that precision: on JAX, Keras computes BatchNormalization, the global average and these
# activations in result_type(input, "float32"), which Keras on JAX makes float32; TensorFlow's gelu
# gradient uses float32 constants.
KERAS_AT_FLOAT32 = {("jax", "BatchNormalization"), ("jax", "GlobalAveragePooling2D"), ("jax", "tanh"),
                    ("jax", "leaky_relu"), ("jax", "gelu"), ("tensorflow", "gelu")}  # fmt: skip


def keras_forward_backward(keras, layer, x: np.ndarray, r: np.ndarray, training: bool) -> list[np.ndarray]:
    """y, dL/dx and dL/d(each trainable weight) for L = sum(r * layer(x)), by the running backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x_tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x_tensor)
            y = layer(x_tensor, training=training)
            loss = tf.reduce_sum(r * y)
        grads = tape.gradient(loss, [x_tensor, *layer.trainable_variables])
        return [y.numpy(), *(g.numpy() for g in grads)]
    if backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        frozen = [v.value for v in layer.non_trainable_variables]
        # stateless_call hands its keywords to `call`, which takes `training` only where it matters
        mode = {"training": training} if "training" in inspect.signature(layer.call).parameters else {}

        def loss(weights, inputs):
            y, _ = layer.stateless_call(weights, frozen, inputs, **mode)
            return jax.numpy.sum(r * y), y

        (_, y), (dweights, dx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(trainable, x)
        return [np.asarray(y), np.asarray(dx), *(np.asarray(g) for g in dweights)]
    raise NotImplementedError(f"no gradient for Keras on {backend}")


def compare(keras, config: dict, input_shape: tuple, training: bool) -> None:
    """Raises AssertionError naming what differs between numnet's layer and its Keras twin."""
    from numnet.keras.layers import layer_class

    rng = np.random.default_rng(1234)
    layer = build_layer(config, input_shape, numpy_kernels, rng)
    twin = layer_class(layer.keras_class)(**layer.to_keras(seed=0), dtype="float64")
    twin.build((None, *input_shape[1:]))
    twin.set_weights([np.asarray(w) for w in layer.weights()])
    x = rng.standard_normal(input_shape)
    ours = layer.forward(x, training)
    r = rng.standard_normal(ours.shape)
    dx = layer.backward(r)
    theirs = keras_forward_backward(keras, twin, x, r, training)
    rtol, atol = (1e-9, 1e-12)
    if (keras.backend.backend(), config.get("activation", config["type"])) in KERAS_AT_FLOAT32:
        rtol, atol = (1e-5, 1e-6)
    np.testing.assert_allclose(ours, theirs[0], rtol=rtol / 10, atol=atol, err_msg="forward")
    np.testing.assert_allclose(dx, theirs[1], rtol=rtol, atol=atol, err_msg="input gradient")
    if training:
        for name, grad in zip(layer.params, theirs[2:]):
            np.testing.assert_allclose(layer.grads[name], grad, rtol=rtol, atol=atol, err_msg=name)


def main() -> int:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    failures = 0
    for config, shape, training in KERAS_CASES:
        try:
            compare(keras, config, shape, training)
        except AssertionError as error:
            failures += 1
            print(f"{config} {'training' if training else 'inference'}: {error}".replace("\n", " "))
    print(
        f"{len(KERAS_CASES) - failures} of {len(KERAS_CASES)} cases agree on Keras' {keras.backend.backend()} backend"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Augmentation layers: the warp agrees with Keras' own, the layers with Keras' layers on the same
draws, inference is the identity, a seed repeats its batches, and every backend trains them."""

from __future__ import annotations

import os
import re

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradcheck import check_layer  # noqa: E402

import numnet  # noqa: E402
from numnet.augmentation import rotation_transforms, translation_transforms, zoom_transforms  # noqa: E402
from numnet.backends import numba_kernels, numpy_kernels  # noqa: E402
from numnet.errors import SpecError  # noqa: E402
from numnet.layers import layer_from_config  # noqa: E402

keras = pytest.importorskip("keras")


def _keras_numpy_image():
    """Keras' NumPy-backend image ops (the reference for every fill mode), imported beside the
    running backend: importing the submodule rebinds `keras.src.backend.numpy`, so restore it."""
    import keras.src.backend as running

    ops = running.numpy
    from keras.src.backend.numpy import image

    running.numpy = ops
    return image


keras_numpy_image = _keras_numpy_image()

AUGMENTATION = [
    {"type": "RandomRotation", "factor": 0.1, "fill_mode": "constant"},
    {"type": "RandomTranslation", "height_factor": 0.2, "width_factor": [-0.1, 0.3], "fill_mode": "constant"},
    {"type": "RandomZoom", "height_factor": [-0.3, 0.2], "fill_mode": "constant"},
    {"type": "RandomZoom", "height_factor": 0.2, "width_factor": 0.1, "fill_mode": "constant"},
]

MILD = [  # what a digit drawn by hand varies by
    {"type": "RandomRotation", "factor": 0.03, "fill_mode": "constant"},
    {"type": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1, "fill_mode": "constant"},
    {"type": "RandomZoom", "height_factor": 0.1, "fill_mode": "constant"},
]


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
def test_the_warp_is_keras_affine_transform(fill_mode, interpolation, rng):
    """Against Keras' NumPy implementation (scipy's map_coordinates on a padded image), every mode."""
    images = rng.standard_normal((4, 13, 11, 2)).astype(np.float32)
    transforms = np.column_stack([rng.normal(1, 0.3, 4), rng.normal(0, 0.3, 4), rng.normal(0, 3, 4),
                                  rng.normal(0, 0.3, 4), rng.normal(1, 0.3, 4), rng.normal(0, 3, 4)])  # fmt: skip
    keras_transforms = np.concatenate([transforms, np.zeros((4, 2))], axis=1).astype(np.float32)
    expected = keras_numpy_image.affine_transform(images, keras_transforms, interpolation, fill_mode, 0.5)
    ours = numpy_kernels.affine_warp(images, keras_transforms[:, :6], fill_mode, 0.5, interpolation)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def keras_draws(layer, images):
    """One random draw of a real Keras layer, as (its output, the transforms numnet computes from it)."""
    transformation = layer.get_random_transformation(images, training=True)
    output = keras.ops.convert_to_numpy(layer.transform_images(images, transformation, training=True))
    t = {key: keras.ops.convert_to_numpy(value) for key, value in transformation.items() if key != "input_shape"}
    h, w = images.shape[1:3]
    if isinstance(layer, keras.layers.RandomRotation):
        return output, rotation_transforms(t["angle"], h, w)
    if isinstance(layer, keras.layers.RandomTranslation):
        return output, translation_transforms(t["translations"][:, 0], t["translations"][:, 1])
    return output, zoom_transforms(t["width_zoom"][:, 0], t["height_zoom"][:, 0], h, w)


@pytest.mark.parametrize("config", AUGMENTATION, ids=lambda c: c["type"] + str(len(c)))
def test_each_layer_warps_as_its_keras_layer_on_the_same_draw(config, mnist_inputs):
    """MNIST digits through the real Keras layer (TensorFlow) and through numnet's, same parameters."""
    (x_train, _), _ = mnist_inputs
    images = x_train[:64]
    ours = layer_from_config(config)
    theirs = getattr(keras.layers, ours.keras_class)(**ours.to_keras(seed=3))
    expected, transforms = keras_draws(theirs, images)
    c = ours.config
    for kernels in (numpy_kernels, numba_kernels):
        warped = kernels.affine_warp(images, transforms, c["fill_mode"], c["fill_value"], c["interpolation"])
        assert np.abs(warped - expected).max() <= 1e-4, kernels.NAME
    assert np.abs(expected - images).max() > 0.5  # the draw really moved the digits


def augmented_cnn(seed_layers=AUGMENTATION[:3]):
    spec = numnet.specs.cnn()
    return {**spec, "name": "augmented", "layers": [*seed_layers, *spec["layers"]]}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_inference_is_the_identity_and_a_seed_repeats_its_batches(backend, mnist_inputs):
    (x_train, _), (x_test, _) = mnist_inputs
    plain, augmented = numnet.build(numnet.specs.cnn(), backend=backend), numnet.build(augmented_cnn(), backend=backend)
    augmented.set_weights(plain.get_weights())
    np.testing.assert_array_equal(augmented.predict(x_test[:100]), plain.predict(x_test[:100]))
    first = [numnet.build(augmented_cnn(), backend=backend, seed=s).layers[0] for s in (4, 4, 5)]
    batches = [layer.forward(x_train[:32], training=True) for layer in first]
    np.testing.assert_array_equal(batches[0], batches[1])
    assert np.abs(batches[0] - batches[2]).max() > 0.1
    assert first[0].forward(x_train[:32], training=False) is x_train[:32] or np.array_equal(
        first[0].forward(x_train[:32], training=False), x_train[:32]
    )


@pytest.mark.parametrize("config", AUGMENTATION + [
    {"type": "RandomRotation", "factor": 0.2, "fill_mode": "reflect"},
    {"type": "RandomTranslation", "height_factor": 0.3, "width_factor": 0.3, "fill_mode": "wrap",
     "interpolation": "nearest"}], ids=lambda c: c["type"] + str(len(c)))  # fmt: skip
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backward_matches_finite_differences(config, backend, rng):
    layer = layer_from_config(config)
    layer.build(
        (9, 8, 2), np.random.default_rng(0), np.float64, {"numpy": numpy_kernels, "numba": numba_kernels}[backend]
    )
    x = rng.standard_normal((3, 9, 8, 2))

    def same_draw() -> None:
        layer.rng = np.random.default_rng(7)

    check_layer(layer, x, training=True, rng=rng, before_forward=same_draw)


@pytest.mark.parametrize("backend", ["numba", "tensorflow"])
def test_a_network_with_augmentation_trains_on_each_backend(backend, mnist_inputs):
    (x_train, y_train), (x_test, y_test) = mnist_inputs
    spec = augmented_cnn(MILD)
    for layer in spec["layers"]:  # moving statistics that settle within this short run
        if layer["type"] == "BatchNormalization":
            layer["momentum"] = 0.9
    model = numnet.build(spec, backend=backend, seed=1)
    model.fit(x_train[:3000], y_train[:3000], epochs=2, batch_size=128, verbose=0)
    assert model.evaluate(x_test[:1000], y_test[:1000])["accuracy"] >= 0.80


def test_numba_training_with_augmentation_repeats_for_a_seed(mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    weights = []
    for _ in range(2):
        model = numnet.build(augmented_cnn(), backend="numba", seed=2)
        model.fit(x_train[:512], y_train[:512], epochs=1, batch_size=128, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_keras_reads_the_layers_numnet_writes_and_numnet_reads_keras(tmp_path, mnist_inputs):
    (x_train, y_train), (x_test, _) = mnist_inputs
    model = numnet.build(augmented_cnn(AUGMENTATION), seed=1)
    model.fit(x_train[:256], y_train[:256], epochs=1, batch_size=128, verbose=0)
    model.save(tmp_path / "augmented.keras")
    loaded = keras.models.load_model(tmp_path / "augmented.keras")
    names = [layer.__class__.__name__ for layer in loaded.layers[:4]]
    assert names == ["RandomRotation", "RandomTranslation", "RandomZoom", "RandomZoom"]
    assert loaded.layers[1].width_factor == [-0.1, 0.3] and loaded.layers[0].fill_mode == "constant"
    np.testing.assert_allclose(loaded.predict(x_test[:50], verbose=0), model.predict(x_test[:50]), atol=1e-5)
    loaded.save(tmp_path / "by_keras.keras")  # and back: Keras' own file, read by numnet
    again = numnet.load(tmp_path / "by_keras.keras")
    assert [layer["type"] for layer in again.spec["layers"][:4]] == [c["type"] for c in AUGMENTATION]
    assert again.spec["layers"][2]["height_factor"] == [-0.3, 0.2]


def test_tfjs_export_leaves_the_augmentation_out(tmp_path):
    from numnet.tfjs import topology

    config, manifest = topology(augmented_cnn())
    classes = [layer["class_name"] for layer in config["config"]["layers"]]
    assert classes[0] == "Conv2D" and not any(c.startswith("Random") for c in classes)
    assert config["config"]["layers"][0]["config"]["batch_input_shape"] == [None, 28, 28, 1]


@pytest.mark.parametrize(
    ("config", "message"),
    [({"type": "RandomRotation", "factor": 1.5}, "RandomRotation factor must lie in [-1, 1], got 1.5"),
     ({"type": "RandomRotation", "factor": "0.1"}, "factor must be a number or a pair of numbers, got '0.1'"),
     ({"type": "RandomRotation", "factor": [0.1, 0.2, 0.3]}, "a number or a pair of numbers"),
     ({"type": "RandomZoom", "height_factor": -1}, "RandomZoom height_factor must lie in (-1, 1], got -1"),
     ({"type": "RandomTranslation", "height_factor": 0.1}, "width_factor must be a number"),
     ({"type": "RandomRotation", "factor": 0.1, "fill_mode": "mirror"}, "fill_mode must be one of"),
     ({"type": "RandomRotation", "factor": 0.1, "interpolation": "bicubic"}, "interpolation must be one of"),
     ({"type": "RandomRotation", "factor": 0.1, "fill_value": float("nan")}, "fill_value must be a number")],
)  # fmt: skip
def test_bad_augmentation_settings_are_refused_by_name(config, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        numnet.build(augmented_cnn([config]))


def test_augmentation_needs_an_image_input():
    spec = {"input_shape": [784], "layers": [{"type": "RandomRotation", "factor": 0.1},
            {"type": "Dense", "units": 10, "activation": "softmax"}]}  # fmt: skip
    with pytest.raises(SpecError, match=re.escape("RandomRotation needs (height, width, channels) input")):
        numnet.build(spec)

"""Augmentation layers: the warp agrees with Keras' own, the layers with Keras' layers on the same
draws, inference is the identity, a seed repeats its batches, and every backend trains them."""

from __future__ import annotations

import os
import re

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import ENGINE_BACKENDS, ENGINE_KERNELS  # noqa: E402

import numnet  # noqa: E402
from numnet.backends import numpy_kernels  # noqa: E402  (the reference)
from numnet.errors import SpecError  # noqa: E402
from numnet.layers import layer_from_config  # noqa: E402
from numnet.layers.augmentation import (  # noqa: E402
    gaussian_blur_matrix,
    rotation_transforms,
    translation_transforms,
    zoom_transforms,
)

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
    ours = numpy_kernels.warp(images, keras_transforms[:, :6], None, fill_mode, 0.5, interpolation)
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
    for kernels in ENGINE_KERNELS.values():
        warped = kernels.warp(images, transforms, None, c["fill_mode"], c["fill_value"], c["interpolation"])
        assert np.abs(warped - expected).max() <= 1e-4, kernels.NAME
    assert np.abs(expected - images).max() > 0.5  # the draw really moved the digits


STROKES = {"type": "RandomStrokeWidth", "factor": [-0.5, 1.0]}
CONTRAST = {"type": "RandomContrast", "factor": [0.2, 1.0], "value_range": [0, 1]}
ELASTIC = {"type": "RandomElasticTransform", "factor": [0.5, 1.0], "scale": 1.0, "fill_mode": "constant",
           "value_range": [0, 1]}  # fmt: skip


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
def test_a_displaced_warp_is_keras_map_coordinates(fill_mode, interpolation, rng):
    """Any displacement of each pixel, read as Keras' NumPy `map_coordinates` reads it, far outside too."""
    images, displacement = rng.standard_normal((3, 9, 12, 2)), rng.normal(0, 4, (3, 2, 9, 12))
    coords = np.mgrid[0:9, 0:12][None] + displacement
    identity = np.tile([1.0, 0, 0, 0, 1, 0], (3, 1))
    order = {"bilinear": 1, "nearest": 0}[interpolation]
    expected = np.stack([np.stack([keras_numpy_image.map_coordinates(image[..., k], [c[0], c[1]], order,
                                                                      fill_mode, 0.5) for k in range(2)], axis=-1)
                         for image, c in zip(images, coords)])  # fmt: skip
    for kernels in ENGINE_KERNELS.values():
        ours = kernels.warp(images, identity, displacement, fill_mode, 0.5, interpolation)
        np.testing.assert_allclose(ours, expected, atol=1e-6)  # Keras computes in float32


@pytest.mark.parametrize(("shape", "sigma"), [((28, 28), 1.4), ((9, 13), 0.7), ((28, 28), 0.1), ((20, 7), 2.3)])
def test_the_elastic_field_is_keras_gaussian_blur(shape, sigma, rng):
    """The displacement field's blur, as two small matrix products, equals Keras' gaussian_blur
    (its kernel size int(6 sigma) | 1, zero padding)."""
    noise = rng.standard_normal((4, *shape))
    taps = int(6 * sigma) | 1
    expected = keras_numpy_image.gaussian_blur(noise[..., None], (taps, taps), (sigma, sigma), "channels_last")
    ours = gaussian_blur_matrix(shape[0], sigma) @ noise @ gaussian_blur_matrix(shape[1], sigma).T
    np.testing.assert_allclose(ours, expected[..., 0], atol=1e-7)  # Keras builds its kernel in float32


def test_elastic_transform_draws_and_bends_as_keras_does(rng):
    """numnet's draw, rebuilt step by step from Keras' own pieces: the probability per image, one
    scale per batch, alpha and sigma from Keras' get_elastic_transform_params, the noise blurred by
    Keras' gaussian_blur, each image read by Keras' map_coordinates, then the clip to value_range."""
    config = {**ELASTIC, "factor": 0.7, "scale": [0.5, 1.0], "value_range": [0.0, 0.8]}
    layer = layer_from_config(config)
    layer.build((28, 20, 1), np.random.default_rng(0), np.float64, numpy_kernels)
    theirs = keras.layers.RandomElasticTransform(**layer.to_keras(seed=0))
    ranges = ((0, 0.7), (0.5, 1.0))
    assert (layer.factor_range, layer.scale_range) == (tuple(theirs.factor), tuple(theirs.scale)) == ranges
    images = rng.random((64, 28, 20, 1))
    layer.rng = np.random.default_rng(11)
    ours = layer.forward(images, training=True)

    draws = np.random.default_rng(11)
    probability = draws.uniform(0.0, 0.7, 64)
    bent = draws.uniform(0, 1, 64) < probability
    alpha, sigma = theirs.get_elastic_transform_params(28, 20, draws.uniform(0.5, 1.0))
    noise = draws.standard_normal((28, int(bent.sum()), 2, 20)).transpose(1, 2, 0, 3) * sigma  # as numnet lays it
    taps = int(6 * sigma) | 1
    field = keras_numpy_image.gaussian_blur(noise.reshape(-1, 28, 20, 1), (taps, taps), (sigma, sigma),
                                            "channels_last").reshape(-1, 2, 28, 20)  # fmt: skip
    rows, cols = np.mgrid[0:28, 0:20]
    expected = images.copy()
    for image, (dy, dx) in zip(np.flatnonzero(bent), field):
        expected[image, ..., 0] = keras_numpy_image.map_coordinates(
            images[image, ..., 0], [rows + alpha * dy, cols + alpha * dx], 1, "constant", 0.0
        )
    expected = np.clip(expected, 0.0, 0.8)
    assert 0.15 < bent.mean() < 0.6  # p ~ U(0, 0.7): about 35 % of images bent
    np.testing.assert_allclose(ours, expected, atol=1e-6)  # Keras' map_coordinates computes in float32
    assert np.abs(ours[bent] - np.clip(images[bent], 0, 0.8)).max() > 0.3  # the bent digits really moved


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
def test_keras_twin_of_the_elastic_transform_bends_as_numnet_does(fill_mode, interpolation, rng):
    """numnet's Keras backend trains with its own RandomElasticTransform (Keras' own bends every
    image like the first in model.fit on TensorFlow): its blur and its reading agree with numnet's."""
    from numnet.keras import layers as numnet_keras

    twin = numnet_keras.RandomElasticTransform(fill_mode=fill_mode, fill_value=0.5, dtype="float64")
    noise = rng.standard_normal((3, 9, 12, 2))
    for sigma in (0.3, 0.45, 0.9):  # (the most for 9 x 12 at scale 1 is 0.45; 0.9 needs more taps)
        expected = gaussian_blur_matrix(9, sigma) @ noise.transpose(0, 3, 1, 2) @ gaussian_blur_matrix(12, sigma).T
        blurred = keras.ops.convert_to_numpy(twin.blur(keras.ops.convert_to_tensor(noise), sigma, int(6 * 0.9) | 1))
        np.testing.assert_allclose(blurred, expected.transpose(0, 2, 3, 1), atol=1e-12)
    images, displacement = rng.standard_normal((3, 9, 12, 2)), rng.normal(0, 4, (3, 9, 12, 2))
    bent = twin.bend(keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(displacement), interpolation)
    identity = np.tile([1.0, 0, 0, 0, 1, 0], (3, 1))
    expected = numpy_kernels.warp(images, identity, displacement.transpose(0, 3, 1, 2), fill_mode, 0.5, interpolation)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bent), expected, atol=1e-12)


def test_keras_twin_bends_each_image_of_a_compiled_batch_by_its_own_field(mnist_inputs):
    import tensorflow as tf

    from numnet.keras import layers as numnet_keras

    (x_train, _), _ = mnist_inputs
    images = x_train[:16]
    for layer in (keras.layers.RandomElasticTransform, numnet_keras.RandomElasticTransform):
        elastic = layer(factor=[1.0, 1.0], scale=[0.3, 0.3], fill_mode="constant", value_range=(0, 1), seed=1)
        unknown_batch = [tf.TensorSpec((None, 28, 28, 1))]
        compiled = tf.function(lambda x, e=elastic: e(x, training=True), input_signature=unknown_batch)
        bent = compiled(images).numpy()
        distance = ((bent[:, None] - images[None]) ** 2).sum(axis=(2, 3, 4))  # bent image i to input j
        own = (distance.argmin(axis=1) == np.arange(16)).mean()
        if layer is keras.layers.RandomElasticTransform:
            if keras.__version__.startswith("3.15."):  # the version the README names
                assert own < 0.5  # its bug: most images became the first one, bent
        else:
            assert own == 1.0 and np.abs(bent - images).max() > 0.3


def augmented_cnn(seed_layers=(*AUGMENTATION[:3], STROKES, CONTRAST, ELASTIC)):
    spec = numnet.specs.cnn()
    return {**spec, "name": "augmented", "layers": [*seed_layers, *spec["layers"]]}


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
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


def test_stroke_width_is_grey_scale_dilation_or_erosion(rng):
    """A full amount is SciPy's 3x3 grey-scale dilation (thicker) or erosion (thinner); a part of one
    moves each pixel that share of the way."""
    from scipy.ndimage import grey_dilation, grey_erosion

    images = rng.random((4, 12, 10, 1)).astype(np.float32)
    dilated = np.stack([grey_dilation(i[..., 0], size=3, mode="nearest") for i in images])[..., None]
    eroded = np.stack([grey_erosion(i[..., 0], size=3, mode="nearest") for i in images])[..., None]
    for kernels in ENGINE_KERNELS.values():
        y, _ = kernels.stroke_width(images, np.array([1.0, -1.0, 0.25, -0.5]))
        np.testing.assert_allclose(y[:2], np.concatenate([dilated[:1], eroded[1:2]]), atol=1e-7)
        np.testing.assert_allclose(y[2], images[2] + 0.25 * (dilated[2] - images[2]), atol=1e-6)
        np.testing.assert_allclose(y[3], images[3] + 0.5 * (eroded[3] - images[3]), atol=1e-6)


def test_stroke_width_in_keras_computes_what_numnet_computes(mnist_inputs):
    """Keras has no such layer: numnet.keras.layers gives it one, built from Keras ops."""
    from numnet.keras import layers as numnet_keras

    (x_train, _), _ = mnist_inputs
    images, amounts = x_train[:32], np.linspace(-1, 1, 32)
    theirs = numnet_keras.RandomStrokeWidth(factor=[-0.5, 1.0], seed=3)
    expected = keras.ops.convert_to_numpy(theirs.apply_amounts(images, amounts.reshape(32, 1, 1, 1).astype("float32")))
    for kernels in ENGINE_KERNELS.values():
        np.testing.assert_allclose(kernels.stroke_width(images, amounts)[0], expected, atol=1e-6, err_msg=kernels.NAME)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(theirs(images, training=False)), images)
    drawn = keras.ops.convert_to_numpy(theirs(images, training=True))
    assert np.abs(drawn - images).max() > 0.5  # training changes the strokes


def test_contrast_is_keras_random_contrast_forward_and_backward(rng):
    """On the same factors, against the real Keras layer and TensorFlow's gradient (clipped values too)."""
    import tensorflow as tf

    images, factors = rng.random((4, 9, 8, 2)) * 1.2 - 0.1, np.array([1.0, 1.7, 0.5, 2.0])
    weights = rng.standard_normal(images.shape)
    theirs = keras.layers.RandomContrast(factor=[0.5, 1.0], value_range=[0, 1], dtype="float64")
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        expected = theirs.transform_images(x, {"contrast_factor": tf.constant(factors.reshape(4, 1, 1, 1))})
        loss = tf.reduce_sum(weights * expected)
    gradient = tape.gradient(loss, x).numpy()
    for kernels in ENGINE_KERNELS.values():
        ours, inside = kernels.contrast(images, factors, 0, 1)
        assert 0 < inside.mean() < 1
        np.testing.assert_allclose(ours, expected.numpy(), atol=1e-12)
        np.testing.assert_allclose(kernels.contrast_backward(weights, factors, inside), gradient, atol=1e-12)


def test_contrast_draws_its_factors_as_keras_does():
    """A number f means factors in [1, 1 + f]; a pair [a, b] means [1 - a, 1 + b] (Keras' reading)."""
    for factor, expected in ((0.6, (1.0, 1.6)), ([0.2, 0.5], (0.8, 1.5)), ([0.5, 0.2], (0.8, 1.5))):
        ours = layer_from_config({"type": "RandomContrast", "factor": factor, "value_range": [0, 1]})
        theirs = keras.layers.RandomContrast(**ours.to_keras(seed=0))
        assert ours.range == pytest.approx(expected) == (1 - theirs.factor[0], 1 + theirs.factor[1])
        assert type(ours).from_keras(theirs.get_config())["value_range"] in ([0, 1], (0, 1))


def test_stroke_width_gradient_is_keras_gradient(rng):
    import tensorflow as tf

    from numnet.keras import layers as numnet_keras

    images, amounts = rng.standard_normal((4, 9, 8, 2)), np.array([0.7, -0.4, 1.0, -1.0])
    weights = rng.standard_normal(images.shape)
    theirs = numnet_keras.RandomStrokeWidth(factor=1.0, dtype="float64")
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(weights * theirs.apply_amounts(x, tf.constant(amounts.reshape(4, 1, 1, 1))))
    expected = tape.gradient(loss, x).numpy()
    for kernels in ENGINE_KERNELS.values():
        _, taps = kernels.stroke_width(images, amounts)
        np.testing.assert_allclose(kernels.stroke_width_backward(weights, amounts, taps), expected, atol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "tensorflow"])
def test_a_network_with_augmentation_trains_on_each_backend(backend, mnist_inputs):
    (x_train, y_train), (x_test, y_test) = mnist_inputs
    spec = augmented_cnn([*MILD, STROKES, CONTRAST, ELASTIC])
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


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_reads_the_stroke_width_layer_numnet_writes(tmp_path, mnist_inputs, suffix):
    """Keras reads numnet's own layer once numnet.keras.layers has registered it, in either format."""

    (_, _), (x_test, _) = mnist_inputs
    model = numnet.build(augmented_cnn([{"type": "RandomStrokeWidth", "factor": 0.4}, CONTRAST, *MILD]), seed=1)
    model.save(tmp_path / f"strokes{suffix}")
    loaded = keras.models.load_model(tmp_path / f"strokes{suffix}")
    assert type(loaded.layers[0]).__name__ == "RandomStrokeWidth" and loaded.layers[0].factor == 0.4
    assert type(loaded.layers[1]).__name__ == "RandomContrast" and loaded.layers[1].factor == (0.2, 1.0)
    np.testing.assert_allclose(loaded.predict(x_test[:50], verbose=0), model.predict(x_test[:50]), atol=1e-5)
    assert numnet.load(tmp_path / f"strokes{suffix}").spec["layers"][0] == {"type": "RandomStrokeWidth", "factor": 0.4}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_reads_the_elastic_transform_numnet_writes_and_back(tmp_path, mnist_inputs, suffix):
    (_, _), (x_test, _) = mnist_inputs
    model = numnet.build(augmented_cnn([ELASTIC, *MILD]), seed=1)
    model.save(tmp_path / f"elastic{suffix}")
    loaded = keras.models.load_model(tmp_path / f"elastic{suffix}")
    layer = loaded.layers[0]
    assert type(layer) is keras.layers.RandomElasticTransform and tuple(layer.factor) == (0.5, 1.0)
    assert (tuple(layer.scale), tuple(layer.value_range), layer.fill_mode) == ((0.0, 1.0), (0, 1), "constant")
    np.testing.assert_allclose(loaded.predict(x_test[:50], verbose=0), model.predict(x_test[:50]), atol=1e-5)
    again = numnet.load(tmp_path / f"elastic{suffix}").spec["layers"][0]
    assert layer_from_config(again).factor_range == (0.5, 1.0) and layer_from_config(again).scale_range == (0, 1)


def test_tfjs_export_leaves_the_augmentation_out(tmp_path):
    from numnet.formats.tfjs import topology
    from numnet.layers import check_spec

    config, manifest = topology(*check_spec(augmented_cnn()))
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
     ({"type": "RandomRotation", "factor": 0.1, "fill_value": float("nan")}, "fill_value must be a number"),
     ({"type": "RandomStrokeWidth", "factor": 2}, "RandomStrokeWidth factor must lie in [-1, 1], got 2"),
     ({"type": "RandomStrokeWidth"}, "RandomStrokeWidth factor must be a number or a pair of numbers, got None"),
     ({"type": "RandomContrast", "factor": 1.5}, "RandomContrast factor must be a number or a pair of numbers in [0"),
     ({"type": "RandomContrast", "factor": 0.5, "value_range": [1, 0]}, "value_range must be [low, high] with low <"),
     ({"type": "RandomContrast", "factor": 0.5, "value_range": "0-1"}, "value_range must be [low, high]"),
     ({"type": "RandomContrast", "factor": 0.5, "value_range": None}, "value_range must be [low, high]"),
     ({**ELASTIC, "scale": 1.5}, "RandomElasticTransform scale must be a number or a pair of numbers in [0, 1]"),
     ({**ELASTIC, "factor": [-0.1, 0.5]}, "RandomElasticTransform factor must be a number or a pair of numbers in"),
     ({**ELASTIC, "fill_mode": "mirror"}, "RandomElasticTransform fill_mode must be one of"),
     ({**ELASTIC, "value_range": [1, 1]}, "RandomElasticTransform value_range must be [low, high] with low < high")],
)  # fmt: skip
def test_bad_augmentation_settings_are_refused_by_name(config, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        numnet.build(augmented_cnn([config]))


def test_augmentation_needs_an_image_input():
    spec = {"input_shape": [784], "layers": [{"type": "RandomRotation", "factor": 0.1},
            {"type": "Dense", "units": 10, "activation": "softmax"}]}  # fmt: skip
    with pytest.raises(SpecError, match=re.escape("RandomRotation needs (height, width, channels) input")):
        numnet.build(spec)


@pytest.mark.parametrize("module", ["numnet.keras.layers", "numnet.keras_layers"])
def test_plain_keras_reads_a_file_with_numnet_layers_by_itself(tmp_path, module):
    """Keras finds numnet's layers by their registered name once `numnet.keras.layers` is imported, in a
    fresh process with nothing else of numnet: files naming today's module, and files naming the one
    they lived in before (numnet.keras_layers)."""
    import json
    import subprocess
    import sys
    import zipfile

    path = tmp_path / "strokes.keras"
    numnet.build(augmented_cnn([{"type": "RandomStrokeWidth", "factor": 0.4}, *MILD]), seed=1).save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    first = config["config"]["layers"][1]
    assert first["module"] == "numnet.keras.layers" and first["registered_name"] == "numnet>RandomStrokeWidth"
    first["module"] = module
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    code = (
        "import sys, keras, numnet.keras.layers; model = keras.models.load_model(sys.argv[1]); "
        "print(type(model.layers[0]).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"})  # fmt: skip
    assert result.stdout.strip().splitlines()[-1:] == ["RandomStrokeWidth"], result.stderr[-2000:]
    assert numnet.load(path).spec["layers"][0] == {"type": "RandomStrokeWidth", "factor": 0.4}

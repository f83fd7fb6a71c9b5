"""Keras files in and out. The Keras files are made with plain Keras code, the way the seed makes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("CI"):
    import keras
else:
    keras = pytest.importorskip("keras", reason="making Keras files needs TensorFlow: pip install 'numnet[tf]'")

import numnet  # noqa: E402
from numnet.errors import ModelFileError  # noqa: E402

L = keras.layers


def seed_mlp():
    """As the seed wrote it: input_shape on the Flatten, no channel axis."""
    return keras.Sequential([L.Flatten(input_shape=(28, 28)), L.Dense(128, activation="relu"),
                             L.Dense(10, activation="softmax")])  # fmt: skip


def seed_cnn():
    """As the seed wrote it: each convolution block its own nested Sequential."""

    def block(filters):
        return keras.Sequential([L.Conv2D(filters, (3, 3)), L.BatchNormalization(), L.Activation("relu"),
                                 L.MaxPooling2D((2, 2)), L.Dropout(0.1)])  # fmt: skip

    return keras.Sequential([keras.Input((28, 28, 1)), block(64), block(128), L.Flatten(),
                             L.Dense(10, activation="softmax")])  # fmt: skip


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory, mnist_inputs):
    """Both seed networks, trained briefly (so batch-norm statistics are non-trivial), saved both ways."""
    (x_train, y_train), (x_test, _) = mnist_inputs
    folder = tmp_path_factory.mktemp("keras")
    files = {}
    for name, make in (("mlp", seed_mlp), ("cnn", seed_cnn)):
        model = make()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train[:2048], y_train[:2048], epochs=1, batch_size=256, verbose=0)
        expected = model(x_test[:200], training=False).numpy()
        for suffix in (".keras", ".h5"):
            path = folder / f"{name}{suffix}"
            model.save(path)
            files[path.name] = (path, expected)
    return files


@pytest.mark.parametrize("file", ["mlp.keras", "mlp.h5", "cnn.keras", "cnn.h5"])
def test_keras_files_load_without_tensorflow_and_predict_the_same(file, keras_files, mnist_inputs, tmp_path):
    path, expected = keras_files[file]
    out = tmp_path / "probabilities.npy"
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import numnet
        model = numnet.load({str(path)!r}, backend="numba")
        (_, _), (x_test, _) = numnet.data.load_mnist()
        np.save({str(out)!r}, model.predict(numnet.data.to_model_input(x_test[:200])))
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "TensorFlow was imported"
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert np.abs(np.load(out) - expected).max() <= 1e-5


def test_loaded_keras_file_has_the_seed_structure(keras_files):
    model = numnet.load(keras_files["cnn.keras"][0])
    assert model.count_params() == 107_274
    assert [layer["type"] for layer in model.spec["layers"]][:5] == [
        "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "Dropout",
    ]  # fmt: skip
    assert numnet.load(keras_files["mlp.h5"][0]).spec["input_shape"] == [28, 28, 1]


@pytest.mark.parametrize(
    "layer,message",
    [
        (L.LSTM(4), "is a LSTM, which numnet does not have"),
        (L.Lambda(lambda x: x * 2), "is a Lambda, which numnet does not have"),  # its code is never run
        (L.Conv2D(4, 3, strides=(2, 1)), r"strides=\[2, 1\]"),
        (L.Conv2D(4, 3, dilation_rate=2), "dilation"),
        (L.Conv2D(4, 3, activation="selu"), "activation 'selu'"),
    ],
)
def test_layers_numnet_lacks_are_refused_by_name(layer, message, tmp_path):
    shape = (28, 28) if isinstance(layer, L.LSTM) else (28, 28, 1)
    model = keras.Sequential([keras.Input(shape), layer, L.Flatten(), L.Dense(10, activation="softmax")])
    path = tmp_path / "other.keras"
    model.save(path)
    with pytest.raises(ModelFileError, match=message) as error:
        numnet.load(path)
    assert layer.name in str(error.value)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_numnet_models_export_to_keras(backend, suffix, tmp_path, mnist_inputs):
    (x_train, y_train), (x_test, _) = mnist_inputs
    model = numnet.build(numnet.specs.cnn(), backend=backend, seed=2)
    model.fit(x_train[:2048], y_train[:2048], epochs=1, batch_size=512, verbose=0)
    path = tmp_path / f"exported{suffix}"
    model.save(path)
    reloaded = keras.models.load_model(path)
    expected = model.predict(x_test[:200])
    assert np.abs(reloaded.predict(x_test[:200], verbose=0) - expected).max() <= 1e-5
    assert np.abs(numnet.load(path).predict(x_test[:200]) - expected).max() <= 1e-5


def test_truncated_and_garbage_keras_files(keras_files, tmp_path):
    data = keras_files["cnn.keras"][0].read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        numnet.load(truncated)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(ModelFileError, match="is neither a .keras archive .zip. nor an HDF5 file"):
        numnet.load(garbage)


def test_keras_files_are_written_without_tensorflow_or_keras(tmp_path, mnist_inputs):
    code = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # any import of TensorFlow or Keras now fails
        sys.modules["keras"] = None
        import numnet
        model = numnet.build(numnet.specs.cnn(), backend="numba", seed=4)
        for name in sys.argv[1:]:
            model.save(name)
        assert sys.modules["tensorflow"] is None and sys.modules["keras"] is None
        """
    )
    paths = [tmp_path / "cnn.keras", tmp_path / "cnn.h5"]
    result = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    _, (x_test, _) = mnist_inputs
    expected = numnet.load(paths[0]).predict(x_test[:100])
    for path in paths:
        assert np.abs(keras.models.load_model(path).predict(x_test[:100], verbose=0) - expected).max() <= 1e-5


def test_keras_file_carries_the_optimizer_state(tmp_path, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), backend="numba")
    model.fit(x_train[:1000], y_train[:1000], epochs=1, batch_size=100, verbose=0)
    model.save(tmp_path / "mlp.keras")
    reloaded = keras.models.load_model(tmp_path / "mlp.keras")
    assert int(reloaded.optimizer.iterations.numpy()) == model.optimizer.iterations == 10
    theirs = [np.asarray(v) for v in reloaded.optimizer.variables[2:]]
    ours = model.optimizer.get_state()[1:]
    assert len(theirs) == len(ours) and all(np.array_equal(a, b) for a, b in zip(theirs, ours))


def test_the_labs_own_loading_code_reads_a_numnet_trained_mlp(seed_mlp_file, tmp_path, mnist_inputs):
    """The lab's Tkinter app loads `16_model.h5` with `keras.models.load_model` and calls predict."""
    _, (x_test, y_test) = mnist_inputs
    model = numnet.load(seed_mlp_file)
    model.save(tmp_path / "16_model.h5")
    np.save(tmp_path / "digits.npy", x_test[:500])
    lab = textwrap.dedent(
        """
        import numpy as np
        from keras.models import load_model
        model = load_model('16_model.h5')
        np.save('probabilities.npy', model.predict(np.load('digits.npy'), verbose=0))
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", lab], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    theirs = np.load(tmp_path / "probabilities.npy")
    assert np.abs(theirs - model.predict(x_test[:500])).max() <= 1e-5
    assert (theirs.argmax(axis=1) == y_test[:500]).mean() > 0.95


DECAY = {"type": "ExponentialDecay", "initial_learning_rate": 0.01, "decay_steps": 5, "decay_rate": 0.5}


@pytest.mark.parametrize("optimizer", [{"type": "adam", "learning_rate": 0.002, "beta_1": 0.8},
                                       {"type": "sgd", "learning_rate": 0.05},
                                       {"type": "adam", "learning_rate": DECAY}])  # fmt: skip
def test_a_keras_file_loads_with_its_optimizer_its_state_and_its_step_count(tmp_path, mnist_inputs, optimizer):
    """numnet.load of a .keras file resumes training where it stopped: the optimizer Keras compiled,
    its slots and iteration count, and a rate a callback changed."""
    (x_train, y_train), _ = mnist_inputs
    spec = {**numnet.specs.mlp(), "optimizer": optimizer}
    model = numnet.build(spec, backend="numba")
    model.fit(x_train[:500], y_train[:500], epochs=1, batch_size=100, verbose=0)
    if not isinstance(optimizer["learning_rate"], dict):
        model.learning_rate = 0.0005  # as ReduceLROnPlateau would
    model.save(tmp_path / "m.keras")
    again = numnet.load(tmp_path / "m.keras", backend="numba")
    assert again.spec["optimizer"] == numnet.specs.validate(spec)["optimizer"]
    assert again.optimizer.iterations == model.optimizer.iterations == 5
    for ours, theirs in zip(again.optimizer.get_state(), model.optimizer.get_state()):
        np.testing.assert_array_equal(ours, theirs)
    assert np.float32(again.learning_rate) == np.float32(model.learning_rate)
    for m in (model, again):
        m.fit(x_train[500:700], y_train[500:700], epochs=1, batch_size=100, shuffle=False, verbose=0)
    for ours, theirs in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def _with_layer_config(source, target, layer_name, changes):
    """A copy of a .keras file whose layer `layer_name` has `changes` in its config."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    (entry,) = [e for e in config["config"]["layers"] if e["config"].get("name") == layer_name]
    entry["config"].update(changes)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


UNCOMPUTED = [
    ("dense", {"kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}}, "kernel_regularizer="),
    ("dense", {"use_bias": "no"}, "use_bias must be true or false, got 'no'"),
    ("dense", {"activity_regularizer": "l1"}, "activity_regularizer='l1'"),
    ("dense", {"something_new": 1}, "something_new=1"),
    ("conv2d", {"strides": [2, 1]}, "strides=[2, 1]"),
    ("conv2d", {"dilation_rate": [2, 2]}, "dilation"),
    ("conv2d", {"data_format": "channels_first"}, "channels_first"),
    ("conv2d", {"kernel_constraint": {"class_name": "MaxNorm"}}, "kernel_constraint="),
    ("batch_normalization", {"axis": 1}, "normalises the last axis only"),
    ("batch_normalization", {"center": False}, "center/scale off"),
    ("batch_normalization", {"renorm": True}, "renorm=True"),
    ("batch_normalization", {"synchronized": True}, "synchronized=True"),
    ("max_pooling2d", {"padding": "causal"}, "padding must be 'valid' or 'same', got 'causal'"),
    ("max_pooling2d", {"pool_size": [0, 2]}, "pool_size must be a positive integer or a pair of them, got [0, 2]"),
    ("dropout", {"noise_shape": [None, 1, 1, 64]}, "noise_shape="),
    ("flatten", {"data_format": "channels_first"}, "data_format='channels_first'"),
]


@pytest.mark.parametrize(
    ("layer", "changes", "named"), UNCOMPUTED, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in UNCOMPUTED]
)
def test_every_keras_option_numnet_does_not_compute_is_refused_by_name(tmp_path, layer, changes, named):
    """No silent wrong answer: a Keras config key a layer does not compute (or computes only at its
    default) is a ModelFileError naming the file, the layer and the key with its value."""
    source = tmp_path / "cnn.keras"
    numnet.build(numnet.specs.cnn()).save(source)
    numnet.load(source)  # as numnet writes it, it loads
    mutant = _with_layer_config(source, tmp_path / "mutant.keras", layer, changes)
    with pytest.raises(ModelFileError) as error:
        numnet.load(mutant)
    assert f"'{mutant}'" in str(error.value) and named in str(error.value)
    assert f"'{layer}'" in str(error.value) or "normalises the last axis" in str(error.value)


# -- the file formats people publish --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "saved_as"), [("model.keras", ".h5"), ("model.h5", ".keras")])
def test_the_reader_is_chosen_by_content_not_by_the_name(tmp_path, mnist_inputs, name, saved_as):
    (_, _), (x_test, _) = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), seed=3)
    model.save(tmp_path / f"m{saved_as}")
    (tmp_path / f"m{saved_as}").rename(tmp_path / name)
    np.testing.assert_array_equal(numnet.load(tmp_path / name).predict(x_test[:20]), model.predict(x_test[:20]))


def test_a_git_lfs_pointer_is_named_as_such(tmp_path):
    path = tmp_path / "mnist.h5"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1234567\n")
    with pytest.raises(ModelFileError, match="is a Git LFS pointer .* fetch it with `git lfs pull`"):
        numnet.load(path)


def test_a_functional_graph_that_is_no_chain_is_refused_by_name(tmp_path):
    inputs = keras.Input((28, 28, 1))
    flat = keras.layers.Flatten()(inputs)
    a, b = keras.layers.Dense(16)(flat), keras.layers.Dense(16)(flat)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Add()([a, b]))
    keras.Model(inputs, outputs).save(tmp_path / "branches.keras")
    with pytest.raises(ModelFileError, match="is a graph numnet cannot chain: layer 'flatten.*' feeds"):
        numnet.load(tmp_path / "branches.keras")


LOGITS_MLP = {**numnet.specs.mlp(), "name": "logits",
              "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
                         {"type": "Dense", "units": 10}]}  # fmt: skip


def test_a_model_ending_in_logits_trains_as_keras_with_from_logits_and_predicts_logits(tmp_path, mnist_inputs):
    """Dense(10) with no softmax, trained with from_logits=True (a common modern style): numnet's
    predict returns what Keras returns (logits), its loss takes them as logits, and the apps show
    probabilities (softmax of the logits)."""
    (x_train, y_train), (x_test, _) = mnist_inputs
    theirs = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(128, "relu"),
                               keras.layers.Dense(10)])  # fmt: skip
    theirs.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    theirs.fit(x_train[:1000], y_train[:1000], epochs=1, batch_size=100, verbose=0)
    theirs.save(tmp_path / "logits.keras")
    ours = numnet.load(tmp_path / "logits.keras")
    assert ours.outputs_logits
    assert ours.spec["layers"][-1] == {"type": "Dense", "units": 10, "activation": None, "use_bias": True}
    logits = theirs.predict(x_test[:50], verbose=0)
    np.testing.assert_allclose(ours.predict(x_test[:50]), logits, atol=1e-4)
    assert np.abs(logits).max() > 1 and not np.allclose(logits.sum(axis=1), 1)  # logits, not probabilities
    probabilities = ours.probabilities(x_test[:50])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities.argmax(axis=1) == logits.argmax(axis=1)).all()
    # the loss numnet trains with is Keras' from_logits loss on the same batch
    expected = float(theirs.compute_loss(x=None, y=y_train[:200], y_pred=theirs(x_train[:200])))
    assert ours.evaluate(x_train[:200], y_train[:200])["loss"] == pytest.approx(expected, rel=1e-4)
    # and numnet writes the loss back as Keras reads it
    ours.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    assert again.loss.get_config()["from_logits"] is True


def test_a_logits_spec_trains_on_every_engine_and_exports_probabilities_to_tfjs(mnist_inputs, tmp_path):
    from numnet.formats.tfjs import topology
    from numnet.layers import check_spec

    (x_train, y_train), _ = mnist_inputs
    for backend in ("numpy", "numba", "tensorflow"):
        model = numnet.build(LOGITS_MLP, backend=backend, seed=0)
        history = model.fit(x_train[:2000], y_train[:2000], epochs=2, batch_size=100, verbose=0)
        assert history["loss"][1] < history["loss"][0] and history["accuracy"][1] > 0.8, backend
    config, _ = topology(*check_spec(LOGITS_MLP))
    assert config["config"]["layers"][-1]["config"]["activation"] == "softmax"


# -- the corpus: every format people publish, holding every layer numnet reads, against Keras --------


def corpus_layers(name):
    """Two digit classifiers between them holding every layer and option numnet reads from Keras."""
    if name == "tutorial":
        return [L.Conv2D(8, 3, strides=2, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU(),
                L.MaxPooling2D(3, strides=2, padding="same"), L.Conv2D(8, 3, activation="elu", padding="same"),
                L.AveragePooling2D(2, padding="same"), L.Dropout(0.2), L.GlobalAveragePooling2D(),
                L.Dense(16, activation="sigmoid"), L.Dense(10)]  # fmt: skip
    return [L.Reshape((28, 28, 1)), L.Conv2D(6, 5, activation="relu"), L.MaxPooling2D((4, 4)),
            L.AveragePooling2D((2, 3), strides=1), L.Flatten(), L.Dense(16, activation="tanh"),
            L.Dense(16, activation="leaky_relu"), L.Dense(16, activation="softplus"), L.Dense(16, use_bias=False),
            L.Activation("gelu"), L.Dense(10), L.Softmax()]  # fmt: skip


def corpus_model(name, functional):
    if not functional:
        return keras.Sequential([keras.Input((28, 28, 1)), *corpus_layers(name)])
    inputs = x = keras.Input((28, 28, 1))
    for layer in corpus_layers(name):
        x = layer(x)
    return keras.Model(inputs, x)


def as_keras_2_1_list(path):
    """Keras <= 2.1's HDF5: the Sequential's config is the bare list of its layers."""
    import h5py

    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        layers = [layer for layer in config["config"]["layers"] if layer["class_name"] != "InputLayer"]
        layers[0]["config"]["batch_input_shape"] = [None, 28, 28, 1]
        h5.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers})


def as_tf_keras_2_13(path, model):
    """tf.keras 2.13-2.14's .keras: weights under _layer_checkpoint_dependencies/layer_with_weights-K."""
    import io

    import h5py

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    old = io.BytesIO()
    with h5py.File(io.BytesIO(members["model.weights.h5"]), "r") as new, h5py.File(old, "w") as h5:
        # Keras 3 names each group by its class and place among the model's layers of that class.
        names = numnet.layers.keras_names([type(layer).__name__ for layer in model.layers])
        weighted = [name for name, layer in zip(names, model.layers) if layer.weights]
        for k, name in enumerate(weighted):
            new.copy(new[f"layers/{name}"], h5, f"_layer_checkpoint_dependencies/layer_with_weights-{k}")
    members["model.weights.h5"] = old.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


CORPUS_FORMATS = {  # format -> (the file's name, how Keras saves it, Functional or not, what turns it old)
    "keras-3": ("m.keras", ".keras", False, None),
    "keras-2-h5": ("m.h5", ".h5", False, None),
    "keras-2.1-list-h5": ("m.h5", ".h5", False, as_keras_2_1_list),
    "tf-keras-2.13": ("m.keras", ".keras", False, as_tf_keras_2_13),
    "h5-named-keras": ("m.keras", ".h5", False, None),
    "functional-keras": ("m.keras", ".keras", True, None),
    "functional-h5": ("m.h5", ".h5", True, None),
}


@pytest.mark.parametrize("network", ["tutorial", "classic"])
@pytest.mark.parametrize("file_format", sorted(CORPUS_FORMATS))
def test_the_corpus_every_format_with_every_layer_loads_and_matches_keras(tmp_path, mnist_inputs, network,
                                                                         file_format):  # fmt: skip
    (x_train, y_train), (x_test, _) = mnist_inputs
    name, saved_as, functional, make_old = CORPUS_FORMATS[file_format]
    model = corpus_model(network, functional)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=network == "tutorial"))
    model.fit(x_train[:512], y_train[:512], epochs=1, batch_size=128, verbose=0)  # batch norm's statistics move
    model.save(tmp_path / f"saved{saved_as}")
    (tmp_path / f"saved{saved_as}").rename(tmp_path / name)
    if make_old is as_tf_keras_2_13:
        make_old(tmp_path / name, model)
    elif make_old:
        make_old(tmp_path / name)
    ours = numnet.load(tmp_path / name)
    assert ours.outputs_logits == (network == "tutorial")
    np.testing.assert_allclose(ours.predict(x_test[:64]), model.predict(x_test[:64], verbose=0), atol=1e-4)

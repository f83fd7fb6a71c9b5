"""Bad input of every kind gets a clear error naming the problem, never a traceback from deep inside."""

from __future__ import annotations

import json
import pickle
import re
import zipfile

import numpy as np
import pytest

import numnet
from numnet.errors import BackendUnavailable, InputError, ModelFileError, SpecError


@pytest.fixture(scope="module")
def mlp():
    return numnet.build(numnet.specs.mlp(), seed=0)


@pytest.fixture
def saved_mlp(tmp_path, mlp):
    path = tmp_path / "mlp.npz"
    mlp.save(path)
    return path


@pytest.mark.parametrize(
    "shape,message",
    [((5, 28, 27, 1), r"shape \(5, 28, 27, 1\); this model takes \(N, 28, 28, 1\)"),
     ((28, 28), r"shape \(28, 28\)"),
     ((0, 28, 28, 1), "is empty")],
)  # fmt: skip
def test_predict_rejects_wrong_shapes(mlp, shape, message):
    with pytest.raises(InputError, match=message):
        mlp.predict(np.zeros(shape, np.float32))


def test_predict_accepts_images_without_a_channel_axis(mlp):
    assert mlp.predict(np.zeros((2, 28, 28), np.float32)).shape == (2, 10)


def test_nan_input_is_rejected_naming_the_count(mlp):
    x = np.zeros((4, 28, 28, 1), np.float32)
    x[1, 3, 3, 0] = np.nan
    x[3, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match=r"NaN or infinite values in 2 sample\(s\)"):
        mlp.predict(x)


def test_uint8_images_are_rejected_with_the_fix(mlp):
    with pytest.raises(InputError, match="to_model_input"):
        mlp.predict(np.zeros((1, 28, 28, 1), np.uint8))


def test_labels_are_checked(mlp):
    x = np.zeros((3, 28, 28, 1), np.float32)
    with pytest.raises(InputError, match="outside 0..9"):
        mlp.fit(x, np.array([0, 1, 10]), verbose=0)
    with pytest.raises(InputError, match=r"expected \(3,\) integer class ids"):
        mlp.fit(x, np.array([0, 1]), verbose=0)
    with pytest.raises(InputError, match="integer class ids"):
        mlp.fit(x, np.array([0.0, 1.0, 2.0]), verbose=0)


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"input_shape": [28, 28, 1], "layers": [{"type": "Conv3D"}]}, "unknown layer type 'Conv3D'"),
        ({"input_shape": [28, 28, 1], "layers": [{"type": "Dense", "units": 3, "kernel": 1}]},
         "Dense does not take 'kernel'"),
        ({"input_shape": [28, 28, 1], "layers": [{"type": "Dense", "units": 10, "activation": "softmax"}]},
         "put a Flatten before it"),
        ({"input_shape": [784], "layers": [{"type": "Dense", "units": 10, "activation": "selu"}]},
         "activation 'selu' is not supported"),
        ({"input_shape": [784], "layers": [{"type": "Dense", "units": 1}]}, "one score per class"),
        ({"input_shape": [4, 4, 1], "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 3}]}, "flat output"),
        ({"input_shape": [4, 4, 1], "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 5}]},
         r"layer 1 \(Conv2D\) shrinks its input to \(0, 0, 2\)"),
        *[({"input_shape": [8, 8, 1], "layers": [{"type": "Conv2D", "filters": 2, **option}]}, message)
          for option, message in (({"strides": 0}, "strides must be a positive integer, got 0"),
                                  ({"strides": [2, 1]}, "strides must be square"),
                                  ({"kernel_size": [3, 3, 3]}, "kernel_size must be square"),
                                  ({"use_bias": 1}, "use_bias must be true or false, got 1"))],
        *[({"input_shape": [8, 8, 1], "layers": [{"type": pool, **option}]}, message)
          for pool in ("MaxPooling2D", "AveragePooling2D")
          for option, message in (({"pool_size": [2, 2, 2]}, "pool_size must be a positive integer or a pair"),
                                  ({"strides": True}, "strides must be a positive integer or a pair"),
                                  ({"padding": "SAME"}, "padding must be 'valid' or 'same', got 'SAME'"))],
        ({"input_shape": "28x28", "layers": []}, "input_shape"),
        ({"input_shape": [784], "layers": [{"type": "Flatten"}], "optimizer": {"type": "rmsprop"}},
         "optimizer must be"),
        ([1, 2], "must be a JSON object"),
        ({"input_shape": [784], "layers": [{"type": "BatchNormalization", "epsilon": float("inf")}]},
         "BatchNormalization epsilon must be a finite number, got inf"),
    ],
)  # fmt: skip
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(SpecError, match=message):
        numnet.build(spec)


def test_unknown_backend(mlp):
    with pytest.raises(BackendUnavailable, match="backend 'mxnet' is not available"):
        numnet.build(numnet.specs.mlp(), backend="mxnet")


def test_set_weights_checks_count_and_shapes(mlp):
    weights = mlp.get_weights()
    with pytest.raises(InputError, match="got 3 arrays; this model has 4"):
        mlp.set_weights(weights[:3])
    with pytest.raises(InputError, match=r"weight 1 has shape \(127,\); expected \(128,\)"):
        mlp.set_weights([weights[0], np.zeros(127), *weights[2:]])


def test_truncated_model_file(saved_mlp):
    data = saved_mlp.read_bytes()
    saved_mlp.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match="truncated"):
        numnet.load(saved_mlp)


def test_corrupt_weights_are_detected(saved_mlp):
    data = bytearray(saved_mlp.read_bytes())
    start = data.index(b"weights/000.npy") + 400  # inside the first weight array
    data[start : start + 64] = bytes(64)
    saved_mlp.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt"):
        numnet.load(saved_mlp)


@pytest.mark.parametrize("garbage", [b"{'descr': '<f4', 'fortran_order': False, 'shape{: (784, 4), }",
                                     b"{'descr': '<f4', 'fortran_order': False, 'shape': (784, 4"])  # fmt: skip
def test_a_garbled_array_header_is_named_corrupt(saved_mlp, tmp_path, garbage):
    """NumPy reads an .npy header as a Python literal: a damaged one raises a SyntaxError or a
    tokenizer error inside NumPy, which the reader names as a corrupt file (found by the fuzzer)."""
    hostile = tmp_path / "garbled.npz"
    with zipfile.ZipFile(saved_mlp) as src, zipfile.ZipFile(hostile, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "weights/000.npy":
                length = int.from_bytes(data[8:10], "little")
                data = data[:10] + garbage.ljust(length - 1) + b"\n" + data[10 + length :]
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="corrupt .the header of array weights/000.npy"):
        numnet.load(hostile)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist; train one"):
        numnet.load(tmp_path / "nothing.npz")


def test_a_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    hostile = tmp_path / "model.npz"
    hostile.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ModelFileError):
        numnet.load(hostile)
    assert not marker.exists()


def test_object_arrays_inside_the_zip_are_refused(saved_mlp, tmp_path):
    hostile = tmp_path / "hostile.npz"
    with zipfile.ZipFile(saved_mlp) as src, zipfile.ZipFile(hostile, "w") as dst:
        for item in src.infolist():
            if item.filename == "weights/000.npy":
                with dst.open(item.filename, "w") as member:
                    np.lib.format.write_array(member, np.array([object()], dtype=object), allow_pickle=True)
            else:
                dst.writestr(item, src.read(item))
    with pytest.raises(ModelFileError, match="unsupported dtype object"):
        numnet.load(hostile)


def test_header_claiming_a_huge_array_is_refused_before_reading(saved_mlp, tmp_path):
    hostile = tmp_path / "huge.npz"
    with zipfile.ZipFile(saved_mlp) as src, zipfile.ZipFile(hostile, "w") as dst:
        for item in src.infolist():
            if item.filename == "header.json":
                header = json.loads(src.read(item))
                header["spec"]["layers"][1]["units"] = 10**9
                dst.writestr(item, json.dumps(header))
            else:
                dst.writestr(item, src.read(item))
    with pytest.raises((ModelFileError, MemoryError)) as error:
        numnet.load(hostile)
    assert error.type is ModelFileError


def test_a_zip_that_is_not_a_model(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a numnet model file"):
        numnet.load(path)


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, "8", True, None])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_a_bad_batch_size_is_refused_by_every_method(mlp, method, batch_size):
    """Once `predict(x, batch_size=-1)` returned uninitialised memory as probabilities."""
    x, y = np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, int)
    arguments = (x,) if method == "predict" else (x, y)
    with pytest.raises(InputError, match=f"batch_size must be an integer >= 1, got {batch_size!r}"):
        getattr(mlp, method)(*arguments, batch_size=batch_size)


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"epochs": -1}, "epochs must be an integer >= 1, got -1"),
     ({"epochs": "2"}, "epochs must be an integer >= 1, got '2'"),
     ({"validation_split": 1.0}, "validation_split must be a number in [0, 1), got 1.0"),
     ({"validation_split": "0.1"}, "validation_split must be a number in [0, 1), got '0.1'")],
)  # fmt: skip
def test_bad_fit_settings_are_refused_by_name(mlp, setting, message):
    x, y = np.zeros((4, 28, 28, 1), np.float32), np.zeros(4, int)
    with pytest.raises(InputError, match=re.escape(message)):
        mlp.fit(x, y, verbose=0, **setting)


def test_a_network_that_pools_down_to_nothing_is_refused():
    pool = {"type": "MaxPooling2D", "pool_size": 2}
    spec = {"name": "p", "input_shape": [4, 4, 1], "layers": [pool] * 3 + [{"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"}]}  # fmt: skip
    with pytest.raises(SpecError, match=re.escape("layer 3 (MaxPooling2D) shrinks its input to (0, 0, 1)")):
        numnet.build(spec)


# -- hardening, round two: values that used to slip through or end in a raw traceback ----------------


def test_float64_weights_beyond_float32s_range_are_refused_not_stored_as_inf(mlp):
    weights = mlp.get_weights()
    huge = [w.astype(np.float64) for w in weights]
    huge[0][0, 0] = 1e300
    with pytest.raises(InputError, match="weight 0 holds values beyond float32's range"):
        mlp.set_weights(huge)
    assert np.isfinite(mlp.get_weights()[0]).all()


@pytest.mark.parametrize(("bad", "message"), [(lambda w: w.astype(np.complex64) * 1j, "dtype complex64"),
                                              (lambda w: w.astype(str), "dtype <U")])  # fmt: skip
def test_weights_that_are_not_real_numbers_are_refused(mlp, bad, message):
    weights = mlp.get_weights()
    with pytest.raises(InputError, match=f"weight 0 has {message}"):
        mlp.set_weights([bad(weights[0]), *weights[1:]])


def test_an_output_that_is_not_finite_is_refused_where_it_leaves_numnet(mlp):
    big = numnet.build(numnet.specs.mlp(), seed=0)
    weights = big.get_weights()
    big.set_weights([w * 1e18 if w.ndim == 2 else w for w in weights])  # finite, but overflows float32 in use
    x = np.full((2, 28, 28, 1), 1e6, np.float32)
    with pytest.raises(numnet.errors.NumericalError, match="the output of 2 sample.s. holds NaN or infinite values"):
        big.predict(x)
    with pytest.raises(numnet.errors.NumericalError, match="the loss is"):
        big.evaluate(x, np.array([1, 2]))


@pytest.mark.parametrize(("value", "message"), [(-1, "must be a finite number > 0, got -1"),
                                                (float("nan"), "got nan"), ("0.1", "got '0.1'")])  # fmt: skip
def test_a_learning_rate_set_on_a_model_is_checked_as_a_spec_checks_it(mlp, value, message):
    with pytest.raises(InputError, match=re.escape(message)):
        mlp.learning_rate = value


@pytest.mark.parametrize(
    ("targets", "message"),
    [(np.array([["a"] * 10] * 3), "dtype <U1; one-hot targets are numbers"),
     (np.full((3, 10), np.nan), "is not one-hot"),
     (np.full((3, 10), 2.0), "is not one-hot"),
     (np.ones((3, 10)), "is not one-hot")],
)  # fmt: skip
def test_one_hot_targets_are_checked(targets, message):
    model = numnet.build({**numnet.specs.mlp(), "loss": "categorical_crossentropy"})
    with pytest.raises(InputError, match=re.escape(message)):
        model.fit(np.zeros((3, 28, 28, 1), np.float32), targets, verbose=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda m, x: m.fit(x, [[1], [2, 3], [4]], verbose=0), "y is ragged"),
     (lambda m, x: m.fit(x, np.array([1, 2, 3]), validation_data=(x,), verbose=0),
      "validation_data must be a pair (x, y)"),
     (lambda m, x: numnet.build(numnet.specs.mlp(), seed=-1), "seed must be an integer >= 0, got -1"),
     (lambda m, x: m.fit(x, np.array([1, 2, 3]), verbose=0, callbacks=[
         numnet.callbacks.ModelCheckpoint("m-{val_loss:.2f}.npz")]),
      "names 'val_loss', which is not in this epoch's logs")],
)  # fmt: skip
def test_api_arguments_of_the_wrong_form_are_refused_by_name(mlp, call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)):
        call(numnet.build(numnet.specs.mlp()), np.zeros((3, 28, 28, 1), np.float32))


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"input_shape": [784], "layers": [{"type": ["Flatten"]}]}, "unknown layer type ['Flatten']"),
     ({"input_shape": [784], "layers": [{"type": "Dense", "units": 10, "self": 1}]}, "Dense does not take 'self'"),
     ({"input_shape": [784], "layers": [{"type": "Flatten"}], "optimizer": {"type": ["adam"]}}, "optimizer must be"),
     ({"input_shape": [784], "layers": [{"type": "Flatten"}],
       "optimizer": {"type": "adam", "learning_rate": {"type": {}}}}, "a learning-rate schedule must be")],
)  # fmt: skip
def test_unhashable_or_reserved_values_in_a_spec_are_refused_by_name(spec, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        numnet.build(spec)


def test_a_schedule_whose_rate_overflows_is_refused_at_the_step_it_does():
    schedule = {"type": "ExponentialDecay", "initial_learning_rate": 10.0, "decay_steps": 1, "decay_rate": 1e308}
    model = numnet.build({**numnet.specs.mlp(), "optimizer": {"type": "sgd", "learning_rate": schedule}})
    with pytest.raises(InputError, match="ExponentialDecay schedule's learning rate overflows at step 1"):
        model.fit(np.zeros((4, 28, 28, 1), np.float32), np.array([0, 1, 2, 3]), batch_size=1, verbose=0)


def test_images_in_pixel_levels_not_scaled_to_0_1_are_said(mlp):
    """Float images holding 0-255 levels: probably never scaled; said (a model read from a Keras file
    may have been trained on raw levels, so they are not refused)."""
    with pytest.warns(UserWarning, match=r"x holds values up to 255, like pixel levels 0-255"):
        mlp.predict(np.full((1, 28, 28, 1), 255.0, np.float32))

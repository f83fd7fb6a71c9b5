"""Hostile files: each is built here, small on disk, and must be refused with a clear error before
numnet allocates what it claims. Each load runs in a child process under a 3 GiB address-space
limit, so a regression fails here instead of exhausting the machine."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

import numnet

LIMIT = 3 << 30


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def load_in_child(path) -> subprocess.CompletedProcess:
    code = "import sys, numnet\nnumnet.load(sys.argv[1])\n"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit_memory)  # fmt: skip


def assert_refused(result: subprocess.CompletedProcess, error: str, message: str) -> None:
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"numnet.errors.{error}:") and message in last, result.stderr[-2000:]
    assert "MemoryError" not in result.stderr


SOFTMAX = {"type": "Dense", "units": 10, "activation": "softmax"}
DENSE_BOMB = {"name": "bomb", "input_shape": [10000], "layers": [{"type": "Dense", "units": 10000}] * 40 + [SOFTMAX]}


def npz_with_spec(path, spec) -> None:
    header = {"format": "numnet-model", "version": 1, "spec": spec, "backend": "numpy", "epochs_done": 0,
              "weights": [], "optimizer": []}  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("header.json", json.dumps(header))


@pytest.mark.parametrize(
    "spec",
    [DENSE_BOMB,
     {"input_shape": [1, 1, 100_000_000], "layers": [{"type": "BatchNormalization"}, {"type": "Flatten"},
                                                     {"type": "Dense", "units": 10, "activation": "softmax"}]}],
    ids=["40-dense-layers", "wide-batchnorm"],
)  # fmt: skip
def test_a_model_file_whose_spec_is_too_large_is_refused_before_building(tmp_path, spec):
    path = tmp_path / "bomb.npz"
    npz_with_spec(path, spec)
    assert path.stat().st_size < 2000
    assert_refused(load_in_child(path), "ModelFileError", "too large to build")


def test_an_h5_weight_declaring_a_huge_shape_is_refused_before_reading(seed_mlp_file, tmp_path):
    path = tmp_path / "16_model.h5"
    numnet.load(seed_mlp_file).save(path)
    with h5py.File(path, "r+") as h5:
        group = h5["model_weights/dense"]
        del group["dense/kernel"]
        group.create_dataset(
            "dense/kernel", shape=(200_000, 200_000), dtype="f4", chunks=(1000, 1000), compression="gzip"
        )  # fmt: skip  (149 GiB declared, nothing stored)
    assert path.stat().st_size < 2_000_000
    assert_refused(load_in_child(path), "ModelFileError", "declares shape (200000, 200000)")


def test_a_keras_config_that_is_a_zip_bomb_is_not_read(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{" + " " * (64 << 20) + "}")
        archive.writestr("model.weights.h5", b"")
    assert path.stat().st_size < 1_000_000
    assert_refused(load_in_child(path), "ModelFileError", "config.json declares 67,108,866 bytes")


@pytest.mark.parametrize(("depth", "message"), [(100, "nested more than 16 deep"), (10_000, "nested too deeply")])
def test_deeply_nested_sequentials_are_refused_by_name(tmp_path, depth, message):
    dense = json.dumps({"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}})
    opening = '{"class_name": "Sequential", "config": {"layers": ['
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", opening * depth + dense + "]}}" * depth)
        archive.writestr("model.weights.h5", b"")
    assert_refused(load_in_child(path), "ModelFileError", message)


def test_a_deeply_nested_model_file_header_is_refused(tmp_path):
    path = tmp_path / "deep.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("header.json", "[" * 50_000 + "]" * 50_000)
    assert_refused(load_in_child(path), "ModelFileError", "nested too deeply")


def test_a_run_record_holding_a_spec_bomb_is_refused_by_the_report(tmp_path, mnist):
    run = tmp_path / "runs" / "bomb"
    run.mkdir(parents=True)
    record = {"name": "bomb", "model": "mlp", "settings": {"epochs": 1}, "spec": DENSE_BOMB, "backend": "numpy",
              "history": {"loss": [1.0], "accuracy": [0.5], "seconds": [1.0]}, "test_accuracy": 0.5,
              "per_digit_accuracy": {str(d): 0.5 for d in range(10)}, "confusion": np.eye(10, dtype=int).tolist(),
              "test_samples": 10, "train_seconds": 1.0, "test_seconds": 0.1, "device": "CPU"}  # fmt: skip
    (run / "run.json").write_text(json.dumps(record))
    np.save(run / "test_probabilities.npy", np.full((10, 10), 0.1, np.float32))
    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    result = subprocess.run([sys.executable, "-m", "numnet.report", str(tmp_path / "runs")], capture_output=True,
                            text=True, env={**os.environ, "NUMNET_HOME": str(home)}, timeout=300,
                            preexec_fn=limit_memory)  # fmt: skip
    assert result.returncode == 2 and "too large to build" in result.stderr and "Traceback" not in result.stderr

"""The arithmetic behind the speed table's headline ratio (the timings themselves live in
benchmarks/, never in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def benchmark(name: str):
    """A script of benchmarks/ as a module (the folder is not a package)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_speed():
    return benchmark("train_speed")


def run(contender: str, round_: int, seconds: float, contended: bool = False) -> dict:
    return {"model": "cnn", "contender": contender, "round": round_, "contended": contended, "epoch_seconds": seconds}


def test_a_framework_in_two_settings_is_judged_by_its_fastest_in_each_round(train_speed):
    runs = [
        run("numnet-numba", 0, 10.0), run("tensorflow-cpu (oneDNN on)", 0, 30.0),
        run("tensorflow-cpu (oneDNN off)", 0, 25.0),
        run("numnet-numba", 1, 20.0), run("tensorflow-cpu (oneDNN on)", 1, 30.0),
        run("tensorflow-cpu (oneDNN off)", 1, 50.0),
        run("tensorflow-cpu (oneDNN off)", 1, 1.0, contended=True),  # load runs are not quiet rounds
        run("pytorch-cpu (torch.nn)", 0, 5.0),  # one setting: its own row already says it
        run("numnet-numba", 2, 10.0),  # a round where TensorFlow failed gives no ratio
        {"model": "cnn", "contender": "tensorflow-cpu (oneDNN on)", "round": 2, "contended": False, "error": "x"},
    ]  # fmt: skip
    assert train_speed.best_setting_ratios(runs) == {("cnn", "tensorflow-cpu"): [2.5, 1.5]}


@pytest.fixture(scope="module")
def drawing_sets():
    return benchmark("drawing_sets")


def test_two_runs_saving_the_same_name_keep_a_row_each(drawing_sets):
    paths = [Path("seed0/best.npz"), Path("seed1/best.npz"), Path("models/cnn.npz")]
    names = drawing_sets.row_names(paths)
    assert names == {"seed0/best": paths[0], "seed1/best": paths[1], "cnn": paths[2]}
    with pytest.raises(SystemExit, match="share a row name"):
        drawing_sets.row_names([Path("a/best.npz"), Path("a/best.npz")])

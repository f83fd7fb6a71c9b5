"""numnet's best recipe and the drawing sets that measure it (the accuracy goals are measured by
`python -m numnet.train --model best` and benchmarks/drawing_sets.py, not here)."""

from __future__ import annotations

import numpy as np
import pytest

import numnet
from numnet import specs
from numnet.data import drawings
from numnet.data.preprocess import canvas_to_mnist


def test_best_spans_its_one_cycle_over_the_run_it_is_built_for():
    default = specs.resolve("best")["optimizer"]["learning_rate"]
    assert default["type"] == "OneCycle" and default["total_steps"] == specs.BEST_EPOCHS * 469
    short = specs.resolve("best", {"epochs": 2, "batch_size": 1000})["optimizer"]["learning_rate"]
    assert short["total_steps"] == 2 * 60
    assert [layer["type"] for layer in specs.best()["layers"][:5]] == [
        "RandomStrokeWidth", "RandomElasticTransform", "RandomRotation", "RandomTranslation", "RandomZoom"]  # fmt: skip


def test_best_reads_digits_from_its_first_epoch_where_the_seed_cnn_does_not(mnist_inputs):
    """The seed CNN's batch norm (momentum 0.99) still remembers its initial statistics after a short
    run, so in inference it reads almost nothing; best's (0.9) has settled."""
    (x_train, y_train), (x_test, y_test) = mnist_inputs
    accuracy = {}
    for name in ("cnn", "best"):
        # best's one cycle over these 47 steps (60,000 / 1,280 is 47 batches, as 6,000 / 128 is)
        model = numnet.build(specs.resolve(name, {"epochs": 1, "batch_size": 1280}), backend="numba")
        model.fit(x_train[:6000], y_train[:6000], epochs=1, batch_size=128, verbose=0)
        accuracy[name] = model.evaluate(x_test[:2000], y_test[:2000])["accuracy"]
    assert accuracy["best"] >= 0.9 and accuracy["cnn"] <= 0.5, accuracy


def test_train_cli_knows_best(tmp_path, mnist):
    from numnet import train

    args = train.parse_args(["--model", "best", "--epochs", "3"])
    (run, files), = train.planned_runs(args)  # fmt: skip
    assert run.name == "best" and run.settings["batch_size"] == specs.BEST_BATCH
    assert run.model.spec["optimizer"]["learning_rate"]["total_steps"] == 3 * 469


@pytest.mark.parametrize("name", drawings.SETS)
def test_each_drawing_set_is_canvases_read_back_as_mnist_digits(name, mnist):
    (_, _), mnist_test = mnist
    x, y = drawings.drawing_set(name, mnist_test, count=20)
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.float32 and y.shape == (20,)
    assert set(y) <= set(range(10)) and all(0.99 <= image.max() <= 1.0 for image in x)
    again, _ = drawings.drawing_set(name, mnist_test, count=20)
    np.testing.assert_array_equal(x, again)  # the same canvases for the same seed


def test_the_mouse_pen_draws_binary_ink(mnist):
    (_, _), (x_test, _) = mnist
    canvas = drawings.render(x_test[0], 200, "centre", "mouse", np.random.default_rng(0))
    assert set(np.unique(np.asarray(canvas))) == {0, 255}
    assert canvas_to_mnist(canvas) is not None


def test_optdigits_are_other_writers_digits():
    images, labels = drawings.optdigits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    assert np.bincount(labels).min() >= 170  # about 180 of each digit


def test_the_report_shows_what_an_augmented_network_saw(tmp_path, mnist):
    from test_hostile import finished_run

    from numnet.report import build_report

    finished_run(tmp_path / "runs" / "best", name="best", spec=specs.best())
    build_report(tmp_path / "runs", mnist=mnist)
    assert (tmp_path / "runs" / "augmented_best.png").stat().st_size > 20_000
    html = (tmp_path / "runs" / "report.html").read_text()
    assert html.index("ten examples of each digit") < html.index("the same digits as best saw them in training")


def test_the_example_grid_sweeps_augmentation_and_schedules(monkeypatch):
    from pathlib import Path

    from numnet.runs import grid

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # the grid names its specs from the repository
    grid_runs = grid.expand_grid(grid.read_grid("examples/grids/augmentation-and-schedules.json"))
    built = [numnet.build(specs.resolve(run["model"], run)) for run in grid_runs]
    assert len({grid.run_name(run) for run in grid_runs}) == 5
    rates = [model.spec["optimizer"]["learning_rate"] for model in built]
    assert [r if isinstance(r, float) else r["type"] for r in rates] == ["OneCycle", "OneCycle", "OneCycle", 0.001,
                                                                         "CosineDecay"]  # fmt: skip
    augmentation = [sum(layer.training_only for layer in model.layers) for model in built]
    assert augmentation == [5, 0, 5, 5, 5]

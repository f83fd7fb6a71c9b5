"""Experiment grids and the report, end to end on a tiny grid of real MNIST."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import numnet
from numnet import report
from numnet.formats.npz import read_header
from numnet.runs import grid as grids
from numnet.runs import local

TINY = {"model": ["mlp", "cnn"], "epochs": 1, "batch_size": 50, "validation_split": 0.2,
        "train_samples": 400, "test_samples": 300}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory, mnist):
    out = tmp_path_factory.mktemp("tiny")
    records = local.run_grid(grids.expand_grid(TINY), "numba", out, verbose=False, mnist=mnist)
    return out, records


@pytest.fixture(scope="module")
def tiny_report(tiny_results, mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return report.build_report(tiny_results[0], out, mnist=mnist)


def home_with_mnist(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    return {**os.environ, "NUMNET_HOME": str(home)}


def test_builtin_grids_are_the_labs_tables():
    cnn = grids.expand_grid(grids.read_grid("seed-cnn"))
    assert [(r["model"], r["epochs"], r["batch_size"]) for r in cnn] == [("cnn", 25, 1024), ("cnn", 50, 1024),
                                                                         ("cnn", 100, 1024)]  # fmt: skip
    mlp = grids.expand_grid(grids.read_grid("seed-mlp"))
    assert {(r["epochs"], r["validation_split"]) for r in mlp} == {
        (e, v) for e in (1500, 2500, 4900) for v in (0.1, 0.2, 0.3)
    }
    assert {r["batch_size"] for r in mlp} == {100}


def test_scale_multiplies_epochs_and_keeps_at_least_one():
    runs = grids.expand_grid(grids.read_grid("seed-mlp"), scale=0.01)
    assert sorted({r["epochs"] for r in runs}) == [15, 25, 49]
    assert [r["epochs"] for r in grids.expand_grid({"model": "mlp", "epochs": 3}, 0.01)] == [1]


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_grid_files_cross_their_lists(tmp_path, suffix):
    path = tmp_path / f"grid{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"model": "mlp", "epochs": [1, 2], "seed": [0, 1, 2]}))
    else:
        path.write_text('model = "mlp"\nepochs = [1, 2]\nseed = [0, 1, 2]\n')
    runs = grids.expand_grid(grids.read_grid(str(path)))
    assert [(r["epochs"], r["seed"]) for r in runs] == [(e, s) for e in (1, 2) for s in (0, 1, 2)]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"model": "mlp", "epochs": 1, "learning_rate": 0.1}, "unknown grid setting(s) ['learning_rate']"),
        ({"model": "mlp"}, "needs at least 'model' and 'epochs'"),
        ({"model": "mlp", "epochs": 0}, "grid setting 'epochs' must be an integer >= 1, got 0"),
        ({"model": "mlp", "epochs": "ten"}, "grid setting 'epochs' must be an integer >= 1, got 'ten'"),
        (
            {"model": "mlp", "epochs": 1, "validation_split": 1.5},
            "grid setting 'validation_split' must be a number in [0, 1), got 1.5",
        ),
        ({"model": "mlp", "epochs": 1, "test_samples": 0}, "grid setting 'test_samples' must be an integer >= 1"),
        ({"model": "mlp", "epochs": []}, "empty list"),
    ],
)
def test_bad_grids_are_refused_by_name(grid, message):
    with pytest.raises(grids.GridError) as error:
        grids.expand_grid(grid)
    assert message in str(error.value)


def test_unreadable_grid_file_is_named(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text("{not json")
    with pytest.raises(grids.GridError, match="grid file .*grid.json' cannot be read"):
        grids.read_grid(str(path))
    with pytest.raises(grids.GridError, match="neither a built-in grid"):
        grids.read_grid(str(tmp_path / "missing.json"))


def test_each_run_records_what_the_lab_wrote_down(tiny_results, mnist):
    out, records = tiny_results
    (_, _), (x_test, y_test) = mnist
    assert [r["name"] for r in records] == ["mlp-e1-b50-v0.2-s0-n400-t300", "cnn-e1-b50-v0.2-s0-n400-t300"]
    for record in records:
        run_dir = out / record["name"]
        assert record["backend"] == "numba" and record["device"].startswith("CPU")
        assert record["settings"]["train_samples"] == 400 and record["test_samples"] == 300
        assert set(record["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
        assert all(len(v) == 1 for v in record["history"].values())
        assert record["train_seconds"] == pytest.approx(sum(record["history"]["seconds"]))
        confusion = np.array(record["confusion"])
        assert confusion.shape == (10, 10) and confusion.sum() == 300
        assert record["test_accuracy"] == pytest.approx(np.trace(confusion) / 300)
        for digit in range(10):
            row = confusion[digit]
            assert record["per_digit_accuracy"][str(digit)] == pytest.approx(row[digit] / max(row.sum(), 1))
        model = numnet.load(run_dir / "model.npz")
        saved = np.load(run_dir / "test_probabilities.npy")
        recomputed = model.predict(numnet.data.to_model_input(x_test[:300]))
        np.testing.assert_allclose(saved, recomputed, atol=1e-6)
        assert (saved.argmax(1) == y_test[:300]).mean() == pytest.approx(record["test_accuracy"])
        assert not (run_dir / "checkpoint.npz").exists()


def test_finished_runs_are_skipped(tiny_results, mnist):
    out, records = tiny_results
    stamps = {r["name"]: (out / r["name"] / "model.npz").stat().st_mtime_ns for r in records}
    again = local.run_grid(grids.expand_grid(TINY), "numba", out, verbose=False, mnist=mnist)
    assert again == records
    assert stamps == {r["name"]: (out / r["name"] / "model.npz").stat().st_mtime_ns for r in records}


def test_an_interrupted_run_continues_from_its_checkpoint(tmp_path, mnist, monkeypatch):
    grid = {"model": "mlp", "epochs": 3, "batch_size": 100, "train_samples": 500, "test_samples": 100}
    runs = grids.expand_grid(grid)
    run_dir = tmp_path / grids.run_name(runs[0])
    real_epoch = local.GridProgress.epoch

    def interrupt_after_first_epoch(self, *args):
        real_epoch(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(local.GridProgress, "epoch", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        local.run_grid(runs, "numba", tmp_path, verbose=False, mnist=mnist)
    assert numnet.load(run_dir / "checkpoint.npz").epochs_done == 1
    assert not (run_dir / "run.json").exists()
    first_loss = read_header(run_dir / "checkpoint.npz")["run"]["history"]["loss"]
    assert len(first_loss) == 1

    monkeypatch.setattr(local.GridProgress, "epoch", real_epoch)
    (record,) = local.run_grid(runs, "numba", tmp_path, verbose=False, mnist=mnist)
    assert len(record["history"]["loss"]) == 3 and record["history"]["loss"][0] == first_loss[0]
    assert numnet.load(run_dir / "model.npz").epochs_done == 3
    assert not (run_dir / "checkpoint.npz").exists()


def test_report_images_are_valid_pngs_of_their_intended_size(tiny_report):
    folder = tiny_report.parent
    two_runs = 2
    expected = {
        "samples.png": (800, 860),
        "curves.png": (1200, 450),
        "per_digit.png": (1200, 450),
        "confusion.png": (400 * two_runs, 440),
        "wrong.png": (1200, 160 * two_runs),
        "times.png": (1200, round(100 * (0.45 * (two_runs + 1) + 0.6))),
        "structure_mlp.png": (500, round(55 * (3 + 2))),  # Flatten, Dense, Dense
        "structure_cnn.png": (500, round(55 * (12 + 2))),
    }
    for name, size in expected.items():
        with Image.open(folder / name) as image:
            image.verify()
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and image.size == size, name
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
            assert pixels.std() > 10, f"{name} is blank"
            assert (pixels < 128).mean() > 0.005, f"{name} has almost no ink"


def test_html_report_embeds_every_image_and_the_time_table(tiny_report, tiny_results):
    page = tiny_report.read_text()
    assert page.count('src="data:image/png;base64,') == 8
    assert "<table>" in page and all(r["name"] in page for r in tiny_results[1])
    assert 'src="http' not in page and "<script" not in page


def test_report_leaves_out_unfinished_runs_and_says_so(tiny_results, tmp_path, mnist, capsys):
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(tiny_results[0], folder)
    unfinished = folder / "mlp-e9-b50-v0-s0"
    unfinished.mkdir()
    shutil.copy(folder / "mlp-e1-b50-v0.2-s0-n400-t300" / "model.npz", unfinished / "checkpoint.npz")
    report.build_report(folder, mnist=mnist)
    assert "has not finished; left out" in capsys.readouterr().err
    assert "mlp-e9" not in (folder / "report.html").read_text()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda run: (run / "run.json").write_text("{truncated"), "run.json' is corrupt"),
        (lambda run: (run / "run.json").write_text("{}"), "run.json' lacks"),
        (lambda run: (run / "test_probabilities.npy").unlink(), "test_probabilities.npy' does not exist"),
        (lambda run: (run / "test_probabilities.npy").write_bytes(b"garbage"), "test_probabilities.npy' is corrupt"),
    ],
)
def test_damaged_results_give_a_clear_message(tiny_results, tmp_path, damage, message):
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(tiny_results[0], folder)
    damage(folder / "cnn-e1-b50-v0.2-s0-n400-t300")
    result = subprocess.run([sys.executable, "-m", "numnet.report", str(folder)], capture_output=True, text=True,
                            env=home_with_mnist(tmp_path))  # fmt: skip
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_report_on_a_folder_without_results_says_what_to_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "numnet.report", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "python -m numnet.experiments" in result.stderr


def test_command_lines_run_a_grid_file_and_draw_its_report(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('model = "mlp"\nepochs = [1, 2]\ntrain_samples = 300\ntest_samples = 100\n')
    env = home_with_mnist(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "numnet.experiments", "--grid", str(grid), "--out", str(out), "--quiet",
               "--tensorboard", str(tmp_path / "tensorboard")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "mlp-e1-b100-v0-s0-n300-t100" in result.stdout and "mlp-e2-b100-v0-s0-n300-t100" in result.stdout
    for name in ("mlp-e1-b100-v0-s0-n300-t100", "mlp-e2-b100-v0-s0-n300-t100"):  # side by side in TensorBoard
        events = EventAccumulator(str(tmp_path / "tensorboard" / name / "train"))
        events.Reload()
        losses = [event.value for event in events.Scalars("epoch_loss")]
        assert losses == pytest.approx(json.loads((out / name / "run.json").read_text())["history"]["loss"])
    assert "python -m numnet.report" in result.stdout
    drawn = subprocess.run([sys.executable, "-m", "numnet.report", str(out)], capture_output=True, text=True, env=env)
    assert drawn.returncode == 0, drawn.stderr
    assert (out / "report.html").stat().st_size > 10_000 and (out / "curves.png").exists()


def test_a_damaged_checkpoint_names_itself_and_how_to_start_over(tmp_path, mnist):
    runs = grids.expand_grid({"model": "mlp", "epochs": 2, "train_samples": 300, "test_samples": 100})
    run_dir = tmp_path / grids.run_name(runs[0])
    run_dir.mkdir()
    (run_dir / "checkpoint.npz").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(grids.GridError, match="delete '.*checkpoint.npz' to start run mlp-e2"):
        local.run_grid(runs, "numba", tmp_path, verbose=False, mnist=mnist)


def test_a_checkpoint_without_its_history_costs_only_the_early_history(tmp_path, mnist, capsys):
    runs = grids.expand_grid({"model": "mlp", "epochs": 2, "train_samples": 300, "test_samples": 100})
    run_dir = tmp_path / grids.run_name(runs[0])
    run_dir.mkdir()
    model = numnet.build(numnet.specs.mlp(), backend="numba")
    (x_train, y_train), _ = mnist
    model.fit(numnet.data.to_model_input(x_train[:300]), y_train[:300], epochs=1, verbose=0)
    model.save(run_dir / "checkpoint.npz")  # a plain model file: no run settings or history in it
    (record,) = local.run_grid(runs, "numba", tmp_path, verbose=False, mnist=mnist)
    assert "checkpoint.npz' holds no run history" in capsys.readouterr().err
    assert len(record["history"]["loss"]) == 1 and numnet.load(run_dir / "model.npz").epochs_done == 2


def test_grid_runs_stop_early_and_record_it(tmp_path, mnist):
    grid = {"model": "mlp", "epochs": 30, "early_stopping": 0, "validation_split": 0.2, "batch_size": 50,
            "train_samples": 600, "test_samples": 100}  # fmt: skip
    (record,) = local.run_grid(grids.expand_grid(grid), "numba", tmp_path, verbose=False, mnist=mnist)
    epochs = len(record["history"]["loss"])
    assert record["settings"]["early_stopping"] == 0 and 1 < epochs < 30
    assert numnet.load(tmp_path / record["name"] / "model.npz").epochs_done == epochs


def test_command_line_early_stopping_applies_to_every_run(tmp_path):
    grid = tmp_path / "grid.json"
    settings = {"model": "mlp", "epochs": 30, "validation_split": 0.2, "train_samples": 600, "test_samples": 100}
    grid.write_text(json.dumps(settings))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "numnet.experiments", "--grid", str(grid), "--out", str(out), "--quiet",
               "--early-stopping", "0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=home_with_mnist(tmp_path))
    assert result.returncode == 0, result.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert run_dir.name.endswith("-p0") and record["settings"]["early_stopping"] == 0
    assert len(record["history"]["loss"]) < 30


def test_bad_early_stopping_in_a_grid_is_refused():
    with pytest.raises(grids.GridError, match="early_stopping"):
        grids.expand_grid({"model": "mlp", "epochs": 3, "early_stopping": -1})

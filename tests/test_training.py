"""Training on real MNIST, save/load round trips and the training CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import numnet
from numnet.errors import TrainingDiverged
from numnet.formats.npz import read_header


def test_mlp_one_epoch_on_full_mnist_reaches_95_percent(backend, mnist_inputs):
    (x_train, y_train), (x_test, y_test) = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), backend=backend, seed=0)
    history = model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
    assert history["accuracy"][0] > 0.9
    result = model.evaluate(x_test, y_test)
    assert result["accuracy"] >= 0.95, result


def test_validation_split_takes_the_last_fraction(mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), seed=0)
    history = model.fit(x_train[:1000], y_train[:1000], epochs=1, batch_size=100, validation_split=0.2, verbose=0)
    expected = model.evaluate(x_train[800:1000], y_train[800:1000])
    assert history["val_loss"][0] == pytest.approx(expected["loss"])
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_save_then_load_gives_identical_predictions_and_state(name, backend, mnist_inputs, tmp_path):
    (x_train, y_train), (x_test, _) = mnist_inputs
    model = numnet.build(numnet.specs.resolve(name), backend=backend, seed=1)
    model.fit(x_train[:512], y_train[:512], epochs=1, batch_size=128, verbose=0)
    path = tmp_path / f"{name}.npz"
    model.save(path)
    loaded = numnet.load(path)
    assert loaded.backend == backend and loaded.epochs_done == 1
    np.testing.assert_array_equal(loaded.predict(x_test[:200]), model.predict(x_test[:200]))
    for a, b in zip(loaded.optimizer.get_state(), model.optimizer.get_state()):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.npz"]  # no temp files left behind


def test_saving_over_a_model_replaces_it_whole(tmp_path, mnist_inputs):
    (x_train, y_train), (x_test, _) = mnist_inputs
    path = tmp_path / "m.npz"
    first = numnet.build(numnet.specs.mlp(), seed=0)
    first.save(path)
    second = numnet.build(numnet.specs.mlp(), seed=1)
    second.save(path)
    np.testing.assert_array_equal(numnet.load(path).predict(x_test[:5]), second.predict(x_test[:5]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_diverging_loss_stops_with_the_step_named(mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    spec = numnet.specs.mlp()
    spec["optimizer"] = {"type": "sgd", "learning_rate": 1e30}
    model = numnet.build(spec)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+ of 10"):
        model.fit(x_train[:1000], y_train[:1000], epochs=1, batch_size=100, verbose=0)


def run_cli(*args, env_home, timeout=600):
    env = {**os.environ, "NUMNET_HOME": str(env_home)}
    return subprocess.run(
        [sys.executable, "-m", "numnet.train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_trains_saves_and_records_a_run(tmp_path, mnist):
    home = tmp_path / "home"
    (home).mkdir()
    # share the already-verified cache instead of downloading again
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    result = run_cli("--model", "mlp", "--epochs", "2", "--quiet", env_home=home)
    assert result.returncode == 0, result.stderr
    assert "Total params: 101,770" in result.stdout and "test accuracy" in result.stdout
    record = json.loads((home / "models" / "mlp.run.json").read_text())
    assert record["test_accuracy"] > 0.95 and len(record["history"]["loss"]) == 2
    assert set(record["per_digit_accuracy"]) == {str(d) for d in range(10)}
    assert record["settings"] == {"epochs": 2, "batch_size": 100, "validation_split": 0.2, "seed": 0}
    model = numnet.load(home / "models" / "mlp.npz")
    (_, _), (x_test, y_test) = mnist
    accuracy = model.evaluate(numnet.data.to_model_input(x_test), y_test)["accuracy"]
    assert accuracy == pytest.approx(record["test_accuracy"])


def test_cli_rejects_an_unknown_backend_without_a_traceback(tmp_path):
    result = run_cli("--backend", "mxnet", env_home=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'mxnet'" in result.stderr


def test_cli_reports_a_bad_spec_file_clearly(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"input_shape": [28, 28, 1], "layers": [{"type": "LSTM", "units": 3}]}))
    result = run_cli("--model", str(spec), env_home=tmp_path)
    assert result.returncode == 2
    assert "unknown layer type 'LSTM'" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path, mnist):
    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    env = {**os.environ, "NUMNET_HOME": str(home)}
    # A shell that starts the tests in the background sets SIGINT to ignored, and Python then
    # installs no KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
    process = subprocess.Popen(
        [sys.executable, "-m", "numnet.train", "--model", "mlp", "--epochs", "500", "--batch-size", "128"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    checkpoint = home / "models" / "mlp.checkpoint.npz"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint after the first epoch"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"--resume {checkpoint}" in stderr
    done = numnet.load(checkpoint).epochs_done
    assert done >= 1
    result = run_cli("--resume", str(checkpoint), "--epochs", str(done + 1), "--quiet", env_home=home)
    assert result.returncode == 0, result.stderr
    assert numnet.load(home / "models" / "mlp.npz").epochs_done == done + 1
    assert not checkpoint.exists()


def test_cli_early_stopping_stops_when_validation_loss_stops_improving(tmp_path, mnist):
    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    result = run_cli("--model", "mlp", "--backend", "numba", "--epochs", "40", "--early-stopping", "0", "--quiet",
                     env_home=home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((home / "models" / "mlp.run.json").read_text())
    epochs = len(record["history"]["val_loss"])
    assert record["settings"]["early_stopping"] == 0 and 1 < epochs < 40
    assert record["history"]["val_loss"][-1] >= record["history"]["val_loss"][-2]  # stopped at the first rise
    assert numnet.load(home / "models" / "mlp.npz").epochs_done == epochs


def interrupted_run(out, mnist, epochs=3, batch_size=200):
    """A run of the training CLI's layout, stopped by Ctrl-C after its first epoch."""
    from numnet import runs

    run = runs.new_run("mlp", "mlp", {"epochs": epochs, "batch_size": batch_size, "validation_split": 0.2}, "numba")
    files = runs.RunFiles.named(out, "mlp")

    def interrupt(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runs.train(run, files, mnist, verbose=False, on_epoch=interrupt)
    return files


def test_resume_finishes_the_run_in_its_place_with_its_own_settings_and_whole_history(tmp_path, mnist):
    home, out = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    files = interrupted_run(out, mnist)
    first_loss = read_header(files.checkpoint)["run"]["history"]["loss"]
    assert len(first_loss) == 1

    refused = run_cli("--resume", str(files.checkpoint), "--batch-size", "50", env_home=home)
    assert refused.returncode == 2 and "keeps the settings it started with; drop --batch-size" in refused.stderr

    result = run_cli("--resume", str(files.checkpoint), "--quiet", env_home=home)
    assert result.returncode == 0, result.stderr
    record = json.loads(files.record.read_text())
    assert record["settings"] == {"epochs": 3, "batch_size": 200, "validation_split": 0.2}
    assert record["backend"] == "numba" and len(record["history"]["loss"]) == 3
    assert record["history"]["loss"][0] == first_loss[0]
    assert numnet.load(files.model).epochs_done == 3
    assert not files.checkpoint.exists() and not (home / "models").exists()


def test_report_draws_the_training_clis_records(tmp_path, mnist):
    home, out = tmp_path / "home", tmp_path / "models"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    result = run_cli("--model", "mlp", "--backend", "numba", "--epochs", "1", "--out", str(out), "--quiet",
                     env_home=home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    env = {**os.environ, "NUMNET_HOME": str(home)}
    drawn = subprocess.run([sys.executable, "-m", "numnet.report", str(out)], capture_output=True, text=True, env=env)
    assert drawn.returncode == 0, drawn.stderr
    page = (out / "report.html").read_text()
    assert "mlp" in page and (out / "confusion.png").stat().st_size > 10_000


def test_resuming_a_copied_run_finishes_in_the_copy_and_leaves_the_original_alone(tmp_path, mnist):
    """The checkpoint's header names the folder it was written in; a resumed run ignores that and
    finishes beside the checkpoint it was given (or in --out)."""
    import shutil

    home, original, copy = tmp_path / "home", tmp_path / "original", tmp_path / "copy"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    files = interrupted_run(original, mnist, epochs=2)
    shutil.copytree(original, copy)
    before = {path.name: path.read_bytes() for path in original.iterdir()}
    result = run_cli("--resume", str(copy / "mlp.checkpoint.npz"), "--quiet", env_home=home)
    assert result.returncode == 0, result.stderr
    assert {path.name: path.read_bytes() for path in original.iterdir()} == before
    assert files.checkpoint.exists() and not files.model.exists()
    assert numnet.load(copy / "mlp.npz").epochs_done == 2 and (copy / "mlp.run.json").exists()
    assert not (copy / "mlp.checkpoint.npz").exists()  # its own checkpoint, rewritten by this run

    elsewhere = tmp_path / "elsewhere"
    result = run_cli("--resume", str(files.checkpoint), "--out", str(elsewhere), "--quiet", env_home=home)
    assert result.returncode == 0, result.stderr
    assert numnet.load(elsewhere / "mlp.npz").epochs_done == 2 and files.checkpoint.exists()


def test_a_checkpoint_naming_its_run_with_a_path_is_refused(tmp_path, mnist):
    from numnet.formats.npz import ModelFile, write_model

    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    files = interrupted_run(tmp_path / "run", mnist)
    header = read_header(files.checkpoint)
    model = numnet.load(files.checkpoint)
    with ModelFile(files.checkpoint) as saved:
        weights, state = saved.arrays([w.shape for w in model.get_weights()],
                                      [s.shape for s in model.optimizer.get_state()])  # fmt: skip
    header["run"]["name"] = "../../escaped"
    write_model(files.checkpoint, header["spec"], header["backend"], header["epochs_done"], weights, state,
                run=header["run"])  # fmt: skip
    result = run_cli("--resume", str(files.checkpoint), "--quiet", env_home=home)
    assert result.returncode == 2 and "names its run '../../escaped', which is no safe file name" in result.stderr
    assert not (tmp_path.parent / "escaped.npz").exists() and not list(tmp_path.rglob("*escaped*"))


@pytest.mark.parametrize(("field", "value", "message"),
                         [("settings", {"epochs": "3", "batch_size": 200}, "run setting 'epochs' must be an integer"),
                          ("history", {"loss": 5, "accuracy": ["x"]}, None)])  # fmt: skip
def test_wrong_types_inside_a_checkpoint_are_named_or_left_out(tmp_path, mnist, field, value, message):
    from numnet import runs
    from numnet.errors import RunError
    from numnet.formats.npz import ModelFile, write_model

    files = interrupted_run(tmp_path / "run", mnist)
    model = numnet.load(files.checkpoint)
    with ModelFile(files.checkpoint) as saved:
        header = saved.header
        weights, state = saved.arrays([w.shape for w in model.get_weights()],
                                      [s.shape for s in model.optimizer.get_state()])  # fmt: skip
    header["run"][field] = value
    write_model(files.checkpoint, header["spec"], header["backend"], header["epochs_done"], weights, state,
                run=header["run"])  # fmt: skip
    if message:
        with pytest.raises(RunError, match=message):
            runs.resume_run(files.checkpoint)
    else:
        assert runs.resume_run(files.checkpoint).history == {}  # the damaged history is left out, not trusted


def test_a_resumed_run_equals_an_unbroken_one_bit_for_bit(tmp_path, mnist):
    """The checkpoint carries where the shuffle, dropout and augmentation generators stand, so the
    epochs after a break draw what they would have drawn (the seed CNN has dropout)."""
    import shutil

    from numnet import runs

    settings = {"epochs": 3, "batch_size": 128, "train_samples": 512, "test_samples": 100, "seed": 0}
    unbroken = runs.new_run("a", "cnn", settings, "numba")
    runs.train(unbroken, runs.RunFiles.folder(tmp_path / "a"), mnist, verbose=False)
    broken = runs.new_run("b", "cnn", {**settings, "epochs": 2}, "numba")
    files = runs.RunFiles.folder(tmp_path / "b")
    runs.train(
        broken, files, mnist, verbose=False, on_epoch=lambda _: shutil.copy(files.checkpoint, tmp_path / "ck.npz")
    )
    resumed = runs.resume_run(tmp_path / "ck.npz")
    resumed.settings["epochs"] = 3
    runs.train(resumed, runs.RunFiles.folder(tmp_path / "c"), mnist, verbose=False)
    for a, c in zip(numnet.load(tmp_path / "a" / "model.npz").get_weights(),
                    numnet.load(tmp_path / "c" / "model.npz").get_weights()):  # fmt: skip
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("state", ["x", {"dropout": 1}, "pcg-out-of-range"])
def test_a_model_file_with_a_bad_random_state_is_refused_by_name(tmp_path, state):
    import json
    import zipfile

    from numnet.errors import ModelFileError

    numnet.build(numnet.specs.cnn()).save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members["header.json"])
    if state == "pcg-out-of-range":
        state = header["random_state"]
        state["dropout"]["state"]["inc"] = 1 << 130
    header["random_state"] = state
    members["header.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(ModelFileError, match="random_state"):
        numnet.load(tmp_path / "bad.npz")

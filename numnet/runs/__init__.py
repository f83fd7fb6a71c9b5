"""One training run, start to finish: build or resume, train with a checkpoint after every epoch,
measure on the test set and write the run record.

`numnet.train` and `numnet.experiments` both drive runs through here, so they share one record
format (which `numnet.report` draws) and one way to resume: the checkpoint carries the run's
settings and history in its header, so an interrupted run finishes as it was started, in its
original place, with its whole history.
"""

from __future__ import annotations

import datetime
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import numnet
from numnet import data, specs
from numnet.backends import get_backend
from numnet.callbacks import EarlyStopping, LambdaCallback, TensorBoard
from numnet.errors import NumnetError, RunError, preview
from numnet.formats.npz import read_header
from numnet.formats.save import save_model
from numnet.io import atomic_write, numnet_home, write_json
from numnet.machine import describe_device
from numnet.settings import SETTINGS, check_settings, is_number


@dataclass(frozen=True)
class RunFiles:
    """Where one run keeps its files: the model, its record, its checkpoint, its test probabilities."""

    model: Path
    record: Path
    checkpoint: Path
    probabilities: Path

    @classmethod
    def folder(cls, folder: Path) -> RunFiles:
        """One folder per run (the experiments grid): model.npz, run.json, ..."""
        return cls(folder / "model.npz", folder / "run.json", folder / "checkpoint.npz",
                   folder / "test_probabilities.npy")  # fmt: skip

    @classmethod
    def named(cls, folder: Path, name: str) -> RunFiles:
        """Runs side by side in one folder (the training CLI): mlp.npz, mlp.run.json, ..."""
        return cls(folder / f"{name}.npz", folder / f"{name}.run.json", folder / f"{name}.checkpoint.npz",
                   folder / f"{name}.test_probabilities.npy")  # fmt: skip

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> RunFiles:
        if checkpoint.name == "checkpoint.npz":
            return cls.folder(checkpoint.parent)
        return cls.named(checkpoint.parent, checkpoint.name.removesuffix(".npz").removesuffix(".checkpoint"))


@dataclass
class Run:
    """A run in progress: what it trains, with which settings, and the history so far."""

    name: str
    model_choice: str  # mlp, cnn or a spec file
    settings: dict[str, Any]
    model: Any
    history: dict[str, list[float]] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """What the checkpoint header carries to resume this run."""
        return {"name": self.name, "model": self.model_choice, "settings": self.settings, "history": self.history}


def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The training settings of a run, without unset options."""
    return {key: settings[key] for key in SETTINGS if settings.get(key) is not None}


def new_run(name: str, model_choice: str, settings: dict[str, Any], backend: str, **build_options: Any) -> Run:
    settings = clean_settings(settings)
    spec = specs.resolve(model_choice, settings)
    model = get_backend(backend).build(spec, seed=settings.get("seed", 0), **build_options)
    return Run(name, model_choice, settings, model)


def resume_run(checkpoint: Path, backend: str | None = None, fallback: dict[str, Any] | None = None) -> Run:
    """The run a checkpoint holds, on its own backend unless another is named.

    A checkpoint written by an older numnet (or by `model.save`) has no run state: `fallback`
    (name, model_choice, settings) says what run it is, and the epochs before it are missing from
    the history (with a warning).
    """
    header = read_header(checkpoint)
    model = numnet.load(checkpoint, backend=backend)
    state = header.get("run")
    if not isinstance(state, dict) or not isinstance(state.get("settings"), dict):
        if fallback is None:
            raise RunError(f"'{checkpoint}' holds no run settings; start the run again")
        print(f"warning: '{checkpoint}' holds no run history; the first {model.epochs_done} epoch(s) of this run "
              "will be missing from its history", file=sys.stderr)  # fmt: skip
        return Run(fallback["name"], fallback["model_choice"], clean_settings(fallback["settings"]), model)
    name = state.get("name")
    if not isinstance(name, str) or not specs.SAFE_NAME.fullmatch(name):
        raise RunError(f"'{checkpoint}' names its run {preview(name)}, which is no safe file name; start the run again")
    history = state.get("history") if isinstance(state.get("history"), dict) else {}
    history = {str(key): values[: model.epochs_done] for key, values in history.items()
               if isinstance(values, list) and all(map(is_number, values))}  # fmt: skip
    settings = check_settings(clean_settings(state["settings"]), RunError, where=f"'{checkpoint}': run setting ")
    return Run(name, str(state.get("model")), settings, model, history)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    """Rows are the true digits, columns the predicted ones."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def _subset(mnist, settings: dict[str, Any]):
    (x_train, y_train), (x_test, y_test) = mnist
    n_train, n_test = settings.get("train_samples"), settings.get("test_samples")
    return (x_train[:n_train], y_train[:n_train]), (x_test[:n_test], y_test[:n_test])


def train(
    run: Run, files: RunFiles, mnist=None, verbose: bool = True, on_epoch=None, tensorboard: Path | None = None
) -> dict[str, Any]:
    """Trains `run` to its epochs, checkpointing after each one, then measures it and writes its record.

    Ctrl-C (KeyboardInterrupt) leaves the checkpoint of the last complete epoch as it is: a
    half-trained epoch is never saved. `on_epoch(run)` runs after each epoch's checkpoint; with
    `tensorboard`, each epoch is logged there too (numnet.callbacks.TensorBoard).
    """
    model, settings = run.model, run.settings
    mnist = mnist if mnist is not None else data.load_mnist()
    (x_train, y_train), (x_test, y_test) = _subset(mnist, settings)
    x_train, x_test = data.to_model_input(x_train), data.to_model_input(x_test)
    past = run.history

    def merged() -> dict[str, list[float]]:
        now = model.history or {}
        return {key: past.get(key, []) + now.get(key, []) for key in {**past, **now}}

    def checkpoint(epoch: int, logs: dict[str, float]) -> None:
        state = {**run.state(), "history": merged(), "checkpoint": str(files.checkpoint.absolute())}
        try:
            save_model(model, files.checkpoint, run=state)
        except OSError as error:
            raise _rescued(model, state, files.checkpoint, error) from None
        if on_epoch is not None:
            on_epoch(run)

    callbacks = []
    if settings.get("early_stopping") is not None:
        monitor = "val_loss" if settings.get("validation_split") else "loss"
        callbacks.append(EarlyStopping(monitor, patience=settings["early_stopping"], restore_best_weights=True))
    if tensorboard is not None:
        callbacks.append(TensorBoard(tensorboard))
    callbacks.append(LambdaCallback(on_epoch_end=checkpoint))
    model.fit(
        x_train, y_train, epochs=max(settings["epochs"] - model.epochs_done, 0),
        batch_size=settings["batch_size"], validation_split=settings.get("validation_split", 0.0),
        verbose=int(verbose), callbacks=callbacks,
    )  # fmt: skip
    run.history = merged()
    return finish(run, files, x_test, y_test)


def finish(run: Run, files: RunFiles, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """Measures the trained model on the test set, saves it and its record, removes the checkpoint."""
    model = run.model
    start = time.perf_counter()
    probabilities = model.predict(x_test)
    test_seconds = time.perf_counter() - start
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y_test, predicted, model.num_classes)
    record = {
        "name": run.name,
        "model": run.model_choice,
        "settings": run.settings,
        "spec": model.spec,
        "params": model.count_params(),
        "backend": model.backend,
        "device": describe_device(model),
        "train_seconds": float(sum(run.history.get("seconds", []))),
        "test_seconds": test_seconds,
        "history": run.history,
        "test_samples": int(len(y_test)),
        "test_accuracy": float((predicted == y_test).mean()),
        "per_digit_accuracy": {str(d): float(matrix[d, d] / max(matrix[d].sum(), 1)) for d in range(10)},
        "confusion": matrix.tolist(),
        "model_file": files.model.name,
        "probabilities_file": files.probabilities.name,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "numnet_version": numnet.__version__,
    }
    try:
        save_model(model, files.model)
        with atomic_write(files.probabilities) as f:
            np.save(f, probabilities.astype(np.float32), allow_pickle=False)
        write_json(files.record, record)
    except OSError as error:
        state = {**run.state(), "checkpoint": str(files.checkpoint.absolute())}
        raise _rescued(model, state, files.model, error) from None
    files.checkpoint.unlink(missing_ok=True)
    return record


def rescue_folders() -> list[Path]:
    """Where a run goes when its own folder cannot be written: $NUMNET_HOME, else the temp folder."""
    return [numnet_home() / "rescued", Path(tempfile.gettempdir()) / "numnet-rescued"]


def _rescued(model: Any, state: dict[str, Any], path: Path, error: OSError) -> RunError:
    """Saves the run's checkpoint in the first rescue folder that takes it; the error says where."""
    problem = f"cannot write '{path}': {error.strerror or error}"
    for folder in rescue_folders():
        name = state["name"] if specs.SAFE_NAME.fullmatch(state["name"]) else "run"
        rescue = folder / f"{name}.checkpoint.npz"
        for copy in range(2, 100):
            if not rescue.exists():
                break
            rescue = folder / f"{name}-{copy}.checkpoint.npz"
        try:
            save_model(model, rescue, run=state)
        except OSError:
            continue
        return RunError(
            f"{problem}. The run after epoch {model.epochs_done} is safe in '{rescue}'; make room (or fix the "
            f"folder), then finish it where it started with: python -m numnet.train --resume {rescue} "
            f"--out {path.parent}"
        )
    return RunError(f"{problem}, nor in any of {[str(f) for f in rescue_folders()]}; the trained model is lost")


def resumed_files(checkpoint: Path, out: Path | None = None) -> RunFiles:
    """Where a resumed run finishes: in `out` if given, else beside its checkpoint. The checkpoint's
    header says only how its run names its files (a grid's run folder, or the training CLI's NAME.*),
    never where they go: a copied or hostile checkpoint writes nowhere the user did not choose."""
    try:
        started = read_header(checkpoint).get("run", {}).get("checkpoint")
    except (NumnetError, AttributeError):
        started = None
    name = Path(started).name if isinstance(started, str) else checkpoint.name
    layout = name == "checkpoint.npz" or (
        name.endswith(".checkpoint.npz") and specs.SAFE_NAME.fullmatch(name.removesuffix(".checkpoint.npz"))
    )
    return RunFiles.of_checkpoint((out or checkpoint.parent) / (name if layout else checkpoint.name))

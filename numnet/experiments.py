"""Experiment grids: the lab's tables, trained, measured on the whole test set and recorded.

`python -m numnet.experiments --grid seed-cnn --backend numba --out runs/seed-cnn`

A grid is a mapping whose list values are crossed: {"model": "mlp", "epochs": [15, 25],
"validation_split": [0.1, 0.2]} is four runs. Each run gets a folder under --out holding run.json
(settings, backend, device, times, history, test accuracy, per-digit accuracy, confusion matrix),
the saved model and the test-set probabilities the report draws from. Finished runs are skipped;
an interrupted run continues from the checkpoint written after every epoch.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import numnet
from numnet import data, specs
from numnet.backends import BACKENDS
from numnet.errors import NumnetError, exit_status
from numnet.files import atomic_write, read_header, write_json
from numnet.machine import describe_device

# The lab's Table 1 (CNN) and Table 2 (MLP).
GRIDS: dict[str, dict[str, Any]] = {
    "seed-cnn": {"model": "cnn", "epochs": [25, 50, 100], "batch_size": 1024, "validation_split": 0.0},
    "seed-mlp": {
        "model": "mlp",
        "epochs": [1500, 2500, 4900],
        "validation_split": [0.1, 0.2, 0.3],
        "batch_size": 100,
    },
}
RUN_DEFAULTS: dict[str, Any] = {"batch_size": 100, "validation_split": 0.0, "seed": 0}
RUN_KEYS = {"model", "epochs", "batch_size", "validation_split", "seed", "train_samples", "test_samples"}
RECORD = "run.json"


class GridError(NumnetError):
    """A grid description or a result folder that cannot be used."""


def read_grid(choice: str) -> dict[str, Any]:
    """A built-in grid by name, or a JSON/TOML grid file."""
    if choice in GRIDS:
        return GRIDS[choice]
    path = Path(choice)
    if not path.is_file():
        raise GridError(f"grid {choice!r} is neither a built-in grid ({', '.join(GRIDS)}) nor a file")
    try:
        text = path.read_text()
        grid = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise GridError(f"grid file '{path}' cannot be read: {error}") from None
    if not isinstance(grid, dict):
        raise GridError(f"grid file '{path}' must hold a mapping of settings, not {type(grid).__name__}")
    return grid


def _check_run(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = set(settings) - RUN_KEYS
    if unknown:
        raise GridError(f"unknown grid setting(s) {sorted(unknown)}; known: {sorted(RUN_KEYS)}")
    if "model" not in settings or "epochs" not in settings:
        raise GridError("a grid needs at least 'model' and 'epochs'")
    for key in ("epochs", "batch_size", "seed", "train_samples", "test_samples"):
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise GridError(f"grid setting {key!r} must be a non-negative integer, got {value!r}")
    if settings["epochs"] < 1 or settings["batch_size"] < 1:
        raise GridError("grid settings 'epochs' and 'batch_size' must be at least 1")
    split = settings["validation_split"]
    if isinstance(split, bool) or not isinstance(split, int | float) or not 0 <= split < 1:
        raise GridError(f"grid setting 'validation_split' must be in [0, 1), got {split!r}")
    if not isinstance(settings["model"], str):
        raise GridError(f"grid setting 'model' must be mlp, cnn or a spec file, got {settings['model']!r}")
    return settings


def expand_grid(grid: dict[str, Any], scale: float = 1.0) -> list[dict[str, Any]]:
    """One settings dict per run: list values crossed in the order given, epochs scaled."""
    if scale <= 0:
        raise GridError(f"--scale must be positive, got {scale}")
    keys = list(grid)
    choices = [value if isinstance(value, list) else [value] for value in grid.values()]
    if any(len(c) == 0 for c in choices):
        raise GridError("a grid setting has an empty list of values")
    runs = []
    for combination in itertools.product(*choices):
        settings = _check_run({**RUN_DEFAULTS, **dict(zip(keys, combination))})
        settings["epochs"] = max(1, round(settings["epochs"] * scale))
        runs.append(settings)
    return runs


def run_name(settings: dict[str, Any]) -> str:
    model = Path(settings["model"]).stem
    name = f"{model}-e{settings['epochs']}-b{settings['batch_size']}-v{settings['validation_split']:g}"
    name += f"-s{settings['seed']}"
    if settings.get("train_samples"):
        name += f"-n{settings['train_samples']}"
    return name


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Rows are the true digits, columns the predicted ones."""
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def read_record(run_dir: Path) -> dict[str, Any]:
    """A finished run's record; GridError names the file when it is missing or damaged."""
    path = run_dir / RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise GridError(f"'{path}' is missing: the run did not finish; run the grid again to complete it") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise GridError(f"'{path}' is corrupt ({error}); delete the folder and run the grid again") from None
    required = {"name", "settings", "backend", "history", "test_accuracy", "per_digit_accuracy", "confusion"}
    if not isinstance(record, dict) or not required <= set(record):
        missing = sorted(required - set(record)) if isinstance(record, dict) else sorted(required)
        raise GridError(f"'{path}' lacks {missing}; delete the folder and run the grid again")
    return record


def read_probabilities(run_dir: Path, n_test: int) -> np.ndarray:
    path = run_dir / "test_probabilities.npy"
    try:
        probabilities = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise GridError(f"'{path}' is missing; delete the run folder and run the grid again") from None
    except (OSError, ValueError) as error:
        raise GridError(f"'{path}' is corrupt ({error}); delete the run folder and run the grid again") from None
    if probabilities.shape != (n_test, 10):
        raise GridError(f"'{path}' holds shape {probabilities.shape}; expected ({n_test}, 10)")
    return probabilities


def _subset(mnist, settings: dict[str, Any]):
    (x_train, y_train), (x_test, y_test) = mnist
    n_train, n_test = settings.get("train_samples"), settings.get("test_samples")
    return (x_train[:n_train], y_train[:n_train]), (x_test[:n_test], y_test[:n_test])


def _build(settings: dict[str, Any], backend: str):
    spec = specs.resolve(settings["model"])
    return numnet.build(spec, backend=backend, seed=settings["seed"])


def _past_history(progress_file: Path, epochs_done: int) -> dict[str, list[float]]:
    """The history of the epochs before an interruption; empty (with a warning) if it was lost."""
    try:
        history = json.loads(progress_file.read_text())["history"]
        return {str(key): list(values)[:epochs_done] for key, values in history.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        print(f"warning: '{progress_file}' is unreadable ({error}); the first {epochs_done} epoch(s) of this run "
              "will be missing from its history", file=sys.stderr)  # fmt: skip
        return {}


class GridProgress:
    """One progress line for the whole grid, counted in epochs."""

    def __init__(self, runs: list[dict[str, Any]], already: list[int], enabled: bool) -> None:
        self.bar = tqdm(
            total=sum(r["epochs"] for r in runs), initial=sum(already), desc="grid", unit="epoch",
            disable=not enabled, dynamic_ncols=True,
        )  # fmt: skip

    def epoch(self, name: str, index: int, count: int, history: dict[str, list[float]]) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(f"run {index}/{count} {name} loss {history['loss'][-1]:.4f}")

    def close(self) -> None:
        self.bar.close()


def run_one(
    settings: dict[str, Any], backend: str, run_dir: Path, mnist, progress: GridProgress, index: int, count: int
) -> dict[str, Any]:
    """Trains one run (from its checkpoint when there is one) and writes its record."""
    name = run_name(settings)
    checkpoint, progress_file = run_dir / "checkpoint.npz", run_dir / "progress.json"
    (x_train, y_train), (x_test, y_test) = _subset(mnist, settings)
    x_train, x_test = data.to_model_input(x_train), data.to_model_input(x_test)
    past: dict[str, list[float]] = {}
    if checkpoint.exists():
        try:
            model = numnet.load(checkpoint, backend=backend)
        except NumnetError as error:
            raise GridError(f"{error}; delete '{checkpoint}' to start run {name} over") from None
        past = _past_history(progress_file, model.epochs_done)
    else:
        model = _build(settings, backend)

    def save_checkpoint(model, history):
        model.save(checkpoint)
        merged = {key: past.get(key, []) + values for key, values in history.items()}
        write_json(progress_file, {"history": merged})
        progress.epoch(name, index, count, history)

    history = model.fit(
        x_train, y_train,
        epochs=settings["epochs"] - model.epochs_done,
        batch_size=settings["batch_size"], validation_split=settings["validation_split"],
        verbose=0, on_epoch_end=save_checkpoint,
    )  # fmt: skip
    history = {key: past.get(key, []) + values for key, values in history.items()}
    start = time.perf_counter()
    probabilities = model.predict(x_test).astype(np.float32)
    test_seconds = time.perf_counter() - start
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y_test, predicted)
    per_digit = {str(d): float(matrix[d, d] / max(matrix[d].sum(), 1)) for d in range(10)}
    model.save(run_dir / "model.npz")
    with atomic_write(run_dir / "test_probabilities.npy") as f:
        np.save(f, probabilities, allow_pickle=False)
    record = {
        "name": name,
        "settings": settings,
        "spec": model.spec,
        "params": model.count_params(),
        "backend": backend,
        "device": describe_device(model),
        "train_seconds": float(sum(history["seconds"])),
        "test_seconds": test_seconds,
        "history": history,
        "test_samples": int(len(y_test)),
        "test_accuracy": float((predicted == y_test).mean()),
        "per_digit_accuracy": per_digit,
        "confusion": matrix.tolist(),
        "model_file": "model.npz",
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "numnet_version": numnet.__version__,
    }
    write_json(run_dir / RECORD, record)
    checkpoint.unlink(missing_ok=True)
    progress_file.unlink(missing_ok=True)
    return record


def run_grid(
    runs: list[dict[str, Any]], backend: str, out: Path, verbose: bool = True, mnist=None
) -> list[dict[str, Any]]:
    """Runs every settings dict not already finished under `out`; returns all records in grid order."""
    out.mkdir(parents=True, exist_ok=True)
    names = [run_name(settings) for settings in runs]
    if len(set(names)) != len(names):
        raise GridError("the grid repeats a run; every combination of settings must be distinct")
    finished = {name for name in names if (out / name / RECORD).exists()}
    already = []
    for name, settings in zip(names, runs):
        if name in finished:
            already.append(settings["epochs"])
        elif (out / name / "checkpoint.npz").exists():
            try:
                already.append(read_header(out / name / "checkpoint.npz").get("epochs_done", 0))
            except NumnetError:
                pass  # run_one says what is wrong with it when it gets there
    write_json(out / "grid.json", {"backend": backend, "runs": runs})
    mnist = mnist if mnist is not None else data.load_mnist()
    progress = GridProgress(runs, already, enabled=verbose)
    records = []
    try:
        for index, (name, settings) in enumerate(zip(names, runs), start=1):
            if name in finished:
                records.append(read_record(out / name))
                continue
            records.append(run_one(settings, backend, out / name, mnist, progress, index, len(runs)))
            if verbose:
                tqdm.write(f"{name}: test accuracy {records[-1]['test_accuracy']:.2%} "
                           f"in {records[-1]['train_seconds']:.0f} s")  # fmt: skip
    finally:
        progress.close()
    return records


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m numnet.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="seed-cnn", help=f"{' | '.join(GRIDS)} | a JSON/TOML grid file")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="numba")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every run's epochs (quick runs)")
    parser.add_argument("--out", type=Path, help="default: runs/<grid name>")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path("runs") / Path(args.grid).stem
    try:
        runs = expand_grid(read_grid(args.grid), args.scale)
        for settings in runs:
            specs.resolve(settings["model"])
        print(f"{len(runs)} run(s), {sum(r['epochs'] for r in runs)} epochs on {args.backend}; results in {out}")
        start = time.perf_counter()
        records = run_grid(runs, args.backend, out, verbose=not args.quiet)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue from the last finished epoch", file=sys.stderr)
        return 130
    except NumnetError as error:
        return exit_status(error)
    print(f"\n{'run':<34} {'test acc':>9} {'train s':>9}")
    for record in records:
        print(f"{record['name']:<34} {record['test_accuracy']:>9.2%} {record['train_seconds']:>9.1f}")
    print(f"done in {time.perf_counter() - start:.0f} s; draw the report with: python -m numnet.report {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

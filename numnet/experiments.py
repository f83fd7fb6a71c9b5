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
import itertools
import json
import math
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from tqdm import tqdm

from numnet import data, runs, specs
from numnet.arguments import non_negative_int, positive_float
from numnet.backends import BACKENDS
from numnet.errors import NumnetError, exit_status
from numnet.files import read_header
from numnet.io import write_json

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
RUN_KEYS = {"model", *runs.SETTINGS}


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
        text = path.read_text(encoding="utf-8")
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
    for key in ("epochs", "batch_size", "seed", "train_samples", "test_samples", "early_stopping"):
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
    grid_runs = [
        _check_run({**RUN_DEFAULTS, **dict(zip(keys, combination))}) for combination in itertools.product(*choices)
    ]
    if len({run_name(settings) for settings in grid_runs}) != len(grid_runs):
        raise GridError("the grid repeats a run; every combination of settings must be distinct")
    unscaled = sorted({settings["epochs"] for settings in grid_runs})
    for settings in grid_runs:
        settings["epochs"] = max(1, math.floor(settings["epochs"] * scale + 0.5))  # at least one, halves up
    if len({run_name(settings) for settings in grid_runs}) != len(grid_runs):
        smallest_gap = min(b - a for a, b in zip(unscaled, unscaled[1:]))
        raise GridError(
            f"--scale {scale:g} gives runs of {', '.join(map(str, unscaled))} epochs the same number of epochs; "
            f"use --scale {1 / smallest_gap:g} or more to keep them apart"
        )
    return grid_runs


def run_name(settings: dict[str, Any]) -> str:
    model = Path(settings["model"]).stem
    name = f"{model}-e{settings['epochs']}-b{settings['batch_size']}-v{settings['validation_split']:g}"
    name += f"-s{settings['seed']}"
    if settings.get("train_samples"):
        name += f"-n{settings['train_samples']}"
    if settings.get("test_samples"):
        name += f"-t{settings['test_samples']}"
    if settings.get("early_stopping") is not None:
        name += f"-p{settings['early_stopping']}"
    return name


class GridProgress:
    """One progress line for the whole grid, counted in epochs."""

    def __init__(self, grid_runs: list[dict[str, Any]], already: list[int], enabled: bool) -> None:
        self.bar = tqdm(
            total=sum(r["epochs"] for r in grid_runs), initial=sum(already), desc="grid", unit="epoch",
            disable=not enabled, dynamic_ncols=True,
        )  # fmt: skip

    def epoch(self, name: str, index: int, count: int, history: dict[str, list[float]]) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(f"run {index}/{count} {name} loss {history['loss'][-1]:.4f}")

    def skip(self, epochs: int) -> None:
        """Epochs a run will not train (it stopped early)."""
        self.bar.update(epochs)

    def close(self) -> None:
        self.bar.close()


def run_one(
    settings: dict[str, Any], backend: str, run_dir: Path, mnist, progress: GridProgress, index: int, count: int
) -> dict[str, Any]:
    """Trains one run (from its checkpoint when there is one) and writes its record."""
    name = run_name(settings)
    files = runs.RunFiles.folder(run_dir)
    if files.checkpoint.exists():
        try:
            fallback = {"name": name, "model_choice": settings["model"], "settings": settings}
            run = runs.resume_run(files.checkpoint, backend, fallback=fallback)
        except NumnetError as error:
            raise GridError(f"{error}; delete '{files.checkpoint}' to start run {name} over") from None
    else:
        run = runs.new_run(name, settings["model"], settings, backend)

    def epoch_done(run: runs.Run) -> None:
        progress.epoch(name, index, count, run.model.history)

    record = runs.train(run, files, mnist, verbose=False, on_epoch=epoch_done)
    progress.skip(settings["epochs"] - len(record["history"]["loss"]))
    return record


def run_grid(
    grid_runs: list[dict[str, Any]], backend: str, out: Path, verbose: bool = True, mnist=None
) -> list[dict[str, Any]]:
    """Runs every settings dict not already finished under `out`; returns all records in grid order."""
    out.mkdir(parents=True, exist_ok=True)
    names = [run_name(settings) for settings in grid_runs]
    if len(set(names)) != len(names):
        raise GridError("the grid repeats a run; every combination of settings must be distinct")
    finished = {name for name in names if runs.RunFiles.folder(out / name).record.exists()}
    already = []
    for name, settings in zip(names, grid_runs):
        if name in finished:
            already.append(settings["epochs"])
        elif (out / name / "checkpoint.npz").exists():
            try:
                already.append(read_header(out / name / "checkpoint.npz").get("epochs_done", 0))
            except NumnetError:
                pass  # run_one says what is wrong with it when it gets there
    write_json(out / "grid.json", {"backend": backend, "runs": grid_runs})
    mnist = mnist if mnist is not None else data.load_mnist()
    progress = GridProgress(grid_runs, already, enabled=verbose)
    records = []
    try:
        for index, (name, settings) in enumerate(zip(names, grid_runs), start=1):
            if name in finished:
                records.append(runs.read_record(runs.RunFiles.folder(out / name).record))
                continue
            records.append(run_one(settings, backend, out / name, mnist, progress, index, len(grid_runs)))
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
    parser.add_argument("--scale", type=positive_float, default=1.0, help="multiplies every run's epochs (quick runs)")
    parser.add_argument("--out", type=Path, help="default: runs/<grid name>")
    parser.add_argument("--early-stopping", type=non_negative_int, metavar="PATIENCE",
                        help="every run stops when its validation loss (or loss) has not improved for PATIENCE "
                        "epochs, keeping the best weights (a grid's own early_stopping wins)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path("runs") / Path(args.grid).stem
    try:
        grid = read_grid(args.grid)
        if args.early_stopping is not None:
            grid = {"early_stopping": args.early_stopping, **grid}
        grid_runs = expand_grid(grid, args.scale)
        for settings in grid_runs:
            specs.resolve(settings["model"], settings)
        epochs = sum(settings["epochs"] for settings in grid_runs)
        print(f"{len(grid_runs)} run(s), {epochs} epochs on {args.backend}; results in {out}")
        start = time.perf_counter()
        records = run_grid(grid_runs, args.backend, out, verbose=not args.quiet)
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

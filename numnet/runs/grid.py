"""Experiment grids: a mapping whose list values are crossed, e.g. {"model": "mlp", "epochs": [15, 25],
"validation_split": [0.1, 0.2]} is four runs; each run's settings are checked against the one table of
run settings (`numnet.settings`) before anything runs, and each run is named after its settings."""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from numnet.errors import NumnetError
from numnet.io import read_text
from numnet.settings import SETTINGS, check_settings

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
RUN_DEFAULTS: dict[str, Any] = {name: s.default for name, s in SETTINGS.items() if s.default is not None}
RUN_KEYS = {"model", *SETTINGS}
MAX_RUNS = 10_000  # far above any table a lab runs, and a bound on what a grid file makes numnet build
MAX_EPOCHS = 10_000_000  # what --scale may make of a run: more would never finish


class GridError(NumnetError):
    """A grid description or a result folder that cannot be used."""


def read_grid(choice: str) -> dict[str, Any]:
    """A built-in grid by name, or a JSON/TOML grid file."""
    if choice in GRIDS:
        return GRIDS[choice]
    path = Path(choice)
    if not path.exists():
        raise GridError(f"grid {choice!r} is neither a built-in grid ({', '.join(GRIDS)}) nor a file")
    text = read_text(path, "grid file", GridError)
    try:
        grid = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, RecursionError) as error:
        raise GridError(f"grid file '{path}' cannot be read: {type(error).__name__}: {error}") from None
    if not isinstance(grid, dict):
        raise GridError(f"grid file '{path}' must hold a mapping of settings, not {type(grid).__name__}")
    return grid


def _check_run(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = set(settings) - RUN_KEYS
    if unknown:
        raise GridError(f"unknown grid setting(s) {sorted(unknown)}; known: {sorted(RUN_KEYS)}")
    if "model" not in settings or "epochs" not in settings:
        raise GridError("a grid needs at least 'model' and 'epochs'")
    if not isinstance(settings["model"], str):
        raise GridError(f"grid setting 'model' must be mlp, cnn, best or a spec file, got {settings['model']!r}")
    return {**settings, **check_settings(settings, GridError, where="grid setting ")}


def expand_grid(grid: dict[str, Any], scale: float = 1.0) -> list[dict[str, Any]]:
    """One settings dict per run: list values crossed in the order given, epochs scaled."""
    if scale <= 0:
        raise GridError(f"--scale must be positive, got {scale}")
    keys = list(grid)
    choices = [value if isinstance(value, list) else [value] for value in grid.values()]
    if any(len(c) == 0 for c in choices):
        raise GridError("a grid setting has an empty list of values")
    count = math.prod(len(c) for c in choices)
    if count > MAX_RUNS:  # counted before a single run is built
        raise GridError(f"the grid crosses into {count:,} runs; numnet runs at most {MAX_RUNS:,} in one grid")
    grid_runs = [
        _check_run({**RUN_DEFAULTS, **dict(zip(keys, combination))}) for combination in itertools.product(*choices)
    ]
    if len({run_name(settings) for settings in grid_runs}) != len(grid_runs):
        raise GridError("the grid repeats a run; every combination of settings must be distinct")
    unscaled = sorted({settings["epochs"] for settings in grid_runs})
    if unscaled[-1] * scale > MAX_EPOCHS:
        raise GridError(f"--scale {scale:g} gives a run of {unscaled[-1] * scale:,.0f} epochs; at most {MAX_EPOCHS:,}")
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

"""Which model files the drawing apps offer: those named on the command line, or those trained."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from numnet.backends import BACKENDS, require
from numnet.errors import BackendUnavailable
from numnet.io import models_dir

MODEL_SUFFIXES = (".npz", ".keras", ".h5")


def find_models(paths: list[Path] | None) -> dict[str, Path]:
    """The models named on the command line, or those the training CLI saved, by name."""
    if paths:
        return {path.stem: path for path in paths}
    folder = models_dir()
    found = sorted(p for p in folder.glob("*") if p.suffix in MODEL_SUFFIXES and ".checkpoint" not in p.name)
    return {path.stem: path for path in found}


def same_names(paths: list[Path] | None) -> str | None:
    """Two --model files the apps would offer under one name (the file name), or None."""
    seen: dict[str, Path] = {}
    for path in paths or []:
        if path.stem in seen:
            return f"--model {seen[path.stem]} and --model {path} would both be offered as {path.stem!r}; rename one"
        seen[path.stem] = path
    return None


def models_problem(models: dict[str, Path]) -> str | None:
    """What stops the apps from starting with these models (and how to fix it), or None."""
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing:
        return f"no model file at {', '.join(missing)}"
    if not models:
        return (
            f"no trained models in {models_dir()}; train them first with\n"
            "  python -m numnet.train --backend numba\nor pass --model PATH"
        )
    return None


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, action="append", help="a model file (repeatable)")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="numba")


def backend_problem(name: str) -> str | None:
    """Why numnet's engine cannot run on this backend here (no GPU, a package missing), or None:
    said before the app opens, not at the first drawing."""
    try:
        require(name)
    except BackendUnavailable as error:
        return str(error)
    return None


def chosen_models(args: argparse.Namespace) -> dict[str, Path] | None:
    """The models to offer, or None after saying on stderr why there are none."""
    models = find_models(args.model)
    problem = same_names(args.model) or models_problem(models) or backend_problem(args.backend)
    if problem:
        print(f"error: {problem}" if models else problem, file=sys.stderr)
        return None
    return models

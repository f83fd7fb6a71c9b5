"""Which model files the drawing apps offer: those named on the command line, or those trained."""

from __future__ import annotations

from pathlib import Path

import numnet

MODEL_SUFFIXES = (".npz", ".keras", ".h5")


def find_models(paths: list[Path] | None) -> dict[str, Path]:
    """The models named on the command line, or those the training CLI saved, by name."""
    if paths:
        return {path.stem: path for path in paths}
    folder = numnet.data.numnet_home() / "models"
    found = sorted(p for p in folder.glob("*") if p.suffix in MODEL_SUFFIXES and ".checkpoint" not in p.name)
    return {path.stem: path for path in found}


def models_problem(models: dict[str, Path]) -> str | None:
    """What stops the apps from starting with these models (and how to fix it), or None."""
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing:
        return f"no model file at {', '.join(missing)}"
    if not models:
        return (
            f"no trained models in {numnet.data.numnet_home() / 'models'}; train them first with\n"
            "  python -m numnet.train --backend numba\nor pass --model PATH"
        )
    return None

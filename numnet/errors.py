"""Errors numnet raises on bad input: each message names what is wrong and what to do."""

import sys
from collections.abc import Callable


class NumnetError(Exception):
    """Base for errors caused by the caller's input, files or environment, not by a numnet bug."""


class SpecError(NumnetError, ValueError):
    """A model spec (or a layer config in it) is invalid."""


class InputError(NumnetError, ValueError):
    """Data given to fit/evaluate/predict has the wrong shape, dtype or values."""


class ModelFileError(NumnetError, ValueError):
    """A model file is missing, truncated, corrupt, or not what it claims to be."""


class DatasetError(NumnetError, RuntimeError):
    """MNIST could not be obtained from any source."""


class TrainingDiverged(NumnetError, FloatingPointError):
    """The loss became NaN or infinite."""


class NumericalError(NumnetError, FloatingPointError):
    """A model's output or loss is NaN or infinite (weights or inputs too large), caught where it leaves numnet."""


class RunError(NumnetError):
    """A run's checkpoint, settings or results that cannot be used."""


class BackendUnavailable(NumnetError, RuntimeError):
    """The requested backend is not installed or not known."""


def preview(value: object) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def exit_status(error: NumnetError) -> int:
    """Says `error` on stderr the way numnet's commands do; 1 for a diverged run, 2 for anything else."""
    diverged = isinstance(error, TrainingDiverged)
    print(f"error: {'training diverged: ' if diverged else ''}{error}", file=sys.stderr)
    return 1 if diverged else 2


def run_command(action: Callable[[], str]) -> int:
    """A command's ending: `action`'s message printed and 0, or its NumnetError said as `exit_status` says it."""
    try:
        message = action()
    except NumnetError as error:
        return exit_status(error)
    print(message)
    return 0

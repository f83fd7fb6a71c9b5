"""Run settings in one table, and the value checks numnet shares.

A run's settings (epochs, batch size, validation split, seed, ...) are written once, in `SETTINGS`,
with their type, range, default and help: the commands' argparse options, grid files, `fit` and the
run records all check through it, so a bad value gets the same words wherever it comes from.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from numnet.errors import InputError, NumnetError


def is_integer(value: Any) -> bool:
    """An int (NumPy's too), not a bool: JSON's `true` is no count."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_number(value: Any) -> bool:
    """A real number (NumPy's too), not a bool; NaN and infinities included."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def is_finite_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


@dataclass(frozen=True)
class Setting:
    """One run setting: an integer >= `low`, or (`fraction`) a number in [0, 1)."""

    name: str
    low: int = 0
    fraction: bool = False
    default: Any = None
    help: str = ""

    def valid(self, value: Any) -> bool:
        if self.fraction:
            return is_number(value) and 0 <= value < 1
        return is_integer(value) and value >= self.low

    def describe(self) -> str:
        return "a number in [0, 1)" if self.fraction else f"an integer >= {self.low}"

    def check(self, value: Any, error: type[NumnetError] = InputError, name: str | None = None) -> Any:
        """`value` as an int or float; `error` names the setting (as `name`, when given) otherwise."""
        if not self.valid(value):
            raise error(f"{name or self.name} must be {self.describe()}, got {value!r}")
        return float(value) if self.fraction else int(value)

    def parse(self, text: str) -> Any:
        """An argparse `type`: the command-line text as this setting's value."""
        try:
            value = float(text) if self.fraction else int(text)
        except ValueError:
            value = None
        if not self.valid(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return value

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS = {
    setting.name: setting
    for setting in (
        Setting("epochs", low=1, help="passes over the training data"),
        Setting("batch_size", low=1, default=100, help="images per optimizer step"),
        Setting("validation_split", fraction=True, default=0.0,
                help="the last fraction of the training data, held out to validate each epoch"),
        Setting("seed", low=0, default=0, help="the seed of initial weights, shuffling, dropout and augmentation"),
        Setting("train_samples", low=1, help="train on the first N training images only"),
        Setting("test_samples", low=1, help="measure on the first N test images only"),
        Setting("early_stopping", low=0,
                help="stop when the validation loss (or, without validation, the loss) has not improved for this "
                     "many epochs, keeping the best weights"),
    )
}  # fmt: skip


def check_settings(settings: dict[str, Any], error: type[NumnetError] = InputError, where: str = "") -> dict[str, Any]:
    """Every set value of `settings` checked against the table (unset ones left out); `where` names
    the source in the message ("grid setting " gives "grid setting 'epochs' must be ...")."""
    return {
        key: SETTINGS[key].check(value, error, f"{where}{key!r}" if where else key)
        for key, value in settings.items()
        if key in SETTINGS and value is not None
    }


def positive_number(text: str) -> float:
    """An argparse `type` for a factor such as --scale: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value

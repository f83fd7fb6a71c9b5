"""Learning-rate schedules with the names, arguments and formulas of `keras.optimizers.schedules`.

In a spec the optimizer's `learning_rate` is a number or a schedule: `{"type": "CosineDecay",
"initial_learning_rate": 0.003, "decay_steps": 5000}`. Like Keras, a schedule is a function of the
optimizer's step count (0 for the first update), not of the epoch. `OneCycle` (Smith's one-cycle
policy) is the one schedule Keras lacks by name: a linear warm-up from max/div_factor to max, then
a cosine decay to max/final_div_factor, which is exactly Keras' `CosineDecay` with warm-up, so it
runs on the Keras backends as that.
"""

from __future__ import annotations

import math
from typing import Any

from numnet.errors import InputError, SpecError
from numnet.settings import is_finite_number, is_integer

REQUIRED = object()
SCHEDULES: dict[str, dict[str, Any]] = {
    "ExponentialDecay": {"initial_learning_rate": REQUIRED, "decay_steps": REQUIRED, "decay_rate": REQUIRED,
                         "staircase": False},
    "CosineDecay": {"initial_learning_rate": REQUIRED, "decay_steps": REQUIRED, "alpha": 0.0,
                    "warmup_target": None, "warmup_steps": 0},
    "PiecewiseConstantDecay": {"boundaries": REQUIRED, "values": REQUIRED},
    "OneCycle": {"max_learning_rate": REQUIRED, "total_steps": REQUIRED, "warmup_fraction": 0.3,
                 "div_factor": 25.0, "final_div_factor": 1e4},
}  # fmt: skip


def _positive(value: Any) -> bool:
    return is_finite_number(value) and value > 0


def _count(value: Any) -> bool:
    return is_integer(value) and value >= 0


def validate(schedule: Any) -> dict[str, Any]:
    """The schedule with every option filled in; SpecError names the first wrong one."""
    if not isinstance(schedule, dict) or not isinstance(schedule.get("type"), str) or schedule["type"] not in SCHEDULES:
        raise SpecError(f"a learning-rate schedule must be {{'type': one of {sorted(SCHEDULES)}, ...}}, "
                        f"got {schedule!r}")  # fmt: skip
    kind, options = schedule["type"], SCHEDULES[schedule["type"]]
    unknown = sorted(set(schedule) - {"type", *options})
    missing = sorted(key for key, default in options.items() if default is REQUIRED and key not in schedule)
    if unknown or missing:
        raise SpecError(f"{kind} " + (f"does not take {unknown}" if unknown else f"needs {missing}")
                        + f"; it takes {sorted(options)}")  # fmt: skip
    config = {"type": kind, **{k: v for k, v in options.items() if v is not REQUIRED}, **schedule}

    def fail(key: str, what: str) -> SpecError:
        return SpecError(f"{kind} {key} must be {what}, got {config[key]!r}")

    for key in ("initial_learning_rate", "decay_rate", "max_learning_rate", "div_factor", "final_div_factor"):
        if key in config and not _positive(config[key]):
            raise fail(key, "a number > 0")
    for key in ("decay_steps", "total_steps"):
        if key in config and not (_count(config[key]) and config[key] > 0):
            raise fail(key, "an integer >= 1")
    if "warmup_steps" in config and not _count(config["warmup_steps"]):
        raise fail("warmup_steps", "an integer >= 0")
    if config.get("warmup_target") is not None and not _positive(config["warmup_target"]):
        raise fail("warmup_target", "a number > 0 or null")
    if "alpha" in config and not (_positive(config["alpha"]) or config["alpha"] == 0) or config.get("alpha", 0) > 1:
        raise fail("alpha", "a number in [0, 1]")
    if "staircase" in config and not isinstance(config["staircase"], bool):
        raise fail("staircase", "true or false")
    if "warmup_fraction" in config and not (_positive(config["warmup_fraction"]) and config["warmup_fraction"] < 1):
        raise fail("warmup_fraction", "a number in (0, 1)")
    if kind == "PiecewiseConstantDecay":
        boundaries, values = config["boundaries"], config["values"]
        if (
            not isinstance(boundaries, list)
            or not all(_count(b) for b in boundaries)
            or boundaries != sorted(boundaries)
        ):
            raise fail("boundaries", "an increasing list of step counts")
        if not isinstance(values, list) or len(values) != len(boundaries) + 1 or not all(map(_positive, values)):
            raise fail("values", f"a list of {len(boundaries) + 1} learning rates > 0 (one more than boundaries)")
    return config


def learning_rate_at(schedule: dict[str, Any], step: int) -> float:
    """The learning rate of the update after `step` earlier updates, by Keras' formulas; a schedule
    that leaves float's range (a huge decay rate, say) is refused by name at the step it does."""
    try:
        rate = _rate_at(schedule, step)
    except OverflowError:
        rate = math.inf
    if not math.isfinite(rate):
        raise InputError(f"the {schedule['type']} schedule's learning rate overflows at step {step}; check its options")
    return rate


def _rate_at(schedule: dict[str, Any], step: int) -> float:
    kind = schedule["type"]
    if kind == "ExponentialDecay":
        progress = step / schedule["decay_steps"]
        if schedule["staircase"]:
            progress = math.floor(progress)
        return schedule["initial_learning_rate"] * schedule["decay_rate"] ** progress
    if kind == "PiecewiseConstantDecay":
        for boundary, value in zip(schedule["boundaries"], schedule["values"]):
            if step <= boundary:
                return value
        return schedule["values"][-1]
    if kind == "OneCycle":
        schedule = keras_equivalent(schedule)
    return _cosine_decay(step, **{k: v for k, v in schedule.items() if k != "type"})


def _cosine_decay(
    step: int, initial_learning_rate: float, decay_steps: int, alpha: float, warmup_target: float | None,
    warmup_steps: int,
) -> float:  # fmt: skip
    if warmup_target is None:
        target, decay_step = initial_learning_rate, step
    elif step < warmup_steps:
        return initial_learning_rate + (warmup_target - initial_learning_rate) * step / warmup_steps
    else:
        target, decay_step = warmup_target, step - warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(decay_step, decay_steps) / decay_steps))
    return target * ((1 - alpha) * cosine + alpha)


def keras_equivalent(schedule: dict[str, Any]) -> dict[str, Any]:
    """The schedule as one `keras.optimizers.schedules` class computes it (OneCycle as CosineDecay)."""
    if schedule["type"] != "OneCycle":
        return schedule
    peak, total = schedule["max_learning_rate"], schedule["total_steps"]
    warmup = max(1, round(schedule["warmup_fraction"] * total))
    return {"type": "CosineDecay", "initial_learning_rate": peak / schedule["div_factor"],
            "decay_steps": max(1, total - warmup), "alpha": 1 / schedule["final_div_factor"],
            "warmup_target": peak, "warmup_steps": warmup}  # fmt: skip


def rate_to_set(schedule: dict[str, Any] | None, value: Any) -> float:
    """A learning rate a callback or the user sets on a model: a finite number > 0, and only where the
    spec does not schedule the rate (both backends refuse alike)."""
    if schedule:
        raise setting_refused(schedule)
    if not _positive(value):
        raise InputError(f"the learning rate must be a finite number > 0, got {value!r}")
    return float(value)


def setting_refused(schedule: dict[str, Any]) -> InputError:
    """What both backends say when a callback sets a rate the spec schedules (Keras: a bare TypeError)."""
    return InputError(f"the learning rate follows the spec's {schedule['type']} schedule and cannot also be set "
                      "(by LearningRateScheduler or ReduceLROnPlateau): use one or the other")  # fmt: skip

"""Training speed, side by side in one run: numnet-numpy, numnet-numba, Keras 3 on TensorFlow
(oneDNN on and off), JAX and PyTorch where installed, and PyTorch itself (torch.nn, see
torch_native.py), on the CPU (and the GPU where there is one).

    python benchmarks/train_speed.py [--models cnn,mlp] [--rounds 3] [--threads 1,2] [--contended]

Each measurement is a fresh process on the seed specs at the seed's batch sizes (CNN 1024, MLP
100): a warm-up fit of two batches (compiling, or loading the cache), then full shuffled
60,000-sample epochs (numnet-numpy, the readable reference, trains a tenth of the CNN epoch and is
scaled). Rounds alternate the contenders, each round in a rotated order, so a noisy neighbour
hits all of them alike; a ratio is taken within each round and reported as the median and range
over rounds; a framework measured in two settings (TensorFlow, oneDNN on and off) is also judged
by its fastest setting in each round, as issue #12's goals are. `--threads` adds numnet-numba rows
at those thread counts (NUMNET_NUM_THREADS).
`--contended` runs every measurement twice, alone and beside one busy-looping process, and
reports each contender's slowdown (written to results/train_speed_contended.*). Also reports peak
memory (max RSS of the process, data included), achieved GFLOP/s (see common.py) against the
measured matmul peak, and the time from process start to the end of the first training step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))

EPOCH = 60000
BATCH = {"cnn": 1024, "mlp": 100}
EPOCHS_PER_RUN = {"cnn": 1, "mlp": 3}  # the MLP's epoch is short: three per process, median
KERAS_FRAMEWORKS = ("tensorflow", "jax", "torch")
BUSY_LOOP = "while True: pass"


def child(framework: str, model_name: str, samples: int, epochs: int) -> dict:
    import numpy as np

    import numnet
    from numnet import specs

    (x_train, y_train), _ = numnet.data.load_mnist()
    x, y = numnet.data.to_model_input(x_train[:samples]), y_train[:samples].astype(np.int64)
    batch = BATCH[model_name]
    if framework == "torch-native":
        from torch_native import Trainer

        model = Trainer(model_name)
    else:
        model = numnet.build(specs.resolve(model_name), backend=framework, seed=0)
    model.fit(x[: 2 * batch], y[: 2 * batch], epochs=1, batch_size=batch, verbose=0)  # warm-up, compile
    first_step = time.perf_counter() - START
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
        seconds.append(time.perf_counter() - start)
    return {
        "epoch_seconds": statistics.median(seconds) * EPOCH / samples,
        "device": getattr(model, "device", None) or "CPU",
        "first_step_seconds": first_step,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def contenders(gpu: bool, thread_counts: list[int]) -> list[tuple[str, str, dict]]:
    """(label, framework, environment) for each contender; Keras backends only where installed."""
    import importlib.util

    cpu_only = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    rows = [("numnet-numpy", "numpy", {}), ("numnet-numba", "numba", {})]
    rows += [
        (f"numnet-numba {n} thread{'s' * (n > 1)}", "numba", {"NUMNET_NUM_THREADS": str(n)}) for n in thread_counts
    ]
    installed = {f for f in KERAS_FRAMEWORKS if importlib.util.find_spec(f) and importlib.util.find_spec("keras")}
    if "tensorflow" in installed:
        rows += [
            ("tensorflow-cpu (oneDNN on)", "tensorflow", {**cpu_only, "TF_ENABLE_ONEDNN_OPTS": "1"}),
            ("tensorflow-cpu (oneDNN off)", "tensorflow", {**cpu_only, "TF_ENABLE_ONEDNN_OPTS": "0"}),
        ]
    rows += [(f"keras-{f}-cpu", f, cpu_only) for f in ("jax", "torch") if f in installed]
    if importlib.util.find_spec("torch"):
        rows.append(("pytorch-cpu (torch.nn)", "torch-native", cpu_only))
    if gpu:
        rows += [("tensorflow-gpu" if f == "tensorflow" else f"keras-{f}-gpu", f, {}) for f in sorted(installed)]
    return rows


def measure(model_name: str, framework: str, env: dict, contended: bool) -> dict:
    from common import run_child

    samples = EPOCH // 10 if (framework, model_name) == ("numpy", "cnn") else EPOCH
    args = [__file__, "--child", framework, model_name, str(samples), str(EPOCHS_PER_RUN[model_name])]
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if contended else None
    try:
        return run_child(args, env)
    finally:
        if busy:
            busy.kill()
            busy.wait()


def same_run(runs: list[dict], run: dict, **changes) -> dict | None:
    """The measurement in `run`'s round that differs from it only in `changes`, if it succeeded."""
    want = {key: run[key] for key in ("model", "contender", "round", "contended")} | changes
    return next((r for r in runs if all(r[k] == v for k, v in want.items()) and "epoch_seconds" in r), None)


def summarise(runs: list[dict]) -> dict:
    """Median and range over rounds of each contender's epoch, and of its ratio to numnet-numba's
    epoch in the same round (contended runs against contended numba)."""
    rows: dict[tuple, dict] = {}
    for run in runs:
        if "epoch_seconds" not in run:
            continue
        row = rows.setdefault((run["model"], run["contender"], run["contended"]), {"epochs": [], "ratios": []})
        row["epochs"].append(run["epoch_seconds"])
        row["peak_rss_mib"] = max(row.get("peak_rss_mib", 0), run["peak_rss_mib"])
        row["first_step_seconds"] = run["first_step_seconds"]
        numba = same_run(runs, run, contender="numnet-numba")
        if numba:
            row["ratios"].append(run["epoch_seconds"] / numba["epoch_seconds"])
    return rows


def best_setting_ratios(runs: list[dict]) -> dict[tuple[str, str], list[float]]:
    """A framework measured in several settings (TensorFlow with oneDNN on and off) is judged by its
    fastest one in each round, since a user would pick that one."""
    fastest: dict[tuple[str, str, int], dict] = {}
    settings: dict[tuple[str, str], set[str]] = {}
    for run in runs:
        framework, _, setting = run["contender"].partition(" (")
        if run["contended"] or "epoch_seconds" not in run or not setting:
            continue
        settings.setdefault((run["model"], framework), set()).add(setting)
        key = (run["model"], framework, run["round"])
        if key not in fastest or run["epoch_seconds"] < fastest[key]["epoch_seconds"]:
            fastest[key] = run
    ratios: dict[tuple[str, str], list[float]] = {}
    for (model, framework, _), run in fastest.items():
        numba = same_run(runs, run, contender="numnet-numba")
        if numba and len(settings[(model, framework)]) > 1:
            ratios.setdefault((model, framework), []).append(run["epoch_seconds"] / numba["epoch_seconds"])
    return ratios


def spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return ""
    middle = f"{statistics.median(values):.{digits}f}"
    return middle if len(values) == 1 else f"{middle} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def table(runs: list[dict], info: dict, peak: float, flops: dict, rounds: int) -> str:
    rows = summarise(runs)
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB"
        + (f", GPU {info['gpu']}" if info["gpu"] else ", no GPU")
        + f"; float32 matmul peak {peak:.0f} GFLOP/s; {rounds} alternating rounds.",
        "",
        "s/epoch and ratios: median (min–max) over rounds. Ratio: the contender's epoch over numnet-numba's"
        " in the same round (above 1: numnet-numba is faster).",
        "",
        "| model | contender | s/epoch | × numnet-numba | GFLOP/s | % of peak | peak RSS MiB | start to 1st step s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (model, contender, contended), row in rows.items():
        if contended:
            continue
        gflops = flops[model] * EPOCH / statistics.median(row["epochs"]) / 1e9
        lines.append(
            f"| {model} | {contender} | {spread(row['epochs'])} | {spread(row['ratios'])} | {gflops:.1f}"
            f" | {100 * gflops / peak:.0f} | {row['peak_rss_mib']:,.0f} | {row['first_step_seconds']:.1f} |"
        )
    for (model, framework), ratios in best_setting_ratios(runs).items():
        lines.append(f"\n{model}, {framework} at its fastest setting in each round: × numnet-numba {spread(ratios)}")
    failed = sorted({(r["model"], r["contender"], r["error"][:80]) for r in runs if "error" in r})
    lines += [f"\n{model} {contender}: failed ({error})" for model, contender, error in failed]
    if any(contended for (_, _, contended) in rows):
        lines += [
            "",
            "Beside one busy-looping process (`--contended`): slowdown = contended epoch / quiet epoch, same round.",
            "",
            "| model | contender | quiet s/epoch | contended s/epoch | slowdown |",
            "|---|---|---:|---:|---:|",
        ]
        for (model, contender, contended), row in rows.items():
            quiet = rows.get((model, contender, False))
            if not contended or not quiet:
                continue
            slowdowns = [
                busy["epoch_seconds"] / alone["epoch_seconds"]
                for busy in runs
                if (busy["model"], busy["contender"], busy["contended"]) == (model, contender, True)
                and "epoch_seconds" in busy
                and (alone := same_run(runs, busy, contended=False))
            ]
            lines.append(
                f"| {model} | {contender} | {spread(quiet['epochs'])} | {spread(row['epochs'])} | {spread(slowdowns)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("FRAMEWORK", "MODEL", "SAMPLES", "EPOCHS"))
    parser.add_argument("--models", default="cnn,mlp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="", help="comma-separated numnet-numba thread counts to add")
    parser.add_argument("--contended", action="store_true", help="also measure beside a busy-looping process")
    parser.add_argument("--skip", default="", help="comma-separated contender labels to leave out")
    args = parser.parse_args()
    if args.child:
        framework, model_name, samples, epochs = args.child
        print(json.dumps(child(framework, model_name, int(samples), int(epochs))))
        return

    from common import machine, matmul_peak_gflops, save, training_flops_per_sample

    import numnet

    info = machine()
    peak = matmul_peak_gflops()
    print(f"machine: {info}\nfloat32 matmul peak: {peak:.0f} GFLOP/s", flush=True)
    numnet.data.load_mnist()  # fetch once, before any timing
    models = args.models.split(",")
    flops = {name: training_flops_per_sample(numnet.specs.resolve(name)) for name in models}
    threads = [int(n) for n in args.threads.split(",") if n]
    rows = [row for row in contenders(bool(info["gpu"]), threads) if row[0] not in args.skip.split(",")]
    runs = []
    for round_ in range(args.rounds):
        for model_name in models:
            shift = round_ % len(rows)
            for label, framework, env in rows[shift:] + rows[:shift]:
                for contended in (False, True) if args.contended else (False,):
                    measured = measure(model_name, framework, env, contended)
                    runs.append(
                        {"model": model_name, "contender": label, "round": round_, "contended": contended, **measured}
                    )
                    what = (
                        f"{measured['epoch_seconds']:.2f} s/epoch" if "epoch_seconds" in measured else measured["error"]
                    )
                    print(f"round {round_ + 1} {model_name} {label}{' (contended)' * contended}: {what}", flush=True)
    save(
        "train_speed_contended" if args.contended else "train_speed",
        {"machine": info, "matmul_peak_gflops": peak, "command": " ".join(sys.argv), "runs": runs},
        f"`python {' '.join(sys.argv)}`\n\n" + table(runs, info, peak, flops, args.rounds),
    )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()

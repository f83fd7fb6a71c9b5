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
import sys
import time
from pathlib import Path

from numnet import specs
from numnet.backends import BACKENDS, require
from numnet.callbacks import require_tensorboard
from numnet.errors import InputError, NumnetError, exit_status
from numnet.runs.grid import GRIDS, expand_grid, read_grid
from numnet.runs.local import run_grid
from numnet.runs.ray_cluster import run_grid_on_ray
from numnet.settings import SETTINGS, positive_number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m numnet.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="seed-cnn", help=f"{' | '.join(GRIDS)} | a JSON/TOML grid file")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="numba")
    parser.add_argument("--scale", type=positive_number, default=1.0, help="multiplies every run's epochs (quick runs)")
    parser.add_argument("--out", type=Path, help="default: runs/<grid name>")
    parser.add_argument("--early-stopping", type=SETTINGS["early_stopping"].parse, metavar="PATIENCE",
                        help="every run stops when its validation loss (or loss) has not improved for PATIENCE "
                        "epochs, keeping the best weights (a grid's own early_stopping wins)")  # fmt: skip
    parser.add_argument("--tensorboard", type=Path, metavar="DIR",
                        help="log every run's epochs for TensorBoard in DIR/<run name>: `tensorboard --logdir DIR` "
                        "shows the grid's curves side by side")  # fmt: skip
    parser.add_argument("--cluster", choices=("ray",), help="run the grid's runs as Ray tasks (default: one after "
                        "another on this machine)")  # fmt: skip
    parser.add_argument("--address", help="with --cluster ray: the cluster to join (auto, HOST:PORT or "
                        "ray://HOST:10001); default: start Ray on this machine for this command")  # fmt: skip
    parser.add_argument("--cpus-per-run", type=SETTINGS["epochs"].parse, metavar="N",
                        help="with --cluster ray: CPUs (kernel threads) per run; default: a whole node's")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path("runs") / Path(args.grid).stem
    try:
        if args.tensorboard:
            require_tensorboard()
        require(args.backend)
        grid = read_grid(args.grid)
        if args.early_stopping is not None:
            grid = {"early_stopping": args.early_stopping, **grid}
        grid_runs = expand_grid(grid, args.scale)
        for settings in grid_runs:
            specs.resolve(settings["model"], settings)
        epochs = sum(settings["epochs"] for settings in grid_runs)
        print(f"{len(grid_runs)} run(s), {epochs} epochs on {args.backend}; results in {out}")
        start = time.perf_counter()
        if args.cluster == "ray":
            records = run_grid_on_ray(grid_runs, args.backend, out, args.address, args.cpus_per_run,
                                      verbose=not args.quiet, tensorboard=args.tensorboard)  # fmt: skip
        else:
            if args.address or args.cpus_per_run:
                raise InputError("--address and --cpus-per-run go with --cluster ray")
            records = run_grid(grid_runs, args.backend, out, verbose=not args.quiet, tensorboard=args.tensorboard)
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

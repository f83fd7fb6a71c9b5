"""Training CLI, the main job: `python -m numnet.train --backend numba`.

With no --model it trains both seed networks (MLP, then CNN) and numnet's best recipe on real
MNIST and saves them under $NUMNET_HOME/models, where the drawing apps look for them, each with its
run record beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from numnet import data, runs, specs
from numnet.backends import BACKENDS, require
from numnet.callbacks import require_tensorboard
from numnet.errors import InputError, NumnetError, exit_status
from numnet.formats.npz import read_header
from numnet.io import models_dir
from numnet.machine import describe_device
from numnet.settings import SETTINGS

# The seed's settings. The CNN needs its 15 epochs: with momentum 0.99 at 59 steps an epoch, the
# first batch norm's moving variance remembers its initial 1.0 (far above the real one) for about
# ten epochs, and inference-mode accuracy stays low until it has decayed, exactly as in Keras,
# whose batch norm numnet matches.
DEFAULTS = {
    "mlp": {"epochs": 10, "batch_size": 100, "validation_split": 0.2},
    "cnn": {"epochs": 15, "batch_size": 1024, "validation_split": 0.0},
    "best": {"epochs": specs.BEST_EPOCHS, "batch_size": specs.BEST_BATCH, "validation_split": 0.0},
}
CUSTOM_DEFAULTS = {"epochs": 10, "batch_size": 100, "validation_split": 0.0}
RUN_DEFAULT_HELP = {
    "epochs": " (default: 10 for the MLP and a spec file, 15 for the CNN, 20 for best; on --resume: a new target)",
    "batch_size": " (default: 100 for the MLP and a spec file, 1024 for the CNN, 128 for best)",
    "validation_split": " (default: 0.2 for the MLP, else 0)",
    "seed": " (default: 0)",
}
RUN_OPTIONS = ("model", "batch_size", "validation_split", "seed", "early_stopping", "strategy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m numnet.train", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(BACKENDS), help="default: numba (on --resume: the run's own)")
    parser.add_argument("--model", action="append",
                        help="mlp, cnn, best or a spec.json (repeatable; default: mlp, cnn and best)")  # fmt: skip
    for setting in (SETTINGS[name] for name in ("epochs", "batch_size", "validation_split", "seed", "early_stopping")):
        default = RUN_DEFAULT_HELP.get(setting.name, "")
        parser.add_argument(setting.option, type=setting.parse, help=f"{setting.help}{default}",
                            metavar="PATIENCE" if setting.name == "early_stopping" else None)  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="default: $NUMNET_HOME/models")
    parser.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                        help="finish a run from the checkpoint an interrupted run wrote (in --out if given, else "
                        "beside the checkpoint)")  # fmt: skip
    parser.add_argument("--strategy", choices=("default", "mirrored"),
                        help="tensorflow only: 'mirrored' trains on all local GPUs")  # fmt: skip
    parser.add_argument("--tensorboard", type=Path, metavar="DIR",
                        help="log each epoch for TensorBoard in DIR/<run name> (tensorboard --logdir DIR)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def settings_for(name: str, args: argparse.Namespace) -> dict:
    settings = {**DEFAULTS.get(name, CUSTOM_DEFAULTS), "seed": 0}
    for key in (*settings, "early_stopping"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    return settings


def planned_runs(args: argparse.Namespace) -> list[tuple[runs.Run, runs.RunFiles]]:
    """Every run this command line asks for, built (or resumed) before any file is touched."""
    if args.resume:
        given = [f"--{key.replace('_', '-')}" for key in RUN_OPTIONS if getattr(args, key) is not None]
        if given:
            raise InputError(f"a resumed run keeps the settings it started with; drop {', '.join(given)}")
        run = runs.resume_run(args.resume, backend=args.backend)
        if args.epochs is not None:
            run.settings["epochs"] = args.epochs
        return [(run, runs.resumed_files(args.resume, args.out))]
    out = args.out or models_dir()
    if args.strategy not in (None, "default") and args.backend != "tensorflow":
        raise InputError("--strategy applies to the tensorflow backend only")
    options = {"strategy": args.strategy} if args.backend == "tensorflow" and args.strategy else {}
    planned, chosen = [], {}
    for choice in args.model or ["mlp", "cnn", "best"]:
        name = specs.resolve(choice)["name"]
        if name in chosen:  # both would write the same files: the second would silently replace the first
            raise InputError(
                f"--model {chosen[name]} and --model {choice} are both named {name!r} and would be "
                f"saved as the same files in {out}; rename one spec, or train them in two --out folders"
            )
        chosen[name] = choice
        run = runs.new_run(name, choice, settings_for(name, args), args.backend or "numba", **options)
        planned.append((run, runs.RunFiles.named(out, name)))
    return planned


def report(run: runs.Run, files: runs.RunFiles, record: dict) -> None:
    digits = record["per_digit_accuracy"]
    print(f"{run.name}: test accuracy {record['test_accuracy']:.2%} in {record['train_seconds']:.1f} s of training; "
          f"saved {files.model}")  # fmt: skip
    print("per digit: " + "  ".join(f"{d}: {a:.1%}" for d, a in digits.items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.tensorboard:
            require_tensorboard()
        require(args.backend or "numba")
        planned = planned_runs(args)
        mnist = data.load_mnist()
        total = time.perf_counter()
        for run, files in planned:
            model = run.model
            print(f"\n== {run.name}: {run.settings} on {model.backend} ({describe_device(model)})")
            model.summary()
            try:
                logs = args.tensorboard / run.name if args.tensorboard else None
                record = runs.train(run, files, mnist, verbose=not args.quiet, tensorboard=logs)
            except KeyboardInterrupt:
                if files.checkpoint.exists():
                    done = read_header(files.checkpoint).get("epochs_done")
                    resume = f"python -m numnet.train --resume {files.checkpoint}"
                    print(f"\ninterrupted; the checkpoint after epoch {done} is {files.checkpoint}\n"
                          f"resume with: {resume}", file=sys.stderr)  # fmt: skip
                else:
                    print("\ninterrupted before the first epoch finished; nothing was saved", file=sys.stderr)
                return 130
            if args.resume and args.resume.absolute() != files.checkpoint.absolute():
                print(f"the run is finished in {files.model.parent}; '{args.resume}' is no longer needed")
            report(run, files, record)
        print(f"\ndone in {time.perf_counter() - total:.1f} s; models in {planned[-1][1].model.parent}")
        return 0
    except NumnetError as error:
        return exit_status(error)


if __name__ == "__main__":
    sys.exit(main())

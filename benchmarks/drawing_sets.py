"""How well trained models read digits as people draw them (see numnet.data.drawings).

    python benchmarks/drawing_sets.py [MODEL ...] [--count N]

With no MODEL it reads the models the training CLI saved ($NUMNET_HOME/models: mlp, cnn, best).
Prints the table and writes benchmarks/results/drawing_sets.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, save  # noqa: E402

import numnet  # noqa: E402
from numnet.data import drawings  # noqa: E402
from numnet.io import models_dir  # noqa: E402


def row_names(paths: list[Path]) -> dict[str, Path]:
    """Each model's row name: its file's stem, or folder/stem where two runs saved the same name (two
    seeds' best.npz), so no row silently replaces another."""
    stems = [path.stem for path in paths]
    names = {(path.stem if stems.count(path.stem) == 1 else f"{path.parent.name}/{path.stem}"): path for path in paths}
    if len(names) < len(paths):
        raise SystemExit(f"two models would share a row name: {[str(p) for p in paths]}; give them distinct files")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--count", type=int, help="digits per set (default: all: 10,000 MNIST, 1,797 optdigits)")
    args = parser.parse_args(argv)
    paths = args.models or [p for name in ("mlp", "cnn", "best") if (p := models_dir() / f"{name}.npz").exists()]
    (_, _), mnist_test = numnet.data.load_mnist()
    x_test, y_test = numnet.data.to_model_input(mnist_test[0]), mnist_test[1]
    sets = {"MNIST test (as stored)": (x_test[: args.count], y_test[: args.count])}
    sets.update({name: drawings.drawing_set(name, mnist_test, args.count) for name in drawings.SETS})
    names = row_names(paths)
    rows = {name: drawings.accuracies(numnet.load(path, backend="numba").predict, sets) for name, path in names.items()}
    models = {name: str(path) for name, path in names.items()}
    result = {"machine": machine(), "count": args.count, "models": models, "accuracy": rows}
    header = "| model | " + " | ".join(sets) + " |\n|---|" + "---:|" * len(sets) + "\n"
    body = "".join(f"| {name} | " + " | ".join(f"{a:.2%}" for a in accuracy.values()) + " |\n"
                   for name, accuracy in rows.items())  # fmt: skip
    count = f" --count {args.count}" if args.count else ""
    markdown = f"# Drawing sets\n\n`python benchmarks/drawing_sets.py{count}`\n\n{header}{body}"
    save("drawing_sets", result, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

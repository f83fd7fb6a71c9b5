"""The lab's figures from run records: `python -m numnet.report DIR`.

DIR is what `python -m numnet.experiments` or `python -m numnet.train --out DIR` wrote (or a
folder above several of those). The report is a set of PNGs plus one self-contained HTML page
with the images embedded, written into DIR (or --out).
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from numnet import data, runs
from numnet.errors import RunError, run_command
from numnet.formats.records import read_probabilities, read_record
from numnet.io import atomic_write, output_folder
from numnet.layers import check_spec, keras_names, size

DPI = 100
# Figure sizes in inches; per-run figures grow by one row per run.
SAMPLES_SIZE = (8.0, 8.6)
CURVES_SIZE = (12.0, 4.5)
PER_DIGIT_SIZE = (12.0, 4.5)
CONFUSION_CELL, CONFUSION_COLUMNS = 4.0, 3  # each run's matrix: a 4-inch panel, three to a row
WRONG_COLUMNS, WRONG_ROW = 10, 1.6
TIMES_ROW = 0.45
STRUCTURE_LAYER = 0.55
STRUCTURE_WIDTH = 5.0
LAB_CONFUSED = (1, 3, 5, 7, 2)  # the digits the lab's test protocol found hardest
MAX_DRAWN_RUNS = 12  # runs drawn in the per-run figures
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]


def find_runs(folder: Path) -> tuple[list[Path], list[Path]]:
    """Records of finished runs and checkpoints of unfinished ones below `folder`; no record is an error."""
    if not folder.is_dir():
        raise RunError(f"'{folder}' is not a folder of run results")
    finished = sorted(folder.rglob("*run.json"))
    checkpoints = folder.rglob("*checkpoint.npz")
    unfinished = sorted(p for p in checkpoints if runs.RunFiles.of_checkpoint(p).record not in finished)
    if not finished:
        raise RunError(
            f"'{folder}' holds no finished runs ({len(unfinished)} unfinished); "
            f"run `python -m numnet.experiments --out {folder}` or `python -m numnet.train --out {folder}` first"
        )
    return finished, unfinished


def _settings_order(record: dict[str, Any]) -> tuple:
    """Runs in the order people read a grid: by model, then epochs, validation split, batch, seed."""
    settings = record["settings"]
    return (str(record.get("model", settings.get("model"))), settings.get("epochs", 0),
            settings.get("validation_split", 0), settings.get("batch_size", 0), settings.get("seed", 0),
            settings.get("train_samples") or 0)  # fmt: skip


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def digit_grid(rows: list[np.ndarray], title: str, vmax: float) -> Figure:
    """Up to ten images of each digit, one row per digit (the lab's Figure 11)."""
    fig = Figure(figsize=SAMPLES_SIZE, dpi=DPI, layout="constrained")
    axes = fig.subplots(10, 10)
    for digit, images in enumerate(rows):
        for ax, image in zip(axes[digit], images):
            ax.imshow(np.squeeze(image), cmap="gray_r", vmin=0, vmax=vmax)
        for ax in axes[digit]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[digit, 0].set_ylabel(str(digit), rotation=0, labelpad=12, fontsize=13)
    fig.suptitle(title)
    return fig


def sample_rows(y_test: np.ndarray) -> list[np.ndarray]:
    """The test-set indices the sample grids show: the first ten of each digit."""
    return [np.flatnonzero(y_test == digit)[:10] for digit in range(10)]


def sample_grid(x_test: np.ndarray, y_test: np.ndarray) -> Figure:
    return digit_grid([x_test[i] for i in sample_rows(y_test)], "MNIST test set: ten examples of each digit", 255)


def augmented_samples(spec: dict[str, Any], x_test: np.ndarray, y_test: np.ndarray) -> Figure:
    """The sample grid's digits as a training step of `spec` sees them: through its augmentation
    layers, each digit with its own random draw (seed 0)."""
    from numnet.backends import numpy_kernels

    rng, rows = np.random.default_rng(0), []
    augmentation = [layer for layer in check_spec(spec)[1] if layer.training_only]
    for layer in augmentation:
        layer.build(layer.input_shape, rng, np.float32, numpy_kernels)
    for indices in sample_rows(y_test):
        images = data.to_model_input(x_test[indices])
        for layer in augmentation:
            images = layer.forward(images, training=True)
        rows.append(images)
    return digit_grid(rows, f"{spec['name']}: the same digits as its augmentation shows them in training", 1.0)


def training_curves(records: list[dict[str, Any]]) -> Figure:
    """Loss and accuracy per epoch of every run on shared axes; validation dashed."""
    fig = Figure(figsize=CURVES_SIZE, dpi=DPI, layout="constrained")
    loss_ax, accuracy_ax = fig.subplots(1, 2, sharex=True)
    for i, record in enumerate(records):
        history = record["history"]
        epochs = np.arange(1, len(history["loss"]) + 1)
        for ax, key in ((loss_ax, "loss"), (accuracy_ax, "accuracy")):
            ax.plot(epochs, history[key], color=_color(i), label=f"{record['name']} (train)")
            if history.get(f"val_{key}"):
                ax.plot(epochs, history[f"val_{key}"], color=_color(i), linestyle="--", label=f"{record['name']} (val)")
    loss_ax.set_yscale("log")
    loss_ax.set_title("loss")
    accuracy_ax.set_title("accuracy")
    for ax in (loss_ax, accuracy_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    accuracy_ax.legend(fontsize=7, loc="lower right")
    return fig


def per_digit_chart(records: list[dict[str, Any]]) -> Figure:
    """Test accuracy per digit for every run; the lab's most confused digits shaded (Figures 20-21)."""
    fig = Figure(figsize=PER_DIGIT_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(records)
    for digit in LAB_CONFUSED:
        ax.axvspan(digit - 0.45, digit + 0.45, color="#ffd54f", alpha=0.35, linewidth=0)
    for i, record in enumerate(records):
        accuracy = [100 * record["per_digit_accuracy"][str(d)] for d in range(10)]
        ax.bar(np.arange(10) - 0.4 + width * (i + 0.5), accuracy, width, color=_color(i), label=record["name"])
    lowest = min(100 * a for r in records for a in r["per_digit_accuracy"].values())
    ax.set_ylim(max(0.0, lowest - 2), 100)
    ax.set_xticks(range(10))
    for label in ax.get_xticklabels():
        if int(label.get_text()) in LAB_CONFUSED:
            label.set_fontweight("bold")
    ax.set_xlabel("digit (shaded: 1 3 5 7 2, the ones the lab found most confused)")
    ax.set_ylabel("recognised (%) on the test set")
    ax.legend(fontsize=8, ncols=min(3, len(records)), loc="lower left")
    return fig


def confusion_matrices(records: list[dict[str, Any]]) -> Figure:
    """Counts of true (rows) vs predicted (columns) digits, one panel per run."""
    columns = min(CONFUSION_COLUMNS, len(records))
    rows = -(-len(records) // columns)
    fig = Figure(figsize=(CONFUSION_CELL * columns, (CONFUSION_CELL + 0.4) * rows), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes[len(records) :]:
        ax.set_axis_off()
    for ax, record in zip(axes, records):
        matrix = np.asarray(record["confusion"])
        off_diagonal = matrix - np.diag(np.diag(matrix))
        ax.imshow(np.log1p(off_diagonal), cmap="Reds")
        for (true, predicted), count in np.ndenumerate(matrix):
            if count:
                weight = "bold" if true == predicted else "normal"
                ax.text(predicted, true, str(count), ha="center", va="center", fontsize=6, fontweight=weight)
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{record['name']}\n{record['test_accuracy']:.2%}", fontsize=9)
    return fig


def most_confidently_wrong(records: list[dict[str, Any]], probabilities: list[np.ndarray], x_test, y_test) -> Figure:
    """Each run's wrong test answers it was surest of, with the true label and its guess."""
    fig = Figure(figsize=(WRONG_COLUMNS * 1.2, WRONG_ROW * len(records)), dpi=DPI, layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(records), WRONG_COLUMNS))
    for row, (record, p) in zip(axes, zip(records, probabilities)):
        labels = y_test[: len(p)]
        predicted = p.argmax(axis=1)
        wrong = np.flatnonzero(predicted != labels)
        worst = wrong[np.argsort(-p[wrong, predicted[wrong]], kind="stable")][:WRONG_COLUMNS]
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
        for ax, index in zip(row, worst):
            ax.imshow(x_test[index], cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(f"{labels[index]} read as {predicted[index]}\n{p[index, predicted[index]]:.1%}", fontsize=8)
        row[0].set_ylabel(record["name"], fontsize=7)
    fig.suptitle("most confidently wrong test images (true digit read as predicted, with confidence)")
    return fig


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


TIME_COLUMNS = ("run", "backend", "device", "epochs", "train time", "s / epoch", "test accuracy")


def time_rows(records: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for record in records:
        epochs = len(record["history"]["loss"])
        rows.append((
            record["name"], record["backend"], record["device"], str(epochs), duration(record["train_seconds"]),
            f"{record['train_seconds'] / max(epochs, 1):.2f}", f"{record['test_accuracy']:.2%}",
        ))  # fmt: skip
    return rows


def time_table(records: list[dict[str, Any]]) -> Figure:
    """Training time per run and backend (the lab's Table 1, CPU vs GPU)."""
    rows = time_rows(records)
    fig = Figure(figsize=(12.0, TIMES_ROW * (len(rows) + 1) + 0.6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    table = ax.table(cellText=rows, colLabels=TIME_COLUMNS, loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(range(len(TIME_COLUMNS)))
    ax.set_title("training time per run")
    return fig


def model_structure(spec: dict[str, Any]) -> Figure:
    """The network drawn from its spec: one box per layer with output shape and parameters."""
    spec_layers = check_spec(spec)[1]
    layers = list(zip(keras_names([layer.type for layer in spec_layers]), spec_layers))
    counts = [sum(size(s) for s in layer.weight_shapes(layer.input_shape).values()) for layer in spec_layers]
    fig = Figure(figsize=(STRUCTURE_WIDTH, STRUCTURE_LAYER * (len(layers) + 2)), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(len(layers) + 1.5, -0.5)
    fills = {"Conv2D": "#bbdefb", "Dense": "#c8e6c9", "BatchNormalization": "#fff9c4", "MaxPooling2D": "#ffe0b2",
             "AveragePooling2D": "#ffe0b2", "GlobalAveragePooling2D": "#ffe0b2"}  # fmt: skip
    ax.text(0.5, 0, f"input {tuple(spec['input_shape'])}", ha="center", va="center", fontsize=10)
    for row, ((name, layer), params) in enumerate(zip(layers, counts), start=1):
        ax.annotate("", xy=(0.5, row - 0.3), xytext=(0.5, row - 0.7), arrowprops={"arrowstyle": "->"})
        label = f"{name} ({layer.type})  ->  {tuple(layer.output_shape)}" + (f"   {params:,} params" if params else "")
        ax.text(0.5, row, label, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": fills.get(layer.type, "#eeeeee")})  # fmt: skip
    ax.text(0.5, len(layers) + 1, f"{spec['name']}: {sum(counts):,} parameters", ha="center", fontsize=10)
    return fig


def save_png(fig: Figure, path: Path) -> bytes:
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    return path.read_bytes()


def _html(title: str, images: list[tuple[str, str, bytes]], rows: list[tuple[str, ...]]) -> str:
    table = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in TIME_COLUMNS) + "</tr>\n"
    table += "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    sections = [f"<h2>training time per run</h2>\n<table>\n{table}\n</table>"]
    for heading, name, png in images:
        encoded = base64.b64encode(png).decode("ascii")
        sections.append(f'<h2>{html.escape(heading)}</h2>\n<img alt="{html.escape(name)}" '
                        f'src="data:image/png;base64,{encoded}">')  # fmt: skip
    style = "body{font-family:sans-serif;max-width:1250px;margin:auto}img{max-width:100%}" \
            "td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}"  # fmt: skip
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            + "\n".join(sections) + "\n</body></html>\n")  # fmt: skip


def build_report(folder: Path, out: Path | None = None, mnist=None) -> Path:
    """Writes the PNGs and report.html into `out` (default: `folder`); returns the HTML's path."""
    # Run names are drawn as typed: a '$' in one is a dollar sign, not a mathtext formula to parse.
    with matplotlib.rc_context({"text.parse_math": False}):
        return _build_report(folder, out, mnist)


def _build_report(folder: Path, out: Path | None, mnist) -> Path:
    out = output_folder(out or folder, RunError)  # before anything is drawn
    record_paths, unfinished = find_runs(folder)
    for checkpoint in unfinished:
        print(f"note: '{checkpoint.parent if checkpoint.name == 'checkpoint.npz' else checkpoint}' has not finished; "
              "left out of the report", file=sys.stderr)  # fmt: skip
    found = sorted(((read_record(p), p) for p in record_paths), key=lambda pair: _settings_order(pair[0]))
    records = [record for record, _ in found]
    (_, _), (x_test, y_test) = mnist if mnist is not None else data.load_mnist()
    probabilities = [read_probabilities(path, record) for record, path in found]
    specs_seen: dict[str, tuple[dict[str, Any], list]] = {}
    for record in records:
        spec, layers = check_spec(record.get("spec"))  # its name becomes a file name: a safe stem, checked
        specs_seen.setdefault(spec["name"], (spec, layers))
    augmented = [(name, s) for name, (s, layers) in specs_seen.items() if any(x.training_only for x in layers)]
    # Figures with a curve, a bar or a panel per run stay readable (and quick) for a big grid: they
    # draw the most accurate runs; the time table lists every run.
    drawn = sorted(range(len(records)), key=lambda i: -records[i]["test_accuracy"])[:MAX_DRAWN_RUNS]
    drawn_records, drawn_probabilities = [records[i] for i in sorted(drawn)], [probabilities[i] for i in sorted(drawn)]
    which = "" if len(drawn) == len(records) else f" (the {len(drawn)} most accurate of {len(records)} runs)"
    figures = [
        ("ten examples of each digit", "samples", sample_grid(x_test, y_test)),
        *[(f"the same digits as {name} saw them in training", f"augmented_{name}", augmented_samples(s, x_test, y_test))
          for name, s in augmented],
        (f"training curves{which}", "curves", training_curves(drawn_records)),
        (f"recognition per digit{which}", "per_digit", per_digit_chart(drawn_records)),
        (f"confusion matrices{which}", "confusion", confusion_matrices(drawn_records)),
        (f"most confidently wrong{which}", "wrong",
         most_confidently_wrong(drawn_records, drawn_probabilities, x_test, y_test)),
        ("training time", "times", time_table(records)),
    ]  # fmt: skip
    figures += [(f"model structure: {name}", f"structure_{name}", model_structure(s))
                for name, (s, _) in specs_seen.items()]  # fmt: skip
    images = [(heading, name, save_png(fig, out / f"{name}.png")) for heading, name, fig in figures]
    report = out / "report.html"
    with atomic_write(report, "w") as f:
        f.write(_html(f"numnet runs: {folder.name}", images, time_rows(records)))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numnet.report", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="run records from numnet.experiments or numnet.train")
    parser.add_argument("--out", type=Path, help="where the PNGs and report.html go (default: the folder)")
    args = parser.parse_args(argv)
    return run_command(lambda: f"report: {build_report(args.folder, args.out)}")


if __name__ == "__main__":
    sys.exit(main())

"""Figures of runs and models: the report's charts, and the same charts for a notebook.

`python -m numnet.report` draws them from run folders; in a notebook `history`, `confusion` and
`samples` draw them from a model and data. Each returns a matplotlib Figure, which a notebook shows.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib.figure
import numpy as np

from numnet import data
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


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that a notebook shows as a PNG when it is a cell's value (a Figure made
    without pyplot has no picture of itself otherwise)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        return buffer.getvalue()


COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]


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


# -- for a notebook: a model and data in, the report's figures out ------------------------------------
def history(history: Any, name: str = "model") -> Figure:
    """Loss and accuracy per epoch, validation dashed, from what `fit` returned (or a Keras History)."""
    values = getattr(history, "history", history)
    return training_curves([{"name": name, "history": {key: list(v) for key, v in dict(values).items()}}])


def _record(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """What the report reads from a run record, computed from the model on (x, y)."""
    probabilities = model.predict(x)
    labels = np.asarray(y).reshape(-1).astype(np.int64)
    matrix = np.zeros((10, 10), np.int64)
    np.add.at(matrix, (labels, probabilities.argmax(axis=1)), 1)
    accuracy = float(np.trace(matrix) / max(len(labels), 1))
    name = getattr(model, "spec", {}).get("name", "model")
    return {"name": name, "confusion": matrix.tolist(), "test_accuracy": accuracy}, probabilities


def confusion(model: Any, x: np.ndarray, y: np.ndarray) -> Figure:
    """True (rows) against predicted (columns) digits of `model` on (x, y), counts in the cells."""
    return confusion_matrices([_record(model, x, y)[0]])


def samples(model: Any, x: np.ndarray, y: np.ndarray) -> Figure:
    """The images of (x, y) that `model` reads wrong most confidently, each with its answer."""
    record, probabilities = _record(model, x, y)
    images = np.asarray(x)
    images = images[..., 0] if images.ndim == 4 else images
    if images.dtype != np.uint8:  # model input in [0, 1]: drawn on MNIST's 0-255 scale
        images = np.clip(images * 255, 0, 255)
    return most_confidently_wrong([record], [probabilities], images, np.asarray(y).reshape(-1))

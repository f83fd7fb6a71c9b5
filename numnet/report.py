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
from matplotlib.figure import Figure

from numnet import data, runs
from numnet.errors import RunError, run_command
from numnet.formats.records import read_probabilities, read_record
from numnet.io import atomic_write, output_folder
from numnet.layers import check_spec
from numnet.plot import (
    TIME_COLUMNS,
    augmented_samples,
    confusion_matrices,
    model_structure,
    most_confidently_wrong,
    per_digit_chart,
    sample_grid,
    time_rows,
    time_table,
    training_curves,
)

MAX_DRAWN_RUNS = 12  # runs drawn in the per-run figures


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

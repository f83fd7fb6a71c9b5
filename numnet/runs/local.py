"""The local executor: a grid's runs one after another on this machine, each resumed from its
checkpoint when it has one, finished runs skipped, one progress line for the whole grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from numnet import data, runs
from numnet.errors import NumnetError
from numnet.formats.npz import read_header
from numnet.formats.records import read_record
from numnet.io import output_folder, write_json
from numnet.runs.grid import GridError, run_name


class GridProgress:
    """One progress line for the whole grid, counted in epochs."""

    def __init__(self, grid_runs: list[dict[str, Any]], already: list[int], enabled: bool) -> None:
        self.bar = tqdm(
            total=sum(r["epochs"] for r in grid_runs), initial=sum(already), desc="grid", unit="epoch",
            disable=not enabled, dynamic_ncols=True,
        )  # fmt: skip

    def epoch(self, name: str, index: int, count: int, model: Any, where: str = "") -> None:
        """An epoch of run `index` done; `where` says where the grid's runs are running."""
        self.bar.update(1)
        self.bar.set_postfix_str(f"{where}run {index}/{count} {name} loss {model.history['loss'][-1]:.4f}")

    def skip(self, epochs: int) -> None:
        """Epochs a run will not train (it stopped early)."""
        self.bar.update(epochs)

    def close(self) -> None:
        self.bar.close()


def run_one(
    settings: dict[str, Any], backend: str, run_dir: Path, mnist, progress: GridProgress, index: int, count: int,
    tensorboard: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Trains one run (from its checkpoint when there is one) and writes its record."""
    name = run_name(settings)
    files = runs.RunFiles.folder(run_dir)
    if files.checkpoint.exists():
        try:
            fallback = {"name": name, "model_choice": settings["model"], "settings": settings}
            run = runs.resume_run(files.checkpoint, backend, fallback=fallback)
        except NumnetError as error:
            raise GridError(f"{error}; delete '{files.checkpoint}' to start run {name} over") from None
    else:
        run = runs.new_run(name, settings["model"], settings, backend)

    def epoch_done(run: runs.Run) -> None:
        progress.epoch(name, index, count, run.model)

    logs = tensorboard / name if tensorboard else None
    record = runs.train(run, files, mnist, verbose=False, on_epoch=epoch_done, tensorboard=logs)
    progress.skip(settings["epochs"] - len(record["history"]["loss"]))
    return record


def prepare(grid_runs: list[dict[str, Any]], backend: str, out: Path) -> tuple[list[str], set[str], list[int]]:
    """Every executor's start: `out` made and the grid written there; the runs' names, those already
    finished, and the epochs each finished or checkpointed run has done."""
    output_folder(out, GridError)
    names = [run_name(settings) for settings in grid_runs]
    if len(set(names)) != len(names):
        raise GridError("the grid repeats a run; every combination of settings must be distinct")
    finished = {name for name in names if runs.RunFiles.folder(out / name).record.exists()}
    already = []
    for name, settings in zip(names, grid_runs):
        if name in finished:
            already.append(settings["epochs"])
        elif (out / name / "checkpoint.npz").exists():
            try:
                already.append(read_header(out / name / "checkpoint.npz").get("epochs_done", 0))
            except NumnetError:
                pass  # the executor says what is wrong with it when it gets there
    write_json(out / "grid.json", {"backend": backend, "runs": grid_runs})
    return names, finished, already


def run_grid(
    grid_runs: list[dict[str, Any]], backend: str, out: Path, verbose: bool = True, mnist=None,
    tensorboard: Path | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Runs every settings dict not already finished under `out`; returns all records in grid order;
    with `tensorboard`, each run's epochs are logged in tensorboard/<run name>."""
    names, finished, already = prepare(grid_runs, backend, out)
    mnist = mnist if mnist is not None else data.load_mnist()
    progress = GridProgress(grid_runs, already, enabled=verbose)
    records = []
    try:
        for index, (name, settings) in enumerate(zip(names, grid_runs), start=1):
            if name in finished:
                records.append(read_record(runs.RunFiles.folder(out / name).record))
                continue
            records.append(run_one(settings, backend, out / name, mnist, progress, index, len(grid_runs), tensorboard))
            if verbose:
                tqdm.write(f"{name}: test accuracy {records[-1]['test_accuracy']:.2%} "
                           f"in {records[-1]['train_seconds']:.0f} s")  # fmt: skip
    finally:
        progress.close()
    return records

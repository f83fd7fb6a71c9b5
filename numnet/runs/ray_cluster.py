"""The Ray executor: a grid's runs as Ray tasks across a cluster, written by the driver into `--out`.

Each run is one task asking for `cpus_per_run` CPUs, its kernels on exactly that many threads. The
task trains in a temporary folder on its node and streams back its checkpoint after every epoch;
the driver writes it where the local executor would, so a run whose node dies starts again on
another node from its last epoch, and a driver that dies leaves a grid that the same command
finishes. Records, models and probabilities land in the local executor's layout, plus the node that
ran each run. MNIST travels through Ray's object store once, so workers need neither network nor cache.
"""

from __future__ import annotations

import queue
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from tqdm import tqdm

import numnet
from numnet import data, runs
from numnet.errors import NumnetError
from numnet.formats.npz import read_header
from numnet.formats.records import read_record
from numnet.io import atomic_write, write_json
from numnet.runs.grid import GridError
from numnet.runs.local import GridProgress, prepare, run_one

CONNECT_SECONDS = 5


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GridError("--cluster ray needs Ray: pip install 'numnet[ray]'") from None
    return ray


class _Relay:
    """What the worker's run reports each epoch: its new checkpoint, sent on to the driver."""

    def __init__(self, events: queue.Queue, checkpoint: Path) -> None:
        self.events, self.checkpoint = events, checkpoint

    def epoch(self, name: str, index: int, count: int, history: dict[str, list[float]]) -> None:
        self.events.put(("epoch", self.checkpoint.read_bytes(), history))

    def skip(self, epochs: int) -> None: ...


def train_on_worker(settings: dict, backend: str, name: str, checkpoint: bytes | None, mnist, version: str):
    """A Ray generator task: ("epoch", checkpoint, history) after every epoch, then ("done", record,
    model, probabilities, node), or ("error", message) for a NumnetError."""
    import ray

    if numnet.__version__ != version:
        yield ("error", f"a worker runs numnet {numnet.__version__}, the driver {version}; install one version")
        return
    context = ray.get_runtime_context()
    node = f"{ray.util.get_node_ip_address()} ({context.get_node_id()[:8]})"
    events: queue.Queue = queue.Queue()
    with tempfile.TemporaryDirectory(prefix="numnet-ray-") as folder:
        run_dir = Path(folder) / name
        run_dir.mkdir()
        if checkpoint is not None:
            (run_dir / "checkpoint.npz").write_bytes(checkpoint)

        relay = _Relay(events, run_dir / "checkpoint.npz")

        def work() -> None:
            try:
                events.put(("done", run_one(settings, backend, run_dir, mnist, relay, 0, 0)))
            except NumnetError as error:
                events.put(("error", str(error)))
            except BaseException as error:  # noqa: BLE001  (raised again in the task, where Ray reports it)
                events.put(("crash", error))

        threading.Thread(target=work, daemon=True).start()
        while True:
            event = events.get()
            if event[0] == "crash":
                raise event[1]
            if event[0] == "done":
                files = runs.RunFiles.folder(run_dir)
                yield ("done", event[1], files.model.read_bytes(), files.probabilities.read_bytes(), node)
                return
            yield event
            if event[0] == "error":
                return


def check_answers(address: str) -> None:
    """Ray waits minutes for a head that is not there: a HOST:PORT that refuses a connection is named now."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray itself says quickly when it finds no cluster
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise GridError(f"no Ray cluster answers at {address!r}: {error.strerror or error}") from None


def connect(ray: Any, address: str | None) -> bool:
    """Joins the cluster at `address`, or starts one on this machine; True when this call started Ray."""
    if ray.is_initialized():
        return False
    if address:
        check_answers(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as error:
        raise GridError(f"no Ray cluster answers at {address!r}: {error}") from None
    return True


def node_cpus(ray: Any) -> list[int]:
    """The CPUs of each live node that has any (a head node may keep none for tasks)."""
    cpus = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
    return [count for count in cpus if count > 0] or [0]


def run_grid_on_ray(
    grid_runs: list[dict[str, Any]], backend: str, out: Path, address: str | None = None,
    cpus_per_run: int | None = None, verbose: bool = True, mnist=None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The local executor's `run_grid` on a Ray cluster: every run not finished under `out` is a task."""
    ray = import_ray()
    started = connect(ray, address)
    try:
        names, finished, already = prepare(grid_runs, backend, out)
        cpus = node_cpus(ray)
        per_run = cpus_per_run or min(cpus)  # a whole node's cores: runs do not fight over them
        if per_run > max(cpus):
            raise GridError(f"--cpus-per-run {per_run} is more than any node of the cluster has (at most {max(cpus)})")
        return _drive(ray, grid_runs, names, finished, already, backend, out, per_run, verbose, mnist)
    finally:
        if started:
            ray.shutdown()


def _drive(ray, grid_runs, names, finished, already, backend, out, per_run, verbose, mnist) -> list[dict[str, Any]]:
    mnist_ref = ray.put(mnist if mnist is not None else data.load_mnist())
    task = ray.remote(train_on_worker).options(
        num_cpus=per_run, max_retries=0, runtime_env={"env_vars": {"NUMNET_NUM_THREADS": str(per_run)}}
    )
    pending: dict[Any, int] = {}

    def submit(index: int) -> None:
        checkpoint = runs.RunFiles.folder(out / names[index]).checkpoint
        state = checkpoint.read_bytes() if checkpoint.exists() else None
        pending[task.remote(grid_runs[index], backend, names[index], state, mnist_ref, numnet.__version__)] = index

    records = {i: read_record(runs.RunFiles.folder(out / name).record) for i, name in enumerate(names)
               if name in finished}  # fmt: skip
    progress = GridProgress(grid_runs, already, enabled=verbose)
    try:
        for index, name in enumerate(names):
            if name not in finished:
                submit(index)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for generator in ready:
                index = pending[generator]
                try:
                    event = ray.get(next(generator))
                except StopIteration:
                    del pending[generator]
                    continue
                except ray.exceptions.RayTaskError:
                    raise
                except ray.exceptions.RayError:  # its node or worker died: again elsewhere, from its last epoch
                    del pending[generator]
                    done = _epochs_done(runs.RunFiles.folder(out / names[index]).checkpoint)
                    tqdm.write(f"run {names[index]} lost its node; it continues on another from epoch {done}")
                    submit(index)
                    continue
                records.update(_receive(event, out / names[index], grid_runs[index], index, len(names), progress))
    except BaseException:
        for generator in pending:
            ray.cancel(generator, force=True)
        raise
    finally:
        progress.close()
    return [records[i] for i in range(len(names))]


def _epochs_done(checkpoint: Path) -> int:
    try:
        return int(read_header(checkpoint).get("epochs_done", 0)) if checkpoint.exists() else 0
    except (NumnetError, TypeError, ValueError):
        return 0


def _receive(event: tuple, run_dir: Path, settings: dict, index: int, count: int, progress: GridProgress) -> dict:
    """Writes what a task sent, as the local executor would have: {index: record} once it is done."""
    files = runs.RunFiles.folder(run_dir)
    kind = event[0]
    if kind == "error":
        raise GridError(f"run {run_dir.name}: {event[1]}")
    if kind == "epoch":
        with atomic_write(files.checkpoint) as f:
            f.write(event[1])
        progress.epoch(run_dir.name, index + 1, count, event[2])
        return {}
    _, record, model, probabilities, node = event
    for path, content in ((files.model, model), (files.probabilities, probabilities)):
        with atomic_write(path) as f:
            f.write(content)
    record = {**record, "node": node}
    write_json(files.record, record)
    files.checkpoint.unlink(missing_ok=True)
    progress.skip(settings["epochs"] - len(record["history"]["loss"]))
    return {index: record}

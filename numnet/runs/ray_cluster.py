"""The Ray executor: a grid's runs as Ray tasks across a cluster, written by the driver into `--out`.

Each run is one task asking for `cpus_per_run` CPUs, its kernels on exactly that many threads. The
task trains in a temporary folder on its node and sends back its checkpoint after every epoch;
the driver writes it where the local executor would, so a run whose node dies starts again on
another node from its last epoch, and a driver that dies leaves a grid that the same command
finishes. Records, models and probabilities land in the local executor's layout, plus the node that
ran each run. MNIST travels through Ray's object store once, so workers need neither network nor cache.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import numnet
from numnet import data, runs
from numnet.callbacks import EventLog
from numnet.errors import NumnetError
from numnet.formats.npz import read_header
from numnet.formats.records import read_record
from numnet.io import atomic_write, write_json
from numnet.runs.grid import GridError
from numnet.runs.local import GridProgress, prepare, run_one
from numnet.threads import use_threads

CONNECT_SECONDS = 5
POLL_SECONDS = 0.2  # how often the driver writes the epochs its runs reported


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GridError("--cluster ray needs Ray: pip install 'numnet[ray]'") from None
    return ray


class Inbox:
    """A Ray actor on the driver's node holding what runs reported until the driver takes it."""

    def __init__(self) -> None:
        self.items: list = []

    def put(self, item: Any) -> None:
        self.items.append(item)

    def take(self) -> list:
        items, self.items = self.items, []
        return items


class _Relay:
    """What the worker's run reports each epoch: its new checkpoint and what the driver logs, sent
    to the driver's inbox without waiting (a task waiting on Ray lends its CPUs to another task)."""

    def __init__(self, inbox: Any, run: tuple[int, int], checkpoint: Path, node: str) -> None:
        self.inbox, self.run, self.checkpoint, self.node = inbox, run, checkpoint, node
        self.sent: Any = None  # the last report, delivered before the task returns

    def epoch(self, name: str, index: int, count: int, model: Any, where: str = "") -> None:
        logs = {key: values[-1] for key, values in model.history.items() if values}
        epoch = {"epoch": model.epochs_done - 1, "logs": logs, "learning_rate": float(model.learning_rate),
                 "iterations": int(model.optimizer.iterations), "node": self.node}  # fmt: skip
        self.sent = self.inbox.put.remote((self.run, ("epoch", self.checkpoint.read_bytes(), epoch)))

    def skip(self, epochs: int) -> None: ...


def train_on_worker(
    settings: dict, backend: str, name: str, checkpoint: bytes | None, mnist, version: str, threads: int,
    inbox: Any, run: tuple[int, int],
) -> tuple:  # fmt: skip
    """A Ray task training one run on the worker's main thread (kernels run slower on another),
    its checkpoints sent to `inbox` after every epoch: returns ("done", record, model,
    probabilities, node), or ("error", message) for a NumnetError."""
    import ray

    # A worker serves one grid (one Ray job): its kernels, loaded on its first run, read this count,
    # and this thread sets it too (Numba's thread count is per calling thread).
    os.environ["NUMNET_NUM_THREADS"] = str(threads)
    use_threads(threads, numba_pool=True)
    if numnet.__version__ != version:
        return ("error", f"a worker runs numnet {numnet.__version__}, the driver {version}; install one version")
    node = f"{ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"
    with tempfile.TemporaryDirectory(prefix="numnet-ray-") as folder:
        run_dir = Path(folder) / name
        run_dir.mkdir()
        if checkpoint is not None:
            (run_dir / "checkpoint.npz").write_bytes(checkpoint)
        relay = _Relay(inbox, run, run_dir / "checkpoint.npz", node)
        try:
            record = run_one(settings, backend, run_dir, mnist, relay, 0, 0)
        except NumnetError as error:
            return ("error", str(error))
        if relay.sent is not None:
            ray.get(relay.sent)  # an actor runs one caller's calls in order: every epoch is in the inbox
        files = runs.RunFiles.folder(run_dir)
        return ("done", record, files.model.read_bytes(), files.probabilities.read_bytes(), node)


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
    cpus_per_run: int | None = None, verbose: bool = True, mnist=None, tensorboard: Path | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The local executor's `run_grid` on a Ray cluster: every run not finished under `out` is a task."""
    ray = import_ray()
    started = connect(ray, address)
    try:
        cpus = node_cpus(ray)
        per_run = cpus_per_run or min(cpus)  # a whole node's cores: runs do not fight over them
        if per_run > max(cpus):
            raise GridError(f"--cpus-per-run {per_run} is more than any node of the cluster has (at most {max(cpus)})")
        names, finished, already = prepare(grid_runs, backend, out)
        progress = GridProgress(grid_runs, already, enabled=verbose)
        driver = _Driver(ray, grid_runs, names, backend, out, per_run, progress, tensorboard)
        try:
            return driver.run(finished, mnist if mnist is not None else data.load_mnist())
        finally:
            progress.close()
            driver.close()
    finally:
        if started:
            ray.shutdown()


class _Driver:
    """Submits the grid's runs, writes what they report, and moves a run whose node died."""

    def __init__(self, ray, grid_runs, names, backend, out, per_run, progress, tensorboard) -> None:
        self.ray, self.grid_runs, self.names, self.backend, self.out = ray, grid_runs, names, backend, out
        self.progress, self.tensorboard = progress, tensorboard
        self.per_run = per_run
        self.task = ray.remote(train_on_worker).options(num_cpus=per_run, max_retries=0)
        self.pending: dict[Any, tuple[int, int]] = {}  # each running task -> (its run, which attempt)
        self.attempts: dict[int, int] = {}
        self.nodes: dict[int, str] = {}  # where each running run last reported from
        self.logs: dict[int, EventLog] = {}

    def files(self, index: int) -> runs.RunFiles:
        return runs.RunFiles.folder(self.out / self.names[index])

    def submit(self, index: int) -> None:
        checkpoint = self.files(index).checkpoint
        state = checkpoint.read_bytes() if checkpoint.exists() else None
        attempt = self.attempts[index] = self.attempts.get(index, 0) + 1
        task = self.task.remote(self.grid_runs[index], self.backend, self.names[index], state, self.mnist,
                                numnet.__version__, self.per_run, self.inbox, (index, attempt))  # fmt: skip
        self.pending[task] = (index, attempt)

    def drain(self) -> None:
        """Writes every epoch the runs have reported (a moved run's earlier attempts are ignored)."""
        for (index, attempt), event in self.ray.get(self.inbox.take.remote()):
            if attempt == self.attempts[index]:
                self.receive(event, index)

    def run(self, finished: set[str], mnist) -> list[dict[str, Any]]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        self.mnist = ray.put(mnist)  # once, for every task on every node
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.inbox = ray.remote(Inbox).options(num_cpus=0, scheduling_strategy=here).remote()
        records = {i: read_record(self.files(i).record) for i, name in enumerate(self.names) if name in finished}
        try:
            for index, name in enumerate(self.names):
                if name not in finished:
                    self.submit(index)
            while self.pending:
                ended, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_SECONDS)
                self.drain()
                for task in ended:
                    index, _ = self.pending.pop(task)
                    try:
                        result = ray.get(task)
                    except ray.exceptions.RayTaskError:
                        raise
                    except ray.exceptions.RayError:  # its node or worker died: elsewhere, from its last epoch
                        self.nodes.pop(index, None)
                        done = _epochs_done(self.files(index).checkpoint)
                        tqdm.write(f"run {self.names[index]} lost its node; it continues on another from epoch {done}")
                        self.submit(index)
                        continue
                    self.drain()  # its last epochs were put before it returned
                    records.update(self.receive(result, index))
        except BaseException:
            for task in self.pending:
                ray.cancel(task, force=True)
            raise
        return [records[i] for i in range(len(self.names))]

    def receive(self, event: tuple, index: int) -> dict[int, dict[str, Any]]:
        """Writes what a task sent, as the local executor would have: {index: record} once it is done."""
        files, name = self.files(index), self.names[index]
        if event[0] == "error":
            raise GridError(f"run {name}: {event[1]}")
        if event[0] == "epoch":
            _, checkpoint, epoch = event
            with atomic_write(files.checkpoint) as f:
                f.write(checkpoint)
            if self.tensorboard is not None:
                log = self.logs.setdefault(index, EventLog(self.tensorboard / name))
                log.epoch(epoch["epoch"], epoch["logs"], epoch["learning_rate"], epoch["iterations"])
            self.nodes[index] = epoch["node"]
            where = f"{len(self.pending)} running on {len(set(self.nodes.values()))} node(s); "
            self.progress.epoch(name, index + 1, len(self.names), _Reported(epoch["logs"]), where)
            return {}
        _, record, model, probabilities, node = event
        for path, content in ((files.model, model), (files.probabilities, probabilities)):
            with atomic_write(path) as f:
                f.write(content)
        record = {**record, "node": node}
        write_json(files.record, record)
        files.checkpoint.unlink(missing_ok=True)
        self.nodes.pop(index, None)
        self.progress.skip(self.grid_runs[index]["epochs"] - len(record["history"]["loss"]))
        if index in self.logs:
            self.logs.pop(index).close()
        return {index: record}

    def close(self) -> None:
        for log in self.logs.values():
            log.close()


class _Reported:
    """A remote run's last epoch, as the progress line reads a model."""

    def __init__(self, logs: dict[str, float]) -> None:
        self.history = {key: [value] for key, value in logs.items()}


def _epochs_done(checkpoint: Path) -> int:
    try:
        return int(read_header(checkpoint).get("epochs_done", 0)) if checkpoint.exists() else 0
    except (NumnetError, TypeError, ValueError):
        return 0

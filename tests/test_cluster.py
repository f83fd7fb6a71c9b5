"""The lab's grids on a real Ray cluster (two nodes on this machine, in a loopback-only network
namespace): the same records and bit-for-bit the same weights as the local executor, a run that
loses its node finishing elsewhere from its last epoch, and each error named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import numnet

pytest.importorskip("ray", reason="the cluster tests need Ray: pip install 'numnet[ray]'")
SCENARIOS = Path(__file__).resolve().parent / "ray_scenarios.py"


def environment(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    return {**os.environ, "NUMNET_HOME": str(home), "NUMNET_NUM_THREADS": "1"}


def in_loopback_namespace(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Ray binds to the machine's own address; in a namespace with only loopback it uses 127.0.0.1."""
    command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=400)


def local_grid(grid: Path, out: Path, env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "numnet.experiments", "--grid", str(grid), "--out", str(out), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stderr


def assert_same_runs(local: Path, cluster: Path) -> list[dict]:
    records = []
    for run in sorted(path.parent.name for path in local.glob("*/run.json")):
        ours, theirs = (json.loads((folder / run / "run.json").read_text()) for folder in (local, cluster))
        for key in ("settings", "spec", "test_accuracy", "confusion"):
            assert ours[key] == theirs[key], (run, key)
        assert {k: v for k, v in ours["history"].items() if k != "seconds"} == {
            k: v for k, v in theirs["history"].items() if k != "seconds"}  # fmt: skip
        for a, b in zip(numnet.load(local / run / "model.npz").get_weights(),
                        numnet.load(cluster / run / "model.npz").get_weights()):  # fmt: skip
            np.testing.assert_array_equal(a, b)
        assert not (cluster / run / "checkpoint.npz").exists()
        records.append(theirs)
    return records


def test_a_grid_on_a_two_node_cluster_equals_the_local_executor_bit_for_bit(tmp_path):
    env = environment(tmp_path)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"model": "mlp", "epochs": [2, 3], "train_samples": 600, "test_samples": 200,
                                "validation_split": 0.2}))  # fmt: skip
    local_grid(grid, tmp_path / "local", env)
    scenario = [str(SCENARIOS), "grid", str(grid), str(tmp_path / "ray"), "--tensorboard", str(tmp_path / "tb")]
    result = in_loopback_namespace(scenario, env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = assert_same_runs(tmp_path / "local", tmp_path / "ray")
    assert len(records) == 2 and all(record["node"].startswith("127.0.0.1 (") for record in records)
    assert "python -m numnet.report" in result.stdout  # the report reads it as it reads a local grid
    for record in records:  # the driver logs every run for TensorBoard, as the local executor does
        events = EventAccumulator(str(tmp_path / "tb" / record["name"] / "validation"))
        events.Reload()
        assert [e.value for e in events.Scalars("epoch_loss")] == pytest.approx(record["history"]["val_loss"])


def interrupted_cnn_run(tmp_path: Path, scenario: str, epochs: int) -> subprocess.CompletedProcess:
    """A one-run seed-CNN grid trained by the local executor into local/ and by `scenario` into ray/."""
    env = environment(tmp_path)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"model": "cnn", "epochs": epochs, "batch_size": 128, "train_samples": 1024,
                                "test_samples": 200}))  # fmt: skip
    local_grid(grid, tmp_path / "local", env)
    result = in_loopback_namespace([str(SCENARIOS), scenario, str(grid), str(tmp_path / "ray")], env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_run_whose_node_dies_finishes_on_another_from_its_last_epoch(tmp_path):
    result = interrupted_cnn_run(tmp_path, "kill-node", epochs=4)
    moved = [line for line in (result.stdout + result.stderr).splitlines() if "lost its node" in line]
    assert moved and int(moved[0].rsplit(" ", 1)[1]) >= 1, result.stdout + result.stderr[-3000:]  # not from zero
    (record,) = assert_same_runs(tmp_path / "local", tmp_path / "ray")
    joined = result.stdout.split("joined ")[1].split()[0]
    assert record["node"].endswith(f"({joined})")


def test_a_killed_driver_leaves_a_grid_the_same_command_finishes(tmp_path):
    result = interrupted_cnn_run(tmp_path, "kill-driver", epochs=3)
    assert "killed the driver after 1 checkpoint(s)" in result.stdout
    assert_same_runs(tmp_path / "local", tmp_path / "ray")


def test_a_worker_with_another_numnet_version_is_refused_by_name(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(Path(numnet.__file__).parent, other / "numnet", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "numnet" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{numnet.__version__}"', '__version__ = "0.0.0-other"'))
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"model": "mlp", "epochs": 1, "train_samples": 100, "test_samples": 100}))
    env = {**environment(tmp_path), "OTHER_NUMNET": str(other)}
    result = in_loopback_namespace([str(SCENARIOS), "other-version", str(grid), str(tmp_path / "out")], env, tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"a worker runs numnet 0.0.0-other, the driver {numnet.__version__}; install one version" in result.stderr
    assert not list((tmp_path / "out").glob("*/run.json"))


def cluster_command(tmp_path: Path, *args: str, code: str = "") -> subprocess.CompletedProcess:
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"model": "mlp", "epochs": 1, "train_samples": 100, "test_samples": 100}))
    main = f"import sys; {code} from numnet import experiments; sys.exit(experiments.main(sys.argv[1:]))"
    return in_loopback_namespace(["-c", main, "--grid", str(grid), "--out", str(tmp_path / "out"), "--quiet",
                                  "--cluster", "ray", *args], environment(tmp_path), tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), "sys.modules['ray'] = None;", "--cluster ray needs Ray: pip install 'numnet[ray]'"),
        (("--address", "127.0.0.1:1"), "", "no Ray cluster answers at '127.0.0.1:1'"),
        (("--cpus-per-run", "64"), "", "--cpus-per-run 64 is more than any node of the cluster has"),
    ],
)
def test_cluster_errors_are_one_line_and_touch_nothing(tmp_path, args, code, message):
    result = cluster_command(tmp_path, *args, code=code)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: {message}" in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/run.json"))

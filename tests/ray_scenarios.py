"""Ray cluster scenarios for test_cluster.py, each run in a loopback-only network namespace (Ray
binds to the machine's own address otherwise): `python ray_scenarios.py SCENARIO GRID OUT [ARGS]`.

grid           a two-node cluster (one CPU each) runs the grid through the experiments command
kill-node      one worker node holds the run; after its first checkpoint a second node joins and the
               first is removed: the run must finish on the second
kill-driver    the experiments command joins the cluster as its own process and is killed after the
               first checkpoint; the same command run again must finish the grid
other-version  the only worker node runs another numnet (a copy whose version differs, first on its
               PYTHONPATH)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from numnet import experiments

STORE_BYTES = 400 << 20


def wait_for_checkpoint(out: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 120
    while not list(Path(out).glob("*/checkpoint.npz")) and time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the driver ended before its first checkpoint: {process.returncode}")
        time.sleep(0.05)


def main(scenario: str, grid: str, out: str, *extra: str) -> int:
    command = ["--grid", grid, "--out", out, "--cluster", "ray", "--quiet", *extra]
    # Each object store holds MNIST twice: a killed driver's copy stays until Ray frees it.
    store = {"object_store_memory": STORE_BYTES}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1 if scenario == "grid" else 0,
                                                            "include_dashboard": False, **store})  # fmt: skip
    node_env = {"PYTHONPATH": os.environ["OTHER_NUMNET"]} if scenario == "other-version" else None
    first = cluster.add_node(num_cpus=1, env_vars=node_env, **store)
    try:
        if scenario == "kill-driver":
            driver = [sys.executable, "-m", "numnet.experiments", *command, "--address", cluster.address]
            process = subprocess.Popen(driver)
            wait_for_checkpoint(out, process)
            process.send_signal(signal.SIGKILL)
            process.wait()
            print(f"killed the driver after {len(list(Path(out).glob('*/checkpoint.npz')))} checkpoint(s)", flush=True)
            return subprocess.run(driver).returncode
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if scenario != "kill-node":
            return experiments.main(command)
        status = []
        driver = threading.Thread(target=lambda: status.append(experiments.main(command)))
        driver.start()
        wait_for_checkpoint(out)
        second = cluster.add_node(num_cpus=1, **store)
        cluster.remove_node(first)
        print(f"removed node {first.node_id[:8]}; joined {second.node_id[:8]}", flush=True)
        driver.join(timeout=300)
        return status[0] if status else 1
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

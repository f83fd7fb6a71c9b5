"""Ray cluster scenarios for test_cluster.py, each run in a loopback-only network namespace (Ray
binds to the machine's own address otherwise): `python ray_scenarios.py SCENARIO GRID OUT`.

grid       a two-node cluster (one CPU each) runs the grid file through the experiments command
kill-node  one worker node holds the run; after its first checkpoint a second node joins and the
           first is removed: the run must finish on the second
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from numnet import experiments


def main(scenario: str, grid: str, out: str) -> int:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1 if scenario == "grid" else 0,
                                                            "include_dashboard": False})  # fmt: skip
    first = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        if scenario == "grid":
            return experiments.main(["--grid", grid, "--out", out, "--cluster", "ray", "--quiet"])
        status = []
        driver = threading.Thread(target=lambda: status.append(
            experiments.main(["--grid", grid, "--out", out, "--cluster", "ray", "--quiet"])))  # fmt: skip
        driver.start()
        deadline = time.monotonic() + 120
        while not list(Path(out).glob("*/checkpoint.npz")) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = cluster.add_node(num_cpus=1)
        cluster.remove_node(first)
        print(f"removed node {first.node_id[:8]}; joined {second.node_id[:8]}", flush=True)
        driver.join(timeout=300)
        return status[0] if status else 1
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

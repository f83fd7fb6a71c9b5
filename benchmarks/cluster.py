"""A grid's wall time on a Ray cluster against the same runs one by one:
`python benchmarks/cluster.py [--runs 4] [--epochs 120] [--nodes 1,2] [--rounds 1]`.

The grid is `--runs` seed-MLP runs (seeds 0..runs-1) of `--epochs` full-MNIST epochs, each on one
CPU (`NUMNET_NUM_THREADS=1`). Contenders, alternating in each round: the local executor (the runs
one after another), and a Ray cluster of N one-CPU nodes on this machine for each N of `--nodes`.
Scaling efficiency on N nodes is serial / (N x wall); Ray's overhead on one node is wall / serial - 1.
Ray binds to the machine's own address, so the script runs itself in a loopback-only network
namespace (as root; `unshare -n`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLUSTER = """
import sys, time, ray
from ray.cluster_utils import Cluster
from numnet import experiments
nodes, grid, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
for _ in range(nodes):
    cluster.add_node(num_cpus=1)
ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
start = time.perf_counter()
status = experiments.main(["--grid", grid, "--out", out, "--cluster", "ray", "--quiet"])
print("WALL", time.perf_counter() - start)
ray.shutdown(); cluster.shutdown()
sys.exit(status)
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{result.stderr[-3000:]}")
    walls = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("WALL ")]
    return float(walls[0]) if walls else time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if os.environ.get("NUMNET_LOOPBACK") != "1":
        inner = 'ip link set lo up && NUMNET_LOOPBACK=1 exec "$0" "$@"'
        sys.exit(subprocess.run(["unshare", "-n", "sh", "-c", inner, sys.executable, *sys.argv]).returncode)
    import numnet

    numnet.data.load_mnist()  # fetched before any timing
    env = {**os.environ, "NUMNET_NUM_THREADS": "1"}
    work = Path(tempfile.mkdtemp(prefix="numnet-cluster-bench-"))
    grid = work / "grid.json"
    grid.write_text(json.dumps({"model": "mlp", "epochs": args.epochs, "seed": list(range(args.runs))}))
    nodes = [int(n) for n in args.nodes.split(",")]
    contenders = {"local": None, **{f"ray-{n}-node": n for n in nodes}}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(args.rounds):
        order = list(contenders) if round_ % 2 == 0 else list(contenders)[::-1]
        for name in order:
            out = work / name
            shutil.rmtree(out, ignore_errors=True)
            if contenders[name] is None:
                command = [sys.executable, "-m", "numnet.experiments", "--grid", str(grid), "--out", str(out),
                           "--quiet"]  # fmt: skip
            else:
                command = [sys.executable, "-c", CLUSTER, str(contenders[name]), str(grid), str(out)]
            times[name].append(timed(command, env))
            print(f"round {round_ + 1} {name}: {times[name][-1]:.1f} s", flush=True)
    serial = times["local"]
    print(f"\n{args.runs} seed-MLP runs x {args.epochs} epochs, one CPU each; wall seconds per round")
    print(f"{'contender':<12} {'wall s':<24} {'vs serial':<16} efficiency")
    for name, walls in times.items():
        n = contenders[name] or 1
        ratios = [s / w for s, w in zip(serial, walls)]
        efficiency = [r / n for r in ratios]
        print(f"{name:<12} {', '.join(f'{w:.1f}' for w in walls):<24} "
              f"{', '.join(f'{r:.2f}x' for r in ratios):<16} {', '.join(f'{e:.0%}' for e in efficiency)}")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Thread settings: physical cores by default, NUMNET_NUM_THREADS overrides, whatever was imported
first; and training that repeats bit for bit for a seed and a thread count."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from numnet import threads


def fake_sysfs(root, siblings: dict[int, tuple[int, int]], quota: str | None = None):
    for cpu, (package, core) in siblings.items():
        topology = root / "devices/system/cpu" / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    if quota is not None:
        (root / "fs/cgroup").mkdir(parents=True)
        (root / "fs/cgroup/cpu.max").write_text(quota)
    return root


def test_smt_siblings_count_once_and_a_cgroup_quota_caps_the_count(tmp_path):
    # 8 CPUs: two packages of two cores, each core with two hardware threads
    layout = {cpu: (cpu // 4, (cpu % 4) // 2) for cpu in range(8)}
    sysfs = fake_sysfs(tmp_path / "a", layout)
    assert threads.physical_cores(sysfs, cpus=list(range(8))) == 4
    assert threads.physical_cores(sysfs, cpus=[0, 1]) == 1  # an affinity mask on one core's siblings
    assert threads.physical_cores(sysfs, cpus=[0, 2, 4]) == 3
    assert threads.physical_cores(fake_sysfs(tmp_path / "b", layout, "250000 100000"), list(range(8))) == 3
    assert threads.physical_cores(fake_sysfs(tmp_path / "c", layout, "max 100000"), list(range(8))) == 4
    assert threads.physical_cores(tmp_path / "unreadable", cpus=[0, 1, 2]) == 3  # no topology: CPUs


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("NUMNET_NUM_THREADS", value)
    with pytest.raises(threads.ThreadSettingError, match=f"NUMNET_NUM_THREADS='{value}' is not a positive"):
        threads.thread_count()


REPORT = textwrap.dedent("""
    import hashlib
    import numpy as np  # NumPy (and OpenBLAS) first: the settings must hold anyway
    import numba, threadpoolctl
    import numnet
    (x, y), _ = numnet.data.load_mnist()
    x = numnet.data.to_model_input(x)
    digests = []
    for name in ("mlp", "cnn"):
        model = numnet.build(getattr(numnet.specs, name)(), backend="numba", seed=0)
        model.fit(x[:1024], y[:1024], epochs=1, batch_size=256, verbose=0)
        weights = b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())
        digests.append(hashlib.sha256(weights).hexdigest())
    # NumPy's BLAS (numnet's products); Numba loads SciPy's too, for code numnet does not use
    blas = [i["num_threads"] for i in threadpoolctl.threadpool_info() if "numpy" in i["filepath"]]
    print(numba.get_num_threads(), ",".join(map(str, blas)), *digests)
""")


def run_report(thread_setting: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "NUMNET_NUM_THREADS"}
    if thread_setting is not None:
        env["NUMNET_NUM_THREADS"] = thread_setting
    return subprocess.Popen([sys.executable, "-c", REPORT], env=env, stdout=subprocess.PIPE, text=True)


def test_thread_settings_hold_after_numpy_and_training_repeats_bit_for_bit(mnist):
    runs = {name: run_report(setting) for name, setting in (("default", None), ("one", "1"), ("again", "1"))}
    out = {}
    for name, process in runs.items():
        stdout, _ = process.communicate(timeout=300)
        assert process.returncode == 0, stdout
        numba_threads, blas, mlp, cnn = stdout.split()
        out[name] = (int(numba_threads), blas, mlp, cnn)
    cores = threads.physical_cores()
    assert out["default"][:2] == (cores, str(cores))
    assert out["one"][:2] == (1, "1")
    assert out["again"] == out["one"]  # the same seed and thread count: the same weights, bit for bit
    # Fixed-size reduction chunks make the CNN independent of the thread count too. The MLP is not:
    # OpenBLAS sums its 784-long products in another order on one thread and on two, and running
    # them on one thread made its epoch 30 % slower (1.3 s vs 1.0 s on 2 cores).
    assert out["default"][3] == out["one"][3]


ANOTHER_THREAD = textwrap.dedent("""
    import threading
    import numba
    import numpy as np
    from numnet.backends import numba_kernels
    counts = []

    def kernels_in_a_thread():  # as a web server's worker or the Tk app's runs them
        numba_kernels.relu_forward(np.ones((4, 1 << 16), np.float32))  # large enough for the parallel kernel
        counts.append(numba.get_num_threads())

    thread = threading.Thread(target=kernels_in_a_thread)
    thread.start()
    thread.join()
    print(counts[0], numba.config.NUMBA_NUM_THREADS)
""")


def test_kernels_run_in_another_thread_keep_the_thread_setting():
    """Numba's thread count belongs to each thread: one that never set it would use every CPU."""
    env = {**os.environ, "NUMNET_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    command = [sys.executable, "-c", ANOTHER_THREAD]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "2"]

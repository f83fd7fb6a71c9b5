"""Keras on JAX and PyTorch behind numnet's Model API: the same network as the numnet engine.

Keras fixes its backend when first imported, so each backend is checked in a process of its own.
CI installs the jax extra; PyTorch's wheels are gigabytes, so its cases run where it is installed
(the GPU machine) and are skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

CHECK = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import numnet
    from numnet import callbacks

    backend = sys.argv[1]
    # Full float32 arithmetic for the comparison: on a GPU both frameworks default to TF32 (10-bit
    # mantissa) in matrix products and convolutions, which is a speed setting, not a bug.
    if backend == "jax":
        import jax
        jax.config.update("jax_default_matmul_precision", "highest")
    if backend == "torch":
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    (x_train, y_train), (x_test, y_test) = numnet.data.load_mnist()
    x_train, x_test = numnet.data.to_model_input(x_train[:512]), numnet.data.to_model_input(x_test[:256])
    y_train = y_train[:512]
    out = {}
    for name in ("mlp", "cnn"):
        spec = numnet.specs.cnn(dropout=0.0) if name == "cnn" else numnet.specs.mlp()
        keras_model = numnet.build(spec, backend=backend, seed=0)
        engine = numnet.build(spec, backend="numba", seed=0)
        keras_model.set_weights(engine.get_weights())
        forward = float(np.abs(keras_model.predict(x_test) - engine.predict(x_test)).max())
        histories = [m.fit(x_train, y_train, epochs=2, batch_size=128, shuffle=False, verbose=0)
                     for m in (keras_model, engine)]
        weights = max(float(np.abs(a - b).max()) for a, b in zip(keras_model.get_weights(), engine.get_weights()))
        out[name] = {"forward": forward, "weights_after_8_steps": weights,
                     "loss": [h["loss"] for h in histories], "backend": keras_model.backend,
                     "iterations": keras_model.optimizer.iterations}
    stop = callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=100.0)
    short = numnet.build(numnet.specs.mlp(), backend=backend).fit(x_train, y_train, epochs=5, batch_size=128,
                                                                   verbose=0, callbacks=[stop])
    out["early_stopping_epochs"] = len(short["loss"])
    print(json.dumps(out))
    """
)


def available(framework: str) -> bool:
    return importlib.util.find_spec(framework) is not None and importlib.util.find_spec("keras") is not None


def run_check(backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}  # numnet must override whatever this says
    result = subprocess.run([sys.executable, "-c", CHECK, backend], capture_output=True, text=True, env=env,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def backends_here() -> list:
    cases = [pytest.param("jax", marks=[] if os.environ.get("CI") or available("jax") else
                          pytest.mark.skip(reason="pip install 'numnet[jax]'"))]  # fmt: skip
    cases.append(pytest.param("torch", marks=[] if available("torch") else
                              pytest.mark.skip(reason="PyTorch is not installed here")))  # fmt: skip
    return cases


@pytest.mark.parametrize("backend", backends_here())
def test_keras_backend_matches_the_numnet_engine(backend):
    result = run_check(backend)
    for name in ("mlp", "cnn"):
        row = result[name]
        assert row["backend"] == backend and row["iterations"] == 8
        assert row["forward"] <= 1e-5, row
        assert row["weights_after_8_steps"] <= 2e-3, row  # float32 Adam steps, two frameworks
        ours, theirs = row["loss"]
        assert max(abs(a - b) for a, b in zip(ours, theirs)) <= 1e-3 * max(ours), row
    assert result["early_stopping_epochs"] == 2


def test_a_second_keras_backend_in_one_process_is_refused_by_name():
    here = [b for b in ("tensorflow", "jax", "torch") if available({"tensorflow": "tensorflow"}.get(b, b))]
    if len(here) < 2 and not os.environ.get("CI"):  # CI installs tensorflow and jax
        pytest.skip("needs two Keras backends installed")
    first, second = here[:2]
    code = (f"import numnet\nnumnet.build(numnet.specs.mlp(), backend={first!r})\n"
            f"numnet.build(numnet.specs.mlp(), backend={second!r})\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"already runs Keras on {first}" in result.stderr and "one backend per process" in result.stderr

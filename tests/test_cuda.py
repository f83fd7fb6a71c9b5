"""numnet's CUDA kernel module beyond the shared kernel harness (tests/test_kernels.py): whole
networks agree with the numba engine step by step, dropout masks are numba's bit for bit, the
product kernel is right with the thread blocks a GPU runs, and a machine without the GPU or the
package gets an error that says which.

Without a GPU these run in numba-cuda's simulator (see conftest.py), on the seed networks with
fewer units and filters; on a GPU, at their full size.
"""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from strokes import DIGITS
from test_web import png_of, post, start_server

import numnet
from numnet.backends import cuda_kernels, numba_kernels
from numnet.data.preprocess import canvas_to_mnist

SIMULATED = cuda_kernels.SIMULATED


def small(spec: dict) -> dict:
    """The spec, with its hidden layers narrowed where the simulator runs it: the same layers,
    kernels and data flow, a fraction of the arithmetic."""
    spec = copy.deepcopy(spec)
    if SIMULATED:
        for layer in spec["layers"]:
            if layer["type"] == "Conv2D":
                layer["filters"] = max(2, layer["filters"] // 16)
            if layer["type"] == "Dense" and layer["units"] != 10:
                layer["units"] = 8
    return spec


@pytest.mark.parametrize("name", ["mlp", "cnn", "best"])
def test_three_training_steps_match_numba(name, mnist_inputs):
    """Dropout, augmentation and all: the same seed draws the same masks and warps on both."""
    (x_train, y_train), _ = mnist_inputs
    spec = small(numnet.specs.resolve(name))
    batch = 4 if SIMULATED else 128
    models = [numnet.build(spec, backend=backend, seed=3) for backend in ("numba", "cuda")]
    for step in range(3):
        part = slice(step * batch, (step + 1) * batch)
        (loss_numba, right_numba), (loss_cuda, right_cuda) = (m.train_step(x_train[part], y_train[part])
                                                              for m in models)  # fmt: skip
        assert loss_cuda == pytest.approx(loss_numba, rel=1e-4), step
        assert right_cuda == right_numba
    numba_layers, cuda_layers = (m.layers for m in models)
    for index, (theirs, ours) in enumerate(zip(numba_layers, cuda_layers)):
        # Trained weights only, and not a bias before batch norm: its gradient is rounding noise
        # around zero, which Adam scales to full-size steps on every engine, differently on each
        # (and batch norm's moving mean follows it).
        weights = list(zip(ours.params.values(), theirs.params.values()))
        if index + 1 < len(cuda_layers) and type(cuda_layers[index + 1]).__name__ == "BatchNormalization":
            weights = weights[:1]
        for mine, numbas in weights:
            np.testing.assert_allclose(models[1].kernels.to_numpy(mine), numbas, rtol=1e-3, atol=1e-5)


def test_dropout_masks_are_numbas_bit_for_bit():
    masks = [k.to_numpy(k.dropout_mask(np.random.default_rng(11), (3, 5, 7, 2), 0.3))
             for k in (numba_kernels, cuda_kernels)]  # fmt: skip
    np.testing.assert_array_equal(masks[1], masks[0])
    assert 0.5 < masks[0].mean() < 0.9


@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True)])
def test_the_product_with_cooperating_threads(rng, transpose_a, transpose_b):
    """The simulator runs the product with one thread per block; here 2 x 2 threads share each tile,
    as 16 x 16 do on a GPU, on shapes that end inside a block."""
    a, b = rng.standard_normal((9, 7)).astype(np.float32), rng.standard_normal((7, 6)).astype(np.float32)
    kernel = cuda_kernels._product_kernel(np.float32, tile=2, per_thread=2)
    c = cuda_kernels._empty((9, 6), np.float32)
    bias = cuda_kernels.asarray(rng.standard_normal(6), np.float32)
    operands = (a.T.copy() if transpose_a else a, b.T.copy() if transpose_b else b)
    cuda_kernels._configured(kernel, (2, 2), (2, 2))(*(cuda_kernels.asarray(o, np.float32) for o in operands), bias,
                                                     c, transpose_a, transpose_b, True)  # fmt: skip
    np.testing.assert_allclose(c.copy_to_host(), a @ b + bias.copy_to_host(), rtol=1e-5, atol=1e-5)


def test_freed_blocks_are_handed_back_by_size():
    cache = cuda_kernels.BlockCache()
    assert cache.rounded(1) == 512 and cache.rounded(513) == 1024 and cache.rounded((1 << 20) + 1) == 1 << 21
    assert cache.take(1024) is None
    cache.give(1024, "a")
    cache.give(1024, "b")
    cache.give(2048, "c")
    assert cache.take(1024) == "b" and cache.take(1024) == "a" and cache.take(1024) is None
    assert cache.drain() == ["c"] and cache.take(2048) is None


def test_the_web_page_reads_a_drawing_on_cuda_as_on_numba(seed_mlp_file):
    """The drawing apps' --backend cuda, for real: a server started with it reads a drawn 7."""
    process, url = start_server([seed_mlp_file], backend="cuda")
    try:
        drawing = png_of(DIGITS[7])
        status, result = post(url, drawing)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert status == 200, result
    expected = numnet.load(seed_mlp_file, backend="numba").probabilities(
        canvas_to_mnist(Image.open(io.BytesIO(drawing)))[None]
    )[0]
    assert result["digit"] == 7
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-5)


COMMANDS = {
    "train": ["numnet.train", "--model", "mlp", "--epochs", "1"],
    "experiments": ["numnet.experiments", "--grid", "examples/grids/augmentation-and-schedules.json"],
    "web": ["numnet.web", "--model", "MODEL"],
    "Tk app": ["numnet.gui", "--model", "MODEL"],
}


@pytest.mark.skipif(not SIMULATED, reason="this machine has a GPU")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_without_a_gpu_every_command_stops_at_once_and_writes_nothing(command, tmp_path, seed_mlp_file):
    arguments = [str(seed_mlp_file) if a == "MODEL" else a for a in COMMANDS[command]]
    if command in ("train", "experiments"):
        arguments += ["--out", str(tmp_path / "out")]
    result = subprocess.run([sys.executable, "-m", *arguments, "--backend", "cuda"], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: backend 'cuda' needs an NVIDIA GPU with its driver, and numba-cuda found none (set "
        "NUMBA_ENABLE_CUDASIM=1 to run its kernels, slowly, in numba-cuda's simulator instead)"
    ]
    assert not (tmp_path / "out").exists()


def _build_cuda_in_a_fresh_process(prelude: str, env: dict) -> subprocess.CompletedProcess:
    code = prelude + "import numnet\nnumnet.build('mlp', backend='cuda')\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})


@pytest.mark.skipif(not SIMULATED, reason="this machine has a GPU")
def test_without_a_gpu_the_error_says_so():
    result = _build_cuda_in_a_fresh_process("", {"NUMBA_ENABLE_CUDASIM": "0"})
    assert result.returncode == 1
    assert "BackendUnavailable: backend 'cuda' needs an NVIDIA GPU" in result.stderr


def test_without_numba_cuda_the_error_names_the_extra():
    blocked = "import sys\nsys.modules['numba.cuda'] = None  # as if numba-cuda were not installed\n"
    result = _build_cuda_in_a_fresh_process(blocked, {})
    assert result.returncode == 1
    assert "backend needs numnet[cuda]" in result.stderr and "pip install numnet[cuda]" in result.stderr

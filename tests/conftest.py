"""Shared fixtures: real MNIST (never a stand-in) and the engine backends to run each test on."""

from __future__ import annotations

import ctypes.util
import os
from pathlib import Path

# Without an NVIDIA driver, the cuda kernel module runs in numba-cuda's simulator (read when numba
# loads, so before numnet is imported).
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "0" if ctypes.util.find_library("cuda") else "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import numnet  # noqa: E402
from numnet.backends import KERNEL_MODULES, get_backend  # noqa: E402

KERNELS = {name: get_backend(name).kernels() for name in KERNEL_MODULES}
# numnet's engine on every kernel module that runs at full speed; a simulated GPU module runs the
# kernel harness and small whole-network checks instead (tests/test_cuda.py).
ENGINE_BACKENDS = [name for name, module in KERNELS.items() if not getattr(module, "SIMULATED", False)]
ENGINE_KERNELS = {name: KERNELS[name] for name in ENGINE_BACKENDS}


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST arrays, from the cache or fetched once per session."""
    return numnet.data.load_mnist()


@pytest.fixture(scope="session")
def mnist_inputs(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    return (numnet.data.to_model_input(x_train), y_train), (numnet.data.to_model_input(x_test), y_test)


@pytest.fixture(scope="session")
def seed_mlp_file(tmp_path_factory, mnist_inputs):
    """The seed MLP trained by numnet as the training CLI does (10 epochs), saved to a model file."""
    (x_train, y_train), _ = mnist_inputs
    model = numnet.build(numnet.specs.mlp(), backend="numba", seed=0)
    model.fit(x_train, y_train, epochs=10, batch_size=100, validation_split=0.2, verbose=0)
    path = tmp_path_factory.mktemp("models") / "mlp.npz"
    model.save(path)
    return path


@pytest.fixture(params=ENGINE_BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# The browser tests: Debian's Chromium, driven by Playwright, and TensorFlow.js from npm in place of
# its CDN (scripts/install-test-tools installs both).
TFJS = (
    Path(__file__).resolve().parent.parent
    / ".test-tools"
    / "node_modules"
    / "@tensorflow"
    / "tfjs"
    / "dist"
    / "tf.min.js"
)
CDN = "https://cdn.jsdelivr.net/npm/@tensorflow/tfjs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def needs(path: Path, how: str) -> None:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: {how}")
        pytest.skip(f"needs {path} ({how})")


@pytest.fixture(scope="module")
def browser():
    needs(Path(CHROMIUM), ".ci/run installs it (apt-get install chromium)")
    needs(TFJS, "bash scripts/install-test-tools installs it from npm")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()

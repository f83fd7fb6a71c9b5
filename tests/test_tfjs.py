"""TensorFlow.js export: the lab's own canvas page, in headless Chromium, runs numnet-trained models.

The page (tests/lab_page/) loads `tensorflow/model.json` with `tf.loadLayersModel`, as the lab's did;
TensorFlow.js is served from the npm copy scripts/install-test-tools puts in .test-tools/, answering
the page's CDN address, so nothing is fetched at test time.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import CDN, TFJS, needs
from strokes import DIGITS, mouse_strokes

import numnet
from numnet.formats.tfjs import WEIGHTS_FILE

LAB_PAGE = Path(__file__).resolve().parent / "lab_page"


@pytest.fixture(scope="module")
def cnn_model(tmp_path_factory, mnist_inputs):
    (x_train, y_train), _ = mnist_inputs
    model = numnet.build(numnet.specs.cnn(), backend="numba", seed=0)
    model.fit(x_train[:6144], y_train[:6144], epochs=2, batch_size=256, verbose=0)
    return model


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The lab's page served over HTTP from a folder; each test writes its model into tensorflow/."""
    folder = tmp_path_factory.mktemp("lab_site")
    for name in ("index.html", "script.js"):
        shutil.copy(LAB_PAGE / name, folder / name)

    for url in serve(folder):
        yield folder, url


def open_lab_page(browser, url: str):
    page = browser.new_page(viewport={"width": 800, "height": 600})

    def answer(route):
        if route.request.url.startswith(CDN):
            route.fulfill(path=str(TFJS), content_type="text/javascript")
        elif route.request.url.startswith(url):
            route.continue_()
        else:
            route.abort()  # nothing else leaves the machine

    page.route("**/*", answer)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']", timeout=30_000)
    return page, errors


# What the lab's script feeds its model, and what the model answers, computed in the page itself.
PAGE_PREDICTION = """async () => {
  const input = preprocess();
  const probabilities = model.predict(input);
  return {input: Array.from(await input.data()), probabilities: Array.from(await probabilities.data())};
}"""


@pytest.mark.parametrize("digit", sorted(DIGITS))
def test_the_labs_page_runs_a_numnet_cnn_exactly_as_numnet_does(browser, site, cnn_model, digit):
    folder, url = site
    numnet.formats.tfjs.write_tfjs(cnn_model.spec, cnn_model.get_weights(), folder / "tensorflow")
    page, errors = open_lab_page(browser, url)
    mouse_strokes(page, "#canvas", DIGITS[digit])
    page.click("#predict")
    page.wait_for_function("document.querySelector('#result').innerText.startsWith('Prediction')")
    shown = int(page.locator("#result").inner_text().split()[-1])
    seen = page.evaluate(PAGE_PREDICTION)
    x = np.array(seen["input"], dtype=np.float32).reshape(1, 28, 28, 1)
    ours = cnn_model.predict(x)[0]
    assert x.max() > 0.5, "the drawing did not reach the model"
    assert np.abs(np.array(seen["probabilities"]) - ours).max() <= 1e-4
    assert shown == int(ours.argmax())
    assert errors == []
    page.close()


def test_the_labs_page_runs_the_seed_mlp_trained_by_the_cli(browser, site, seed_mlp_file, mnist_inputs):
    folder, url = site
    result = subprocess.run([sys.executable, "-m", "numnet.export", str(seed_mlp_file), "--format", "tfjs",
                             "--out", str(folder / "tensorflow")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((folder / "tensorflow" / "model.json").read_text())
    assert manifest["format"] == "layers-model" and manifest["weightsManifest"][0]["paths"] == [WEIGHTS_FILE]
    page, errors = open_lab_page(browser, url)
    _, (x_test, y_test) = mnist_inputs
    digits = x_test[:64]
    theirs = np.array(page.evaluate(
        "async (pixels) => Array.from(await model.predict(tf.tensor(pixels, [64, 28, 28, 1])).data())",
        digits.reshape(-1).tolist(),
    )).reshape(64, 10)  # fmt: skip
    ours = numnet.load(seed_mlp_file).predict(digits)
    assert np.abs(theirs - ours).max() <= 1e-4
    assert (theirs.argmax(axis=1) == y_test[:64]).mean() > 0.9
    assert errors == []
    page.close()


def test_export_refuses_a_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "notes.npz"
    bad.write_bytes(b"not a model")
    result = subprocess.run([sys.executable, "-m", "numnet.export", str(bad), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "notes.npz" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# -- numnet's own page, exported as static files (python -m numnet.web --export) ---------------------
@pytest.fixture(scope="module")
def static_site(tmp_path_factory, seed_mlp_file, cnn_model):
    needs(TFJS, "bash scripts/install-test-tools installs it from npm")
    folder = tmp_path_factory.mktemp("static_page")
    cnn_file = folder.parent / "cnn.npz"
    cnn_model.save(cnn_file)
    command = [sys.executable, "-m", "numnet.web", "--model", str(seed_mlp_file), "--model", str(cnn_file),
               "--export", str(folder), "--tfjs", str(TFJS)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in folder.iterdir()} == {"index.html", "models", "tf.min.js"}
    yield from serve(folder)


def serve(folder: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.mark.parametrize("ratio", [1, 2], ids=["dpr1", "dpr2"])
@pytest.mark.parametrize("digit", sorted(DIGITS))
def test_the_exported_page_recognises_drawn_digits_in_the_browser(browser, static_site, seed_mlp_file, digit, ratio):
    from PIL import Image

    from numnet.data.preprocess import canvas_to_mnist

    context = browser.new_context(device_scale_factor=ratio, viewport={"width": 800, "height": 600})
    page = context.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(static_site) else route.abort())
    page.goto(static_site)
    page.wait_for_selector("body[data-ready='true']")
    mouse_strokes(page, "#pad", DIGITS[digit])
    page.click("#predict")
    page.wait_for_selector("body[data-idle='true']")
    assert page.locator("#answer").inner_text().startswith(f"{digit} ")
    # The browser's preprocessing agrees with numnet's on the same drawing.
    browser_field = np.array(page.evaluate("Array.from(canvasToMnist(pad))"), dtype=np.float32).reshape(28, 28, 1)
    png = page.evaluate("pad.toDataURL('image/png')")
    drawing = Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1])))
    numnet_field = canvas_to_mnist(drawing)
    assert np.abs(browser_field - numnet_field).max() <= 0.02
    model = numnet.load(seed_mlp_file)  # the page's first model, selected by default
    assert model.predict(browser_field[None]).argmax() == model.predict(numnet_field[None]).argmax() == digit
    context.close()


# Every layer and option the seed networks do not use, in one network TensorFlow.js must run as numnet.
EVERY_LAYER = {"name": "every_layer", "input_shape": [28, 28, 1], "layers": [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "strides": 2, "padding": "same", "use_bias": False},
    {"type": "BatchNormalization"}, {"type": "ReLU"},
    {"type": "MaxPooling2D", "pool_size": 3, "strides": 1, "padding": "same"},
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "elu"},
    {"type": "AveragePooling2D", "pool_size": 2, "padding": "same"},
    {"type": "Reshape", "target_shape": [6, 6, 8]}, {"type": "GlobalAveragePooling2D"},
    *[{"type": "Dense", "units": 16, "activation": name} for name in ("sigmoid", "tanh", "leaky_relu", "softplus",
                                                                       "gelu")],
    {"type": "Dense", "units": 16, "use_bias": False}, {"type": "Activation", "activation": "tanh"},
    {"type": "Dense", "units": 10}, {"type": "Softmax"},
]}  # fmt: skip


def test_every_layer_and_option_runs_in_tensorflow_js_as_in_numnet(browser, site, mnist_inputs):
    folder, url = site
    model = numnet.build(EVERY_LAYER, seed=3)
    rng = np.random.default_rng(3)
    model.set_weights([w + rng.normal(0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    numnet.formats.tfjs.write_tfjs(model.spec, model.get_weights(), folder / "tensorflow")
    page, errors = open_lab_page(browser, url)
    _, (x_test, _) = mnist_inputs
    digits = x_test[:16]
    theirs = np.array(page.evaluate(
        "async (pixels) => Array.from(await model.predict(tf.tensor(pixels, [16, 28, 28, 1])).data())",
        digits.reshape(-1).tolist(),
    )).reshape(16, 10)  # fmt: skip
    assert errors == []
    np.testing.assert_allclose(theirs, model.predict(digits), atol=1e-4)
    page.close()

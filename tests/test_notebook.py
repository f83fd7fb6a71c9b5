"""numnet in a notebook, for real: the tour notebook executed on a real Jupyter kernel (nbclient),
its HTML export (nbconvert) opened in Chromium, where a 7 drawn on the pad reads as the saved model
reads the same drawing; the pad offline with an inlined TensorFlow.js; the pad as a widget in a real
JupyterLab, handing the drawing back to the kernel; the plotting helpers."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import CDN, TFJS
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from strokes import DIGITS, mouse_strokes

import numnet
from numnet.data.preprocess import canvas_to_mnist
from numnet.errors import InputError

TOUR = Path(__file__).resolve().parent.parent / "examples" / "tour.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """The tour, run top to bottom on a real kernel with the quick parameter; where it ran."""
    folder = tmp_path_factory.mktemp("tour")
    notebook = nbformat.read(TOUR, as_version=4)
    os.environ["NUMNET_TOUR_QUICK"] = "1"  # the kernel inherits it: a slice of MNIST, two epochs
    where = {"metadata": {"path": str(folder)}}
    # Saved as JupyterLab saves by default, without the widgets' state: an HTML export then shows
    # each output's HTML (the pad's page) instead of widgets it would need a CDN's widget manager for.
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources=where, store_widget_state=False)
    try:
        client.execute()
    finally:
        del os.environ["NUMNET_TOUR_QUICK"]
    return notebook, folder


def outputs_of(notebook, source_start: str) -> list:
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    return cell.outputs


def test_the_tour_runs_on_a_real_kernel_with_tables_widget_bars_and_figures(tour):
    notebook, folder = tour
    summary = outputs_of(notebook, "spec = numnet.specs.cnn()")
    assert [o.output_type for o in summary] == ["display_data"]  # the table, not the text a second time
    assert "<td>conv2d_1 (Conv2D)</td><td>(None, 11, 11, 128)</td><td>73,856</td>" in summary[0].data["text/html"]
    training = outputs_of(notebook, "stop = ")
    assert sum(WIDGET in o.get("data", {}) for o in training) == 2  # one progress bar per epoch, as widgets
    assert "image/png" in training[-1].data  # the history plot
    evaluation = outputs_of(notebook, "model.evaluate(")
    assert WIDGET in evaluation[0].data  # its progress bar
    accuracy = eval(evaluation[-1].data["text/plain"])["accuracy"]
    assert accuracy > 0.6
    for start in ("numnet.plot.confusion", "numnet.plot.samples"):
        (figure,) = outputs_of(notebook, start)
        assert Image.open(io.BytesIO(base64.b64decode(figure.data["image/png"]))).size[0] >= 400
    assert (folder / "tour-cnn.keras").is_file() and (folder / "tour-cnn-tfjs" / "model.json").is_file()
    printed = "".join(o.get("text", "") for o in outputs_of(notebook, "import importlib"))
    assert "Keras on JAX after one epoch" in printed
    (pad,) = outputs_of(notebook, "pad = ")
    assert pad.data["text/html"].startswith('<iframe class="numnet-drawing-pad" srcdoc=')


def draw_on_the_pad(browser, html_file: Path, serve_tfjs: bool, digit: int = 7):
    """Opens the file, draws `digit` on the pad inside it, presses Predict; returns what the pad read
    (its answer, its probabilities) and the drawing as a PNG image. Nothing leaves the machine:
    the CDN's TensorFlow.js is answered with the local copy, or (serve_tfjs False) refused."""
    page = browser.new_page(viewport={"width": 1000, "height": 1200})

    def answer(route):
        if serve_tfjs and route.request.url.startswith(CDN):
            route.fulfill(path=str(TFJS), content_type="text/javascript")
        elif route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", answer)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(html_file.as_uri())
    page.locator("iframe.numnet-drawing-pad").scroll_into_view_if_needed()  # all of it: it is shorter than the window
    frame = next(f for f in page.frames if f != page.main_frame)
    frame.wait_for_selector("body[data-ready='true']", timeout=30_000)
    mouse_strokes(page, "#pad", DIGITS[digit], frame=frame)
    frame.click("#predict")
    frame.wait_for_selector("body[data-idle='true']")
    shown = frame.locator("#answer").inner_text()
    probabilities = np.array(frame.evaluate("browserPrediction().then((r) => r.probabilities)"))
    png = frame.evaluate("pad.toDataURL('image/png')")
    page.close()
    assert errors == []
    return shown, probabilities, Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1])))


def test_a_seven_drawn_on_the_tours_exported_pad_reads_as_the_model_reads_it(tour, browser, tmp_path):
    notebook, folder = tour
    body, _ = HTMLExporter().from_notebook_node(notebook)
    exported = tmp_path / "tour.html"
    exported.write_text(body, encoding="utf-8")
    shown, probabilities, drawing = draw_on_the_pad(browser, exported, serve_tfjs=True)
    model = numnet.load(folder / "tour-cnn.keras")  # the model the pad holds, saved by the tour
    expected = model.predict(canvas_to_mnist(drawing)[None])[0]
    assert shown.startswith("7 ") and expected.argmax() == 7
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_the_pad_works_offline_with_a_local_tensorflow_js(seed_mlp_file, browser, tmp_path):
    model = numnet.load(seed_mlp_file)
    pad = numnet.notebook.DrawingPad(model, tfjs=TFJS)
    assert CDN not in pad._repr_html_()
    page = tmp_path / "pad.html"
    page.write_text(f"<!doctype html><html><body>{pad._repr_html_()}</body></html>", encoding="utf-8")
    shown, probabilities, drawing = draw_on_the_pad(browser, page, serve_tfjs=False)
    expected = model.predict(canvas_to_mnist(drawing)[None])[0]
    assert shown.startswith("7 ")
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_the_pad_names_a_missing_tensorflow_js_an_empty_pad_and_a_missing_anywidget(
    seed_mlp_file, tmp_path, monkeypatch
):
    model = numnet.load(seed_mlp_file)
    with pytest.raises(InputError, match="is not a file; give a local tf.min.js"):
        numnet.notebook.DrawingPad(model, tfjs=tmp_path / "missing.js")
    with pytest.raises(InputError, match="nothing read yet: draw a digit"):
        numnet.notebook.DrawingPad(model).image()
    monkeypatch.setitem(sys.modules, "anywidget", None)  # as where it is not installed
    with pytest.raises(InputError, match="pip install anywidget"):
        numnet.notebook.DrawingPad(model).image()


def test_the_plot_helpers_draw_the_reports_figures_from_a_model(seed_mlp_file, mnist_inputs):
    _, (x_test, y_test) = mnist_inputs
    model = numnet.load(seed_mlp_file)
    x, y = x_test[:2000], y_test[:2000]
    predicted = model.predict(x).argmax(axis=1)
    confusion = numnet.plot.confusion(model, x, y)
    assert confusion.axes[0].get_title() == f"mlp\n{(predicted == y).mean():.2%}"
    counts = {text.get_text() for text in confusion.axes[0].texts}
    assert str(int(((y == 7) & (predicted == 7)).sum())) in counts
    wrong = np.flatnonzero(predicted != y)
    samples = numnet.plot.samples(model, x, y)
    titles = [ax.get_title() for ax in samples.axes if ax.get_title()]
    assert len(titles) == min(10, len(wrong)) and all(" read as " in t for t in titles)
    history = numnet.plot.history({"loss": [0.5, 0.3], "accuracy": [0.8, 0.9], "val_loss": [0.4, 0.35],
                                   "val_accuracy": [0.85, 0.88]}, name="run")  # fmt: skip
    assert [line.get_label() for line in history.axes[0].lines] == ["run (train)", "run (val)"]
    assert history._repr_png_().startswith(b"\x89PNG")


PAD_NOTEBOOK = [
    "import json\nimport numnet\npad = numnet.notebook.DrawingPad(numnet.load(r'{model}'))\npad",
    "print('IMAGE', json.dumps(pad.image().tolist()))",
]


@pytest.fixture
def jupyterlab(tmp_path):
    """A real JupyterLab server on 127.0.0.1, no token, serving tmp_path; its URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--IdentityProvider.token=", "--ServerApp.password=",
               f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=",
               "--ServerApp.disable_check_xsrf=True", "--allow-root"]  # fmt: skip
    log = tmp_path / "jupyterlab.log"
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "api/status", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
    yield url
    server.terminate()
    server.wait(timeout=20)


def test_in_jupyterlab_the_pad_is_a_widget_that_hands_the_drawing_back_to_python(
    seed_mlp_file, browser, jupyterlab, tmp_path
):
    """The widget path for real: JupyterLab shows the pad, a 7 is drawn and read in the page, and
    `pad.image()` in the kernel returns the very 28x28 input the page gave the model."""
    cells = [nbformat.v4.new_code_cell(source.replace("{model}", str(seed_mlp_file))) for source in PAD_NOTEBOOK]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=kernel), tmp_path / "pad.ipynb")
    page = browser.new_page(viewport={"width": 1200, "height": 1400})

    def answer(route):  # the lab's own server, the CDN's TensorFlow.js from the local copy, nothing else
        if route.request.url.startswith(CDN):
            route.fulfill(path=str(TFJS), content_type="text/javascript")
        elif route.request.url.startswith(jupyterlab):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", answer)
    page.goto(jupyterlab + "lab/tree/pad.ipynb")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    run_cell(page, 0)
    page.wait_for_selector(".jp-OutputArea iframe.numnet-drawing-pad", timeout=60_000)
    frame = next(f for f in page.frames if f.url == "about:srcdoc")
    frame.wait_for_selector("body[data-ready='true']", timeout=30_000)
    mouse_strokes(page, "#pad", DIGITS[7], frame=frame)
    frame.click("#predict")
    frame.wait_for_selector("body[data-idle='true']")
    assert frame.locator("#answer").inner_text().startswith("7 ")
    seen = np.array(frame.evaluate("Array.from(canvasToMnist(pad))")).reshape(28, 28)
    run_cell(page, 1)
    output = page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output")
    output.filter(has_text="IMAGE").wait_for(timeout=30_000)
    image = np.array(json.loads(output.inner_text().split("IMAGE", 1)[1]))
    np.testing.assert_allclose(image, seen, atol=1e-6)
    assert numnet.load(seed_mlp_file).predict(image[None, ..., None]).argmax() == 7
    page.close()


def run_cell(page, index: int) -> None:
    """Selects the notebook's cell `index` and runs it as a person does: Shift+Enter, again if the
    kernel was still connecting and the cell never started (its prompt still blank)."""
    cell = page.locator(".jp-Cell").nth(index)
    for _ in range(5):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            page.wait_for_function("(prompt) => prompt.innerText.trim() !== '[ ]:'",
                                   arg=cell.locator(".jp-InputPrompt").element_handle(), timeout=10_000)  # fmt: skip
            return
        except PlaywrightTimeout:
            continue
    pytest.fail(f"JupyterLab never ran cell {index}")

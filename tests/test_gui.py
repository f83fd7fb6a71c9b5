"""The Tk drawing app in a real window on a virtual screen (Xvfb), driven stroke by stroke."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from strokes import DIGITS

import numnet

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="module")
def display():
    if shutil.which("Xvfb") is None:
        if os.environ.get("CI"):
            pytest.fail("Xvfb is missing: .ci/run installs it (apt-get install xvfb)")
        pytest.skip("needs Xvfb (apt-get install xvfb)")
    # -displayfd: Xvfb picks a free display number and writes it to the pipe once it is ready.
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
    )
    os.close(write_end)
    with os.fdopen(read_end) as ready:
        number = ready.readline().strip()
    assert number, "Xvfb did not start"
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = f":{number}"
    yield os.environ["DISPLAY"]
    server.terminate()
    server.wait(timeout=10)
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old


@pytest.fixture(scope="module")
def trained_models(seed_mlp_file):
    return {"mlp": seed_mlp_file}


@pytest.fixture
def app(display, trained_models):
    import tkinter as tk

    from numnet.gui.app import DrawingApp

    root = tk.Tk()
    application = DrawingApp(root, trained_models)
    root.update()
    yield application
    root.destroy()


def drag(app, points) -> None:
    """Press, move and release the left button over the canvas, as the mouse would."""
    canvas = app.canvas
    x, y = points[0]
    canvas.event_generate("<ButtonPress-1>", x=int(x), y=int(y), button=1)
    for next_x, next_y in points[1:]:
        for t in np.linspace(0, 1, 6)[1:]:  # several motion events per segment, as a real drag sends
            canvas.event_generate("<B1-Motion>", x=int(x + t * (next_x - x)), y=int(y + t * (next_y - y)), state=0x100)
        x, y = next_x, next_y
        app.root.update()
    canvas.event_generate("<ButtonRelease-1>", x=int(x), y=int(y), button=1)
    app.root.update()


@pytest.mark.parametrize("digit", sorted(DIGITS))
def test_drawing_a_digit_shows_it_with_a_centred_preview(app, digit):
    for stroke in DIGITS[digit]:
        drag(app, stroke)
    app.predict_button.invoke()
    app.root.update()
    assert app.answer.get().startswith(f"{digit} "), app.answer.get()
    image = app.model_input[..., 0]
    ys, xs = np.mgrid[0:28, 0:28]
    assert abs((ys * image).sum() / image.sum() - 14) <= 1 and abs((xs * image).sum() / image.sum() - 14) <= 1
    assert len(app.preview.find_all()) > 20  # the preview shows the 28x28 input
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot(app, ARTIFACTS / f"gui-digit-{digit}.png")


def test_real_pointer_drags_through_the_x_server_draw_a_digit(app):
    """xdotool moves the X pointer and presses its button: the events reach Tk as a person's would."""
    if shutil.which("xdotool") is None:
        if os.environ.get("CI"):
            pytest.fail("xdotool is missing: .ci/run installs it (apt-get install xdotool)")
        pytest.skip("needs xdotool (apt-get install xdotool)")
    app.root.update()
    left, top = app.canvas.winfo_rootx(), app.canvas.winfo_rooty()
    for stroke in DIGITS[7]:
        (x0, y0), (x1, y1) = stroke
        command = ["xdotool", "mousemove", "--sync", str(left + x0), str(top + y0), "mousedown", "1"]
        for t in np.linspace(0, 1, 12)[1:]:
            command += ["mousemove", "--sync", str(int(left + x0 + t * (x1 - x0))), str(int(top + y0 + t * (y1 - y0)))]
        subprocess.run([*command, "mouseup", "1"], check=True, timeout=30)
        for _ in range(20):  # let Tk take the queued events
            app.root.update()
    assert app.answer.get().startswith("7 "), app.answer.get()  # predicted on release of the last stroke
    ink = np.asarray(app.image) < 128
    assert ink[60, 80:200].mean() > 0.9  # the top bar of the 7 went into the offscreen image


def test_the_selector_switches_models_without_restarting(display, trained_models, tmp_path):
    import tkinter as tk

    from numnet.gui.app import DrawingApp

    other = numnet.build(numnet.specs.mlp(), seed=1)  # untrained: it answers differently
    other.save(tmp_path / "untrained.npz")
    root = tk.Tk()
    try:
        app = DrawingApp(root, {**trained_models, "untrained": tmp_path / "untrained.npz"})
        root.update()  # events reach a widget only once it is mapped
        drag(app, DIGITS[1][0])
        trained_answer = app.probabilities.copy()
        app.model_name.set("untrained")
        app.selector.event_generate("<<ComboboxSelected>>")
        root.update()
        assert set(app.predictor.loaded) == {"mlp", "untrained"} and "untrained" in app.answer.get()
        assert not np.allclose(app.probabilities, trained_answer)
    finally:
        root.destroy()


def test_clear_and_an_empty_canvas_ask_for_a_drawing(app):
    drag(app, DIGITS[1][0])
    app.clear_button.invoke()
    app.predict_button.invoke()
    app.root.update()
    assert app.answer.get() == "Draw a digit first" and app.probabilities is None


def test_without_models_the_app_says_how_to_train_them(tmp_path):
    env = {**os.environ, "NUMNET_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "numnet.gui"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "python -m numnet.train --backend numba" in result.stderr


def screenshot(app, path: Path) -> None:
    from PIL import ImageGrab

    root = app.root
    box = (root.winfo_rootx(), root.winfo_rooty(), root.winfo_rootx() + root.winfo_width(),
           root.winfo_rooty() + root.winfo_height())  # fmt: skip
    ImageGrab.grab(bbox=box, xdisplay=os.environ["DISPLAY"]).save(path)


def test_test_protocol_asks_twenty_digits_and_saves_statistics_and_a_chart(app, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("NUMNET_HOME", str(tmp_path))
    app.protocol_button.invoke()
    asked = []
    for _ in range(20):
        asked.append(int(app.prompt.get().split()[3]))
        drag(app, DIGITS[7][0])
        drag(app, DIGITS[7][1])  # the person always draws a 7
        if asked[-1] == 7:
            app.right_button.invoke()
        else:
            app.true_digit.set("7")
            app.wrong_button.invoke()
        app.root.update()
    assert asked == [1, 3, 5, 7, 2] * 4
    stats_path, chart_path = app.saved
    record = json.loads(stats_path.read_text())
    assert record["per_digit"]["7"]["drawn"] == 20 and record["per_digit"]["7"]["recognised"] == 20
    assert record["per_digit"]["1"]["drawn"] == 0 and len(record["answers"]) == 20
    chart = Image.open(chart_path)
    assert chart.format == "PNG" and chart.size == (600, 350)
    assert len(np.unique(np.asarray(chart.convert("L")))) > 10  # not blank
    assert app.answer.get() == "Protocol complete"


def test_the_app_warms_up_in_the_background_and_keeps_its_size(app):
    import time

    assert app.status.get().startswith("Warming up") or app.status.get().startswith("Ready")
    deadline = time.monotonic() + 60
    while not app.status.get().startswith("Ready") and time.monotonic() < deadline:
        app.root.update()
        time.sleep(0.05)
    assert app.status.get().startswith("Ready"), app.status.get()
    assert "mlp" in app.predictor.loaded  # the model was loaded (and its kernels compiled) before any drawing
    width, height = app.root.winfo_width(), app.root.winfo_height()
    app.protocol_button.invoke()
    app.root.update()
    assert "Draw the digit 1" in app.prompt.get()
    assert (app.root.winfo_width(), app.root.winfo_height()) == (width, height)  # no jump when it starts
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot(app, ARTIFACTS / "gui-protocol.png")


def test_strokes_are_smooth_without_notches(app):
    """A stroke drawn fast (few motion events) and slowly has the pen's width everywhere along it."""
    app.pen.set(16)
    drag(app, [(30, 60), (250, 60)])
    drag(app, [(30, 200), (90, 150), (150, 220), (250, 170)])
    ink = np.asarray(app.image) < 128
    thickness = ink[:120, 40:240].sum(axis=0)  # the straight stroke, column by column
    assert thickness.min() >= 15 and thickness.max() <= 17, (thickness.min(), thickness.max())
    zigzag = ink[120:, :]
    columns = zigzag[:, 40:240].sum(axis=0)
    assert columns.min() >= 14  # never thinner than the pen, also at the turns
    assert app.pen_label.get() == "pen 16 px"  # the pen shows its size

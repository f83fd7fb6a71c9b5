"""The drawing page: its HTTP API, and a real server driven by headless Chromium through Playwright."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from strokes import DIGITS
from strokes import mouse_strokes as draw_with_mouse

import numnet

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# Chromium as this machine runs it headless: no sandbox as root, no GPU, and no background
# connections (the network is closed; Chromium would retry them on every start).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def png_of(strokes, size: int = 280, width: int = 18) -> bytes:
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    scale = size / 280
    for stroke in strokes:
        points = [(x * scale, y * scale) for x, y in stroke]
        draw.line(points, fill="black", width=round(width * scale), joint="curve")
        for x, y in (points[0], points[-1]):
            r = width * scale / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- a real server, asked over HTTP --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: list[Path], backend: str = "numba") -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "numnet.web", "--port", str(port), "--backend", backend]
    for path in models:
        command += ["--model", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "models", timeout=2)
            return process, url
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"the web server did not start: {process.stdout.read()}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def server(seed_mlp_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-models")
    numnet.build(numnet.specs.mlp(), seed=1).save(folder / "untrained.npz")
    (folder / "broken.npz").write_bytes(b"PK\x03\x04 not really a model")
    process, url = start_server([seed_mlp_file, folder / "untrained.npz", folder / "broken.npz"])
    yield url
    process.terminate()
    process.wait(timeout=10)


def post(server: str, body: bytes, content_type: str = "image/png", model: str | None = None) -> tuple[int, dict]:
    url = server + "predict" + (f"?model={model}" if model else "")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_page_has_a_canvas_and_the_controls(server):
    with urllib.request.urlopen(server, timeout=30) as response:
        assert response.status == 200 and response.headers["content-type"].startswith("text/html")
        page = response.read().decode()
    for part in ('<canvas id="pad"', 'id="predict"', 'id="clear"', 'id="model"', "pointerdown"):
        assert part in page
    with urllib.request.urlopen(server + "models", timeout=30) as response:
        assert json.loads(response.read()) == {"models": ["mlp", "untrained", "broken"]}


@pytest.mark.parametrize("digit", sorted(DIGITS))
@pytest.mark.parametrize("size", [280, 560])
def test_a_drawn_digit_is_recognised(server, digit, size):
    status, result = post(server, png_of(DIGITS[digit], size))
    assert status == 200, result
    assert result["digit"] == digit and result["model"] == "mlp"
    assert len(result["probabilities"]) == 10 and sum(result["probabilities"]) == pytest.approx(1, abs=1e-4)
    preview = np.array(result["preview"])
    assert preview.shape == (28, 28) and 0 <= preview.min() and preview.max() <= 1


def test_an_empty_canvas_asks_for_a_drawing(server):
    blank = io.BytesIO()
    Image.new("RGB", (280, 280), "white").save(blank, format="PNG")
    status, result = post(server, blank.getvalue())
    assert status == 200 and result["digit"] is None and "draw a digit first" in result["message"]


def huge_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")  # a few kB that decode to megapixels
    return buffer.getvalue()


BAD_UPLOADS = [
    ("text", b"hello", "text/plain", 415, "send the drawing as an image"),
    ("no body", b"", "image/png", 400, "no image in its body"),
    ("garbage", b"\x89PNG\r\n\x1a\n" + os.urandom(300), "image/png", 400, "not a readable image"),
    ("truncated", png_of(DIGITS[7])[:200], "image/png", 400, "not a readable image"),
    ("html as png", b"<html><body>hi</body></html>", "image/png", 400, "not a readable image"),
    ("too many pixels", huge_png(5000, 5000), "image/png", 413, "5000x5000 pixels"),
    ("decompression bomb", huge_png(20000, 10000), "image/png", 413, "too many pixels"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [u[1:] for u in BAD_UPLOADS],
                         ids=[u[0] for u in BAD_UPLOADS])  # fmt: skip
def test_bad_uploads_are_refused_with_a_clear_message_and_the_server_keeps_serving(
    server, body, content_type, status, message
):
    refused, result = post(server, body, content_type)
    assert refused == status and message in result["error"]
    good, result = post(server, png_of(DIGITS[1]))
    assert good == 200 and result["digit"] == 1


def test_an_oversized_upload_is_refused_before_it_is_read(server):
    """A client that declares 5 MB gets 413 at once, without sending the body (like Expect: 100-continue)."""
    connection = http.client.HTTPConnection(server.split("/")[2], timeout=30)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "image/png")
    connection.putheader("Content-Length", str(5 << 20))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "the limit is" in json.loads(response.read())["error"]
    connection.close()
    assert post(server, png_of(DIGITS[1]))[0] == 200


def test_an_oversized_upload_without_a_declared_length_is_cut_off(server):
    connection = http.client.HTTPConnection(server.split("/")[2], timeout=30)
    chunks = (b"\x89PNG" + b"\x00" * ((1 << 20) - 4) for _ in range(5))
    connection.request("POST", "/predict", body=chunks, headers={"Content-Type": "image/png"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "over the limit" in json.loads(response.read())["error"]
    connection.close()
    assert post(server, png_of(DIGITS[1]))[0] == 200


def test_a_body_that_stops_short_is_cut_off_and_a_client_that_leaves_is_no_error(seed_mlp_file):
    from numnet.gui.web import BODY_SECONDS

    process, url = start_server([seed_mlp_file])
    address = ("127.0.0.1", int(url.split(":")[2].strip("/")))
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n\x89PNG"
    )
    try:
        leaving = socket.create_connection(address)
        leaving.sendall(head)
        leaving.close()  # a closed tab: the body never comes
        stalled = socket.create_connection(address, timeout=BODY_SECONDS + 20)
        stalled.sendall(head)  # claims 1000 bytes, sends 4, then waits
        started = time.monotonic()
        assert post(url, png_of(DIGITS[1]))[0] == 200  # others are served meanwhile
        answer = b""
        while chunk := stalled.recv(4096):  # the server answers and closes the connection
            answer += chunk
        answer = answer.decode()
        waited = time.monotonic() - started
        stalled.close()
        assert answer.startswith("HTTP/1.1 408") and f"did not arrive within {BODY_SECONDS} s" in answer
        assert BODY_SECONDS - 1 < waited < BODY_SECONDS + 10
        assert post(url, png_of(DIGITS[7]))[0] == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "Traceback" not in output and "Exception" not in output, output


def test_without_the_web_extra_the_message_is_the_readme_install_line(seed_mlp_file, monkeypatch, capsys):
    from numnet.gui import web

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the extra were not installed
    assert web.main(["--model", str(seed_mlp_file)]) == 2
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    install = 'pip install -e ".[web]"'
    assert install in readme and install in capsys.readouterr().err


def test_unknown_and_broken_models_are_named(server):
    status, result = post(server, png_of(DIGITS[1]), model="resnet")
    assert status == 404 and "no model named 'resnet'" in result["error"]
    status, result = post(server, png_of(DIGITS[1]), model="broken")
    assert status == 500 and "model 'broken' cannot be loaded" in result["error"]


def test_two_model_files_of_the_same_name_are_refused_not_merged(tmp_path, seed_mlp_file):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mlp.npz").write_bytes(seed_mlp_file.read_bytes())
    command = [sys.executable, "-m", "numnet.web", "--model", str(tmp_path / "a/mlp.npz"), "--model",
               str(tmp_path / "b/mlp.npz"), "--export", str(tmp_path / "site")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "would both be offered as 'mlp'; rename one" in result.stderr
    assert not (tmp_path / "site").exists()


def test_without_models_the_server_says_how_to_train_them(tmp_path):
    env = {**os.environ, "NUMNET_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "numnet.web"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "python -m numnet.train --backend numba" in result.stderr


# -- and driven by a real browser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(params=[1, 2], ids=["dpr1", "dpr2"])
def page(request, browser, server):
    context = browser.new_context(device_scale_factor=request.param, has_touch=True,
                                  viewport={"width": 800, "height": 600})  # fmt: skip
    page = context.new_page()
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    assert page.evaluate("window.devicePixelRatio") == request.param
    yield page
    context.close()


def canvas_origin(page) -> tuple[float, float]:
    box = page.locator("#pad").bounding_box()
    return box["x"] + 1, box["y"] + 1  # inside the 1 px border


def mouse_strokes(page, strokes) -> None:
    draw_with_mouse(page, "#pad", strokes)


def touch_strokes(page, strokes) -> None:
    """Real touch input, through the DevTools protocol as a touch screen delivers it."""
    left, top = canvas_origin(page)
    session = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = [{"x": left + x, "y": top + y} for x, y in stroke]
        session.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [points[0]]})
        for a, b in zip(points, points[1:]):
            for t in np.linspace(0, 1, 6)[1:]:
                point = {"x": a["x"] + t * (b["x"] - a["x"]), "y": a["y"] + t * (b["y"] - a["y"])}
                session.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


PREVIEW_PIXELS = "Array.from(document.querySelector('#preview').getContext('2d').getImageData(0, 0, 28, 28).data)"


def shown_answer(page) -> str:
    """The answer once every prediction the page asked for has come back."""
    page.wait_for_selector("body[data-idle='true']")
    return page.locator("#answer").inner_text()


@pytest.mark.parametrize("digit", sorted(DIGITS))
def test_drawing_with_the_mouse_and_clicking_predict_shows_the_digit(page, digit):
    mouse_strokes(page, DIGITS[digit])
    page.click("#predict")
    assert shown_answer(page).startswith(f"{digit} "), shown_answer(page)
    assert page.locator(".bar.best").inner_text() == str(digit)
    shown = np.array(page.evaluate(PREVIEW_PIXELS), dtype=np.float64).reshape(28, 28, 4)[..., 0]
    ys, xs = np.mgrid[0:28, 0:28]
    assert shown.sum() > 0, "the 28x28 preview is empty"
    assert abs((ys * shown).sum() / shown.sum() - 14) <= 1 and abs((xs * shown).sum() / shown.sum() - 14) <= 1
    ratio = page.evaluate("window.devicePixelRatio")
    assert page.evaluate("document.querySelector('#pad').width") == 280 * ratio  # sharp on HiDPI screens
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-digit-{digit}-dpr{ratio}.png"))


def test_the_page_fits_a_phone_and_reads_a_digit_drawn_with_a_finger(browser, server):
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=3, has_touch=True,
                                  is_mobile=True)  # fmt: skip
    page = context.new_page()
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing to scroll sideways
        for selector in ("#pad", "#predict", "#clear", "#model", "#answer", "#bars"):
            box = page.locator(selector).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375, selector
        assert page.locator("#predict").bounding_box()["height"] >= 40  # a finger-sized target
        touch_strokes(page, DIGITS[7])
        assert shown_answer(page).startswith("7 "), shown_answer(page)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-phone.png"), full_page=True)
    finally:
        context.close()


def test_drawing_with_a_finger_predicts_on_release(page):
    touch_strokes(page, DIGITS[7])
    assert shown_answer(page).startswith("7 "), shown_answer(page)


def test_clear_and_an_empty_canvas_ask_for_a_drawing(page):
    mouse_strokes(page, DIGITS[1])
    assert shown_answer(page).startswith("1 ")
    page.click("#clear")
    assert page.locator("#answer").inner_text() == "Draw a digit"
    page.click("#predict")
    assert shown_answer(page) == "Draw a digit first"


def test_the_model_selector_switches_models(page):
    mouse_strokes(page, DIGITS[1])
    trained = shown_answer(page)
    assert trained.startswith("1 ") and "mlp" in trained
    page.select_option("#model", "untrained")
    assert "untrained" in shown_answer(page)


def test_the_server_listens_on_localhost_only_by_default(server):
    port = int(server.rsplit(":", 1)[1].strip("/"))
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("reads the listening sockets from Linux's /proc/net/tcp")
    listening = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(name):
            for line in Path(name).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:
                    listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, and nothing else (no 0.0.0.0, no ::)


def peak_memory_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


@contextlib.contextmanager
def warm_server(model: Path):
    """A server with its model loaded and kernels compiled before anything is measured: (process, url,
    its peak memory so far); afterwards it must still read a drawing right."""
    process, url = start_server([model])
    try:
        assert post(url, png_of(DIGITS[1]))[0] == 200
        yield process, url, peak_memory_mib(process.pid)
        assert post(url, png_of(DIGITS[7]))[1]["digit"] == 7
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_many_large_uploads_at_once_keep_the_server_memory_bounded(seed_mlp_file):
    """Ten 4096x4096 RGBA drawings at once (each ~0.5 GB to prepare at full size) stay within a bound."""
    with warm_server(seed_mlp_file) as (process, url, before):
        canvas = Image.new("RGBA", (4096, 4096), (255, 255, 255, 255))
        ImageDraw.Draw(canvas).line([(2048, 600), (2048, 3500)], fill=(0, 0, 0, 255), width=260)
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG")
        body = buffer.getvalue()
        assert len(body) < 200_000
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: post(url, body), range(10)))
        assert all(status == 200 and result["digit"] == 1 for status, result in answers), answers
        growth = peak_memory_mib(process.pid) - before
        assert growth < 600, f"serving ten large uploads at once grew the server's peak memory by {growth:.0f} MiB"


def flood_upload(url: str, size: int) -> int | str:
    """One upload of `size` bytes that are no image; the status, or how the connection ended."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", "/predict", body=b"\x89PNG" + bytes(size - 4), headers={"Content-Type": "image/png"})
        return connection.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        return "closed"
    finally:
        connection.close()


def test_three_hundred_large_uploads_at_once_hold_memory_and_a_drawing_is_still_answered(seed_mlp_file):
    """300 concurrent 4 MiB uploads: the bodies held at once stay within their budget (the others are
    told 503, Retry-After), the server's memory grows by less than 300 MiB, and a drawing sent in the
    middle of it is answered within 2 s."""
    with warm_server(seed_mlp_file) as (process, url, before):
        with concurrent.futures.ThreadPoolExecutor(300) as pool:
            flood = [pool.submit(flood_upload, url, 4 << 20) for _ in range(300)]
            time.sleep(0.5)
            start = time.perf_counter()
            status, answer = post(url, png_of(DIGITS[7]))
            answered = time.perf_counter() - start
            outcomes = [future.result() for future in flood]
        assert status == 200 and answer["digit"] == 7 and answered < 2.0, (status, answered)
        assert set(outcomes) <= {400, 503, "closed"} and 503 in outcomes, sorted(set(map(str, outcomes)))
        growth = peak_memory_mib(process.pid) - before
        assert growth < 300, f"300 uploads of 4 MiB at once grew the server's peak memory by {growth:.0f} MiB"


def test_a_client_that_never_finishes_its_headers_is_disconnected(seed_mlp_file, monkeypatch):
    """Slow-header clients are dropped after HEADER_SECONDS instead of holding a connection forever."""
    from numnet.gui import web

    process, url = start_server([seed_mlp_file])
    try:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=web.HEADER_SECONDS + 20) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
            start = time.perf_counter()
            assert slow.recv(1024) == b""  # the server closed the connection
            assert web.HEADER_SECONDS - 1 < time.perf_counter() - start < web.HEADER_SECONDS + 10
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_request_for_another_host_name_is_refused(server):
    """DNS rebinding: a page elsewhere whose name resolves to 127.0.0.1 sends its own Host header."""
    host, port = server.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/models", headers={"Host": "attacker.example"})
    assert connection.getresponse().status == 400
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/models", headers={"Host": f"localhost:{port}"})
    assert connection.getresponse().status == 200

"""canvas_to_mnist on drawings of real MNIST test digits: any size, place, pen width or colours.

The drawings are made here, reproducibly: each MNIST test digit is cropped, scaled to a height of
50-260 px, drawn with a thinner or thicker pen (eroded or dilated by about one MNIST pixel), and
placed on a white 300x300 canvas in black. They are read by the seed MLP trained by numnet. The
set is the first 300 test digits that model recognises in their original 28x28 form, so what is
measured is what the preprocessing keeps, not the model's own 2 % of errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import numnet
from numnet.data.drawings import render as draw
from numnet.data.preprocess import canvas_to_mnist


@pytest.fixture(scope="module")
def reader(mnist_inputs, seed_mlp_file):
    """The seed MLP trained by numnet, and the test digits it reads right as MNIST gives them."""
    _, (x_test, y_test) = mnist_inputs
    model = numnet.load(seed_mlp_file, backend="numba")
    right = np.flatnonzero(model.predict(x_test[:1000]).argmax(axis=1) == y_test[:1000])[:300]
    return model, right


VARIANTS = [
    (h, where, "normal") for h in (50, 120, 260) for where in ("centre", "anywhere", "top-left", "bottom-right")
]
VARIANTS += [(h, "anywhere", pen) for h in (50, 120, 260) for pen in ("thick", "thin")]


@pytest.mark.parametrize("height,where,pen", VARIANTS)
def test_drawn_digits_are_recognised_wherever_and_however_drawn(height, where, pen, reader, mnist):
    model, right = reader
    (_, _), (x_test, y_test) = mnist
    rng = np.random.default_rng(height)
    inputs = np.stack([canvas_to_mnist(draw(x_test[i], height, where, pen, rng)) for i in right])
    accuracy = (model.predict(inputs).argmax(axis=1) == y_test[right]).mean()
    assert accuracy >= 0.98, f"{accuracy:.1%} for {height}px, {where}, {pen} pen"


def test_shrinking_the_whole_canvas_fails_where_canvas_to_mnist_succeeds(reader, mnist):
    """The naive pipeline this module replaces, on small off-centre drawings."""
    model, right = reader
    (_, _), (x_test, y_test) = mnist
    rng = np.random.default_rng(1)
    drawings = [draw(x_test[i], 60, "anywhere", "normal", rng) for i in right]
    naive = np.stack([(255 - np.asarray(d.resize((28, 28), Image.LANCZOS))) / 255 for d in drawings])
    naive_accuracy = (model.predict(naive.astype(np.float32)).argmax(axis=1) == y_test[right]).mean()
    ours = np.stack([canvas_to_mnist(d) for d in drawings])
    assert naive_accuracy < 0.3 and (model.predict(ours).argmax(axis=1) == y_test[right]).mean() >= 0.98


def test_output_is_mnist_shaped_and_centred(mnist):
    (_, _), (x_test, _) = mnist
    out = canvas_to_mnist(draw(x_test[0], 200, "bottom-right", "normal", np.random.default_rng(0)))
    assert out.shape == (28, 28, 1) and out.dtype == np.float32 and out.max() == pytest.approx(1.0)
    ys, xs = np.mgrid[0:28, 0:28]
    mass = out[..., 0].sum()
    assert abs((ys * out[..., 0]).sum() / mass - 14) <= 0.5 and abs((xs * out[..., 0]).sum() / mass - 14) <= 0.5
    rows = np.flatnonzero(out[..., 0].max(axis=1) > 0.1)
    assert rows[-1] - rows[0] + 1 <= 20  # fits MNIST's 20x20 box


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_empty_canvases_give_none(mode):
    assert canvas_to_mnist(Image.new(mode, (300, 300), "white")) is None
    assert canvas_to_mnist(Image.new(mode, (120, 80), "black")) is None


def test_light_ink_on_dark_and_strokes_on_a_transparent_canvas_read_the_same(mnist):
    (_, _), (x_test, _) = mnist
    dark_on_light = draw(x_test[3], 150, "centre", "normal", np.random.default_rng(0))
    expected = canvas_to_mnist(dark_on_light)
    light_on_dark = Image.fromarray(255 - np.asarray(dark_on_light)).convert("RGB")
    np.testing.assert_allclose(canvas_to_mnist(light_on_dark), expected, atol=1e-5)
    transparent = Image.new("RGBA", dark_on_light.size, (0, 0, 0, 0))
    transparent.putalpha(Image.fromarray(255 - np.asarray(dark_on_light)))
    np.testing.assert_allclose(canvas_to_mnist(transparent), expected, atol=1e-5)


@pytest.mark.parametrize("depth", ["16-bit PNG", "32-bit float TIFF"])
def test_scans_of_more_than_8_bits_are_read_at_their_own_depth(depth, mnist, tmp_path):
    """A scan-like 16-bit PNG or a float TIFF of a digit reads as the same digit as its 8-bit copy
    (a conversion to 8 bits clipped them to white: an 'empty' canvas)."""
    (_, _), (x_test, _) = mnist
    eight = draw(x_test[0], 200, "centre", "normal", np.random.default_rng(0))
    levels = np.asarray(eight, np.float64) / 255.0
    if depth == "16-bit PNG":
        Image.fromarray(np.round(levels * 65535).astype(np.uint16)).save(tmp_path / "scan.png")
        deep = Image.open(tmp_path / "scan.png")
    else:
        Image.fromarray(levels.astype(np.float32), mode="F").save(tmp_path / "scan.tiff")
        deep = Image.open(tmp_path / "scan.tiff")
    assert deep.mode in ("I", "I;16", "F")
    ours, expected = canvas_to_mnist(deep), canvas_to_mnist(eight)
    assert ours is not None and np.abs(ours - expected).max() < 0.02


def test_an_image_mode_without_grey_levels_is_refused_by_name():
    lab = Image.new("LAB", (50, 50))
    with pytest.raises(numnet.errors.InputError, match="cannot read an image of mode LAB as grey levels"):
        canvas_to_mnist(lab)

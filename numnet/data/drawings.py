"""Drawing sets: how well a model reads digits as people draw them, not as MNIST stores them.

Each set turns labelled digits into 300x300 canvases like those the drawing apps receive (black ink
on white) and reads them back through `canvas_to_mnist`, as the apps do:

- `anywhere`: MNIST test digits 60-260 px tall, anywhere on the canvas, in anti-aliased grey ink;
- `mouse`: the same digits drawn as a mouse draws them: a round pen about one MNIST pixel thicker,
  in binary ink (no grey edge);
- `thin`: a pen about half an MNIST pixel thinner;
- `optdigits`: 1,797 digits by 43 other writers (the UCI optdigits scans bundled with
  scikit-learn), 8x8 grey levels upscaled to 100-260 px, anywhere on the canvas.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from numnet.data.preprocess import canvas_to_mnist

CANVAS = 300
MNIST_SETS = ("anywhere", "mouse", "thin")
SETS = (*MNIST_SETS, "optdigits")


def render(digit: np.ndarray, height: int, where: str, pen: str, rng: np.random.Generator) -> Image.Image:
    """`digit` (uint8 grey, ink bright) drawn `height` px tall on a white canvas, black ink.

    where: centre, top-left, bottom-right or anywhere; pen: normal, thick, thin or mouse (thick
    and binary)."""
    ys, xs = np.nonzero(digit)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = min(height / crop.shape[0], CANVAS / crop.shape[1])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    ink = Image.fromarray(crop).resize(size, Image.BILINEAR)
    if pen in ("thick", "mouse"):  # about one MNIST pixel wider
        ink = ink.filter(ImageFilter.MaxFilter(2 * round(scale / 2) + 1))
    elif pen == "thin":  # about half an MNIST pixel narrower
        ink = ink.filter(ImageFilter.MinFilter(2 * round(scale / 4) + 1))
    if pen == "mouse":  # a canvas stroke is ink or no ink
        ink = ink.point(lambda level: 255 if level >= 96 else 0)
    free_x, free_y = CANVAS - ink.width, CANVAS - ink.height
    x, y = {
        "centre": (free_x // 2, free_y // 2),
        "top-left": (0, 0),
        "bottom-right": (free_x, free_y),
        "anywhere": (int(rng.integers(0, free_x + 1)), int(rng.integers(0, free_y + 1))),
    }[where]
    page = Image.new("L", (CANVAS, CANVAS), 0)
    page.paste(ink, (x, y))
    return Image.fromarray(255 - np.asarray(page))


def optdigits() -> tuple[np.ndarray, np.ndarray]:
    """UCI optdigits (scikit-learn's bundled copy) as uint8 images with bright ink, and labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("the optdigits set needs scikit-learn: pip install scikit-learn") from error
    digits = load_digits()
    return np.round(digits.images * (255 / 16)).astype(np.uint8), digits.target.astype(np.uint8)


def drawing_set(name: str, mnist_test=None, count: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (N, 28, 28, 1) float32, labels) of one set; the first `count` digits (all by default)."""
    rng = np.random.default_rng(seed)
    if name == "optdigits":
        images, labels = optdigits()
        heights = rng.integers(100, 261, len(images))
        pen = "normal"
    elif name in MNIST_SETS:
        images, labels = mnist_test
        heights = rng.integers(60, 261, len(images))
        pen = {"anywhere": "normal", "mouse": "mouse", "thin": "thin"}[name]
    else:
        raise ValueError(f"unknown drawing set {name!r}; choose from {SETS}")
    count = len(images) if count is None else min(count, len(images))
    inputs = [canvas_to_mnist(render(images[i], int(heights[i]), "anywhere", pen, rng)) for i in range(count)]
    return np.stack(inputs), labels[:count]


def accuracies(predict: Callable[[np.ndarray], np.ndarray], sets: dict[str, tuple]) -> dict[str, float]:
    """Each set's share of digits whose most probable class is the label."""
    return {name: float((predict(x).argmax(axis=1) == y).mean()) for name, (x, y) in sets.items()}

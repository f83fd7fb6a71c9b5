"""A drawing to model input, made the way MNIST itself was made.

MNIST digits were cropped to their ink, scaled with anti-aliasing to fit a 20x20 box keeping their
aspect ratio, and placed in a 28x28 field with their centre of mass at the centre. A model trained
on MNIST only knows digits prepared that way: shrinking a whole canvas to 28x28 instead gives a
tiny, off-centre, faint digit that it misreads (11-18 % accuracy on small or off-centre drawings).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from numnet.errors import InputError

FIELD = 28
BOX = 20
MNIST_CENTRE = 14.0  # the mean centre of mass of MNIST digits, in pixel-index coordinates
HIGH_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # read at their own depth, not as 8 bits
EMPTY_LEVEL = 0.1  # strongest ink below this (of full scale) counts as an empty canvas


def ink_intensity(image: Image.Image) -> np.ndarray:
    """Ink as float32 in [0, 1] on a zero background, whatever the colours and mode.

    A transparent canvas (HTML exports one) carries the strokes in its alpha channel. Otherwise the
    background is the median grey level (most of a canvas is background), so dark ink on a light
    background and light ink on a dark one both come out as ink.
    """
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"), dtype=np.float32)[..., 3]
        if alpha.min() < 255:
            return alpha / 255.0
    grey = grey_levels(image)
    background = float(np.median(grey))
    ink = background - grey if background > 0.5 else grey - background
    return np.clip(ink, 0.0, None)


def grey_levels(image: Image.Image) -> np.ndarray:
    """The image's grey levels as float32 in [0, 1]. 16-bit and 32-bit scans and float images keep
    their depth (an 8-bit conversion would clip them to white or black); any other mode PIL can turn
    into grey is converted, and one it cannot (CIELAB, say) is refused by name."""
    if image.mode in HIGH_DEPTH_MODES:
        grey = np.asarray(image, dtype=np.float64)
        if grey.size == 0 or not np.isfinite(grey).all():
            raise InputError(f"the image ({image.mode}) holds no finite grey levels")
        top = float(grey.max())
        full = next((scale for scale in (1.0, 255.0, 65535.0) if top <= scale), top)
        return np.clip(grey / full, 0.0, 1.0).astype(np.float32)
    try:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (ValueError, OSError) as error:
        raise InputError(f"cannot read an image of mode {image.mode} as grey levels ({error}); send a PNG") from None


def canvas_to_mnist(image: Image.Image) -> np.ndarray | None:
    """(28, 28, 1) float32 in [0, 1], as MNIST prepares a digit; None if nothing is drawn."""
    ink = ink_intensity(image)
    strongest = float(ink.max()) if ink.size else 0.0
    if strongest < EMPTY_LEVEL:
        return None
    rows = np.flatnonzero((ink > EMPTY_LEVEL * strongest).any(axis=1))
    cols = np.flatnonzero((ink > EMPTY_LEVEL * strongest).any(axis=0))
    digit = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] / strongest

    # Fit the longer side to 20 pixels, keeping the aspect ratio; LANCZOS anti-aliases the strokes.
    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(digit.astype(np.float32), mode="F").resize(size, Image.LANCZOS))
    small = np.clip(small, 0.0, None)
    if small.max() > 0:
        small = small / small.max()

    # Place it so its centre of mass lands on MNIST's centre.
    ys, xs = np.mgrid[0 : small.shape[0], 0 : small.shape[1]]
    mass = small.sum()
    top = int(round(MNIST_CENTRE - (ys * small).sum() / mass))
    left = int(round(MNIST_CENTRE - (xs * small).sum() / mass))
    top = min(max(top, 0), FIELD - small.shape[0])
    left = min(max(left, 0), FIELD - small.shape[1])
    field = np.zeros((FIELD, FIELD), np.float32)
    field[top : top + small.shape[0], left : left + small.shape[1]] = small
    return field[..., None]

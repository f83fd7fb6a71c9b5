"""Digits as a person draws them: strokes (lists of points) on a 280x280 canvas."""

import numpy as np

DIGITS = {
    1: [[(140, 50), (140, 230)]],
    7: [[(80, 60), (200, 60)], [(200, 60), (120, 230)]],
    0: [[(140 + 60 * np.sin(a) * 0.8, 140 - 85 * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 40)]],
}


def mouse_strokes(page, canvas: str, strokes, frame=None) -> None:
    """Draws `strokes` with the mouse on the canvas `canvas` (a CSS selector) of a Playwright page,
    or of one of its frames."""
    box = (frame or page).locator(canvas).bounding_box()
    left, top = box["x"] + 1, box["y"] + 1  # inside the 1 px border
    for stroke in strokes:
        page.mouse.move(left + stroke[0][0], top + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(left + x, top + y, steps=5)
        page.mouse.up()

"""Digits as a person draws them: strokes (lists of points) on a 280x280 canvas."""

import numpy as np

DIGITS = {
    1: [[(140, 50), (140, 230)]],
    7: [[(80, 60), (200, 60)], [(200, 60), (120, 230)]],
    0: [[(140 + 60 * np.sin(a) * 0.8, 140 - 85 * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 40)]],
}

"""What both drawing apps ask of a model: each one loaded once, on first use, from any thread, and
a drawing read into the ten probabilities, one prediction at a time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import numnet
from numnet.data.preprocess import canvas_to_mnist


class Predictor:
    """The models the app offers, by name, on one backend."""

    def __init__(self, models: dict[str, Path], backend: str) -> None:
        self.models, self.backend = models, backend
        self.loaded: dict[str, Any] = {}
        self.loading = threading.Lock()  # the Tk app's warm-up thread may be loading a model right now
        self.predicting = threading.Lock()  # the engines reuse buffers between calls

    def model(self, name: str) -> Any:
        """The named model, loaded once; numnet.load's NumnetError when the file cannot be used."""
        with self.loading:
            if name not in self.loaded:
                self.loaded[name] = numnet.load(self.models[name], backend=self.backend)
            return self.loaded[name]

    def read(self, name: str, drawing: Image.Image) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(the 28x28x1 input the model sees, its ten probabilities), or (None, None) for an empty canvas."""
        model = self.model(name)
        model_input = canvas_to_mnist(drawing)
        if model_input is None:
            return None, None
        with self.predicting:
            return model_input, model.probabilities(model_input[None])[0]

"""numnet in a Jupyter, JupyterLab, VS Code or Colab notebook: a drawing pad in the cell's output.

`DrawingPad(model)` shows the web page's canvas, reading each drawing as the page does (numnet's
preprocessing, the ten probabilities, the 28x28 input), with the model running in the browser on
TensorFlow.js. The model and the page travel inside the cell's HTML output (an iframe), so nothing
needs a server or a kernel: the pad keeps working in a saved notebook or its HTML export.
TensorFlow.js comes from its CDN, or from a local `tf.min.js` (`tfjs=`), which is then inlined so
the pad works offline. With `anywidget` installed, the pad is also a widget, and `pad.image()`
hands the last drawing back to Python.

The figures beside it are `numnet.plot.history`, `numnet.plot.confusion` and `numnet.plot.samples`.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from numnet.errors import InputError
from numnet.formats.tfjs import tfjs_artifacts
from numnet.gui.page import TFJS_CDN, drawing_page

PAD_HEIGHT = 760  # pixels: the page's canvas, bars and preview without a scroll bar


class DrawingPad:
    """A canvas that reads digits drawn with the mouse, a finger or a pen, with `model`."""

    def __init__(self, model: Any, tfjs: str | Path | None = None, height: int = PAD_HEIGHT) -> None:
        name = model.spec["name"]
        model_json, weights = tfjs_artifacts(model.spec, model.get_weights())
        inline = {name: {"model": model_json, "weights": base64.b64encode(weights).decode("ascii")}}
        if tfjs is None:
            library = f'<script src="{html.escape(TFJS_CDN)}"></script>\n'
        else:
            path = Path(tfjs)
            if not path.is_file():
                raise InputError(f"tfjs={str(path)!r} is not a file; give a local tf.min.js, or none for the CDN's")
            library = f"<script>{_inline_script(path.read_text(encoding='utf-8'))}</script>\n"
        models = f"window.NUMNET_INLINE_MODELS = {_inline_script(json.dumps(inline))};"
        setup = f"<script>window.NUMNET_STATIC_MODELS = {json.dumps([name])};\n{models}</script>\n{library}"
        self.page, self.name = drawing_page(setup), name
        self.height = int(height)
        self._widget: Any = None

    def _repr_html_(self) -> str:
        """The page in an iframe of its own: its scripts run, its names never meet the notebook's."""
        return (f'<iframe class="numnet-drawing-pad" srcdoc="{html.escape(self.page, quote=True)}" '
                f'style="width: 100%; max-width: 760px; height: {self.height}px; border: 0"></iframe>')  # fmt: skip

    def _ipython_display_(self) -> None:
        from IPython.display import display

        bundle = {"text/html": self._repr_html_(), "text/plain": f"DrawingPad({self.name})"}
        widget = self.widget()
        if widget is not None:  # front ends with widgets show the widget; the page's HTML stays for the rest
            bundle = {**widget._repr_mimebundle_()[0], **bundle}
        display(bundle, raw=True)

    def widget(self) -> Any:
        """The pad as an anywidget widget (made once), or None without anywidget."""
        if self._widget is None:
            try:
                self._widget = _widget_class()(frame=self._repr_html_())
            except ImportError:
                return None
        return self._widget

    def image(self) -> np.ndarray:
        """The last drawing the pad read, as the (28, 28) input the model saw, values in [0, 1]."""
        widget = self.widget()
        if widget is None:
            raise InputError("pad.image() needs the pad as a widget: pip install anywidget, then show the pad again")
        if len(widget.field) != 28 * 28:
            raise InputError("nothing read yet: draw a digit on the pad and press Predict first")
        return np.asarray(widget.field, dtype=np.float32).reshape(28, 28)


def _inline_script(text: str) -> str:
    """Text made safe inside a <script> element: it cannot close the element early."""
    return text.replace("</", "<\\/")


# The widget's front end: the iframe, and each drawing it reads passed to Python.
WIDGET_ESM = """
export function render({ model, el }) {
  el.innerHTML = model.get("frame");
  const frame = el.querySelector("iframe");
  const listen = (event) => {
    if (event.source === frame.contentWindow && event.data && event.data.numnet === "drawing") {
      model.set("field", event.data.field);
      model.save_changes();
    }
  };
  window.addEventListener("message", listen);
  return () => window.removeEventListener("message", listen);
}
"""


def _widget_class() -> type:
    import anywidget
    import traitlets

    class DrawingPadWidget(anywidget.AnyWidget):
        _esm = WIDGET_ESM
        frame = traitlets.Unicode("").tag(sync=True)
        field = traitlets.List(traitlets.Float(), default_value=[]).tag(sync=True)

    return DrawingPadWidget

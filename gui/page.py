"""The drawing page's HTML, one file for all its uses: served by `python -m numnet.web`, exported as a
static site, and shown in a notebook by `numnet.notebook.DrawingPad`."""

from __future__ import annotations

from importlib import resources

TFJS_CDN = "https://cdn.jsdelivr.net/npm/@tensorflow/tfjs@4.22.0/dist/tf.min.js"


def drawing_page(setup: str = "") -> str:
    """The page, with `setup` (script tags: its models, TensorFlow.js) before its own script."""
    page = resources.files("numnet.gui").joinpath("web_page.html").read_text(encoding="utf-8")
    return page.replace("<script>", setup + "<script>", 1)

"""`model.summary()`: Keras' table of layers, output shapes and parameters, for every backend; text
in a terminal, an HTML table in a notebook (and for a model shown as a cell's last value)."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

HEADER = ("Layer (type)", "Output Shape", "Param #")


@dataclass
class Summary:
    title: str
    rows: list[tuple[str, str, str]]  # layer (type), output shape, parameters
    total: int
    trainable: int

    def totals(self) -> list[str]:
        return [f"Total params: {self.total:,}", f"Trainable params: {self.trainable:,}",
                f"Non-trainable params: {self.total - self.trainable:,}"]  # fmt: skip

    def text(self) -> str:
        widths = [max(len(row[i]) for row in [HEADER, *self.rows]) + 2 for i in range(3)]
        lines = ["".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [HEADER, *self.rows]]
        rule = "=" * sum(widths)
        return "\n".join([self.title, rule, lines[0], rule, *lines[1:], rule, *self.totals()])

    def html(self) -> str:
        def cells(row: tuple[str, ...], tag: str) -> str:
            return "<tr>" + "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row) + "</tr>"

        body = "\n".join(cells(row, "td") for row in self.rows)
        return (f'<div class="numnet-summary"><p><b>{html.escape(self.title)}</b></p>\n'
                f'<table>\n<thead>{cells(HEADER, "th")}</thead>\n<tbody>\n{body}\n</tbody>\n</table>\n'
                f"<p>{'<br>'.join(html.escape(line) for line in self.totals())}</p></div>")  # fmt: skip


def in_notebook() -> bool:
    """Whether this runs in a notebook's kernel (Jupyter, JupyterLab, VS Code, Colab), which shows HTML."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ in ("ZMQInteractiveShell", "Shell")  # Shell: Colab's


class SummaryText(str):
    """The summary's text, returned after it was shown: a notebook does not echo it a second time."""

    def _ipython_display_(self) -> None:
        pass


def show(summary: Summary, print_fn: Callable[[str], None] | None) -> str:
    """Prints the summary (as a table in a notebook when print_fn is the default print); returns its text."""
    text = SummaryText(summary.text())
    if print_fn is print and in_notebook():
        from IPython.display import display

        display({"text/html": summary.html(), "text/plain": text}, raw=True)
    elif print_fn is not None:
        print_fn(text)
    return text

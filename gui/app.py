"""The Tkinter drawing app: draw a digit with the mouse, see what each model thinks.

Strokes go to the Tk canvas for the eye and, at the same time, into an offscreen PIL image that
the model reads, so nothing is grabbed from the screen: it works the same on Linux, macOS,
Windows and HiDPI displays.
"""

from __future__ import annotations

import argparse
import datetime
import tkinter as tk
from pathlib import Path
from tkinter import ttk

import numpy as np
from PIL import Image, ImageDraw

import numnet
from numnet.errors import NumnetError
from numnet.gui.model_files import add_model_options, chosen_models
from numnet.gui.protocol import ProtocolSession
from numnet.io import numnet_home
from numnet.preprocess import canvas_to_mnist

CANVAS = 280
PREVIEW_CELL = 4
BAR_WIDTH, BAR_HEIGHT = 24, 100


class DrawingApp:
    def __init__(self, root: tk.Tk, models: dict[str, Path], backend: str = "numba") -> None:
        self.root, self.models, self.backend = root, models, backend
        self.loaded: dict[str, object] = {}
        self.probabilities: np.ndarray | None = None
        self.model_input: np.ndarray | None = None
        root.title("numnet — draw a digit")

        left = ttk.Frame(root, padding=8)
        left.grid(row=0, column=0, sticky="n")
        self.canvas = tk.Canvas(left, width=CANVAS, height=CANVAS, bg="white", cursor="pencil",
                                highlightthickness=1, highlightbackground="grey")  # fmt: skip
        self.canvas.grid(row=0, column=0, columnspan=3)
        self.pen = tk.IntVar(value=18)
        ttk.Label(left, text="pen").grid(row=1, column=0, sticky="w")
        ttk.Scale(left, from_=4, to=40, variable=self.pen, orient="horizontal").grid(row=1, column=1, columnspan=2)
        self.predict_button = ttk.Button(left, text="Predict", command=self.predict)
        self.predict_button.grid(row=2, column=0, pady=4)
        self.clear_button = ttk.Button(left, text="Clear", command=self.clear)
        self.clear_button.grid(row=2, column=1, pady=4)
        self.model_name = tk.StringVar(value=next(iter(models)))
        self.selector = ttk.Combobox(
            left, textvariable=self.model_name, values=list(models), state="readonly", width=12
        )
        self.selector.grid(row=2, column=2)
        self.selector.bind("<<ComboboxSelected>>", lambda _: self.predict())

        right = ttk.Frame(root, padding=8)
        right.grid(row=0, column=1, sticky="n")
        self.answer = tk.StringVar(value="Draw a digit")
        ttk.Label(right, textvariable=self.answer, font=("TkDefaultFont", 16, "bold")).grid(row=0, column=0)
        self.bars = tk.Canvas(right, width=10 * BAR_WIDTH, height=BAR_HEIGHT + 20, bg="white")
        self.bars.grid(row=1, column=0, pady=6)
        ttk.Label(right, text="what the model sees (28x28)").grid(row=2, column=0)
        self.preview = tk.Canvas(right, width=28 * PREVIEW_CELL, height=28 * PREVIEW_CELL, bg="black")
        self.preview.grid(row=3, column=0)

        # The lab's test protocol: asked digits, the person marks each answer.
        protocol = ttk.Frame(root, padding=8)
        protocol.grid(row=1, column=0, columnspan=2, sticky="we")
        self.protocol_button = ttk.Button(protocol, text="Test protocol", command=self.start_protocol)
        self.protocol_button.grid(row=0, column=0)
        self.prompt = tk.StringVar(value="")
        ttk.Label(protocol, textvariable=self.prompt).grid(row=0, column=1, padx=8)
        self.right_button = ttk.Button(protocol, text="Right", command=lambda: self.mark(None), state="disabled")
        self.right_button.grid(row=0, column=2)
        ttk.Label(protocol, text="or true digit:").grid(row=0, column=3, padx=(8, 2))
        self.true_digit = tk.StringVar(value="")
        ttk.Entry(protocol, textvariable=self.true_digit, width=3).grid(row=0, column=4)
        self.wrong_button = ttk.Button(protocol, text="Wrong", command=self.mark_wrong, state="disabled")
        self.wrong_button.grid(row=0, column=5)
        self.session: ProtocolSession | None = None
        self.saved: tuple[Path, Path] | None = None

        self.image = Image.new("L", (CANVAS, CANVAS), 255)
        self.draw = ImageDraw.Draw(self.image)
        self.last: tuple[int, int] | None = None
        self.canvas.bind("<ButtonPress-1>", self.stroke_start)
        self.canvas.bind("<B1-Motion>", self.stroke_move)
        self.canvas.bind("<ButtonRelease-1>", self.stroke_end)
        self.show_bars(None)

    # -- drawing ---------------------------------------------------------------------------------
    def dot(self, x: int, y: int) -> None:
        r = self.pen.get() / 2
        self.canvas.create_oval(x - r, y - r, x + r, y + r, fill="black", outline="black")
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=0)

    def stroke_start(self, event) -> None:
        self.last = (event.x, event.y)
        self.dot(event.x, event.y)

    def stroke_move(self, event) -> None:
        if self.last is None:
            return self.stroke_start(event)
        width = self.pen.get()
        self.canvas.create_line(*self.last, event.x, event.y, width=width, fill="black", capstyle="round")
        self.draw.line((*self.last, event.x, event.y), fill=0, width=width)
        self.dot(event.x, event.y)  # round joints in the offscreen image too
        self.last = (event.x, event.y)

    def stroke_end(self, event) -> None:
        self.last = None
        self.predict()

    def clear(self) -> None:
        self.canvas.delete("all")
        self.draw.rectangle((0, 0, CANVAS, CANVAS), fill=255)
        self.probabilities = self.model_input = None
        self.answer.set("Draw a digit")
        self.show_bars(None)
        self.preview.delete("all")

    # -- predicting --------------------------------------------------------------------------------
    def model(self):
        name = self.model_name.get()
        if name not in self.loaded:
            self.loaded[name] = numnet.load(self.models[name], backend=self.backend)
        return self.loaded[name]

    def predict(self) -> None:
        self.model_input = canvas_to_mnist(self.image)
        if self.model_input is None:
            self.probabilities = None
            self.answer.set("Draw a digit first")
            self.show_bars(None)
            return
        try:
            self.probabilities = self.model().predict(self.model_input[None])[0]
        except NumnetError as error:
            self.answer.set(f"Cannot use this model: {error}")
            return
        digit = int(self.probabilities.argmax())
        self.answer.set(f"{digit}  ({self.probabilities[digit]:.0%}, {self.model_name.get()})")
        self.show_bars(self.probabilities)
        self.show_preview(self.model_input[..., 0])
        if self.session is not None:
            for button in (self.right_button, self.wrong_button):
                button.state(["!disabled"])

    # -- test protocol -----------------------------------------------------------------------------
    def start_protocol(self) -> None:
        self.session, self.saved = ProtocolSession(), None
        self.clear()
        self.ask()

    def ask(self) -> None:
        session = self.session
        self.prompt.set(f"Draw the digit {session.asked}  ({len(session.answers) + 1}/{len(session.sequence)})")
        self.true_digit.set("")
        for button in (self.right_button, self.wrong_button):
            button.state(["disabled"])

    def mark_wrong(self) -> None:
        typed = self.true_digit.get().strip()
        if typed and not (typed.isdigit() and len(typed) == 1):
            self.prompt.set("Type the true digit as one figure 0-9, or leave it empty for the asked digit")
            return
        self.mark(int(typed) if typed else self.session.asked)

    def mark(self, true_digit: int | None) -> None:
        """Records the shown answer: right (None) or wrong with the true digit; then the next draw."""
        if self.session is None or self.probabilities is None:
            return
        self.session.record(int(self.probabilities.argmax()), true_digit)
        self.clear()
        if not self.session.done:
            return self.ask()
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = numnet_home() / "protocol" / f"{self.model_name.get()}-{stamp}"
        self.saved = self.session.save(folder, self.model_name.get())
        self.prompt.set(f"Done. {self.session.summary()}. Saved in {folder}")
        self.answer.set("Protocol complete")
        self.session = None
        for button in (self.right_button, self.wrong_button):
            button.state(["disabled"])

    def show_bars(self, probabilities: np.ndarray | None) -> None:
        self.bars.delete("all")
        for d in range(10):
            x = d * BAR_WIDTH
            p = 0.0 if probabilities is None else float(probabilities[d])
            top = BAR_HEIGHT * (1 - p)
            color = "#2a7" if probabilities is not None and d == int(probabilities.argmax()) else "#69c"
            self.bars.create_rectangle(x + 3, top, x + BAR_WIDTH - 3, BAR_HEIGHT, fill=color, outline="")
            self.bars.create_text(x + BAR_WIDTH / 2, BAR_HEIGHT + 10, text=str(d))

    def show_preview(self, image: np.ndarray) -> None:
        self.preview.delete("all")
        for y, x in zip(*np.nonzero(image > 0.02)):
            level = int(255 * image[y, x])
            c = PREVIEW_CELL
            self.preview.create_rectangle(x * c, y * c, x * c + c, y * c + c, outline="",
                                          fill=f"#{level:02x}{level:02x}{level:02x}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numnet.gui", description=__doc__.splitlines()[0])
    add_model_options(parser)
    args = parser.parse_args(argv)
    models = chosen_models(args)
    if models is None:
        return 2
    root = tk.Tk()
    DrawingApp(root, models, backend=args.backend)
    root.mainloop()
    return 0

"""The Tkinter drawing app: draw a digit with the mouse, see what each model thinks.

Strokes go to the Tk canvas for the eye and, at the same time, into an offscreen PIL image that
the model reads, so nothing is grabbed from the screen: it works the same on Linux, macOS,
Windows and HiDPI displays.
"""

from __future__ import annotations

import argparse
import datetime
import threading
import tkinter as tk
from pathlib import Path
from tkinter import ttk

import numpy as np
from PIL import Image, ImageDraw

from numnet.errors import NumnetError
from numnet.gui.model_files import add_model_options, chosen_models
from numnet.gui.predictor import Predictor
from numnet.gui.protocol import ProtocolSession
from numnet.io import numnet_home

CANVAS = 280
PREVIEW_CELL = 4
BAR_WIDTH, BAR_HEIGHT = 28, 110
INK, PAPER, ACCENT, MUTED, SURFACE = "#111827", "#ffffff", "#2563eb", "#6b7280", "#f3f4f6"
WARMING = "Warming up: loading the model and compiling its kernels (a few seconds, once)…"


def apply_theme(root: tk.Tk) -> None:
    """A flat, light ttk theme: one accent colour, readable sizes, no 1995 grey bevels."""
    style = ttk.Style(root)
    style.theme_use("clam")
    root.configure(background=SURFACE)
    base = ("TkDefaultFont", 11)
    style.configure(".", background=SURFACE, foreground=INK, font=base)
    style.configure("Card.TFrame", background=PAPER, relief="flat")
    style.configure("Card.TLabel", background=PAPER)
    style.configure("Muted.TLabel", background=PAPER, foreground=MUTED, font=("TkDefaultFont", 10))
    style.configure("Status.TLabel", background=SURFACE, foreground=MUTED, font=("TkDefaultFont", 10))
    style.configure("Digit.TLabel", background=PAPER, foreground=INK, font=("TkDefaultFont", 44, "bold"))
    style.configure("TButton", padding=(12, 6), background="#e5e7eb", bordercolor="#d1d5db", relief="flat")
    style.map("TButton", background=[("active", "#d1d5db"), ("disabled", SURFACE)])
    style.configure("Accent.TButton", background=ACCENT, foreground="#ffffff", bordercolor=ACCENT)
    style.map("Accent.TButton", background=[("active", "#1d4ed8"), ("disabled", "#93c5fd")])
    style.configure("TLabelframe", background=SURFACE, bordercolor="#d1d5db")
    style.configure("TLabelframe.Label", background=SURFACE, foreground=MUTED)
    style.configure("Card.Horizontal.TScale", background=PAPER)


class DrawingApp:
    def __init__(self, root: tk.Tk, models: dict[str, Path], backend: str = "numba") -> None:
        self.root, self.models, self.backend = root, models, backend
        self.predictor = Predictor(models, backend)
        self.probabilities: np.ndarray | None = None
        self.model_input: np.ndarray | None = None
        root.title("numnet — draw a digit")
        root.resizable(False, False)
        apply_theme(root)

        self.build_drawing_card(root, models)
        self.build_answer_card(root)
        self.build_protocol_bar(root)
        self.build_status_line(root)
        self.image = Image.new("L", (CANVAS, CANVAS), 255)
        self.draw = ImageDraw.Draw(self.image)
        self.last: tuple[int, int] | None = None
        self.canvas.bind("<ButtonPress-1>", self.stroke_start)
        self.canvas.bind("<B1-Motion>", self.stroke_move)
        self.canvas.bind("<ButtonRelease-1>", self.stroke_end)
        self.show_bars(None)
        self.warm_up()

    def build_drawing_card(self, root: tk.Tk, models: dict[str, Path]) -> None:
        """The canvas, the pen width, Predict and Clear, and the model selector."""
        left = ttk.Frame(root, padding=14, style="Card.TFrame")
        left.grid(row=0, column=0, sticky="nsew", padx=(14, 7), pady=(14, 7))
        self.canvas = tk.Canvas(left, width=CANVAS, height=CANVAS, bg=PAPER, cursor="pencil",
                                highlightthickness=1, highlightbackground="#d1d5db")  # fmt: skip
        self.canvas.grid(row=0, column=0, columnspan=4)
        self.pen = tk.IntVar(value=18)
        self.pen_label = tk.StringVar(value="pen 18 px")
        ttk.Label(left, textvariable=self.pen_label, style="Muted.TLabel", width=9).grid(row=1, column=0, sticky="w")
        self.pen.trace_add("write", lambda *_: self.pen_label.set(f"pen {self.pen.get()} px"))
        scale = ttk.Scale(left, from_=4, to=40, variable=self.pen, orient="horizontal", style="Card.Horizontal.TScale")
        scale.grid(row=1, column=1, columnspan=3, sticky="we", pady=(10, 4))
        self.predict_button = ttk.Button(left, text="Predict", style="Accent.TButton", command=self.predict)
        self.predict_button.grid(row=2, column=0, columnspan=2, sticky="we", pady=(6, 0), padx=(0, 4))
        self.clear_button = ttk.Button(left, text="Clear", command=self.clear)
        self.clear_button.grid(row=2, column=2, columnspan=2, sticky="we", pady=(6, 0), padx=(4, 0))
        ttk.Label(left, text="model", style="Muted.TLabel").grid(row=3, column=0, sticky="w", pady=(10, 0))
        self.model_name = tk.StringVar(value=next(iter(models)))
        self.selector = ttk.Combobox(left, textvariable=self.model_name, values=list(models), state="readonly",
                                     width=18)  # fmt: skip
        self.selector.grid(row=3, column=1, columnspan=3, sticky="we", pady=(10, 0))
        self.selector.bind("<<ComboboxSelected>>", lambda _: self.predict())

    def build_answer_card(self, root: tk.Tk) -> None:
        """The digit read, the sentence around it, the ten bars and the 28x28 input."""
        right = ttk.Frame(root, padding=14, style="Card.TFrame")
        right.grid(row=0, column=1, sticky="nsew", padx=(7, 14), pady=(14, 7))
        self.digit = tk.StringVar(value="?")
        ttk.Label(right, textvariable=self.digit, style="Digit.TLabel", anchor="center", width=3).grid(row=0, column=0)
        self.answer = tk.StringVar(value="Draw a digit")
        ttk.Label(right, textvariable=self.answer, style="Card.TLabel", anchor="center", width=30).grid(row=1, column=0)
        self.bars = tk.Canvas(right, width=10 * BAR_WIDTH, height=BAR_HEIGHT + 22, bg=PAPER, highlightthickness=0)
        self.bars.grid(row=2, column=0, pady=10)
        ttk.Label(right, text="what the model sees (28x28)", style="Muted.TLabel").grid(row=3, column=0)
        self.preview = tk.Canvas(right, width=28 * PREVIEW_CELL, height=28 * PREVIEW_CELL, bg="black",
                                 highlightthickness=0)  # fmt: skip
        self.preview.grid(row=4, column=0, pady=(4, 0))

    def build_protocol_bar(self, root: tk.Tk) -> None:
        """The lab's test protocol: asked digits, the person marks each answer."""
        protocol = ttk.Labelframe(root, text="Test protocol", padding=10)
        protocol.grid(row=1, column=0, columnspan=2, sticky="we", padx=14, pady=(7, 4))
        self.protocol_button = ttk.Button(protocol, text="Start", command=self.start_protocol)
        self.protocol_button.grid(row=0, column=0)
        self.prompt = tk.StringVar(value="")
        # A fixed width (and wrapping) so a long prompt never widens the window.
        ttk.Label(protocol, textvariable=self.prompt, width=30, wraplength=250).grid(row=0, column=1, padx=8)
        self.right_button = ttk.Button(protocol, text="Right", command=lambda: self.mark(None), state="disabled")
        self.right_button.grid(row=0, column=2)
        ttk.Label(protocol, text="or true digit").grid(row=0, column=3, padx=(8, 2))
        self.true_digit = tk.StringVar(value="")
        ttk.Entry(protocol, textvariable=self.true_digit, width=3).grid(row=0, column=4)
        self.wrong_button = ttk.Button(protocol, text="Wrong", command=self.mark_wrong, state="disabled")
        self.wrong_button.grid(row=0, column=5, padx=(4, 0))
        self.session: ProtocolSession | None = None
        self.saved: tuple[Path, Path] | None = None

    def build_status_line(self, root: tk.Tk) -> None:
        self.status = tk.StringVar(value=WARMING)
        status = ttk.Label(root, textvariable=self.status, style="Status.TLabel")
        status.grid(row=2, column=0, columnspan=2, sticky="w", padx=16, pady=(0, 10))

    def warm_up(self) -> None:
        """Loads the first model and runs one prediction in the background, so the kernels compile
        while the person starts drawing; the status line says when it is ready."""
        warmed, name = threading.Event(), self.model_name.get()  # Tk is read here, never in the thread

        def work() -> None:
            try:
                self.predictor.model(name).predict(np.zeros((1, 28, 28, 1), np.float32))
            except (NumnetError, OSError):
                pass  # predict() shows the problem when the person asks
            warmed.set()

        def check() -> None:
            if warmed.is_set():
                self.status.set(f"Ready — {len(self.models)} model(s), {self.backend} backend")
            else:
                self.root.after(100, check)

        threading.Thread(target=work, daemon=True).start()
        self.root.after(100, check)

    # -- drawing ---------------------------------------------------------------------------------
    def dot(self, x: int, y: int) -> None:
        """A round pen tip, exactly the pen's width on screen and in the image."""
        r = self.pen.get() / 2
        self.canvas.create_oval(x - r, y - r, x + r, y + r, fill=INK, outline="")
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=0)

    def stroke_start(self, event) -> None:
        self.last = (event.x, event.y)
        self.dot(event.x, event.y)

    def stroke_move(self, event) -> None:
        if self.last is None:
            return self.stroke_start(event)
        width = self.pen.get()
        # Round caps and joins on screen; in the image, the same segment with a round tip at its
        # end, so consecutive segments overlap without notches.
        self.canvas.create_line(*self.last, event.x, event.y, width=width, fill=INK, capstyle="round",
                                joinstyle="round")  # fmt: skip
        self.draw.line((*self.last, event.x, event.y), fill=0, width=width, joint="curve")
        r = width / 2
        self.draw.ellipse((event.x - r, event.y - r, event.x + r, event.y + r), fill=0)
        self.last = (event.x, event.y)

    def stroke_end(self, event) -> None:
        self.last = None
        self.predict()

    def clear(self) -> None:
        self.canvas.delete("all")
        self.draw.rectangle((0, 0, CANVAS, CANVAS), fill=255)
        self.probabilities = self.model_input = None
        self.digit.set("?")
        self.answer.set("Draw a digit")
        self.show_bars(None)
        self.preview.delete("all")

    # -- predicting --------------------------------------------------------------------------------
    def predict(self) -> None:
        try:
            self.model_input, self.probabilities = self.predictor.read(self.model_name.get(), self.image)
        except NumnetError as error:
            self.model_input = self.probabilities = None
            self.answer.set(f"Cannot use this model: {error}")
            return
        if self.model_input is None:
            self.digit.set("?")
            self.answer.set("Draw a digit first")
            self.show_bars(None)
            return
        digit = int(self.probabilities.argmax())
        self.digit.set(str(digit))
        self.answer.set(f"{digit}  ({self.probabilities[digit]:.0%} sure, {self.model_name.get()})")
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
        best = None if probabilities is None else int(probabilities.argmax())
        for d in range(10):
            x = d * BAR_WIDTH
            p = 0.0 if probabilities is None else float(probabilities[d])
            self.bars.create_rectangle(x + 4, 0, x + BAR_WIDTH - 4, BAR_HEIGHT, fill=SURFACE, outline="")
            top = BAR_HEIGHT * (1 - p)
            color = ACCENT if d == best else "#93c5fd"
            self.bars.create_rectangle(x + 4, top, x + BAR_WIDTH - 4, BAR_HEIGHT, fill=color, outline="")
            weight = "bold" if d == best else "normal"
            self.bars.create_text(x + BAR_WIDTH / 2, BAR_HEIGHT + 11, text=str(d), fill=INK,
                                  font=("TkDefaultFont", 10, weight))  # fmt: skip

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

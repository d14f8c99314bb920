"""What a training run shows while it runs: a progress line and a live loss plot.

Both work for ``fit`` and for a loop written by hand::

    progress, plot = Progress(total=500), LivePlot(total_steps=500, reference=math.log(V))
    for step in range(1, 501):
        ...
        history.steps.append({"step": step, "loss": loss.item()})
        progress.update(step, loss=history.steps[-1]["loss"])
        plot.update(history)
    progress.close("max_steps")
    plot.close(history)

In a notebook both are display handles updated in place, at a human pace (about once a
second). The stored output is truthful when the notebook is reopened untrusted (which
shows each output's text/plain form): the progress shows its last state as plain text
(``step 500/500 | loss 0.71 | 2,300 tok/s | 64 s``), the plot its finished PNG. In a
terminal the progress is a tqdm bar on stderr and the plot draws nothing.
"""

from __future__ import annotations

import html
import io
import time
from types import SimpleNamespace

from ssledu.conventions import in_notebook

__all__ = ["in_notebook", "Progress", "LivePlot", "draw_history"]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class Progress:
    """A one-line progress display: ``step 1500/1500 | loss 0.71 | 2,300 tok/s | 64 s``.

    total: the step budget (None when unknown, e.g. a time budget); initial: the first
    step (a resumed run). notebook: None = detect. In a notebook the object itself is
    displayed (``_repr_html_`` and a text/plain ``repr`` that is the current state) and
    updated in place at most every ``every_s`` seconds; elsewhere a tqdm bar on stderr.
    ``close(reason)`` writes the final one-line summary.
    """

    def __init__(self, total: int | None = None, *, initial: int = 0, notebook: bool | None = None,
                 every_s: float = 0.5, file=None):
        self.total, self.step, self.every_s = total, initial, every_s
        self.loss = self.tokens_per_s = None
        self.start = time.perf_counter()
        self.elapsed_s = 0.0
        self.done: str | None = None
        self._last = float("-inf")
        self.notebook = in_notebook() if notebook is None else notebook
        self.handle = self.bar = None
        if self.notebook:
            from IPython.display import display

            self.handle = display(self, display_id=True)
        else:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                            leave=True, file=file)

    def text(self) -> str:
        """The current state as one line of plain text."""
        parts = [f"step {self.step:,}" + (f"/{self.total:,}" if self.total else "")]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:,.0f} tok/s")
        parts.append(_duration(self.elapsed_s))
        line = " | ".join(parts)
        return f"done ({self.done}): {line}" if self.done else line

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        frac = min(1.0, self.step / self.total) if self.total else None
        bar = ("" if frac is None else
               f'<progress value="{frac:.3f}" max="1" style="width:12em;vertical-align:middle">'
               "</progress> ")
        return f"<div style='font-family:monospace'>{bar}{html.escape(self.text())}</div>"

    def update(self, step: int, *, loss: float | None = None, tokens_per_s: float | None = None,
               elapsed_s: float | None = None, force: bool = False) -> bool:
        """Record the state after ``step``; redraw if ``every_s`` passed (or ``force``).
        Returns True when it redrew."""
        advanced = step - self.step
        self.step = step
        if loss is not None:
            self.loss = float(loss)
        if tokens_per_s is not None:
            self.tokens_per_s = float(tokens_per_s)
        self.elapsed_s = time.perf_counter() - self.start if elapsed_s is None else elapsed_s
        if self.bar is not None and advanced > 0:
            self.bar.update(advanced)
        now = time.perf_counter()
        if not force and now - self._last < self.every_s:
            return False
        self._last = now
        if self.handle is not None:
            self.handle.update(self)
        elif self.bar is not None and self.loss is not None:
            postfix = f"loss {self.loss:.3f}"
            if self.tokens_per_s is not None:
                postfix += f" | {self.tokens_per_s:,.0f} tok/s"
            self.bar.set_postfix_str(postfix)
        return True

    def close(self, reason: str | None = "finished") -> str:
        """Final redraw with the summary line (returned)."""
        self.done = reason or "finished"
        if self.handle is not None:
            self.handle.update(self)
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return self.text()


def draw_history(ax, history, title: str = "training loss", *, total_steps: int | None = None,
                 reference: float | None = None, reference_label: str | None = None,
                 ylabel: str = "loss (nats per token)"):
    """Train loss per logged step (line), validation loss (points), optional reference line.

    ``total_steps`` fixes the x axis to the budget; ``reference`` draws a dashed line, e.g.
    ln|V|, the loss of a uniform guess; ``ylabel`` names the loss's unit (a contrastive loss is
    per anchor, not per token). Works with nothing logged yet.
    """
    steps = [s["step"] for s in history.steps]
    ax.plot(steps, [s["loss"] for s in history.steps], lw=1, label="train")
    if history.evals:
        ax.plot([e["step"] for e in history.evals], [e["val_loss"] for e in history.evals],
                "o-", ms=4, label="validation")
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1, label=reference_label or f"{reference:.2f}")
    last = f" (step {steps[-1]}, loss {history.steps[-1]['loss']:.3f})" if steps else ""
    ax.set_title(title + last)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if total_steps:
        ax.set_xlim(0, total_steps)
    elif not steps:
        ax.set_xlim(0, 1)
    if not steps and not history.evals:
        top = 1.0 if reference is None else 1.2 * reference
        ax.set_ylim(0, top)
    if history.steps or history.evals or reference is not None:
        ax.legend(loc="upper right")


class LivePlot:
    """A loss plot in the notebook output, redrawn in place about every ``every_s`` seconds.

    The first frame already has the x axis of the budget (``total_steps``) and the
    ``reference`` line (e.g. ln|V|, the loss of a uniform guess). One figure is kept and
    only its lines' data change, so a frame is one small PNG; the pace follows the wall
    clock, not the step time (slowed only where a frame costs more than 1/4 of it).
    ``close(history)`` draws the last frame: the stored output is the finished curve.
    Outside a notebook nothing is drawn.
    """

    def __init__(self, total_steps: int | None = None, *, reference: float | None = None,
                 reference_label: str | None = None, title: str = "training loss",
                 every_s: float = 1.0, notebook: bool | None = None, dpi: int = 72,
                 ylabel: str = "loss (nats per token)"):
        self.total_steps, self.reference, self.reference_label = total_steps, reference, reference_label
        self.ylabel = ylabel
        self.title, self.every_s, self.dpi = title, every_s, dpi
        self.frames = 0
        self.last_draw_s = 0.0
        self._last = float("-inf")
        self.handle = self.fig = None
        if in_notebook() if notebook is None else notebook:
            from IPython.display import display

            empty = SimpleNamespace(steps=[], evals=[])  # the frame before any step
            self.handle = display(self.image(empty), display_id=True)
            self._last = time.perf_counter()

    def _figure(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # Fixed margins instead of a layout engine: the layout pass is most of a frame's cost.
        self.fig = Figure(figsize=(6.4, 3.6), dpi=self.dpi)
        self.fig.subplots_adjust(left=0.11, right=0.97, top=0.9, bottom=0.14)
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_subplot()
        draw_history(self.ax, SimpleNamespace(steps=[], evals=[]), self.title,
                     total_steps=self.total_steps, reference=self.reference,
                     reference_label=self.reference_label, ylabel=self.ylabel)
        self.train_line = self.ax.get_lines()[0]
        self.val_line = None

    def image(self, history):
        """The current frame as an IPython PNG Image."""
        from IPython.display import Image

        t0 = time.perf_counter()
        if self.fig is None:
            self._figure()
        ax, steps = self.ax, history.steps
        if steps:
            self.train_line.set_data([s["step"] for s in steps], [s["loss"] for s in steps])
            ax.set_title(f"{self.title} (step {steps[-1]['step']}, loss {steps[-1]['loss']:.3f})")
        if history.evals:
            xy = ([e["step"] for e in history.evals], [e["val_loss"] for e in history.evals])
            if self.val_line is None:
                (self.val_line,) = ax.plot(*xy, "o-", ms=4, label="validation")
                ax.legend(loc="upper right")
            self.val_line.set_data(*xy)
        if steps or history.evals:
            ax.relim()
            ax.set_autoscaley_on(True)  # the first frame's 0 .. 1.2 ln|V| was only a frame
            ax.autoscale_view(scalex=not self.total_steps)
            if self.total_steps:
                ax.set_xlim(0, max(self.total_steps, steps[-1]["step"] if steps else 0))
        buf = io.BytesIO()
        self.fig.canvas.print_png(buf)
        self.frames += 1
        self.last_draw_s = time.perf_counter() - t0
        return Image(data=buf.getvalue(), format="png")

    def update(self, history, force: bool = False) -> bool:
        """Redraw if ``every_s`` passed since the last frame (or ``force``); True if it drew."""
        if self.handle is None:
            return False
        now = time.perf_counter()
        # A slow machine draws more slowly: keep drawing under ~1/4 of the wall time.
        if not force and now - self._last < max(self.every_s, 4 * self.last_draw_s):
            return False
        self.handle.update(self.image(history))
        self._last = time.perf_counter()
        return True

    def close(self, history) -> None:
        """Draw the final frame (the stored output)."""
        if history.steps or history.evals:
            self.update(history, force=True)

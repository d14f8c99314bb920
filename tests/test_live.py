"""Progress line and live plot: truthful when stored, at a human pace, meaningful from frame one."""

import io
import math

import pytest
import torch

from ssledu import live, models, train

V = 16
pytestmark = pytest.mark.usefixtures("one_thread")


class FakeNotebook:
    """Stands in for IPython.display.display: records what each handle shows last."""

    def __init__(self):
        self.handles = []

    def display(self, obj, display_id=False):
        handle = Handle(obj)
        self.handles.append(handle)
        return handle


class Handle:
    """Keeps each published object and its text/plain form AT THE TIME it was published."""

    def __init__(self, obj):
        self.shown, self.texts = [obj], [repr(obj)]

    def update(self, obj):
        self.shown.append(obj)
        self.texts.append(repr(obj))

    @property
    def stored_text(self):  # what an untrusted notebook shows: the last text/plain published
        return self.texts[-1]


@pytest.fixture
def notebook(monkeypatch):
    import IPython.display

    fake = FakeNotebook()
    monkeypatch.setattr(IPython.display, "display", fake.display)
    monkeypatch.setattr(train, "_in_notebook", lambda: True)
    return fake


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_progress_text_is_the_current_state_and_updates_are_rate_limited(notebook, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(live.time, "perf_counter", clock)
    p = live.Progress(1500, notebook=True, every_s=0.5)
    handle = notebook.handles[0]
    for step in range(1, 1501):
        clock.t += 0.01  # 15 s of fast steps
        p.update(step, loss=3.0 - step / 1000, tokens_per_s=2300.4, elapsed_s=step * 0.01)
    assert 25 <= len(handle.shown) - 1 <= 31  # about every 0.5 s, not 1500 redraws
    p.close("max_steps")
    assert handle.stored_text == "done (max_steps): step 1,500/1,500 | loss 1.5 | 2,300 tok/s | 15 s"
    html = handle.shown[-1]._repr_html_()
    assert '<progress value="1.000"' in html and "step 1,500/1,500" in html


def test_progress_in_a_terminal_is_a_tqdm_bar():
    out = io.StringIO()
    p = live.Progress(10, notebook=False, file=out, every_s=0.0)
    for step in range(1, 11):
        p.update(step, loss=1.25)
    p.close()
    text = out.getvalue()
    assert "10/10" in text and "loss 1.250" in text


def test_fit_stores_a_truthful_progress_line_and_a_finished_plot(notebook):
    torch.manual_seed(1)
    data = (torch.arange(24)[:, None] + torch.arange(24)[None, :]) % V
    h = train.fit(models.gpt(V, "nano"), data, collate_fn=lambda ex: {"input_ids": torch.stack(ex),
                                                                      "labels": torch.stack(ex)},
                  batch_size=8, max_steps=5, live_plot=True)
    plot, progress = notebook.handles  # the plot first, the progress line under it
    assert progress.stored_text.startswith("done (max_steps): step 5/5 | loss ")
    assert f"loss {h.final_loss:.4g}" in progress.stored_text
    assert plot.shown[-1].data[:4] == b"\x89PNG" and len(plot.shown) >= 2  # the finished curve


def test_the_first_frame_shows_the_budget_and_the_uniform_guess():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    live.draw_history(ax, train.History(), total_steps=1500, reference=math.log(V),
                      reference_label="ln |V|")
    assert ax.get_xlim() == (0.0, 1500.0)
    assert ax.get_ylim()[1] == pytest.approx(1.2 * math.log(V))
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "ln |V|"]
    assert line.get_ydata()[0] == pytest.approx(math.log(V))


def test_the_plot_redraws_on_the_wall_clock_not_the_step_time(notebook, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(live.time, "perf_counter", clock)
    plot = live.LivePlot(100, notebook=True, every_s=1.0)
    handle = notebook.handles[0]
    history = train.History()
    for step in range(1, 101):  # 100 steps of 0.05 s: 5 s of wall time
        clock.t += 0.05
        history.steps.append({"step": step, "loss": 2.0})
        plot.update(history)
    assert 4 <= len(handle.shown) - 1 <= 5  # once a second
    plot.close(history)
    assert handle.shown[-1].data[:4] == b"\x89PNG"


def test_live_plot_names_the_unit_of_its_loss():
    from ssledu.live import LivePlot

    plot = LivePlot(total_steps=10, notebook=False, ylabel="loss (nats per anchor)")
    plot._figure()
    assert plot.ax.get_ylabel() == "loss (nats per anchor)"
    assert LivePlot(total_steps=10, notebook=False).ylabel == "loss (nats per token)"

"""Tests for ssledu.widgets: explorers call their function once headless and never block."""

import matplotlib

matplotlib.use("Agg")

import ipywidgets as w  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ssledu import viz, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.delenv("SSLEDU_WIDGETS", raising=False)
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "an explorer left a figure open in pyplot"


@pytest.fixture
def shell():
    """An IPython shell (no kernel, no frontend), as in a notebook executed headless."""
    sh = InteractiveShell.instance()
    yield sh
    InteractiveShell.clear_instance()


class Recorder:
    """A function that records its calls and returns a string."""

    def __init__(self):
        self.calls = []

    def __call__(self, temperature=0.7, top_k=5, mode="greedy"):
        self.calls.append(dict(temperature=temperature, top_k=top_k, mode=mode))
        return f"t={temperature} k={top_k} {mode}"


def _texts(outputs):
    return [o.data.get("text/plain") for o in outputs]


def test_headless_calls_once_with_defaults():
    fn = Recorder()
    ex = widgets.slider_explorer(fn, temperature=(0.1, 2.0, 0.1), top_k=(1, 40))
    assert fn.calls == [dict(temperature=0.7, top_k=5, mode="greedy")]
    assert ex.result == "t=0.7 k=5 greedy" and ex.calls == 1
    assert isinstance(ex.controls["temperature"], w.FloatSlider)
    assert isinstance(ex.controls["top_k"], w.IntSlider)
    assert ex.controls["top_k"].continuous_update is False  # runs on release only
    assert widgets.live_widgets() is False  # plain Python: no kernel


def test_explorer_abbreviations_and_widgets():
    fn = Recorder()
    dropdown = w.Dropdown(options=["greedy", "sample"], value="sample")
    ex = widgets.explorer(fn, mode=dropdown, top_k=w.fixed(9), temperature=1.5)
    assert fn.calls == [dict(temperature=1.5, top_k=9, mode="sample")]
    assert ex.values == dict(mode="sample", top_k=9, temperature=1.5)
    assert ex.update(mode="greedy") == "t=1.5 k=9 greedy" and ex.calls == 2
    with pytest.raises(ValueError, match="unknown controls"):
        ex.update(beam=3)
    with pytest.raises(ValueError, match="cannot make a control"):
        widgets.explorer(fn, temperature=object())


def test_headless_display_in_a_shell_shows_result_once(shell, monkeypatch):
    monkeypatch.setenv("SSLEDU_WIDGETS", "off")
    fn = Recorder()
    with capture_output() as cap:
        ex = widgets.slider_explorer(fn, top_k=(1, 10))
        ex._ipython_display_()  # the cell's last expression: already shown, shows nothing more
    assert len(fn.calls) == 1
    assert _texts(cap.outputs) == ["t=0.7 k=5 greedy"]


def test_figures_are_displayed_and_released(shell):
    def plot(n=3):
        fig, ax = plt.subplots()  # made with pyplot on purpose
        ax.plot(range(n))
        return fig

    with capture_output() as cap:
        ex = widgets.slider_explorer(plot, n=(2, 10))
    assert isinstance(ex.result, Figure)
    assert plt.get_fignums() == []  # closed in pyplot, still displayed below
    assert len(cap.outputs) == 1 and "Figure" in cap.outputs[0].data["text/plain"]
    fig = viz.loss_curves([3.0, 2.0])
    with capture_output() as cap:
        widgets.explorer(lambda: fig)
    assert "Figure" in _texts(cap.outputs)[0]


def test_live_controls_update_the_output_in_place(shell, monkeypatch):
    monkeypatch.setenv("SSLEDU_WIDGETS", "on")
    fn = Recorder()
    with capture_output() as cap:
        ex = widgets.slider_explorer(fn, temperature=(0.1, 2.0, 0.1), top_k=(1, 40))
        ex.controls["top_k"].value = 12  # what a user moving the slider does
    assert fn.calls[-1] == dict(temperature=0.7, top_k=12, mode="greedy") and len(fn.calls) == 2
    controls, first, update = cap.outputs
    assert "application/vnd.jupyter.widget-view+json" in controls.data
    # what an untrusted notebook (fresh clone) shows in place of the widgets: truthful in Jupyter
    stand_in = controls.data["text/plain"]
    assert stand_in == (
        "Explorer of Recorder: run this cell to get its controls (they need a live kernel). "
        "Release a slider: the output below updates."
    )
    assert ex.how in stand_in and "notebook in Jupyter" not in stand_in
    assert first.data["text/plain"] == "t=0.7 k=5 greedy" and not first.update
    assert update.update and update.data["text/plain"] == "t=0.7 k=12 greedy"
    assert update.transient["display_id"] == first.transient["display_id"]


def test_live_callback_errors_are_shown_not_raised(shell, monkeypatch):
    monkeypatch.setenv("SSLEDU_WIDGETS", "on")

    def strict(k=1):
        if k > 3:
            raise ValueError("k too large")
        return str(k)

    with capture_output() as cap:
        ex = widgets.slider_explorer(strict, k=(1, 5))
        ex.controls["k"].value = 5
    assert isinstance(ex.error, ValueError)
    assert cap.outputs[-1].data["text/plain"] == "ValueError: k too large"
    with pytest.raises(ValueError, match="k too large"):  # direct calls raise as usual
        ex.update(k=4)
    with pytest.raises(ValueError, match="k too large"):  # so does the first, default call
        widgets.slider_explorer(strict, k=(4, 5))


def test_text_explorer_runs_on_button_click(shell, monkeypatch):
    monkeypatch.setenv("SSLEDU_WIDGETS", "on")
    seen = []

    def upper(text, repeat=1):
        seen.append((text, repeat))
        return text.upper() * repeat

    with capture_output() as cap:
        ex = widgets.text_explorer(upper, "the cat [MASK] .", repeat=(1, 3), button="run")
        ex.controls["text"].value = "a dog"
        ex.controls["repeat"].value = 2
        assert len(seen) == 1  # edits alone do not run with a button
        ex.button.click()
    assert seen == [("the cat [MASK] .", 1), ("a dog", 2)]
    assert cap.outputs[-1].data["text/plain"] == "A DOGA DOG"
    assert isinstance(ex.controls["text"], w.Text)
    assert ex.how == "Change the controls, then click “run”: the output below updates."


def test_text_explorer_without_button_runs_on_change():
    seen = []
    ex = widgets.text_explorer(lambda text: seen.append(text) or len(text), "abc", multiline=True)
    assert isinstance(ex.controls["text"], w.Textarea) and ex.button is None  # live by default
    assert ex.controls["text"].continuous_update is False  # on submit / blur, not per key
    ex.controls["text"].value = "abcdef"
    assert seen == ["abc", "abcdef"] and ex.result == 6
    assert ex.how == "Edit the text, then click outside the box: the output below updates."
    with pytest.raises(ValueError, match="string"):
        widgets.text_explorer(len, 42)


def test_shown_again_in_a_later_cell(shell):
    with capture_output() as cap:
        ex = widgets.explorer(lambda: "hi")
        ex._ipython_display_()
        shell.execution_count += 1  # a later cell evaluates `ex`
        ex._ipython_display_()
    assert _texts(cap.outputs) == ["hi", "hi"]


def test_slider_explorer_rejects_other_controls():
    with pytest.raises(ValueError, match="slider 'mode'"):
        widgets.slider_explorer(Recorder(), mode="greedy")
    with pytest.raises(ValueError, match="at least one slider"):
        widgets.slider_explorer(Recorder())


def test_live_widgets_env(monkeypatch):
    monkeypatch.setenv("SSLEDU_WIDGETS", "yes")
    assert widgets.live_widgets() is True
    monkeypatch.setenv("SSLEDU_WIDGETS", "0")
    assert widgets.live_widgets() is False
    monkeypatch.setenv("SSLEDU_WIDGETS", "maybe")
    with pytest.raises(ValueError, match="on/off"):
        widgets.live_widgets()


def test_how_says_what_updates_the_output():
    def f(text, k=1, mode="a", flag=False):
        return text

    ex = widgets.text_explorer(f, "x", k=(1, 3), mode=["a", "b"], flag=False)
    assert ex.how == (
        "Edit the text and press Enter, release a slider or change a choice: the output below updates."
    )
    assert widgets.explorer(lambda: "x").how == "This explorer has no controls; its output is fixed."
    # the box shows the same sentence above the controls
    assert ex.how in ex.box.children[0].value


def test_tuple_results_get_one_output_each_and_update_in_place(shell, monkeypatch):
    monkeypatch.setenv("SSLEDU_WIDGETS", "on")

    def two(n=1):
        if n == 3:
            raise ValueError("three is not allowed")
        if n == 4:
            return "a", "b", "c"
        return f"first {n}", widgets.SampledText("p", "q" * n)

    with capture_output() as cap:
        ex = widgets.slider_explorer(two, n=(1, 4))
        ex.controls["n"].value = 2
        ex.controls["n"].value = 3
        ex.controls["n"].value = 4
    box, first, second, *updates = cap.outputs
    assert first.data["text/plain"] == "first 1" and second.data["text/plain"] == "p ▸ q"
    assert "text/html" in second.data
    assert [u.data["text/plain"] for u in updates] == [
        "first 2", "p ▸ qq",  # n=2: both outputs replaced
        "ValueError: three is not allowed", "",  # an error fills the first, blanks the second
        "a", "b\nc",  # more items than outputs: the last output holds the rest
    ]
    ids = [first.transient["display_id"], second.transient["display_id"]]
    assert [u.transient["display_id"] for u in updates] == ids * 3


def test_sampled_text_is_large_escaped_html_with_a_plain_twin():
    s = widgets.SampledText("To be <or>", " not to be,\nthat is", title="T=0.8")
    page = s._repr_html_()
    assert "font-size:1.35em" in page and "serif" in page and "monospace" not in page
    assert "&lt;or&gt;" in page and "<or>" not in page  # escaped: the model may write markup
    assert repr(s) == "T=0.8\nTo be <or> ▸  not to be,\nthat is"
    with pytest.raises(TypeError, match="two strings"):
        widgets.SampledText("p", 42)


NOTEBOOK_CELLS = [
    "import os\nos.environ['MPLBACKEND'] = 'Agg'\nfrom ssledu import widgets",
    "def f(text, k=2):\n    return text * k\nex = widgets.text_explorer(f, 'ab', k=(1, 3))",
    "ex.update(k=3)\nprint(ex.result, ex.calls)",
]


def test_headless_kernel_runs_explorers_without_waiting(tmp_path):
    """nbclient (a real kernel, no browser): controls are displayed, nothing blocks."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    box, result = nb.cells[1].outputs
    assert box["data"]["text/plain"].startswith("Explorer of f: run this cell to get its controls")
    assert "application/vnd.jupyter.widget-view+json" in box["data"]
    assert result["data"]["text/plain"] == "ababab"  # ex.update in the next cell replaced it in place
    assert nb.cells[2].outputs[0]["text"] == "ababab 2\n"

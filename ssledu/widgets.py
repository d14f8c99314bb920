"""Interactive explorers: thin ipywidgets layers over plain functions.

An explorer wraps a function that returns something displayable (a matplotlib
Figure, a string, an ``IPython.display.HTML``, a ``SampledText``, or a tuple of
these shown one below the other). It calls the function ONCE with the default
values straight away and displays the result as an ordinary cell output, so a
notebook executed headless (nbclient, nbval, CI) stores the default result and
nothing waits for a user. In a live Jupyter kernel it also shows controls;
changing one calls the function again and replaces that output in place (an
IPython display handle, no Output widget needed).

    def show(temperature=1.0, top_k=10):
        return viz.token_probability_bars(next_token_logits / temperature, tok, top_k)

    ex = widgets.slider_explorer(show, temperature=(0.1, 3.0, 0.1), top_k=(1, 40))
    ex.how   # "Release a slider: the output below updates." (quote it in the text)
    widgets.text_explorer(lambda text: fill_mask_figure(model, tok, text), "the cat [MASK] .")

How an explorer updates is one line, ``Explorer.how``, shown above its controls:
live on every change where the function is cheap (sliders on release, a text box
on Enter), or on a button click where it is slow (``button="run"``).

A notebook opened without a live kernel (a fresh clone is untrusted in
JupyterLab, or a static render on GitHub) shows each output's text form: the
controls then read "Explorer of <fn>: run this cell to get its controls (they
need a live kernel)", never a claim that the reader is not in Jupyter.

Controls are shown when the environment variable ``SSLEDU_WIDGETS`` is on, or,
when it is unset, whenever the code runs inside a Jupyter kernel; set
``SSLEDU_WIDGETS=off`` to get the plain outputs only (a clean executed notebook).
"""

from __future__ import annotations

import html
import inspect
import textwrap
from collections.abc import Callable

from ssledu.conventions import env_flag, in_notebook

__all__ = [
    "live_widgets", "Explorer", "explorer", "text_explorer", "slider_explorer", "SampledText",
]


def live_widgets() -> bool:
    """Whether explorers show their controls (env ``SSLEDU_WIDGETS``, else: inside a Jupyter kernel)."""
    return env_flag("SSLEDU_WIDGETS", default=in_notebook())


def _shell():
    """The running IPython shell, or None (plain Python, pytest)."""
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    return InteractiveShell.instance() if InteractiveShell.initialized() else None


class SampledText:
    """Generated text for a projector: large proportional type, the prompt in grey.

    prompt, continuation: strings; ``continuation`` is what the model wrote. Shown as HTML
    (about 1.35x the notebook's font, serif, wrapped); its text form (seen where HTML is
    not rendered) is the same words, wrapped at ``width`` characters, with the
    continuation after "▸". Newlines in the text are kept.
    """

    def __init__(self, prompt: str, continuation: str, *, title: str | None = None, width: int = 88):
        if not isinstance(prompt, str) or not isinstance(continuation, str):
            raise TypeError(
                "SampledText(prompt, continuation) takes two strings, e.g. the decoded prompt and "
                f"the decoded new tokens; got {type(prompt).__name__} and {type(continuation).__name__}"
            )
        self.prompt, self.continuation, self.title, self.width = prompt, continuation, title, width

    def _repr_html_(self):
        head = f'<div style="font-size:0.95em;color:#4a5568;margin-bottom:0.2em">{html.escape(self.title)}</div>' if self.title else ""
        return (
            f'<div class="ssledu-sampled-text">{head}<div style="font-family:Georgia,\'DejaVu Serif\',serif;'
            'font-size:1.35em;line-height:1.5;max-width:46em;white-space:pre-wrap">'
            f'<span style="color:#718096">{html.escape(self.prompt)}</span>'
            f'<span style="color:#1a202c">{html.escape(self.continuation)}</span></div></div>'
        )

    def __repr__(self):
        lines = [self.title] if self.title else []
        body = f"{self.prompt} ▸ {self.continuation}"
        for paragraph in body.split("\n"):
            lines.append(textwrap.fill(paragraph, self.width) if paragraph else "")
        return "\n".join(lines)


def _parts(result) -> list:
    """A function's result as the list of things to display, one output each."""
    from IPython.display import Pretty

    items = list(result) if isinstance(result, tuple) else [result]
    shown = []
    for item in items:
        if item is None:
            shown.append(Pretty(""))  # an empty output that a later update can fill
        elif isinstance(item, str):
            shown.append(Pretty(item))
        else:
            shown.append(item)
    return shown or [Pretty("")]


def _release(result):
    """Close Figures made with pyplot: they stay displayable, but pyplot forgets them."""
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for item in result if isinstance(result, tuple) else (result,):
        number = getattr(item, "number", None)
        if number is not None and plt.fignum_exists(number) and plt.figure(number) is item:
            plt.close(item)


class _Controls:
    """Mixin giving a widget box a truthful text form: what a reader without a live kernel
    sees (an untrusted notebook in JupyterLab shows text/plain instead of the widgets)."""

    def __repr__(self):
        return (
            f"Explorer of {self._fn_name}: run this cell to get its controls (they need a live "
            f"kernel). {self._how}"
        )

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle["text/plain"] = repr(self)  # whole: ipywidgets cuts it at 110 characters
        return bundle


_BOX_CLASS = []  # made on first use, so that importing this module stays light


def _controls_box(children, fn_name, how):
    import ipywidgets as w

    if not _BOX_CLASS:
        _BOX_CLASS.append(type("ControlsBox", (_Controls, w.VBox), {}))
    note = w.HTML(f'<span style="color:#4a5568;font-style:italic">{html.escape(how)}</span>')
    box = _BOX_CLASS[0]([note, *children])
    box.add_class("ssledu-explorer")  # a handle for styling and for the browser test
    box._fn_name, box._how = fn_name, how
    return box


def _describe_updates(widgets, button) -> str:
    """One sentence saying what makes the output change, from the kinds of controls."""
    if button is not None:
        return f"Change the controls, then click “{button.description}”: the output below updates."
    kinds = []
    for c in widgets:
        name = type(c).__name__
        if name == "Textarea":
            kind = "edit the text, then click outside the box"
        elif name == "Text":
            kind = "edit the text and press Enter"
        elif "Slider" in name:
            kind = "release a slider"
        else:
            kind = "change a choice"
        if kind not in kinds:
            kinds.append(kind)
    if not kinds:
        return "This explorer has no controls; its output is fixed."
    sentence = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
    return f"{sentence[0].upper()}{sentence[1:]}: the output below updates."


def _make_controls(fn: Callable, controls: dict) -> dict:
    """name -> ipywidgets control, from widgets or ipywidgets.interact abbreviations.

    Abbreviations follow ``ipywidgets.interact``: (min, max[, step]) -> slider,
    list/dict -> dropdown, str -> text box, bool -> checkbox; the value starts at
    ``fn``'s default for that argument when it has one.
    """
    import ipywidgets as w

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    made = {}
    for name, abbrev in controls.items():
        default = inspect.Parameter.empty
        if name in params:
            default = params[name].default
        try:
            widget = w.interactive.widget_from_abbrev(abbrev, default)
        except Exception as err:  # ipywidgets raises TypeError/ValueError/TraitError
            raise ValueError(
                f"cannot make a control for {name!r} from {abbrev!r} ({err}); give a widget, "
                "(min, max[, step]), a list of options, a string, or a bool"
            ) from err
        if widget is None:
            raise ValueError(
                f"cannot make a control for {name!r} from {abbrev!r}; give a widget, "
                "(min, max[, step]), a list of options, a string, or a bool"
            )
        if isinstance(widget, w.Widget):
            if not getattr(widget, "description", "x"):
                widget.description = name
            if hasattr(widget, "continuous_update") and "Slider" in type(widget).__name__:
                widget.continuous_update = False  # run once on release, not per pixel
            if hasattr(widget, "style") and hasattr(widget.style, "description_width"):
                widget.style.description_width = "initial"
        made[name] = widget
    return made


class Explorer:
    """A function, its controls, and the output they drive.

    ``fn(**values)`` is called once on construction with the controls' values;
    ``result`` holds the latest return value and ``calls`` counts calls. ``show()``
    displays the result (plus the controls when ``live_widgets()``); ``update(**values)``
    sets controls and re-runs. ``how`` is one sentence saying what updates the output
    (quote it in the chapter text). A tuple result is shown as one output per item.
    Errors in the first call propagate; errors after a control change are shown in the
    output instead (a kernel would hide them).
    """

    def __init__(self, fn: Callable, controls: dict, *, button: str | None = None, live: bool | None = None):
        import ipywidgets as w

        self.fn = fn
        self.controls = dict(controls)
        self.live = live_widgets() if live is None else live
        self.calls = 0
        self.result = None
        self.error: Exception | None = None
        self._slots = []  # per show(): the display handles of its outputs
        self._shown_in = None
        self._quiet = False
        self.button = w.Button(description=button, button_style="primary") if button else None
        widgets = [c for c in self.controls.values() if isinstance(c, w.Widget)]
        if self.button is not None:
            self.button.on_click(lambda _: self._on_change())
        else:
            for c in widgets:
                c.observe(lambda _: self._on_change(), names="value")
        self.how = _describe_updates(widgets, self.button)
        name = getattr(fn, "__name__", type(fn).__name__)
        self.box = _controls_box(widgets + ([self.button] if self.button else []), name, self.how)
        self.run()

    @property
    def values(self) -> dict:
        """The current control values, as passed to ``fn``."""
        return {name: c.value for name, c in self.controls.items()}

    def run(self):
        """Call ``fn`` with the current values, refresh the displayed output, return the result."""
        result = self.fn(**self.values)
        _release(result)
        self.calls += 1
        self.result = result
        self.error = None
        self._refresh(_parts(result))
        return result

    def _refresh(self, parts):
        from IPython.display import Pretty

        for handles in self._slots:
            if len(parts) > len(handles):  # more items than outputs: the last one takes the rest
                parts = parts[: len(handles) - 1] + [_Stacked(parts[len(handles) - 1 :])]
            for i, handle in enumerate(handles):
                handle.update(parts[i] if i < len(parts) else Pretty(""))

    def update(self, **values):
        """Set some controls (by name) and run once."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown controls {sorted(unknown)}; this explorer has {sorted(self.controls)}")
        self._quiet = True
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._quiet = False
        return self.run()

    def _on_change(self):
        if self._quiet:
            return
        try:
            self.run()
        except Exception as err:  # show it: an exception in a widget callback is invisible
            from IPython.display import Pretty

            self.error = err
            self._refresh([Pretty(f"{type(err).__name__}: {err}")])

    def show(self):
        """Display the controls (live only) and the latest result; no-op outside IPython."""
        shell = _shell()
        if shell is None:
            return self
        from IPython.display import display

        if self.live:
            display(self.box)
        self._slots.append([display(part, display_id=True) for part in _parts(self.result)])
        self._shown_in = shell.execution_count
        return self

    def _ipython_display_(self):
        # explorer() already displayed itself in this cell; show again only in a later cell
        shell = _shell()
        if shell is None or self._shown_in != shell.execution_count:
            self.show()

    def __repr__(self):
        name = getattr(self.fn, "__name__", "fn")
        return f"Explorer({name}, values={self.values!r}, calls={self.calls})"


class _Stacked:
    """Several displayables in one output (HTML, or their text forms one per line)."""

    def __init__(self, parts):
        self.parts = parts

    def _repr_mimebundle_(self, include=None, exclude=None):
        import base64
        import io

        blocks = []
        for part in self.parts:
            if hasattr(part, "savefig"):
                buf = io.BytesIO()
                part.savefig(buf, format="png", bbox_inches="tight")
                data = base64.b64encode(buf.getvalue()).decode("ascii")
                blocks.append(f'<img src="data:image/png;base64,{data}"/>')
            elif hasattr(part, "_repr_html_") and part._repr_html_() is not None:
                blocks.append(part._repr_html_())
            else:
                blocks.append(f"<pre>{html.escape(_plain(part))}</pre>")
        return {"text/html": "\n".join(blocks), "text/plain": "\n".join(_plain(p) for p in self.parts)}


def _plain(part) -> str:
    """The text form of a displayable (a ``Pretty`` holds its text in ``data``)."""
    from IPython.display import Pretty

    return part.data if isinstance(part, Pretty) else repr(part)


def explorer(fn: Callable, *, button: str | None = None, show: bool = True, **controls) -> Explorer:
    """Call ``fn(**defaults)`` once, display the result, and add controls in a live kernel.

    controls: name -> an ipywidgets widget or an ``ipywidgets.interact``
    abbreviation ((min, max[, step]) slider, list dropdown, str text box, bool
    checkbox; ``ipywidgets.fixed(v)`` passes v unchanged); values start at
    ``fn``'s defaults. button: a label to run only when it is clicked (for
    slow functions) instead of on every change. ``fn`` may return a tuple (e.g. a
    Figure and a ``SampledText``), shown as one output per item. Returns the
    ``Explorer``; its ``how`` says in one sentence what updates the output.
    """
    ex = Explorer(fn, _make_controls(fn, controls), button=button)
    if show:
        ex.show()
    return ex


def text_explorer(
    fn: Callable,
    default_text: str,
    *,
    description: str = "text",
    multiline: bool = False,
    button: str | None = None,
    placeholder: str = "",
    show: bool = True,
    **controls,
) -> Explorer:
    """A text box driving ``fn(text, **controls)``, which returns a Figure, str, HTML,
    ``SampledText`` or a tuple of these.

    By default (``button=None``) the function runs when the text is submitted (Enter;
    for ``multiline``, when the box loses focus) and when another control is released:
    right for a function that answers within a second or so. For a slower one give
    ``button="run"``: edits then only take effect on a click. ``Explorer.how`` says which.
    Further controls as in ``explorer``.
    """
    import ipywidgets as w

    if not isinstance(default_text, str):
        raise ValueError(f"default_text must be a string; got {type(default_text).__name__}")
    box_cls = w.Textarea if multiline else w.Text
    text = box_cls(
        value=default_text,
        description=description,
        placeholder=placeholder,
        # with a button the value syncs as typed and only the click runs fn
        continuous_update=button is not None,
        layout=w.Layout(width="95%"),
    )
    made = _make_controls(fn, controls)
    if "text" in made:
        raise ValueError("'text' is the text box itself; give other controls other names")

    def call(text, **values):
        return fn(text, **values)

    call.__name__ = getattr(fn, "__name__", "fn")
    ex = Explorer(call, {"text": text, **made}, button=button)
    if show:
        ex.show()
    return ex


def slider_explorer(fn: Callable, *, button: str | None = None, show: bool = True, **sliders) -> Explorer:
    """Sliders driving ``fn(**values)``: each slider is (min, max[, step]) or a slider widget.

    Integer bounds give an integer slider. Values start at ``fn``'s defaults (as in
    ``ipywidgets.interact``); sliders run ``fn`` when released, not while dragged.
    """
    import ipywidgets as w

    if not sliders:
        raise ValueError("slider_explorer needs at least one slider, e.g. temperature=(0.1, 2.0, 0.1)")
    for name, spec in sliders.items():
        ok = (
            isinstance(spec, tuple) and 2 <= len(spec) <= 3 and all(isinstance(v, (int, float)) for v in spec)
        ) or (isinstance(spec, w.Widget) and "Slider" in type(spec).__name__)
        if not ok:
            raise ValueError(
                f"slider {name!r}: expected (min, max) or (min, max, step) numbers, or a slider widget; "
                f"got {spec!r}. Use explorer() for other kinds of controls."
            )
    return explorer(fn, button=button, show=show, **sliders)

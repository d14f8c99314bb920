"""Interactive explorers: thin ipywidgets layers over plain functions.

An explorer wraps a function that returns something displayable (a matplotlib
Figure, a string, an ``IPython.display.HTML``). It calls the function ONCE with
the default values straight away and displays the result as an ordinary cell
output, so a notebook executed headless (nbclient, nbval, CI) stores the
default plot and nothing waits for a user. In a live Jupyter kernel it also
shows controls; changing one calls the function again and replaces that output
in place (an IPython display handle, no Output widget needed).

    def show(temperature=1.0, top_k=10):
        return viz.token_probability_bars(next_token_logits / temperature, tok, top_k)

    widgets.slider_explorer(show, temperature=(0.1, 3.0, 0.1), top_k=(1, 40))
    widgets.text_explorer(lambda text: fill_mask_figure(model, tok, text), "the cat [MASK] .")

Controls are shown when the environment variable ``SSLEDU_WIDGETS`` is on, or,
when it is unset, whenever the code runs inside a Jupyter kernel; set
``SSLEDU_WIDGETS=off`` to get the plain outputs only (a clean executed notebook).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

__all__ = ["live_widgets", "Explorer", "explorer", "text_explorer", "slider_explorer"]

_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}


def live_widgets() -> bool:
    """Whether explorers show their controls (env ``SSLEDU_WIDGETS``, else: inside a Jupyter kernel)."""
    raw = os.environ.get("SSLEDU_WIDGETS", "")
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    if value:
        raise ValueError(
            f"SSLEDU_WIDGETS must be on/off (1/0, true/false, yes/no); got {raw!r}. "
            "Unset it to show controls only inside a Jupyter kernel."
        )
    shell = _shell()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _shell():
    """The running IPython shell, or None (plain Python, pytest)."""
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    return InteractiveShell.instance() if InteractiveShell.initialized() else None


def _displayable(result):
    """What to hand to IPython's display for a function's result."""
    from IPython.display import Pretty

    if result is None:
        return Pretty("")  # an empty output that a later update can fill
    if isinstance(result, str):
        return Pretty(result)
    return result


def _release(result):
    """Close a Figure made with pyplot: it stays displayable, but pyplot forgets it."""
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    number = getattr(result, "number", None)
    if plt is not None and number is not None and plt.fignum_exists(number):
        if plt.figure(number) is result:
            plt.close(result)


class _Controls:
    """Mixin giving a widget box a readable text form (seen in static renders)."""

    def __repr__(self):
        return f"[controls for {self._fn_name}: run this notebook in Jupyter to use them]"


_BOX_CLASS = []  # made on first use, so that importing this module stays light


def _controls_box(children, fn_name):
    import ipywidgets as w

    if not _BOX_CLASS:
        _BOX_CLASS.append(type("ControlsBox", (_Controls, w.VBox), {}))
    box = _BOX_CLASS[0](children)
    box._fn_name = fn_name
    return box


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
    sets controls and re-runs. Errors in the first call propagate; errors after a
    control change are shown in the output instead (a kernel would hide them).
    """

    def __init__(self, fn: Callable, controls: dict, *, button: str | None = None, live: bool | None = None):
        import ipywidgets as w

        self.fn = fn
        self.controls = dict(controls)
        self.live = live_widgets() if live is None else live
        self.calls = 0
        self.result = None
        self.error: Exception | None = None
        self._handles = []
        self._shown_in = None
        self._quiet = False
        self.button = w.Button(description=button, button_style="primary") if button else None
        widgets = [c for c in self.controls.values() if isinstance(c, w.Widget)]
        if self.button is not None:
            self.button.on_click(lambda _: self._on_change())
        else:
            for c in widgets:
                c.observe(lambda _: self._on_change(), names="value")
        name = getattr(fn, "__name__", type(fn).__name__)
        self.box = _controls_box(widgets + ([self.button] if self.button else []), name)
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
        for handle in self._handles:
            handle.update(_displayable(result))
        return result

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
            for handle in self._handles:
                handle.update(Pretty(f"{type(err).__name__}: {err}"))

    def show(self):
        """Display the controls (live only) and the latest result; no-op outside IPython."""
        shell = _shell()
        if shell is None:
            return self
        from IPython.display import display

        if self.live:
            display(self.box)
        self._handles.append(display(_displayable(self.result), display_id=True))
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


def explorer(fn: Callable, *, button: str | None = None, show: bool = True, **controls) -> Explorer:
    """Call ``fn(**defaults)`` once, display the result, and add controls in a live kernel.

    controls: name -> an ipywidgets widget or an ``ipywidgets.interact``
    abbreviation ((min, max[, step]) slider, list dropdown, str text box, bool
    checkbox; ``ipywidgets.fixed(v)`` passes v unchanged); values start at
    ``fn``'s defaults. button: a label to run only when it is clicked (for
    slow functions) instead of on every change. Returns the ``Explorer``.
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
    button: str | None = "run",
    placeholder: str = "",
    show: bool = True,
    **controls,
) -> Explorer:
    """A text box driving ``fn(text, **controls)``, which returns a Figure, str or HTML.

    With ``button`` (default "run") the function runs on click; with
    ``button=None`` it runs when the text is submitted (Enter) or the box loses
    focus. Further controls as in ``explorer``.
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

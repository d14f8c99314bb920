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
    "noise_reconstruction", "noise_explorer",
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


def _diff_tags(original: list, rebuilt: list, tag: str) -> list:
    """One tag per token of ``rebuilt``: ``tag`` where difflib does not match it to ``original``."""
    import difflib

    tags = [None] * len(rebuilt)
    for op, _, _, j1, j2 in difflib.SequenceMatcher(a=original, b=rebuilt, autojunk=False).get_opcodes():
        if op != "equal":
            tags[j1:j2] = [tag] * (j2 - j1)
    return tags


def noise_reconstruction(model, tokenizer, text: str, noise: str = "infill", rate: float = 0.15,
                         seed: int = 0):
    """Corrupt ``text`` with one of BART's noises and let a trained BART rebuild it.

    text: words of the tokenizer's vocabulary (unknown words become [UNK]); framed as
    ``[BOS] text [EOS]``, cut to the model's positions. noise, rate: as in
    ``denoise.bart_noise(..., mask_p=rate)``; seed: the noise's ``torch.Generator``. The
    reconstruction is greedy (``model.generate``). Returns an ``IPython.display.HTML``: the
    original, the corrupted input ([MASK] in blue) and the reconstruction, red where it
    differs from the original (a difflib alignment), with a one-line verdict.
    """
    import torch
    from IPython.display import HTML

    from ssledu import viz
    from ssledu.conventions import context_length, eval_mode
    from ssledu.objectives import denoise

    if not isinstance(text, str) or not text.split():
        raise ValueError(f"text must be a non-empty string of words; got {text!r}")
    limit = context_length(model, default=128) - 2
    words = tokenizer(text, add_special_tokens=False)["input_ids"][:limit]
    ids = [tokenizer.bos_token_id, *words, tokenizer.eos_token_id]
    if len(words) < 2:
        raise ValueError("type at least two words: the noises need something to damage")
    noised = denoise.bart_noise(ids, tokenizer, (noise,), mask_p=rate,
                                generator=torch.Generator().manual_seed(int(seed)))
    with eval_mode(model), torch.no_grad():
        gen = model.generate(input_ids=torch.tensor([noised]), attention_mask=torch.ones(1, len(noised), dtype=torch.long),
                             max_new_tokens=len(ids) + 8, num_beams=1, do_sample=False)[0].tolist()
    start = getattr(model.config, "decoder_start_token_id", None)
    if gen and gen[0] == start:
        gen = gen[1:]
    while gen and gen[-1] == tokenizer.pad_token_id:
        gen = gen[:-1]
    original = tokenizer.convert_ids_to_tokens(ids)
    corrupted = tokenizer.convert_ids_to_tokens(noised)
    rebuilt = tokenizer.convert_ids_to_tokens(gen)
    wrong = _diff_tags(original, rebuilt, "differs")
    palette = {"[MASK]": "#b6d7f4", "differs": "#f4b6b6"}
    verdict = ("exact reconstruction" if gen == ids else
               f"not exact: {sum(t is not None for t in wrong)} token(s) differ, "
               f"{len(rebuilt)} tokens written for {len(original)}")
    unknown = sum(t == tokenizer.unk_token_id for t in words) if tokenizer.unk_token_id is not None else 0
    note = f" ({unknown} word(s) outside the vocabulary became {tokenizer.unk_token})" if unknown else ""
    return HTML(
        f"<b>original</b>{note}" + viz.token_html(original, [None] * len(original), legend=False)
        + f"<b>{html.escape(noise)}, rate {rate:g}, seed {int(seed)}</b> ({len(corrupted)} tokens)"
        + viz.token_html(corrupted, ["[MASK]" if t == tokenizer.mask_token else None for t in corrupted],
                         palette, legend=False)
        + f"<b>reconstruction</b>: {verdict}" + viz.token_html(rebuilt, wrong, palette, legend=False)
    )


def noise_explorer(model, tokenizer, default_text: str, *, noises=None, rate: float = 0.15, seed: int = 0,
                   show: bool = True) -> Explorer:
    """Type a sentence, pick a noise, its rate and a seed; see the corrupted input and a trained
    BART's reconstruction (``noise_reconstruction``, coloured token diff).

    model: one BART, or a dict noise -> the BART trained on that noise (each noise is then
    repaired by its own network); noises: the choices (default: the dict's keys, else
    mask / delete / infill). Headless (executed notebook, tests) it is one call with the
    defaults: the first noise, ``rate``, ``seed``. The text runs on Enter, the other controls
    on release.
    """
    import ipywidgets as w

    nets = dict(model) if isinstance(model, dict) else None
    if noises is None:
        noises = tuple(nets) if nets else ("mask", "delete", "infill")
    noises = (noises,) if isinstance(noises, str) else tuple(noises)
    if not noises:
        raise ValueError("noises must name at least one noise, e.g. ('mask', 'delete', 'infill')")
    if nets is not None and set(noises) - set(nets):
        raise ValueError(f"no network for noise(s) {sorted(set(noises) - set(nets))}; the dict has "
                         f"{sorted(nets)}: pass noises= among them")

    def rebuild(text, noise=noises[0], rate=rate, seed=seed):
        net = nets[noise] if nets is not None else model
        return noise_reconstruction(net, tokenizer, text, noise, rate, seed)

    return text_explorer(rebuild, default_text, description="sentence", show=show,
                         noise=list(noises),
                         rate=w.FloatSlider(value=rate, min=0.05, max=0.5, step=0.05, description="rate"),
                         seed=w.IntSlider(value=seed, min=0, max=20, description="seed"))


__all__ += ["NearestNeighbours", "nearest_neighbours", "retrieval_explorer"]


class NearestNeighbours:
    """The k nearest neighbours of one query under several encoders, one column per encoder.

    Shown as an HTML table (rank by rows, encoders by columns, each cell the text, its label
    and its cosine); its text form lists the same. Built by ``nearest_neighbours``.
    """

    def __init__(self, query: str, columns: dict, *, query_label=None):
        self.query, self.columns, self.query_label = query, columns, query_label

    def _repr_html_(self):
        names = list(self.columns)
        k = max((len(v) for v in self.columns.values()), default=0)
        head = "".join(f'<th style="text-align:left">{html.escape(n)}</th>' for n in names)
        body = []
        for r in range(k):
            cells = []
            for n in names:
                if r >= len(self.columns[n]):
                    cells.append("<td></td>")
                    continue
                text, label, score = self.columns[n][r]
                same = label is not None and self.query_label is not None and label == self.query_label
                tag = "" if label is None else (
                    f'<br><span style="color:{"#2f855a" if same else "#718096"}">{html.escape(str(label))}</span>')
                cells.append(f'<td style="text-align:left;vertical-align:top;font-size:0.9em">'
                             f'{html.escape(text)}{tag} <span style="color:#718096">({score:.3f})</span></td>')
            body.append(f"<tr><td>{r + 1}</td>{''.join(cells)}</tr>")
        q = html.escape(self.query) + ("" if self.query_label is None else f" <i>({html.escape(str(self.query_label))})</i>")
        return (f'<div class="ssledu-neighbours"><div style="margin-bottom:0.3em"><b>query:</b> {q}</div>'
                f'<table><tr><th>rank</th>{head}</tr>{"".join(body)}</table></div>')

    def __repr__(self):
        out = [f"query: {self.query}" + ("" if self.query_label is None else f"  ({self.query_label})")]
        for n, rows in self.columns.items():
            out.append(f"{n}:")
            for r, (text, label, score) in enumerate(rows, 1):
                out.append(f"  {r}. ({score:.3f}) {text}" + ("" if label is None else f"  [{label}]"))
        return "\n".join(out)


def _unit_rows(x):
    import numpy as np

    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def nearest_neighbours(query: str, encoders: dict, corpus, corpus_embeddings: dict, *, k: int = 3,
                       labels=None, query_label=None) -> NearestNeighbours:
    """The k texts of ``corpus`` nearest to ``query`` (cosine) under each encoder.

    encoders: name -> function(list of N texts) -> (N, D) array or tensor.
    corpus_embeddings: name -> (len(corpus), D), the same encoders applied to ``corpus``
    (computed once). labels: optional, one per corpus text, shown next to each neighbour
    (green where it equals ``query_label``). A corpus text equal to the query is skipped.
    """
    import numpy as np

    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query must be a non-empty string; got {query!r}")
    corpus = list(corpus)
    if set(encoders) != set(corpus_embeddings):
        raise ValueError(f"encoders and corpus_embeddings must have the same names; got {sorted(encoders)} "
                         f"and {sorted(corpus_embeddings)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < len(corpus):
        raise ValueError(f"k must be an integer in [1, {len(corpus) - 1}]; got {k!r}")
    if labels is not None and len(labels) != len(corpus):
        raise ValueError(f"labels must have one entry per corpus text ({len(corpus)}); got {len(labels)}")
    columns = {}
    for name, encode in encoders.items():
        c = _unit_rows(corpus_embeddings[name])  # (N, D)
        if c.shape[0] != len(corpus):
            raise ValueError(f"corpus_embeddings[{name!r}] has {c.shape[0]} rows for {len(corpus)} texts")
        q = _unit_rows(encode([query]))[0]  # (D,)
        sim = c @ q
        sim[[i for i, t in enumerate(corpus) if t == query]] = -np.inf  # not the query itself
        top = np.argsort(-sim, kind="stable")[:k]
        columns[name] = [(corpus[i], None if labels is None else labels[i], float(sim[i])) for i in top]
    return NearestNeighbours(query, columns, query_label=query_label)


def retrieval_explorer(encoders: dict, corpus, default_query: str, *, labels=None, label_of=None,
                       k: int = 3, show: bool = True) -> Explorer:
    """A text box: type a sentence, see its k nearest neighbours in ``corpus`` under each encoder.

    encoders: name -> function(list of texts) -> (N, D) embeddings; the corpus is embedded
    once here. labels: one per corpus text (shown with each neighbour); label_of: optional
    function(query) -> its label (or None), to mark same-label neighbours in green.
    Headless: one call with ``default_query`` (see the module docstring). Slider k: 1 to 10.
    """
    corpus = list(corpus)
    embedded = {name: encode(corpus) for name, encode in encoders.items()}

    def neighbours(text, k=k):
        ql = label_of(text) if label_of is not None else None
        return nearest_neighbours(text, encoders, corpus, embedded, k=int(k), labels=labels, query_label=ql)

    neighbours.__name__ = "nearest_neighbours"
    return text_explorer(neighbours, default_query, description="query", show=show, k=(1, min(10, len(corpus) - 1)))


class CheckedSteps:
    """A chain of thought with every step checked: ✓ where it equals the key, ✗ with the right
    step beside it where it does not (chapter 10's scratchpads).

    prompt: the problem as posed ("4785+3926="); rows: dicts ``{"written", "expected", "ok"}``
    in order, the last one the answer (``ssledu.data.scratchpad.compare_steps`` makes them).
    Shown as HTML; the text form (where HTML is not rendered) is one line per step.
    """

    def __init__(self, prompt: str, rows: list, *, title: str | None = None):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string; got {type(prompt).__name__}")
        rows = list(rows)
        if not rows or not all(isinstance(r, dict) and {"written", "expected", "ok"} <= set(r) for r in rows):
            raise ValueError("rows must be a non-empty list of dicts with 'written', 'expected' and 'ok' "
                             "(ssledu.data.scratchpad.compare_steps(problem, text) builds them)")
        self.prompt, self.rows, self.title = prompt, rows, title

    def _labels(self):
        return [f"step {i + 1}" for i in range(len(self.rows) - 1)] + ["answer"]

    def _note(self, r) -> str:
        if r["ok"]:
            return ""
        return "one step too many" if r["expected"] is None else f"should be {r['expected']}"

    def _repr_html_(self):
        head = (f'<div style="font-size:0.95em;color:#4a5568;margin-bottom:0.2em">{html.escape(self.title)}</div>'
                if self.title else "")
        lines = []
        for label, r in zip(self._labels(), self.rows):
            written = "—" if r["written"] is None else html.escape(r["written"])
            mark = '<span style="color:#2f855a">✓</span>' if r["ok"] else '<span style="color:#c53030">✗</span>'
            note = self._note(r)
            note = f' <span style="color:#718096">({html.escape(note)})</span>' if note else ""
            lines.append(f'<div><span style="color:#718096;display:inline-block;width:5em">{label}</span>'
                         f'<code style="font-size:1.15em">{written}</code> {mark}{note}</div>')
        return (f'<div class="ssledu-checked-steps">{head}<div style="font-size:1.1em;margin-bottom:0.3em">'
                f'<code style="font-size:1.15em">{html.escape(self.prompt)}</code></div>{"".join(lines)}</div>')

    def __repr__(self):
        out = [self.title] if self.title else []
        out.append(self.prompt)
        for label, r in zip(self._labels(), self.rows):
            written = "-" if r["written"] is None else r["written"]
            out.append(f"  {label:<8} {written:<10} {'ok' if r['ok'] else 'WRONG, ' + self._note(r)}")
        return "\n".join(out)

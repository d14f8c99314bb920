"""Plots for the course. Every function takes data and returns a matplotlib Figure.

Figures are values: nothing here calls ``plt.show()`` and no figure is left open
in pyplot's registry, so a notebook shows a figure exactly once (when it is the
last expression of a cell, or passed to ``display``) and figures never pile up.
Sizes fit a notebook column (6-9 inches wide) at a modest dpi so that stored
notebook outputs stay small.

    fig = viz.loss_curves({"BERT": history}, floor=bayes_nll, floor_label="Bayes floor")
    fig = viz.attention_grid(out.attentions, tokens, layer=1, head=0)
    fig = viz.mask_matrices({"bidirectional": m1, "causal": m2}, tokens)

The tests read the data back from the returned figures (line data, image arrays,
tick labels, bar sizes), so a plot that shows the wrong thing fails its test.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import matplotlib

# Importing pyplot is what hooks the inline backend into a Jupyter kernel, so that
# a bare Figure (created below without pyplot) renders as an image in a notebook.
import matplotlib.pyplot as plt  # noqa: F401
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ssledu.conventions import MASK_BLOCKED, in_notebook

__all__ = [
    "DPI",
    "loss_curves",
    "attention_grid",
    "allowed_positions",
    "mask_matrix",
    "mask_matrices",
    "token_probability_bars",
    "embedding_projection",
    "image_grid",
    "accuracy_vs_labels",
    "token_html",
    "colour_tokens",
    "TOKEN_PALETTE",
    "grouped_bars",
    "leak_change_maps",
]

DPI = 90  # small stored outputs; still sharp at notebook width
MAX_WIDTH = 9.0  # inches
_TOKEN_LABELS_UP_TO = 40  # beyond this many tokens, tick labels become unreadable


def _render_figures_in_jupyter() -> None:
    """Make bare Figures display as PNG images in a Jupyter kernel.

    pyplot loads its backend lazily, and the inline backend registers its image
    formatter only when loaded; figures made here never go through pyplot, so
    load it now. Without the inline backend (e.g. ``%matplotlib widget``), a PNG
    formatter is registered directly.
    """
    if not in_notebook():
        return
    from IPython import get_ipython

    shell = get_ipython()
    backend = matplotlib.get_backend()
    if "inline" in backend.lower():
        plt.switch_backend(backend)  # importing the backend module hooks it into IPython
    png = shell.display_formatter.formatters["image/png"]
    if not _has_type(png, Figure):
        from IPython.core.pylabtools import print_figure

        png.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def _has_type(formatter, cls) -> bool:
    try:
        formatter.lookup_by_type(cls)
        return True
    except KeyError:
        return False


_render_figures_in_jupyter()


def _figure(width: float, height: float) -> Figure:
    """A Figure not registered with pyplot (so it is shown once and never leaks)."""
    return Figure(figsize=(min(width, MAX_WIDTH), height), dpi=DPI, layout="constrained")


def _half_dtypes():
    import torch

    return (torch.float16, torch.bfloat16)


def _to_numpy(x) -> np.ndarray:
    """torch tensors (any device, with grad), lists and arrays -> float64 numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor
        x = x.detach().cpu()
        if x.dtype in _half_dtypes():  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------- loss curves


def _first_key(d: Mapping, keys: Sequence[str]):
    for k in keys:
        if k in d:
            return k
    return None


_TRAIN_KEYS = ("loss", "train_loss")
_EVAL_KEYS = ("eval_loss", "val_loss", "validation_loss", "loss")
_STEP_KEYS = ("step", "steps", "global_step")


def _curve_from_dicts(rows, keys, what: str):
    """A list of dicts (History.steps / .evals) -> (steps, values); rows lacking a loss are skipped."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"{what} rows must be dicts with a 'step' and a 'loss'; got {row!r}")
        key = _first_key(row, keys)
        if key is None or row[key] is None:
            continue
        step_key = _first_key(row, _STEP_KEYS)
        xs.append(float(row[step_key]) if step_key is not None else float(i + 1))
        ys.append(float(row[key]))
    return np.asarray(xs), np.asarray(ys)


def _curve_from_frame(df, keys):
    col = _first_key({c: None for c in df.columns}, keys)
    if col is None:
        return None
    step_col = _first_key({c: None for c in df.columns}, _STEP_KEYS)
    x = df[step_col] if step_col is not None else df.index.to_series()
    keep = df[col].notna().to_numpy()
    return x.to_numpy(dtype=float)[keep], df[col].to_numpy(dtype=float)[keep]


def _run_curves(run):
    """Any accepted run form -> ((train_x, train_y), (eval_x, eval_y) or None)."""
    if hasattr(run, "steps") and isinstance(getattr(run, "steps"), (list, tuple)):
        train = _curve_from_dicts(run.steps, _TRAIN_KEYS, "History.steps")
        evals = getattr(run, "evals", None) or []
        ev = _curve_from_dicts(evals, _EVAL_KEYS, "History.evals") if evals else None
        return train, ev
    if hasattr(run, "index") and getattr(run, "ndim", 0) == 1 and hasattr(run, "to_numpy"):
        # a pandas Series of losses, indexed by step
        return (run.index.to_numpy(dtype=float), run.to_numpy(dtype=float)), None
    if hasattr(run, "to_frame") and not hasattr(run, "columns"):
        run = run.to_frame()
    if hasattr(run, "columns"):  # pandas DataFrame
        train = _curve_from_frame(run, _TRAIN_KEYS)
        ev = _curve_from_frame(run, _EVAL_KEYS[:-1])
        if train is None and ev is None:
            raise ValueError(
                f"the DataFrame has no loss column; expected one of {_TRAIN_KEYS + _EVAL_KEYS[:-1]}, "
                f"got columns {list(run.columns)}"
            )
        if train is None:
            return ev, None
        return train, ev
    y = _to_numpy(run)
    if y.ndim != 1:
        raise ValueError(
            f"a run given as numbers must be 1-D (one loss per step); got shape {y.shape}"
        )
    return (np.arange(1, len(y) + 1, dtype=float), y), None


def loss_curves(
    runs,
    *,
    log_y: bool = False,
    title: str = "training loss",
    xlabel: str = "step",
    ylabel: str = "loss (nats/token)",
    floor=None,
    floor_label: str | None = None,
) -> Figure:
    """Training (solid) and validation (dashed, markers) loss against step.

    runs: a History-like object (``.steps``/``.evals`` lists of dicts with "step"
    and "loss"; or ``.to_frame()``), a DataFrame (columns "step", "loss",
    "eval_loss"), a list/array of losses, or a dict label -> any of these to overlay
    several runs. floor: a float, or dict label -> float, drawn as horizontal lines
    (e.g. the exact Bayes-optimal loss of toyworld). ``log_y`` puts the loss on a
    log axis.
    """
    if runs is None or isinstance(runs, (str, bytes, int, float)):
        raise TypeError(
            f"runs must be a History, a DataFrame, a list of losses or a dict label -> run; "
            f"got {type(runs).__name__} {str(runs)[:40]!r}. Pass e.g. loss_curves(history)"
        )
    if isinstance(runs, Mapping):
        named = list(runs.items())
    else:
        named = [(None, runs)]
    if not named:
        raise ValueError("loss_curves needs at least one run; got an empty dict")

    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    all_y = []
    for i, (label, run) in enumerate(named):
        (tx, ty), ev = _run_curves(run)
        if len(ty) == 0 and (ev is None or len(ev[1]) == 0):
            raise ValueError(f"run {label or 0!r} has no losses to plot")
        colour = colours[i % len(colours)]
        if len(ty):
            ax.plot(tx, ty, "-", color=colour, lw=1.5, label="train" if label is None else f"{label} (train)")
            all_y.append(ty)
        if ev is not None and len(ev[1]):
            ax.plot(
                ev[0], ev[1], "--o", color=colour, lw=1.5, ms=4,
                label="validation" if label is None else f"{label} (validation)",
            )
            all_y.append(ev[1])

    if floor is not None:
        floors = floor.items() if isinstance(floor, Mapping) else [(floor_label, floor)]
        styles = [":", "-.", (0, (1, 3)), (0, (5, 2, 1, 2))]
        for j, (flabel, value) in enumerate(floors):
            value = float(value)
            ax.axhline(
                value, color="0.25", ls=styles[j % len(styles)], lw=1.2,
                label=flabel if flabel is not None else f"floor = {value:.3f}",
            )
            all_y.append(np.asarray([value]))

    if log_y:
        ys = np.concatenate(all_y)
        if np.nanmin(ys) <= 0:
            raise ValueError(
                "log_y=True needs positive losses (and floors); "
                f"the smallest value is {np.nanmin(ys):.4g}. Use log_y=False."
            )
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------- attention


def _attention_array(attentions) -> np.ndarray:
    """transformers attentions or arrays -> (layers, heads, Lq, Lk), batch element 0."""
    if isinstance(attentions, (tuple, list)) and len(attentions) and hasattr(attentions[0], "shape"):
        layers = []
        for i, a in enumerate(attentions):
            a = _to_numpy(a)
            if a.ndim == 4:  # (B, H, Lq, Lk) as transformers returns it
                a = a[0]
            if a.ndim != 3:
                raise ValueError(
                    f"attentions[{i}] has shape {a.shape}; expected (B, H, L, L) per layer "
                    "as returned with output_attentions=True"
                )
            layers.append(a)
        if len({a.shape for a in layers}) != 1:
            raise ValueError(f"all layers must share one shape; got {[a.shape for a in layers]}")
        arr = np.stack(layers)
    else:
        arr = _to_numpy(attentions)
        if arr.ndim == 5:  # (layers, B, H, L, L), e.g. torch.stack(out.attentions)
            arr = arr[:, 0]
        elif arr.ndim == 3:  # (H, L, L): one layer
            arr = arr[None]
        elif arr.ndim == 2:  # (L, L): one map
            arr = arr[None, None]
        elif arr.ndim != 4:
            raise ValueError(
                f"attention of shape {arr.shape} not understood; pass a tuple of (B, H, L, L) "
                "tensors, or an array (layers, heads, L, L), (heads, L, L) or (L, L)"
            )
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"attention maps are empty: shape {arr.shape}")
    return arr


def _check_index(i, n, what):
    if not -n <= i < n:
        raise ValueError(f"{what} {i} is out of range; the attentions have {n} {what}s (0..{n - 1})")
    return i % n


def _label_axes(ax, q_tokens, k_tokens, *, fontsize="small"):
    if q_tokens is not None and len(q_tokens) <= _TOKEN_LABELS_UP_TO:
        ax.set_yticks(range(len(q_tokens)), [str(t) for t in q_tokens], fontsize=fontsize)
    else:
        ax.set_yticks([])
    if k_tokens is not None and len(k_tokens) <= _TOKEN_LABELS_UP_TO:
        ax.set_xticks(range(len(k_tokens)), [str(t) for t in k_tokens], fontsize=fontsize, rotation=90)
    else:
        ax.set_xticks([])


def _check_tokens(tokens, key_tokens, lq, lk, what="attention"):
    """Validate token labels against an (Lq, Lk) matrix; return (query_tokens, key_tokens)."""
    if tokens is not None:
        tokens = list(tokens)
        if len(tokens) != lq:
            raise ValueError(
                f"{len(tokens)} tokens given for a {what} of {lq} query positions (shape {lq}x{lk}); "
                "pass one token string per position"
            )
    if key_tokens is not None:
        key_tokens = list(key_tokens)
        if len(key_tokens) != lk:
            raise ValueError(f"{len(key_tokens)} key_tokens given for {lk} key positions")
    elif lq != lk:
        raise ValueError(
            f"{what} maps must be square (L, L) for self-attention; got {lq}x{lk}. "
            "For cross-attention pass key_tokens= with one label per key position."
        )
    else:
        key_tokens = tokens
    return tokens, key_tokens


def attention_grid(
    attentions,
    tokens=None,
    *,
    layer: int | None = None,
    head: int | None = None,
    max_layers: int = 6,
    max_heads: int = 8,
    key_tokens=None,
    title: str | None = None,
    cmap: str = "viridis",
) -> Figure:
    """Attention weights: queries as rows, keys as columns.

    attentions: ``model(..., output_attentions=True).attentions`` (tuple over
    layers of (B, H, L, L); batch element 0 is shown; the model needs
    ``attn_implementation="eager"`` and ``model.eval()``), or an array
    (layers, heads, L, L), (heads, L, L) or (L, L). tokens: L strings.
    With ``layer`` and ``head`` one map is drawn large with token labels; with
    only one of them, a row of heads (or a column of layers); with neither, a
    grid of the first ``max_layers`` x ``max_heads`` maps. All panels share one
    colour scale from 0 to the largest weight shown.
    """
    arr = _attention_array(attentions)  # (layers, heads, Lq, Lk)
    n_layers, n_heads, lq, lk = arr.shape
    tokens, key_tokens = _check_tokens(tokens, key_tokens, lq, lk)

    if layer is not None:
        layers = [_check_index(layer, n_layers, "layer")]
    else:
        layers = list(range(min(n_layers, max_layers)))
    if head is not None:
        heads = [_check_index(head, n_heads, "head")]
    else:
        heads = list(range(min(n_heads, max_heads)))

    shown = arr[np.ix_(layers, heads)]
    vmax = float(np.nanmax(shown)) if shown.size else 1.0
    vmax = vmax if vmax > 0 else 1.0

    if len(layers) == 1 and len(heads) == 1:
        li, hi = layers[0], heads[0]
        side = max(4.0, min(8.0, 0.3 * max(lq, lk) + 2.5))
        fig = _figure(side + 1.0, side)
        ax = fig.add_subplot()
        im = ax.imshow(arr[li, hi], cmap=cmap, vmin=0.0, vmax=vmax)
        _label_axes(ax, tokens, key_tokens)
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query (attending)")
        ax.set_title(title or f"attention, layer {li} head {hi}")
        fig.colorbar(im, ax=ax, label="attention weight", shrink=0.8)
        return fig

    nrows, ncols = len(layers), len(heads)
    cell = min(1.8, MAX_WIDTH / (ncols + 0.6))
    fig = _figure(cell * ncols + 1.0, cell * nrows + 0.8)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    small_labels = max(lq, lk) <= 12
    for r, li in enumerate(layers):
        for c, hi in enumerate(heads):
            ax = axes[r, c]
            im = ax.imshow(arr[li, hi], cmap=cmap, vmin=0.0, vmax=vmax)
            ax.set_title(f"L{li} H{hi}", fontsize="small")
            if small_labels:
                _label_axes(ax, tokens if c == 0 else None, key_tokens if r == nrows - 1 else None,
                            fontsize="x-small")
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    axes[-1, 0].set_xlabel("key")
    axes[-1, 0].set_ylabel("query")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="attention weight", shrink=0.8)
    hidden = []
    if len(layers) < n_layers:
        hidden.append(f"first {len(layers)} of {n_layers} layers")
    if len(heads) < n_heads:
        hidden.append(f"first {len(heads)} of {n_heads} heads")
    default = "attention weights (rows: layers, columns: heads)"
    fig.suptitle(title or (default + (f"; {', '.join(hidden)}" if hidden else "")))
    return fig


# --------------------------------------------------------------------------- attention masks

# Additive masks use a large negative number (torch.finfo(dtype).min, -1e4, -1e9 or
# -inf) where attention is blocked: all at or below ssledu.conventions.MASK_BLOCKED.


def allowed_positions(mask) -> np.ndarray:
    """An attention mask as a boolean (Lq, Lk) matrix, True where query i may attend key j.

    Accepts boolean masks (True = may attend), integer 0/1 masks (1 = may attend,
    the ``attention_mask`` convention), float 0/1 masks, and additive float masks
    (0 allowed, <= -1e4 or -inf blocked), of shape (Lq, Lk), (B, Lq, Lk) or
    (B, 1, Lq, Lk); for the batched forms the first matrix is used. For XLNet's
    ``perm_mask`` (1 = cannot see) pass ``perm_mask == 0``.
    """
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu()
        is_bool = str(mask.dtype) == "torch.bool"
        is_float = mask.is_floating_point()
        mask = mask.float().numpy() if not is_bool else mask.numpy()
    else:
        mask = np.asarray(mask)
        is_bool = mask.dtype == bool
        is_float = np.issubdtype(mask.dtype, np.floating)
    if mask.ndim == 4:
        mask = mask[0, 0]
    elif mask.ndim == 3:
        mask = mask[0]
    if mask.ndim != 2:
        hint = (
            " A (B, L) padding mask says which keys exist; build the matrix first, e.g. "
            "ssledu.objectives.prefix or mask[:, None, :].expand(-1, L, -1)."
            if mask.ndim == 1 else ""
        )
        raise ValueError(
            f"attention mask must have shape (L, L), (B, L, L) or (B, 1, L, L); got {mask.ndim}-D "
            f"{mask.shape}.{hint}"
        )
    if is_bool:
        return mask.astype(bool)
    if not is_float:
        return mask != 0
    values = np.unique(mask[np.isfinite(mask)])
    if values.size and np.all(np.isin(values, (0.0, 1.0))) and 1.0 in values:
        return mask == 1.0  # a 0/1 keep mask stored as float
    if values.size and values.max() > 0:
        raise ValueError(
            "float mask not understood: an additive mask has 0 where attention is allowed and "
            f"a large negative value where blocked, but this one contains {values.max():.4g}"
        )
    return mask > MASK_BLOCKED  # the threshold of ssledu.conventions.mask_allows


_MASK_CMAP = ListedColormap(["#eeeeee", "#2b6cb0"])  # blocked, allowed


def _draw_mask(ax, allowed, tokens, key_tokens, title, *, ylabel=True):
    lq, lk = allowed.shape
    ax.imshow(allowed.astype(int), cmap=_MASK_CMAP, vmin=0, vmax=1)
    if max(lq, lk) <= 64:  # cell borders make single positions countable
        ax.set_xticks(np.arange(-0.5, lk, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, lq, 1), minor=True)
        ax.grid(which="minor", color="white", lw=0.8)
        ax.tick_params(which="minor", length=0)
    if tokens is not None or key_tokens is not None:
        _label_axes(ax, tokens, key_tokens)
    else:
        step = max(1, lq // 8)
        ax.set_yticks(range(0, lq, step))
        ax.set_xticks(range(0, lk, max(1, lk // 8)))
    ax.set_xlabel("key position (attended to)")
    if ylabel:
        ax.set_ylabel("query position")
    ax.set_title(title)


def mask_matrix(mask, tokens=None, *, key_tokens=None, title: str = "attention mask") -> Figure:
    """Plot which positions each query may attend to (blue) or not (grey).

    mask: any form ``allowed_positions`` accepts, e.g. a (B, 1, L, L) additive mask
    or an (L, L) boolean mask. tokens: optional labels for the query rows (and the
    key columns when the mask is square); key_tokens labels the columns of a
    non-square (decoder x encoder) mask.
    """
    allowed = allowed_positions(mask)
    lq, lk = allowed.shape
    if tokens is not None or key_tokens is not None:
        tokens, key_tokens = _check_tokens(tokens, key_tokens, lq, lk, what="mask")
    side = max(3.5, min(7.0, 0.3 * max(lq, lk) + 2.0))
    fig = _figure(side + 0.5, side + 0.4)
    ax = fig.add_subplot()
    _draw_mask(ax, allowed, tokens, key_tokens, title)
    fig.legend(
        handles=[Patch(color=_MASK_CMAP(1), label="may attend"), Patch(color=_MASK_CMAP(0), label="blocked")],
        loc="outside lower center", ncols=2, fontsize="small",
    )
    return fig


def mask_matrices(masks: Mapping, tokens=None, *, key_tokens=None, title: str | None = None) -> Figure:
    """Several attention masks side by side, e.g. one network with four masks.

    masks: dict name -> mask (any form ``allowed_positions`` accepts); tokens and
    key_tokens as in ``mask_matrix`` (the same labels for every panel).
    """
    if not isinstance(masks, Mapping) or not masks:
        raise ValueError("mask_matrices needs a non-empty dict name -> mask")
    mats = {name: allowed_positions(m) for name, m in masks.items()}
    n = len(mats)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    longest = max(max(a.shape) for a in mats.values())
    cell = min(MAX_WIDTH / ncols, max(2.2, 0.25 * longest + 1.5))
    fig = _figure(cell * ncols, cell * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, (ax, (name, allowed)) in enumerate(zip(axes, mats.items())):
        q, k = tokens, key_tokens
        if q is not None or k is not None:
            q, k = _check_tokens(q, k, *allowed.shape, what=f"mask {name!r}")
        _draw_mask(ax, allowed, q, k, str(name), ylabel=i % ncols == 0)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.legend(
        handles=[Patch(color=_MASK_CMAP(1), label="may attend"), Patch(color=_MASK_CMAP(0), label="blocked")],
        loc="outside lower center", ncols=2, fontsize="small",
    )
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- token probabilities


def _id_to_token(tokenizer, i: int) -> str:
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return str(tokenizer.convert_ids_to_tokens(int(i)))
    if hasattr(tokenizer, "decode"):
        return str(tokenizer.decode([int(i)]))
    if isinstance(tokenizer, Sequence):  # a plain vocabulary list
        return str(tokenizer[int(i)])
    raise ValueError("tokenizer must have convert_ids_to_tokens or decode, or be a list of token strings")


def _top_candidates(scores, tokenizer, k: int, from_logits: bool):
    v = _to_numpy(scores)
    if v.ndim != 1:
        raise ValueError(
            f"logits must be 1-D (vocab_size,) for ONE position; got shape {v.shape}. "
            "Select it first, e.g. logits[0, position]."
        )
    if tokenizer is None:
        raise ValueError("pass a tokenizer with logits so the ids can be shown as tokens")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer (how many candidates to show); got {k!r}")
    if from_logits:
        v = np.exp(v - np.max(v))
        v = v / v.sum()
    k = min(int(k), len(v))
    top = np.argsort(-v, kind="stable")[:k]
    return [(_id_to_token(tokenizer, i), float(v[i])) for i in top]


def token_probability_bars(
    candidates,
    tokenizer=None,
    k: int = 10,
    *,
    from_logits: bool = True,
    highlight: str | None = None,
    title: str = "top candidates",
    xlabel: str = "probability",
) -> Figure:
    """Horizontal bars of the top-k candidate tokens at one position, most likely on top.

    candidates: a list of (token, probability) pairs, or a 1-D logits tensor
    (vocab_size,) with ``tokenizer`` and ``k`` (softmaxed here; pass
    ``from_logits=False`` for probabilities), or the tuple (logits, tokenizer, k).
    highlight: a token drawn in another colour (e.g. the word that was masked).
    """
    if isinstance(candidates, tuple) and candidates and (
        hasattr(candidates[0], "shape") and getattr(candidates[0], "ndim", 0) >= 1
    ):
        candidates, tokenizer, *rest = candidates
        k = rest[0] if rest else k
    if hasattr(candidates, "shape"):
        pairs = _top_candidates(candidates, tokenizer, k, from_logits)
    else:
        pairs = []
        for item in candidates:
            if not (isinstance(item, Sequence) and len(item) == 2):
                raise ValueError(f"candidates must be (token, probability) pairs; got {item!r}")
            pairs.append((str(item[0]), float(item[1])))
    if not pairs:
        raise ValueError("no candidates to plot")
    probs = np.array([p for _, p in pairs])
    if np.any(probs < 0) or np.any(probs > 1 + 1e-6):
        raise ValueError(
            f"probabilities must lie in [0, 1]; got values from {probs.min():.4g} to {probs.max():.4g}. "
            "Pass raw logits as a tensor (with the tokenizer) to have them softmaxed."
        )
    tokens = [t for t, _ in pairs]
    fig = _figure(6.0, 0.32 * len(pairs) + 1.3)
    ax = fig.add_subplot()
    colours = ["#dd6b20" if t == highlight else "#3182ce" for t in tokens]
    y = np.arange(len(pairs))
    ax.barh(y, probs, color=colours)
    ax.set_yticks(y, tokens)
    ax.invert_yaxis()  # most likely on top
    for yi, p in zip(y, probs):
        ax.text(p, yi, f" {p:.3f}", va="center", fontsize="small")
    ax.set_xlim(0, min(1.0, probs.max() * 1.25 + 0.02))
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- embeddings


def embedding_projection(
    X,
    labels=None,
    *,
    method: str = "pca",
    label_names=None,
    title: str | None = None,
    seed: int = 0,
    perplexity: float | None = None,
    max_iter: int = 1000,
) -> Figure:
    """2-D projection of embeddings X (N, D), one colour per label, with a legend.

    method: "pca" (sklearn PCA; axes show explained variance) or "tsne" (sklearn
    TSNE, init="pca", perplexity min(30, (N-1)/3) unless given, ``max_iter``
    optimisation steps (sklearn's default 1000; at least 250), ``seed`` fixes it).
    labels: N ints or strings; label_names maps an int label to its name (a list or
    a dict).
    """
    X = _to_numpy(X)
    if X.ndim != 2:
        raise ValueError(f"X must be (N, D) embeddings; got shape {X.shape}")
    n = X.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 points to project; got {n}")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise ValueError(
            f"X has NaN or inf in {bad} of {n} rows; a diverged model gives such features: "
            "retrain with a lower learning rate, or drop those rows"
        )
    if labels is not None:
        labels = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), one per row of X; got {labels.shape}")

    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        Z = pca.fit_transform(X)
        ratio = pca.explained_variance_ratio_
        axis_names = [f"PC {i + 1} ({100 * r:.0f}% of variance)" for i, r in enumerate(ratio)]
        default_title = "PCA projection of the embeddings"
    elif method == "tsne":
        from sklearn.manifold import TSNE

        perp = perplexity if perplexity is not None else max(1.0, min(30.0, (n - 1) / 3))
        Z = TSNE(
            n_components=2, perplexity=perp, init="pca", random_state=seed, max_iter=max_iter
        ).fit_transform(X)
        axis_names = ["t-SNE 1", "t-SNE 2"]
        default_title = f"t-SNE projection of the embeddings (perplexity {perp:g})"
    else:
        raise ValueError(f"method must be 'pca' or 'tsne'; got {method!r}")

    fig = _figure(6.5, 5.0)
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(Z[:, 0], Z[:, 1], s=12, alpha=0.8)
    else:
        order = list(dict.fromkeys(labels.tolist()))  # first appearance
        if all(isinstance(v, (int, np.integer)) for v in order):
            order = sorted(order)
        cmap = matplotlib.colormaps["tab10" if len(order) <= 10 else "tab20"]
        for j, value in enumerate(order):
            pick = labels == value
            name = value
            if label_names is not None:
                try:
                    name = label_names[value]
                except (KeyError, IndexError, TypeError):
                    name = value
            ax.scatter(Z[pick, 0], Z[pick, 1], s=12, alpha=0.8, color=cmap(j % cmap.N), label=str(name))
        if len(order) <= 20:
            ax.legend(fontsize="small", markerscale=1.5, loc="best")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title or default_title)
    return fig


# --------------------------------------------------------------------------- images


def _image_stack(images) -> np.ndarray:
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images to show: the list is empty; pass at least one (H, W) "
                             "or (H, W, 3) image, or an (N, H, W) array")
        images = [_as_image_array(im) for im in images]
        if len({im.shape for im in images}) > 1:
            raise ValueError(f"images must share one shape; got {sorted({im.shape for im in images})}")
        arr = np.stack(images)
    else:
        arr = _as_image_array(images)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3):
            arr = arr[None]  # a single (H, W) or (H, W, 3) image
    if arr.ndim == 4 and arr.shape[-1] not in (1, 3, 4) and arr.shape[1] in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)  # (N, C, H, W) as torch stores images
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
        raise ValueError(
            f"images must be (N, H, W), (N, H, W, 3) or (N, 3, H, W); got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError("no images to show")
    return arr


def _as_image_array(im) -> np.ndarray:
    if hasattr(im, "detach"):
        im = im.detach().cpu()
        return im.numpy() if str(im.dtype) == "torch.uint8" else im.float().numpy()
    return np.asarray(im)


def image_grid(
    images,
    *,
    titles=None,
    ncols: int = 8,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
) -> Figure:
    """A grid of images: (N, H, W) greyscale or (N, H, W, 3) colour, uint8 or float.

    Also accepts (N, 3, H, W) tensors and lists of images. Greyscale images use
    ``cmap`` ("gray" unless given) and, without vmin/vmax, each image's own
    range; float colour images outside [0, 1] are rescaled per image for display.
    titles: one string per image.
    """
    arr = _image_stack(images)
    n = arr.shape[0]
    if not isinstance(ncols, (int, np.integer)) or isinstance(ncols, bool) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer (images per row); got {ncols!r}")
    if titles is not None:
        titles = list(titles)
        if len(titles) != n:
            raise ValueError(f"{len(titles)} titles given for {n} images; pass one per image")
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    cell = min(1.4, MAX_WIDTH / ncols)
    fig = _figure(cell * ncols, cell * nrows + (0.5 if title else 0.1) + (0.25 * nrows if titles else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colour = arr.ndim == 4
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        im = arr[i]
        if colour and im.dtype != np.uint8:
            im = im.astype(np.float64)
            lo, hi = float(im.min()), float(im.max())
            if lo < 0 or hi > 1:
                im = (im - lo) / (hi - lo) if hi > lo else np.zeros_like(im)
            ax.imshow(im)
        elif colour:
            ax.imshow(im)
        else:
            ax.imshow(im, cmap=cmap or "gray", vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- label efficiency

_METHOD_COLS = ("method", "model", "features", "name")
_N_COLS = ("n_labels", "n", "labels", "n_train")
_ACC_COLS = ("accuracy", "acc", "score", "test_accuracy")


def _label_curves(results, x, y, hue):
    """-> dict method -> (n_labels, mean, std or None)."""
    if hasattr(results, "columns"):  # long DataFrame, possibly several seeds per point
        cols = {c: None for c in results.columns}
        hue = hue or _first_key(cols, _METHOD_COLS)
        x = x or _first_key(cols, _N_COLS)
        y = y or _first_key(cols, _ACC_COLS)
        if x is None or y is None:
            raise ValueError(
                f"the DataFrame needs a label-count column {_N_COLS} and an accuracy column {_ACC_COLS} "
                f"(or pass x=, y=); got columns {list(results.columns)}"
            )
        groups = results.groupby(hue, sort=False) if hue else [("accuracy", results)]
        out = {}
        for name, g in groups:
            stats = g.groupby(x)[y].agg(["mean", "std", "count"]).sort_index()
            std = stats["std"].fillna(0).to_numpy(float) if (stats["count"] > 1).any() else None
            out[str(name)] = (stats.index.to_numpy(float), stats["mean"].to_numpy(float), std)
        return out
    if not isinstance(results, Mapping) or not results:
        raise ValueError(
            "results must be a dict method -> {n_labels: accuracy} (or a list of (n, accuracy)), "
            "or a DataFrame with columns method, n_labels, accuracy"
        )
    out = {}
    for name, curve in results.items():
        items = list(curve.items()) if isinstance(curve, Mapping) else list(curve)
        if not items:
            raise ValueError(f"method {name!r} has no points")
        items.sort(key=lambda t: float(t[0]))
        ns = np.array([float(n) for n, _ in items])
        vals = [a for _, a in items]
        if all(np.ndim(a) == 0 for a in vals):
            out[str(name)] = (ns, np.array(vals, float), None)
        else:  # several seeds per label count
            out[str(name)] = (
                ns,
                np.array([np.mean(a) for a in vals]),
                np.array([np.std(a) for a in vals]),
            )
    return out


def accuracy_vs_labels(
    results,
    *,
    chance: float | None = None,
    title: str = "label efficiency",
    xlabel: str = "number of labelled training examples (log scale)",
    ylabel: str = "test accuracy",
    x: str | None = None,
    y: str | None = None,
    hue: str | None = None,
) -> Figure:
    """Label-efficiency curves: accuracy against the number of labels, one line per method.

    results: dict method -> {n_labels: accuracy} or method -> [(n_labels, accuracy)]
    (an accuracy may be a list over seeds: the line shows the mean and a band of
    +-1 std), or a long DataFrame with columns method / n_labels / accuracy
    (names guessed, or given as hue= / x= / y=). The x axis is logarithmic.
    chance: accuracy of guessing, drawn as a dotted line.
    """
    curves = _label_curves(results, x, y, hue)
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    ticks = set()
    for name, (ns, mean, std) in curves.items():
        if np.any(ns <= 0):
            raise ValueError(f"label counts must be positive for a log axis; method {name!r} has {ns.min():g}")
        (line,) = ax.plot(ns, mean, "-o", ms=4, label=name)
        if std is not None:
            ax.fill_between(ns, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
        ticks.update(ns.tolist())
    if chance is not None:
        ax.axhline(float(chance), color="0.4", ls=":", label=f"chance ({chance:.2f})")
    ax.set_xscale("log")
    if len(ticks) <= 10:
        ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# --------------------------------------------------------------------------- coloured tokens

# Colours for the MLM corruption categories (BERT 80/10/10) and a few others the
# chapters use; any other tag gets a colour from _EXTRA in order of appearance.
TOKEN_PALETTE = {
    "mask": "#fbd38d",      # replaced by [MASK]
    "random": "#feb2b2",    # replaced by a random token
    "kept": "#9ae6b4",      # selected but left unchanged
    "selected": "#90cdf4",  # selected for prediction
    "prefix": "#e9d8fd",
    "target": "#fefcbf",
    "noise": "#fed7e2",
}
_EXTRA = ["#b2f5ea", "#c3dafe", "#fbb6ce", "#faf089", "#e2e8f0", "#fbd38d", "#9ae6b4"]


def token_html(tokens, tags, palette: Mapping | None = None, *, legend: bool = True) -> str:
    """HTML that shows tokens as coloured chips, one colour per tag.

    tokens: strings; tags: one tag (str, or None/"" for no colour) per token, or a
    dict position -> tag for a few positions. palette: tag -> CSS colour, merged
    over ``TOKEN_PALETTE``. Display with ``IPython.display.HTML`` (or use
    ``colour_tokens``). Token text is HTML-escaped, so "<extra_id_0>" shows as is.
    """
    tokens = [str(t) for t in tokens]
    if isinstance(tags, Mapping):
        bad = [p for p in tags if not (isinstance(p, (int, np.integer)) and 0 <= p < len(tokens))]
        if bad:
            raise ValueError(f"tag positions {bad} are outside 0..{len(tokens) - 1}")
        tags = [tags.get(i) for i in range(len(tokens))]
    tags = list(tags)
    if len(tags) != len(tokens):
        raise ValueError(f"{len(tags)} tags for {len(tokens)} tokens; pass one tag per token (None for none)")
    colours = {**TOKEN_PALETTE, **(dict(palette) if palette else {})}
    used = []
    for tag in tags:
        if tag and tag not in used:
            used.append(tag)
    extra = iter(_EXTRA * (1 + len(used) // len(_EXTRA)))
    for tag in used:
        if tag not in colours:
            colours[tag] = next(extra)

    chip = (
        'style="background:{bg}; padding:1px 4px; margin:1px; border-radius:3px; '
        'display:inline-block"'
    )
    parts = []
    for tok, tag in zip(tokens, tags):
        text = html.escape(tok)
        if tag:
            parts.append(f'<span title="{html.escape(str(tag))}" {chip.format(bg=colours[tag])}>{text}</span>')
        else:
            parts.append(f'<span style="padding:1px 4px; margin:1px; display:inline-block">{text}</span>')
    body = '<div style="font-family:monospace; line-height:1.9">' + "".join(parts) + "</div>"
    if legend and used:
        keys = " ".join(
            f'<span {chip.format(bg=colours[t])}>{html.escape(str(t))}</span>' for t in used
        )
        body += f'<div style="font-size:small; margin-top:4px">key: {keys}</div>'
    return body


def colour_tokens(tokens, tags, palette: Mapping | None = None, *, legend: bool = True):
    """``token_html`` wrapped in ``IPython.display.HTML`` so a notebook cell shows it."""
    from IPython.display import HTML

    return HTML(token_html(tokens, tags, palette, legend=legend))


def grouped_bars(frame, *, title: str, ylabel: str, xlabel: str = "", group_sizes: Mapping | None = None,
                 fmt: str = "%.2f") -> Figure:
    """One group of bars per row of a DataFrame, one bar per column, each bar labelled with its value.

    frame: pandas DataFrame (rows = groups, e.g. position kinds; columns = series, e.g. views).
    group_sizes: optional {row: count}, shown under each group's name ("free\\n(3986 words)").
    """
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame must have at least one row and one column; got shape {frame.shape}")
    values = np.asarray(frame.values, dtype=float)
    fig = _figure(8.5, 3.8)
    ax = fig.add_subplot()
    x, width = np.arange(len(frame.index)), 0.8 / len(frame.columns)
    for k, col in enumerate(frame.columns):
        bars = ax.bar(x + (k - (len(frame.columns) - 1) / 2) * width, values[:, k], width, label=str(col))
        ax.bar_label(bars, fmt=fmt, fontsize="x-small")
    names = [str(r) if group_sizes is None else f"{r}\n({group_sizes[r]} words)" for r in frame.index]
    ax.set_xticks(x, names)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    ax.set_ylim(0, 1.2 * top if top > 0 else 1.0)  # room for the legend above the bars
    ax.legend(fontsize="small", loc="upper center", ncol=len(frame.columns))
    return fig


def leak_change_maps(results: Mapping, tokens, *, title: str) -> Figure:
    """Leak-test results side by side: log10 of how much query i moved when token j was replaced.

    results: {name: dict from ``ssledu.objectives.prefix.leak_test``} (its ``change`` (L, L) and
    ``leaks``). Cells that did not move at all are white, so a correct mask shows its blocked
    pattern exactly; each panel's title counts its leaks.
    """
    if not results:
        raise ValueError("results is empty; pass {name: prefix.leak_test(...)} for at least one mask")
    fig = _figure(9, 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(results)))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    im = None
    for ax, (name, res) in zip(axes, results.items()):
        change = _to_numpy(res["change"]).astype(float)
        if change.shape != (len(tokens), len(tokens)):
            raise ValueError(f"{name}: change has shape {change.shape} but there are {len(tokens)} tokens")
        # white = exactly 0: no tolerance, a leak of 1e-7 is still a leak
        shown = np.ma.masked_where(change == 0, np.log10(np.where(change > 0, change, 1.0)))
        im = ax.imshow(shown, cmap=cmap, vmin=-4, vmax=1)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize="x-small")
        ax.set_yticks(range(len(tokens)), tokens, fontsize="x-small")
        ax.set_title(f"{name}\n{len(res['leaks'])} leaks", fontsize="small")
        ax.set_xlabel("replaced token j")
    axes[0].set_ylabel("query position i")
    fig.colorbar(im, ax=list(axes), label="log10 max |change of hidden state|", shrink=0.8)
    fig.suptitle(title)
    return fig

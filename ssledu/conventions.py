"""Conventions the whole course shares, each with exactly one home.

=====================  ===========================================================
name                   what it fixes
=====================  ===========================================================
``IGNORE_INDEX``       the label that cross-entropy skips (-100, PyTorch's default)
``in_notebook()``      whether code runs inside a Jupyter kernel
``eval_mode(model)``   switch to eval for a block, restore the training flag after
``env_flag(name)``     read an on/off environment variable the same way everywhere
``context_length(m)``  how many positions a model (or its config) can read
``pad_batch(seqs)``    pad lists of ids into (B, L) ``input_ids`` + ``attention_mask``
``MASK_BLOCKED``       additive-mask value at or below which attention is blocked
``mask_allows(mask)``  additive (or boolean) mask -> boolean, True = may attend
=====================  ===========================================================

Special-token ids live with the tokenizers that fix them: ``ssledu.data.tokenize``
(``SPECIAL_TOKENS``, ``SPECIAL_IDS``, ``MASK_ID``, ...).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

# torch is imported inside the functions that need it, so that reading a flag
# (``env_flag``) from the command line stays instant.

__all__ = [
    "IGNORE_INDEX",
    "MASK_BLOCKED",
    "in_notebook",
    "eval_mode",
    "env_flag",
    "context_length",
    "pad_batch",
    "mask_allows",
    "check_ids",
]

# Labels equal to this are skipped by F.cross_entropy (its default ignore_index) and by
# every transformers model that computes a loss from ``labels``.
IGNORE_INDEX = -100

# Additive attention masks hold 0 where attention is allowed and a large negative number
# where it is blocked: torch.finfo(dtype).min (transformers 5), -1e4 (BERT's original code,
# fp16-safe), -1e9 or -inf. Every one of those is <= -1e4, and exp(-1e4) is 0 in every float
# format, so this one threshold reads all of them.
MASK_BLOCKED = -1e4

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

# Config fields that hold the number of positions, by model family:
# GPT-2 n_positions (n_ctx is its older alias), BERT/BART/RoBERTa max_position_embeddings,
# minGPT/nanoGPT block_size, T5-style relative models have none.
_CONTEXT_FIELDS = ("n_positions", "max_position_embeddings", "n_ctx", "block_size", "max_seq_len")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, Colab, VS Code), False elsewhere.

    A kernel always imports IPython first, so an interpreter without it loaded is not one;
    a terminal ``ipython`` shell has no ``kernel`` and counts as not a notebook.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # pragma: no cover - a half-imported IPython
        return False
    if shell is None:
        return False
    if getattr(shell, "kernel", None) is not None:
        return True
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


@contextmanager
def eval_mode(model) -> Iterator:
    """``with eval_mode(model): ...`` runs the block with ``model.eval()`` (dropout off).

    Afterwards (also when the block raises) the model's previous ``training`` flag is
    restored, so a helper called in the middle of training leaves it training.
    Yields the model.
    """
    if not hasattr(model, "train") or not hasattr(model, "training"):
        raise TypeError(
            f"eval_mode needs a torch.nn.Module (something with .train() and .training); "
            f"got {type(model).__name__}"
        )
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def env_flag(name: str, default: bool = False) -> bool:
    """An on/off environment variable: 1/true/yes/on -> True, 0/false/no/off/"" -> False.

    Case and surrounding spaces are ignored; an unset variable gives ``default``. Any other
    value raises ValueError naming the variable and the accepted values, rather than
    guessing what a typo meant.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"environment variable {name}={raw!r} is not an on/off value; "
        f"use one of {'/'.join(_TRUE)} to turn it on or {'/'.join(_FALSE[:-1])} to turn it "
        f"off (or unset it for the default, {'on' if default else 'off'})"
    )


_REQUIRED = object()


def context_length(model_or_config, default=_REQUIRED):
    """The number of positions a model can read: its config's ``n_positions`` (GPT-2),
    ``max_position_embeddings`` (BERT, BART), ``n_ctx`` or ``block_size`` (minGPT).

    Accepts a model with a ``.config``, a config, or a dict of config fields. When none of
    those fields is present (an LSTM has no position limit) it returns ``default`` if one
    is given, else raises ValueError.
    """
    config = getattr(model_or_config, "config", model_or_config)
    for name in _CONTEXT_FIELDS:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    if default is not _REQUIRED:
        return default
    raise ValueError(
        f"cannot tell the context length of {type(model_or_config).__name__}: its config has "
        f"none of {', '.join(_CONTEXT_FIELDS)}; pass the length explicitly "
        "(e.g. context=..., max_length=...)"
    )


def check_ids(ids, *, what: str = "ids", vocab_size: int | None = None):
    """Token ids as a long tensor, or a clear error: not a string, integers, >= 0, < vocab_size.

    ids: a tensor, a list of ints or a list of lists (any shape). The error names the
    offending value, the limit and what to do, instead of torch's
    ``IndexError: index out of range in self`` deep inside an embedding.
    """
    import numpy as np
    import torch

    if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (str, bytes)):
        ids = ids[0]  # a list of texts: report the first one
    if isinstance(ids, (str, bytes)):
        raise TypeError(
            f"{what} must be token ids (integers), not a string ({str(ids)[:30]!r}); "
            "encode the text first, e.g. tokenizer(text)['input_ids']"
        )
    if isinstance(ids, torch.Tensor):
        t = ids
    else:
        try:
            # numpy infers the element type of a long list twice as fast as torch does
            arr = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
            t = torch.as_tensor(arr) if arr.dtype.kind in "biuf" else torch.as_tensor(ids)
        except (ValueError, TypeError, RuntimeError) as err:
            raise TypeError(
                f"{what} must be token ids: a tensor or a list of integers (lists of equal "
                f"length for a batch); got {type(ids).__name__} ({str(err)[:80]}). Pad ragged "
                "lists with ssledu.conventions.pad_batch"
            ) from None
    if t.numel() == 0:
        return t.long()  # [] becomes a float tensor; an empty row is still valid ids
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(
            f"{what} must be integer token ids; got dtype {t.dtype}. "
            "Convert with .long() if the values are whole numbers"
        )
    lo, hi = int(t.min()), int(t.max())
    if lo < 0:
        raise ValueError(
            f"{what} must be >= 0 (token ids index the vocabulary); found {lo}. "
            "Labels use IGNORE_INDEX=-100, but inputs must be real ids"
        )
    if vocab_size is not None and hi >= vocab_size:
        raise ValueError(
            f"{what} hold id {hi}, outside the vocabulary of {vocab_size} ids "
            f"(0..{vocab_size - 1}); encode with the tokenizer the model was built for, "
            "or build the model with vocab_size=len(tokenizer)"
        )
    return t.long()


def pad_batch(sequences: Sequence, pad_id: int, *, length: int | None = None,
              side: str = "right") -> dict:
    """Pad variable-length id sequences into one batch.

    sequences: B lists (or 1-D tensors) of token ids. pad_id: the id to fill with
    (``[PAD]`` = 0 in ``ssledu.data.tokenize``). length: pad to exactly this length
    (default: the longest sequence); a longer sequence is an error, not silently cut.
    side: "right" (BERT, training) or "left" (GPT-style generation, so that every row
    ends with its last real token).
    Returns dict(input_ids=(B, L) long, attention_mask=(B, L) long, 1 = real token).
    """
    import numpy as np
    import torch

    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left'; got {side!r}")
    if isinstance(sequences, (str, bytes)):
        raise TypeError(
            "sequences must be a list of token-id lists, not a string; encode the texts first"
        )
    if isinstance(sequences, torch.Tensor):
        sequences = list(sequences) if sequences.dim() == 2 else [sequences]
    rows = []
    for i, seq in enumerate(sequences):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            check_ids(seq, what=f"sequences[{i}]")  # raises with what to do
            raise TypeError(f"sequences[{i}] must be a list of token ids; got {type(seq).__name__}")
        rows.append(seq.reshape(-1).tolist() if isinstance(seq, torch.Tensor) else list(seq))
    if not rows:
        raise ValueError("sequences is empty: pass at least one sequence of token ids")
    if not isinstance(pad_id, int) or isinstance(pad_id, bool) or pad_id < 0:
        raise ValueError(f"pad_id must be a non-negative integer id; got {pad_id!r}")
    lengths = [len(r) for r in rows]
    longest = max(lengths)
    if length is None:
        length = longest
    elif not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length must be a positive integer; got {length!r}")
    elif longest > length:
        raise ValueError(
            f"a sequence has {longest} tokens, more than length={length}; "
            "raise length or cut the sequences first"
        )
    if side == "right":
        filled = [r + [pad_id] * (length - len(r)) for r in rows]
    else:
        filled = [[pad_id] * (length - len(r)) + r for r in rows]
    # One conversion and one range check for the whole batch (a row at a time is 3x slower);
    # numpy infers the element type of nested lists faster than torch.
    arr = np.array(filled) if length else np.zeros((len(rows), 0), dtype=np.int64)
    if arr.dtype.kind not in "biuf":  # text, None or nested lists in a row
        for i, r in enumerate(rows):
            check_ids(r, what=f"sequences[{i}]")  # names the row that is not a flat list of ids
        raise TypeError(f"sequences must hold token ids; got elements of type {arr.dtype}")
    input_ids = torch.from_numpy(arr)
    if input_ids.dim() != 2:
        raise ValueError(f"each sequence must be a flat list of ids; got shape {tuple(input_ids.shape)}")
    input_ids = check_ids(input_ids, what="sequences")  # (B, L) long
    n = torch.tensor(lengths)[:, None]  # (B, 1)
    pos = torch.arange(length)[None]  # (1, L)
    real = pos < n if side == "right" else pos >= length - n  # (B, L)
    return {"input_ids": input_ids, "attention_mask": real.long()}


def mask_allows(additive_mask):
    """Boolean view of an attention mask, same shape: True where attention is allowed.

    additive_mask: float, 0 where allowed and <= ``MASK_BLOCKED`` (-1e4) where blocked
    (finfo.min, -1e9 and -inf all count as blocked); a boolean mask is returned as is.
    """
    import torch

    m = torch.as_tensor(additive_mask)
    if m.dtype == torch.bool:
        return m.clone()
    if not m.is_floating_point():
        raise TypeError(
            f"mask_allows reads additive float masks or boolean masks; got dtype {m.dtype}. "
            "For a 0/1 attention_mask use attention_mask.bool()"
        )
    return m > MASK_BLOCKED

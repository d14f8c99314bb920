"""Prefix LM (UniLM): one network, several attention masks.

A bidirectional encoder (BERT) becomes a left-to-right LM, a prefix LM or a
seq2seq model just by changing *who may attend to whom*. This module builds
those masks, the batches that go with them, generation from a prefix, the
perturbation test that proves a mask leaks nothing (``leak_test``), and the
scoring used to compare views of one network (``position_scores``,
``blank_each``, and ``blank_nlls``: toyworld's exact floor for filling a blank).

Masks are ADDITIVE float masks of shape (B, 1, L, L): 0 where query i may attend
to key j, ``torch.finfo(dtype).min`` where it may not. transformers 5 passes a
4D mask straight to the attention function; a *boolean* 4D mask is honoured by
sdpa but LEAKS under eager attention (True/False is added as 1/0 to the scores),
so we never hand a boolean mask to a model. ``allowed(mask)`` gives the boolean
view for plots.

Label convention (the crux). BertForMaskedLM does not shift its labels: the
logits at position i are scored against ``labels[i]``. A position may see
itself, so it must never be asked for its own token. We therefore shift in the
batch: ``labels[i] = input_ids[i + 1]``, i.e. the output at position i predicts
the NEXT token, which i cannot see under a causal or prefix mask (it sees
``j <= i`` and the prefix ``j < P``; token i + 1 is in neither when i >= P - 1).
For a prefix of length P the labelled positions are ``P-1 .. L_i-2`` and the
predicted tokens are exactly the completion ``input_ids[P : L_i]``.
Do not reuse these labels with GPT2LMHeadModel, which shifts again internally.

References: Dong et al. 2019 (UniLM); Raffel et al. 2020 (T5, prefix LM split
uniform in [1, L-1]); Yang et al. 2019 (XLNet, permutation LM).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ssledu.conventions import IGNORE_INDEX, check_ids, context_length, eval_mode, mask_allows, pad_batch
from ssledu.data.blocks import TaggedBatch

__all__ = [
    "MASK_KINDS",
    "bidirectional_mask",
    "causal_mask",
    "prefix_mask",
    "seq2seq_mask",
    "right_to_left_mask",
    "build_mask",
    "allowed",
    "leak_test",
    "prefix_lm_batch",
    "unilm_batch",
    "UniLMMixture",
    "prefix_generate",
    "position_scores",
    "blank_each",
    "blank_nlls",
    "permutation_lm_example",
    "blank_posterior",
    "fill_blanks",
    "score_views",
]

MASK_KINDS = ("bidirectional", "causal", "prefix", "seq2seq", "right_to_left")
# IGNORE_INDEX (-100, skipped by cross_entropy) lives in ssledu.conventions; re-exported here.


# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------

def _as_attention_mask(attention_mask) -> torch.Tensor:
    """(B, L) 0/1 tensor of any integer/bool dtype -> (B, L) bool."""
    am = torch.as_tensor(attention_mask)
    if am.dim() != 2:
        raise ValueError(
            f"attention_mask must have shape (B, L) with 1 = real token, 0 = padding; "
            f"got shape {tuple(am.shape)}. Add a batch dimension with .unsqueeze(0)."
        )
    if am.dtype != torch.bool:
        if not bool(((am == 0) | (am == 1)).all()):
            raise ValueError("attention_mask must contain only 0 (padding) and 1 (real token)")
        am = am.bool()
    return am


def _check_right_padded(am: torch.Tensor) -> None:
    # A prefix length is a position; with left padding it would count pad tokens.
    if am.size(1) > 1 and bool((am[:, 1:] & ~am[:, :-1]).any()):
        raise ValueError(
            "prefix masks assume right padding (real tokens first, then padding); "
            "got a row with a real token after padding. Tokenize with padding_side='right'."
        )


def _as_lengths(lengths, batch_size: int, name: str, device) -> torch.Tensor:
    """int, list or (B,) tensor -> (B,) long tensor."""
    t = torch.as_tensor(lengths, device=device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be integers; got dtype {t.dtype}")
    t = t.long()
    if t.dim() == 0:
        t = t.expand(batch_size)
    if t.shape != (batch_size,):
        raise ValueError(
            f"{name} must be an int or have one entry per example (shape ({batch_size},)); "
            f"got shape {tuple(t.shape)}"
        )
    return t


def _to_additive(allow: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L, L) bool -> (B, 1, L, L) additive float mask in ``dtype``."""
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype (the model's dtype); got {dtype}")
    mask = torch.zeros(allow.shape, dtype=dtype, device=allow.device)
    mask = mask.masked_fill(~allow, torch.finfo(dtype).min)
    return mask[:, None]  # (B, 1, L, L)


def _finish(structure: torch.Tensor, am: torch.Tensor, dtype) -> torch.Tensor:
    """AND a (B or 1, L, L) structural pattern with key padding; padded queries see only themselves.

    A padded query row would otherwise be fully blocked (or see only other pads),
    and a fully blocked row is NaN in sdpa. Letting it attend to itself keeps every
    row finite and keeps padding from ever influencing a real token.
    """
    B, L = am.shape
    allow = structure & am[:, None, :]  # (B, L, L) key padding
    eye = torch.eye(L, dtype=torch.bool, device=am.device)[None]  # (1, L, L)
    pad_query = ~am[:, :, None]  # (B, L, 1)
    allow = torch.where(pad_query, eye, allow)  # (B, L, L)
    return _to_additive(allow, dtype)


# --------------------------------------------------------------------------
# mask builders
# --------------------------------------------------------------------------

def bidirectional_mask(attention_mask, *, dtype=torch.float32) -> torch.Tensor:
    """BERT's mask: every real token attends to every real token.

    attention_mask: (B, L), 1 = real token. Returns an additive (B, 1, L, L) mask
    in ``dtype`` (0 allowed, finfo.min blocked). Padded query rows attend only to
    themselves (so no row is empty and padding never reaches a real token).
    """
    am = _as_attention_mask(attention_mask)
    L = am.size(1)
    full = torch.ones(1, L, L, dtype=torch.bool, device=am.device)
    return _finish(full, am, dtype)


def causal_mask(attention_mask, *, dtype=torch.float32) -> torch.Tensor:
    """GPT's left-to-right mask: query i attends key j iff j <= i (and j is real).

    attention_mask: (B, L). Returns an additive (B, 1, L, L) mask; padded query
    rows attend only to themselves.
    """
    am = _as_attention_mask(attention_mask)
    L = am.size(1)
    tril = torch.ones(L, L, dtype=torch.bool, device=am.device).tril()[None]  # (1, L, L)
    return _finish(tril, am, dtype)


def right_to_left_mask(attention_mask, *, dtype=torch.float32) -> torch.Tensor:
    """UniLM's right-to-left mask: query i attends key j iff j >= i (and j is real).

    attention_mask: (B, L). Returns an additive (B, 1, L, L) mask; padded query
    rows attend only to themselves.
    """
    am = _as_attention_mask(attention_mask)
    L = am.size(1)
    triu = torch.ones(L, L, dtype=torch.bool, device=am.device).triu()[None]  # (1, L, L)
    return _finish(triu, am, dtype)


def prefix_mask(attention_mask, prefix_lengths, *, dtype=torch.float32) -> torch.Tensor:
    """Prefix-LM mask (UniLM, T5 prefix_lm): query i attends j iff j < P or j <= i.

    attention_mask: (B, L), right-padded. prefix_lengths: int or (B,) with
    0 <= P <= L_b (the example's real length); P = 0 gives the causal mask and
    P = L_b the bidirectional one. Returns an additive (B, 1, L, L) mask; padded
    query rows attend only to themselves.
    """
    am = _as_attention_mask(attention_mask)
    _check_right_padded(am)
    B, L = am.shape
    P = _as_lengths(prefix_lengths, B, "prefix_lengths", am.device)
    real = am.sum(1)
    bad = (P < 0) | (P > real)
    if bool(bad.any()):
        b = int(bad.nonzero()[0])
        raise ValueError(
            f"prefix_lengths must be in [0, real length] for each example; example {b} has "
            f"prefix length {int(P[b])} but only {int(real[b])} real tokens"
        )
    i = torch.arange(L, device=am.device)
    causal = i[None, :, None] >= i[None, None, :]  # (1, L, L): j <= i
    in_prefix = i[None, None, :] < P[:, None, None]  # (B, 1, L): j < P
    return _finish(causal | in_prefix, am, dtype)


def seq2seq_mask(attention_mask, source_lengths, *, dtype=torch.float32) -> torch.Tensor:
    """UniLM's seq2seq mask over [source ; target]: source attends all source, target
    attends source plus earlier (and current) target tokens.

    For one concatenated pair this is exactly ``prefix_mask`` with P = source length:
    a source token i < P sees j < P and nothing of the target. attention_mask: (B, L);
    source_lengths: int or (B,). Returns an additive (B, 1, L, L) mask.
    """
    return prefix_mask(attention_mask, source_lengths, dtype=dtype)


def build_mask(kind: str, attention_mask, *, dtype=torch.float32, **kwargs) -> torch.Tensor:
    """Dispatch by name: ``kind`` in MASK_KINDS. "prefix" takes ``prefix_lengths=``,
    "seq2seq" takes ``source_lengths=`` (or ``prefix_lengths=``). Returns (B, 1, L, L)."""
    if kind in ("bidirectional", "causal", "right_to_left"):
        if kwargs:
            raise ValueError(f"mask kind {kind!r} takes no extra arguments; got {sorted(kwargs)}")
        fn = {"bidirectional": bidirectional_mask, "causal": causal_mask,
              "right_to_left": right_to_left_mask}[kind]
        return fn(attention_mask, dtype=dtype)
    if kind in ("prefix", "seq2seq"):
        lengths = kwargs.pop("prefix_lengths", None)
        lengths = kwargs.pop("source_lengths", lengths)
        if kwargs:
            raise ValueError(f"unexpected arguments for mask kind {kind!r}: {sorted(kwargs)}")
        if lengths is None:
            raise ValueError(f"mask kind {kind!r} needs prefix_lengths= (or source_lengths=)")
        return prefix_mask(attention_mask, lengths, dtype=dtype)
    raise ValueError(f"unknown mask kind {kind!r}; available: {', '.join(MASK_KINDS)}")


def allowed(mask: torch.Tensor) -> torch.Tensor:
    """Boolean view of a mask for plots: (B, 1, L, L) or (B, L, L) -> (B, L, L), True = may attend.

    Accepts additive float masks (0 = allowed; finfo.min, -1e4, -1e9 or -inf = blocked,
    read by ``ssledu.conventions.mask_allows``) or a boolean mask.
    """
    m = torch.as_tensor(mask)
    if m.dim() == 4:
        if m.size(1) != 1:
            raise ValueError(f"expected a (B, 1, L, L) mask; got shape {tuple(m.shape)}")
        m = m[:, 0]
    if m.dim() != 3 or m.size(-1) != m.size(-2):
        raise ValueError(f"expected a (B, 1, L, L) or (B, L, L) mask; got shape {tuple(m.shape)}")
    return mask_allows(m)  # (B, L, L)


@torch.no_grad()
def leak_test(model, input_ids, attention_mask, *, expected=None) -> dict:
    """Perturbation test of a mask: replace each token j in turn and see which positions move.

    model: any transformers encoder or LM that accepts ``output_hidden_states=True``
    (BertModel, BertForMaskedLM, GPT2LMHeadModel, ...). input_ids: (L,) or (1, L);
    attention_mask: the (1, 1, L, L) mask the model is given, e.g. from this module (or a
    boolean one, to see the eager trap). expected: the visibility you intend, as a mask of
    the same shape (default: ``attention_mask`` itself, which tests its enforcement; pass
    the right mask to test a hand-made one). The L variants run in ONE batch, in eval mode
    (restored afterwards). Returns dict: change (L, L) float, ``change[i, j]`` = max |change
    of the last hidden state of query i| when token j is replaced; allowed (L, L) bool, the
    expected visibility; leaks: the (i, j) pairs that changed although blocked; deaf:
    allowed pairs that did not change at all; ok: no leak and no deaf pair.
    """
    ids = torch.as_tensor(input_ids).long().reshape(1, -1)  # (1, L)
    L = ids.size(1)
    mask = torch.as_tensor(attention_mask)
    if mask.shape != (1, 1, L, L):
        raise ValueError(
            f"attention_mask must be one example's (1, 1, L, L) mask with L = {L}; got shape "
            f"{tuple(mask.shape)}. Build it with prefix.build_mask(kind, torch.ones(1, L), ...)"
        )
    from ssledu.data.tokenize import SPECIAL_TOKENS

    vocab = int(model.config.vocab_size)
    ids = check_ids(ids, what="input_ids", vocab_size=vocab)
    # replace with ordinary words, past the special tokens, when there are some
    first = len(SPECIAL_TOKENS) if vocab > len(SPECIAL_TOKENS) + 1 else 0
    batch = ids.repeat(L + 1, 1)  # row 0 unchanged, row 1 + j with token j replaced
    j = torch.arange(L)
    batch[1 + j, j] = first + (ids[0] - first + 1) % (vocab - first)
    device = next(model.parameters()).device
    with eval_mode(model):
        out = model(input_ids=batch.to(device), attention_mask=mask.expand(L + 1, 1, L, L).to(device),
                    output_hidden_states=True)
    h = out.hidden_states[-1].float().cpu()  # (L + 1, L, d)
    change = (h[1:] - h[:1]).abs().amax(-1).T  # (L query i, L replaced key j)
    if expected is not None and torch.as_tensor(expected).shape != (1, 1, L, L):
        raise ValueError(f"expected must have shape (1, 1, {L}, {L}) like attention_mask; "
                         f"got {tuple(torch.as_tensor(expected).shape)}")
    ok = allowed(torch.as_tensor(mask if expected is None else expected).cpu())[0]  # (L, L)
    moved = change > 0
    leaks = [tuple(x) for x in (moved & ~ok).nonzero().tolist()]
    deaf = [tuple(x) for x in (~moved & ok).nonzero().tolist()]
    return {"change": change, "allowed": ok, "leaks": leaks, "deaf": deaf, "ok": not leaks and not deaf}


# --------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------

def _prepare(input_ids, attention_mask):
    ids = check_ids(input_ids, what="input_ids")  # strings, floats and negative ids end here
    if ids.dim() != 2:
        raise ValueError(
            f"input_ids must be an integer tensor of shape (B, L); got shape {tuple(ids.shape)} "
            f"and dtype {ids.dtype}"
        )
    ids = ids.long()
    if attention_mask is None:
        am = torch.ones_like(ids, dtype=torch.bool)
    else:
        am = _as_attention_mask(attention_mask).to(ids.device)
        if am.shape != ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(am.shape)} does not match input_ids shape "
                f"{tuple(ids.shape)}"
            )
    _check_right_padded(am)  # labels are placed by position: real tokens must come first
    return ids, am


def _next_token_labels(ids: torch.Tensor, am: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """labels[b, i] = ids[b, i+1] for first[b] <= i <= L_b - 2, else -100 (right padding)."""
    B, L = ids.shape
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, :-1] = ids[:, 1:]  # (B, L): position i predicts token i + 1
    i = torch.arange(L, device=ids.device)[None]  # (1, L)
    real = am.sum(1, keepdim=True)  # (B, 1)
    keep = (i >= first[:, None]) & (i <= real - 2)
    return labels.masked_fill(~keep, IGNORE_INDEX)


def _previous_token_labels(ids: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
    """labels[b, i] = ids[b, i-1] for 1 <= i <= L_b - 1: right-to-left LM targets."""
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, 1:] = ids[:, :-1]  # (B, L): position i predicts token i - 1
    keep = am.clone()
    keep[:, 0] = False
    return labels.masked_fill(~keep, IGNORE_INDEX)


def prefix_lm_batch(
    input_ids,
    attention_mask=None,
    *,
    prefix_lengths=None,
    separator_id: int | None = None,
    generator: torch.Generator | None = None,
    dtype=torch.float32,
) -> dict:
    """Prefix-LM batch for a non-shifting model (BertForMaskedLM).

    input_ids: (B, L) right-padded; attention_mask: (B, L) or None (no padding).
    Split point P per example: ``prefix_lengths`` if given; else right after the
    first ``separator_id`` (the separator belongs to the prefix); else uniform in
    [1, L_b - 1] drawn with ``generator`` (T5's prefix_lm). Returns dict:
    input_ids (B, L), attention_mask (B, 1, L, L) additive in ``dtype``,
    labels (B, L) with ``labels[i] = input_ids[i+1]`` for P-1 <= i <= L_b-2 and -100
    elsewhere (prefix and padding), prefix_lengths (B,).
    """
    ids, am = _prepare(input_ids, attention_mask)
    B, L = ids.shape
    real = am.sum(1)  # (B,)
    if bool((real < 2).any()):
        b = int((real < 2).nonzero()[0])
        raise ValueError(
            f"a prefix-LM example needs at least 2 real tokens (one prefix, one completion); "
            f"example {b} has {int(real[b])}"
        )
    if prefix_lengths is not None and separator_id is not None:
        raise ValueError("give prefix_lengths or separator_id, not both")
    if prefix_lengths is not None:
        P = _as_lengths(prefix_lengths, B, "prefix_lengths", ids.device)
    elif separator_id is not None:
        is_sep = (ids == separator_id) & am  # (B, L)
        if not bool(is_sep.any(1).all()):
            b = int((~is_sep.any(1)).nonzero()[0])
            raise ValueError(f"example {b} has no separator token (id {separator_id}) to split at")
        P = is_sep.long().argmax(1) + 1  # first separator, included in the prefix
    else:
        u = torch.rand(B, generator=generator, device="cpu").to(ids.device)
        P = 1 + (u * (real - 1)).long().clamp(max=real - 2)  # uniform in [1, L_b - 1]
    bad = (P < 1) | (P > real - 1)
    if bool(bad.any()):
        b = int(bad.nonzero()[0])
        raise ValueError(
            f"prefix length must be in [1, real length - 1] so that prefix and completion are "
            f"both non-empty; example {b} has prefix length {int(P[b])} and {int(real[b])} real "
            f"tokens" + (" (is the separator its last token?)" if separator_id is not None else "")
        )
    return {
        "input_ids": ids,
        "attention_mask": prefix_mask(am, P, dtype=dtype),
        "labels": _next_token_labels(ids, am, P - 1),
        "prefix_lengths": P,
    }


def unilm_batch(
    kind: str,
    input_ids,
    attention_mask=None,
    *,
    tokenizer=None,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    separator_id: int | None = None,
    generator: torch.Generator | None = None,
    dtype=torch.float32,
) -> dict:
    """One UniLM batch of the given mask ``kind`` for a shared BERT-style network.

    "bidirectional": BERT masking via ``ssledu.objectives.mlm.mask_tokens`` (needs
    ``tokenizer``; 80/10/10 by default, ``mask_replace_prob=1.0, random_replace_prob=0.0``
    turns every selected token into [MASK]), labels at the selected positions. "causal" / "prefix" / "seq2seq":
    next-token labels as in ``prefix_lm_batch`` (causal = every position, prefix =
    random split, seq2seq = split after ``separator_id``). "right_to_left": position i
    predicts token i - 1. Returns dict(input_ids, attention_mask (B, 1, L, L), labels).
    """
    ids, am = _prepare(input_ids, attention_mask)
    if kind == "bidirectional":
        if tokenizer is None:
            raise ValueError("the 'bidirectional' kind masks tokens BERT-style; pass tokenizer=...")
        from ssledu.objectives.mlm import mask_tokens

        # ensure_one: a batch with no selected token would give a NaN loss
        out = mask_tokens(ids, tokenizer, mlm_probability=mlm_probability, mask_replace_prob=mask_replace_prob,
                          random_replace_prob=random_replace_prob, generator=generator, ensure_one=True)
        labels = out["labels"].masked_fill(~am, IGNORE_INDEX)
        return {"input_ids": out["input_ids"], "attention_mask": bidirectional_mask(am, dtype=dtype),
                "labels": labels}
    if kind == "causal":
        first = torch.zeros(ids.size(0), dtype=torch.long, device=ids.device)
        return {"input_ids": ids, "attention_mask": causal_mask(am, dtype=dtype),
                "labels": _next_token_labels(ids, am, first)}
    if kind == "right_to_left":
        return {"input_ids": ids, "attention_mask": right_to_left_mask(am, dtype=dtype),
                "labels": _previous_token_labels(ids, am)}
    if kind in ("prefix", "seq2seq"):
        if kind == "seq2seq" and separator_id is None:
            raise ValueError("the 'seq2seq' kind splits source from target at separator_id; pass it")
        sep = separator_id if kind == "seq2seq" else None
        out = prefix_lm_batch(ids, am, separator_id=sep, generator=generator, dtype=dtype)
        out.pop("prefix_lengths")
        return out
    raise ValueError(f"unknown mask kind {kind!r}; available: {', '.join(MASK_KINDS)}")


class UniLMMixture:
    """Collator that draws the mask kind PER BATCH for one shared network (UniLM).

    kinds: names from MASK_KINDS; weights: sampling probabilities (default uniform;
    UniLM used 1/3 bidirectional, 1/3 seq2seq, 1/6 left-to-right, 1/6 right-to-left).
    Call it on a list of examples (lists/1-D tensors of ids, or dicts with
    "input_ids" and optional "attention_mask") or on a (B, L) tensor; it right-pads
    with ``pad_id`` (default ``tokenizer.pad_token_id``, else 0) and returns
    dict(input_ids, attention_mask (B, 1, L, L), labels). Each batch carries its kind
    with it: ``batch.tags["mask_kind"]`` (a ``TaggedBatch``; the tag is not a key, so
    ``model(**batch)`` never sees it), and ``fit`` records it in each step's history
    record, so ``history.to_frame()`` has a ``mask_kind`` column (with ``log_every=1``
    and ``grad_accum=1``, one kind per step). ``self.drawn`` still lists every kind drawn
    so far, but it only lines up with the steps of ONE uninterrupted run.
    ``state_dict`` / ``load_state_dict`` save and restore both generators (``fit`` resumes
    with them); ``fork(seed)`` is a copy with its own generators (``evaluate`` uses it).
    """

    def __init__(self, kinds=("bidirectional", "causal", "prefix"), weights=None, *, seed: int = 0,
                 tokenizer=None, mlm_probability: float = 0.15, mask_replace_prob: float = 0.8,
                 random_replace_prob: float = 0.1, separator_id: int | None = None,
                 pad_id: int | None = None, dtype=torch.float32):
        kinds = tuple(kinds)
        if not kinds:
            raise ValueError("kinds must name at least one mask kind")
        for k in kinds:
            if k not in MASK_KINDS:
                raise ValueError(f"unknown mask kind {k!r}; available: {', '.join(MASK_KINDS)}")
        if "bidirectional" in kinds and tokenizer is None:
            raise ValueError("the 'bidirectional' kind masks tokens BERT-style; pass tokenizer=...")
        if "seq2seq" in kinds and separator_id is None:
            raise ValueError("the 'seq2seq' kind splits source from target at separator_id; pass it")
        w = torch.ones(len(kinds)) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (len(kinds),) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(
                f"weights must be {len(kinds)} non-negative numbers, one per kind, not all zero; got {weights}"
            )
        self.kinds, self.weights = kinds, (w / w.sum()).tolist()
        self.tokenizer, self.mlm_probability, self.separator_id = tokenizer, mlm_probability, separator_id
        self.mask_replace_prob, self.random_replace_prob = mask_replace_prob, random_replace_prob
        if pad_id is None:
            pad_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = 0 if pad_id is None else int(pad_id)
        self.dtype = dtype
        self.seed = seed
        self._seed_generators(seed)
        self.drawn: list[str] = []

    def _seed_generators(self, seed: int) -> None:
        # separate streams: the sequence of kinds does not depend on the data
        self._kind_gen = torch.Generator().manual_seed(seed)
        self._data_gen = torch.Generator().manual_seed(seed + 1)

    def state_dict(self) -> dict:
        """Both generators' states and the kinds drawn, so a resumed run draws as the original."""
        return {"kind_generator": self._kind_gen.get_state(),
                "data_generator": self._data_gen.get_state(), "drawn": list(self.drawn)}

    def load_state_dict(self, state) -> None:
        """Restore the state saved by ``state_dict``."""
        self._kind_gen.set_state(state["kind_generator"])
        self._data_gen.set_state(state["data_generator"])
        self.drawn = list(state.get("drawn", []))

    def fork(self, seed: int = 0) -> "UniLMMixture":
        """A copy with its own generators seeded by ``seed`` and an empty ``drawn``;
        ``self`` is untouched (``evaluate`` scores on the same kinds and masks each call)."""
        twin = copy.copy(self)
        twin._seed_generators(seed)
        twin.drawn = []
        return twin

    def sample_kind(self) -> str:
        """Draw one mask kind with probabilities ``self.weights`` and record it."""
        idx = int(torch.multinomial(torch.tensor(self.weights), 1, generator=self._kind_gen))
        self.drawn.append(self.kinds[idx])
        return self.kinds[idx]

    def _collate(self, examples):
        vocab = len(self.tokenizer) if self.tokenizer is not None else None
        if isinstance(examples, torch.Tensor):
            return check_ids(examples, what="examples", vocab_size=vocab), None
        if isinstance(examples, (str, bytes)):
            check_ids(examples, what="examples")  # raises: encode the texts first
        examples = list(examples)
        if not examples:
            raise ValueError(
                "UniLMMixture got an empty list of examples; pass at least one sequence of "
                "token ids (a DataLoader with drop_last=True never sends an empty batch)"
            )
        rows, masks = [], []
        for i, ex in enumerate(examples):
            if isinstance(ex, dict):
                if "input_ids" not in ex:
                    raise ValueError(f"example dicts need an 'input_ids' key; got keys {sorted(ex)}")
                rows.append(check_ids(ex["input_ids"], what=f"examples[{i}]['input_ids']",
                                      vocab_size=vocab).reshape(-1))
                masks.append(torch.as_tensor(ex["attention_mask"]).bool() if "attention_mask" in ex
                             else None)
            else:
                rows.append(check_ids(ex, what=f"examples[{i}]", vocab_size=vocab).reshape(-1))
                masks.append(None)
        padded = pad_batch(rows, self.pad_id)
        ids, am = padded["input_ids"], padded["attention_mask"].bool()  # (B, L)
        for b, m in enumerate(masks):
            if m is not None:  # the example's own padding
                am[b, : len(m)] = m.reshape(-1)
        return ids, am

    def __call__(self, examples) -> dict:
        ids, am = self._collate(examples)
        kind = self.sample_kind()
        batch = unilm_batch(kind, ids, am, tokenizer=self.tokenizer, mlm_probability=self.mlm_probability,
                            mask_replace_prob=self.mask_replace_prob,
                            random_replace_prob=self.random_replace_prob,
                            separator_id=self.separator_id, generator=self._data_gen, dtype=self.dtype)
        return TaggedBatch(batch, tags={"mask_kind": kind})


# --------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------

@torch.no_grad()
def prefix_generate(
    model,
    prompt_ids,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Continue ``prompt_ids`` with a prefix-LM model: bidirectional over the prompt,
    causal over what it writes.

    prompt_ids: (P,) or (B, P) ids (same length per row). Each step re-runs the full
    forward with ``prefix_mask(P)`` (no KV cache; fine for tiny models) and samples
    from the logits at the last position, which predict the next token (see the label
    convention at the top). Sampling is ``ssledu.objectives.clm.sample_next``:
    temperature, then top_k (0 = off), then top_p (1.0 = off); ``greedy`` takes the
    argmax. Rows that emit ``eos_id`` are filled with ``eos_id`` afterwards and
    generation stops once every row has (the loop is ``clm.sampling_loop``, shared with
    ``clm.generate``). Returns prompt + new ids, (P + n,) or (B, P + n).
    """
    from ssledu.objectives.clm import sampling_loop

    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    ids = check_ids(prompt_ids, what="prompt_ids", vocab_size=vocab if isinstance(vocab, int) else None)
    squeeze = ids.dim() == 1
    if squeeze:
        ids = ids[None]
    if ids.dim() != 2 or ids.size(1) < 1:
        raise ValueError(f"prompt_ids must have shape (P,) or (B, P) with P >= 1; got {tuple(ids.shape)}")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0; got {max_new_tokens!r}")
    limit = context_length(model, default=None)
    if limit is not None and ids.size(1) + max_new_tokens > limit:
        raise ValueError(
            f"prompt ({ids.size(1)}) + max_new_tokens ({max_new_tokens}) exceeds the model's "
            f"context of {limit} positions; shorten the prompt or generate fewer tokens"
        )
    param = next(model.parameters())
    ids = ids.to(param.device)
    dtype = param.dtype if param.dtype.is_floating_point else torch.float32
    P = ids.shape[1]

    def next_logits(ids):  # no KV cache: the full forward under the prefix mask
        mask = prefix_mask(torch.ones_like(ids), P, dtype=dtype)  # (B, 1, L, L)
        return model(input_ids=ids, attention_mask=mask).logits[:, -1]  # (B, V)

    with eval_mode(model):
        ids = sampling_loop(next_logits, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, greedy=greedy, eos_id=eos_id, generator=generator)
    return ids[0] if squeeze else ids


# --------------------------------------------------------------------------
# scoring: next-token and MLM-style, with toyworld's exact floors
# --------------------------------------------------------------------------

@torch.no_grad()
def position_scores(model, batch: dict) -> dict:
    """Per-position loss and accuracy of a non-shifting model (BertForMaskedLM) on a batch.

    batch: dict with input_ids (B, L), attention_mask ((B, 1, L, L) additive or (B, L)) and
    labels (B, L), -100 = not scored: the output of ``prefix_lm_batch``, ``unilm_batch`` or
    ``blank_each``. The logits at position i are scored against ``labels[i]`` (no shift).
    Runs in eval mode (restored afterwards). Returns dict of (B, L) tensors on the CPU:
    nll (nats, NaN where not scored), correct (argmax == label), scored (bool).
    """
    missing = [k for k in ("input_ids", "attention_mask", "labels") if k not in batch]
    if missing:
        raise ValueError(
            f"batch lacks {missing}; pass the dict from prefix_lm_batch, unilm_batch or "
            "blank_each (with an attention_mask) as it is"
        )
    labels = torch.as_tensor(batch["labels"])
    if labels.dim() != 2:
        raise ValueError(f"labels must have shape (B, L); got {tuple(labels.shape)}")
    param = next(model.parameters())
    inputs = {k: torch.as_tensor(batch[k]).to(param.device) for k in ("input_ids", "attention_mask")
              if k in batch}
    if inputs["attention_mask"].is_floating_point() and param.dtype.is_floating_point:
        inputs["attention_mask"] = inputs["attention_mask"].to(param.dtype)
    with eval_mode(model):
        logits = model(**inputs).logits.float().cpu()  # (B, L, V)
    scored = labels != IGNORE_INDEX  # (B, L)
    safe = labels.clamp(min=0)
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, safe[..., None]).squeeze(-1)  # (B, L)
    nll = nll.masked_fill(~scored, float("nan"))
    correct = (logits.argmax(-1) == labels) & scored
    return {"nll": nll, "correct": correct, "scored": scored}


def blank_each(input_ids, positions, mask_token_id: int) -> dict:
    """MLM-style scoring of one sequence: one copy per position, with that token -> [MASK].

    input_ids: (L,); positions: the indices to blank out, one row each. Returns dict
    input_ids (n, L) and labels (n, L) (the original token at the blank, -100 elsewhere).
    Pair it with a bidirectional mask to score every word with the whole sequence in
    view (the pseudo-log-likelihood of Salazar et al. 2020), or with a prefix mask to
    score blanks inside a prompt with the prompt alone in view.
    """
    ids = check_ids(input_ids, what="input_ids")
    if ids.dim() != 1:
        raise ValueError(f"input_ids must be one sequence of shape (L,); got {tuple(ids.shape)}")
    if not isinstance(mask_token_id, int) or isinstance(mask_token_id, bool) or mask_token_id < 0:
        raise ValueError(f"mask_token_id must be a token id (tokenizer.mask_token_id, 4 in the "
                         f"course's tokenizers); got {mask_token_id!r}")
    pos = check_ids(positions, what="positions").reshape(-1)
    if bool(((pos < 0) | (pos >= ids.numel())).any()):
        raise ValueError(f"positions must lie in [0, {ids.numel() - 1}]; got {pos.tolist()}")
    rows = torch.arange(pos.numel())
    out = ids.repeat(pos.numel(), 1)  # (n, L)
    labels = torch.full_like(out, IGNORE_INDEX)
    labels[rows, pos] = ids[pos]
    out[rows, pos] = mask_token_id
    return {"input_ids": out, "labels": labels}


def _story_logprob(words, world, complete: bool) -> float:
    """log p of ``words`` as a whole story (with its end) or as the start of one; -inf if impossible."""
    from ssledu.data import toyworld

    if complete:
        try:
            return -float(sum(toyworld.word_nlls(words, world)))
        except ValueError:
            return -math.inf
    lp = 0.0
    for t, w in enumerate(words):  # O(n^2), fine for prompts of a few dozen words
        p = toyworld.next_word_distribution(words[:t], world).get(w, 0.0)
        if p == 0.0:
            return -math.inf
        lp += math.log(p)
    return lp


def blank_nlls(text, world=None, *, visible: int | None = None) -> list[float]:
    """Exact floor of MLM-style scoring on toyworld: -log p(word i | the other visible words).

    text: a toyworld story, or the start of one (string or list of words). visible: how
    many words the model sees, a prefix view in which the story's end is unknown; None =
    the whole story, end included (``text`` must then be complete).
    For each word i < visible, p(w_i = c | rest) is p(text with c at i) normalised over
    every word c the process allows there: one blank hides one word and keeps the length,
    as one [MASK] per word does with a word-level tokenizer. Returns ``visible`` floats (nats).
    """
    from ssledu.data import toyworld

    words = text.split() if isinstance(text, str) else list(text)
    n = len(words)
    complete = visible is None  # the whole story, its end included
    if complete:
        visible = n
    elif not 0 <= visible <= n:
        raise ValueError(f"visible must be in [0, {n}] (the number of words); got {visible}")
    seen = words[:visible]
    if _story_logprob(words if complete else seen, world, complete) == -math.inf:
        raise ValueError(f"toyworld cannot produce this text: {' '.join(seen)!r}")
    out = []
    for i in range(visible):
        options = toyworld.next_word_distribution(seen[:i], world)
        logps = {}
        for c in options:
            if c == toyworld.EOS:
                continue
            alt = list(words if complete else seen)
            alt[i] = c
            lp = _story_logprob(alt, world, complete)
            if lp > -math.inf:
                logps[c] = lp
        top = max(logps.values())
        log_z = top + math.log(sum(math.exp(v - top) for v in logps.values()))
        out.append(log_z - logps[words[i]])
    return out


# --------------------------------------------------------------------------
# permutation LM (XLNet) sidebar
# --------------------------------------------------------------------------

def permutation_lm_example(input_ids, tokenizer, plm_probability: float = 1 / 6,
                           max_span_length: int = 5, seed: int = 0) -> dict:
    """XLNet's permutation-LM inputs for ONE example, as numpy arrays to plot.

    Reproduces ``transformers.DataCollatorForPermutationLanguageModeling`` (defaults
    plm_probability 1/6, max_span_length 5) on ``[input_ids]`` after
    ``torch.manual_seed(seed)``, using a private generator instead of the global one.
    input_ids: (L,) with L even. Returns input_ids (L,) (targets -> [MASK]),
    labels (L,) (-100 except targets), perm_mask (L, L) (1 = query i may NOT see j),
    target_mapping (L, L), plus ``targets`` (L,) bool and ``order`` (L,) the factorisation
    rank of each position (-1 = ordinary context, visible to all).
    """
    ids = torch.as_tensor(input_ids).long()
    if ids.dim() != 1:
        raise ValueError(f"input_ids must be one example of shape (L,); got {tuple(ids.shape)}")
    L = ids.numel()
    if L == 0 or L % 2 != 0:
        raise ValueError(
            f"permutation LM needs an even, non-zero length (XLNet reuses half the sequence); "
            f"got length {L}: drop or add one token"
        )
    if tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer needs a mask token for permutation LM")
    if not 0 < plm_probability <= 1 or max_span_length < 1:
        raise ValueError("plm_probability must be in (0, 1] and max_span_length >= 1")
    g = torch.Generator().manual_seed(seed)
    # 1. choose target spans: span of 1..max_span_length inside a context of span / plm_probability
    targets = torch.zeros(L, dtype=torch.bool)
    cur = 0
    while cur < L:
        span = int(torch.randint(1, max_span_length + 1, (1,), generator=g))
        context = int(span / plm_probability)
        start = cur + int(torch.randint(context - span + 1, (1,), generator=g))
        targets[start : start + span] = True
        cur += context
    special = torch.tensor(tokenizer.get_special_tokens_mask(ids.tolist(), already_has_special_tokens=True),
                           dtype=torch.bool)
    pad = ids.eq(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else torch.zeros_like(special)
    targets &= ~(special | pad)
    ordinary = ~(special | pad)
    labels = ids.masked_fill(~targets, IGNORE_INDEX)
    inputs = ids.masked_fill(targets, tokenizer.mask_token_id)
    # 2. factorisation order: permute the L/2 columns of a (2, L/2) layout, so the two halves never cross
    order = torch.arange(L).reshape(-1, L // 2).transpose(0, 1)  # (L/2, 2)
    order = order[torch.randperm(L // 2, generator=g)]
    order = torch.flatten(order.transpose(0, 1))  # (L,)
    order = order.masked_fill(~targets & ordinary, -1)
    # i cannot see j when j is a target whose rank is not below i's (ordinary tokens have rank -1)
    perm_mask = (order[:, None] <= order[None, :]) & targets[None, :]  # (L, L)
    return {
        "input_ids": inputs.numpy(),
        "labels": labels.numpy(),
        "perm_mask": perm_mask.float().numpy(),
        "target_mapping": np.eye(L, dtype=np.float32),
        "targets": targets.numpy(),
        "order": order.numpy(),
    }


# --------------------------------------------------------------------------
# chapter 04 helpers: the exact posterior of one blank, and one story scored four ways
# --------------------------------------------------------------------------

def blank_posterior(text, position: int, world=None, *, visible: int | None = None) -> dict[str, float]:
    """Exact toyworld posterior of ONE blank: p(word at ``position`` = c | the other visible words).

    text: a toyworld story or the start of one (string or list of words); the word at
    ``position`` is ignored, so it may be a placeholder such as ``_`` or ``[MASK]``.
    visible: how many words are seen (a prompt: the story goes on unseen); None = the whole
    story, its end included. By Bayes' rule p(c | rest) is p(text with c at position),
    normalised over the words c the process allows there (the floor behind ``blank_nlls``).
    Returns {word: probability}, most probable first, words of probability 0 left out.
    """
    from ssledu.data import toyworld

    words = text.split() if isinstance(text, str) else list(text)
    n = len(words)
    complete = visible is None
    if complete:
        visible = n
    elif not 0 <= visible <= n:
        raise ValueError(f"visible must be in [0, {n}] (the number of words); got {visible}")
    if not 0 <= position < visible:
        raise ValueError(f"position must point at a visible word, in [0, {visible - 1}]; got {position}")
    seen = words if complete else words[:visible]
    logps = {}
    for c in toyworld.next_word_distribution(seen[:position], world):
        if c == toyworld.EOS:
            continue
        alt = list(seen)
        alt[position] = c
        lp = _story_logprob(alt, world, complete)
        if lp > -math.inf:
            logps[c] = lp
    if not logps:
        shown = " ".join(seen[:position] + ["_"] + seen[position + 1:])
        raise ValueError(f"no word makes this a text toyworld can produce: {shown!r}")
    top = max(logps.values())
    weights = {c: math.exp(v - top) for c, v in logps.items()}
    z = sum(weights.values())
    return dict(sorted(((c, w / z) for c, w in weights.items()), key=lambda kv: -kv[1]))


@torch.no_grad()
def fill_blanks(model, input_ids, mask_token_id: int):
    """Fill every ``mask_token_id`` of one prompt with the model's top word, reading the prompt both ways.

    input_ids: (L,) ids of a prompt (with its [BOS]); the whole prompt is the prefix, so every
    blank sees every other prompt token (the view a prefix LM has of its prompt). Returns
    (filled (L,) ids with each blank replaced by its argmax, probs (n_blanks, V) the model's
    distribution at each blank, in order of position). No blank: (the ids, a (0, V) tensor).
    """
    ids = torch.as_tensor(input_ids).long()
    if ids.dim() != 1:
        raise ValueError(f"input_ids must be one prompt of shape (L,); got {tuple(ids.shape)}")
    blanks = (ids == mask_token_id).nonzero().flatten()  # (n,)
    param = next(model.parameters())
    dtype = param.dtype if param.dtype.is_floating_point else torch.float32
    mask = prefix_mask(torch.ones(1, ids.numel()), ids.numel(), dtype=dtype)  # the prompt, both ways
    with eval_mode(model):
        logits = model(input_ids=ids[None].to(param.device), attention_mask=mask.to(param.device)).logits
    probs = logits[0].float().cpu().softmax(-1)[blanks]  # (n, V)
    filled = ids.clone()
    filled[blanks] = probs.argmax(-1)
    return filled, probs


def score_views(model, input_ids, prefix_length: int, mask_token_id: int) -> list[dict]:
    """One sequence split at ``prefix_length`` = P, scored word by word in four views of one network.

    input_ids: (L,) = [BOS] w_1 .. w_n [EOS]; word w sits at token t = w + 1. Views, each a
    loss (nats) and a top-1 hit: ``causal`` (next-token, causal mask: a GPT's view),
    ``prefix`` (next-token, prefix mask; continuation words t >= P only: how a prefix LM
    writes), ``mlm`` (the word -> [MASK], the whole sequence visible both ways) and
    ``mlm_prompt`` (the word -> [MASK], the prompt alone visible both ways; prompt words
    t < P only). Returns n dicts: word (w), in_prompt, and ``{view}_nll`` / ``{view}_hit``
    for the views that apply to that word.
    """
    ids = torch.as_tensor(input_ids).long()
    if ids.dim() != 1 or ids.numel() < 3:
        raise ValueError(f"input_ids must be one sequence [BOS] words [EOS] of shape (L,), L >= 3; "
                         f"got shape {tuple(ids.shape)}")
    L, n, P = ids.numel(), ids.numel() - 2, int(prefix_length)
    if not 1 <= P <= L - 1:
        raise ValueError(f"prefix_length must be in [1, {L - 1}] (prompt and continuation non-empty); got {P}")
    one = torch.ones(1, L)
    nxt = prefix_lm_batch(ids[None], prefix_lengths=[1])["labels"]  # (1, L): position i -> token i + 1
    views = {
        "causal": position_scores(model, {"input_ids": ids[None], "labels": nxt,
                                          "attention_mask": causal_mask(one)}),
        "prefix": position_scores(model, {"input_ids": ids[None], "labels": nxt,
                                          "attention_mask": prefix_mask(one, P)}),
        "mlm": position_scores(model, {**blank_each(ids, range(1, n + 1), mask_token_id),
                                       "attention_mask": bidirectional_mask(torch.ones(n, L))}),
    }
    if P > 1:  # blanks inside the prompt, the prompt alone in view
        views["mlm_prompt"] = position_scores(model, {**blank_each(ids, range(1, P), mask_token_id),
                                                      "attention_mask": prefix_mask(torch.ones(P - 1, L), P)})
    rows = []
    for w in range(n):
        t = w + 1
        row = {"word": w, "in_prompt": t < P}
        # next-token views read the output one position to the left; blank views, row w at t
        where = {"causal": (0, t - 1), "prefix": (0, t - 1), "mlm": (w, t), "mlm_prompt": (w, t)}
        for name, at in where.items():
            if (name == "prefix" and t < P) or (name == "mlm_prompt" and t >= P):
                continue
            row[f"{name}_nll"] = float(views[name]["nll"][at])
            row[f"{name}_hit"] = bool(views[name]["correct"][at])
        rows.append(row)
    return rows

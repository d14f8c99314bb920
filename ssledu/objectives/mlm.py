"""Masked language modelling (BERT): corrupt 15 % of the tokens, predict the originals.

The objective is a data transform. ``mask_tokens`` takes token ids and returns

- ``input_ids``: a corrupted copy. Of the *selected* positions, 80 % become [MASK],
  10 % a random token, 10 % keep their token (so the model cannot rely on seeing [MASK]);
- ``labels``: the original id at selected positions, -100 (ignored by the loss) elsewhere.

Special tokens ([CLS], [SEP], [PAD], ...) are never selected. With a seeded
``torch.Generator`` the result equals ``transformers.DataCollatorForLanguageModeling``
bit for bit (same draws in the same order).

Also here: whole-word masking, BERT's exact-count masking, next-sentence (NSP) and
sentence-order (SOP) pairs, the combined pretraining loss, a seeded collator for
``ssledu.train.fit``, and the metrics a chapter reports (masked accuracy, fill-mask,
cloze scores with one token or one word masked at a time).

Sources: Devlin et al. 2019, "BERT" (15 %, 80/10/10, NSP, ``create_pretraining_data.py``
for the exact count and pair truncation); Lan et al. 2020, "ALBERT" (SOP);
transformers 5 ``DataCollatorForLanguageModeling`` (draw order); Salazar et al. 2020,
"Masked Language Model Scoring" (pseudo-log-likelihood).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from ssledu.conventions import IGNORE_INDEX, check_ids, context_length, eval_mode, pad_batch

__all__ = [
    "IGNORE_INDEX",
    "mask_tokens",
    "mask_whole_words",
    "mask_tokens_exact",
    "split_sentences",
    "nsp_pairs",
    "sop_pairs",
    "unbatch",
    "MLMCollator",
    "mlm_collator",
    "mlm_loss",
    "pretraining_loss",
    "masked_accuracy",
    "fill_mask",
    "cloze_scores",
    "top_predictions",
    "replace_one_token",
]

# IGNORE_INDEX (-100, skipped by cross_entropy) lives in ssledu.conventions; re-exported here.


# --------------------------------------------------------------------------- checks


def _check_probabilities(mlm_probability, mask_replace_prob, random_replace_prob):
    for name, p in (
        ("mlm_probability", mlm_probability),
        ("mask_replace_prob", mask_replace_prob),
        ("random_replace_prob", random_replace_prob),
    ):
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1]; got {p!r}")
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-9:
        raise ValueError(
            "mask_replace_prob + random_replace_prob must not exceed 1 (the rest keep their "
            f"token); got {mask_replace_prob} + {random_replace_prob} = "
            f"{mask_replace_prob + random_replace_prob:g}. BERT uses 0.8 and 0.1."
        )


def _mask_token_id(tokenizer) -> int:
    if getattr(tokenizer, "mask_token", None) is None or tokenizer.mask_token_id is None:
        raise ValueError(
            f"this tokenizer ({type(tokenizer).__name__}) has no mask token, which masked LM "
            "needs; build one with ssledu.data.tokenize.train_tokenizer (it reserves [MASK]=4) "
            "or add one: tokenizer.add_special_tokens({'mask_token': '[MASK]'})"
        )
    return int(tokenizer.mask_token_id)


def _as_batch(input_ids, tokenizer=None) -> tuple[torch.Tensor, bool]:
    """Return a (B, L) LongTensor and whether the input was a single 1-D sequence.

    Strings, floats, negative ids and (given the tokenizer) ids outside its vocabulary are
    rejected here with the fix, instead of failing later inside torch.
    """
    if isinstance(input_ids, (str, bytes)):
        check_ids(input_ids, what="input_ids")  # raises: encode the text first
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids
    else:
        rows = list(input_ids)
        if rows and not isinstance(rows[0], (Sequence, torch.Tensor)):
            ids = check_ids(rows, what="input_ids")
        else:
            lengths = {len(r) for r in rows}
            if len(lengths) > 1:
                raise ValueError(
                    f"sequences have different lengths {sorted(lengths)}; pad them first "
                    "(ssledu.data.blocks.pack_blocks) or let mlm_collator(tokenizer) pad them"
                )
            ids = check_ids([r if isinstance(r, (str, bytes)) else list(r) for r in rows],
                            what="input_ids")
    vocab_size = len(tokenizer) if tokenizer is not None else None
    ids = check_ids(ids, what="input_ids", vocab_size=vocab_size)
    if ids.dim() == 1:
        return ids.unsqueeze(0), True
    if ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (B, L) or (L,); got {tuple(ids.shape)}")
    return ids, False


def _special_mask(ids: torch.Tensor, tokenizer, special_tokens_mask) -> torch.Tensor:
    """(B, L) bool: True where a position may never be selected."""
    if special_tokens_mask is None:
        special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        return torch.isin(ids, special_ids)
    mask = torch.as_tensor(special_tokens_mask).bool().cpu()
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    if mask.shape != ids.shape:
        raise ValueError(
            f"special_tokens_mask has shape {tuple(mask.shape)} but input_ids has "
            f"{tuple(ids.shape)}"
        )
    return mask


def _rng_device(generator) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


# ------------------------------------------------------------------ token corruption


def _force_one(selected, candidates, generator):
    """Select one random candidate in every row that selected nothing.

    Draws random numbers only when such a row exists, so a batch without empty rows
    consumes the generator exactly as transformers' collator does.
    """
    empty = ~selected.any(dim=1) & candidates.any(dim=1)  # (B,)
    if not empty.any():
        return selected
    dev = _rng_device(generator)
    scores = torch.rand(selected.shape, generator=generator, device=dev)  # (B, L)
    scores = scores.to(selected.device)
    scores = scores.masked_fill(~candidates, -1.0)
    pick = F.one_hot(scores.argmax(dim=1), selected.shape[1]).bool()  # (B, L)
    return selected | (pick & empty.unsqueeze(1))


def _corrupt(ids, selected, tokenizer, mask_replace_prob, random_replace_prob, generator):
    """Apply 80/10/10 to the selected positions; return (input_ids, labels).

    Same draw order as transformers: bernoulli(mask) -> [MASK]; then, among the rest,
    bernoulli(random / (1 - mask)) -> a random id from randint(len(tokenizer)).
    """
    labels = ids.masked_fill(~selected, IGNORE_INDEX)  # (B, L)
    corrupted = ids.clone()
    shape, dev = ids.shape, selected.device
    replaced = torch.full(shape, float(mask_replace_prob), device=dev)
    replaced = torch.bernoulli(replaced, generator=generator).bool() & selected  # (B, L)
    corrupted[replaced] = _mask_token_id(tokenizer)
    if mask_replace_prob == 1 or random_replace_prob == 0:
        return corrupted, labels
    # Of the selected positions not turned into [MASK], this share becomes random.
    scaled = min(1.0, random_replace_prob / (1.0 - mask_replace_prob))
    randomised = torch.bernoulli(torch.full(shape, scaled, device=dev), generator=generator).bool()
    randomised &= selected & ~replaced
    random_ids = torch.randint(len(tokenizer), shape, generator=generator, device=dev)  # (B, L)
    corrupted[randomised] = random_ids[randomised]
    return corrupted, labels


def _finish(ids_in, corrupted, labels, single):
    corrupted, labels = corrupted.to(ids_in.device), labels.to(ids_in.device)
    if single:
        corrupted, labels = corrupted.squeeze(0), labels.squeeze(0)
    return {"input_ids": corrupted, "labels": labels}


def mask_tokens(
    input_ids,
    tokenizer,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
    special_tokens_mask=None,
    ensure_one: bool = False,
) -> dict:
    """BERT's masking: select each non-special token with probability ``mlm_probability``.

    input_ids: LongTensor (B, L) or (L,), or a list of equal-length lists; never modified.
    special_tokens_mask: optional (B, L), 1 = never select; default: the tokenizer's
    ``all_special_ids`` (so padding is never selected).
    generator: a seeded ``torch.Generator`` for reproducibility (None: torch's global RNG).
    ensure_one: a short row can select nothing (its labels are all -100 and a loss over it
    alone is NaN); with True such a row gets one random candidate selected. This draws extra
    random numbers only when an empty row occurs. Random replacements are drawn from the
    whole vocabulary, special tokens included, as transformers does.

    Returns {"input_ids": corrupted copy (B, L), "labels": (B, L) original id where selected,
    -100 elsewhere}. With ``ensure_one=False`` and the same generator state the output equals
    ``transformers.DataCollatorForLanguageModeling(tokenizer, seed=s)`` bit for bit.
    Defaults 0.15 / 0.8 / 0.1 from Devlin et al. 2019.
    """
    _check_probabilities(mlm_probability, mask_replace_prob, random_replace_prob)
    _mask_token_id(tokenizer)
    ids_in, single = _as_batch(input_ids, tokenizer)
    dev = _rng_device(generator)
    ids = ids_in.to(dev)
    special = _special_mask(ids_in.cpu(), tokenizer, special_tokens_mask).to(dev)  # (B, L)
    probs = torch.full(ids.shape, float(mlm_probability), device=dev).masked_fill_(special, 0.0)
    selected = torch.bernoulli(probs, generator=generator).bool()  # (B, L)
    if ensure_one:
        selected = _force_one(selected, ~special, generator)
    corrupted, labels = _corrupt(
        ids, selected, tokenizer, mask_replace_prob, random_replace_prob, generator
    )
    return _finish(ids_in, corrupted, labels, single)


def _word_groups(word_ids, special: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Word runs: (B, L) long group of each token (-1 for none), (B, L) bool first pieces.

    Runs, not raw ids, so that a pair "[CLS] A [SEP] B [SEP]" (whose word ids restart at
    0 in B) still gives distinct groups.
    """
    B, L = special.shape
    if isinstance(word_ids, torch.Tensor):
        w = word_ids.long().cpu().clone()
    else:
        rows = list(word_ids)
        if len(rows) != B or any(len(r) != L for r in rows):
            raise ValueError(
                f"word_ids must give one entry per token ({B} rows of {L}); got "
                f"{len(rows)} rows of lengths {sorted({len(r) for r in rows})}. Pad word_ids "
                "with None where input_ids is padded."
            )
        w = torch.tensor([[-1 if x is None else int(x) for x in r] for r in rows], dtype=torch.long)
    if w.dim() == 1:
        w = w.unsqueeze(0)
    valid = (w >= 0) & ~special  # (B, L)
    prev_w = torch.cat([torch.full((B, 1), -2, dtype=torch.long), w[:, :-1]], dim=1)
    starts = valid & (w != prev_w)  # (B, L) first piece of each word
    groups = torch.cumsum(starts.long(), dim=1) - 1
    return groups.masked_fill(~valid, -1), starts


def mask_whole_words(
    input_ids,
    word_ids,
    tokenizer,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
    special_tokens_mask=None,
    ensure_one: bool = False,
) -> dict:
    """Whole-word masking: select words with probability ``mlm_probability``, all their pieces.

    word_ids: per row, the word index of each token as given by a fast tokenizer's
    ``encoding.word_ids()`` (None for specials and padding), or a (B, L) tensor with -1.
    After selection, 80/10/10 is applied PER TOKEN, as in the original BERT release
    (Google's WWM models, 2019). transformers 5's ``whole_word_mask=True`` instead forces
    100 % [MASK]; with ``mask_replace_prob=1, random_replace_prob=0`` the two agree.
    One draw per token position (only first pieces can fire), then the 80/10/10 draws of
    ``mask_tokens``. Returns {"input_ids", "labels"} like ``mask_tokens``.
    """
    _check_probabilities(mlm_probability, mask_replace_prob, random_replace_prob)
    _mask_token_id(tokenizer)
    ids_in, single = _as_batch(input_ids, tokenizer)
    if word_ids is None or isinstance(word_ids, (str, bytes)):
        raise TypeError(
            "word_ids must give the word of each token, e.g. enc.word_ids(i) from a fast "
            f"tokenizer's encoding (None for specials); got {type(word_ids).__name__}. Without "
            "word boundaries use mask_tokens"
        )
    if single and not isinstance(word_ids, torch.Tensor):
        word_ids = [word_ids]
    special = _special_mask(ids_in.cpu(), tokenizer, special_tokens_mask)
    groups, starts = _word_groups(word_ids, special)  # (B, L), (B, L)
    dev = _rng_device(generator)
    probs = torch.full(ids_in.shape, float(mlm_probability), device=dev)
    probs.masked_fill_(~starts.to(dev), 0.0)  # only a word's first piece can fire
    fired = torch.bernoulli(probs, generator=generator).bool().cpu()  # (B, L) at word starts
    if ensure_one:
        fired = _force_one(fired, starts, generator)
    # A token is selected when the first piece of its word fired.
    n_groups = int(groups.max().item()) + 1 if groups.numel() else 0
    word_fired = torch.zeros((ids_in.shape[0], max(n_groups, 1)), dtype=torch.bool)  # (B, W)
    b_idx, t_idx = fired.nonzero(as_tuple=True)
    word_fired[b_idx, groups[b_idx, t_idx]] = True
    selected = (groups >= 0) & word_fired.gather(1, groups.clamp(min=0))  # (B, L)
    ids = ids_in.to(dev)
    corrupted, labels = _corrupt(
        ids, selected.to(dev), tokenizer, mask_replace_prob, random_replace_prob, generator
    )
    return _finish(ids_in, corrupted, labels, single)


def mask_tokens_exact(
    input_ids,
    tokenizer,
    mlm_probability: float = 0.15,
    max_predictions: int = 20,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
    special_tokens_mask=None,
) -> dict:
    """Original BERT masking: an exact count per row instead of a coin per token.

    count = min(max_predictions, max(1, round(mlm_probability * n))), n = the row's
    non-padding tokens ([CLS]/[SEP] included, as ``len(tokens)`` in Google's
    ``create_pretraining_data.py``; Python's round, halves to even), capped by the number of
    candidates. The positions are a uniform random subset of the non-special tokens; then
    80/10/10 as in ``mask_tokens``. Returns {"input_ids", "labels"}.
    """
    _check_probabilities(mlm_probability, mask_replace_prob, random_replace_prob)
    if not isinstance(max_predictions, int) or max_predictions < 1:
        raise ValueError(f"max_predictions must be a positive integer; got {max_predictions!r}")
    _mask_token_id(tokenizer)
    ids_in, single = _as_batch(input_ids, tokenizer)
    ids = ids_in.cpu()
    special = _special_mask(ids, tokenizer, special_tokens_mask)  # (B, L)
    candidates = ~special
    pad_id = tokenizer.pad_token_id
    if pad_id is not None:
        n_tokens = (ids != pad_id).sum(dim=1)  # (B,)
    else:
        n_tokens = torch.full((ids.shape[0],), ids.shape[1])
    dev = _rng_device(generator)
    scores = torch.rand(ids.shape, generator=generator, device=dev).cpu()  # (B, L)
    scores = scores.masked_fill(~candidates, 2.0)  # non-candidates sort last
    order = scores.argsort(dim=1)  # (B, L) a random permutation of the candidates first
    selected = torch.zeros_like(candidates)
    for b in range(ids.shape[0]):
        n_cand = int(candidates[b].sum())
        count = min(max_predictions, max(1, round(mlm_probability * int(n_tokens[b]))), n_cand)
        selected[b, order[b, :count]] = True
    corrupted, labels = _corrupt(
        ids.to(dev), selected.to(dev), tokenizer, mask_replace_prob, random_replace_prob, generator
    )
    return _finish(ids_in, corrupted, labels, single)


# ------------------------------------------------------------------- sentence pairs

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """Split a text into sentences after ".", "!" or "?" followed by whitespace, and at newlines.

    Toyworld's " . " separators split as expected: "a b . c d ." -> ["a b .", "c d ."].
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be one string; got {type(text).__name__}. For a list of "
                        "texts use [split_sentences(t) for t in texts]")
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _special_id(tokenizer, role: str) -> int:
    value = getattr(tokenizer, f"{role}_id", None)
    if value is None:
        raise ValueError(
            f"the tokenizer has no {role.replace('_token', '')} token, which sentence pairs need "
            "('[CLS] A [SEP] B [SEP]'); use ssledu.data.tokenize.train_tokenizer"
        )
    return int(value)


def _segments(documents, tokenizer) -> list[list[list[int]]]:
    """Documents -> per document, the token ids of each segment (empty segments dropped)."""
    if isinstance(documents, str):
        raise TypeError("documents must be a list of documents; wrap a single text in a list")
    docs = []
    for doc in documents:
        segs = split_sentences(doc) if isinstance(doc, str) else list(doc)
        texts = [s for s in segs if isinstance(s, str)]
        encoded = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else ())
        ids = [next(encoded) if isinstance(s, str) else [int(t) for t in s] for s in segs]
        docs.append([list(x) for x in ids if len(x) > 0])
    return docs


def _truncate_pair(a: list[int], b: list[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """BERT's truncate_seq_pair: drop tokens from the longer side until both fit.

    BERT drops from the front or back at random; here always from the back (deterministic).
    """
    a, b = list(a), list(b)
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        longer.pop()
    return a, b


def _pack_pairs(pairs, tokenizer, max_len, label_key):
    """[(A ids, B ids, label)] -> dict of (N, L) tensors padded to the longest pair."""
    cls_id, sep_id = _special_id(tokenizer, "cls_token"), _special_id(tokenizer, "sep_token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows, types, labels = [], [], []
    for a, b, label in pairs:
        a, b = _truncate_pair(a, b, max_len - 3)
        rows.append([cls_id, *a, sep_id, *b, sep_id])
        types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
        labels.append(label)
    padded = pad_batch(rows, pad_id)  # input_ids, attention_mask (N, L)
    # segment B is 1, [CLS] A [SEP] and padding are 0, as BERT's token_type_ids
    token_type_ids = pad_batch(types, 0)["input_ids"]  # (N, L)
    return {
        "input_ids": padded["input_ids"],
        "token_type_ids": token_type_ids,
        "attention_mask": padded["attention_mask"],
        label_key: torch.tensor(labels, dtype=torch.long),  # (N,)
    }


def _check_pair_args(max_len, prob, name):
    if not isinstance(max_len, int) or max_len < 5:
        raise ValueError(
            f"max_len must be an integer >= 5 ([CLS] a [SEP] b [SEP]); got {max_len!r}"
        )
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {prob!r}")


def _generator(generator, seed):
    return generator if generator is not None else torch.Generator().manual_seed(seed)


def nsp_pairs(
    documents,
    tokenizer,
    max_len: int = 128,
    *,
    seed: int = 0,
    generator: torch.Generator | None = None,
    random_next_prob: float = 0.5,
) -> dict:
    """Next-sentence-prediction pairs (BERT): "[CLS] A [SEP] B [SEP]".

    documents: a list of documents, each a list of segments (str or token-id lists) or a
    text that ``split_sentences`` cuts at sentence ends. Every two consecutive segments of a
    document give one pair: with probability ``random_next_prob`` B is replaced by a random
    segment of ANOTHER document (label 1), else B is the true next segment (label 0).
    One segment per side (BERT packs several sentences per side up to the length budget).
    Pairs longer than ``max_len`` lose tokens from the end of the longer side first.

    Returns LongTensors padded to the longest pair: input_ids, token_type_ids (0 for
    "[CLS] A [SEP]", 1 for "B [SEP]", 0 on padding), attention_mask (N, L) and
    next_sentence_label (N,), the names ``BertForPreTraining`` takes.
    """
    _check_pair_args(max_len, random_next_prob, "random_next_prob")
    g = _generator(generator, seed)
    docs = _segments(documents, tokenizer)
    if sum(1 for d in docs if d) < 2:
        raise ValueError("NSP needs at least two non-empty documents to draw random segments from")
    pairs = []
    for d, segs in enumerate(docs):
        for i in range(len(segs) - 1):
            if torch.rand((), generator=g).item() < random_next_prob:
                other = d
                while other == d or not docs[other]:
                    # Draw among the other documents (shifting past d), as BERT does.
                    other = int(torch.randint(len(docs) - 1, (), generator=g))
                    other += other >= d
                j = int(torch.randint(len(docs[other]), (), generator=g))
                pairs.append((segs[i], docs[other][j], 1))
            else:
                pairs.append((segs[i], segs[i + 1], 0))
    if not pairs:
        raise ValueError(
            "no document has two segments, so no pair can be built; pass documents as lists "
            "of sentences or texts with several sentences ending in '.', '!' or '?'"
        )
    return _pack_pairs(pairs, tokenizer, max_len, "next_sentence_label")


def sop_pairs(
    documents,
    tokenizer,
    max_len: int = 128,
    *,
    seed: int = 0,
    generator: torch.Generator | None = None,
    swap_prob: float = 0.5,
) -> dict:
    """Sentence-order-prediction pairs (ALBERT): two consecutive segments, maybe swapped.

    documents as in ``nsp_pairs``. Every two consecutive segments (A, B) of a document give
    "[CLS] A [SEP] B [SEP]" (label 0) or, with probability ``swap_prob``, "[CLS] B [SEP] A
    [SEP]" (label 1). Both orders use the same two segments, so topic cannot give the
    answer away (Lan et al. 2020). Returns input_ids, token_type_ids, attention_mask (N, L)
    and sentence_order_label (N,).
    """
    _check_pair_args(max_len, swap_prob, "swap_prob")
    g = _generator(generator, seed)
    pairs = []
    for segs in _segments(documents, tokenizer):
        for i in range(len(segs) - 1):
            swap = torch.rand((), generator=g).item() < swap_prob
            a, b = (segs[i + 1], segs[i]) if swap else (segs[i], segs[i + 1])
            pairs.append((a, b, int(swap)))
    if not pairs:
        raise ValueError(
            "no document has two segments, so no pair can be built; pass documents as lists "
            "of sentences or texts with several sentences ending in '.', '!' or '?'"
        )
    return _pack_pairs(pairs, tokenizer, max_len, "sentence_order_label")


def unbatch(batch: Mapping) -> list[dict]:
    """Dict of (N, ...) tensors -> list of N example dicts (``nsp_pairs`` output -> a collator)."""
    keys = list(batch) if isinstance(batch, Mapping) else []
    if not keys:
        raise ValueError("unbatch needs a non-empty dict of (N, ...) tensors, e.g. from nsp_pairs")
    lengths = {k: len(batch[k]) for k in keys}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every value must have the same first dimension N; got {lengths}")
    n = lengths[keys[0]]
    return [{k: batch[k][i] for k in keys} for i in range(n)]


def _check_logits_labels(logits, labels) -> None:
    if logits.dim() < 2 or tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"logits must be (B, L, V) and labels (B, L) with the same B and L; got logits "
            f"{tuple(logits.shape)} and labels {tuple(labels.shape)}. Pass the labels of the "
            "same batch (batch['labels'])"
        )


# ----------------------------------------------------------------------- collator


_REBUILT_KEYS = ("input_ids", "attention_mask", "word_ids", "labels")


class MLMCollator:
    """Turn a list of examples into a padded, freshly masked batch for ``fit``.

    Examples: lists / 1-D tensors of ids, or dicts with "input_ids" (and optionally
    "attention_mask", "token_type_ids", "word_ids", scalar labels such as
    "next_sentence_label"). Padding follows the attention_mask when one is given.
    strategy: "token" (``mask_tokens``), "whole_word" (``mask_whole_words``; examples need
    "word_ids") or "exact" (``mask_tokens_exact``). The collator owns a
    ``torch.Generator(seed)``, so a run is reproducible and every epoch masks anew
    (dynamic masking, RoBERTa). ``ensure_one`` (default True) keeps every row with a
    prediction, so the loss of a batch is never NaN. With ``model`` (or ``max_length``)
    given, a sequence longer than its position embeddings raises a ValueError.
    Returns input_ids, attention_mask, labels (B, L) and the examples' other keys.
    ``state_dict`` / ``load_state_dict`` save and restore the generator (``fit`` resumes
    with them); ``fork(seed)`` is a copy with its own generator (``evaluate`` masks with it). In a DataLoader with worker processes each worker would copy the same
    generator: use it with ``num_workers=0`` (as ``fit`` does).
    """

    STRATEGIES = ("token", "whole_word", "exact")

    def __init__(
        self,
        tokenizer,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        *,
        strategy: str = "token",
        seed: int = 0,
        ensure_one: bool = True,
        model=None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
    ):
        _check_probabilities(mlm_probability, mask_replace_prob, random_replace_prob)
        _mask_token_id(tokenizer)
        if strategy not in self.STRATEGIES:
            raise ValueError(f"strategy must be one of {self.STRATEGIES}; got {strategy!r}")
        if model is not None and max_length is None:
            max_length = context_length(model, default=None)
        for name, value in (("max_length", max_length), ("pad_to_multiple_of", pad_to_multiple_of)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None; got {value!r}")
        # ids must fit the model's embedding table when one is given, else the tokenizer's
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        self.vocab_size = vocab if isinstance(vocab, int) else len(tokenizer)
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.strategy = strategy
        self.ensure_one = ensure_one
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def _rows(self, examples):
        """Per example: (ids list, word_ids list or None, extras dict)."""
        rows = []
        for i, ex in enumerate(examples):
            if isinstance(ex, Mapping):
                if "input_ids" not in ex:
                    raise ValueError(
                        f"example dicts need an 'input_ids' key; got keys {sorted(ex)}"
                    )
                ids = check_ids(ex["input_ids"], what=f"examples[{i}]['input_ids']",
                                vocab_size=self.vocab_size).flatten().tolist()
                if "attention_mask" in ex:  # drop padding the example already carries
                    ids = ids[: int(torch.as_tensor(ex["attention_mask"]).sum())]
                extras = {k: v for k, v in ex.items() if k not in _REBUILT_KEYS}
                word_ids = ex.get("word_ids")
            else:
                ids = check_ids(ex, what=f"examples[{i}]", vocab_size=self.vocab_size).flatten().tolist()
                extras, word_ids = {}, None
            if self.strategy == "whole_word" and word_ids is None:
                raise ValueError(
                    "strategy='whole_word' needs examples with 'word_ids' (from a fast "
                    "tokenizer's encoding.word_ids(i)), e.g. "
                    "{'input_ids': enc['input_ids'][i], 'word_ids': enc.word_ids(i)}"
                )
            if self.max_length is not None and len(ids) > self.max_length:
                raise ValueError(
                    f"examples[{i}] has {len(ids)} tokens but the model takes at most "
                    f"{self.max_length} positions (max_length); cut the data into "
                    "shorter blocks (ssledu.data.blocks.pack_blocks(..., block_size)) or build "
                    "a model with more positions"
                )
            rows.append((ids, None if word_ids is None else list(word_ids)[: len(ids)], extras))
        return rows

    def __call__(self, examples) -> dict:
        if len(examples) == 0:
            raise ValueError("cannot collate an empty list of examples")
        rows = self._rows(examples)
        L = max(len(ids) for ids, _, _ in rows)
        if self.pad_to_multiple_of:
            L = math.ceil(L / self.pad_to_multiple_of) * self.pad_to_multiple_of
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        B = len(rows)
        padded = pad_batch([ids for ids, _, _ in rows], pad_id, length=L)
        input_ids, attention_mask = padded["input_ids"], padded["attention_mask"]  # (B, L)
        special = _special_mask(input_ids, self.tokenizer, None) | (attention_mask == 0)
        common = dict(
            mlm_probability=self.mlm_probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
            generator=self.generator,
            special_tokens_mask=special,
        )
        if self.strategy == "token":
            out = mask_tokens(input_ids, self.tokenizer, ensure_one=self.ensure_one, **common)
        elif self.strategy == "whole_word":
            word_ids = [w + [None] * (L - len(w)) for _, w, _ in rows]
            out = mask_whole_words(
                input_ids, word_ids, self.tokenizer, ensure_one=self.ensure_one, **common
            )
        else:
            out = mask_tokens_exact(input_ids, self.tokenizer, **common)
        batch = {
            "input_ids": out["input_ids"], "attention_mask": attention_mask, "labels": out["labels"]
        }
        for key in rows[0][2]:
            values = [torch.as_tensor(extras[key]) for _, _, extras in rows]
            if values[0].dim() == 0:
                batch[key] = torch.stack(values).long()  # (B,)
            else:  # per-token extras such as token_type_ids: pad with 0
                padded = torch.zeros((B, L), dtype=values[0].dtype)
                for i, (v, (ids, _, _)) in enumerate(zip(values, rows)):
                    padded[i, : len(ids)] = v.flatten()[: len(ids)]
                batch[key] = padded
        return batch

    def state_dict(self) -> dict:
        """The generator's state, so that a resumed run masks as the original would."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore the state saved by ``state_dict``."""
        self.generator.set_state(state["generator"])

    def fork(self, seed: int = 0) -> "MLMCollator":
        """A copy that masks with its own generator seeded by ``seed``; ``self`` is untouched.

        ``evaluate`` scores on ``collate_fn.fork(seed)``: the same masks at every call, and
        the training run's masks do not depend on how often it was evaluated.
        """
        twin = copy.copy(self)  # shares the tokenizer; only the generator differs
        twin.generator = torch.Generator().manual_seed(seed)
        return twin

    def __repr__(self):
        return (
            f"MLMCollator(p={self.mlm_probability}, mask={self.mask_replace_prob}, "
            f"random={self.random_replace_prob}, strategy={self.strategy!r}, seed={self.seed})"
        )


def mlm_collator(tokenizer, mlm_probability: float = 0.15, **kwargs) -> MLMCollator:
    """``MLMCollator(tokenizer, mlm_probability, **kwargs)``: a ``collate_fn`` for ``fit``."""
    return MLMCollator(tokenizer, mlm_probability, **kwargs)


# ------------------------------------------------------------------ losses, metrics


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions with label != -100 (nats).

    logits (B, L, V), labels (B, L). With no labelled position it returns 0 (connected to
    the graph, so ``backward`` still works) where plain cross-entropy would give NaN.
    """
    _check_logits_labels(logits, labels)
    V = logits.shape[-1]
    flat_logits, flat_labels = logits.reshape(-1, V), labels.reshape(-1)  # (B*L, V), (B*L,)
    if not (flat_labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE_INDEX)


def pretraining_loss(model, batch: Mapping, alpha: float = 1.0):
    """BERT's pretraining loss L = L_MLM + alpha * L_NSP for a ``BertForPreTraining``.

    batch: input_ids, attention_mask, token_type_ids, labels (B, L) and
    next_sentence_label or sentence_order_label (B,). Returns (loss, {"mlm_loss", "nsp_loss"}
    as detached 0-d tensors); use as ``fit(model, data, loss_fn=pretraining_loss)``.
    alpha = 1 is BERT's plain sum (Devlin et al. 2019).
    """
    if "next_sentence_label" in batch:
        pair_labels = batch["next_sentence_label"]
    elif "sentence_order_label" in batch:
        pair_labels = batch["sentence_order_label"]
    else:
        raise ValueError(
            "batch has no next_sentence_label or sentence_order_label; build pairs with "
            "nsp_pairs/sop_pairs, or for MLM alone use model(**batch).loss"
        )
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    out = model(**inputs)
    mlm = mlm_loss(out.prediction_logits, batch["labels"])  # prediction_logits (B, L, V)
    pair_logits = out.seq_relationship_logits.float()  # (B, 2)
    nsp = F.cross_entropy(pair_logits, pair_labels.view(-1))
    loss = mlm + alpha * nsp
    # Detached tensors, not floats: no GPU sync per step (``float()`` them to print).
    return loss, {"mlm_loss": mlm.detach(), "nsp_loss": nsp.detach()}


def masked_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy over the positions with label != -100; NaN when there are none.

    logits (B, L, V), labels (B, L).
    """
    if not isinstance(k, int) or k < 1 or k > logits.shape[-1]:
        raise ValueError(f"k must be an integer in [1, vocab size {logits.shape[-1]}]; got {k!r}")
    _check_logits_labels(logits, labels)
    keep = labels != IGNORE_INDEX  # (B, L)
    if not keep.any():
        return float("nan")
    top = logits[keep].topk(k, dim=-1).indices  # (N, k)
    hits = (top == labels[keep].unsqueeze(-1)).any(dim=-1)  # (N,)
    return hits.float().mean().item()


def _unknown_words_message(tokenizer, text: str) -> str:
    """Which words of ``text`` the tokenizer reads as [UNK], each with its closest known words."""
    import difflib

    special = set(getattr(tokenizer, "all_special_tokens", []))
    known = [t for t in tokenizer.get_vocab() if t not in special and not t.startswith("##")]
    unk_id, listed = tokenizer.unk_token_id, []
    for word in dict.fromkeys(text.split()):  # each word once, in order
        if word in special or unk_id not in tokenizer(word, add_special_tokens=False)["input_ids"]:
            continue
        close = difflib.get_close_matches(word.lower(), known, n=3, cutoff=0.6)
        listed.append(f"'{word}' (closest: {', '.join(close)})" if close else f"'{word}' (no close word)")
    return (
        f"not in the tokenizer's vocabulary, so the model would read {tokenizer.unk_token} instead: "
        f"{'; '.join(listed) or 'a character of the text'}. Use words the model was trained on"
    )


def fill_mask(model, tokenizer, text: str, k: int = 5) -> list[list[tuple[str, float]]]:
    """Predict each [MASK] in ``text``: per mask, the ``k`` likeliest (token, probability).

    The text is encoded as "[CLS] text [SEP]" ("[MASK]" in it is the tokenizer's mask token,
    in any case: "[mask]" works too). A word the tokenizer does not know (it would become
    [UNK]) raises ValueError naming it and its closest known words.
    Probabilities are a softmax over the whole vocabulary, sorted from most likely.
    Works with BertForMaskedLM and BertForPreTraining; runs in eval mode without gradients
    and restores the model's training mode afterwards.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"text must be one string with {getattr(tokenizer, 'mask_token', '[MASK]')} in it; got "
            f"{type(text).__name__}. For several texts call fill_mask once per text"
        )
    mask_id = _mask_token_id(tokenizer)
    # "[mask]" and "[Mask]" mean the mask token too (a tokenizer matches it case-sensitively)
    text = re.sub(re.escape(tokenizer.mask_token), lambda _: tokenizer.mask_token, text, flags=re.IGNORECASE)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if mask_id not in ids:
        raise ValueError(
            f"the text has no {tokenizer.mask_token} token; write it where a word should be "
            f"predicted, e.g. 'the cat {tokenizer.mask_token} on the mat'"
        )
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is not None and unk_id in ids:
        raise ValueError(_unknown_words_message(tokenizer, text))
    ids = [_special_id(tokenizer, "cls_token"), *ids, _special_id(tokenizer, "sep_token")]
    max_pos = context_length(model, default=None)
    if max_pos is not None and len(ids) > max_pos:
        raise ValueError(
            f"the text is {len(ids)} tokens with [CLS]/[SEP] but the model takes at most "
            f"{max_pos} positions; shorten the text"
        )
    V = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(V, int) and len(tokenizer) > V:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only {V}; "
            "use the tokenizer the model was built with (models.bert(tokenizer, ...))"
        )
    V = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(k, int) or k < 1 or (V is not None and k > V):
        raise ValueError(f"k must be an integer in [1, vocab size {V}]; got {k!r}")
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)  # (1, L)
    with eval_mode(model), torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    logits = getattr(out, "logits", None)
    if logits is None:  # BertForPreTraining names them differently
        logits = out.prediction_logits  # (1, L, V)
    positions = (input_ids[0] == mask_id).nonzero(as_tuple=True)[0]
    probs = logits[0, positions].float().softmax(dim=-1)  # (M, V)
    top = probs.topk(k, dim=-1)
    return [
        list(zip(tokenizer.convert_ids_to_tokens(idx.tolist()), p.tolist()))
        for p, idx in zip(top.values.cpu(), top.indices.cpu())
    ]


def cloze_scores(model, tokenizer, texts, *, whole_words: bool = False, batch_size: int = 64) -> dict:
    """Mask each token of each text in turn and score the model's guess with the rest in view.

    Every text becomes "[CLS] text [SEP]"; each of its tokens gets its own copy of the
    sequence in which only that token is [MASK]. With ``whole_words=True`` every piece of
    the token's word is masked in that copy, so a word cut into pieces cannot be read off
    its own other pieces (each piece is still scored). Unlike random masking this scores
    every position exactly once; the sum of ``log_prob`` over a text is its
    pseudo-log-likelihood (Salazar et al. 2020).

    texts: list of str. The model runs in eval mode without gradients (mode restored),
    ``batch_size`` copies per forward pass. Returns a dict of equal-length lists, one entry
    per token of every text, in order: "text" (index into texts), "position" (token index
    in the text, 0 = the first token after [CLS]), "word" (word index from the tokenizer),
    "pieces" (tokens in that word), "target" and "predicted" (ids, argmax over the
    vocabulary), "correct" (bool), "log_prob" (log p(target | visible tokens), nats).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; wrap a single text in a list")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    texts = list(texts)
    mask_id = _mask_token_id(tokenizer)
    cls_id, sep_id = _special_id(tokenizer, "cls_token"), _special_id(tokenizer, "sep_token")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must be strings; got a {type(bad).__name__}: {str(bad)[:40]!r}")
    max_pos = context_length(model, default=None)
    enc = tokenizer(texts, add_special_tokens=False)
    keys = ("text", "position", "word", "pieces", "target", "predicted", "correct", "log_prob")
    out = {k: [] for k in keys}
    copies = []  # (row ids, the positions in the row to score, their record indices)
    for t, ids in enumerate(enc["input_ids"]):
        if max_pos is not None and len(ids) + 2 > max_pos:
            raise ValueError(
                f"text {t} is {len(ids) + 2} tokens with [CLS]/[SEP] but the model takes at most "
                f"{max_pos} positions; shorten or drop it"
            )
        word_ids = [w if w is not None else -1 - i for i, w in enumerate(enc.word_ids(t))]
        members: dict[int, list[int]] = {}
        for i, w in enumerate(word_ids):
            members.setdefault(w, []).append(i)
        units = list(members.values()) if whole_words else [[i] for i in range(len(ids))]
        for unit in units:
            row = [cls_id, *ids, sep_id]
            records = []
            for i in unit:
                row[i + 1] = mask_id
                records.append(len(out["text"]))
                out["text"].append(t)
                out["position"].append(i)
                out["word"].append(max(word_ids[i], -1))
                out["pieces"].append(len(members[word_ids[i]]))
                out["target"].append(int(ids[i]))
            copies.append((row, [i + 1 for i in unit], records))
    n = len(out["text"])
    out["predicted"], out["correct"], out["log_prob"] = [0] * n, [False] * n, [0.0] * n
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(copies), batch_size):
            chunk = copies[start : start + batch_size]
            padded = pad_batch([row for row, _, _ in chunk], pad_id)
            input_ids, attention_mask = padded["input_ids"], padded["attention_mask"]  # (B, L)
            result = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
            logits = getattr(result, "logits", None)
            if logits is None:  # BertForPreTraining
                logits = result.prediction_logits  # (B, L, V)
            b_idx = [b for b, (_, pos, _) in enumerate(chunk) for _ in pos]
            p_idx = [p for _, pos, _ in chunk for p in pos]
            logp = logits[b_idx, p_idx].float().log_softmax(dim=-1).cpu()  # (N, V)
            records = [r for _, _, recs in chunk for r in recs]
            targets = torch.tensor([out["target"][r] for r in records])  # (N,)
            predicted = logp.argmax(dim=-1)
            picked = logp.gather(1, targets[:, None]).squeeze(1)  # (N,)
            for j, r in enumerate(records):
                out["predicted"][r] = int(predicted[j])
                out["correct"][r] = bool(predicted[j] == targets[j])
                out["log_prob"][r] = float(picked[j])
    return out


def top_predictions(model, rows, *, pad_id: int = 0, batch_size: int = 256) -> list[list[int]]:
    """The model's top guess (argmax over the vocabulary) at every position of each row.

    rows: list of token-id lists of any lengths, fed as they are (no [MASK] added), padded
    per chunk of ``batch_size`` rows with an attention mask, so a row's guesses do not
    depend on its neighbours. Returns one list of ids per row, as long as the row.
    Works with BertForMaskedLM and BertForPreTraining; eval mode and no gradients
    (the training flag is restored).
    """
    if isinstance(rows, (str, bytes)) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            "rows must be a list of token-id lists and batch_size a positive integer; "
            f"got {type(rows).__name__} and {batch_size!r}"
        )
    rows = [list(map(int, r)) for r in rows]
    device = next(model.parameters()).device
    out = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            padded = pad_batch(chunk, pad_id)  # input_ids, attention_mask (B, L)
            result = model(input_ids=padded["input_ids"].to(device),
                           attention_mask=padded["attention_mask"].to(device))
            logits = getattr(result, "logits", None)
            if logits is None:  # BertForPreTraining
                logits = result.prediction_logits  # (B, L, V)
            guess = logits.argmax(dim=-1).cpu()  # (B, L)
            out += [guess[b, : len(r)].tolist() for b, r in enumerate(chunk)]
    return out


def replace_one_token(rows, low: int, high: int, *, seed: int = 0,
                      generator: torch.Generator | None = None) -> tuple[list[list[int]], list[int]]:
    """In each row, one inner token replaced by a different random id (an intruder word).

    rows: token-id lists that start with [CLS] and end with [SEP] (never replaced). Per row,
    the position is drawn uniformly among the inner ones, then the intruder uniformly from
    ids ``low..high-1`` until it differs from the original. Returns (new rows, positions).
    """
    if not (isinstance(low, int) and isinstance(high, int) and high - low >= 2):
        raise ValueError(f"need at least two ids to draw an intruder from: low={low!r}, high={high!r}")
    g = _generator(generator, seed)
    new_rows, positions = [], []
    for n, row in enumerate(rows):
        row = list(map(int, row))
        if len(row) < 3:
            raise ValueError(f"row {n} has {len(row)} tokens; it needs [CLS], one word and [SEP]")
        i = int(torch.randint(1, len(row) - 1, (), generator=g))
        intruder = row[i]
        while intruder == row[i]:
            intruder = int(torch.randint(low, high, (), generator=g))
        new_rows.append(row[:i] + [intruder] + row[i + 1:])
        positions.append(i)
    return new_rows, positions

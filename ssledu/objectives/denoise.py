"""Denoising objectives: corrupt a sequence, then repair it (BART, T5) or detect the noise (ELECTRA).

Every noise is a pure, seeded transform on ONE sequence of token ids (a list or a 1-D
tensor) with an explicit ``torch.Generator``; special tokens ([BOS], [EOS], [SEP], ...)
are never corrupted. The collators turn a list of sequences into the padded batch a
``transformers`` encoder-decoder takes, ``decoder_input_ids`` included.

========================  =========================================================
noise                     what it does to ``[BOS] w1 w2 ... [EOS]``
========================  =========================================================
``token_masking``         replace words by [MASK], one [MASK] per token (BERT-style)
``token_deletion``        delete words; the model must find where
``text_infilling``        replace spans (Poisson(3) words) by ONE [MASK]; 0-length
                          spans insert one
``sentence_permutation``  shuffle the sentences (split after full stops)
``document_rotation``     rotate the text so that it starts at a random token
``span_corruption``       T5: spans -> sentinels in the input, sentinel + span in
                          the target
========================  =========================================================

Also here: T5's length formula (``t5_lengths``), ELECTRA's replaced-token detection
(``rtd_inputs``, ``electra_loss``) and token-deletion prediction (``deletion_prediction``,
``deletion_no_skill_accuracy``).

Sources: Lewis et al. 2020, "BART" (the five noises, Table 1; infilling 30 % in
Poisson(lambda=3) spans + sentence permutation for the final model) and fairseq's
``DenoisingDataset`` (word-start budget ``ceil(p * n_words)``, truncated Poisson, insertions);
Raffel et al. 2020, "T5" (noise density 0.15, mean span 3, sentinels, ``random_spans_helper``);
Clark et al. 2020, "ELECTRA" (generator samples, lambda = 50, a sample equal to the
original counts as original).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ssledu.conventions import IGNORE_INDEX, check_ids, context_length, pad_batch

__all__ = [
    "NOISES",
    "token_masking",
    "token_deletion",
    "text_infilling",
    "infilling_spans",
    "sentence_permutation",
    "document_rotation",
    "bart_noise",
    "t5_lengths",
    "t5_raw_length",
    "span_corruption",
    "span_reconstruct",
    "shift_right",
    "seq2seq_loss",
    "BARTCollator",
    "T5Collator",
    "DeletionCollator",
    "rtd_inputs",
    "electra_loss",
    "deletion_prediction",
    "deletion_targets",
    "deletion_no_skill_accuracy",
    "pca_reconstruction_error",
    "corrupt_vectors",
    "exact_match",
    "ELECTRA",
    "steps_in_cpu_budget",
]

# BART's noises by short name, in the order fairseq's DenoisingDataset applies them:
# permute sentences first (it needs the full stops), then the word-level noises, rotation last.
NOISES = ("permute", "mask", "delete", "infill", "rotate")

# fairseq cuts the Poisson distribution where a length's probability falls below this.
_POISSON_TAIL = 1e-7


# --------------------------------------------------------------------------- checks


def _check_rate(name: str, value, *, low_open: bool = True, high: float = 1.0) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (0.0 < value if low_open else 0.0 <= value) and value < high
    if not ok:
        lo = "(0" if low_open else "[0"
        raise ValueError(
            f"{name} must be a number in {lo}, {high:g}); got {value!r}. "
            "BART masks 0.3 of the words, T5 corrupts 0.15 of the tokens"
        )
    return float(value)


def _mask_token_id(tokenizer) -> int:
    if getattr(tokenizer, "mask_token", None) is None or getattr(tokenizer, "mask_token_id", None) is None:
        raise ValueError(
            f"this tokenizer ({type(tokenizer).__name__}) has no mask token, which this noise "
            "needs; build one with ssledu.data.tokenize.train_tokenizer (it reserves [MASK]=4) "
            "or add one: tokenizer.add_special_tokens({'mask_token': '[MASK]'})"
        )
    return int(tokenizer.mask_token_id)


def _special_ids(tokenizer) -> set[int]:
    return set(int(i) for i in tokenizer.all_special_ids)


def _as_ids(ids, tokenizer, what: str = "ids") -> list[int]:
    """One sequence as a list of ints, checked against the vocabulary; empty is an error."""
    if isinstance(ids, Mapping):
        raise TypeError(
            f"{what} must be one sequence of token ids; got a dict (a batch?). Pass "
            "batch['input_ids'][i], or give the list of sequences to a collator"
        )
    t = check_ids(ids, what=what, vocab_size=len(tokenizer))
    if t.dim() != 1:
        raise ValueError(
            f"{what} must be ONE sequence (L,); got shape {tuple(t.shape)}. Noise one row at a "
            "time, or pass the list of rows to a collator (BARTCollator, T5Collator)"
        )
    if t.numel() == 0:
        raise ValueError(f"{what} is empty; a sequence needs at least one token to corrupt")
    return t.tolist()


def _gen(generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)); "
            f"got {type(generator).__name__}"
        )
    return generator


def _words(ids: list[int], special: set[int], word_ids=None) -> list[list[int]]:
    """Token positions of each word, in order; special tokens belong to no word.

    word_ids: one entry per token (a fast tokenizer's ``encoding.word_ids()``; None for
    specials). Default: every non-special token is its own word (word-level tokenizers).
    """
    if word_ids is not None:
        word_ids = list(word_ids)
        if len(word_ids) != len(ids):
            raise ValueError(
                f"word_ids has {len(word_ids)} entries but the sequence {len(ids)} tokens; "
                "give one word index per token (None for special tokens)"
            )
    words: list[list[int]] = []
    prev = object()
    for i, tok in enumerate(ids):
        if tok in special:
            prev = object()  # a special token ends the word before it
            continue
        w = i if word_ids is None else word_ids[i]
        if w is None or w != prev or not words:
            words.append([i])
        else:
            words[-1].append(i)
        prev = w if w is not None else object()
    return words


def _randperm(n: int, generator) -> list[int]:
    return torch.randperm(n, generator=generator).tolist() if n else []


def _choose(n: int, k: int, generator) -> list[int]:
    """k distinct indices out of range(n), uniformly, sorted."""
    return sorted(_randperm(n, generator)[:k])


# --------------------------------------------------------------------------- BART noises


def token_masking(ids, tokenizer, p: float = 0.15, *, generator=None, word_ids=None) -> list[int]:
    """BART's token masking: ``ceil(p * n_words)`` random words, every token of each -> [MASK].

    ids: one sequence (L,). Returns the corrupted list (same length L).
    p = 0.15 follows BERT, which BART's token masking copies (Lewis et al. 2020, §2.2).
    """
    p = _check_rate("p", p)
    mask_id = _mask_token_id(tokenizer)
    ids = _as_ids(ids, tokenizer)
    words = _words(ids, _special_ids(tokenizer), word_ids)
    out = list(ids)
    for w in _choose(len(words), math.ceil(p * len(words)), _gen(generator)):
        for i in words[w]:
            out[i] = mask_id
    return out


def token_deletion(ids, tokenizer, p: float = 0.15, *, generator=None, word_ids=None) -> list[int]:
    """BART's token deletion: ``ceil(p * n_words)`` random words removed (fairseq replace_length 0).

    ids: one sequence (L,). Returns a shorter list; special tokens always stay.
    """
    p = _check_rate("p", p)
    ids = _as_ids(ids, tokenizer)
    words = _words(ids, _special_ids(tokenizer), word_ids)
    gone = {i for w in _choose(len(words), math.ceil(p * len(words)), _gen(generator)) for i in words[w]}
    return [t for i, t in enumerate(ids) if i not in gone]


def _poisson_pmf(lam: float) -> torch.Tensor:
    """Poisson(lam) probabilities for k = 0, 1, ... cut where they fall below 1e-7 (fairseq)."""
    pmf, k, fact = [], 0, 1.0
    while True:
        prob = math.exp(-lam) * lam**k / fact
        if prob < _POISSON_TAIL and k > lam:
            break
        pmf.append(prob)
        k += 1
        fact *= k
    return torch.tensor(pmf, dtype=torch.float64)


def infilling_spans(n_words: int, p: float = 0.3, poisson_lambda: float = 3.0, *,
                    generator=None) -> list[tuple[int, int]]:
    """Where text infilling puts its spans: a list of (first word, length), length 0 = insertion.

    Budget ``ceil(p * n_words)`` words (fairseq). Lengths are drawn from Poisson(lambda)
    (truncated at 1e-7) until they reach the budget; the last one is cut to hit it exactly,
    so exactly the budget is masked. The spans are then laid out without overlap in a
    uniformly random order among the kept words; an insertion (length 0) sits before
    word ``first`` (``first == n_words``: at the end). Sorted by position.
    Defaults p = 0.3, lambda = 3 from BART (Lewis et al. 2020, §5.1 and Table 1).
    """
    p = _check_rate("p", p)
    if not (isinstance(poisson_lambda, (int, float)) and not isinstance(poisson_lambda, bool)
            and 0 < poisson_lambda <= 64):
        raise ValueError(f"poisson_lambda must be a number in (0, 64]; got {poisson_lambda!r}. BART uses 3")
    if not isinstance(n_words, int) or n_words < 1:
        raise ValueError(f"n_words must be a positive integer; got {n_words!r}")
    g = _gen(generator)
    budget = math.ceil(p * n_words)
    pmf = _poisson_pmf(float(poisson_lambda))
    lengths: list[int] = []
    while sum(lengths) < budget:
        lengths += torch.multinomial(pmf, budget, replacement=True, generator=g).tolist()
        total = 0
        for i, n in enumerate(lengths):  # trim to the budget, as fairseq does
            total += n
            if total >= budget:
                lengths = lengths[: i + 1]
                lengths[-1] -= total - budget
                break
    # Lay out (kept words) + (spans) in a random order: spans never overlap, and each
    # arrangement of spans among the kept words is equally likely.
    n_kept, n_spans = n_words - budget, len(lengths)
    slots = _choose(n_kept + n_spans, n_spans, g)  # which of the items are spans
    spans, word = [], 0
    for item in range(n_kept + n_spans):
        if slots and item == slots[0]:
            slots.pop(0)
            length = lengths[len(spans)]
            spans.append((word, length))
            word += length
        else:
            word += 1
    return spans


def text_infilling(ids, tokenizer, p: float = 0.3, poisson_lambda: float = 3.0, *,
                   generator=None, word_ids=None, return_spans: bool = False):
    """BART's text infilling: spans of Poisson(3) words become ONE [MASK] each (replace_length 1).

    ids: one sequence (L,). 30 % of the words (``ceil(p * n_words)``) are masked; a
    0-length span inserts a [MASK] (the model must learn that nothing is missing there).
    Returns the corrupted list (usually shorter), or (list, spans) with ``return_spans``
    (spans as from ``infilling_spans``). Special tokens are kept in place.
    """
    mask_id = _mask_token_id(tokenizer)
    ids = _as_ids(ids, tokenizer)
    words = _words(ids, _special_ids(tokenizer), word_ids)
    if not words:  # only special tokens: nothing to corrupt
        return (list(ids), []) if return_spans else list(ids)
    spans = infilling_spans(len(words), p, poisson_lambda, generator=generator)
    gone: set[int] = set()
    mask_before: dict[int, int] = {}  # token position -> number of [MASK]s placed before it
    after_last = 0
    for first, length in spans:
        if length:
            gone.update(i for word in words[first:first + length] for i in word)
        if first < len(words):
            pos = words[first][0]
            mask_before[pos] = mask_before.get(pos, 0) + 1
        else:  # an insertion after the last word: right behind it, before a closing special
            after_last += 1
    last = words[-1][-1]
    out = []
    for i, tok in enumerate(ids):
        out += [mask_id] * mask_before.get(i, 0)
        if i not in gone:
            out.append(tok)
        if i == last:
            out += [mask_id] * after_last
    return (out, spans) if return_spans else out


def sentence_permutation(ids, tokenizer, *, full_stop_id: int | None = None, generator=None) -> list[int]:
    """BART's sentence permutation: split after each full stop, shuffle the sentences.

    ids: one sequence (L,). Each run of non-special tokens is shuffled on its own, so
    [BOS]/[SEP]/[EOS] stay where they are; the text after the last full stop is a sentence
    too. full_stop_id: default the tokenizer's id of ".". Returns a list of length L.
    """
    ids = _as_ids(ids, tokenizer)
    if full_stop_id is None:
        full_stop_id = tokenizer.convert_tokens_to_ids(".")
        if full_stop_id is None or full_stop_id == getattr(tokenizer, "unk_token_id", None):
            raise ValueError(
                "this tokenizer has no '.' token to split sentences on; pass full_stop_id= the "
                "id that ends a sentence"
            )
    special, g = _special_ids(tokenizer), _gen(generator)
    out, run = [], []

    def flush():
        sentences, current = [], []
        for tok in run:
            current.append(tok)
            if tok == full_stop_id:
                sentences.append(current)
                current = []
        if current:
            sentences.append(current)
        for k in _randperm(len(sentences), g):
            out.extend(sentences[k])
        run.clear()

    for tok in ids:
        if tok in special:
            flush()
            out.append(tok)
        else:
            run.append(tok)
    flush()
    return out


def document_rotation(ids, tokenizer, *, generator=None) -> list[int]:
    """BART's document rotation: the text between the leading and trailing special tokens
    is rotated to start at a uniformly chosen token (offset in [1, n-1], fairseq).

    ids: one sequence (L,); returns a list of length L (unchanged if n < 2).
    """
    ids = _as_ids(ids, tokenizer)
    special = _special_ids(tokenizer)
    start, end = 0, len(ids)
    while start < end and ids[start] in special:
        start += 1
    while end > start and ids[end - 1] in special:
        end -= 1
    body = ids[start:end]
    if len(body) < 2:
        return list(ids)
    k = int(torch.randint(1, len(body), (), generator=_gen(generator)))
    return ids[:start] + body[k:] + body[:k] + ids[end:]


def bart_noise(ids, tokenizer, noises=("permute", "infill"), *, mask_p: float = 0.3,
               poisson_lambda: float = 3.0, generator=None, full_stop_id: int | None = None) -> list[int]:
    """Compose BART's noises in fairseq's order: permute -> mask / delete / infill -> rotate.

    noises: names from ``NOISES``; the default, infilling + sentence permutation, is BART's
    final pretraining recipe (Lewis et al. 2020, §5.1). ``mask_p`` is the word share for
    mask / delete / infill. ids: one sequence (L,); returns the noised list.
    """
    if isinstance(noises, str):
        noises = (noises,)
    unknown = [n for n in noises if n not in NOISES]
    if unknown or not noises:
        raise ValueError(f"unknown noise {unknown or noises!r}; choose from {', '.join(NOISES)}")
    out = _as_ids(ids, tokenizer)
    for name in NOISES:  # the canonical order, whatever order the caller listed them in
        if name not in noises:
            continue
        if name == "permute":
            out = sentence_permutation(out, tokenizer, full_stop_id=full_stop_id, generator=generator)
        elif name == "mask":
            out = token_masking(out, tokenizer, mask_p, generator=generator)
        elif name == "delete":
            out = token_deletion(out, tokenizer, mask_p, generator=generator)
        elif name == "infill":
            out = text_infilling(out, tokenizer, mask_p, poisson_lambda, generator=generator)
        else:
            out = document_rotation(out, tokenizer, generator=generator)
    return out


# --------------------------------------------------------------------------- T5


def _t5_counts(raw_length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    n_noise = min(max(round(raw_length * noise_density), 1), raw_length - 1)
    n_spans = max(1, round(n_noise / mean_span_length))
    return n_noise, n_spans


def _check_t5(raw_length, noise_density, mean_span_length):
    noise_density = _check_rate("noise_density", noise_density)
    if not (isinstance(mean_span_length, (int, float)) and not isinstance(mean_span_length, bool)
            and mean_span_length >= 1):
        raise ValueError(f"mean_span_length must be a number >= 1; got {mean_span_length!r}. T5 uses 3")
    if not isinstance(raw_length, int) or isinstance(raw_length, bool) or raw_length < 2:
        raise ValueError(
            f"span corruption needs at least 2 ordinary tokens (one kept, one noised); got "
            f"{raw_length!r}. Use longer sequences"
        )
    return noise_density


def t5_lengths(raw_length: int, noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[int, int]:
    """(input length, target length) of T5 span corruption on ``raw_length`` tokens.

    n_noise = clip(round(L * density), 1, L - 1), n_spans = max(1, round(n_noise / mean)).
    input = kept tokens + one sentinel per span + EOS; target = noise + spans + EOS.
    T5's reference values: 568 -> (512, 114), 141 -> (128, 29), 70 -> (64, 14)
    (Raffel et al. 2020; ``random_spans_helper`` in the T5 code base).
    """
    noise_density = _check_t5(raw_length, noise_density, mean_span_length)
    n_noise, n_spans = _t5_counts(raw_length, noise_density, mean_span_length)
    return raw_length - n_noise + n_spans + 1, n_noise + n_spans + 1


def t5_raw_length(inputs_length: int = 512, noise_density: float = 0.15, mean_span_length: float = 3.0) -> int:
    """The longest raw length whose corrupted input fits ``inputs_length`` (T5: 512 -> 568)."""
    if not isinstance(inputs_length, int) or inputs_length < 3:
        raise ValueError(f"inputs_length must be an integer >= 3; got {inputs_length!r}")
    raw = 2
    while t5_lengths(raw + 1, noise_density, mean_span_length)[0] <= inputs_length:
        raw += 1
    return raw


def _random_segmentation(n_items: int, n_segments: int, generator) -> list[int]:
    """Split n_items into n_segments positive parts, uniformly over compositions (T5)."""
    cuts = sorted(_choose(n_items - 1, n_segments - 1, generator))
    bounds = [0] + [c + 1 for c in cuts] + [n_items]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def _sentinels(tokenizer, needed: int) -> list[int]:
    """Ids of <extra_id_0..needed-1>, counting down from len(tokenizer) - 1 (T5's layout)."""
    vocab = tokenizer.get_vocab()
    have = 0
    while f"<extra_id_{have}>" in vocab:
        have += 1
    if have < needed:
        raise ValueError(
            f"span corruption needs {needed} sentinel ids (<extra_id_0>..<extra_id_{needed - 1}>) "
            f"but the tokenizer has {have}; train it with "
            f"ssledu.data.tokenize.train_tokenizer(..., sentinels={max(needed, 100)}) or use shorter "
            "sequences"
        )
    ids = [vocab[f"<extra_id_{k}>"] for k in range(needed)]
    top = len(tokenizer) - 1
    if ids != list(range(top, top - needed, -1)):
        raise ValueError(
            "the sentinels must count down from the top of the vocabulary (<extra_id_0> = "
            f"len(tokenizer) - 1 = {top}); got <extra_id_0> = {ids[0]}. Build the tokenizer "
            "with train_tokenizer(..., sentinels=n)"
        )
    return ids


def span_corruption(ids, tokenizer, noise_density: float = 0.15, mean_span_length: float = 3.0, *,
                    generator=None) -> dict:
    """T5's span corruption of one sequence: {"input_ids": list, "labels": list}.

    ids: one sequence (L,) of ordinary tokens (special tokens, e.g. a trailing [EOS], are
    kept in the input and never noised). The n ordinary tokens are cut into alternating
    kept / noise spans (kept first, both segmentations uniform, as T5's
    ``random_spans_noise_mask``). input = kept tokens, one sentinel per noise span, EOS;
    labels = sentinel + span for each span, EOS. Sentinel k is ``len(tokenizer) - 1 - k``.
    Lengths equal ``t5_lengths(n)``; ``span_reconstruct`` inverts it.
    """
    noise_density = _check_rate("noise_density", noise_density)
    ids = _as_ids(ids, tokenizer)
    special = _special_ids(tokenizer)
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError("span corruption ends input and target with EOS; the tokenizer has no eos_token")
    positions = [i for i, t in enumerate(ids) if t not in special]
    n = len(positions)
    _check_t5(n, noise_density, mean_span_length)
    n_noise, n_spans = _t5_counts(n, noise_density, mean_span_length)
    g = _gen(generator)
    noise_lengths = _random_segmentation(n_noise, n_spans, g)
    kept_lengths = _random_segmentation(n - n_noise, n_spans, g)
    # Kept span first, then noise span, alternating (T5).
    noisy, k = set(), 0
    for kept, noise in zip(kept_lengths, noise_lengths):
        k += kept
        noisy.update(positions[k:k + noise])
        k += noise
    # One sentinel per run of noised tokens in the sequence. A special token inside a span
    # (a [SEP] between two segments) stays in the input and splits the span in two, so
    # that the round trip stays exact; without such tokens there are exactly n_spans runs.
    starts = [i for i in sorted(noisy) if i - 1 not in noisy]
    sentinel = dict(zip(starts, _sentinels(tokenizer, len(starts))))
    inputs, labels = [], []
    for i, tok in enumerate(ids):
        if i in sentinel:
            inputs.append(sentinel[i])
            labels.append(sentinel[i])
        if i in noisy:
            labels.append(tok)
        else:
            inputs.append(tok)
    if not ids or ids[-1] != eos:
        inputs.append(eos)
    labels.append(eos)
    return {"input_ids": inputs, "labels": labels}


def span_reconstruct(input_ids, labels, tokenizer) -> list[int]:
    """Undo ``span_corruption``: put each sentinel's span back into the input.

    input_ids, labels: one example's lists (-100 in labels is ignored). Returns the
    original sequence closed by EOS (span_corruption adds one when the original has none).
    """
    vocab = tokenizer.get_vocab()
    sentinel_ids = {i for t, i in vocab.items() if t.startswith("<extra_id_")}
    target = [int(t) for t in labels if int(t) != IGNORE_INDEX]
    if target and target[-1] == tokenizer.eos_token_id:
        target = target[:-1]  # the EOS that closes the target
    spans: dict[int, list[int]] = {}
    current: list[int] = []
    for tok in target:
        if tok in sentinel_ids:
            current = spans.setdefault(tok, [])
        else:
            current.append(tok)
    out = []
    for tok in map(int, input_ids):
        out.extend(spans.get(tok, []) if tok in sentinel_ids else [tok])
    return out


# --------------------------------------------------------------------------- batches and loss


def shift_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs (B, L) from labels (B, L): start token, then labels[:, :-1]; -100 -> pad.

    Equal to ``transformers.models.bart.modeling_bart.shift_tokens_right`` (teacher forcing:
    the decoder reads the target one step behind).
    """
    shifted = torch.full_like(labels, decoder_start_token_id)  # (B, L)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_token_id)


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of decoder logits (B, L, V) over labels (B, L) != -100.

    This is what ``BartForConditionalGeneration(..., labels=labels).loss`` computes.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree; logits must "
            "be (B, L, V) for labels (B, L)"
        )
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)


class _SeededCollator:
    """A collator that owns a ``torch.Generator``: reproducible, resumable, forkable."""

    def __init__(self, tokenizer, seed: int, model, max_length):
        if model is not None and max_length is None:
            max_length = context_length(model, default=None)
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be a positive integer or None; got {max_length!r}")
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        self.vocab_size = vocab if isinstance(vocab, int) else len(tokenizer)
        self.tokenizer, self.seed, self.max_length = tokenizer, seed, max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.generator = torch.Generator().manual_seed(seed)

    def _rows(self, examples):
        """Per example: (ids list, word_ids list or None)."""
        if isinstance(examples, (str, bytes, Mapping)) or len(examples) == 0:
            raise ValueError(
                "a collator takes a non-empty list of examples (id lists or dicts with "
                f"'input_ids'); got {type(examples).__name__ if len(examples) else 'an empty list'}"
            )
        rows = []
        for i, ex in enumerate(examples):
            word_ids = None
            if isinstance(ex, Mapping):
                if "input_ids" not in ex:
                    raise ValueError(f"example dicts need an 'input_ids' key; got keys {sorted(ex)}")
                ids = check_ids(ex["input_ids"], what=f"examples[{i}]['input_ids']",
                                vocab_size=self.vocab_size).flatten().tolist()
                if "attention_mask" in ex:  # drop padding the example already carries
                    ids = ids[: int(torch.as_tensor(ex["attention_mask"]).sum())]
                word_ids = ex.get("word_ids")
            else:
                ids = check_ids(ex, what=f"examples[{i}]", vocab_size=self.vocab_size).flatten().tolist()
            if not ids:
                raise ValueError(f"examples[{i}] is empty; drop empty sequences before collating")
            rows.append((ids, word_ids))
        return rows

    def _check_length(self, i, n, what):
        if self.max_length is not None and n > self.max_length:
            raise ValueError(
                f"examples[{i}] gives a {what} of {n} tokens but the model takes at most "
                f"{self.max_length} positions (max_length); cut the data into shorter blocks "
                "(ssledu.data.blocks.pack_blocks) or build a model with more positions"
            )

    def _batch(self, inputs, labels, decoder_start) -> dict:
        enc = pad_batch(inputs, self.pad_id)  # input_ids, attention_mask (B, L_in)
        lab = pad_batch(labels, self.pad_id)
        target = lab["input_ids"].masked_fill(lab["attention_mask"] == 0, IGNORE_INDEX)  # (B, L_out)
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": target,
            "decoder_input_ids": shift_right(target, self.pad_id, decoder_start),
        }

    def state_dict(self) -> dict:
        """The generator's state, so that a resumed run corrupts as the original would."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore the state saved by ``state_dict``."""
        self.generator.set_state(state["generator"])

    def fork(self, seed: int = 0):
        """A copy with its own generator seeded by ``seed``; ``self`` is untouched
        (``evaluate`` scores on a fork, so evaluating never changes the training noise)."""
        twin = copy.copy(self)
        twin.generator = torch.Generator().manual_seed(seed)
        return twin


class BARTCollator(_SeededCollator):
    """List of id sequences -> a BART batch: noised input_ids, attention_mask, labels, decoder_input_ids.

    Examples: id lists / 1-D tensors (framed as [BOS] text [EOS] by
    ``encode_texts(tok, texts, add_bos=True)``) or dicts with "input_ids" (and optionally
    "word_ids", used when ``noises`` is infilling alone). labels = the original, padded
    with -100; decoder_input_ids =
    ``shift_right(labels, pad, decoder_start)`` with decoder_start = the model's
    ``decoder_start_token_id`` (EOS in BART) when a model is given, else the tokenizer's EOS.
    noises / mask_p / poisson_lambda as in ``bart_noise`` (default BART's final recipe).
    A fresh noise each call (one generator, seeded by ``seed``); use with ``num_workers=0``.
    """

    def __init__(self, tokenizer, noises=("infill",), *, mask_p: float = 0.3, poisson_lambda: float = 3.0,
                 seed: int = 0, model=None, max_length: int | None = None, full_stop_id: int | None = None):
        super().__init__(tokenizer, seed, model, max_length)
        if isinstance(noises, str):
            noises = (noises,)
        bad = [n for n in noises if n not in NOISES]
        if bad or not noises:
            raise ValueError(f"unknown noise {bad or list(noises)!r}; choose from {', '.join(NOISES)}")
        if {"mask", "infill"} & set(noises):
            _mask_token_id(tokenizer)
        if {"mask", "delete", "infill"} & set(noises):
            _check_rate("mask_p", mask_p)
        self.noises, self.mask_p, self.poisson_lambda = tuple(noises), mask_p, poisson_lambda
        self.full_stop_id = full_stop_id
        start = getattr(getattr(model, "config", None), "decoder_start_token_id", None)
        self.decoder_start = start if isinstance(start, int) else tokenizer.eos_token_id

    def __call__(self, examples) -> dict:
        inputs, labels = [], []
        for i, (ids, word_ids) in enumerate(self._rows(examples)):
            if word_ids is not None and self.noises == ("infill",):
                noised = text_infilling(ids, self.tokenizer, self.mask_p, self.poisson_lambda,
                                        generator=self.generator, word_ids=word_ids)
            else:
                noised = bart_noise(ids, self.tokenizer, self.noises, mask_p=self.mask_p,
                                    poisson_lambda=self.poisson_lambda, generator=self.generator,
                                    full_stop_id=self.full_stop_id)
            self._check_length(i, len(noised), "noised input")
            self._check_length(i, len(ids), "target")
            inputs.append(noised)
            labels.append(ids)
        return self._batch(inputs, labels, self.decoder_start)

    def __repr__(self):
        return (f"BARTCollator(noises={self.noises}, mask_p={self.mask_p}, "
                f"lambda={self.poisson_lambda}, seed={self.seed})")


class T5Collator(_SeededCollator):
    """List of id sequences -> a T5 span-corruption batch (input_ids, attention_mask, labels,
    decoder_input_ids). The decoder starts from [PAD], as in T5 (pass
    ``decoder_start_token_id=pad_id`` to a T5Config too). Defaults 0.15 / 3 from T5."""

    def __init__(self, tokenizer, noise_density: float = 0.15, mean_span_length: float = 3.0, *,
                 seed: int = 0, model=None, max_length: int | None = None):
        super().__init__(tokenizer, seed, model, max_length)
        _check_rate("noise_density", noise_density)
        _check_t5(2, noise_density, mean_span_length)
        self.noise_density, self.mean_span_length = noise_density, mean_span_length

    def __call__(self, examples) -> dict:
        inputs, labels = [], []
        for i, (ids, _) in enumerate(self._rows(examples)):
            out = span_corruption(ids, self.tokenizer, self.noise_density, self.mean_span_length,
                                  generator=self.generator)
            self._check_length(i, len(out["input_ids"]), "corrupted input")
            inputs.append(out["input_ids"])
            labels.append(out["labels"])
        return self._batch(inputs, labels, self.pad_id)


# --------------------------------------------------------------------------- ELECTRA


def rtd_inputs(input_ids: torch.Tensor, labels: torch.Tensor, *, logits: torch.Tensor | None = None,
               samples: torch.Tensor | None = None, generator=None,
               attention_mask: torch.Tensor | None = None) -> dict:
    """ELECTRA's discriminator batch from a masked-LM batch and the generator's output.

    input_ids, labels (B, L): an MLM batch (labels = original id at masked positions, -100
    elsewhere). Either ``samples`` (B, L) ids, or generator ``logits`` (B, L, V) to sample
    from (softmax, seeded by ``generator``; no gradient flows through the sample, as in the
    paper). Returns {"input_ids": the original with masked positions replaced by the samples,
    "labels": (B, L) long, 1 = replaced, 0 = original, -100 at padding, "attention_mask" if
    given}. A sample equal to the original counts as original (Clark et al. 2020, §2).
    """
    if input_ids.shape != labels.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and labels {tuple(labels.shape)} must match (B, L)")
    masked = labels != IGNORE_INDEX  # (B, L)
    if samples is None:
        if logits is None:
            raise ValueError("pass the generator's logits (B, L, V) or its samples (B, L)")
        if logits.shape[:-1] != labels.shape:
            raise ValueError(f"logits {tuple(logits.shape)} must be (B, L, V) for labels {tuple(labels.shape)}")
        g = _gen(generator)
        # sample where the generator lives (a CPU generator cannot drive a CUDA draw)
        probs = logits.detach()[masked].float().softmax(dim=-1)  # (N, V)
        probs = probs.to(g.device) if g is not None else probs
        drawn = (torch.multinomial(probs, 1, generator=g).squeeze(1).to(input_ids.device)  # (N,)
                 if len(probs) else torch.zeros(0, dtype=torch.long, device=input_ids.device))
        samples = input_ids.clone()
        samples[masked] = drawn
    elif samples.shape != labels.shape:
        raise ValueError(f"samples {tuple(samples.shape)} must be (B, L) like labels {tuple(labels.shape)}")
    original = torch.where(masked, labels, input_ids)  # (B, L)
    corrupted = torch.where(masked, samples.to(input_ids.dtype), original)
    target = (corrupted != original).long()
    if attention_mask is not None:
        target = target.masked_fill(attention_mask == 0, IGNORE_INDEX)
    out = {"input_ids": corrupted, "labels": target}
    if attention_mask is not None:
        out["attention_mask"] = attention_mask
    return out


def electra_loss(generator_logits: torch.Tensor, generator_labels: torch.Tensor,
                 discriminator_logits: torch.Tensor, discriminator_labels: torch.Tensor,
                 discriminator_weight: float = 50.0):
    """ELECTRA's loss L = L_MLM(generator) + lambda * L_Disc, lambda = 50 (Clark et al. 2020).

    generator_logits (B, L, V), generator_labels (B, L) with -100 off the masked positions;
    discriminator_logits (B, L) (or (B, L, 1)), discriminator_labels (B, L) in {0, 1, -100}.
    L_Disc is the binary cross-entropy averaged over all real (non -100) positions.
    Returns (loss, {"generator_loss", "discriminator_loss"} detached 0-d tensors).
    """
    if isinstance(discriminator_weight, bool) or not isinstance(discriminator_weight, (int, float)) \
            or not discriminator_weight >= 0:
        raise ValueError(
            f"discriminator_weight must be a number >= 0; got {discriminator_weight!r}. ELECTRA uses 50"
        )
    gen = seq2seq_loss(generator_logits, generator_labels)
    d_logits = discriminator_logits.squeeze(-1) if discriminator_logits.dim() == 3 else discriminator_logits
    if d_logits.shape != discriminator_labels.shape:
        raise ValueError(
            f"discriminator logits {tuple(d_logits.shape)} and labels "
            f"{tuple(discriminator_labels.shape)} must be (B, L)"
        )
    real = discriminator_labels != IGNORE_INDEX
    disc = F.binary_cross_entropy_with_logits(d_logits[real].float(), discriminator_labels[real].float())
    loss = gen + discriminator_weight * disc
    return loss, {"generator_loss": gen.detach(), "discriminator_loss": disc.detach()}


# --------------------------------------------------------------------------- deletion prediction


def deletion_prediction(ids, tokenizer, rate: float = 0.1, *, generator=None) -> dict:
    """Delete ``round(rate * n)`` of the n ordinary tokens (at least 1, at most n - 1);
    label each kept token 1 if something was deleted right before it, else 0.

    ids: one sequence (L,); special tokens are never deleted. Returns {"input_ids": list,
    "labels": list of 0/1 of the same length}. A deletion after the last kept token is
    marked on nothing; frame sequences with a closing [EOS] so every gap is marked.
    rate 0.1: the share the token-deletion pretext task is usually run with.
    """
    rate = _check_rate("rate", rate)
    ids = _as_ids(ids, tokenizer)
    special = _special_ids(tokenizer)
    ordinary = [i for i, t in enumerate(ids) if t not in special]
    n = len(ordinary)
    if n < 2:
        raise ValueError(f"deletion prediction needs at least 2 ordinary tokens; got {n}. Use longer sequences")
    k = min(max(round(rate * n), 1), n - 1)
    deleted = {ordinary[j] for j in _choose(n, k, _gen(generator))}
    return deletion_targets(ids, deleted)


def deletion_targets(ids, deleted) -> dict:
    """Apply a given deletion: ids (L,) and the set of positions to delete -> input_ids, labels."""
    out, labels, gap = [], [], False
    for i, tok in enumerate(ids):
        if i in deleted:
            gap = True
            continue
        out.append(int(tok))
        labels.append(int(gap))
        gap = False
    return {"input_ids": out, "labels": labels}


def deletion_no_skill_accuracy(n_tokens: int, rate: float = 0.1, *, n_special: int = 2,
                               closed: bool = True) -> float:
    """Exact expected accuracy of the best guess that ignores the input: "nothing deleted here".

    n_tokens ordinary tokens, k = clip(round(rate * n), 1, n - 1) deleted uniformly, n_special
    special tokens kept. Deleted tokens form runs; each run marks one kept token. With k of n
    chosen, E[runs] = k (n - k + 1) / n (k minus the expected adjacent deleted pairs,
    (n - 1) k (k - 1) / (n (n - 1))). ``closed``: a special token closes the sequence, so a
    run at the end is marked too; otherwise subtract P(last deleted) = k / n.
    The number of kept tokens M = n - k + n_special is fixed, so accuracy = 1 - E[runs] / M.
    """
    rate = _check_rate("rate", rate)
    if not isinstance(n_tokens, int) or n_tokens < 2:
        raise ValueError(f"n_tokens must be an integer >= 2; got {n_tokens!r}")
    n = n_tokens
    k = min(max(round(rate * n), 1), n - 1)
    runs = k * (n - k + 1) / n - (0.0 if closed else k / n)
    kept = n - k + n_special
    return 1.0 - runs / kept


class DeletionCollator(_SeededCollator):
    """List of id sequences -> a token-classification batch for deletion prediction:
    input_ids, attention_mask, labels (B, L) in {0, 1}, -100 at padding."""

    def __init__(self, tokenizer, rate: float = 0.1, *, seed: int = 0, model=None,
                 max_length: int | None = None):
        super().__init__(tokenizer, seed, model, max_length)
        self.rate = _check_rate("rate", rate)

    def __call__(self, examples) -> dict:
        inputs, labels = [], []
        for ids, _ in self._rows(examples):
            out = deletion_prediction(ids, self.tokenizer, self.rate, generator=self.generator)
            inputs.append(out["input_ids"])
            labels.append(out["labels"])
        enc = pad_batch(inputs, self.pad_id)
        lab = pad_batch(labels, 0)["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": lab}


# --------------------------------------------------------------------------- autoencoders and reconstruction


def pca_reconstruction_error(x_train, k: int, x_eval=None) -> float:
    """Mean squared error per entry of the best rank-``k`` affine reconstruction: the limit
    of a linear autoencoder with a ``k``-wide bottleneck.

    x_train: (N, D) data the reconstruction is fitted on; x_eval: (M, D) data it is scored
    on (default x_train). On x_train this is exact by Eckart-Young: the sum of the D - k
    smallest eigenvalues of the (biased) covariance, divided by D; a linear autoencoder
    trained with squared error can reach it and never go below (Baldi & Hornik 1989).
    """
    x = torch.as_tensor(x_train, dtype=torch.float64)
    if x.dim() != 2 or len(x) < 2:
        raise ValueError(f"x_train must be an (N, D) matrix with N >= 2; got shape {tuple(x.shape)}")
    D = x.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= D:
        raise ValueError(f"k must be an integer bottleneck width in [0, {D}] (D = x_train.shape[1]); got {k!r}")
    mu = x.mean(0)
    cov = (x - mu).T @ (x - mu) / len(x)  # (D, D)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    if x_eval is None:
        return float(evals[: D - k].clamp(min=0).sum() / D)
    xe = torch.as_tensor(x_eval, dtype=torch.float64)
    if xe.dim() != 2 or xe.shape[1] != D:
        raise ValueError(f"x_eval must be (M, {D}) like x_train; got shape {tuple(xe.shape)}")
    top = evecs[:, D - k:]  # (D, k): the k leading directions
    recon = (xe - mu) @ top @ top.T + mu  # (M, D)
    return float(((recon - xe) ** 2).mean())


def corrupt_vectors(x: torch.Tensor, kind: str = "mask", level: float = 0.25, *, generator=None) -> torch.Tensor:
    """The denoising autoencoder's corruptions of real vectors x (N, D) (Vincent et al. 2008).

    kind "mask": each entry set to 0 with probability ``level`` (masking noise);
    kind "gaussian": x + level * N(0, 1) (isotropic Gaussian noise, level = sigma).
    Returns a new tensor of x's shape; x is unchanged.
    """
    if kind not in ("mask", "gaussian"):
        raise ValueError(f"kind must be 'mask' or 'gaussian'; got {kind!r}")
    if kind == "mask":
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level < 1:
            raise ValueError(f"level (the share of entries set to 0) must be in [0, 1); got {level!r}. "
                             "Vincent et al. 2008 use 0.1 to 0.5")
        return x * (torch.rand(x.shape, generator=_gen(generator)) >= level).to(x.dtype)
    if isinstance(level, bool) or not isinstance(level, (int, float)) or level < 0:
        raise ValueError(f"level (the Gaussian sigma) must be a number >= 0; got {level!r}")
    return x + level * torch.randn(x.shape, generator=_gen(generator)).to(x.dtype)


def exact_match(generated: torch.Tensor, labels: torch.Tensor, *, pad_token_id: int,
                decoder_start_token_id: int | None = None) -> torch.Tensor:
    """Per example, True when a generated sequence equals its target exactly.

    generated: (B, T) from ``model.generate`` (it starts with the decoder start token, which
    is dropped when ``decoder_start_token_id`` is given, and is padded after EOS); labels:
    (B, L) targets padded with -100. Returns a bool tensor (B,). A sequence that is too
    short, too long or differs in one token does not match.
    """
    if generated.dim() != 2 or labels.dim() != 2 or len(generated) != len(labels):
        raise ValueError(f"generated (B, T) and labels (B, L) must be 2-D with the same B; got "
                         f"{tuple(generated.shape)} and {tuple(labels.shape)}")
    out = []
    for g, y in zip(generated.tolist(), labels.tolist()):
        if decoder_start_token_id is not None and g and g[0] == decoder_start_token_id:
            g = g[1:]
        target = [t for t in y if t != IGNORE_INDEX]
        while g and g[-1] == pad_token_id:
            g = g[:-1]
        out.append(g == target)
    return torch.tensor(out, dtype=torch.bool)


# --------------------------------------------------------------------------- training helpers (chapter 05)


class ELECTRA(torch.nn.Module):
    """ELECTRA's generator and discriminator as one module that ``fit`` trains (Clark et al. 2020).

    ``model(input_ids, attention_mask, labels)`` takes a masked-LM batch (``mlm.MLMCollator``:
    labels = the original id at the masked positions, -100 elsewhere), lets the generator
    (a ``models.electra(..., head="generator")``) fill the masked positions by sampling
    (``rtd_inputs``, seeded by ``seed``; no gradient through the sample) and the
    discriminator (``head="discriminator"``) label every position. Returns a namespace with
    ``loss`` (``electra_loss``: L_MLM + ``discriminator_weight`` * L_Disc),
    ``generator_loss``, ``discriminator_loss`` and ``replaced`` (share of real positions
    replaced). ``config`` is the discriminator's, so ``fit`` checks ids and positions against
    it. The paper also ties the two networks' token embeddings; here they stay separate.
    Train with ``fit(..., loss_fn=ELECTRA.fit_loss)`` to log the two losses; keep
    ``.discriminator`` afterwards.
    """

    def __init__(self, generator, discriminator, *, discriminator_weight: float = 50.0, seed: int = 0):
        super().__init__()
        for name, net, cls in (("generator", generator, "ElectraForMaskedLM"),
                               ("discriminator", discriminator, "ElectraForPreTraining")):
            if not hasattr(net, "config") or not callable(net):
                raise TypeError(f"{name} must be a transformers model ({cls}, from models.electra); "
                                f"got {type(net).__name__}")
        gv, dv = generator.config.vocab_size, discriminator.config.vocab_size
        if gv != dv:
            raise ValueError(f"generator and discriminator must share the vocabulary; got {gv} and {dv} ids. "
                             "Build both from the same tokenizer")
        self.generator, self.discriminator = generator, discriminator
        self.discriminator_weight = discriminator_weight
        self.sampler = torch.Generator().manual_seed(seed)

    @property
    def config(self):
        return self.discriminator.config

    def get_input_embeddings(self):
        return self.discriminator.get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, labels=None, **_):
        from types import SimpleNamespace

        if labels is None:
            raise ValueError("ELECTRA needs an MLM batch with labels (mlm.MLMCollator)")
        g_logits = self.generator(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L, V)
        rtd = rtd_inputs(input_ids, labels, logits=g_logits, generator=self.sampler,
                         attention_mask=attention_mask)
        d_logits = self.discriminator(input_ids=rtd["input_ids"], attention_mask=attention_mask).logits  # (B, L)
        loss, parts = electra_loss(g_logits, labels, d_logits, rtd["labels"], self.discriminator_weight)
        real = rtd["labels"] != IGNORE_INDEX
        return SimpleNamespace(loss=loss, logits=d_logits, replaced=rtd["labels"][real].float().mean().detach(),
                               **parts)

    @staticmethod
    def fit_loss(model, batch):
        """``loss_fn`` for ``fit``: (loss, {generator_loss, discriminator_loss, replaced})."""
        out = model(**batch)
        return out.loss, {"generator_loss": out.generator_loss, "discriminator_loss": out.discriminator_loss,
                          "replaced": out.replaced}


def steps_in_cpu_budget(model, collate_fn, data, cpu_seconds: float, *, batch_size: int = 32,
                        trial_steps: int = 6, loss_fn=None) -> tuple[int, float]:
    """How many training steps of ``model`` fit in ``cpu_seconds`` of CPU time.

    Times ``trial_steps`` AdamW steps (forward, backward, update; the collation included) of
    a deep copy of ``model`` on batches of ``data`` with ``time.process_time`` (CPU seconds of
    this process: unlike the wall clock, not inflated by other programs on a shared machine)
    and returns (steps, CPU seconds per step), skipping the first two steps (warm-up).
    ``model`` and ``collate_fn`` are untouched (a collator with ``fork`` is timed on a fork).
    """
    import time

    if isinstance(cpu_seconds, bool) or not isinstance(cpu_seconds, (int, float)) or cpu_seconds <= 0:
        raise ValueError(f"cpu_seconds must be a positive number of seconds; got {cpu_seconds!r}")
    if not isinstance(trial_steps, int) or trial_steps < 3:
        raise ValueError(f"trial_steps must be an integer >= 3 (the first two are not timed); got {trial_steps!r}")
    if len(data) < batch_size:
        raise ValueError(f"data holds {len(data)} examples, fewer than one batch of {batch_size}")
    net = copy.deepcopy(model).train()
    coll = collate_fn.fork(0) if hasattr(collate_fn, "fork") else collate_fn
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    times = []
    for s in range(trial_steps):
        start = time.process_time()
        rows = [data[(s * batch_size + i) % len(data)] for i in range(batch_size)]
        batch = coll(rows)
        loss = loss_fn(net, batch) if loss_fn is not None else net(**batch).loss
        loss = loss[0] if isinstance(loss, tuple) else loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.process_time() - start)
    per_step = sum(times[2:]) / len(times[2:])
    return max(1, int(cpu_seconds / per_step)), per_step

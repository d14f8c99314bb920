"""Causal language modelling (GPT): predict every token from the tokens before it.

The objective is next-token prediction: for a sequence x_1..x_L the loss is the mean of
-log p(x_t | x_<t) over t = 2..L. The first token of a window is never predicted (it has
no left context); prepend a [BOS] token to get the first real word scored.

What this module gives:

- batches: ``causal_lm_batch`` / ``clm_collator`` (labels = input_ids, padding -> -100,
  NO shift: ``GPT2LMHeadModel`` shifts inside), ``pack_documents`` (GPT-2 style blocks),
  ``shift_for_next_token`` (the shift written out by hand);
- evaluation: ``per_position_nll``, ``perplexity`` (sliding window, as in the Hugging Face
  perplexity guide), ``compare_to_floor`` (a model against toyworld's exact Bayes floor);
- sampling: ``filter_logits`` (temperature -> top-k -> top-p), ``sample_next``,
  ``generate`` (a hand-written loop with a key/value cache), ``next_token_distribution``.

Sources: GPT (Radford et al., 2018) and GPT-2 (Radford et al., 2019) for the objective and
document packing; top-k from Fan et al. (2018); top-p (nucleus) from Holtzman et al. (2020).
Every model here only needs ``model(input_ids=..., attention_mask=...).logits`` of shape
(B, L, V), so a ``GPT2LMHeadModel`` and ``ssledu.baselines.LSTMLanguageModel`` both work.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ssledu.data.blocks import pack_blocks, pad_blocks

__all__ = [
    "IGNORE_INDEX",
    "causal_lm_batch",
    "clm_collator",
    "pack_documents",
    "shift_for_next_token",
    "per_position_nll",
    "perplexity",
    "filter_logits",
    "sample_next",
    "generate",
    "next_token_distribution",
    "compare_to_floor",
]

IGNORE_INDEX = -100  # label value that torch's cross_entropy (and transformers) skip


# --- batches -----------------------------------------------------------------------


def _as_id_list(example) -> list[int]:
    if isinstance(example, dict):
        if "input_ids" not in example:
            raise KeyError(f"an example dict needs an 'input_ids' key; got keys {sorted(example)}")
        example = example["input_ids"]
    if isinstance(example, torch.Tensor):
        return example.reshape(-1).tolist()
    return [int(t) for t in example]


def causal_lm_batch(examples, pad_id: int, *, max_length: int | None = None) -> dict:
    """Pad token sequences into a batch for next-token prediction.

    examples: a list of token-id lists (or 1-D tensors, or dicts with "input_ids"), or a
        LongTensor (B, L) of packed blocks.
    pad_id: the id used for padding on the right.
    max_length: truncate longer sequences to this many tokens (keep the start).

    Returns dict(input_ids (B, L), attention_mask (B, L), labels (B, L)) where labels is a
    copy of input_ids with -100 at padded positions and NO shift: ``GPT2LMHeadModel`` (and
    ``LSTMLanguageModel``) compare logits[:, :-1] with labels[:, 1:] themselves.
    Padding is found by position, not by id, so pad_id == eos_id keeps the real EOS labels.
    """
    if isinstance(examples, torch.Tensor):
        if examples.dim() != 2:
            raise ValueError(
                f"a tensor of blocks must be 2-D (B, L); got shape {tuple(examples.shape)}"
            )
        examples = list(examples)
    seqs = [_as_id_list(e) for e in examples]
    if not seqs:
        raise ValueError("causal_lm_batch got no examples")
    if max_length is not None:
        seqs = [s[:max_length] for s in seqs]
    if any(len(s) == 0 for s in seqs):
        raise ValueError("causal_lm_batch got an empty sequence; drop empty texts before batching")
    L = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)  # (B, L)
    attention_mask = torch.zeros((len(seqs), L), dtype=torch.long)  # (B, L)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, : len(s)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)  # (B, L), unshifted
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def clm_collator(pad_id: int, *, max_length: int | None = None):
    """A ``collate_fn`` for DataLoader / ``ssledu.train.fit``: ``causal_lm_batch`` with
    ``pad_id`` (and ``max_length``) bound. Picklable, so worker processes can use it."""
    return functools.partial(causal_lm_batch, pad_id=pad_id, max_length=max_length)


def pack_documents(token_lists, block_size: int, *, eos_id: int, respect_documents: bool = False):
    """Concatenate documents, each ending in ``eos_id``, and cut the stream into blocks.

    token_lists: list of token-id lists (one per document); an EOS is appended to each
        document that does not already end with one.
    block_size: tokens per block; the tail that does not fill a block is dropped.
    respect_documents: False (GPT-2) returns a LongTensor (N, block_size). As in GPT-2, a
        packed block lets attention cross document boundaries: the model sees the end of
        one document before the start of the next, and the EOS between them tells it that
        a new text begins; no position reset or per-document attention mask is applied.
        True returns a list of rows (lists of at most block_size ids), each a piece of one
        document, unpadded (``clm_collator`` pads each batch); one-token pieces, which
        predict nothing, are left out.
    Uses ``ssledu.data.blocks.pack_blocks`` / ``pad_blocks``.
    """
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(
            f"block_size must be an integer >= 2 (one context + one target); got {block_size!r}"
        )
    docs = []
    for doc in token_lists:
        doc = _as_id_list(doc)
        if not doc or doc[-1] != eos_id:
            doc = doc + [eos_id]
        docs.append(doc)
    if not respect_documents:
        return pack_blocks(docs, block_size)  # (N, block_size)
    padded = pad_blocks(docs, block_size)
    rows = [
        ids[mask.bool()].tolist()
        for ids, mask in zip(padded["input_ids"], padded["attention_mask"])
    ]
    return [r for r in rows if len(r) >= 2]


def shift_for_next_token(input_ids: torch.Tensor):
    """The shift written out: (inputs, targets) = (ids[..., :-1], ids[..., 1:]).

    Position t of ``inputs`` is trained to predict position t of ``targets``, i.e. the
    token after it. ``GPT2LMHeadModel(labels=...)`` does this inside; use this function
    only with a model that does not (or to see the shift).
    """
    if input_ids.shape[-1] < 2:
        raise ValueError(
            "need at least 2 tokens to form one (input, target) pair; "
            f"got shape {tuple(input_ids.shape)}"
        )
    return input_ids[..., :-1], input_ids[..., 1:]


# --- evaluation --------------------------------------------------------------------


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def per_position_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
    """Negative log-likelihood (nats) of each token given the tokens before it.

    input_ids, attention_mask: (B, L), padding on the right.
    Returns a float tensor (B, L) aligned with input_ids: entry [b, t] is
    -log p(input_ids[b, t] | input_ids[b, :t]); it is 0 at t = 0 (never predicted) and at
    padded positions. Gradients flow; wrap in ``torch.no_grad()`` for evaluation.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L, V)
    return _nll_from_logits(logits, input_ids, attention_mask)


def _nll_from_logits(logits, input_ids, attention_mask):
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, L-1, V) predicts tokens 1..L-1
    nll = -logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, L-1)
    nll = nll * attention_mask[:, 1:].to(nll.dtype)
    return F.pad(nll, (1, 0))  # (B, L): nothing predicts position 0


def _model_context(model) -> int | None:
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _as_streams(data) -> list[list[int]]:
    if isinstance(data, torch.Tensor):
        if data.dim() == 1:
            return [data.tolist()]
        if data.dim() == 2:
            return data.tolist()
        raise ValueError(
            f"token tensor must be 1-D (one stream) or 2-D (blocks); got shape {tuple(data.shape)}"
        )
    data = list(data)
    if data and isinstance(data[0], int):  # a single stream of ids
        return [data]
    return [_as_id_list(d) for d in data]


def _windows(n: int, context: int, stride: int):
    """(begin, end, first_scored) for each window over a stream of n tokens (HF guide)."""
    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + context, n)
        yield begin, end, max(prev_end, begin + 1)
        prev_end = end
        if end == n:
            break


@torch.no_grad()
def perplexity(
    model,
    token_lists_or_blocks,
    *,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int = 16,
    device=None,
) -> dict:
    """Token-weighted mean NLL and perplexity of a model on a corpus.

    token_lists_or_blocks: one stream of ids, a list of token-id lists (documents), or a
        LongTensor (N, L) of blocks. Each stream is scored on its own; its first token is
        never predicted (prepend [BOS] to score the first word).
    context: the longest window the model sees; default the model's ``n_positions`` (no
        limit for a model without one, e.g. an LSTM).
    stride: how far the window moves; default context // 2. Each token is scored exactly
        once, with as much left context as its window allows, as in the Hugging Face
        perplexity guide. stride == context gives non-overlapping chunks, whose first
        tokens are not scored.

    Returns dict(nll=mean nats per scored token, ppl=exp(nll), n_tokens=number scored).
    """
    device = torch.device(device) if device is not None else _model_device(model)
    if context is None:
        context = _model_context(model)
    streams = _as_streams(token_lists_or_blocks)
    longest = max((len(s) for s in streams), default=0)
    if context is None:
        context = max(longest, 2)
    if context < 2:
        raise ValueError(f"context must be >= 2 tokens; got {context}")
    if stride is None:
        stride = max(1, context // 2)
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in [1, context={context}]; got {stride}")

    windows = []  # (ids of the window, index of its first scored token)
    for s in streams:
        for begin, end, first in _windows(len(s), context, stride):
            if end - first > 0:
                windows.append((s[begin:end], first - begin))

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(windows), batch_size):
            chunk = windows[i : i + batch_size]
            batch = causal_lm_batch([w for w, _ in chunk], pad_id=0)
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            nll = per_position_nll(model, ids, mask)  # (B, L)
            scored = mask.clone()
            for j, (_, first) in enumerate(chunk):
                scored[j, :first] = 0  # already scored by an earlier window (or position 0)
            total += float((nll.double() * scored).sum())
            count += int(scored.sum())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no token was scored: every stream has fewer than 2 tokens; prepend [BOS]")
    mean = total / count
    return {"nll": mean, "ppl": math.exp(mean), "n_tokens": count}


# --- sampling ----------------------------------------------------------------------


def filter_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
):
    """Reshape a next-token distribution for sampling: temperature -> top-k -> top-p.

    logits: (..., V). temperature > 0 divides the logits (< 1 sharpens, > 1 flattens).
    top_k > 0 keeps the k largest logits (ties at the k-th value are kept); 0 = off.
    top_p < 1 keeps the smallest set of most likely tokens whose probability reaches
    top_p (nucleus sampling), always at least one token; 1.0 = off.

    Returns float logits (..., V) with -inf at removed tokens; the same numbers as
    transformers' TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper.
    """
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0; got {temperature}. For the argmax use greedy=True"
        )
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 = off); got {top_k!r}")
    if not 0.0 <= top_p <= 1.0:
        raise ValueError(f"top_p must be in [0, 1] (1 = off); got {top_p}")
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        # Sorted from least to most likely, the tokens whose running total stays within
        # 1 - top_p form the tail to drop; what remains has mass >= top_p.
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False)  # (..., V)
        tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = tail_mass <= 1 - top_p
        drop_sorted[..., -1] = False  # the most likely token always stays
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from logits (B, V): argmax if ``greedy``, else a draw from the
    filtered distribution (see ``filter_logits``). Returns a LongTensor (B,).
    ``generator=None`` draws from torch's global generator (as ``model.generate`` does)."""
    if greedy:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    sliding: bool = False,
    suppress_ids: Sequence[int] | None = None,
) -> torch.Tensor:
    """Continue ``input_ids`` token by token: the sampling loop written out.

    input_ids: (L,) or (B, L) prompt ids, all prompts of the same length (no padding).
    max_new_tokens: how many tokens to add at most.
    temperature, top_k, top_p, greedy: see ``filter_logits`` and ``sample_next``. Unlike
        ``model.generate`` (which fills in top_k=50), top_k defaults to 0 = off.
    eos_id: a sequence stops after emitting it; later positions are filled with eos_id,
        and the loop ends when every sequence has stopped.
    generator / seed: the randomness for sampling; with neither, torch's global generator
        is used, so ``torch.manual_seed(s)`` reproduces ``model.generate`` draws.
    use_cache: feed only the newest token and reuse the keys/values of earlier ones
        (``past_key_values``); False recomputes the whole sequence each step.
    sliding: allow text longer than the model's context (``n_positions``): once the text
        is that long, each step reads only its last ``n_positions - 1`` tokens (nanoGPT's
        ``generate`` crops its input the same way). One less than the context, because a
        model trained with ``labels = input_ids`` on blocks of ``n_positions`` tokens never
        learns a prediction at its last position (no token follows it in the block); the
        ``sliding=False`` limit below never reads that position either. Once the window
        slides, the cache no longer applies and every step recomputes the window.
        False (default) raises when prompt + max_new_tokens exceeds the context.
    suppress_ids: token ids never to generate (e.g. the special tokens of a character
        model): their logits become -inf before temperature and filtering, as with
        ``model.generate(suppress_tokens=...)``.

    Returns the prompt followed by the new tokens, (L + n) or (B, L + n), n <= max_new_tokens.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0; got {max_new_tokens}")
    input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    squeeze = input_ids.dim() == 1
    ids = input_ids[None] if squeeze else input_ids  # (B, L)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(
            f"input_ids must have shape (L,) or (B, L) with L >= 1; got {tuple(input_ids.shape)}. "
            "Start from [BOS] for an empty prompt"
        )
    limit = _model_context(model)
    if limit is not None and ids.shape[1] + max_new_tokens > limit and not sliding:
        raise ValueError(
            f"prompt ({ids.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds the model's "
            f"context of {limit} positions; shorten the prompt, generate fewer tokens, or pass "
            "sliding=True to read only the last positions"
        )
    device = _model_device(model)
    ids = ids.to(device)
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    suppress = None
    if suppress_ids is not None and len(suppress_ids) > 0:
        suppress = torch.as_tensor(list(suppress_ids), dtype=torch.long, device=device)

    was_training = model.training
    model.eval()
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)  # (B,)
    past, step_input = None, ids
    try:
        for _ in range(max_new_tokens):
            mask = torch.ones_like(ids)  # (B, L) no padding: a generated [PAD] is a real token
            if limit is not None and ids.shape[1] >= limit:  # sliding: the last limit - 1 tokens
                window = ids[:, 1 - limit :]  # (B, limit - 1)
                out = model(input_ids=window, attention_mask=torch.ones_like(window))
            elif use_cache:
                out = model(
                    input_ids=step_input, attention_mask=mask, past_key_values=past, use_cache=True
                )
                past = out.past_key_values
            else:
                out = model(input_ids=ids, attention_mask=mask)
            logits = out.logits[:, -1].float()  # (B, V) the distribution of the next token
            if suppress is not None:
                logits = logits.index_fill(-1, suppress, float("-inf"))  # out of place
            nxt = sample_next(
                logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                greedy=greedy,
                generator=generator,
            )  # (B,)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done = done | (nxt == eos_id)
            ids = torch.cat([ids, nxt[:, None]], dim=1)  # (B, L + 1)
            step_input = nxt[:, None]  # (B, 1) with a cache only the new token goes in
            if eos_id is not None and bool(done.all()):
                break
    finally:
        model.train(was_training)
    return ids[0] if squeeze else ids


@torch.no_grad()
def next_token_distribution(model, tokenizer, prompt: str, k: int = 10, *, add_bos: bool = True):
    """The model's k most likely next tokens after ``prompt``: a list of (token, prob).

    The prompt is encoded without special tokens; [BOS] is put in front when ``add_bos``
    and the tokenizer has one (the convention the course trains with). Tokens are shown
    as the tokenizer's pieces (``convert_ids_to_tokens``). Sorted by probability, highest first.
    """
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if add_bos and getattr(tokenizer, "bos_token_id", None) is not None:
        ids = [tokenizer.bos_token_id] + ids
    if not ids:
        raise ValueError(
            "the prompt is empty and the tokenizer has no [BOS]; give at least one token"
        )
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()  # (V,)
    finally:
        model.train(was_training)
    probs = logits.softmax(-1)
    top = torch.topk(probs, min(k, probs.numel()))
    tokens = tokenizer.convert_ids_to_tokens(top.indices.tolist())
    return list(zip(tokens, top.values.tolist()))


# --- the exact floor on toyworld ---------------------------------------------------

_KINDS_ORDER = ("backward_copy", "forward_copy", "free", "eos")


@torch.no_grad()
def compare_to_floor(
    model, tokenizer, texts: Sequence[str], world=None, *, batch_size: int = 32
) -> dict:
    """A causal LM's loss on toyworld texts next to the exact Bayes floor.

    model: a causal LM trained on [BOS] w1 .. wn [EOS] sequences.
    tokenizer: a word-level tokenizer (``train_tokenizer(..., kind="word")``), so that each
        word is one token and the model's loss per token is a loss per word.
    texts: toyworld texts; world: the ``World`` that generated them (None = default).

    Every word and the final [EOS] are predicted. The floor is
    ``ssledu.data.toyworld.word_nlls`` (exact -log p of each word given its prefix, last
    entry = end of text), the lowest loss any causal model can reach in expectation.
    Returns dict with overall ``model_nll``, ``floor_nll``, ``gap`` (nats per token),
    ``accuracy`` (argmax = true next token), ``n_tokens``, and ``by_kind``: for each
    position kind (backward_copy, forward_copy, free, plus eos) a dict of the same four
    numbers (model_nll, floor_nll, accuracy, n_tokens).
    """
    from ssledu.data import toyworld

    texts = list(texts)
    if not texts:
        raise ValueError("compare_to_floor needs at least one text")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ValueError(
            "the tokenizer needs [BOS] and [EOS] tokens; build it with ssledu.data.tokenize"
        )
    seqs, floors, kinds = [], [], []
    for text in texts:
        words = tokenizer(text, add_special_tokens=False)["input_ids"]
        n_words = len(text.split())
        if len(words) != n_words:
            raise ValueError(
                f"the tokenizer splits a {n_words}-word text into {len(words)} tokens; "
                "compare_to_floor needs one token per word: use train_tokenizer(texts, kind='word')"
            )
        seqs.append([bos] + words + [eos])
        floors.append(toyworld.word_nlls(text, world=world))  # n_words + 1 (last = EOS)
        kinds.append(list(toyworld.position_kinds(text, world=world)) + ["eos"])

    device = _model_device(model)
    was_training = model.training
    model.eval()
    rows = []  # (kind, model nll, floor nll, correct) per predicted token
    try:
        for i in range(0, len(seqs), batch_size):
            batch = causal_lm_batch(seqs[i : i + batch_size], pad_id=tokenizer.pad_token_id or 0)
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits  # (B, L, V)
            nll = _nll_from_logits(logits, ids, mask).cpu()  # (B, L)
            correct = (logits[:, :-1].argmax(-1) == ids[:, 1:]).cpu()  # (B, L-1)
            for j, seq in enumerate(seqs[i : i + batch_size]):
                n, k = len(seq), i + j  # predicted positions 1..n-1: the words, then [EOS]
                rows += zip(kinds[k], nll[j, 1:n].tolist(), floors[k], correct[j, : n - 1].tolist())
    finally:
        model.train(was_training)

    def summary(selected):
        n = len(selected)
        return {
            "model_nll": sum(r[1] for r in selected) / n,
            "floor_nll": sum(r[2] for r in selected) / n,
            "accuracy": sum(r[3] for r in selected) / n,
            "n_tokens": n,
        }

    result = summary(rows)
    result["gap"] = result["model_nll"] - result["floor_nll"]
    present = {r[0] for r in rows}
    order = [k for k in _KINDS_ORDER if k in present] + sorted(present - set(_KINDS_ORDER))
    result["by_kind"] = {kind: summary([r for r in rows if r[0] == kind]) for kind in order}
    return result

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

from ssledu.conventions import IGNORE_INDEX, check_ids, context_length, eval_mode, pad_batch
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
    "sampling_loop",
    "next_token_distribution",
    "compare_to_floor",
]

# IGNORE_INDEX (-100, skipped by cross_entropy) lives in ssledu.conventions; re-exported here.


# --- batches -----------------------------------------------------------------------


def _as_id_list(example, what: str = "example", vocab_size: int | None = None) -> list[int]:
    if isinstance(example, dict):
        if "input_ids" not in example:
            raise KeyError(f"an example dict needs an 'input_ids' key; got keys {sorted(example)}")
        example = example["input_ids"]
    # strings, floats, negative ids and ids past the vocabulary fail here with the fix
    return check_ids(example, what=what, vocab_size=vocab_size).reshape(-1).tolist()


def causal_lm_batch(examples, pad_id: int, *, max_length: int | None = None,
                    vocab_size: int | None = None, context: int | None = None) -> dict:
    """Pad token sequences into a batch for next-token prediction.

    examples: a list of token-id lists (or 1-D tensors, or dicts with "input_ids"), or a
        LongTensor (B, L) of packed blocks.
    pad_id: the id used for padding on the right.
    max_length: truncate longer sequences to this many tokens (keep the start).
    vocab_size / context: the model's vocabulary and positions; an id or a sequence beyond
        them raises ValueError here instead of an IndexError inside the model.

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
    if isinstance(examples, (str, bytes)):
        check_ids(examples, what="examples")  # raises: encode the text first
    seqs = [_as_id_list(e, f"examples[{i}]", vocab_size) for i, e in enumerate(examples)]
    if not seqs:
        raise ValueError("causal_lm_batch got no examples")
    if max_length is not None:
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise ValueError(f"max_length must be a positive integer or None; got {max_length!r}")
        seqs = [s[:max_length] for s in seqs]
    if any(len(s) == 0 for s in seqs):
        raise ValueError("causal_lm_batch got an empty sequence; drop empty texts before batching")
    L = max(len(s) for s in seqs)
    if context is not None and L > context:
        raise ValueError(
            f"a sequence has {L} tokens but the model reads at most {context} positions; "
            f"pass max_length={context} to cut it, or pack the data into shorter blocks "
            "(pack_documents(..., block_size))"
        )
    padded = pad_batch(seqs, pad_id)
    input_ids, attention_mask = padded["input_ids"], padded["attention_mask"]  # (B, L)
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)  # (B, L), unshifted
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def clm_collator(pad_id: int, *, max_length: int | None = None, model=None):
    """A ``collate_fn`` for DataLoader / ``ssledu.train.fit``: ``causal_lm_batch`` with
    ``pad_id`` (and ``max_length``) bound. With ``model``, ids past its vocabulary and
    sequences past its positions raise a clear error. Picklable, so worker processes can use it."""
    if not isinstance(pad_id, int) or isinstance(pad_id, bool) or pad_id < 0:
        raise ValueError(f"pad_id must be a non-negative token id; got {pad_id!r} "
                         "(the course's tokenizers use [PAD] = 0)")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    return functools.partial(causal_lm_batch, pad_id=pad_id, max_length=max_length,
                             vocab_size=vocab if isinstance(vocab, int) else None,
                             context=None if model is None else context_length(model, default=None))


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
    if not isinstance(eos_id, int) or isinstance(eos_id, bool) or eos_id < 0:
        raise ValueError(f"eos_id must be a non-negative token id; got {eos_id!r} "
                         "(tokenizer.eos_token_id; [EOS] = 6 in the course's tokenizers)")
    if isinstance(token_lists, (str, bytes)):
        check_ids(token_lists, what="token_lists")  # raises: encode the texts first
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
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    input_ids = check_ids(input_ids, what="input_ids", vocab_size=vocab if isinstance(vocab, int) else None)
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (B, L); got {tuple(input_ids.shape)}. "
                         "Add a batch dimension with .unsqueeze(0)")
    limit = _model_context(model)
    if limit is not None and input_ids.shape[1] > limit:
        raise ValueError(f"input_ids have {input_ids.shape[1]} positions but the model reads at most "
                         f"{limit}; use perplexity(..., context={limit}) to slide a window")
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
    """The model's positions, or None for a model without a limit (an LSTM)."""
    return context_length(model, default=None)


def _as_streams(data, vocab_size: int | None = None) -> list[list[int]]:
    if isinstance(data, (str, bytes)):
        check_ids(data, what="token_lists_or_blocks")  # raises: encode the text first
    if isinstance(data, torch.Tensor):
        check_ids(data, what="token_lists_or_blocks", vocab_size=vocab_size)
        if data.dim() == 1:
            return [data.tolist()]
        if data.dim() == 2:
            return data.tolist()
        raise ValueError(
            f"token tensor must be 1-D (one stream) or 2-D (blocks); got shape {tuple(data.shape)}"
        )
    data = list(data)
    if data and isinstance(data[0], int):  # a single stream of ids
        return [check_ids(data, what="token_lists_or_blocks", vocab_size=vocab_size).tolist()]
    return [_as_id_list(d, f"token_lists_or_blocks[{i}]", vocab_size) for i, d in enumerate(data)]


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
    limit = _model_context(model)
    for name, value in (("context", context), ("stride", stride), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise TypeError(f"{name} must be an integer; got {value!r}")
    if context is not None and limit is not None and context > limit:
        raise ValueError(
            f"context={context} is longer than the model's {limit} positions; pass "
            f"context <= {limit} (or leave it out to use all {limit})"
        )
    if context is None:
        context = limit
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    streams = _as_streams(token_lists_or_blocks, vocab if isinstance(vocab, int) else None)
    longest = max((len(s) for s in streams), default=0)
    if context is None:
        context = max(longest, 2)
    if context < 2:
        raise ValueError(f"context must be >= 2 tokens; got {context}")
    if stride is None:
        stride = max(1, context // 2)
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in [1, context={context}]; got {stride}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}")

    windows = []  # (ids of the window, index of its first scored token)
    for s in streams:
        for begin, end, first in _windows(len(s), context, stride):
            if end - first > 0:
                windows.append((s[begin:end], first - begin))

    total, count = 0.0, 0
    with eval_mode(model):
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


def _cache_keyword(model) -> str | None:
    """The keyword under which ``model.forward`` takes its key/value cache, or None.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and
    goes away in 5.40); earlier 5.x releases and ``LSTMLanguageModel`` use ``past_key_values``.
    None (no cache keyword): ``generate`` recomputes the whole sequence each step.
    """
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def _empty_cache(model, cache_kw: str | None):
    """A ``DynamicCache`` for a transformers model (it fills it in place, one layer of keys
    and values per block); None for other models, which return their own state."""
    if cache_kw is None:
        return None
    try:
        from transformers import DynamicCache, PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    if not isinstance(model, PreTrainedModel):
        return None
    try:
        return DynamicCache(config=model.config)
    except TypeError:  # releases whose DynamicCache takes no config
        return DynamicCache()


def _returned_cache(out, past):
    """The cache a forward pass hands back, read by key so that neither name warns."""
    for name in ("cache", "past_key_values"):
        value = out.get(name) if hasattr(out, "get") else None
        if value is not None:
            return value
    return past


def sampling_loop(
    next_logits,
    ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    suppress_ids: Sequence[int] | None = None,
) -> torch.Tensor:
    """The token-by-token loop every generator of the course shares.

    next_logits: a function (B, L) ids -> (B, V) logits of the token that follows; the only
        model-specific part (a key/value cache in ``generate``, a prefix mask in
        ``prefix.prefix_generate``). ids: (B, L) prompt, already on the model's device.
    Each step: suppress ``suppress_ids`` (-inf), pick with ``sample_next``, append. Rows that
    emit ``eos_id`` are filled with ``eos_id`` afterwards; the loop ends when every row has
    stopped or after ``max_new_tokens``. Returns (B, L + n), n <= max_new_tokens.
    """
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0; got {max_new_tokens!r}")
    suppress = None
    if suppress_ids is not None and len(suppress_ids) > 0:
        suppress = torch.as_tensor(list(suppress_ids), dtype=torch.long, device=ids.device)
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)  # (B,)
    for _ in range(max_new_tokens):
        logits = next_logits(ids).float()  # (B, V)
        if suppress is not None:
            logits = logits.index_fill(-1, suppress, float("-inf"))  # out of place
        nxt = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                          greedy=greedy, generator=generator)  # (B,)
        if eos_id is not None:
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            done = done | (nxt == eos_id)
        ids = torch.cat([ids, nxt[:, None]], dim=1)  # (B, L + 1)
        if eos_id is not None and bool(done.all()):
            break
    return ids


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
    """Continue ``input_ids`` token by token: ``sampling_loop`` with a key/value cache.

    input_ids: (L,) or (B, L) prompt ids, all prompts of the same length (no padding).
    max_new_tokens: how many tokens to add at most.
    temperature, top_k, top_p, greedy: see ``filter_logits`` and ``sample_next``. Unlike
        ``model.generate`` (which fills in top_k=50), top_k defaults to 0 = off.
    eos_id: a sequence stops after emitting it; later positions are filled with eos_id,
        and the loop ends when every sequence has stopped.
    generator / seed: the randomness for sampling; with neither, torch's global generator
        is used, so ``torch.manual_seed(s)`` reproduces ``model.generate`` draws.
    use_cache: feed only the newest token and reuse the keys/values of earlier ones (a
        ``transformers.DynamicCache`` passed as ``cache``, or ``past_key_values`` on
        transformers < 5.24 and the LSTM); False recomputes the whole sequence each step.
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
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    input_ids = check_ids(input_ids, what="input_ids",  # 2.7 or 10**6 is not a token id
                          vocab_size=vocab if isinstance(vocab, int) else None)
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

    cache_kw = _cache_keyword(model) if use_cache else None
    cache = {"past": _empty_cache(model, cache_kw), "seen": 0}  # the keys/values of `seen` tokens

    def next_logits(ids):  # (B, L) -> (B, V): the distribution of the next token
        mask = torch.ones_like(ids)  # (B, L) no padding: a generated [PAD] is a real token
        if limit is not None and ids.shape[1] >= limit:  # sliding: the last limit - 1 tokens
            window = ids[:, 1 - limit :]  # (B, limit - 1)
            return model(input_ids=window, attention_mask=torch.ones_like(window)).logits[:, -1]
        if cache_kw is not None:  # the whole prompt first, then only the newest token
            out = model(input_ids=ids[:, cache["seen"] :], attention_mask=mask, use_cache=True,
                        **{cache_kw: cache["past"]})
            cache["past"], cache["seen"] = _returned_cache(out, cache["past"]), ids.shape[1]
            return out.logits[:, -1]
        return model(input_ids=ids, attention_mask=mask).logits[:, -1]

    with eval_mode(model):
        ids = sampling_loop(next_logits, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, greedy=greedy, eos_id=eos_id, generator=generator,
                            suppress_ids=suppress_ids)
    return ids[0] if squeeze else ids


@torch.no_grad()
def next_token_distribution(model, tokenizer, prompt: str, k: int = 10, *, add_bos: bool = True):
    """The model's k most likely next tokens after ``prompt``: a list of (token, prob).

    The prompt is encoded without special tokens; [BOS] is put in front when ``add_bos``
    and the tokenizer has one (the convention the course trains with). Tokens are shown
    as the tokenizer's pieces (``convert_ids_to_tokens``). Sorted by probability, highest first.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string; got {type(prompt).__name__}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer (how many tokens to list); got {k!r}")
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if add_bos and getattr(tokenizer, "bos_token_id", None) is not None:
        ids = [tokenizer.bos_token_id] + ids
    if not ids:
        raise ValueError(
            "the prompt is empty and the tokenizer has no [BOS]; give at least one token"
        )
    limit = _model_context(model)
    if limit is not None and len(ids) > limit:
        raise ValueError(f"the prompt is {len(ids)} tokens but the model reads at most {limit}; "
                         "shorten the prompt")
    device = _model_device(model)
    with eval_mode(model):
        logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()  # (V,)
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

    if isinstance(texts, str):
        raise TypeError("texts must be a list of toyworld texts; wrap a single text in a list")
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
    rows = []  # (kind, model nll, floor nll, correct) per predicted token
    with eval_mode(model):
        for i in range(0, len(seqs), batch_size):
            batch = causal_lm_batch(seqs[i : i + batch_size], pad_id=tokenizer.pad_token_id or 0,
                                    vocab_size=getattr(model.config, "vocab_size", None)
                                    if hasattr(model, "config") else None,
                                    context=_model_context(model))
            ids = batch["input_ids"].to(device)
            mask = batch["attention_mask"].to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits  # (B, L, V)
            nll = _nll_from_logits(logits, ids, mask).cpu()  # (B, L)
            correct = (logits[:, :-1].argmax(-1) == ids[:, 1:]).cpu()  # (B, L-1)
            for j, seq in enumerate(seqs[i : i + batch_size]):
                n, k = len(seq), i + j  # predicted positions 1..n-1: the words, then [EOS]
                rows += zip(kinds[k], nll[j, 1:n].tolist(), floors[k], correct[j, : n - 1].tolist())

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

"""Language models without attention, to measure what a transformer adds.

- ``NGramLM``: counts of n-grams with interpolated Kneser-Ney smoothing (the classic
  baseline, Kneser & Ney 1995; Chen & Goodman 1999), or add-k for comparison.
- ``LSTMLanguageModel``: a recurrent LM with tied input/output embeddings (Merity et al.,
  2018; Press & Wolf, 2017) behind the same interface as ``GPT2LMHeadModel``, so
  ``ssledu.train.fit`` and ``ssledu.objectives.clm`` (perplexity, generate) use it unchanged.
- ``lstm_matching``: an LSTM with about as many parameters as a given GPT.

All three score a token list the same way the neural models do: the first token of a
list is never predicted (it is the [BOS] context of the first word), every later token
is predicted from the tokens before it.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers.modeling_outputs import CausalLMOutputWithPast

from ssledu.conventions import IGNORE_INDEX, check_ids

__all__ = ["NGramLM", "LSTMLanguageModel", "lstm_matching", "lstm_parameter_count"]

_START = -1  # pads the left of each list so every history has n-1 slots; never predicted


class NGramLM:
    """An n-gram language model over token ids 0..vocab_size-1.

    n: order (1 = unigram, 2 = bigram, ...); the history is the n-1 tokens before.
    vocab_size: size of the vocabulary; every id gets a non-zero probability.
    smoothing:
      "kneser-ney" (default): interpolated Kneser-Ney with one absolute discount
        ``discount`` (0.75, Chen & Goodman 1999): each order takes D off every seen count
        and hands the freed mass to the next lower order, whose counts are *continuation*
        counts (in how many contexts a word appears); the lowest order is mixed with the
        uniform distribution, so no token has probability 0. An unseen history backs off
        entirely to the lower order.
      "add-k": (c(h, w) + k) / (c(h) + k V) on the full history (k = ``k``): simple, and
        much worse on sparse histories (the lesson's contrast).

    ``fit(token_lists)`` counts; ``nll(token_lists)`` scores with the neural models'
    convention (the first token of each list is context only).
    """

    def __init__(
        self,
        n: int,
        vocab_size: int,
        *,
        smoothing: str = "kneser-ney",
        discount: float = 0.75,
        k: float = 1.0,
    ):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1 (1 = unigram); got {n!r}")
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer; got {vocab_size!r}")
        if smoothing not in ("kneser-ney", "add-k"):
            raise ValueError(f"smoothing {smoothing!r} is unknown; use 'kneser-ney' or 'add-k'")
        if not 0 < discount < 1:
            raise ValueError(f"discount must be in (0, 1); got {discount}")
        if not k > 0:
            raise ValueError(f"k must be > 0 (add-k smoothing); got {k}")
        self.n, self.vocab_size, self.smoothing = n, vocab_size, smoothing
        self.discount, self.k = discount, k
        self.counts: list[dict] = []  # counts[m][history][word], histories of length m
        self.totals: list[dict] = []  # totals[m][history] = sum of counts[m][history]
        self.fitted = False

    def __repr__(self):
        return f"NGramLM(n={self.n}, vocab_size={self.vocab_size}, smoothing={self.smoothing!r})"

    def _padded(self, tokens, what: str = "tokens") -> tuple:
        # strings, floats and ids outside 0..vocab_size-1 fail here with the fix
        tokens = tuple(check_ids(tokens, what=what, vocab_size=self.vocab_size).reshape(-1).tolist())
        return (_START,) * max(self.n - 2, 0) + tokens

    @staticmethod
    def _lists(token_lists) -> list:
        """A list of token-id lists, or an error that says how to wrap what was given."""
        if isinstance(token_lists, (str, bytes)):
            check_ids(token_lists, what="token_lists")  # raises: encode the text first
        if isinstance(token_lists, torch.Tensor):
            return list(token_lists) if token_lists.dim() == 2 else [token_lists]
        token_lists = list(token_lists)
        if token_lists and isinstance(token_lists[0], (int, float, np.integer, np.floating)):
            raise TypeError(
                "token_lists must be a list of token-id lists (one per text); got one flat "
                "list of ids: wrap it, e.g. fit([ids])"
            )
        return token_lists

    def fit(self, token_lists) -> "NGramLM":
        """Count the n-grams of ``token_lists`` (a list of id lists); returns self."""
        full = Counter()  # full n-grams (history of length n-1, word)
        for i, tokens in enumerate(self._lists(token_lists)):
            seq = self._padded(tokens, f"token_lists[{i}]")
            if self.n == 1:  # targets start after the first token, as with the neural models
                full.update((w,) for w in seq[1:])
            else:
                full.update(zip(*(seq[i:] for i in range(self.n))))
        if not full:
            raise ValueError("fit() found no token to predict: give lists of at least 2 tokens")
        by_order = {self.n - 1: full}
        if self.smoothing == "kneser-ney":
            # Lower orders hold continuation counts: in how many distinct contexts a shorter
            # n-gram appears. One that starts at the list start has no left context and keeps
            # its plain count (Chen & Goodman 1999, section 3).
            for m in range(self.n - 2, -1, -1):
                lower = Counter()
                for gram, c in by_order[m + 1].items():
                    tail = gram[1:]
                    lower[tail] += c if tail[0] == _START else 1
                by_order[m] = lower
        self.counts, self.totals = [None] * self.n, [None] * self.n
        for m, grams in by_order.items():
            table, totals = {}, Counter()
            for gram, c in grams.items():
                h, w = gram[:-1], gram[-1]
                table.setdefault(h, {})[w] = c
                totals[h] += c
            self.counts[m], self.totals[m] = table, dict(totals)
        self.fitted = True
        return self

    def _check(self):
        if not self.fitted:
            raise RuntimeError("call fit(token_lists) before scoring")

    def _history(self, context) -> tuple:
        if self.n == 1:
            return ()
        context = self._padded(context)
        if len(context) < self.n - 1:
            context = (_START,) * (self.n - 1 - len(context)) + context
        return context[len(context) - (self.n - 1) :]

    def log_prob(self, context, token: int) -> float:
        """log p(token | context) in nats; context is the list of preceding ids (only
        the last n-1 are used; a context shorter than that is the start of a list)."""
        self._check()
        if not isinstance(token, (int, np.integer)) or isinstance(token, bool):
            raise TypeError(f"token must be one integer id; got {type(token).__name__} {token!r}")
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"token id {token} is outside the vocabulary 0..{self.vocab_size - 1}")
        return math.log(self._prob(self._history(context), int(token)))

    def _prob(self, h: tuple, w: int) -> float:
        m = len(h)
        if self.smoothing == "add-k":
            c = self.counts[m].get(h, {}).get(w, 0)
            return (c + self.k) / (self.totals[m].get(h, 0) + self.k * self.vocab_size)
        lower = self._prob(h[1:], w) if m > 0 else 1.0 / self.vocab_size
        seen = self.counts[m].get(h)
        if seen is None:  # unseen history: all its mass goes to the shorter one
            return lower
        total, D = self.totals[m][h], self.discount
        return (max(seen.get(w, 0) - D, 0.0) + D * len(seen) * lower) / total

    def next_distribution(self, context) -> np.ndarray:
        """p(. | context) as a float64 array (vocab_size,) that sums to 1."""
        self._check()
        h = self._history(context)
        if self.smoothing == "add-k":
            return self._dist_row(len(h), h, None)
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for m in range(0, len(h) + 1):  # from the unigram up to the full history
            p = self._dist_row(m, h[len(h) - m :], p)
        return p

    def _dist_row(self, m, h, lower):
        seen = self.counts[m].get(h, {})
        words = np.fromiter(seen.keys(), dtype=np.int64, count=len(seen))
        counts = np.fromiter(seen.values(), dtype=np.float64, count=len(seen))
        if self.smoothing == "add-k":
            p = np.full(self.vocab_size, self.k)
            p[words] += counts
            return p / p.sum()
        if not seen:
            return lower
        D, total = self.discount, counts.sum()
        p = lower * (D * len(seen) / total)
        p[words] += np.maximum(counts - D, 0.0) / total
        return p

    def nll(self, token_lists) -> tuple[float, int]:
        """(total NLL in nats, number of scored tokens) over ``token_lists``; every token
        but the first of each list is scored. Mean = total / n, perplexity = exp(mean)."""
        self._check()
        total, count = 0.0, 0
        width = self.n - 1
        for i, tokens in enumerate(self._lists(token_lists)):
            seq = self._padded(tokens, f"token_lists[{i}]")
            start = max(self.n - 2, 0) + 1  # index of the second real token
            for i in range(start, len(seq)):
                h = seq[i - width : i] if width else ()
                total -= math.log(self._prob(h, seq[i]))
                count += 1
        return total, count


class LSTMLanguageModel(nn.Module):
    """A recurrent causal LM with the call signature of ``GPT2LMHeadModel``.

    vocab_size, d_model: vocabulary and hidden size (embedding = LSTM width, so the output
        layer can reuse the embedding matrix: weight tying, Press & Wolf 2017).
    n_layer: stacked LSTM layers; dropout: on embeddings, between layers and before the
        output (Merity et al., 2018 use more elaborate variants); pad_id: padding id.

    forward(input_ids (B, L), attention_mask=None, labels=None, past_key_values=None,
    use_cache=False) returns ``CausalLMOutputWithPast`` with logits (B, L, V) and, when
    labels are given, loss = cross-entropy of logits[:, :-1] against labels[:, 1:]
    (-100 ignored): the shift happens inside, as in GPT-2. Padding must be on the right
    (later positions never influence earlier ones, so it needs no mask).
    ``past_key_values`` carries the LSTM state (h, c) so that ``clm.generate`` can feed one
    token at a time.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        n_layer: int = 2,
        dropout: float = 0.1,
        pad_id: int = 0,
    ):
        super().__init__()
        for name, value, low in (("vocab_size", vocab_size, 2), ("d_model", d_model, 1), ("n_layer", n_layer, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}"
                                 + (" (pass len(tokenizer))" if name == "vocab_size" else ""))
        if not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id {pad_id!r} must be a token id in 0..{vocab_size - 1}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        self.vocab_size, self.d_model = vocab_size, d_model
        self.n_layer, self.pad_id = n_layer, pad_id
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            d_model, d_model, n_layer, batch_first=True, dropout=dropout if n_layer > 1 else 0.0
        )
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()

    def forward(
        self,
        input_ids,
        attention_mask=None,
        labels=None,
        past_key_values=None,
        use_cache=False,
        **kwargs,
    ):
        if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point():
            raise TypeError(
                "input_ids must be a LongTensor (B, L) of token ids; got "
                f"{type(input_ids).__name__}{'' if not isinstance(input_ids, torch.Tensor) else ' ' + str(input_ids.dtype)}"
                ". Encode texts with the tokenizer and use torch.tensor(ids)"
            )
        if input_ids.device.type == "cpu":  # on an accelerator this check would cost a sync per step
            check_ids(input_ids, what="input_ids", vocab_size=self.vocab_size)
        x = self.drop(self.embed(input_ids))  # (B, L, d)
        h, state = self.lstm(x, past_key_values)  # (B, L, d); state = (h, c), each (n_layer, B, d)
        logits = self.head(self.drop(h))  # (B, L, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, self.vocab_size).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        # transformers 5.24 renamed the output field past_key_values -> cache (the old name warns)
        field = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{field: state if use_cache else None})


def lstm_parameter_count(vocab_size: int, d_model: int, n_layer: int) -> int:
    """Parameters of ``LSTMLanguageModel`` (tied embedding, two bias vectors per layer)."""
    per_layer = 4 * (2 * d_model * d_model + 2 * d_model)
    return vocab_size * d_model + n_layer * per_layer


def lstm_matching(
    gpt_model_or_param_count,
    vocab_size: int,
    *,
    n_layer: int = 2,
    dropout: float = 0.1,
    pad_id: int = 0,
):
    """An ``LSTMLanguageModel`` whose parameter count is as close as possible to a GPT's.

    gpt_model_or_param_count: a model (its unique parameters are counted, tied ones once)
        or a number of parameters.
    Solves 8 n_layer d^2 + (V + 8 n_layer) d = P for the width d (see
    ``lstm_parameter_count``) and rounds to the nearest integer.
    """
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2 (pass len(tokenizer)); got {vocab_size!r}")
    if isinstance(gpt_model_or_param_count, nn.Module):
        target = sum(p.numel() for p in gpt_model_or_param_count.parameters())
    elif isinstance(gpt_model_or_param_count, (int, float)) and not isinstance(gpt_model_or_param_count, bool):
        target = int(gpt_model_or_param_count)
    else:
        raise TypeError(
            "pass the GPT model itself or its parameter count (an int); got "
            f"{type(gpt_model_or_param_count).__name__}"
        )
    a, b = 8 * n_layer, vocab_size + 8 * n_layer
    d_real = (-b + math.sqrt(b * b + 4 * a * target)) / (2 * a)
    d = max(1, round(d_real))
    if lstm_parameter_count(vocab_size, d, n_layer) > 1.1 * target or d_real < 1:
        raise ValueError(
            f"{target} parameters are too few for an LSTM with a {vocab_size}-token embedding; "
            "use fewer layers or a larger target"
        )
    return LSTMLanguageModel(vocab_size, d, n_layer, dropout, pad_id)

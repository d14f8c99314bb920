"""Exercises of chapter 03 (causal language modelling)."""

from __future__ import annotations

import math
import random

from ssledu.check import Exercise, close, register


def _torch():
    import torch

    return torch


# --- 1. the causal LM loss, shift included ------------------------------------------


def _ref_causal_lm_loss(logits, input_ids, attention_mask):
    """Mean cross-entropy of logits[:, :-1] against input_ids[:, 1:] over real tokens."""
    import torch.nn.functional as F

    keep = attention_mask[:, 1:].bool()  # (B, L-1): a padded target is not predicted
    return float(F.cross_entropy(logits[:, :-1][keep].float(), input_ids[:, 1:][keep]))


def _cases_causal_lm_loss(rng: random.Random):
    torch = _torch()
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    B, L, V = rng.randrange(1, 5), rng.randrange(3, 12), rng.randrange(5, 30)
    logits = torch.randn(B, L, V, generator=g) * 2  # (B, L, V)
    input_ids = torch.randint(0, V, (B, L), generator=g)  # (B, L)
    lengths = torch.randint(2, L + 1, (B,), generator=g)
    lengths[0] = L  # at least one row without padding
    attention_mask = (torch.arange(L)[None] < lengths[:, None]).long()  # (B, L) right padding
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    return [{"logits": logits, "input_ids": input_ids, "attention_mask": attention_mask}]


register(
    Exercise(
        name="causal_lm_loss",
        chapter="03",
        description="mean next-token cross-entropy from unshifted logits and ids, padding ignored",
        reference=_ref_causal_lm_loss,
        cases=_cases_causal_lm_loss,
        compare=close(rel=1e-4, abs_=1e-5),
        hint="the logits at position t score the token at position t + 1; the last position "
        "predicts nothing and a padded target (attention_mask 0) carries no loss",
    )
)


# --- 2. perplexity from per-batch losses --------------------------------------------


def _ref_perplexity_from_batches(batch_losses, batch_tokens):
    total = sum(loss * n for loss, n in zip(batch_losses, batch_tokens))
    return math.exp(total / sum(batch_tokens))


def _cases_perplexity(rng: random.Random):
    n = rng.randrange(2, 8)
    losses = [rng.uniform(0.5, 5.0) for _ in range(n)]
    tokens = [rng.randrange(1, 2000) for _ in range(n)]
    tokens[rng.randrange(n)] = rng.randrange(3000, 9000)  # one big batch: weights matter
    return [{"batch_losses": losses, "batch_tokens": tokens}]


register(
    Exercise(
        name="perplexity_from_batches",
        chapter="03",
        description="corpus perplexity from the mean loss of each batch and its number of tokens",
        reference=_ref_perplexity_from_batches,
        cases=_cases_perplexity,
        compare=close(rel=1e-6),
        hint="a batch's mean loss does not say how much of the corpus it covers: first rebuild "
        "what the corpus-wide mean is made of, then take the perplexity of that",
    )
)


# --- 3. the forward-copy ceiling of any causal model ---------------------------------


def _ref_forward_copy_ceiling(story):
    """Mean over the story's forward-copy words of the Bayes-optimal causal guess's accuracy."""
    from ssledu.data import toyworld

    words = story.split()
    chances = []
    for i, kind in enumerate(toyworld.position_kinds(story)):
        if kind != "forward_copy":
            continue
        dist = toyworld.next_word_distribution(words[:i])
        top = max(dist.values())
        tied = [w for w, p in dist.items() if p >= top - 1e-12]
        chances.append((words[i] in tied) / len(tied))  # a tie is broken at random
    return sum(chances) / len(chances)


def _cases_forward_copy_ceiling(rng: random.Random):
    from ssledu.data import toyworld

    # Every story opens with a forward copy (the number of shapes, counted by the introductions).
    return [{"story": toyworld.generate_texts(1, seed=rng.randrange(2**31))[0]}]


def _compare_one_number(got, expected):
    # a float, an int, or a one-element tensor / numpy scalar
    one = isinstance(got, (int, float)) or getattr(got, "size", None) in (1, ()) or (
        hasattr(got, "numel") and got.numel() == 1
    )
    if isinstance(got, bool) or not one:
        return f"return one number (a float) for the whole story; got a {type(got).__name__}"
    return close(rel=1e-6, abs_=1e-9)(float(got), expected)


register(
    Exercise(
        name="forward_copy_ceiling",
        chapter="03",
        description="expected accuracy of the best possible causal model on a story's forward-copy words",
        reference=_ref_forward_copy_ceiling,
        cases=_cases_forward_copy_ceiling,
        compare=_compare_one_number,
        hint="the best causal model knows the exact distribution of each word given the words before "
        "it and names one word; ask how often that named word is the story's word when several words "
        "are equally likely, and average over the forward-copy words only",
    )
)


# --- 4. top-p (nucleus) filtering ----------------------------------------------------


def _ref_top_p_filter(logits, top_p):
    from ssledu.objectives.clm import filter_logits

    return filter_logits(logits, top_p=top_p)


def _cases_top_p(rng: random.Random):
    torch = _torch()
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    shape = (rng.randrange(5, 40),) if rng.random() < 0.5 else (rng.randrange(1, 4), rng.randrange(5, 40))
    logits = torch.randn(*shape, generator=g) * rng.uniform(0.5, 3.0)
    return [{"logits": logits, "top_p": rng.choice([0.3, 0.5, 0.7, 0.9, 0.95])}]


def _compare_filtered(got, expected):
    torch = _torch()
    got = torch.as_tensor(got)
    if got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    removed_ref, removed = torch.isinf(expected), torch.isinf(got) & (got < 0)
    if not torch.equal(removed, removed_ref):
        extra = int((removed & ~removed_ref).sum())
        missing = int((removed_ref & ~removed).sum())
        return f"{extra} token(s) removed that should stay, {missing} kept that should go"
    if not torch.allclose(got[~removed].float(), expected[~removed_ref], rtol=1e-5, atol=1e-6):
        return "the kept logits changed: leave them as they are"
    return True


register(
    Exercise(
        name="top_p_filter",
        chapter="03",
        description="set the logits outside the nucleus (smallest set of mass >= top_p) to -inf",
        reference=_ref_top_p_filter,
        cases=_cases_top_p,
        compare=_compare_filtered,
        hint="work one small case by hand against the definition, e.g. probabilities 0.5, 0.3, 0.2 "
        "with top_p = 0.6 and with top_p = 0.3: which tokens does the nucleus hold each time?",
    )
)

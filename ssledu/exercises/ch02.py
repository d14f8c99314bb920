"""Exercises of chapter 02 (masked language modelling)."""

from __future__ import annotations

import random

from ssledu.check import Exercise, close, register

MASK_ID = 4  # [MASK] in every tokenizer of ssledu.data.tokenize


class _Vocabulary:
    """The little a masking function needs from a tokenizer: its size and its [MASK] id."""

    mask_token = "[MASK]"
    mask_token_id = MASK_ID
    all_special_ids = list(range(7))

    def __init__(self, size: int):
        self.size = size

    def __len__(self):
        return self.size


# --- 1. 80/10/10 masking -----------------------------------------------------------


def _ref_mask_80_10_10(ids, seed, vocab_size, p=0.15):
    import torch

    from ssledu.objectives.mlm import mask_tokens

    g = torch.Generator().manual_seed(seed)
    row = torch.tensor([list(ids)])  # (1, L)
    out = mask_tokens(row, _Vocabulary(vocab_size), p, 0.8, 0.1, generator=g,
                      special_tokens_mask=torch.zeros_like(row, dtype=torch.bool))
    return out["input_ids"][0].tolist(), out["labels"][0].tolist()


def _cases_mask(rng: random.Random):
    vocab = rng.randrange(20, 200)
    n = rng.randrange(8, 60)
    return [{
        "ids": [rng.randrange(7, vocab) for _ in range(n)],
        "seed": rng.randrange(10_000),
        "vocab_size": vocab,
        "p": rng.choice([0.15, 0.3, 0.5]),
    }]


register(
    Exercise(
        name="mask_80_10_10",
        chapter="02",
        description="BERT's masking of one sequence: select with p, then 80 % [MASK], 10 % random, "
        "10 % kept; return (corrupted ids, labels) drawn like transformers' collator",
        reference=_ref_mask_80_10_10,
        cases=_cases_mask,
        hint="four draws from one torch.Generator().manual_seed(seed), each over all positions: "
        "bernoulli(p) selects; bernoulli(0.8) picks [MASK] among the selected; a third bernoulli "
        "picks 'random' among the selected that are not [MASK] (what probability makes that 10 % of "
        "ALL selected?), with ids from torch.randint(vocab_size, ...); labels are -100 where not "
        "selected",
    )
)


# --- 2. the MLM loss from logits ---------------------------------------------------


def _ref_mlm_loss_from_logits(logits, labels):
    from ssledu.objectives.mlm import mlm_loss

    return float(mlm_loss(logits, labels))


def _cases_loss(rng: random.Random):
    import torch

    B, L, V = rng.randrange(1, 4), rng.randrange(3, 10), rng.randrange(5, 15)
    g = torch.Generator().manual_seed(rng.randrange(10_000))
    logits = torch.randn(B, L, V, generator=g) * 2
    labels = torch.randint(V, (B, L), generator=g)
    keep = torch.rand(B, L, generator=g) < 0.3
    keep[0, rng.randrange(L)] = True  # at least one position carries a loss
    return [{"logits": logits, "labels": labels.masked_fill(~keep, -100)}]


register(
    Exercise(
        name="mlm_loss_from_logits",
        chapter="02",
        description="the MLM loss: mean negative log-probability of the original token over the "
        "positions whose label is not -100",
        reference=_ref_mlm_loss_from_logits,
        cases=_cases_loss,
        compare=close(rel=1e-4, abs_=1e-5),
        hint="log_softmax over the vocabulary, pick the log-probability of each label, and average "
        "over the labelled positions only (not over all B x L positions)",
    )
)


# --- 3. which tokens does whole-word masking hide? --------------------------------


def _ref_whole_word_positions(word_ids, seed, p=0.3):
    import torch

    from ssledu.objectives.mlm import mask_whole_words

    ids = torch.tensor([[7 + (i % 10) for i in range(len(word_ids))]])  # (1, L)
    special = torch.tensor([[w is None for w in word_ids]])
    g = torch.Generator().manual_seed(seed)
    out = mask_whole_words(ids, [list(word_ids)], _Vocabulary(20), p, generator=g,
                           special_tokens_mask=special)
    return (out["labels"][0] != -100).nonzero().flatten().tolist()


def _cases_wwm(rng: random.Random):
    word_ids = [None]
    for w in range(rng.randrange(4, 14)):
        word_ids += [w] * rng.choice([1, 1, 2, 3, 4])
    word_ids.append(None)
    return [{"word_ids": word_ids, "seed": rng.randrange(10_000), "p": rng.choice([0.2, 0.3, 0.5])}]


register(
    Exercise(
        name="whole_word_positions",
        chapter="02",
        description="the token positions whole-word masking selects, given each token's word id "
        "(None for [CLS]/[SEP]) and the seed",
        reference=_ref_whole_word_positions,
        cases=_cases_wwm,
        hint="one bernoulli draw over all positions with probability p at the FIRST piece of each "
        "word and 0 elsewhere (torch.Generator().manual_seed(seed)); a word whose first piece "
        "fired is selected with all its pieces; return the sorted positions",
    )
)

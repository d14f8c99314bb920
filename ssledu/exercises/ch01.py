"""Exercises of chapter 01 (the self-supervised paradigm)."""

from __future__ import annotations

import random

from ssledu.check import Exercise, choice, register



def _ref_next_token_labels(ids):
    """Inputs and targets for next-token prediction: (ids[:-1], ids[1:])."""
    ids = list(ids)
    return ids[:-1], ids[1:]


def _cases_ids(rng: random.Random):
    return [{"ids": [rng.randrange(7, 100) for _ in range(rng.randrange(2, 20))]}]


register(
    Exercise(
        name="next_token_labels",
        chapter="01",
        description="return (inputs, targets) for next-token prediction on a list of token ids",
        reference=_ref_next_token_labels,
        cases=_cases_ids,
        hint="the model reads every token but the last and predicts every token but the first",
    )
)


def _ref_mlm_selected_positions(n_tokens: int, seed: int, p: float = 0.15):
    import torch

    g = torch.Generator().manual_seed(seed)
    chosen = torch.bernoulli(torch.full((n_tokens,), p), generator=g).bool()
    return [i for i in range(n_tokens) if chosen[i]]


def _cases_mlm_positions(rng: random.Random):
    return [{"n_tokens": rng.randrange(5, 40), "seed": rng.randrange(10_000), "p": 0.15}]


register(
    Exercise(
        name="mlm_selected_positions",
        chapter="01",
        description="positions an MLM with selection probability p picks, drawn like transformers' collator",
        reference=_ref_mlm_selected_positions,
        cases=_cases_mlm_positions,
        hint="one Bernoulli(p) draw per position from torch.Generator().manual_seed(seed), "
        "in a single call on a tensor of shape (n_tokens,)",
    )
)


register(
    Exercise(
        name="contrastive_needs_negatives",
        chapter="01",
        description="multiple choice: why does a contrastive objective need negatives?",
        reference=lambda: "b",
        compare=choice(
            "re-read the paragraph on collapse: what is the cheapest way to make all positives similar?"
        ),
        hint="think of the trivial solution that maximises agreement between two views",
        kind="answer",
    )
)

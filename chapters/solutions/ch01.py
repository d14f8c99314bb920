"""Worked solutions for chapter 01's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import torch

SOLUTIONS = {}
WRONG = {}


# --- chapter 01 -------------------------------------------------------------

def next_token_labels(ids):
    return ids[:-1], ids[1:]


def next_token_labels_wrong(ids):  # forgot to drop the last input
    return ids, ids[1:]


SOLUTIONS["next_token_labels"] = next_token_labels
WRONG["next_token_labels"] = next_token_labels_wrong


def mlm_selected_positions(n_tokens, seed, p=0.15):
    g = torch.Generator().manual_seed(seed)
    picked = torch.bernoulli(torch.full((n_tokens,), p), generator=g).bool()
    return picked.nonzero().flatten().tolist()


def mlm_selected_positions_wrong(n_tokens, seed, p=0.15):  # a fresh uniform draw instead
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n_tokens, generator=g) > 1 - p).nonzero().flatten().tolist()


SOLUTIONS["mlm_selected_positions"] = mlm_selected_positions
WRONG["mlm_selected_positions"] = mlm_selected_positions_wrong

# (a) negatives make training faster; (b) without negatives the encoder can map every
# input to the same vector (collapse); (c) negatives are needed to compute a softmax at all.
SOLUTIONS["contrastive_needs_negatives"] = "b"
WRONG["contrastive_needs_negatives"] = "a"

"""Worked solutions for chapter 04's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import torch

SOLUTIONS = {}
WRONG = {}


# --- chapter 04 -------------------------------------------------------------

def prefix_mask_by_hand(length, prefix_lengths):
    i = torch.arange(length)
    P = torch.tensor(prefix_lengths)[:, None, None]  # (B, 1, 1)
    sees = (i[None, None, :] <= i[None, :, None]) | (i[None, None, :] < P)  # (B, L, L): key j, query i
    mask = torch.zeros(sees.shape).masked_fill(~sees, torch.finfo(torch.float32).min)
    return mask[:, None]  # (B, 1, L, L)


def prefix_mask_by_hand_wrong(length, prefix_lengths):  # the right pattern, as a boolean mask
    return prefix_mask_by_hand(length, prefix_lengths) == 0


SOLUTIONS["prefix_mask_by_hand"] = prefix_mask_by_hand
WRONG["prefix_mask_by_hand"] = prefix_mask_by_hand_wrong


def visible_keys(kind, length, prefix_length, i):
    rule = {
        "bidirectional": lambda j: True,
        "causal": lambda j: j <= i,
        "right_to_left": lambda j: j >= i,
        "prefix": lambda j: j < prefix_length or j <= i,
    }[kind]
    return [j for j in range(length) if rule(j)]


def visible_keys_wrong(kind, length, prefix_length, i):  # a prefix position does not look right
    if kind == "prefix":
        return [j for j in range(length) if j <= max(i, 0) or (i >= prefix_length and j < prefix_length)]
    return visible_keys(kind, length, prefix_length, i)


SOLUTIONS["visible_keys"] = visible_keys
WRONG["visible_keys"] = visible_keys_wrong

# (a) a position must not see itself; (b) "<= prefix_length" lets every prefix position see
# token P, the target of position P - 1; (c) the mask should be boolean.
SOLUTIONS["leaky_prefix_mask_bug"] = "b"
WRONG["leaky_prefix_mask_bug"] = "a"

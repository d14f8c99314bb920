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


def find_leaks(hidden, input_ids, allowed, vocab_size):
    base = hidden(input_ids)  # (L, d)
    L = len(input_ids)
    leaks = []
    for j in range(L):
        changed = input_ids.clone()
        changed[j] = (input_ids[j] + 1) % vocab_size  # any other id; a fixed one may equal the original
        moved = (hidden(changed) != base).any(-1)  # (L,): exactly equal or not, no tolerance
        leaks += [(i, j) for i in range(L) if moved[i] and not allowed[i, j]]
    return sorted(leaks)


def find_leaks_wrong(hidden, input_ids, allowed, vocab_size):  # a tolerance hides a small leak
    base = hidden(input_ids)
    leaks = []
    for j in range(len(input_ids)):
        changed = input_ids.clone()
        changed[j] = (input_ids[j] + 1) % vocab_size
        moved = ((hidden(changed) - base).abs() > 1e-4).any(-1)
        leaks += [(i, j) for i in range(len(input_ids)) if moved[i] and not allowed[i, j]]
    return sorted(leaks)


SOLUTIONS["find_leaks"] = find_leaks
WRONG["find_leaks"] = find_leaks_wrong


def blank_posterior_by_hand(words, i):
    from ssledu.data import toyworld

    def prob(text):  # p(text is the start of a story), word by word from the left
        p = 1.0
        for t, w in enumerate(text):
            p *= toyworld.next_word_distribution(text[:t]).get(w, 0.0)
            if p == 0.0:
                return 0.0  # impossible already: the next call would raise
        return p

    joint = {}
    for c in toyworld.next_word_distribution(words[:i]):
        if c != toyworld.EOS:
            joint[c] = prob(words[:i] + [c] + words[i + 1:])  # Bayes: the words after the blank count
    z = sum(joint.values())
    return {c: p / z for c, p in joint.items() if p > 0}


def blank_posterior_by_hand_wrong(words, i):  # reads only the left side: the causal guess
    from ssledu.data import toyworld

    return {c: p for c, p in toyworld.next_word_distribution(words[:i]).items() if c != toyworld.EOS}


SOLUTIONS["blank_posterior_by_hand"] = blank_posterior_by_hand
WRONG["blank_posterior_by_hand"] = blank_posterior_by_hand_wrong

# (a) a position must not see itself; (b) "<= prefix_length" lets every prefix position see
# token P, the target of position P - 1; (c) the mask should be boolean.
SOLUTIONS["leaky_prefix_mask_bug"] = "b"
WRONG["leaky_prefix_mask_bug"] = "a"

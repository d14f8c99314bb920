"""Worked solutions for chapter 01's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import math

SOLUTIONS = {}
WRONG = {}


# --- chapter 01 -------------------------------------------------------------

def next_token_labels(ids):
    return ids[:-1], ids[1:]


def next_token_labels_wrong(ids):  # forgot to drop the last input
    return ids, ids[1:]


SOLUTIONS["next_token_labels"] = next_token_labels
WRONG["next_token_labels"] = next_token_labels_wrong


def labels_needed(ns, accuracies, target):
    if accuracies[0] >= target:
        return ns[0]
    for i in range(1, len(ns)):
        if accuracies[i] >= target:
            # On a log axis the segment is straight in log N: go the same fraction of the way
            # from log ns[i-1] to log ns[i] as the target lies from one accuracy to the next.
            frac = (target - accuracies[i - 1]) / (accuracies[i] - accuracies[i - 1])
            return ns[i - 1] * (ns[i] / ns[i - 1]) ** frac
    return math.inf


def labels_needed_wrong(ns, accuracies, target):  # interpolates N itself, as on a linear axis
    if accuracies[0] >= target:
        return ns[0]
    for i in range(1, len(ns)):
        if accuracies[i] >= target:
            frac = (target - accuracies[i - 1]) / (accuracies[i] - accuracies[i - 1])
            return ns[i - 1] + frac * (ns[i] - ns[i - 1])
    return math.inf


SOLUTIONS["labels_needed"] = labels_needed
WRONG["labels_needed"] = labels_needed_wrong

# (a) the gradient is zero without negatives; (b) without negatives the encoder can map every
# input to the same vector (collapse); (c) the encoder would memorise each training example.
SOLUTIONS["contrastive_needs_negatives"] = "b"
WRONG["contrastive_needs_negatives"] = "a"

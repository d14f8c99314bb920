"""Exercises of chapter 01 (the self-supervised paradigm)."""

from __future__ import annotations

import math
import random

from ssledu.check import Exercise, choice, close, register


# --- 1. the pseudo-labels of next-token prediction ---------------------------------


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


# --- 2. how many labels is pretraining worth? --------------------------------------


def _ref_labels_needed(ns, accuracies, target):
    """Labels at which a label-efficiency curve first reaches ``target``.

    The curve is read as the plot draws it: straight between measured points on a log-N
    axis. ``ns[0]`` when the first point already reaches the target, ``math.inf`` when no
    point does.
    """
    ns, acc = [float(n) for n in ns], [float(a) for a in accuracies]
    if acc[0] >= target:
        return ns[0]
    for i in range(1, len(ns)):
        if acc[i] >= target:  # the first segment that climbs from below to the target
            frac = (target - acc[i - 1]) / (acc[i] - acc[i - 1])
            return math.exp(math.log(ns[i - 1]) + frac * (math.log(ns[i]) - math.log(ns[i - 1])))
    return math.inf


def _acc(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 3)  # three decimals, as the chapter's tables show them


def _cases_labels_needed(rng: random.Random):
    k = rng.randrange(4, 7)
    ns = sorted(rng.sample(range(4, 20_001), k))
    rising = sorted(_acc(rng, 0.2, 0.99) for _ in range(k))
    while len(set(rising)) < k:  # distinct points, so every segment has a slope
        rising = sorted(_acc(rng, 0.2, 0.99) for _ in range(k))
    j = rng.randrange(1, k)
    # a noisy curve: it reaches the target at point 1, dips below it, and climbs again
    target = _acc(rng, 0.4, 0.6)
    dipping = [_acc(rng, 0.2, target - 0.05), _acc(rng, target + 0.02, 0.7), _acc(rng, 0.2, target - 0.02)]
    dipping += sorted(_acc(rng, target + 0.05, 0.99) for _ in range(k - 3))
    return [
        {"ns": ns, "accuracies": rising, "target": _acc(rng, rising[0] + 0.001, rising[-1] - 0.001)},
        {"ns": ns, "accuracies": dipping, "target": target},
        {"ns": ns, "accuracies": rising, "target": rising[j]},  # exactly on a measured point
        {"ns": ns, "accuracies": rising, "target": _acc(rng, rising[-1] + 0.001, 1.0)},  # never reached
        {"ns": ns, "accuracies": rising, "target": _acc(rng, 0.0, rising[0])},  # reached at once
    ]


def _compare_labels(got, expected):
    if expected == math.inf:
        return got == math.inf or "in this case the curve never reaches the target: return math.inf"
    verdict = close(rel=1e-6)(got, expected)
    if verdict is True:
        return True
    return "your N is not where the drawn curve first reaches the target"


register(
    Exercise(
        name="labels_needed",
        chapter="01",
        description="the number of labels at which a label-efficiency curve (straight segments on a "
        "log-N axis) first reaches a target accuracy; math.inf if it never does",
        reference=_ref_labels_needed,
        cases=_cases_labels_needed,
        compare=_compare_labels,
        n_cases=10,
        hint="on a logarithmic axis equal distances are equal RATIOS of N, not equal differences; "
        "and walk the points in order: a noisy curve can reach the target, dip, and reach it again",
    )
)


# --- 3. why a contrastive objective needs negatives --------------------------------


register(
    Exercise(
        name="contrastive_needs_negatives",
        chapter="01",
        description="multiple choice: why does a contrastive objective need negatives?",
        reference=lambda: "b",
        compare=choice(
            "for each option, ask whether it is true of an encoder trained on positive pairs only: "
            "what is the cheapest way for such an encoder to make every pair agree?"
        ),
        hint="think of the trivial solution that maximises agreement between two views",
        kind="answer",
    )
)

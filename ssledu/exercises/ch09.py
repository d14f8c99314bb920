"""Exercises of chapter 09 (efficient pretraining and scaling out)."""

from __future__ import annotations

import math
import random

from ssledu.check import Exercise, as_float, choice, register


# --- 1. the padding waste of a batching ------------------------------------------------------


def _cases_padding_waste(rng: random.Random):
    n = rng.randrange(5, 40)
    lengths = [rng.randrange(1, 60) for _ in range(n)]
    order = list(range(n))
    rng.shuffle(order)
    batches, start = [], 0
    while start < n:  # batches of different sizes: a mean of per-batch shares is then wrong
        size = rng.randrange(1, 9)
        batches.append(order[start:start + size])
        start += size
    return [{"lengths": lengths, "batches": batches}]


def _ref_padding_waste(lengths, batches):
    from ssledu import efficient

    return efficient.padding_stats(lengths, batches)["waste"]


def _compare_waste(got, expected):
    g = as_float(got)
    if g is None:
        return f"return one number (the share of padded positions); got a {type(got).__name__}"
    if not 0 <= g < 1:
        return f"a share of padding lies in [0, 1); got {g:.4g}"
    if math.isclose(g, expected, rel_tol=1e-9, abs_tol=1e-12):
        return True
    return (f"your waste {g:.6f} differs from the true share of padding; count every position of every "
            "padded rectangle once, whatever its batch")


register(
    Exercise(
        name="padding_waste",
        chapter="09",
        description="the share of padded positions when each batch is padded to its longest row",
        reference=_ref_padding_waste,
        cases=_cases_padding_waste,
        compare=_compare_waste,
        hint="draw each batch as a rectangle: how many rows, how wide? The waste is what the rectangles hold "
        "beyond the real tokens, as a share of all positions in all rectangles",
    )
)


# --- 2. the compute-optimal split of a budget ------------------------------------------------


def _cases_compute_optimal(rng: random.Random):
    params = {"E": round(rng.uniform(0.1, 2.0), 3), "A": round(rng.uniform(50, 800), 1),
              "alpha": round(rng.uniform(0.2, 0.6), 3), "B": round(rng.uniform(50, 3000), 1),
              "beta": round(rng.uniform(0.2, 0.6), 3)}
    return [{"params": params, "C": float(10 ** rng.uniform(15, 24))}]


def _ref_compute_optimal(params, C):
    from ssledu import scaling

    return scaling.compute_optimal(params, C)


def _compare_split(got, expected):
    try:
        n, d = (float(v) for v in got)
    except (TypeError, ValueError):
        return "return a pair (N, D) of numbers: the model size and the training tokens"
    n_opt, d_opt = expected
    c = 6 * n_opt * d_opt
    if not (n > 0 and d > 0):
        return f"N and D must be positive; got ({n:.4g}, {d:.4g})"
    if not math.isclose(6 * n * d, c, rel_tol=1e-6):
        return f"your split does not spend the budget: 6 N D = {6 * n * d:.4g}, not C = {c:.4g}"
    if not math.isclose(n, n_opt, rel_tol=1e-6):
        return (f"N = {n:.4g} spends the budget but is not the best split: the predicted loss is lower "
                f"elsewhere on the line 6 N D = C ({'smaller' if n > n_opt else 'larger'} models)")
    return True


register(
    Exercise(
        name="compute_optimal_split",
        chapter="09",
        description="the (N, D) of least predicted loss L(N, D) for a compute budget C = 6 N D",
        reference=_ref_compute_optimal,
        cases=_cases_compute_optimal,
        compare=_compare_split,
        hint="on the line 6 N D = C write D in terms of N and C, put it into the law, and set the derivative "
        "with respect to N to zero: the two terms that depend on N balance at the optimum",
    )
)


# --- 3. reasoning about a measured trade-off -------------------------------------------------


register(
    Exercise(
        name="memory_for_compute",
        chapter="09",
        description="multiple choice: the cheapest way to the gradient of a batch that does not fit",
        reference=lambda: "b",
        compare=choice(
            "compare the FLOPs of the options with those of one plain step on all 64 rows: which option "
            "does no work that a plain step does not do?"
        ),
        hint="section 3 measured what checkpointing costs in time; think about which options change what is "
        "computed and which only change how much of it is held in memory at once",
        kind="answer",
    )
)

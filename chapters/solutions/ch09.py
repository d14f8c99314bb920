"""Worked solutions for chapter 09's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

SOLUTIONS = {}
WRONG = {}


# --- chapter 09 -------------------------------------------------------------

def padding_waste(lengths, batches):
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)  # rows x longest row
    return 1 - real / padded


def padding_waste_wrong(lengths, batches):  # the mean of each batch's share: small batches weigh too much
    shares = [1 - sum(lengths[i] for i in b) / (len(b) * max(lengths[i] for i in b)) for b in batches]
    return sum(shares) / len(shares)


SOLUTIONS["padding_waste"] = padding_waste
WRONG["padding_waste"] = padding_waste_wrong


def compute_optimal_split(params, C):
    # L(N) = E + A N^-alpha + B (C/6)^-beta N^beta on the budget line D = C / (6 N);
    # dL/dN = 0  <=>  alpha A N^-alpha = beta B (C/6 N^-1)^-beta  (Hoffmann et al. 2022, eq. 4)
    a, alpha, b, beta = params["A"], params["alpha"], params["B"], params["beta"]
    g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
    n = g * (C / 6) ** (beta / (alpha + beta))
    return n, C / (6 * n)


def compute_optimal_split_wrong(params, C):  # the exponents swapped: N grows like (C/6)^(alpha/(alpha+beta))
    a, alpha, b, beta = params["A"], params["alpha"], params["B"], params["beta"]
    g = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
    n = g * (C / 6) ** (alpha / (alpha + beta))
    return n, C / (6 * n)


SOLUTIONS["compute_optimal_split"] = compute_optimal_split
WRONG["compute_optimal_split"] = compute_optimal_split_wrong


# Gradient accumulation: 4 micro-batches of 16, their gradients summed (each loss weighted by its
# share of the tokens) before one optimizer step, is exactly the 64-row gradient with the FLOPs
# of one plain step; only 16 rows of activations live at a time. Checkpointing (a) also fits but
# recomputes every forward (section 3: a slower step); bf16 (c) halves some activations at best,
# not the factor 4 that is missing.
SOLUTIONS["memory_for_compute"] = "b"
WRONG["memory_for_compute"] = "a"

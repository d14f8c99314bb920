"""Worked solutions for chapter 05's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import numpy as np

SOLUTIONS = {}
WRONG = {}


def pca_limit_by_hand(x, k):
    xc = x - x.mean(0)  # the affine reconstruction may add the mean back
    eigenvalues = np.linalg.eigvalsh(xc.T @ xc / len(x))  # ascending, (D,)
    return float(eigenvalues[: x.shape[1] - k].sum() / x.shape[1])  # the D - k smallest, per entry


def pca_limit_by_hand_wrong(x, k):  # forgets to centre: the leading direction is spent on the mean
    s = np.linalg.svd(x, compute_uv=False)
    return float((s[k:] ** 2).sum() / x.size)


SOLUTIONS["pca_limit_by_hand"] = pca_limit_by_hand
WRONG["pca_limit_by_hand"] = pca_limit_by_hand_wrong


def infill_by_hand(words, spans):
    out, w = [], 0
    for first, length in spans:
        out += words[w:first] + ["[MASK]"]  # one [MASK] per span, insertions included
        w = first + length
    return out + words[w:]


def infill_by_hand_wrong(words, spans):  # skips the zero-length spans (the insertions)
    return infill_by_hand(words, [(f, n) for f, n in spans if n > 0])


SOLUTIONS["infill_by_hand"] = infill_by_hand
WRONG["infill_by_hand"] = infill_by_hand_wrong


def t5_lengths_by_hand(n, noise_density, mean_span_length):
    noise = min(max(round(n * noise_density), 1), n - 1)
    spans = max(1, round(noise / mean_span_length))
    return n - noise + spans + 1, noise + spans + 1  # a sentinel per span, and EOS, on each side


def t5_lengths_by_hand_wrong(n, noise_density, mean_span_length):  # forgets the final EOS
    noise = min(max(round(n * noise_density), 1), n - 1)
    spans = max(1, round(noise / mean_span_length))
    return n - noise + spans, noise + spans


SOLUTIONS["t5_lengths_by_hand"] = t5_lengths_by_hand
WRONG["t5_lengths_by_hand"] = t5_lengths_by_hand_wrong

# (a) the limit holds for every linear map, however trained; (b) leaves the linear class;
# (c) noise changes what is learned but cannot beat the best linear map on the clean data;
# (d) is false: section 3's non-linear networks went below it.
SOLUTIONS["linear_ae_limit"] = "b"
WRONG["linear_ae_limit"] = "a"

# (a) equal steps would hand ELECTRA the generator's compute for free; (b) true of CPU time,
# but it is why we measure CPU time, not why compute is the fair unit; (c) the paper compares
# at equal compute (FLOPs), and a step of ELECTRA computes two networks; (d) the weight of 50
# balances the two losses, it does not make a step cheaper or a comparison fair.
SOLUTIONS["electra_vs_mlm"] = "c"
WRONG["electra_vs_mlm"] = "a"

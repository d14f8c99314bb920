"""Exercises of chapter 05 (denoising autoencoders: the PCA limit, BART's infilling, T5's lengths, ELECTRA)."""

from __future__ import annotations

import random

from ssledu.check import Exercise, _to_python, choice, register

# --- 1. the limit of a linear autoencoder ---------------------------------------------


def _cases_pca_limit(rng: random.Random):
    import numpy as np

    n, d = rng.randrange(20, 80), rng.randrange(3, 12)
    g = np.random.default_rng(rng.randrange(2**31))
    # correlated columns far from the origin: forgetting the mean costs a lot
    x = g.normal(size=(n, d)) @ g.normal(size=(d, d)) + g.uniform(2, 5, size=d)
    return [{"x": x, "k": rng.randrange(0, d + 1)}]


def _ref_pca_limit(x, k):
    from ssledu.objectives import denoise

    return denoise.pca_reconstruction_error(x, k)


def _compare_limit(got, expected):
    got = _to_python(got)
    if isinstance(got, (list, tuple)) or not isinstance(got, (int, float)) or isinstance(got, bool):
        return f"return one number (the mean squared error per entry); got {type(got).__name__}"
    if abs(got - expected) <= 1e-6 * max(1.0, abs(expected)):
        return True
    if got > expected:
        return (f"{got:.6g} is above the best rank-k error for this data: is your reconstruction the "
                "best one, and is it allowed a constant offset?")
    return f"{got:.6g} is below what any rank-k reconstruction can reach: check what you average over"


register(
    Exercise(
        name="pca_limit_by_hand",
        chapter="05",
        description="the best mean squared error of a rank-k affine reconstruction (the linear AE limit)",
        reference=_ref_pca_limit,
        cases=_cases_pca_limit,
        compare=_compare_limit,
        hint="the error of the best k-dimensional reconstruction is what the other directions hold: "
        "which matrix's eigenvalues measure that, and of which data?",
    )
)


# --- 2. text infilling by hand ----------------------------------------------------------


def _cases_infill(rng: random.Random):
    import torch

    from ssledu.data import toyworld
    from ssledu.objectives import denoise

    words = toyworld.generate_texts(1, seed=rng.randrange(10_000))[0].split()[: rng.randrange(5, 40)]
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    cases = [{"words": words, "spans": denoise.infilling_spans(len(words), rng.choice([0.3, 0.5]), 3.0, generator=g)}]
    # a case that surely holds insertions (length 0), one of them after the last word
    n = len(words)
    cases.append({"words": words, "spans": [(0, 0), (1, 2), (n, 0)] if n > 3 else [(0, 1), (n, 0)]})
    return cases


def _ref_infill(words, spans):
    out, w = [], 0
    for first, length in spans:
        out += words[w:first] + ["[MASK]"]
        w = first + length
    return out + words[w:]


def _compare_infill(got, expected):
    got = _to_python(got)
    if not isinstance(got, list) or not all(isinstance(t, str) for t in got):
        return "return a list of words (strings), with '[MASK]' for each span"
    if got == expected:
        return True
    if got.count("[MASK]") != expected.count("[MASK]"):
        return (f"your output holds {got.count('[MASK]')} [MASK]s for {expected.count('[MASK]')} spans; "
                "every span gives exactly one, whatever its length")
    if len(got) != len(expected):
        return f"your output has {len(got)} words; the corrupted text has {len(expected)}"
    i = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    return f"word {i} of your output is {got[i]!r}; look again at where the span before it starts and ends"


register(
    Exercise(
        name="infill_by_hand",
        chapter="05",
        description="BART's text infilling on a list of words, given the spans",
        reference=_ref_infill,
        cases=_cases_infill,
        compare=_compare_infill,
        hint="walk over the spans in order, keep the words between them; what does a span of length 0 "
        "put into the text?",
    )
)


# --- 3. T5's lengths --------------------------------------------------------------------


def _cases_t5(rng: random.Random):
    cases = [{"n": 568, "noise_density": 0.15, "mean_span_length": 3.0}]
    for _ in range(3):
        cases.append({"n": rng.randrange(2, 1000), "noise_density": rng.choice([0.15, 0.3, 0.5]),
                      "mean_span_length": rng.choice([1.0, 3.0, 8.0])})
    cases.append({"n": 3, "noise_density": 0.9, "mean_span_length": 3.0})  # the clip at n - 1
    return cases


def _ref_t5(n, noise_density, mean_span_length):
    from ssledu.objectives import denoise

    return tuple(denoise.t5_lengths(n, noise_density, mean_span_length))


def _compare_t5(got, expected):
    got = _to_python(got)
    if not isinstance(got, (list, tuple)) or len(got) != 2:
        return "return a tuple (input length, target length)"
    try:
        got = tuple(int(v) for v in got)
    except (TypeError, ValueError):
        return "the two lengths must be integers"
    if got == tuple(expected):
        return True
    if got[0] + got[1] != expected[0] + expected[1]:
        return (f"got {got}, which adds up to {sum(got)}; count the tokens the input and the target "
                "each hold besides the words: one per span, and what at the end?")
    return f"got {got}: the totals agree, so the split between noise and kept tokens is off"


register(
    Exercise(
        name="t5_lengths_by_hand",
        chapter="05",
        description="(input length, target length) of T5 span corruption on n tokens",
        reference=_ref_t5,
        cases=_cases_t5,
        compare=_compare_t5,
        hint="count noise tokens and spans first (round, and keep at least one of each kind of token); "
        "then list what the input holds and what the target holds",
    )
)


# --- 4. reasoning about the linear limit --------------------------------------------------

register(
    Exercise(
        name="linear_ae_limit",
        chapter="05",
        description="multiple choice: what can bring a linear autoencoder's training error below PCA's?",
        reference=lambda: "b",
        compare=choice(
            "compare the linear rows of section 3's table with the non-linear rows: which of them went "
            "below the limit, and what did those networks have that the others lacked?"
        ),
        hint="section 2 proves the limit for every linear encoder and decoder, whatever the training; "
        "which option leaves that class of functions?",
        kind="answer",
    )
)


# --- 5. reading the ELECTRA measurement -------------------------------------------------------

register(
    Exercise(
        name="electra_vs_mlm",
        chapter="05",
        description="multiple choice: why compare ELECTRA and a masked LM at equal CPU time, not equal steps?",
        reference=lambda: "c",
        compare=choice(
            "look at section 9's table of steps and CPU milliseconds per step: what does one ELECTRA "
            "step compute that a masked-LM step does not, and what is the paper's claim measured against?"
        ),
        hint="an option can be true and still not be the reason; ask what would be unfair about giving "
        "both networks the same number of steps",
        kind="answer",
    )
)

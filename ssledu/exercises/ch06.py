"""Exercises of chapter 06 (contrastive learning: NT-Xent, alignment and uniformity, collapse)."""

from __future__ import annotations

import math
import random

from ssledu.check import Exercise, as_float as _float, choice, register


# --- 1. NT-Xent by hand ------------------------------------------------------------


def _cases_nt_xent(rng: random.Random):
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2**31))
    n, d = rng.randrange(2, 7), rng.randrange(3, 9)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    # the second view: the first plus noise, so the positives are really the most similar
    z2 = z1 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    if rng.random() < 0.5:
        z1, z2 = 3.0 * z1, 0.2 * z2  # lengths differ: only cosines may count
    return [{"z1": z1, "z2": z2, "temperature": rng.choice([0.1, 0.2, 0.5, 1.0])}]


def _ref_nt_xent(z1, z2, temperature):
    from ssledu.objectives import contrastive

    return float(contrastive.nt_xent(z1, z2, temperature))


def _unmasked(z1, z2, temperature):
    """The loss with each anchor's similarity to itself left among the candidates."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return float(F.cross_entropy(z @ z.T / temperature, target))


def _compare_nt_xent_factory():
    last = {}

    def compare(got, expected):
        g = _float(got)
        if g is None:
            return "return one number (a float or a 0-d tensor): the mean loss over the 2N anchors"
        if math.isclose(g, expected, rel_tol=1e-5, abs_tol=1e-7):
            return True
        case = last.get("case")
        if case is not None and math.isclose(g, _unmasked(**case), rel_tol=1e-5, abs_tol=1e-7):
            return ("your loss keeps, for each anchor, its similarity with itself among the candidates: "
                    "cos = 1 is the largest logit of every row, and it is not a negative")
        return (f"your loss is {g:.6g}; count the candidates of one anchor (how many rows of the (2N, 2N) "
                "matrix compete?) and check that similarities are cosines and divided by the temperature")

    return compare, last


_nt_compare, _nt_last = _compare_nt_xent_factory()


def _ref_nt_xent_remembering(z1, z2, temperature):
    _nt_last["case"] = {"z1": z1.clone(), "z2": z2.clone(), "temperature": temperature}
    return _ref_nt_xent(z1, z2, temperature)


register(
    Exercise(
        name="nt_xent_by_hand",
        chapter="06",
        description="SimCLR's NT-Xent loss over 2N anchors, mean reduction",
        reference=_ref_nt_xent_remembering,
        cases=_cases_nt_xent,
        compare=_nt_compare,
        n_cases=6,
        hint="stack the two views into 2N rows, normalise them, build the (2N, 2N) matrix of cosines over "
        "the temperature, then ask for each row: which column is its positive, and which column must not "
        "compete at all?",
    )
)


# --- 2. alignment and uniformity by hand --------------------------------------------


def _cases_align_uniform(rng: random.Random):
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2**31))
    n, d = rng.randrange(3, 9), rng.randrange(2, 7)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * rng.choice([0.3, 1.0, 4.0])
    y = x + rng.choice([0.1, 0.5, 1.0]) * torch.randn(n, d, generator=g, dtype=torch.float64)
    return [{"x": x, "y": y}]


def _ref_align_uniform(x, y):
    from ssledu.objectives import contrastive

    return [float(contrastive.alignment(x, y)), float(contrastive.uniformity(x))]


def _compare_align_uniform(got, expected):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "return a pair (alignment, uniformity) of two numbers"
    a, u = _float(got[0]), _float(got[1])
    if a is None or u is None:
        return "both items of the pair must be single numbers (floats or 0-d tensors)"
    ok_a = math.isclose(a, expected[0], rel_tol=1e-5, abs_tol=1e-7)
    ok_u = math.isclose(u, expected[1], rel_tol=1e-5, abs_tol=1e-7)
    if ok_a and ok_u:
        return True
    if not ok_a:
        return (f"alignment is {a:.6g} in your answer; it must lie in [0, 4] for unit vectors and not change "
                "when a row is scaled. Did you put every row on the unit sphere first?")
    return (f"uniformity is {u:.6g} in your answer; it is a log of a mean over the N(N-1)/2 pairs i < j "
            "of distinct rows (not over i = j, and not twice each pair), with t = 2")


register(
    Exercise(
        name="alignment_uniformity_by_hand",
        chapter="06",
        description="Wang & Isola's alignment (alpha = 2) and uniformity (t = 2) of a batch of pairs",
        reference=_ref_align_uniform,
        cases=_cases_align_uniform,
        compare=_compare_align_uniform,
        n_cases=6,
        hint="both measures live on the unit sphere; alignment averages a squared distance over the N "
        "positive pairs, uniformity is the log of an average Gaussian kernel over all pairs of distinct rows",
    )
)


# --- 3. reading the collapse measurement -------------------------------------------


register(
    Exercise(
        name="pull_only_collapse",
        chapter="06",
        description="multiple choice: why the pull-only loss reached 0 while its probe got worse",
        reference=lambda: "c",
        compare=choice(
            "look at the spread of the test embeddings and the probe accuracy of the pull-only encoder side "
            "by side: what single function of the input makes that loss zero for every pair?"
        ),
        hint="a loss that reaches its minimum is only as good as the set of functions that minimise it; "
        "list the encoders that would score zero on it",
        kind="answer",
    )
)


# --- 4. reading the retrieval table -------------------------------------------------


register(
    Exercise(
        name="tfidf_vs_simcse",
        chapter="06",
        description="multiple choice: why TF-IDF retrieves same-object stories as well as SimCSE on toyworld",
        reference=lambda: "c",
        compare=choice(
            "read one test story and mark the words that decide its label; then ask which encoder compares "
            "exactly those words, and what SimCSE's loss rewards instead"
        ),
        hint="a method can only find what its training signal or its features point at: what does a word "
        "count see in a toyworld story, and what makes one story different from the other stories of a batch?",
        kind="answer",
    )
)

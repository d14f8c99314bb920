"""Exercises of chapter 04 (prefix language modelling, UniLM)."""

from __future__ import annotations

import math
import random

from ssledu.check import Exercise, _to_python, choice, register


# --- 1. build the prefix mask ------------------------------------------------------


def _ref_prefix_mask_by_hand(length: int, prefix_lengths):
    import torch

    from ssledu.objectives import prefix

    return prefix.prefix_mask(torch.ones(len(prefix_lengths), length, dtype=torch.long), list(prefix_lengths))


def _cases_prefix_mask(rng: random.Random):
    length = rng.randrange(3, 11)
    return [{"length": length, "prefix_lengths": [rng.randrange(0, length + 1) for _ in range(rng.randrange(1, 4))]}]


def _compare_additive_mask(got, expected):
    import torch

    if not isinstance(got, torch.Tensor):
        return f"return a torch tensor; got a {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"expected shape {tuple(expected.shape)} = (B, 1, L, L); got {tuple(got.shape)}"
    if not got.is_floating_point():
        return ("your mask is not a float tensor: a boolean or integer 4D mask is ADDED to the attention "
                "scores by eager attention (True/False as 1/0), so it blocks nothing")
    allowed = expected == 0
    if not bool((got[allowed] == 0).all()):
        b, _, i, j = (allowed & (got != 0)).nonzero()[0].tolist()
        return f"example {b}: query {i} may attend key {j}, so the mask must hold 0 there"
    if not bool((got[~allowed] <= -1e4).all()):
        b, _, i, j = (~allowed & (got > -1e4)).nonzero()[0].tolist()
        value = float(got[b, 0, i, j])
        return (f"example {b}: query {i} must not see key {j}; put a very negative number there "
                f"(torch.finfo(dtype).min), not {value:.3g}")
    return True


register(
    Exercise(
        name="prefix_mask_by_hand",
        chapter="04",
        description="the additive (B, 1, L, L) prefix-LM mask for sequences of one length",
        reference=_ref_prefix_mask_by_hand,
        cases=_cases_prefix_mask,
        compare=_compare_additive_mask,
        hint="draw the 6 x 6 picture for P = 3 first, like the prefix panel of the first figure: which "
        "block is full, which triangle remains? Build the (B, L, L) pattern of allowed pairs, then turn it "
        "into numbers",
    )
)


# --- 2. the leak test, by hand -----------------------------------------------------


class _PlantedNetwork:
    """A stand-in network whose true visibility is known: h_i = tanh(sum_j W_ij E[x_j]).

    W is zero exactly where query i cannot see key j; a planted leak is a blocked pair given
    a weight, some of them tiny (1e-6), because a leak of any size lets the answer through.
    Called on (L,) ids it returns (L, d) hidden states; on (B, L) ids, (B, L, d).
    """

    def __init__(self, weights, embedding):
        self._weights, self._embedding = weights, embedding  # (L, L), (V, d) float64

    def __call__(self, input_ids):
        import torch

        ids = torch.as_tensor(input_ids).long()
        if ids.dim() == 2:
            return torch.stack([self(row) for row in ids])
        if ids.dim() != 1 or ids.numel() != self._weights.shape[0]:
            raise ValueError(f"this network reads one sequence of {self._weights.shape[0]} ids (or a (B, "
                             f"{self._weights.shape[0]}) batch); got shape {tuple(ids.shape)}")
        return torch.tanh(self._weights @ self._embedding[ids])  # (L, d)

    def __repr__(self):
        return f"<network over {self._weights.shape[0]} positions>"


def _cases_find_leaks(rng: random.Random):
    import torch

    from ssledu.objectives import prefix

    L, V = rng.randrange(5, 10), rng.randrange(6, 12)
    kind = rng.choice(["causal", "prefix", "right_to_left"])
    kw = {"prefix_lengths": [rng.randrange(1, L)]} if kind == "prefix" else {}
    allowed = prefix.allowed(prefix.build_mask(kind, torch.ones(1, L), **kw))[0]  # (L, L) bool
    blocked = [tuple(x) for x in (~allowed).nonzero().tolist()]
    leaks = rng.sample(blocked, min(len(blocked), rng.randrange(0, 4)))
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    weights = (0.5 + torch.rand(L, L, generator=g, dtype=torch.float64)) * allowed
    ids = torch.randint(0, V, (L,), generator=g)
    for k, (i, j) in enumerate(leaks):
        weights[i, j] = 1e-6 if k == 0 else 0.3  # the first leak is tiny
        if k == 1:
            ids[j] = 0  # a leaking key holding id 0: replacing it "by 0" changes nothing
    embedding = torch.randn(V, 8, generator=g, dtype=torch.float64)
    return [{"hidden": _PlantedNetwork(weights, embedding), "input_ids": ids, "allowed": allowed,
             "vocab_size": V}]


def _ref_find_leaks(hidden, input_ids, allowed, vocab_size):
    # the planted truth: a blocked pair with a weight (random embeddings make every weight show)
    return [tuple(p) for p in ((hidden._weights != 0) & ~allowed).nonzero().tolist()]


def _compare_leaks(got, expected):
    g = _to_python(got)
    if not isinstance(g, (list, tuple, set)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in g):
        return "return a list of (query, key) pairs, e.g. [(0, 3), (2, 4)]"
    pairs = {(int(i), int(j)) for i, j in g}
    want = {tuple(p) for p in expected}
    if pairs - want:
        i, j = sorted(pairs - want)[0]
        return (f"({i}, {j}) is not a leak: either query {i} may see key {j} or its output did not move "
                f"when token {j} changed")
    if want - pairs:
        i, j = sorted(want - pairs)[0]
        return (f"you missed a leak: query {i} moves when token {j} changes, and it may not see key {j}; "
                f"how small can a change be and still matter, and did your replacement really change token {j}?")
    return True


register(
    Exercise(
        name="find_leaks",
        chapter="04",
        description="the perturbation leak test of a network against the visibility a mask should give",
        reference=_ref_find_leaks,
        cases=_cases_find_leaks,
        compare=_compare_leaks,
        n_cases=6,
        hint="a position can only depend on a token it sees; change one token at a time, run the network "
        "again and compare its outputs with those of the unchanged sequence",
    )
)


# --- 4. the exact posterior of a blank inside a prompt -------------------------------


def _cases_blank_posterior(rng: random.Random):
    from ssledu.data import toyworld

    text = toyworld.generate_texts(1, seed=rng.randrange(10_000))[0]
    words = text.split()
    kinds = toyworld.position_kinds(words)
    visible = rng.randrange(8, min(len(words), 30) + 1)
    content = [i for i in range(visible) if kinds[i] != "free" or words[i] in toyworld.NUMBER_WORDS]
    i = rng.choice(content) if content and rng.random() < 0.8 else rng.randrange(visible)
    return [{"words": words[:i] + ["_"] + words[i + 1 : visible], "i": i}]


def _ref_blank_posterior(words, i):
    from ssledu.objectives import prefix

    return prefix.blank_posterior(words, i, visible=len(words))


def _compare_posterior(got, expected):
    if not isinstance(got, dict):
        return f"return a dict {{word: probability}}; got a {type(got).__name__}"
    try:
        g = {str(k): float(v) for k, v in got.items() if float(v) > 0}
    except (TypeError, ValueError):
        return "the values of your dict must be numbers (probabilities)"
    if abs(sum(g.values()) - 1) > 1e-6:
        return f"your probabilities sum to {sum(g.values()):.6g}, not 1"
    if set(g) - set(expected):
        w = sorted(set(g) - set(expected))[0]
        return f"you give {w!r} a probability > 0, but with {w!r} there the rest of the prompt cannot be produced"
    if set(expected) - set(g):
        w = sorted(set(expected) - set(g))[0]
        return f"{w!r} can fill the blank, and you give it no probability"
    for w, p in expected.items():
        if not math.isclose(g[w], p, rel_tol=1e-6, abs_tol=1e-9):
            return f"p({w!r}) is {g[w]:.4g} in your answer, {p:.4g} exactly"
    return True


register(
    Exercise(
        name="blank_posterior_by_hand",
        chapter="04",
        description="toyworld's exact posterior of one blank inside a prompt, by Bayes' rule",
        reference=_ref_blank_posterior,
        cases=_cases_blank_posterior,
        compare=_compare_posterior,
        n_cases=4,
        hint="the words after the blank are evidence too: for each word the grammar allows at the blank, "
        "how probable is the whole prompt with that word in place? Then normalise",
    )
)


# --- 3. find the bug in a leaking mask ---------------------------------------------


register(
    Exercise(
        name="leaky_prefix_mask_bug",
        chapter="04",
        description="multiple choice: which comparison makes leaky_prefix_mask leak?",
        reference=lambda: "b",
        compare=choice(
            "look at the column that leaks in the leak test: which token is it, and who must predict it?"
        ),
        hint="compare the leaking pairs with the prefix panel of the first figure: where do the two patterns "
        "differ, and what is the token there to the prompt?",
        kind="answer",
    )
)

"""Exercises of chapter 04 (prefix language modelling, UniLM)."""

from __future__ import annotations

import random

from ssledu.check import Exercise, _to_python, choice, register


def _allowed_rows(kind: str, length: int, prefix_length: int):
    """(L, L) nested lists of bool from the package's mask builders."""
    import torch

    from ssledu.objectives import prefix

    am = torch.ones(1, length, dtype=torch.long)
    kw = {"prefix_lengths": [prefix_length]} if kind == "prefix" else {}
    return prefix.allowed(prefix.build_mask(kind, am, **kw))[0].tolist()


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
        hint="query i may attend key j when j lies in the prefix (j < P) or j is not in the future "
        "(j <= i); the mask holds 0 there and torch.finfo(torch.float32).min elsewhere",
    )
)


# --- 2. which positions does a position see? ---------------------------------------

_KINDS = ("bidirectional", "causal", "right_to_left", "prefix")


def _ref_visible_keys(kind: str, length: int, prefix_length: int, i: int):
    row = _allowed_rows(kind, length, prefix_length)[i]
    return [j for j, ok in enumerate(row) if ok]


def _cases_visible_keys(rng: random.Random):
    length = rng.randrange(4, 12)
    out = [{"kind": k, "length": length, "prefix_length": rng.randrange(1, length), "i": rng.randrange(length)}
           for k in _KINDS]
    # the cells where prefix and causal differ: a prefix position looking right
    p = rng.randrange(2, length)
    out.append({"kind": "prefix", "length": length, "prefix_length": p, "i": rng.randrange(0, p - 1)})
    rng.shuffle(out)
    return out


def _compare_sorted(got, expected):
    g = _to_python(got)
    if not isinstance(g, (list, tuple)):
        return f"return a list of key positions; got a {type(g).__name__}"
    if sorted(g) == expected:
        return True
    missing, extra = sorted(set(expected) - set(g)), sorted(set(g) - set(expected))
    if extra:
        return f"your list includes a key the query may not see (e.g. {extra[0]})"
    return f"your list misses a key the query may see (e.g. {missing[0]})"


register(
    Exercise(
        name="visible_keys",
        chapter="04",
        description="the key positions a query may attend to under a named mask",
        reference=_ref_visible_keys,
        cases=_cases_visible_keys,
        compare=_compare_sorted,
        n_cases=10,
        hint="bidirectional: every key; causal: j <= i; right_to_left: j >= i; prefix: j < P or j <= i "
        "(a prefix position sees the whole prefix, also to its right)",
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
        hint="position i is trained to predict token i + 1; which query may see its own target?",
        kind="answer",
    )
)

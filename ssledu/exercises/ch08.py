"""Exercises of chapter 08 (probing and transfer: span decoding, the evidence rank, reading the table)."""

from __future__ import annotations

import random

from ssledu.check import Exercise, choice, register


# --- 1. decoding an answer span ------------------------------------------------------


def _cases_span(rng: random.Random):
    import torch

    g = torch.Generator().manual_seed(rng.randrange(2**31))
    b, length = rng.randrange(1, 5), rng.randrange(4, 13)
    start, end = torch.randn(b, length, generator=g), torch.randn(b, length, generator=g)
    # one row where the best start lies after the best end: independent argmaxes go wrong there
    start[0, -1] += 4.0
    end[0, 0] += 4.0
    return [{"start_logits": start, "end_logits": end, "max_answer_len": rng.choice([1, 2, 3, 30])}]


def _ref_span(start_logits, end_logits, max_answer_len):
    from ssledu.adapt import decode_span

    s, e = decode_span(start_logits, end_logits, max_answer_len=max_answer_len)
    return [s.tolist(), e.tolist()]


def _compare_span(got, expected):
    from ssledu.check import _to_python

    g = _to_python(got)
    if not isinstance(g, list) or len(g) != 2 or not all(isinstance(x, list) for x in g):
        return "return a pair (starts, ends): two lists (or 1-D tensors) with one position per row"
    if [list(map(int, x)) for x in g] == expected:
        return True
    if any(int(e) < int(s) for s, e in zip(*g)):
        return "one of your spans ends before it starts: the end may only be chosen at or after the start"
    return ("your spans start and end in order but are not the best ones: score every allowed pair "
            "(start, end) by the sum of the two logits; how many tokens may a span hold?")


register(
    Exercise(
        name="decode_span_by_hand",
        chapter="08",
        description="the best answer span (start <= end, at most max_answer_len tokens) from start/end logits",
        reference=_ref_span,
        cases=_cases_span,
        compare=_compare_span,
        n_cases=6,
        hint="a span is a pair (s, e); its score is start_logits[s] + end_logits[e]; list the pairs that are "
        "allowed before you take a maximum",
    )
)


# --- 2. the rank of the evidence word ------------------------------------------------


def _cases_rank(rng: random.Random):
    n = rng.randrange(5, 14)
    saliency = [round(rng.random(), 3) for _ in range(n)]
    answer = rng.randrange(n)
    evidence = rng.choice([i for i in range(n) if i != answer])
    # the answer word is usually the most salient word: make it so, as in a trained QA head
    saliency[answer] = max(saliency) + 1.0
    if rng.random() < 0.5:  # a tie with the evidence
        other = rng.choice([i for i in range(n) if i not in (answer, evidence)])
        saliency[other] = saliency[evidence]
    return [{"saliency": saliency, "evidence": evidence, "answer": answer}]


def _ref_rank(saliency, evidence, answer):
    import torch

    from ssledu.interpret import evidence_rank

    allowed = torch.ones(1, len(saliency), dtype=torch.bool)
    allowed[0, answer] = False
    return int(evidence_rank(torch.tensor([saliency]), [evidence], allowed)[0])


def _compare_rank(got, expected):
    try:
        g = int(got)
    except (TypeError, ValueError):
        return "return one integer: the rank of the evidence word, 1 = the most salient"
    if g == expected:
        return True
    if g == expected + 1:
        return "one word too many ranks above the evidence: which word is always salient, and does it compete?"
    return "count the competing words whose saliency is strictly larger than the evidence's (ties count for it)"


register(
    Exercise(
        name="evidence_rank_by_hand",
        chapter="08",
        description="rank of the evidence word by saliency, the answer word excluded, ties in its favour",
        reference=_ref_rank,
        cases=_cases_rank,
        compare=_compare_rank,
        n_cases=8,
        hint="rank 1 means no competing word is more salient; decide first which words compete at all",
    )
)


# --- 3. reading the table: a probe every network passes ------------------------------


register(
    Exercise(
        name="n_objects_everywhere",
        chapter="08",
        description="multiple choice: why every network, random ones included, probes the number of objects",
        reference=lambda: "b",
        compare=choice(
            "read the first sentence of a story, then ask what a mean-pooled feature of ANY network keeps "
            "of the words it reads, trained or not"
        ),
        hint="a probe measures what can be read off the features, not what the network learned: where in "
        "the text is the answer, and does reading it need any context?",
        kind="answer",
    )
)


# --- 4. reading the table: selectivity of the role probe -----------------------------


register(
    Exercise(
        name="role_selectivity",
        chapter="08",
        description="multiple choice: why the word-role probe has a selectivity near 0 for every network",
        reference=lambda: "b",
        compare=choice(
            "list, for a few words, their role in several stories: does the role ever change with the "
            "context? Then recall how the control labels are drawn"
        ),
        hint="selectivity compares the task with a task that only word identity can solve; ask how much of "
        "the word-role task word identity solves in toyworld",
        kind="answer",
    )
)

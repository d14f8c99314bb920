"""Exercises of chapter 10 (scratchpads: writing a trace, the majority vote, length generalisation)."""

from __future__ import annotations

import random

from ssledu.check import Exercise, choice, register

# --- 1. write the scratchpad -----------------------------------------------------------


def _cases_scratchpad(rng: random.Random):
    # fixed cases first: a chain of carries, a single digit, a carry through every column
    cases = [{"a": 4785, "b": 3926}, {"a": 0, "b": 7}, {"a": 99999, "b": 10001}]
    for _ in range(4):
        d = rng.randint(1, 7)
        low = 10 ** (d - 1) if d > 1 else 0
        cases.append({"a": rng.randint(low, 10**d - 1), "b": rng.randint(low, 10**d - 1)})
    return cases


def _ref_scratchpad(a, b):
    from ssledu.data import scratchpad

    return scratchpad.target_text(scratchpad.Problem(a, b, len(str(a))), "scratchpad")


def _compare_scratchpad(got, expected):
    if not isinstance(got, str):
        return f"return the trace as one string; got {type(got).__name__}"
    if got == expected:
        return True
    from ssledu.data import scratchpad

    try:
        trace = scratchpad.parse_trace(got)
    except ValueError as err:
        return f"the text does not follow the format: {str(err).split(';')[0]}"
    key = scratchpad.parse_trace(expected)
    if len(trace.steps) != len(key.steps):
        return f"your trace has {len(trace.steps)} steps; there is one step per column of the numbers"
    for i, (g, k) in enumerate(zip(trace.steps, key.steps)):
        if (g.a_digit, g.b_digit) != (k.a_digit, k.b_digit):
            return f"step {i + 1} adds the wrong digits: the first step is the rightmost column"
        if g.carry_in != k.carry_in:
            return f"step {i + 1} has the wrong carry: the carry in is the tens digit of the step before"
        if g != k:
            return f"step {i + 1}: the sum is wrong"
    return "the steps are right but the answer after ';' is not"


register(
    Exercise(
        name="scratchpad_text",
        chapter="10",
        description="the scratchpad trace of a + b: one column per step, then the answer",
        reference=_ref_scratchpad,
        cases=_cases_scratchpad,
        compare=_compare_scratchpad,
        n_cases=7,
        hint="walk the columns from the right with a running carry that starts at 0; each step adds the two "
        "digits and the carry, writes the sum with two digits and passes its tens digit on",
    )
)


# --- 2. the majority vote -------------------------------------------------------------


def _cases_vote(rng: random.Random):
    cases = [
        {"answers": ["12", None, None, None, "13", "12"]},  # None is the most frequent: it must not win
        {"answers": ["7", "8", "8", "7"]},  # a tie: the first seen wins
        {"answers": [None, "5"]},
    ]
    for _ in range(5):
        pool = [str(rng.randint(0, 99)) for _ in range(rng.randint(1, 3))]
        chains = [rng.choice(pool + [None]) for _ in range(rng.randint(1, 9))]
        cases.append({"answers": chains + [rng.choice(pool)]})  # at least one real answer
    return cases


def _ref_vote(answers):
    from ssledu.objectives import reasoning

    return reasoning.majority_vote(answers)


def _compare_vote(got, expected):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "return a pair (answer, votes): the winning answer and how many chains gave it"
    if tuple(got) == tuple(expected):
        return True
    if got[0] is None:
        return "None is not an answer: a chain without an answer does not vote, even when such chains are many"
    if got[1] != expected[1] and got[0] == expected[0]:
        return f"the winner is right but the vote count is not: you returned {got[1]!r}"
    return (f"you returned {got[0]!r}; count only real answers, and when two are equally frequent keep the one "
            "that appeared first in the list")


register(
    Exercise(
        name="majority_answer",
        chapter="10",
        description="self-consistency's majority vote (answer, votes): None never votes, ties go to the first seen",
        reference=_ref_vote,
        cases=_cases_vote,
        compare=_compare_vote,
        n_cases=8,
        hint="count the answers that are not None, find the highest count, then walk the list in order and "
        "return the first answer that has it",
    )
)


# --- 3. reading the length-generalisation measurement ---------------------------------

register(
    Exercise(
        name="scratchpad_length_generalisation",
        chapter="10",
        description="multiple choice: why the scratchpad model fails on longer problems than trained on",
        reference=lambda: "c",
        compare=choice(
            "compare what the model gets right (every column of 5-digit sums, carries included) with where "
            "its long traces first break; for a person that step is easy, so what is new there for the network?"
        ),
        hint="the first column of a 6-digit sum needs the same arithmetic as that of a 5-digit sum; list what "
        "else differs between the two texts, token by token, as the network reads them",
        kind="answer",
    )
)

"""Multi-digit addition with an exact answer key and a step-by-step trace (a scratchpad).

A problem adds two numbers of ``digits`` digits each (the difficulty). It can be written
two ways, one character per token:

- ``direct``: ``345+678=`` is followed by ``1023``: the model must produce every carry silently;
- ``scratchpad``: ``345+678=`` is followed by ``5+8+0=13,4+7+1=12,3+6+1=10;1023``: one column
  per step, then the answer.

A scratchpad step is one column, from the right: ``a-digit + b-digit + carry-in = sum``, the
sum always written with two digits (its tens digit is the next carry). Steps are separated by
``,``; ``;`` ends the reasoning and the answer follows. Every step can be checked against the
answer key (:func:`verify_trace`), so a wrong answer can be traced to the first step that
went wrong.

The direct answer's first digit depends on every carry to its right: the model must do all
the work in one forward pass. The scratchpad spreads it over the positions of the text, one
column per step (Nye et al., 2021, "Show your work: scratchpads for intermediate computation
with language models"; our format is a compact version of their addition scratchpad).

Sources of randomness: ``random.Random(seed)`` only, so the same seed gives the same problems
on every machine.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ALPHABET",
    "MAX_DIGITS",
    "FORMATS",
    "STEP_SEP",
    "ANSWER_SEP",
    "Step",
    "Problem",
    "Trace",
    "Verdict",
    "ERROR_KINDS",
    "make_problems",
    "target_text",
    "parse_trace",
    "verify_trace",
    "compare_steps",
    "answer_of",
    "difficulty_stats",
]

ALPHABET = "0123456789+=,;"  # every character a prompt or a target can contain
MAX_DIGITS = 12  # a 12-digit scratchpad is 25 + 12 * 9 + 13 = 146 characters
FORMATS = ("direct", "scratchpad")
STEP_SEP, ANSWER_SEP = ",", ";"
_STEP = re.compile(r"^(\d)\+(\d)\+([01])=(\d\d)$")

# The first thing that differs between a model's step and the key, in the order checked.
ERROR_KINDS = (
    "malformed",  # the text does not follow the format (see parse_trace)
    "copied digit",  # a digit of a or b read from the wrong column
    "carry",  # the carry-in is not the tens digit of the step before
    "sum",  # the column's sum is miscomputed
    "too few steps",
    "too many steps",
    "answer",  # every step right, the answer read off them wrong
)


@dataclass(frozen=True)
class Step:
    """One column of the addition: ``a_digit + b_digit + carry_in = total`` (0 <= total <= 19)."""

    a_digit: int
    b_digit: int
    carry_in: int
    total: int

    @property
    def text(self) -> str:
        return f"{self.a_digit}+{self.b_digit}+{self.carry_in}={self.total:02d}"


@dataclass(frozen=True)
class Problem:
    """``a + b`` with both numbers of ``digits`` digits (a leading 0 only when digits == 1)."""

    a: int
    b: int
    digits: int

    @property
    def prompt(self) -> str:
        return f"{self.a}+{self.b}="

    @property
    def answer(self) -> str:
        return str(self.a + self.b)

    @property
    def steps(self) -> list[Step]:
        """The key: one Step per column, rightmost column first."""
        a, b = str(self.a).zfill(self.digits), str(self.b).zfill(self.digits)
        steps, carry = [], 0
        for i in range(self.digits - 1, -1, -1):
            total = int(a[i]) + int(b[i]) + carry
            steps.append(Step(int(a[i]), int(b[i]), carry, total))
            carry = total // 10
        return steps

    @property
    def carries(self) -> int:
        """How many columns pass a carry to the next one (the final carry included)."""
        return sum(s.total >= 10 for s in self.steps)

    @property
    def longest_carry_chain(self) -> int:
        """The longest run of consecutive columns that each pass a carry on."""
        best = run = 0
        for s in self.steps:
            run = run + 1 if s.total >= 10 else 0
            best = max(best, run)
        return best


def _check_digits(value, what: str = "digits") -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer number of digits; got {value!r}")
    if not 1 <= value <= MAX_DIGITS:
        raise ValueError(
            f"{what}={value} is not supported: numbers of 1 to {MAX_DIGITS} digits are "
            f"(a {MAX_DIGITS}-digit scratchpad already fills 146 positions); pick a value in that range"
        )
    return value


def _digit_choices(digits) -> list[int]:
    if isinstance(digits, range):
        digits = list(digits)
    if isinstance(digits, (list, tuple)):
        if not digits:
            raise ValueError("digits is empty; give an int, a (low, high) pair or a list of digit counts")
        return [_check_digits(d, "each digit count") for d in digits]
    return [_check_digits(digits)]


def make_problems(n: int, digits, *, seed: int) -> list[Problem]:
    """``n`` random addition problems, reproducible from ``seed``.

    digits: the difficulty: an int (every problem), or a list / range of digit counts, each
        problem drawing its count uniformly from it (``range(1, 6)``: 1 to 5 digits).
        Numbers are uniform over the d-digit integers (10^(d-1) .. 10^d - 1; 0..9 for d = 1).
    Returns a list of :class:`Problem`.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer (how many problems); got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer; got {seed!r}")
    choices = _digit_choices(digits)
    rng = random.Random(seed)
    problems = []
    for _ in range(n):
        d = rng.choice(choices)
        low = 10 ** (d - 1) if d > 1 else 0
        problems.append(Problem(rng.randint(low, 10**d - 1), rng.randint(low, 10**d - 1), d))
    return problems


def target_text(problem: Problem, fmt: str) -> str:
    """What follows the prompt in the training data: the answer (``"direct"``) or the
    steps, ``;`` and the answer (``"scratchpad"``). The end token is the tokenizer's [EOS]."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is unknown; available: {', '.join(FORMATS)}")
    if fmt == "direct":
        return problem.answer
    return STEP_SEP.join(s.text for s in problem.steps) + ANSWER_SEP + problem.answer


@dataclass(frozen=True)
class Trace:
    """A scratchpad read back: its steps and the answer after ``;`` (None when absent)."""

    steps: list[Step]
    answer: str | None


def parse_trace(text: str) -> Trace:
    """Read a scratchpad text (what follows the prompt, without the end token) back into steps.

    Raises ValueError naming the first piece that does not follow the format
    ``d+d+c=ss,d+d+c=ss,...;answer`` (c is 0 or 1, ss two digits, answer digits only).
    """
    if not isinstance(text, str):
        raise TypeError(f"a trace is the generated text (a str); got {type(text).__name__}")
    body, sep, answer = text.partition(ANSWER_SEP)
    steps = []
    for i, piece in enumerate(body.split(STEP_SEP) if body else []):
        m = _STEP.match(piece)
        if m is None:
            raise ValueError(
                f"step {i} of the trace is {piece!r}, not 'a+b+c=ss' (one digit each for a, b, "
                f"a carry of 0 or 1, a two-digit sum), e.g. '5+8+0=13'; trace: {text!r}"
            )
        a, b, c, total = (int(g) for g in m.groups())
        steps.append(Step(a, b, c, total))
    if not sep:
        return Trace(steps, None)
    if not re.fullmatch(r"\d+", answer):
        raise ValueError(f"the answer after ';' must be digits only; got {answer!r} in trace {text!r}")
    return Trace(steps, answer)


@dataclass(frozen=True)
class Verdict:
    """A trace checked against the key.

    correct: the final answer equals the true sum (whatever the steps say).
    first_error: index of the first wrong step (len(key steps) for a missing or extra step,
        or for an answer read off right steps wrongly); None when everything is right.
    error: the kind of that first error (one of ``ERROR_KINDS``) or None.
    """

    correct: bool
    first_error: int | None
    error: str | None


def verify_trace(problem: Problem, text: str) -> Verdict:
    """Check every step of a generated scratchpad against ``problem``'s key.

    Each step is compared with the column it should compute, in the order a person would
    check: the two digits copied from the problem, the carry taken from the step before
    (the *model's* step before, so that one slip is blamed once), then the sum.
    """
    key = problem.steps
    try:
        trace = parse_trace(text)
    except ValueError:
        answer = text.rpartition(ANSWER_SEP)[2] if ANSWER_SEP in text else None
        return Verdict(answer == problem.answer, 0, "malformed")
    correct = trace.answer == problem.answer
    for i, (got, want) in enumerate(zip(trace.steps, key)):
        if (got.a_digit, got.b_digit) != (want.a_digit, want.b_digit):
            return Verdict(correct, i, "copied digit")
        carry = 0 if i == 0 else trace.steps[i - 1].total // 10
        if got.carry_in != carry:
            return Verdict(correct, i, "carry")
        if got.total != got.a_digit + got.b_digit + got.carry_in:
            return Verdict(correct, i, "sum")
    if len(trace.steps) < len(key):
        return Verdict(correct, len(trace.steps), "too few steps")
    if len(trace.steps) > len(key):
        return Verdict(correct, len(key), "too many steps")
    if not correct:
        return Verdict(False, len(key), "answer")
    return Verdict(True, None, None)


def compare_steps(problem: Problem, text: str) -> list[dict]:
    """Each piece of a generated scratchpad beside the key's step at the same index, for display.

    Unlike ``parse_trace`` nothing is refused: a malformed piece is simply not equal to its key.
    Returns one dict per written or expected step, ``{"written", "expected", "ok"}`` (a missing
    step has written None, an extra one expected None), then one for the answer.
    """
    body, sep, answer = text.partition(ANSWER_SEP)
    written = body.split(STEP_SEP) if body else []
    expected = [s.text for s in problem.steps]
    rows = []
    for i in range(max(len(written), len(expected))):
        w = written[i] if i < len(written) else None
        e = expected[i] if i < len(expected) else None
        rows.append({"written": w, "expected": e, "ok": w == e})
    got = answer if sep else None
    rows.append({"written": got, "expected": problem.answer, "ok": got == problem.answer})
    return rows


def answer_of(text: str, fmt: str) -> str | None:
    """The answer a reader takes from a generated text: for ``"direct"`` the digits it starts
    with, for ``"scratchpad"`` the digits right after the last ``;``. None when there are none.
    With a text that runs on past its end (no stop token) the digits that follow are read too."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is unknown; available: {', '.join(FORMATS)}")
    if fmt == "scratchpad":
        if ANSWER_SEP not in text:
            return None
        text = text.rpartition(ANSWER_SEP)[2]
    m = re.match(r"\d+", text)
    return m.group(0) if m else None


def difficulty_stats(problems: Iterable[Problem]) -> dict[int, dict]:
    """Per digit count: how many problems, mean carries, share with a final carry (the answer
    one digit longer), mean longest carry chain, mean scratchpad length in characters."""
    groups: dict[int, list[Problem]] = {}
    for p in problems:
        if not isinstance(p, Problem):
            raise TypeError(f"difficulty_stats takes Problems (from make_problems); got {type(p).__name__}")
        groups.setdefault(p.digits, []).append(p)
    out = {}
    for d in sorted(groups):
        ps: Sequence[Problem] = groups[d]
        n = len(ps)
        out[d] = {
            "n": n,
            "mean_carries": sum(p.carries for p in ps) / n,
            "final_carry": sum(len(p.answer) > d for p in ps) / n,
            "mean_longest_chain": sum(p.longest_carry_chain for p in ps) / n,
            "scratchpad_chars": sum(len(target_text(p, "scratchpad")) for p in ps) / n,
        }
    return out

"""Worked solutions for chapter 10's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

from collections import Counter

SOLUTIONS = {}
WRONG = {}


# --- chapter 10 -------------------------------------------------------------

def scratchpad_text(a, b):
    d = len(str(a))
    a_digits, b_digits = str(a).zfill(d), str(b).zfill(d)
    steps, carry = [], 0
    for i in range(d - 1, -1, -1):  # the rightmost column first
        total = int(a_digits[i]) + int(b_digits[i]) + carry
        steps.append(f"{a_digits[i]}+{b_digits[i]}+{carry}={total:02d}")
        carry = total // 10  # the tens digit goes to the next column
    return ",".join(steps) + ";" + str(a + b)


def scratchpad_text_wrong(a, b):  # forgets to pass the carry on: every step writes carry 0
    d = len(str(a))
    a_digits, b_digits = str(a).zfill(d), str(b).zfill(d)
    steps = []
    for i in range(d - 1, -1, -1):
        total = int(a_digits[i]) + int(b_digits[i])
        steps.append(f"{a_digits[i]}+{b_digits[i]}+0={total:02d}")
    return ",".join(steps) + ";" + str(a + b)


SOLUTIONS["scratchpad_text"] = scratchpad_text
WRONG["scratchpad_text"] = scratchpad_text_wrong


def majority_answer(answers):
    counts = Counter(a for a in answers if a is not None)  # a chain without an answer does not vote
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)  # ties: first seen
    return winner, best


def majority_answer_wrong(answers):  # lets None vote: "no answer" wins when most chains give none
    return Counter(answers).most_common(1)[0]


SOLUTIONS["majority_answer"] = majority_answer
WRONG["majority_answer"] = majority_answer_wrong

# (a) it carries correctly on unseen 5-digit sums, (b) a 6-digit trace is about 80 positions,
# (d) the traces break at step 1 whatever the decoding; (c): the digits are found by position.
SOLUTIONS["scratchpad_length_generalisation"] = "c"
WRONG["scratchpad_length_generalisation"] = "a"

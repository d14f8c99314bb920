"""The addition generator of chapter 10: answer key, traces, verifier, difficulty."""

import itertools

import pytest

from ssledu.data import scratchpad as sp


def test_same_seed_same_problems_and_another_seed_others():
    a = sp.make_problems(50, range(1, 6), seed=3)
    assert a == sp.make_problems(50, range(1, 6), seed=3)
    assert a != sp.make_problems(50, range(1, 6), seed=4)
    # fixed values pin the generator: a change of the sampling scheme shows up here
    assert [(p.a, p.b, p.digits) for p in sp.make_problems(2, 3, seed=0)] == [(876, 530, 3), (365, 623, 3)]


def test_numbers_have_exactly_the_requested_digits():
    for p in sp.make_problems(300, [1, 2, 4, 7], seed=1):
        assert p.digits in (1, 2, 4, 7)
        if p.digits == 1:
            assert 0 <= p.a <= 9 and 0 <= p.b <= 9
        else:
            assert len(str(p.a)) == len(str(p.b)) == p.digits


def test_every_trace_parses_back_to_the_answer_and_verifies():
    for p in sp.make_problems(400, range(1, 9), seed=2):
        text = sp.target_text(p, "scratchpad")
        trace = sp.parse_trace(text)
        assert trace.answer == p.answer == str(p.a + p.b)
        assert trace.steps == p.steps and len(trace.steps) == p.digits
        assert sp.verify_trace(p, text) == sp.Verdict(True, None, None)
        assert sp.target_text(p, "direct") == p.answer


def test_the_worked_example_of_the_docstring():
    p = sp.Problem(345, 678, 3)
    assert p.prompt == "345+678="
    assert sp.target_text(p, "scratchpad") == "5+8+0=13,4+7+1=12,3+6+1=10;1023"
    assert p.carries == 3 and p.longest_carry_chain == 3


def _corrupt(text: str, step: int, field: int, new: str) -> str:
    """Replace one field (0 a, 1 b, 2 carry, 3 sum) of one step of a trace."""
    body, _, answer = text.partition(";")
    steps = body.split(",")
    a, rest = steps[step].split("+", 1)
    b, rest = rest.split("+", 1)
    c, total = rest.split("=")
    parts = [a, b, c, total]
    parts[field] = new
    steps[step] = f"{parts[0]}+{parts[1]}+{parts[2]}={parts[3]}"
    return ",".join(steps) + ";" + answer


def test_the_verifier_names_the_first_corrupted_step_and_its_kind():
    p = sp.Problem(2718, 3141, 4)  # columns 8+1, 1+4, 7+1, 2+3: no carries
    text = sp.target_text(p, "scratchpad")
    assert sp.verify_trace(p, _corrupt(text, 2, 0, "6")) == sp.Verdict(True, 2, "copied digit")
    assert sp.verify_trace(p, _corrupt(text, 1, 3, "06")) == sp.Verdict(True, 1, "sum")
    assert sp.verify_trace(p, _corrupt(text, 3, 2, "1")) == sp.Verdict(True, 3, "carry")
    # two slips: only the first is blamed
    both = _corrupt(_corrupt(text, 3, 3, "09"), 1, 1, "5")
    assert sp.verify_trace(p, both).first_error == 1
    # right steps, wrong answer read off them
    assert sp.verify_trace(p, text[:-1] + "0") == sp.Verdict(False, 4, "answer")
    # a step missing or one too many
    body, _, answer = text.partition(";")
    assert sp.verify_trace(p, ",".join(body.split(",")[:3]) + ";" + answer).error == "too few steps"
    assert sp.verify_trace(p, body + ",0+0+0=00;" + answer).error == "too many steps"


def test_a_wrong_sum_carried_on_consistently_is_blamed_once():
    p = sp.Problem(15, 17, 2)  # 5+7+0=12, 1+1+1=03 -> 32
    # the model writes 5+7+0=11 (a wrong sum) and then correctly carries its own 1
    assert sp.verify_trace(p, "5+7+0=11,1+1+1=03;31") == sp.Verdict(False, 0, "sum")
    # a carry that does not follow the model's own previous step is a carry error
    assert sp.verify_trace(p, "5+7+0=12,1+1+0=02;22") == sp.Verdict(False, 1, "carry")


def test_malformed_traces_raise_with_the_expected_format():
    for bad in ("5+8=13;13", "5+8+2=15;15", "5+8+0=3;3", "a+b+0=00;0", "5+8+0=13;1x"):
        with pytest.raises(ValueError, match=r"a\+b\+c=ss|digits only"):
            sp.parse_trace(bad)
    assert sp.parse_trace("5+8+0=13").answer is None  # no ';' yet: steps only
    assert sp.verify_trace(sp.Problem(5, 8, 1), "5+8=13;13") == sp.Verdict(True, 0, "malformed")
    with pytest.raises(TypeError, match="generated text"):
        sp.parse_trace(["5+8+0=13"])


@pytest.mark.parametrize("digits", [0, 13, -1])
def test_unsupported_difficulty_says_the_range(digits):
    with pytest.raises(ValueError, match=r"1 to 12 digits"):
        sp.make_problems(3, digits, seed=0)


def test_bad_arguments_are_explained():
    with pytest.raises(TypeError, match="integer number of digits"):
        sp.make_problems(3, 2.5, seed=0)
    with pytest.raises(ValueError, match="empty"):
        sp.make_problems(3, [], seed=0)
    with pytest.raises(ValueError, match="unknown; available: direct, scratchpad"):
        sp.target_text(sp.Problem(1, 2, 1), "cot")
    with pytest.raises(TypeError, match="from make_problems"):
        sp.difficulty_stats(["1+2="])


def _exact_stats(d: int) -> tuple[float, float]:
    """Mean carries and share of final carries over ALL pairs of d-digit numbers."""
    low = 10 ** (d - 1) if d > 1 else 0
    carries = final = n = 0
    for a, b in itertools.product(range(low, 10**d), repeat=2):
        p = sp.Problem(a, b, d)
        carries += p.carries
        final += len(p.answer) > d
        n += 1
    return carries / n, final / n


@pytest.mark.parametrize("d", [1, 2])
def test_difficulty_statistics_match_the_exact_ones(d):
    stats = sp.difficulty_stats(sp.make_problems(20000, d, seed=5))[d]
    carries, final = _exact_stats(d)
    assert stats["n"] == 20000
    assert stats["mean_carries"] == pytest.approx(carries, abs=0.02)
    assert stats["final_carry"] == pytest.approx(final, abs=0.015)
    # d steps of 8 characters, d - 1 commas, ";", then d answer digits (one more with a final carry)
    assert stats["scratchpad_chars"] == pytest.approx(8 * d + (d - 1) + 1 + d + final, abs=0.02)


def test_harder_problems_carry_more():
    stats = sp.difficulty_stats(sp.make_problems(3000, [2, 4, 8], seed=6))
    means = [stats[d]["mean_carries"] for d in (2, 4, 8)]
    assert means == sorted(means) and means[-1] > 3 * means[0]

"""Every exercise checker passes its worked solution and fails a wrong answer."""

import importlib.util
from pathlib import Path

import pytest

import ssledu.check as check

SOL_DIR = Path(__file__).resolve().parents[1] / "chapters" / "solutions"


class _Solutions:
    """Worked solutions and wrong answers gathered from chapters/solutions/chNN.py."""

    def __init__(self):
        self.SOLUTIONS, self.WRONG = {}, {}
        for path in sorted(SOL_DIR.glob("ch[0-9][0-9].py")):
            spec = importlib.util.spec_from_file_location(f"course_solutions_{path.stem}", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            self.SOLUTIONS.update(mod.SOLUTIONS)
            self.WRONG.update(mod.WRONG)


SOL = _Solutions()
NAMES = sorted(check.EXERCISES)


def test_every_exercise_has_a_solution_and_a_wrong_answer():
    assert NAMES, "no exercises registered"
    assert set(NAMES) <= set(SOL.SOLUTIONS), f"missing solutions: {set(NAMES) - set(SOL.SOLUTIONS)}"
    assert set(NAMES) <= set(SOL.WRONG), f"missing wrong answers: {set(NAMES) - set(SOL.WRONG)}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solution_passes(name, seed, capsys):
    result = getattr(check, name)(SOL.SOLUTIONS[name], seed=seed)
    assert result.passed, result.message
    assert "[pass]" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_wrong_answer_fails_with_hint(name, capsys):
    result = getattr(check, name)(SOL.WRONG[name], seed=0)
    assert result.status == "failed", result.message
    out = capsys.readouterr().out
    assert "[fail]" in out and "Hint:" in out


@pytest.mark.parametrize("name", [n for n in NAMES if check.EXERCISES[n].kind == "function"])
def test_unfilled_stub_is_not_attempted(name, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError

    def empty(*args, **kwargs):
        pass

    for fn in (stub, empty):
        result = getattr(check, name)(fn)
        assert result.status == "not attempted" and not result
    assert "not attempted yet" in capsys.readouterr().out


def test_student_exception_is_reported_not_raised(capsys):
    def broken(ids):
        return ids[100000]

    result = check.next_token_labels(broken, seed=0)
    assert result.status == "failed" and "IndexError" in result.message


def test_hint_never_contains_the_solution_source():
    for ex in check.EXERCISES.values():
        assert "ids[:-1]" not in ex.hint and "ids[1:]" not in ex.hint


def test_unknown_exercise():
    with pytest.raises(ValueError, match="no exercise named"):
        check.run_check("nope", lambda: 1)

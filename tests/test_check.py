"""Exercise checkers: worked solutions pass, wrong answers fail, and a check cannot be fooled."""

import ast
import dataclasses
import importlib.util
import inspect
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ssledu.check as check

ROOT = Path(__file__).resolve().parents[1]
SOL_DIR = ROOT / "chapters" / "solutions"


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


def test_unknown_exercise():
    with pytest.raises(ValueError, match="no exercise named"):
        check.run_check("nope", lambda: 1)
    with pytest.raises(AttributeError, match="Did you mean 'next_token_labels'"):
        check.next_token_lables  # noqa: B018 - a typo in a notebook cell


# --- a check cannot be fooled -------------------------------------------------------------


def test_reference_is_computed_before_the_student_mutates_the_input():
    # Popping the last id first and then answering for the shortened list used to pass,
    # because the reference read the same (now shorter) list after the student's call.
    cheat = lambda ids: (ids.pop(), (ids[:-1], ids[1:]))[1]  # noqa: E731
    assert check.next_token_labels(cheat, seed=0, quiet=True).status == "failed"

    def correct_but_clears(ids):
        out = ids[:-1], ids[1:]
        ids.clear()  # the student's own copy: the reference does not see this
        return out

    assert check.next_token_labels(correct_but_clears, seed=0, quiet=True).passed


def test_a_result_whose_eq_raises_is_a_failed_check():
    class Weird:
        def __eq__(self, other):
            raise RuntimeError("no comparison for you")

    result = check.next_token_labels(lambda ids: Weird(), seed=0, quiet=True)
    assert result.status == "failed"
    assert "cannot be compared" in result.message and "no comparison for you" in result.message
    class Unprintable:  # a multiple-choice answer is compared as text
        def __str__(self):
            raise RuntimeError("no text for you")

    result = check.contrastive_needs_negatives(Unprintable(), quiet=True)
    assert result.status == "failed" and "cannot be compared" in result.message


def _with_limit(name, seconds):
    return dataclasses.replace(check.EXERCISES[name], time_limit_s=seconds)


def _endless(ids):
    while True:
        try:
            sum(range(10_000))
        except Exception:  # a student's catch-all must not swallow the time limit
            pass


def test_a_hanging_function_fails_within_the_time_limit():
    ex = _with_limit("next_token_labels", 0.3)
    for fn in (_endless, lambda ids: time.sleep(30)):
        start = time.perf_counter()
        result = check.evaluate(ex, fn, seed=0)
        assert time.perf_counter() - start < 3
        assert result.status == "failed" and "took longer than 0.3 s" in result.message


def test_the_time_limit_also_works_outside_the_main_thread():
    ex = _with_limit("next_token_labels", 0.3)
    results = []
    worker = threading.Thread(target=lambda: results.append(check.evaluate(ex, _endless, seed=0)))
    start = time.perf_counter()
    worker.start()
    worker.join(10)
    assert results and "took longer than 0.3 s" in results[0].message
    assert time.perf_counter() - start < 3


def test_an_outer_alarm_timer_is_kept_and_still_fires():
    fired = []
    saved_handler = signal.getsignal(signal.SIGALRM)
    saved_timer = signal.getitimer(signal.ITIMER_REAL)  # pytest-timeout's, if any
    try:
        signal.signal(signal.SIGALRM, lambda *a: fired.append(time.monotonic()))
        signal.setitimer(signal.ITIMER_REAL, 30)
        assert check.next_token_labels(SOL.SOLUTIONS["next_token_labels"], seed=0, quiet=True).passed
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 25 < left <= 30, "the outer timer must stay armed with its remaining time"
        # an outer timer due BEFORE the check's own limit still fires, and the check goes on
        signal.setitimer(signal.ITIMER_REAL, 0.1)

        def slow_but_right(ids):
            time.sleep(0.4)
            return ids[:-1], ids[1:]

        result = check.evaluate(_with_limit("next_token_labels", 5), slow_but_right, seed=0)
        assert result.passed, result.message
        assert len(fired) == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, saved_handler)
        if saved_timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *saved_timer)


# --- the registry ----------------------------------------------------------------------


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_importing_check_imports_no_exercise_and_checkers_are_served_lazily():
    out = _python(
        "import sys, json, ssledu.check as c\n"
        "before = sorted(m for m in sys.modules if m.startswith('ssledu.exercises.'))\n"
        "fn = c.next_token_labels\n"
        "after = sorted(m for m in sys.modules if m.startswith('ssledu.exercises.'))\n"
        "print(json.dumps([before, after, 'next_token_labels' in vars(c), fn is c.next_token_labels]))\n"
    )
    before, after, in_globals, cached = json.loads(out)
    assert before == []
    modules = sorted(f"ssledu.exercises.{p.stem}" for p in (ROOT / "ssledu" / "exercises").glob("ch*.py"))
    assert after == modules, "the first checker used loads every exercise module"
    assert in_globals is False, "checkers are served by __getattr__, not written into check's globals"
    assert cached is True


def test_an_exercise_module_imported_first_sees_every_exercise():
    # This import order was a loop: ch02 -> check -> every chNN -> ...
    out = _python(
        "import ssledu.exercises.ch02, ssledu.check as c, json\n"
        "print(json.dumps(sorted(c.EXERCISES)))\n"
    )
    assert json.loads(out) == NAMES


def test_register_refuses_a_clash_and_writes_no_globals(monkeypatch):
    monkeypatch.setattr(check, "_EXERCISES", dict(check.EXERCISES))
    monkeypatch.setattr(check, "_CHECKERS", {})
    ex = check.Exercise(name="double_it", chapter="99", description="x * 2", reference=lambda x: 2 * x,
                        cases=lambda rng: [{"x": rng.randrange(10)}], hint="multiply")
    check.register(ex)
    assert "double_it" not in vars(check)
    assert check.double_it(lambda x: x + x, seed=0, quiet=True).passed
    check.register(dataclasses.replace(ex, hint="twice"))  # a reloaded module: replaced
    assert check.EXERCISES["double_it"].hint == "twice"
    with pytest.raises(ValueError, match="clashes with the one of chapter 99"):
        check.register(dataclasses.replace(ex, chapter="98"))
    with pytest.raises(ValueError, match="kind must be"):
        check.Exercise(name="x", chapter="99", description="", reference=lambda: 1, kind="quiz")


# --- no hint gives the solution away ----------------------------------------------------
#
# What "contains the solution" means, by kind of exercise:
# * function exercises: a key expression of the worked solution in chapters/solutions
#   (a slice, an arithmetic or comparison, a boolean combination, a call, a lambda),
#   compared without whitespace; the expressions that fix the exercise's interface rather
#   than its logic (the seeded generator the cases are drawn with, the float limit a mask is
#   filled with) are allowed, since the reference can only be matched through them;
# * multiple choice: the correct letter given as the answer, a code span of the correct
#   option's text (as the chapter shows it), or a run of 5 words of that text that no
#   other option shares.
# The texts searched are the hint and the whole failure message of the wrong answer.

SPEC_EXPRESSIONS = {"torch.Generator()", "torch.Generator().manual_seed(seed)", "torch.finfo(torch.float32)"}
_KEY_NODES = (ast.Subscript, ast.BinOp, ast.Compare, ast.BoolOp, ast.Call, ast.Lambda)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", text.lower())


def _code_keys(name: str) -> set[str]:
    tree = ast.parse(inspect.getsource(SOL.SOLUTIONS[name]))
    keys = {_squash(ast.unparse(node)) for node in ast.walk(tree.body[0]) if isinstance(node, _KEY_NODES)}
    return keys - SPEC_EXPRESSIONS


def _chapter_texts():
    """Each chapter's text: its text source (``NN_*.md``) where there is one, else its notebook."""
    for nb in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")):
        md = nb.with_suffix(".md")
        if md.is_file():
            yield md.read_text(encoding="utf-8")
        else:
            cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
            yield "\n\n".join("".join(c["source"]) for c in cells)


def _options(name: str) -> dict[str, str]:
    """The options of a multiple-choice exercise: the last '- (a) ...' list before its check."""
    for text in _chapter_texts():
        at = text.find(f"ssledu.check.{name}(")
        if at < 0:
            continue
        for paragraph in reversed(re.split(r"\n\s*\n", text[:at])):
            found = re.findall(r"^- \(([a-z])\)\s*(.*?)(?=^- \(|\Z)", paragraph, re.M | re.S)
            if found:
                return {letter: " ".join(body.split()) for letter, body in found}
    return {}


def _leaks(name: str, text: str) -> list[str]:
    """The pieces of ``name``'s solution that ``text`` contains (see above)."""
    ex = check.EXERCISES[name]
    if ex.kind == "function":
        squashed = _squash(text)
        return sorted(k for k in _code_keys(name) if k in squashed)
    letter = str(SOL.SOLUTIONS[name]).strip().lower()
    options = _options(name)
    option = options[letter]
    others = " | ".join(" ".join(_words(body)) for key, body in options.items() if key != letter)
    found = []
    if re.search(rf"\(\s*{letter}\s*\)|\b(answer|option|choice)\s+(is\s+)?\(?{letter}\b", text, re.I):
        found.append(f"the letter {letter}")
    found += [span for span in re.findall(r"`([^`]+)`", option) if _squash(span) in _squash(text)]
    ow, tw = _words(option), " ".join(_words(text))
    runs = {" ".join(ow[i : i + 5]) for i in range(len(ow) - 4)}
    found += sorted(r for r in runs if r in tw and r not in others)  # shared by all options: no clue
    return found


def test_every_multiple_choice_exercise_shows_its_options():
    for name in NAMES:
        if check.EXERCISES[name].kind == "answer":
            options = _options(name)
            assert str(SOL.SOLUTIONS[name]).lower() in options, (
                f"{name}: the chapter must list the options as '- (a) ...' lines before "
                f"ssledu.check.{name}(...); found {options}"
            )


@pytest.mark.parametrize("name", NAMES)
def test_no_hint_contains_the_solution(name):
    ex = check.EXERCISES[name]
    wrong = check.run_check(name, SOL.WRONG[name], seed=0, quiet=True)
    for text in (ex.hint, wrong.message):
        leaked = _leaks(name, text)
        assert not leaked, f"{name}: the hint gives away {leaked}: {text!r}"


def test_the_leak_detector_bites():
    assert "ids[:-1]" in _leaks("next_token_labels", "return ids[:-1], ids[1:]")
    assert _leaks("causal_lm_loss", "use logits[:, :-1] against input_ids[:, 1:]")
    assert _leaks("labels_needed", "return ns[i - 1] * (ns[i] / ns[i - 1]) ** frac")
    assert not _leaks("labels_needed", "equal distances on a log axis are equal ratios of N")
    assert _leaks("contrastive_needs_negatives", "The answer is b.")
    assert _leaks("leaky_prefix_mask_bug", "compare with `< prefix_length` instead")
    assert _leaks("contrastive_needs_negatives", "the encoder can map every input to one vector")
    assert not _leaks("contrastive_needs_negatives", "think of the trivial solution")
    assert not _leaks("contrastive_needs_negatives", "with positive pairs only, the loss is easy")  # every option

"""Auto-checkers for the chapters' exercises.

An exercise cell holds a stub the student fills in::

    def next_token_labels(ids):
        # your code here
        raise NotImplementedError

    ssledu.check.next_token_labels(next_token_labels)

The checker runs the student's function on fresh seeded cases, compares with
the package's reference and prints one short line: passed, failed with a hint
(never the solution), or "not attempted yet" for a stub that is still empty
(``NotImplementedError`` or a ``None`` result), so notebooks run headless.
Teachers find worked solutions in ``chapters/solutions/chNN.py``.

How a check stays honest:

* the reference answer of a case is computed first, on a private copy of the
  case; the student's function gets its own fresh copy (mutating it changes
  nothing);
* each call of the student's function (and each comparison of its result)
  has a time limit, ``Exercise.time_limit_s`` (default ``TIME_LIMIT_S`` = 10 s):
  an endless loop is reported as "took longer than 10 s" instead of hanging
  the notebook;
* whatever the student's code or result raises (a broken ``__eq__`` included)
  becomes a failed check with a message, never a traceback.

Exercises live in one module per chapter, ``ssledu/exercises/chNN.py``, each
calling :func:`register`. They are imported on first use of a checker
(``ssledu.check.<name>`` is served by the module's ``__getattr__``), so
importing this module imports no exercise. Each checker returns a
:class:`CheckResult` (truthy when passed).
"""

from __future__ import annotations

import copy
import difflib
import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["CheckResult", "Exercise", "EXERCISES", "TIME_LIMIT_S", "as_float", "evaluate", "register", "run_check"]

TIME_LIMIT_S = 10.0


@dataclass
class CheckResult:
    """Outcome of one check: ``status`` is "passed", "failed" or "not attempted"."""

    name: str
    status: str
    message: str
    cases: int = 0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    def _ipython_display_(self):
        # The message was already printed; show nothing more in a notebook.
        return None


@dataclass
class Exercise:
    """One auto-checked exercise.

    ``cases(rng)`` yields keyword-argument dicts; ``reference(**kw)`` gives the
    expected answer; ``compare(got, expected)`` says whether they agree, or
    returns a string describing the mismatch (shown as the hint).
    ``kind`` is "function" (the student passes a function) or "answer" (the
    student passes a value that is compared with ``reference()``).
    ``time_limit_s`` bounds each call of the student's function.
    """

    name: str
    chapter: str
    description: str
    reference: Callable[..., Any]
    cases: Callable[[random.Random], list] = field(default=lambda rng: [{}])
    compare: Callable[[Any, Any], Any] = field(default=None)  # type: ignore[assignment]
    hint: str = ""
    kind: str = "function"
    n_cases: int = 5
    time_limit_s: float = TIME_LIMIT_S

    def __post_init__(self):
        if self.compare is None:
            self.compare = _equal
        if self.kind not in ("function", "answer"):
            raise ValueError(f"exercise {self.name!r}: kind must be 'function' or 'answer'; got {self.kind!r}")


# --- the registry ---------------------------------------------------------------------

_EXERCISES: dict[str, Exercise] = {}
_CHECKERS: dict[str, Callable] = {}
_state = {"loaded": False, "loading": False}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise; ``ssledu.check.<name>(answer)`` then checks it.

    Registering the same name again from the same chapter replaces it (a
    reloaded exercise module); from another chapter it is an error.
    """
    old = _EXERCISES.get(exercise.name)
    if old is not None and old.chapter != exercise.chapter:
        raise ValueError(
            f"exercise {exercise.name!r} of chapter {exercise.chapter} clashes with the one of chapter "
            f"{old.chapter}; give it another name"
        )
    _EXERCISES[exercise.name] = exercise
    _CHECKERS.pop(exercise.name, None)
    return exercise


def _registry() -> dict[str, Exercise]:
    """Every exercise, importing the modules of ``ssledu.exercises`` on first use."""
    if not _state["loaded"] and not _state["loading"]:
        import importlib
        import pkgutil

        import ssledu.exercises as pkg

        _state["loading"] = True  # an exercise module that asks for the registry gets it as is
        try:
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
                importlib.import_module(f"{pkg.__name__}.{info.name}")
            _state["loaded"] = True
        finally:
            _state["loading"] = False
    return _EXERCISES


def _checker(exercise: Exercise) -> Callable:
    name = exercise.name
    if name not in _CHECKERS:

        def checker(answer, *, seed: int | None = None, quiet: bool = False):
            return run_check(name, answer, seed=seed, quiet=quiet)

        checker.__name__ = checker.__qualname__ = name
        checker.__doc__ = f"Check the exercise '{name}' ({exercise.chapter}): {exercise.description}"
        _CHECKERS[name] = checker
    return _CHECKERS[name]


def __getattr__(name: str):
    # ``ssledu.check.<exercise>`` and ``EXERCISES`` are served from the registry, loaded lazily.
    if name.startswith("__"):
        raise AttributeError(f"module 'ssledu.check' has no attribute {name!r}")
    exercises = _registry()
    if name == "EXERCISES":
        return exercises
    if name in exercises:
        return _checker(exercises[name])
    close_names = difflib.get_close_matches(name, list(exercises), n=1)
    hint = f" Did you mean {close_names[0]!r}?" if close_names else ""
    raise AttributeError(
        f"ssledu.check has no exercise {name!r}.{hint} Exercises: {', '.join(sorted(exercises))}"
    )


def __dir__():
    return sorted(set(globals()) | {"EXERCISES"} | set(_registry()))


# --- comparisons ----------------------------------------------------------------------


def _to_python(x):
    """Tensors / arrays -> nested lists so that comparisons are uniform."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, tuple):
        return [_to_python(v) for v in x]
    if isinstance(x, list):
        return [_to_python(v) for v in x]
    if isinstance(x, dict):
        return {k: _to_python(v) for k, v in x.items()}
    return x


def as_float(x):
    """A Python float from a number or a one-element tensor / array; None when it is not one."""
    try:
        if hasattr(x, "detach"):
            x = x.detach().cpu()
        if hasattr(x, "numel") and x.numel() != 1:
            return None
        return float(x)
    except (TypeError, ValueError):
        return None


def _equal(got, expected):
    g, e = _to_python(got), _to_python(expected)
    if g == e:
        return True
    return _describe_mismatch(g, e)


def _describe_mismatch(g, e) -> str:
    if isinstance(e, list) and isinstance(g, list):
        if len(g) != len(e):
            return f"expected {len(e)} items, got {len(g)}"
        for i, (a, b) in enumerate(zip(g, e)):
            if a != b:
                return f"first difference at index {i}"
    if type(g) is not type(e) and not (isinstance(g, (int, float)) and isinstance(e, (int, float))):
        return f"expected a {type(e).__name__}, got a {type(g).__name__}"
    return "the result differs from the reference"


def choice(hint_if_wrong: str) -> Callable[[Any, Any], Any]:
    """A comparison for multiple-choice answers: "B", "(b)" and " b " all mean "b"."""

    def compare(got, expected):
        return str(got).strip().lower().strip("()").strip() == expected or hint_if_wrong

    return compare


def close(rel: float = 1e-4, abs_: float = 1e-6) -> Callable[[Any, Any], Any]:
    """A comparison for floats (or nested lists of floats) within tolerances."""

    def compare(got, expected):
        g, e = _to_python(got), _to_python(expected)

        def walk(a, b):
            if isinstance(b, list):
                if not isinstance(a, list) or len(a) != len(b):
                    return False
                return all(walk(x, y) for x, y in zip(a, b))
            try:
                return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)
            except (TypeError, ValueError):
                return False

        if walk(g, e):
            return True
        if isinstance(e, (int, float)) and isinstance(g, (int, float)):
            return f"your value {float(g):.6g} is not within tolerance of the reference"
        return "some values are not within tolerance of the reference"

    return compare


# --- running the student's code under a time limit ------------------------------------


class _TookTooLong(BaseException):
    """Raised inside the student's code when its time is up.

    A BaseException, like KeyboardInterrupt, so that a student's ``except
    Exception`` cannot swallow it.
    """


def _call_with_limit(fn: Callable[[], Any], limit: float | None):
    """``fn()``, raising ``_TookTooLong`` after ``limit`` seconds.

    In the main thread of a POSIX process (a Jupyter kernel, a script) a
    SIGALRM timer interrupts the running Python code; an outer timer (such as
    pytest-timeout's) is honoured and restored. Elsewhere the call runs in a
    worker thread that is asked to stop when the time is up.
    """
    if limit is None or limit <= 0:
        return fn()
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        return _call_with_alarm(fn, limit)
    return _call_in_thread(fn, limit)


def _call_with_alarm(fn, limit: float):
    start = time.monotonic()
    deadline = start + limit
    outer_handler = signal.getsignal(signal.SIGALRM)
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    outer = {"due": start + outer_delay if outer_delay > 0 else None}

    def on_alarm(signum, frame):
        now = time.monotonic()
        if now >= deadline - 1e-3:
            raise _TookTooLong
        # The outer timer was due first: wait for ours again, then run the outer handler.
        outer["due"] = now + outer_interval if outer_interval > 0 else None
        signal.setitimer(signal.ITIMER_REAL, max(deadline - now, 1e-3))
        if callable(outer_handler):
            outer_handler(signum, frame)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, min(limit, outer_delay) if outer_delay > 0 else limit)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler if outer_handler is not None else signal.SIG_DFL)
        if outer["due"] is not None:  # give the outer timer back its remaining time
            signal.setitimer(signal.ITIMER_REAL, max(outer["due"] - time.monotonic(), 1e-3), outer_interval)


def _call_in_thread(fn, limit: float):
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="ssledu-check")
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        _stop_thread(worker)
        raise _TookTooLong
    if "error" in box:
        raise box["error"]
    return box["value"]


def _stop_thread(worker: threading.Thread) -> None:
    """Ask a thread to raise ``_TookTooLong`` at its next Python instruction (CPython)."""
    try:
        import ctypes

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident), ctypes.py_object(_TookTooLong))
    except Exception:  # another interpreter: the daemon thread is left to finish
        pass


# --- running a check ------------------------------------------------------------------


def run_check(name: str, answer, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Run exercise ``name`` on ``answer`` and print one line (unless ``quiet``)."""
    exercises = _registry()
    if name not in exercises:
        raise ValueError(f"no exercise named {name!r}; known: {', '.join(sorted(exercises))}")
    result = evaluate(exercises[name], answer, seed=seed)
    if not quiet:
        print(result.message)
    return result


def evaluate(exercise: Exercise, answer, *, seed: int | None = None) -> CheckResult:
    """Check ``answer`` against ``exercise`` (registered or not) without printing."""
    rng = random.Random(seed if seed is not None else random.SystemRandom().randrange(2**31))
    return _evaluate(exercise, answer, rng)


def _not_attempted(name):
    return CheckResult(name, "not attempted", f"[ ] {name}: not attempted yet")


def _failed(ex: Exercise, why: str, where: str = "", cases: int = 0) -> CheckResult:
    return CheckResult(ex.name, "failed", f"[fail] {ex.name}: {where}{why}. Hint: {ex.hint}", cases)


def _judge(ex: Exercise, got, expected, where: str, i: int) -> CheckResult | None:
    """None when ``got`` agrees with ``expected``, else the failed result."""
    try:
        verdict = _call_with_limit(lambda: ex.compare(got, expected), ex.time_limit_s)
    except _TookTooLong:
        return _failed(ex, f"comparing your result with the reference took longer than "
                       f"{ex.time_limit_s:g} s; return a plain number, list or tensor", where, i)
    except Exception as exc:  # the student's object broke the comparison (e.g. its __eq__ raised)
        return _failed(
            ex,
            f"your result (a {type(got).__name__}) cannot be compared with the reference: comparing raised "
            f"{type(exc).__name__}: {exc}; return a plain number, list or tensor",
            where,
            i,
        )
    if verdict is True:
        return None
    why = verdict if isinstance(verdict, str) else "the result differs from the reference"
    return _failed(ex, why, where, i)


def _evaluate(ex: Exercise, answer, rng: random.Random) -> CheckResult:
    name = ex.name
    if answer is None or answer is Ellipsis:
        return _not_attempted(name)
    if ex.kind == "answer":
        failure = _judge(ex, answer, ex.reference(), "", 1)
        if failure is not None:  # a CheckResult is falsy unless passed: test for None
            return failure
        return CheckResult(name, "passed", f"[pass] {name}: correct", 1)
    if not callable(answer):
        raise TypeError(
            f"ssledu.check.{name} takes your function (the name, without calling it); "
            f"got a {type(answer).__name__}"
        )
    cases = []
    while len(cases) < ex.n_cases:
        cases.extend(ex.cases(rng))
    cases = cases[: ex.n_cases]
    for i, case in enumerate(cases):
        where = f"case {i + 1} of {len(cases)}: "
        # The reference runs first, on its own copy: what the student's function does to
        # its arguments cannot change the expected answer.
        expected = ex.reference(**copy.deepcopy(case))
        student_case = copy.deepcopy(case)
        try:
            got = _call_with_limit(lambda: answer(**student_case), ex.time_limit_s)
        except NotImplementedError:
            return _not_attempted(name)
        except _TookTooLong:
            return _failed(ex, f"your function took longer than {ex.time_limit_s:g} s (an endless loop? "
                           "a loop over far more items than needed?)", where, i)
        except Exception as exc:  # the student's code raised: report it, do not crash the cell
            return _failed(ex, f"your function raised {type(exc).__name__}: {exc}", where, i)
        if got is None:
            return _not_attempted(name)
        failure = _judge(ex, got, expected, where, i)
        if failure is not None:
            return failure
    return CheckResult(name, "passed", f"[pass] {name}: all {len(cases)} fresh cases agree with the reference", len(cases))

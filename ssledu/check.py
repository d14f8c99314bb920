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

Each checker returns a :class:`CheckResult` (truthy when passed).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["CheckResult", "Exercise", "EXERCISES", "run_check"]


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

    def __post_init__(self):
        if self.compare is None:
            self.compare = _equal


EXERCISES: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise and expose ``ssledu.check.<name>(answer)``."""
    if exercise.name in EXERCISES:
        raise ValueError(f"exercise {exercise.name!r} is already registered")
    EXERCISES[exercise.name] = exercise

    def checker(answer, *, seed: int | None = None, quiet: bool = False):
        return run_check(exercise.name, answer, seed=seed, quiet=quiet)

    checker.__name__ = exercise.name
    checker.__doc__ = f"Check the exercise '{exercise.name}' ({exercise.chapter}): {exercise.description}"
    globals()[exercise.name] = checker
    return exercise


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


def run_check(name: str, answer, *, seed: int | None = None, quiet: bool = False) -> CheckResult:
    """Run exercise ``name`` on ``answer`` and print one line."""
    if name not in EXERCISES:
        raise ValueError(f"no exercise named {name!r}; known: {', '.join(sorted(EXERCISES))}")
    ex = EXERCISES[name]
    rng = random.Random(seed if seed is not None else random.SystemRandom().randrange(2**31))
    result = _evaluate(ex, answer, rng)
    if not quiet:
        print(result.message)
    return result


def _not_attempted(name):
    return CheckResult(name, "not attempted", f"[ ] {name}: not attempted yet")


def _evaluate(ex: Exercise, answer, rng: random.Random) -> CheckResult:
    name = ex.name
    if answer is None or answer is Ellipsis:
        return _not_attempted(name)
    if ex.kind == "answer":
        expected = ex.reference()
        verdict = ex.compare(answer, expected)
        if verdict is True:
            return CheckResult(name, "passed", f"[pass] {name}: correct", 1)
        why = verdict if isinstance(verdict, str) else "not the expected answer"
        return CheckResult(name, "failed", f"[fail] {name}: {why}. Hint: {ex.hint}", 1)
    if not callable(answer):
        raise TypeError(
            f"ssledu.check.{name} takes your function (the name, without calling it); "
            f"got a {type(answer).__name__}"
        )
    cases = []
    while len(cases) < ex.n_cases:
        cases.extend(ex.cases(rng))
    cases = cases[: ex.n_cases]
    for i, kwargs in enumerate(cases):
        try:
            got = answer(**kwargs)
        except NotImplementedError:
            return _not_attempted(name)
        except Exception as exc:  # the student's code raised: report it, do not crash the cell
            return CheckResult(
                name,
                "failed",
                f"[fail] {name}: your function raised {type(exc).__name__}: {exc} "
                f"(case {i + 1} of {len(cases)}). Hint: {ex.hint}",
                i,
            )
        if got is None:
            return _not_attempted(name)
        expected = ex.reference(**kwargs)
        verdict = ex.compare(got, expected)
        if verdict is not True:
            why = verdict if isinstance(verdict, str) else "the result differs from the reference"
            return CheckResult(
                name,
                "failed",
                f"[fail] {name}: case {i + 1} of {len(cases)}: {why}. Hint: {ex.hint}",
                i,
            )
    return CheckResult(name, "passed", f"[pass] {name}: all {len(cases)} fresh cases agree with the reference", len(cases))


# Exercises live in one module per chapter (ssledu/exercises/chNN.py); importing
# them registers ``ssledu.check.<name>`` for each.
def _load_exercises():
    import importlib
    import pkgutil

    import ssledu.exercises as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{pkg.__name__}.{info.name}")


_load_exercises()

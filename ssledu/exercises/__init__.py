"""Auto-checked exercises, one module per chapter (``chNN.py``).

Each module calls ``ssledu.check.register(Exercise(...))`` for its exercises. ``ssledu.check``
imports every module of this package the first time a checker is used
(``ssledu.check.<name>``), never when ``ssledu.check`` itself is imported, so that importing
one exercise module first (``import ssledu.exercises.ch02``) is safe too. Worked solutions
and wrong answers for the tests live in ``chapters/solutions/chNN.py``.
"""

"""Every chapter follows the course's notebook conventions (nbval executes them separately)."""

import json
import re
from pathlib import Path

import pytest

import ssledu

CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("[0-9][0-9]_*.ipynb"))


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell):
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def test_there_are_chapters():
    assert CHAPTERS, "chapters/ holds no NN_name.ipynb notebooks"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_header_badges_install_and_setup(path):
    cells = _load(path)["cells"]
    first = _src(cells[0])
    assert cells[0]["cell_type"] == "markdown" and first.startswith("# ")
    assert f"colab.research.google.com/github/" in first and f"/v{ssledu.__version__}/chapters/{path.name}" in first
    assert "mybinder.org/v2/gh/" in first and f"v{ssledu.__version__}" in first
    install = _src(cells[1])
    assert "[ -e /content ]" in install and f"@v{ssledu.__version__}" in install
    assert "ssledu.setup(" in _src(cells[2])


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_committed_executed_without_errors_and_small(path):
    nb = _load(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and _src(c).strip()]
    unrun = [i for i, c in enumerate(code) if c.get("execution_count") is None]
    assert not unrun, f"code cells {unrun} have no stored output: commit the notebook executed top to bottom"
    counts = [c["execution_count"] for c in code]
    assert counts == sorted(counts), "cells were executed out of order"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"stored error output: {errors[0].get('ename')}"
    size = len(json.dumps([c.get("outputs", []) for c in code]))
    assert size < 3_000_000, f"stored outputs are {size / 1e6:.1f} MB; keep figures small"
    text = json.dumps(nb)
    assert "SSLEDU_QUICK=1)" not in text, "the stored outputs must come from a full run, not quick mode"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_markdown_before_code_and_exercises_checked(path):
    cells = _load(path)["cells"][3:]
    md_count = sum(c["cell_type"] == "markdown" for c in cells)
    assert md_count >= 10, "a chapter explains itself: markdown before the code cells"
    sources = "\n".join(_src(c) for c in cells)
    assert re.search(r"ssledu\.check\.\w+\(", sources), "exercises end with an ssledu.check call"
    assert "What you should see" in sources

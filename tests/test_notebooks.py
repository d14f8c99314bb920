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


# --- the text source is the source of truth ---------------------------------------------

def _markdown(path):
    return [_src(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_notebook_cells_equal_the_text_source(path):
    from ssledu.course import read_chapter, text_source

    source = text_source(path)
    assert source.exists(), f"{path.name} has no text source {source.name} beside it (see CONTRIBUTING.md)"
    built = [(c.cell_type, c.source) for c in read_chapter(path).cells]
    stored = [(c["cell_type"], _src(c)) for c in _load(path)["cells"]]
    for i, (b, s) in enumerate(zip(built, stored)):
        assert b == s, (f"cell {i} of {path.name} differs from {source.name}: edit the text source, "
                        f"then rebuild with `ssledu course --execute {path.name[:2]} --inplace`")
    assert len(built) == len(stored), f"{source.name} has {len(built)} cells, {path.name} {len(stored)}: rebuild"


def test_sync_check_bites(tmp_path):
    """Breaking the pairing on purpose is caught (the check above is not vacuous)."""
    from ssledu.course import read_chapter

    src = CHAPTERS[0].with_suffix(".md").read_text(encoding="utf-8")
    (tmp_path / CHAPTERS[0].name).write_bytes(CHAPTERS[0].read_bytes())
    (tmp_path / CHAPTERS[0].with_suffix(".md").name).write_text(src.replace("## 1.", "## 1 .", 1))
    built = [(c.cell_type, c.source) for c in read_chapter(tmp_path / CHAPTERS[0].name).cells]
    stored = [(c["cell_type"], _src(c)) for c in _load(CHAPTERS[0])["cells"]]
    assert built != stored


# --- sections ------------------------------------------------------------------------------

_HEADING = re.compile(r"^## (\d+)\. ", re.M)
_REF = re.compile(r"\b[Ss]ections? (\d+)((?:\s*(?:,|and|or|to|–)\s*\d+)*)")


def section_problems(markdown: list[str]) -> list[str]:
    """Headings `## N. Title` must count 1, 2, 3, ...; every `section N` must exist."""
    text = "\n".join(markdown)
    numbers = [int(n) for n in _HEADING.findall(text)]
    problems = []
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"section headings go {numbers}; they must count 1, 2, 3, ... without gaps")
    for m in _REF.finditer(text):
        for ref in [m.group(1)] + re.findall(r"\d+", m.group(2)):
            if int(ref) not in numbers:
                problems.append(f"'{m.group(0)}' refers to a section that does not exist")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_sections_contiguous_and_references_exist(path):
    assert section_problems(_markdown(path)) == []


def test_section_check_bites():
    assert section_problems(["## 1. a\n## 2. b", "## 4. d"])
    assert section_problems(["## 1. a\nsee section 3"])
    assert section_problems(["## 1. a\n## 2. b\nsections 1 and 5"])
    assert not section_problems(["## 1. a\n## 2. b\nsections 1 and 2; section 2"])


# --- numbers in the prose come from the run -----------------------------------------------

def callout_problems(markdown: list[str], metrics: dict) -> list[str]:
    """Every tagged number equals its reported metric to the precision it is written with."""
    from ssledu.course import TAG_RE

    problems = []
    for text in markdown:
        for m in TAG_RE.finditer(text):
            name, spec, written = m["name"], (m["spec"] or "").strip(), m["num"]
            if name not in metrics:
                problems.append(f"{written} is tagged {name!r}, which the run did not report")
                continue
            value = float(metrics[name]) * (100 if spec == "%" else 1)
            decimals = len(written.split(".")[1]) if "." in written else 0
            if abs(float(written.replace(",", "")) - value) > 0.5 * 10 ** -decimals + 1e-9:
                problems.append(f"{written} (tagged {name!r}) but the run reported {value:.6g}")
    return problems


def untagged_callout_numbers(markdown: list[str]) -> list[str]:
    """Bold numbers inside 'What you should see' callouts must be tagged with their metric."""
    bad = []
    for text in markdown:
        for block in re.split(r"\n(?!>)", text):
            if "What you should see" not in block:
                continue
            for bold in re.findall(r"\*\*(.+?)\*\*", block):
                if bold != "What you should see" and re.search(r"\d", bold) and "<!--m:" not in bold:
                    bad.append(bold)
    return bad


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_callout_numbers_equal_the_reported_metrics(path):
    meta = _load(path)["metadata"].get("ssledu", {})
    assert meta.get("mode") == "full", "rebuild with `ssledu course --execute NN --inplace` (full mode)"
    md = _markdown(path)
    assert any("<!--m:" in t for t in md), "no callout number is tied to a reported metric"
    assert callout_problems(md, meta.get("metrics", {})) == []
    assert untagged_callout_numbers(md) == []


def test_callout_check_bites():
    md = ["> **What you should see**: loss **0.62<!--m:loss-->**, accuracy 87.5<!--m:acc:%--> %"]
    assert callout_problems(md, {"loss": 0.6249, "acc": 0.8751}) == []
    assert callout_problems(md, {"loss": 0.63, "acc": 0.8751})
    assert callout_problems(md, {"loss": 0.62})
    assert untagged_callout_numbers(["> **What you should see**: loss **0.62** here"]) == ["0.62"]


# --- what a reader sees in the stored outputs ---------------------------------------------

_BARE_NUMBER = re.compile(r"^\s*(?:np\.float\d+\()?-?\d+(?:\.\d+)?(?:e[-+]?\d+)?\)?\s*$")


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_stored_outputs_read_well_untrusted(path):
    nb = _load(path)
    assert nb["metadata"]["kernelspec"]["display_name"] == "Python 3 (ipykernel)", (
        "the kernelspec must be the one ipykernel installs, or opening the chapter modifies it")
    assert "widgets" not in nb["metadata"], "no saved widget state in a committed chapter"
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = _src({"source": data.get("text/plain", out.get("text", ""))})
            assert "application/vnd.jupyter.widget-view+json" not in data, f"cell {i}: a live-widget view"
            assert "[report]" not in text, f"cell {i}: a [report] line clutters the output"
            assert "0%|" not in text, f"cell {i}: a progress bar stored at 0 %"
            if out.get("output_type") == "execute_result":
                assert not _BARE_NUMBER.match(text), (
                    f"cell {i} ends in a bare number echo {text.strip()!r}: say what it is")

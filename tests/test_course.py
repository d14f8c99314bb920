"""The chapters' build: text source -> executed notebook, callouts filled from the metrics."""

import json
import os
import stat

import nbformat
import pytest

from ssledu import cli, course

TINY_MD = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# 99 — tiny

The loss is **0.00<!--m:val_loss-->** and the accuracy 0.0<!--m:acc:%--> %.

```{code-cell} ipython3
import ssledu
ssledu.report("quick", int(ssledu.quick_mode()))
ssledu.report("val_loss", 1.2345)
ssledu.report("acc", 0.8766)
```
"""


def _tiny(folder, text=TINY_MD, name="99_tiny"):
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    return folder / f"{name}.ipynb"


@pytest.mark.parametrize("written,value,spec,expected", [
    ("0.00", 1.2345, None, "1.23"),
    ("0.0", 0.8766, "%", "87.7"),
    ("1", 0.4, "%", "40"),
    ("1,000", 5595.0, None, "5,595"),
    ("0.000", -0.0001, None, "0.000"),
    ("2.5", 2.25, None, "2.2"),  # round half to even, as Python's format does
])
def test_fill_callouts_keeps_the_written_precision(written, value, spec, expected):
    tag = f"<!--m:x:{spec}-->" if spec else "<!--m:x-->"
    text, missing = course.fill_callouts(f"is **{written}{tag}** here", {"x": value})
    assert text == f"is **{expected}{tag}** here" and not missing


def test_fill_callouts_reports_missing_and_non_numeric():
    text, missing = course.fill_callouts("a 1.0<!--m:nope--> b 2<!--m:s-->", {"s": "text"})
    assert text == "a 1.0<!--m:nope--> b 2<!--m:s-->"
    assert missing == ["nope", "s"]
    assert course.callout_numbers(text) == [
        {"name": "nope", "spec": None, "written": "1.0"}, {"name": "s", "spec": None, "written": "2"}]


def test_unknown_callout_spec_is_an_error():
    with pytest.raises(ValueError, match="unknown callout spec"):
        course.fill_callouts("1.0<!--m:x:pct-->", {"x": 1.0})


def test_inplace_builds_from_text_and_fills_both(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    nb_path = _tiny(chapters)
    rc = cli.main(["course", "--execute", "99", "--inplace", "--chapters-dir", str(chapters)])
    assert rc == 0, capsys.readouterr()
    nb = nbformat.read(nb_path, as_version=4)
    assert nb.metadata["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    assert nb.metadata["ssledu"] == {"mode": "full",
                                     "metrics": {"quick": 0, "val_loss": 1.2345, "acc": 0.8766},
                                     "threads": os.environ.get("OMP_NUM_THREADS", "default")}
    assert "**1.23<!--m:val_loss-->**" in nb.cells[0].source and "87.7<!--m:acc:%--> %" in nb.cells[0].source
    assert "execution" not in nb.cells[1].metadata, "no timestamps: a re-run must not churn the diff"
    src = (chapters / "99_tiny.md").read_text()
    assert "**1.23<!--m:val_loss-->**" in src and "87.7<!--m:acc:%-->" in src
    # rebuilding the same source gives the same cell ids (no churn in the diff)
    again = course.read_chapter(nb_path)
    assert [c.id for c in again.cells] == [c.id for c in nb.cells]


def test_missing_metric_fails_the_run(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    _tiny(chapters, TINY_MD.replace("<!--m:val_loss-->", "<!--m:val_los-->"))
    rc = cli.main(["course", "--execute", "--quick", "--chapters-dir", str(chapters),
                   "--output", str(tmp_path / "out"), "--json"])
    out = capsys.readouterr().out
    rows = json.loads(out)  # --json prints JSON only
    assert rc == 1 and rows[0]["status"] == "error"
    assert "val_los" in rows[0]["error"] and "ssledu.report" in rows[0]["error"]


def test_quick_run_into_a_folder_leaves_the_sources(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    _tiny(chapters)
    before = (chapters / "99_tiny.md").read_text()
    rc = cli.main(["course", "--execute", "--quick", "99", "--chapters-dir", str(chapters),
                   "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0 and "val_loss=1.234" in out
    assert (chapters / "99_tiny.md").read_text() == before
    assert not (chapters / "99_tiny.ipynb").exists()
    nb = nbformat.read(tmp_path / "out" / "99_tiny.ipynb", as_version=4)
    assert nb.metadata["ssledu"]["mode"] == "quick"


def test_inplace_with_quick_is_refused(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    _tiny(chapters)
    assert cli.main(["course", "--execute", "--quick", "--inplace", "--chapters-dir", str(chapters)]) == 2
    assert "--output" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_is_refused_before_running(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    _tiny(chapters)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IREAD | stat.S_IEXEC)
    rc = cli.main(["course", "--execute", "--quick", "--chapters-dir", str(chapters), "--output", str(locked)])
    assert rc == 2 and "--output" in capsys.readouterr().err


def test_output_that_is_a_file_is_refused_before_running(tmp_path, capsys, monkeypatch):
    chapters = tmp_path / "chapters"
    _tiny(chapters)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    ran = []
    monkeypatch.setattr(course, "execute_chapter", lambda *a, **k: ran.append(1))
    rc = cli.main(["course", "--execute", "--quick", "--chapters-dir", str(chapters),
                   "--output", str(blocker / "sub")])
    assert rc == 2 and not ran
    assert "cannot write the executed notebooks" in capsys.readouterr().err


def test_ctrl_c_stops_the_whole_run(tmp_path, capsys, monkeypatch):
    chapters = tmp_path / "chapters"
    _tiny(chapters, name="98_a")
    _tiny(chapters, name="99_b")
    calls = []

    def interrupted(path, *a, **k):
        calls.append(path.name)
        raise KeyboardInterrupt

    monkeypatch.setattr(course, "execute_chapter", interrupted)
    rc = cli.main(["course", "--execute", "--quick", "--chapters-dir", str(chapters),
                   "--output", str(tmp_path / "out")])
    assert rc == 130 and calls == ["98_a.ipynb"]
    assert "interrupted" in capsys.readouterr().out


def test_failing_cell_is_reported(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    _tiny(chapters, TINY_MD + "\n```{code-cell} ipython3\nraise RuntimeError('boom')\n```\n")
    rc = cli.main(["course", "--execute", "--quick", "--chapters-dir", str(chapters),
                   "--output", str(tmp_path / "out")])
    assert rc == 1 and "boom" in capsys.readouterr().out


def test_unknown_chapter(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    _tiny(chapters)
    assert cli.main(["course", "nonsense", "--chapters-dir", str(chapters)]) == 2
    assert "no chapter matches 'nonsense'" in capsys.readouterr().err


def test_strip_live_widgets_keeps_plain_forms():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("w")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "Explorer: run this cell to get the controls"})]
    nb.cells.append(cell)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    assert course.strip_live_widgets(nb) == 1
    assert cell.outputs[0]["data"] == {"text/plain": "Explorer: run this cell to get the controls"}
    assert "widgets" not in nb.metadata


def test_malformed_source_names_the_file(tmp_path):
    chapters = tmp_path / "chapters"
    nb_path = _tiny(chapters, "---\njupytext: [unclosed\n---\n# x\n")
    with pytest.raises(ValueError, match="99_tiny.md"):
        course.read_chapter(nb_path)


def test_failed_inplace_rebuild_leaves_the_chapter(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chapters = tmp_path / "chapters"
    nb_path = _tiny(chapters, TINY_MD + "\n```{code-cell} ipython3\nraise RuntimeError('boom')\n```\n")
    nb_path.write_text("committed")
    rc = cli.main(["course", "--execute", "--inplace", "--chapters-dir", str(chapters)])
    assert rc == 1 and "left as it was" in capsys.readouterr().out
    assert nb_path.read_text() == "committed"
    assert (tmp_path / "executed" / "99_tiny.ipynb").exists()


def test_executed_chapter_stores_no_live_widget_views(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    widget_cell = "\n```{code-cell} ipython3\nimport ipywidgets\nipywidgets.IntSlider(value=3)\n```\n"
    _tiny(chapters, TINY_MD + widget_cell)
    rc = cli.main(["course", "--execute", "--quick", "--chapters-dir", str(chapters),
                   "--output", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr()
    nb = nbformat.read(tmp_path / "out" / "99_tiny.ipynb", as_version=4)
    data = nb.cells[-1].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data and "text/plain" in data
    assert "widgets" not in nb.metadata

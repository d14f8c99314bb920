"""`ssledu doctor` and `ssledu course --execute`."""

import json
import subprocess
import sys

import nbformat
import pytest

from ssledu import cli


def test_doctor_ok_here(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[FAIL]" not in out
    for name in ("torch", "transformers", "datasets", "tokenizers", "jupyterlab", "ipywidgets", "nbval"):
        assert name in out
    assert "corpus toyworld" in out and "corpus pydocs" in out and "corpus digits" in out
    assert "All required parts work." in out


def test_doctor_fails_when_a_package_looks_missing(monkeypatch, capsys):
    real = cli._installed_version
    monkeypatch.setattr(cli, "_installed_version", lambda d: None if d == "transformers" else real(d))
    assert cli.main(["doctor", "--no-corpora"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] transformers - " in out and "not installed" in out
    assert 'pip install -e ".[course]"' in out


def test_doctor_flags_version_outside_range(monkeypatch, capsys):
    real = cli._installed_version
    monkeypatch.setattr(cli, "_installed_version", lambda d: "4.40.0" if d == "transformers" else real(d))
    assert cli.main(["doctor", "--no-corpora", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert any("transformers" in p and "outside the tested range" in p for p in report["problems"])


def test_doctor_reports_data_dir(tmp_path, monkeypatch, capsys):
    (tmp_path / "sst2").mkdir()
    monkeypatch.setenv("SSLEDU_DATA_DIR", str(tmp_path))
    assert cli.main(["doctor", "--no-corpora", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data_dir"]["contents"] == ["sst2/"]


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "ssledu.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("ssledu ")


def _tiny_chapter(folder, fail=False):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 99 tiny"),
        nbformat.v4.new_code_cell(
            "import ssledu\nq = ssledu.quick_mode()\nssledu.report('quick', int(q))\n"
            "ssledu.report('val_loss', 1.5)"
        ),
    ]
    if fail:
        nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('boom')"))
    path = folder / ("99_tiny.ipynb" if not fail else "98_broken.ipynb")
    nbformat.write(nb, path)
    return path


def test_course_execute_quick_headless(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    src = _tiny_chapter(chapters)
    before = src.read_text()
    out_dir = tmp_path / "out"
    rc = cli.main(["course", "--execute", "--quick", "99", "--chapters-dir", str(chapters),
                   "--output", str(out_dir), "--json"])
    text = capsys.readouterr().out
    assert rc == 0
    assert src.read_text() == before, "the committed notebook must not be overwritten"
    executed = nbformat.read(out_dir / "99_tiny.ipynb", as_version=4)
    assert executed.cells[1].outputs, "executed copy carries outputs"
    rows = json.loads(text[text.index("["):])
    assert rows[0]["status"] == "ok"
    assert rows[0]["metrics"] == {"quick": 1, "val_loss": 1.5}
    assert "99_tiny" in text and "val_loss=1.5" in text


def test_course_execute_reports_failure(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    _tiny_chapter(chapters, fail=True)
    rc = cli.main(["course", "--execute", "--quick", "--chapters-dir", str(chapters),
                   "--output", str(tmp_path / "out")])
    assert rc == 1
    assert "error" in capsys.readouterr().out


def test_course_unknown_chapter(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    _tiny_chapter(chapters)
    assert cli.main(["course", "nonsense", "--chapters-dir", str(chapters)]) == 2
    assert "no chapter matches 'nonsense'" in capsys.readouterr().err

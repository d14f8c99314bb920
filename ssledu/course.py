"""The chapters as a build: text source -> executed notebook, with numbers filled from the run.

Every chapter ``chapters/NN_name.ipynb`` has a plain-text source beside it,
``chapters/NN_name.md`` (MyST Markdown read by jupytext). The text file is what people edit and
review; the notebook is built from it by executing it top to bottom::

    ssledu course --execute 03 --inplace      # full run; rewrites 03_*.ipynb (and its callouts)
    ssledu course --execute --quick           # every chapter in quick mode, copies in executed/

**Callouts tied to metrics.** A number in the prose that the run measures is written with a tag
right after it, invisible in the rendered notebook::

    the GPT reaches **0.622<!--m:gpt_val_nll--> nats/word**
    right **89.5<!--m:fwd_copy_acc:%--> %** of the time     (":%": the metric is a fraction)

``ssledu.report("gpt_val_nll", value)`` in a code cell records the metric. After execution
every tagged number is rewritten from the metric, rounded to the decimals it is written with,
in the executed notebook and (with ``--inplace``) in the text source, so a re-run cannot leave a
stale number behind; a tag without a reported metric fails the run. The metrics are stored in
the notebook's metadata (``metadata.ssledu.metrics``), where ``tests/test_notebooks.py`` checks
every stored tagged number against them.

**What is stored.** Outputs keep their plain forms (text, HTML, PNG); live-widget views are
dropped from the stored copy (their models exist only in a running kernel, and JupyterLab shows
"Error displaying widget" for a saved view without its state), so a fresh, untrusted clone shows
exactly what the stored text says. The kernelspec is the one ipykernel installs, so opening a
chapter does not modify it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

__all__ = [
    "KERNELSPEC",
    "TAG_RE",
    "chapters_dir",
    "find_chapters",
    "text_source",
    "read_chapter",
    "fill_callouts",
    "callout_numbers",
    "strip_live_widgets",
    "execute_chapter",
    "format_course_table",
    "cmd_course",
]

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# A number immediately followed by <!--m:NAME--> or <!--m:NAME:SPEC-->. SPEC "%" means the metric
# is a fraction shown as a percentage. The number may use thousands separators.
TAG_RE = re.compile(
    r"(?P<num>-?\d[\d,]*(?:\.\d+)?)<!--m:(?P<name>[A-Za-z_][\w.-]*)(?::(?P<spec>[^>]*?))?-->"
)


# ----------------------------------------------------------------- finding chapters

def chapters_dir(explicit: str | None = None) -> Path:
    """The folder holding the chapters (``./chapters`` or the one beside the package)."""
    candidates = [Path(explicit)] if explicit else [
        Path.cwd() / "chapters",
        Path(__file__).resolve().parents[1] / "chapters",
    ]
    for c in candidates:
        if c.is_dir() and (any(c.glob("[0-9][0-9]_*.ipynb")) or any(c.glob("[0-9][0-9]_*.md"))):
            return c
    raise FileNotFoundError(
        "no chapters found (looked in " + ", ".join(str(c) for c in candidates)
        + "); run from the course's folder or pass --chapters-dir"
    )


def _all_chapters(folder: Path) -> list[Path]:
    """Chapter notebooks by number, including those that so far exist only as text."""
    stems = {p.stem for p in folder.glob("[0-9][0-9]_*.ipynb")}
    stems |= {p.stem for p in folder.glob("[0-9][0-9]_*.md")}
    return [folder / f"{s}.ipynb" for s in sorted(stems)]


def find_chapters(selection: list[str], folder: Path) -> list[Path]:
    """Chapters by number ("1", "01"), name part ("masked") or path; all when empty."""
    all_nb = _all_chapters(folder)
    if not selection:
        return all_nb
    picked: list[Path] = []
    for sel in selection:
        p = Path(sel)
        if p.suffix in (".ipynb", ".md") and p.exists():
            picked.append(p.with_suffix(".ipynb"))
            continue
        matches = [nb for nb in all_nb if (sel.isdigit() and nb.name[:2] == f"{int(sel):02d}")
                   or (not sel.isdigit() and sel.lower() in nb.stem.lower())]
        if not matches:
            raise ValueError(
                f"no chapter matches {sel!r}; available: " + ", ".join(nb.stem for nb in all_nb)
            )
        picked.extend(m for m in matches if m not in picked)
    return picked


def text_source(notebook: Path) -> Path:
    """The text source of a chapter notebook: the ``.md`` file beside it."""
    return Path(notebook).with_suffix(".md")


# ----------------------------------------------------------------- reading and building

def _cell_id(cell, seen: set) -> str:
    # Tagged numbers are left out, so a re-run that moves a number keeps the cell's id.
    text = TAG_RE.sub(lambda m: m.group(0)[len(m["num"]):], cell.source)
    base = hashlib.sha1((cell.cell_type + "\0" + text).encode("utf-8")).hexdigest()[:8]
    cid, k = base, 1
    while cid in seen:
        cid, k = f"{base}-{k}", k + 1
    seen.add(cid)
    return cid


def read_chapter(notebook: Path):
    """The chapter as an unexecuted notebook, built from its text source when there is one.

    Cell ids are derived from the cell contents, so rebuilding an unchanged chapter gives the
    same ids (no churn in the diff).
    """
    import nbformat

    notebook = Path(notebook)
    source = text_source(notebook)
    if source.exists():
        import jupytext

        try:
            nb = jupytext.read(source)
        except Exception as exc:  # malformed front matter, unterminated code cell, ...
            raise ValueError(
                f"cannot read the chapter source {source}: {type(exc).__name__}: {exc}. "
                "Fix the file (see CONTRIBUTING.md for its format) and run again."
            ) from exc
    elif notebook.exists():
        nb = nbformat.read(notebook, as_version=4)
    else:
        raise FileNotFoundError(f"chapter {notebook.stem}: neither {source.name} nor {notebook.name} exists")
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.pop("jupytext", None)
    nb.metadata.pop("widgets", None)
    seen: set = set()
    for cell in nb.cells:
        cell["id"] = _cell_id(cell, seen)
        if cell.cell_type == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


# ----------------------------------------------------------------- callouts

def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _format_like(written: str, value: float) -> str:
    out = f"{value:,.{_decimals(written)}f}" if "," in written else f"{value:.{_decimals(written)}f}"
    return "0" + out[2:] if out.startswith("-0") and float(out) == 0 else out


def _scaled(name: str, spec: str | None, metrics: dict) -> float:
    if name not in metrics:
        raise KeyError(name)
    value = metrics[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"metric {name!r} is {value!r}, not a number")
    spec = (spec or "").strip()
    if spec == "%":
        return float(value) * 100.0
    if spec:
        raise ValueError(f"unknown callout spec {spec!r} in <!--m:{name}:{spec}-->; use <!--m:{name}--> or <!--m:{name}:%-->")
    return float(value)


def callout_numbers(text: str) -> list[dict]:
    """Every tagged number in ``text``: ``[{"name", "spec", "written"}]``."""
    return [{"name": m["name"], "spec": m["spec"], "written": m["num"]} for m in TAG_RE.finditer(text)]


def fill_callouts(text: str, metrics: dict) -> tuple[str, list[str]]:
    """Rewrite every tagged number in ``text`` from ``metrics``; return (text, missing names).

    The number keeps the decimals (and thousands separators) it is written with.
    """
    missing: list[str] = []

    def sub(m):
        try:
            value = _scaled(m["name"], m["spec"], metrics)
        except (KeyError, TypeError):
            missing.append(m["name"])
            return m.group(0)
        return _format_like(m["num"], value) + m.group(0)[len(m["num"]):]

    return TAG_RE.sub(sub, text), missing


def strip_live_widgets(nb) -> int:
    """Drop live-widget views from stored outputs (their plain forms stay); return how many."""
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                n += 1
                if not data:
                    data["text/plain"] = "(an interactive control: run this cell to use it)"
    nb.metadata.pop("widgets", None)
    return n


# ----------------------------------------------------------------- executing

def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(
            f"cannot write the executed notebooks to {folder} ({exc.strerror or exc}); "
            "choose a writable folder with --output DIR"
        ) from None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def execute_chapter(path: Path, out_path: Path, *, quick: bool, timeout: int = 1800,
                    kernel_name: str = "python3", update_source: bool = False, on_cell=None) -> dict:
    """Execute one chapter top to bottom; write the executed notebook; return its summary row.

    The notebook is built from the text source (:func:`read_chapter`). Tagged callout numbers
    are filled from the reported metrics; with ``update_source`` the text source gets the same
    numbers. ``on_cell(done, total)`` is called after each code cell (a progress display). A
    KeyboardInterrupt stops the run and propagates (nothing is written).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    nb = read_chapter(path)
    with tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False) as fh:
        sink = fh.name
    env_backup = {k: os.environ.get(k) for k in ("SSLEDU_QUICK", "SSLEDU_REPORT_FILE")}
    os.environ["SSLEDU_QUICK"] = "1" if quick else "0"
    os.environ["SSLEDU_REPORT_FILE"] = sink
    status, error = "ok", ""
    t0 = time.perf_counter()
    try:
        hooks = {}
        if on_cell is not None:
            code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]

            def _executed(cell, cell_index, **_):
                if cell_index in code:
                    on_cell(code.index(cell_index) + 1, len(code))

            hooks["on_cell_executed"] = _executed
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, record_timing=False,
                                resources={"metadata": {"path": str(path.parent.resolve())}}, **hooks)
        client.execute()
    except CellExecutionError as exc:
        status = "error"
        error = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "cell error"
    except KeyboardInterrupt:
        os.unlink(sink)
        raise
    except Exception as exc:  # kernel died, timeout, ...
        status = "error"
        error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        seconds = time.perf_counter() - t0
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    metrics: dict = {}
    try:
        with open(sink, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                metrics[rec["name"]] = rec["value"]
    finally:
        os.unlink(sink)

    missing: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source, miss = fill_callouts(cell.source, metrics)
            missing += miss
    if missing and status == "ok":
        status = "error"
        error = ("callout tags without a reported metric: " + ", ".join(sorted(set(missing)))
                 + " (add ssledu.report(name, value) to a code cell, or fix the tag)")
    strip_live_widgets(nb)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["ssledu"] = {"mode": "quick" if quick else "full", "metrics": metrics,
                             "threads": os.environ.get("OMP_NUM_THREADS", "default")}
    out_path = Path(out_path)
    if update_source and status != "ok":
        # A failed rebuild never replaces the committed chapter: its copy goes beside it.
        out_path = Path("executed") / out_path.name
        error += f" (the chapter was left as it was; the failed run is in {out_path})"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, out_path)  # atomic: never a half-written notebook
    source = text_source(path)
    if update_source and status == "ok" and source.exists():
        text, _ = fill_callouts(source.read_text(encoding="utf-8"), metrics)
        _atomic_write_text(source, text)
    return {"chapter": path.stem, "seconds": seconds, "status": status, "error": error,
            "metrics": metrics, "output": str(out_path)}


def format_course_table(rows: list[dict]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    name_w = max([len("chapter")] + [len(r["chapter"]) for r in rows])
    lines = [f"{'chapter':<{name_w}}  {'seconds':>8}  {'status':<6}  metrics"]
    for r in rows:
        metrics = ", ".join(f"{k}={fmt(v)}" for k, v in r["metrics"].items())
        if r["status"] != "ok":
            metrics = (metrics + "; " if metrics else "") + r["error"]
        lines.append(f"{r['chapter']:<{name_w}}  {r['seconds']:>8.1f}  {r['status']:<6}  {metrics}")
    return "\n".join(lines)


def cmd_course(args) -> int:
    """``ssledu course``: list the chapters, or execute them and print a summary."""
    folder = chapters_dir(args.chapters_dir)
    chapters = find_chapters(args.chapters, folder)
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    if not args.execute:
        if args.json:
            print(json.dumps([{"chapter": nb.stem, "source": str(text_source(nb))} for nb in chapters], indent=2))
            return 0
        print(f"chapters in {folder}:")
        for nb in chapters:
            print(f"  {nb.stem}")
        print("run them headless with:  ssledu course --execute [--quick] [CHAPTER ...]")
        return 0
    if args.inplace and args.output:
        raise ValueError("choose either --inplace or --output, not both")
    if args.inplace and args.quick:
        raise ValueError(
            "the committed chapters hold full runs: --inplace cannot be combined with --quick; "
            "run quick mode into a folder instead (--output DIR, default executed/)"
        )
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be a positive number of seconds; got {args.timeout}")
    out_dir = Path(args.output or "executed")
    for folder_to_write in ({nb.parent for nb in chapters} if args.inplace else {out_dir}):
        _check_writable(folder_to_write)
    rows = []
    for nb in chapters:
        target = nb if args.inplace else out_dir / nb.name
        log(f"executing {nb.name} ({'quick' if args.quick else 'full'} mode) ...", flush=True)
        try:
            rows.append(execute_chapter(nb, target, quick=args.quick, timeout=args.timeout,
                                        update_source=args.inplace))
        except KeyboardInterrupt:
            log(f"\ninterrupted during {nb.name}: stopped (that chapter was not written)")
            if rows:
                log(format_course_table(rows))
            return 130
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print()
        print(format_course_table(rows))
        if not args.inplace:
            print(f"\nexecuted notebooks written to {out_dir}/")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def add_arguments(c) -> None:
    """The ``course`` subcommand's arguments (added to the one parser tree in ``ssledu.cli``)."""
    c.add_argument("chapters", nargs="*", help="chapter numbers or name parts (default: all)")
    c.add_argument("--execute", action="store_true", help="run the chapters top to bottom, headless")
    c.add_argument("--quick", action="store_true", help="quick mode (SSLEDU_QUICK=1): about a minute per chapter")
    c.add_argument("--output", default=None, help="folder for the executed notebooks (default: executed/)")
    c.add_argument("--inplace", action="store_true",
                   help="rebuild the chapter notebooks themselves (full mode) and fill their text sources' callouts")
    c.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    c.add_argument("--chapters-dir", default=None, help="folder with the chapters (default: ./chapters)")
    c.add_argument("--json", action="store_true", help="print the summary as JSON only (progress goes to stderr)")
    c.set_defaults(func=cmd_course)

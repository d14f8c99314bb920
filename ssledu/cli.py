"""The ``ssledu`` command.

    ssledu doctor [--json]                 environment report to paste into a question
    ssledu course                          list the chapters
    ssledu course --execute [--quick] [CHAPTER ...] [--output DIR | --inplace]
                                           run chapters headless, print a summary table
    ssledu bench [...]                     training speed on this machine (see ssledu.bench)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import ssledu

# Packages the doctor reports on; "required" ones make it exit non-zero when broken.
REQUIRED = ["torch", "transformers", "tokenizers", "datasets", "numpy", "matplotlib",
            "ipywidgets", "scikit-learn", "pandas", "tqdm", "safetensors"]
OPTIONAL = ["jupyterlab", "nbclient", "ipykernel", "nbval", "pytest"]


# --------------------------------------------------------------------- doctor

def _installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def declared_ranges() -> dict[str, str]:
    """Version ranges ssledu declares (dependencies and extras), by package name."""
    from packaging.requirements import Requirement

    ranges: dict[str, str] = {}
    try:
        reqs = metadata.requires("ssledu") or []
    except metadata.PackageNotFoundError:  # running from a source tree without install
        reqs = []
    for line in reqs:
        req = Requirement(line)
        name = req.name.lower()
        if name not in ranges:
            ranges[name] = str(req.specifier)
    return ranges


def _check_package(name: str, ranges: dict[str, str]) -> dict:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    version = _installed_version(name)
    spec = ranges.get(name.lower(), "")
    entry = {"name": name, "version": version, "range": spec or "any"}
    if version is None:
        entry["ok"] = False
        entry["detail"] = "not installed"
        return entry
    try:
        ok = Version(version) in SpecifierSet(spec) if spec else True
    except InvalidVersion:
        ok = True
    entry["ok"] = ok
    entry["detail"] = "" if ok else f"outside the tested range {spec}"
    return entry


def _torch_info() -> dict:
    try:
        import torch
    except Exception as exc:  # broken install: report, do not crash the doctor
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    info = {
        "ok": True,
        "version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "threads": torch.get_num_threads(),
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        info["bf16"] = torch.cuda.is_bf16_supported()
    try:
        info["device"] = str(ssledu.get_device())
    except Exception as exc:
        info["ok"] = False
        info["device"] = f"error: {exc}"
    return info


def _check_corpora() -> list[dict]:
    """Load a small piece of each embedded corpus; report time and size."""
    out = []
    checks = [
        ("toyworld", lambda: len(__import__("ssledu.data.toyworld", fromlist=["x"]).generate_texts(20, seed=0))),
        ("pydocs", lambda: len(__import__("ssledu.data.pydocs", fromlist=["x"]).load_pydocs()["train"])),
        ("digits", lambda: len(__import__("ssledu.data.digits", fromlist=["x"]).load_digits_images()["labels"])),
    ]
    for name, fn in checks:
        t0 = time.perf_counter()
        try:
            n = fn()
            out.append({"name": name, "ok": True, "detail": f"{n} examples", "seconds": round(time.perf_counter() - t0, 2)})
        except Exception as exc:
            out.append({"name": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}"})
    return out


def _check_cache() -> dict:
    path = ssledu.cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", delete=True):
            pass
        return {"path": str(path), "ok": True, "detail": "writable"}
    except OSError as exc:
        return {"path": str(path), "ok": False,
                "detail": f"not writable ({exc}); set SSLEDU_CACHE to a writable folder"}


def _data_dir() -> dict:
    raw = os.environ.get("SSLEDU_DATA_DIR")
    if not raw:
        return {"path": None, "detail": "not set (hub corpora need internet, or a mirror folder in SSLEDU_DATA_DIR)"}
    path = Path(raw).expanduser()
    if not path.is_dir():
        return {"path": str(path), "detail": "set, but the folder does not exist", "contents": []}
    contents = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    return {"path": str(path), "detail": f"{len(contents)} entries", "contents": contents}


def doctor_report(check_corpora: bool = True) -> dict:
    """Everything ``ssledu doctor`` prints, as a dict (``ok`` says whether all required parts work)."""
    ranges = declared_ranges()
    py_ok = sys.version_info >= (3, 10)
    report = {
        "ssledu": ssledu.__version__,
        "python": {"version": platform.python_version(), "ok": py_ok,
                   "executable": sys.executable},
        "platform": platform.platform(),
        "packages": [_check_package(n, ranges) for n in REQUIRED],
        "optional": [_check_package(n, ranges) for n in OPTIONAL],
        "torch": _torch_info(),
        "quick_mode": os.environ.get("SSLEDU_QUICK", "") or "unset",
        "cache": _check_cache(),
        "data_dir": _data_dir(),
    }
    report["corpora"] = _check_corpora() if check_corpora else []
    problems = []
    if not py_ok:
        problems.append("Python 3.10 or newer is required")
    problems += [f"{p['name']}: {p['detail']}" for p in report["packages"] if not p["ok"]]
    if not report["torch"]["ok"]:
        problems.append(f"torch: {report['torch'].get('error') or report['torch'].get('device')}")
    problems += [f"corpus {c['name']}: {c['detail']}" for c in report["corpora"] if not c["ok"]]
    report["problems"] = problems
    report["warnings"] = [f"{p['name']}: {p['detail']}" for p in report["optional"] if not p["ok"]]
    if not report["cache"]["ok"]:
        report["warnings"].append(f"cache: {report['cache']['detail']}")
    report["ok"] = not problems
    return report


def _mark(ok: bool) -> str:
    return "[OK]  " if ok else "[FAIL]"


def format_doctor(report: dict) -> str:
    lines = [f"ssledu {report['ssledu']} doctor", ""]
    py = report["python"]
    lines.append(f"{_mark(py['ok'])} python {py['version']} ({py['executable']})")
    lines.append(f"       platform {report['platform']}")
    t = report["torch"]
    if t.get("ok") or "version" in t:
        cuda = f"CUDA {t['cuda_version']} available" if t.get("cuda_available") else "CUDA not available"
        cudnn = f", cuDNN {t['cudnn']}" if t.get("cudnn") else ""
        lines.append(f"{_mark(t['ok'])} torch {t.get('version')}: {cuda}{cudnn}; device {t.get('device')}"
                     + (f" ({t['gpu']})" if t.get("gpu") else f"; {t.get('threads')} CPU threads"))
    else:
        lines.append(f"[FAIL] torch: {t.get('error')}")
    for p in report["packages"]:
        if p["name"] == "torch":
            continue
        detail = f"  <- {p['detail']}" if p["detail"] else ""
        lines.append(f"{_mark(p['ok'])} {p['name']} {p['version'] or '-'} (needs {p['range']}){detail}")
    for p in report["optional"]:
        mark = "[OK]  " if p["ok"] else "[--]  "
        detail = f"  <- {p['detail']}" if p["detail"] else ""
        lines.append(f"{mark} {p['name']} {p['version'] or '-'} (optional, {p['range']}){detail}")
    for c in report["corpora"]:
        secs = f" in {c['seconds']} s" if "seconds" in c else ""
        lines.append(f"{_mark(c['ok'])} corpus {c['name']}: {c['detail']}{secs}")
    c = report["cache"]
    lines.append(f"{_mark(c['ok'])} cache {c['path']}: {c['detail']}")
    d = report["data_dir"]
    shown = f"{d['path']}: {d['detail']}" if d["path"] else d["detail"]
    if d.get("contents"):
        shown += " (" + ", ".join(d["contents"][:12]) + (", ..." if len(d["contents"]) > 12 else "") + ")"
    lines.append(f"       SSLEDU_DATA_DIR {shown}")
    lines.append(f"       SSLEDU_QUICK {report['quick_mode']}")
    lines.append("")
    if report["ok"]:
        lines.append("All required parts work." + (
            f" Optional: {'; '.join(report['warnings'])}" if report["warnings"] else ""))
    else:
        lines.append("Problems: " + "; ".join(report["problems"]))
        lines.append('Fix: reinstall with  pip install -e ".[course]"  (see README), then run  ssledu doctor  again.')
    return "\n".join(lines)


def cmd_doctor(args) -> int:
    report = doctor_report(check_corpora=not args.no_corpora)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_doctor(report))
    return 0 if report["ok"] else 1


# --------------------------------------------------------------------- course

def chapters_dir(explicit: str | None = None) -> Path:
    """The folder holding the chapter notebooks."""
    candidates = [Path(explicit)] if explicit else [
        Path.cwd() / "chapters",
        Path(__file__).resolve().parents[1] / "chapters",
    ]
    for c in candidates:
        if c.is_dir() and any(c.glob("[0-9][0-9]_*.ipynb")):
            return c
    raise FileNotFoundError(
        "no chapters found (looked in " + ", ".join(str(c) for c in candidates)
        + "); run from the course's folder or pass --chapters-dir"
    )


def find_chapters(selection: list[str], folder: Path) -> list[Path]:
    """Chapters by number ("1", "01"), name part ("masked") or path; all when empty."""
    all_nb = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return all_nb
    picked = []
    for sel in selection:
        p = Path(sel)
        if p.suffix == ".ipynb" and p.exists():
            picked.append(p)
            continue
        matches = [nb for nb in all_nb if (sel.isdigit() and nb.name[:2] == f"{int(sel):02d}")
                   or (not sel.isdigit() and sel.lower() in nb.stem.lower())]
        if not matches:
            raise ValueError(
                f"no chapter matches {sel!r}; available: " + ", ".join(nb.stem for nb in all_nb)
            )
        picked.extend(m for m in matches if m not in picked)
    return picked


def execute_chapter(path: Path, out_path: Path, *, quick: bool, timeout: int = 1800,
                    kernel_name: str = "python3") -> dict:
    """Execute one notebook top to bottom with nbclient; return its row of the summary."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    with tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False) as fh:
        sink = fh.name
    env_backup = {k: os.environ.get(k) for k in ("SSLEDU_QUICK", "SSLEDU_REPORT_FILE")}
    os.environ["SSLEDU_QUICK"] = "1" if quick else "0"
    os.environ["SSLEDU_REPORT_FILE"] = sink
    status, error = "ok", ""
    t0 = time.perf_counter()
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    except CellExecutionError as exc:
        status = "error"
        error = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "cell error"
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
    metrics = {}
    try:
        with open(sink, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                metrics[rec["name"]] = rec["value"]
    finally:
        os.unlink(sink)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, out_path)  # atomic: never a half-written notebook
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
    folder = chapters_dir(args.chapters_dir)
    chapters = find_chapters(args.chapters, folder)
    if not args.execute:
        print(f"chapters in {folder}:")
        for nb in chapters:
            print(f"  {nb.stem}")
        print("run them headless with:  ssledu course --execute [--quick] [CHAPTER ...]")
        return 0
    if args.inplace and args.output:
        raise SystemExit("choose either --inplace or --output, not both")
    out_dir = Path(args.output or "executed")
    rows = []
    for nb in chapters:
        target = nb if args.inplace else out_dir / nb.name
        print(f"executing {nb.name} ({'quick' if args.quick else 'full'} mode) ...", flush=True)
        rows.append(execute_chapter(nb, target, quick=args.quick, timeout=args.timeout))
    print()
    print(format_course_table(rows))
    if not args.inplace:
        print(f"\nexecuted notebooks written to {out_dir}/")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


# ----------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssledu", description="The self-supervised learning course.")
    parser.add_argument("--version", action="version", version=f"ssledu {ssledu.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("doctor", help="environment report to paste into a question")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--no-corpora", action="store_true", help="skip loading the embedded corpora")
    d.set_defaults(func=cmd_doctor)

    c = sub.add_parser("course", help="list or execute the chapters")
    c.add_argument("chapters", nargs="*", help="chapter numbers or name parts (default: all)")
    c.add_argument("--execute", action="store_true", help="run the chapters top to bottom, headless")
    c.add_argument("--quick", action="store_true", help="quick mode (SSLEDU_QUICK=1): about a minute per chapter")
    c.add_argument("--output", default=None, help="folder for the executed notebooks (default: executed/)")
    c.add_argument("--inplace", action="store_true", help="overwrite the chapter notebooks with the executed ones")
    c.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    c.add_argument("--chapters-dir", default=None, help="folder with the notebooks (default: ./chapters)")
    c.add_argument("--json", action="store_true", help="also print the summary as JSON")
    c.set_defaults(func=cmd_course)

    b = sub.add_parser("bench", help="training speed on this machine", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=lambda a: __import__("ssledu.bench", fromlist=["main"]).main(a.rest))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ssledu {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

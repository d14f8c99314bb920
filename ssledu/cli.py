"""The ``ssledu`` command.

    ssledu doctor [--json] [--no-corpora]  environment report to paste into a question
    ssledu course                          list the chapters
    ssledu course --execute [--quick] [CHAPTER ...] [--output DIR | --inplace]
                                           run chapters headless, print a summary table
    ssledu bench --presets nano,tiny --steps 20
                                           training speed of the three objectives (see ssledu.bench)
    ssledu bench --target shakespeare-char --seconds 75 --repeats 2 --json
                                           time to reach 1.90 nats/char on tiny Shakespeare
    ssledu pretrain clm --corpus toyworld --preset nano --steps 500 --out runs/clm [--resume] [--json]
                                           pretrain from scratch (see ssledu.pretrain); the same
                                           under torchrun --nproc_per_node K -m ssledu pretrain ...

Every subcommand lives in one argparse tree (``build_parser``); ``main(argv)`` returns
the exit status: 0 all well, 1 a check or benchmark failed, 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import ssledu
from ssledu import bench  # light: torch is imported when a benchmark runs

# Packages the doctor reports on; "required" ones make it exit non-zero when broken.
REQUIRED = ["torch", "transformers", "tokenizers", "datasets", "huggingface_hub", "numpy",
            "matplotlib", "ipywidgets", "scikit-learn", "pandas", "tqdm", "safetensors"]
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


def _settings() -> list[dict]:
    """Each SSLEDU_* setting, read by the very function the chapters call (a value that
    function rejects breaks every chapter that reads it, so it is a problem, with its fix)."""

    def widgets():
        from ssledu.widgets import live_widgets

        return live_widgets()

    def hub_timeout():
        from ssledu.data.hub import hub_timeout

        return hub_timeout()

    def device():
        return ssledu.get_device()

    checks = [
        ("SSLEDU_DEVICE", device, lambda v: f"training on {v}",
         "unset SSLEDU_DEVICE (CUDA when available, else the CPU) or name a device this machine has"),
        ("SSLEDU_QUICK", ssledu.quick_mode, lambda v: "quick mode" if v else "full runs",
         "unset SSLEDU_QUICK for full runs or set SSLEDU_QUICK=1 for quick mode "
         "(until then every chapter's setup() fails)"),
        ("SSLEDU_WIDGETS", widgets, lambda v: "live controls " + ("on" if v else "off"),
         "unset SSLEDU_WIDGETS (controls inside Jupyter only) or set it to 1 or 0 "
         "(until then every explorer cell fails)"),
        ("SSLEDU_HUB_TIMEOUT", hub_timeout, lambda v: f"hub sources get {v:g} s to answer",
         "unset SSLEDU_HUB_TIMEOUT (15 s) or set it to a number of seconds such as 30 "
         "(until then every hub corpus fails to load)"),
    ]
    out = []
    for name, read, describe, fix in checks:
        raw = os.environ.get(name)
        entry = {"name": name, "value": raw if raw is not None else "unset"}
        try:
            entry.update(ok=True, detail=describe(read()), fix="")
        except Exception as exc:  # the chapters would raise the same: report it, do not crash
            entry.update(ok=False, detail=str(exc), fix=fix)
        out.append(entry)
    return out


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
        "settings": _settings(),
        "cache": _check_cache(),
        "data_dir": _data_dir(),
    }
    report["corpora"] = _check_corpora() if check_corpora else []
    problems, fixes = [], []
    reinstall = 'reinstall with  pip install -e ".[course]"  (see README), then run  ssledu doctor  again'
    if not py_ok:
        problems.append("Python 3.10 or newer is required")
        fixes.append("install Python 3.10 or newer and create the environment again (see README)")
    broken = [f"{p['name']}: {p['detail']}" for p in report["packages"] if not p["ok"]]
    device_setting = os.environ.get("SSLEDU_DEVICE", "").strip()
    if report["torch"].get("error") or (not report["torch"]["ok"] and not device_setting):
        broken.append(f"torch: {report['torch'].get('error') or report['torch'].get('device')}")
    broken += [f"corpus {c['name']}: {c['detail']}" for c in report["corpora"] if not c["ok"]]
    problems += broken
    if broken:
        fixes.append(reinstall)
    for entry in report["settings"]:
        if not entry["ok"]:
            problems.append(f"{entry['name']}: {entry['detail']}")
            fixes.append(entry["fix"])
    report["problems"] = problems
    report["fixes"] = fixes
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
    for entry in report["settings"]:
        lines.append(f"{_mark(entry['ok'])} {entry['name']} {entry['value']}: {entry['detail']}")
    lines.append("")
    if report["ok"]:
        lines.append("All required parts work." + (
            f" Optional: {'; '.join(report['warnings'])}" if report["warnings"] else ""))
    else:
        lines.append("Problems: " + "; ".join(report["problems"]))
        lines += [f"Fix: {fix}." for fix in report["fixes"]]
    return "\n".join(lines)


def cmd_doctor(args) -> int:
    if args.json:
        # JSON only on stdout: anything printed while the report is made goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            report = doctor_report(check_corpora=not args.no_corpora)
        print(json.dumps(report, indent=2, default=str))
    else:
        report = doctor_report(check_corpora=not args.no_corpora)
        print(format_doctor(report))
    return 0 if report["ok"] else 1


# --------------------------------------------------------------------- course
# The chapters' build (text source -> executed notebook) lives in ssledu.course.

from ssledu.course import (  # noqa: E402  (re-exported: `ssledu.cli.find_chapters` etc. keep working)
    chapters_dir, cmd_course, execute_chapter, find_chapters, format_course_table,
)


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
    __import__("ssledu.course", fromlist=["add_arguments"]).add_arguments(c)

    b = sub.add_parser("bench", help="training speed on this machine",
                       description=bench.__doc__.split("\n\n")[0].replace("``", ""),
                       epilog="examples:\n  ssledu bench --presets nano,tiny --steps 20\n"
                              "  ssledu bench --target shakespeare-char --seconds 75 --repeats 2 --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(b)
    b.set_defaults(func=bench.run)

    from ssledu import pretrain  # light: torch is imported when a run starts

    t = sub.add_parser("pretrain", help="pretrain a model from scratch on a corpus (also under torchrun)",
                       description=pretrain.__doc__.split("\n\n")[0].replace("``", ""),
                       epilog="examples:\n"
                              "  ssledu pretrain clm --corpus tiny_shakespeare --preset nano --seconds 60 --out runs/clm\n"
                              "  ssledu pretrain mlm --corpus ~/my_texts --preset tiny --steps 2000 --out runs/mlm\n"
                              "  ssledu pretrain mlm --corpus ~/my_texts --preset tiny --steps 4000 --out runs/mlm --resume\n"
                              "  torchrun --standalone --nproc_per_node 2 -m ssledu pretrain clm --corpus toyworld "
                              "--steps 500 --out runs/ddp",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    pretrain.add_arguments(t)
    t.set_defaults(func=pretrain.run)
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

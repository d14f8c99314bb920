"""The course's pretrained networks, saved and loaded by name.

Every chapter that trains a network a later chapter needs saves it here under a fixed name,
and the later chapter loads it by that name::

    from ssledu import zoo
    zoo.save("ch05-bart-infill", bart, tok, metrics={"exact": 0.27})
    bart = zoo.load("ch05-bart-infill")            # eval mode, on the CPU
    tok = zoo.load_tokenizer("ch05-bart-infill")

A saved network is a folder ``cache_dir()/checkpoints/<name>`` (``<name>-quick`` in quick
mode, so a quick run never replaces a full one): the model's own files
(``save_pretrained`` for transformers models; ``save(folder)`` for the course's plain torch
modules, which then need a classmethod ``load(folder)``), the tokenizer when there is one,
and ``zoo.json`` (the class to rebuild it with, quick or full, the chapter's metrics, when).
Saving is atomic: a crash leaves the previous network or the new one, never half of one.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = ["RECIPES", "RECIPE_SECONDS", "ZOO_FILE", "save", "load", "load_tokenizer", "path", "exists", "info",
           "names", "ensure"]

ZOO_FILE = "zoo.json"

#: The course's named networks and the chapter that trains each one.
RECIPES: dict[str, str] = {
    "ch02-mlm-toyworld": "chapter 02 (masked language modeling)",
    "ch03-gpt-toyworld": "chapter 03 (causal language modeling)",
    "ch04-unilm": "chapter 04 (prefix language modeling)",
    "ch05-bart-infill": "chapter 05 (denoising autoencoders)",
    "ch05-electra-disc": "chapter 05 (denoising autoencoders)",
    "ch06-simclr-digits": "chapter 06 (contrastive learning)",
    "ch06-simcse-toyworld": "chapter 06 (contrastive learning)",
    "ch07-clip-scenes": "chapter 07 (multimodal and masked images)",
    "ch07-mae": "chapter 07 (multimodal and masked images)",
}

#: Wall seconds each chapter takes to build, (full mode, quick mode), on a 2-core machine with
#: ``ssledu course --execute NN``: what :func:`ensure` announces before it trains a missing
#: network by running its chapter. Estimates, rounded up: from idle-machine timings of 05-07
#: (before their latest edits) and from builds of 02-04 on a shared machine, scaled down.
RECIPE_SECONDS: dict[str, tuple[int, int]] = {
    "02": (360, 60),
    "03": (300, 60),
    "04": (220, 50),
    "05": (300, 64),
    "06": (200, 50),
    "07": (250, 60),
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_TRUSTED = ("ssledu", "transformers")  # modules zoo.json may name a class from


def _root() -> Path:
    from ssledu import cache_dir

    return cache_dir() / "checkpoints"


def _check_name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith("-quick"):
        raise ValueError(
            f"zoo name {name!r} is not allowed: use lowercase letters, digits, '-', '.' or '_' "
            "(at most 100, e.g. 'ch05-bart-infill'), without '-quick' (quick mode adds it itself)"
        )
    return name


def _quick(quick) -> bool:
    if quick is None:
        from ssledu import quick_mode

        return quick_mode()
    return bool(quick)


def path(name: str, *, quick: bool | None = None) -> Path:
    """The folder of ``name`` (``<name>-quick`` in quick mode, or when ``quick=True``)."""
    name = _check_name(name)
    return _root() / (name + ("-quick" if _quick(quick) else ""))


def _saved(folder: Path) -> bool:
    # config.json alone: a transformers network saved before zoo.json existed
    return (folder / ZOO_FILE).is_file() or (folder / "config.json").is_file()


def exists(name: str, *, quick: bool | None = None) -> bool:
    """Whether ``name`` is saved (for the current mode unless ``quick`` is given)."""
    return _saved(path(name, quick=quick))


def names() -> list[str]:
    """Folder names of every saved network (``-quick`` ones included), sorted."""
    root = _root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _saved(p))


def save(name: str, model, tokenizer=None, *, metrics: dict | None = None,
         quick: bool | None = None) -> Path:
    """Save ``model`` (and ``tokenizer``) under ``name``; returns the folder.

    Replaces an earlier save of the same name and mode atomically. ``metrics`` (numbers the
    chapter measured) are stored in ``zoo.json`` for whoever loads the network later.
    """
    folder = path(name, quick=quick)
    cls = type(model)
    if not hasattr(model, "save_pretrained"):
        if not (callable(getattr(model, "save", None)) and callable(getattr(cls, "load", None))):
            raise TypeError(
                f"zoo.save cannot save a {cls.__name__}: it needs save_pretrained(folder) (a "
                "transformers model) or save(folder) with a classmethod load(folder)"
            )
    if cls.__module__.split(".")[0] not in _TRUSTED:
        raise TypeError(
            f"zoo.save saves the course's and transformers' classes only, not {cls.__module__}."
            f"{cls.__qualname__}; save your own model with torch.save or save_pretrained"
        )
    meta = {
        "name": name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "quick": _quick(quick),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        os.chmod(tmp, 0o755)
        if hasattr(model, "save_pretrained"):
            from ssledu.checkpoint import _quiet_transformers

            with _quiet_transformers():
                model.save_pretrained(tmp)
        else:
            model.save(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        (tmp / ZOO_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        from ssledu.checkpoint import swap_in

        old = swap_in(tmp, folder)
        tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _missing(name: str, quick: bool) -> FileNotFoundError:
    where = RECIPES.get(name)
    run = f"run {where}" if where else "save it first with zoo.save(name, model)"
    other = path(name, quick=not quick)
    hint = ""
    if _saved(other):
        hint = (f"; a {'quick' if not quick else 'full'}-mode copy exists at {other}: load it with "
                f"zoo.load({name!r}, quick={not quick})")
    mode = "quick" if quick else "full"
    return FileNotFoundError(
        f"no network named {name!r} in the zoo for {mode} mode (looked in {path(name, quick=quick)}); "
        f"{run}{' in quick mode' if quick and where else ''}{hint}"
    )


def info(name: str, *, quick: bool | None = None) -> dict:
    """The ``zoo.json`` of ``name``: class, quick, metrics, saved (UTC)."""
    q = _quick(quick)
    folder = path(name, quick=q)
    file = folder / ZOO_FILE
    if file.is_file():
        try:
            meta = json.loads(file.read_text())
            if not isinstance(meta, dict) or ":" not in str(meta.get("class", "")):
                raise ValueError("no class entry")
            return meta
        except ValueError as err:
            raise ValueError(f"{file} is damaged ({err}); run its chapter again to save it anew") from err
    config = folder / "config.json"
    if config.is_file():  # saved with save_pretrained before the zoo existed
        arch = (json.loads(config.read_text()).get("architectures") or [None])[0]
        if arch:
            return {"name": name, "class": f"transformers:{arch}", "quick": q, "metrics": {}}
    raise _missing(name, q)


def _resolve(qualified: str):
    module, _, qualname = qualified.partition(":")
    if module.split(".")[0] not in _TRUSTED:
        raise ValueError(f"zoo.json names the class {qualified!r}, outside ssledu and transformers; "
                         "refusing to import it")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def load(name: str, *, quick: bool | None = None):
    """The network saved under ``name``, on the CPU, in eval mode.

    Raises FileNotFoundError naming the chapter that trains it when it is not saved yet.
    """
    q = _quick(quick)
    meta = info(name, quick=q)
    folder = path(name, quick=q)
    cls = _resolve(meta["class"])
    if hasattr(cls, "from_pretrained"):
        from ssledu.checkpoint import _quiet_transformers

        with _quiet_transformers():
            model = cls.from_pretrained(folder)
    else:
        model = cls.load(folder)
    return model.eval()


def load_tokenizer(name: str, *, quick: bool | None = None):
    """The tokenizer saved with ``name`` (FileNotFoundError when it was saved without one)."""
    q = _quick(quick)
    info(name, quick=q)  # a clear error when the network itself is missing
    folder = path(name, quick=q)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{name!r} was saved without a tokenizer (no tokenizer.json in {folder}); "
                                "pass the tokenizer to zoo.save")
    from ssledu.data.tokenize import load_tokenizer as _load

    return _load(folder)


def _chapter_of(name: str) -> str:
    m = re.match(r"chapter (\d\d)", RECIPES.get(name, ""))
    if not m:
        raise ValueError(f"{name!r} has no recipe in the zoo (known: {', '.join(sorted(RECIPES))}); "
                         "save it yourself with zoo.save(name, model)")
    return m.group(1)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def ensure(*names: str, quick: bool | None = None, chapters_dir=None, timeout: int = 3600) -> list[Path]:
    """Make sure the named networks are in the zoo; train the missing ones by running their chapter.

    A missing network is trained by its recipe: the chapter that trains it (``RECIPES``), run
    top to bottom in a separate process in the current mode (quick or full), deterministic with
    the chapter's seeds. The time it will take is printed first (``RECIPE_SECONDS``), then a
    progress bar over the chapter's cells; the executed copy is kept in
    ``cache_dir()/recipes`` to read. Returns the folders of ``names`` in order.
    Raises ValueError for a name without a recipe, FileNotFoundError when the chapters are not
    on this machine (a pip install without the course's folder), RuntimeError when the chapter
    fails or does not save the network.
    """
    q = _quick(quick)
    for n in names:
        _check_name(n)
    missing = [n for n in names if not exists(n, quick=q)]
    chapters: dict[str, list[str]] = {}
    for n in missing:
        chapters.setdefault(_chapter_of(n), []).append(n)
    if chapters:
        from ssledu.course import chapters_dir as find_dir, find_chapters

        try:
            folder = find_dir(None if chapters_dir is None else str(chapters_dir))
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"{', '.join(missing)} not in the zoo, and the chapters that train them are not on this "
                f"machine ({err}); open and run chapter(s) {', '.join(sorted(chapters))} first, or clone "
                "the course's repository"
            ) from None
        total = sum(RECIPE_SECONDS.get(c, (600, 120))[1 if q else 0] for c in chapters)
        mode = "quick" if q else "full"
        print(f"not in the zoo yet ({mode} mode): {', '.join(missing)}. Training by running chapter(s) "
              f"{', '.join(sorted(chapters))}: about {_minutes(total)} on 2 CPU cores.", flush=True)
        for chapter in sorted(chapters):
            notebook = find_chapters([chapter], folder)[0]
            _run_recipe(notebook, q, timeout)
            still = [n for n in chapters[chapter] if not exists(n, quick=q)]
            if still:
                raise RuntimeError(f"chapter {chapter} ran but did not save {', '.join(still)}; "
                                   f"read its executed copy in {_recipes_dir()}")
    return [path(n, quick=q) for n in names]


def _recipes_dir() -> Path:
    from ssledu import cache_dir

    return cache_dir() / "recipes"


def _run_recipe(notebook: Path, quick: bool, timeout: int) -> None:
    """Execute one chapter in a child process, with a progress bar over its code cells."""
    import subprocess
    import sys

    from ssledu.live import Progress

    out = _recipes_dir() / notebook.name
    out.parent.mkdir(parents=True, exist_ok=True)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from ssledu.course import execute_chapter\n"
        "row = execute_chapter(Path(sys.argv[1]), Path(sys.argv[2]), quick=sys.argv[3] == '1', "
        "timeout=int(sys.argv[4]), on_cell=lambda d, n: print(f'@cell {d} {n}', flush=True))\n"
        "print('@done ' + json.dumps({k: row[k] for k in ('status', 'error', 'seconds')}), flush=True)\n"
    )
    bar, result = None, None
    with subprocess.Popen([sys.executable, "-c", script, str(notebook), str(out), "1" if quick else "0",
                           str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        tail: list[str] = []
        try:
            for line in proc.stdout:
                if line.startswith("@cell "):
                    done, n = map(int, line.split()[1:3])
                    if bar is None:
                        print(f"running {notebook.stem} ({n} code cells)", flush=True)
                        bar = Progress(n)
                    bar.update(done)
                elif line.startswith("@done "):
                    result = json.loads(line[6:])
                else:
                    tail = (tail + [line.rstrip()])[-20:]
        except KeyboardInterrupt:
            proc.kill()
            raise
    if bar is not None:
        bar.close("finished" if result and result["status"] == "ok" else "failed")
    if not result or result["status"] != "ok":
        why = result["error"] if result else "\n".join(tail)
        raise RuntimeError(f"running {notebook.stem} to train its networks failed: {why} "
                           f"(the executed copy, if any, is {out})")

"""pydocs: natural English from the running Python's own documentation.

Every Python installation ships a few megabytes of carefully written English:
the docstrings of its standard library and the language reference topics that
``help()`` shows (``pydoc_data.topics``). This module turns them into a small
labelled corpus that is always available offline:

* **texts** are paragraphs (docstrings split on blank lines, wrapped lines
  joined) of 40-600 characters, cleaned of signatures, doctest prompts, code
  blocks, tables, URL-only lines and reST markup, and deduplicated;
* **labels** are topic categories (``CATEGORIES``) taken from a hand-made map
  of standard-library modules, e.g. ``json`` -> "data formats"; the language
  reference topics are "language";
* **splits** train/validation/test (90/5/5) are decided by a stable hash of
  each text (``hashlib``), so the same text always lands in the same split.

The stdlib is *read* with ``ast``, never imported (importing ``antigravity``
opens a browser, ``this`` prints, ``tkinter`` needs a display). The extracted
corpus is cached as JSON in ``ssledu.cache_dir()``.

    >>> from ssledu.data.pydocs import load_pydocs
    >>> ds = load_pydocs()                       # doctest: +SKIP
    >>> ds["train"][0]["category"]               # doctest: +SKIP
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import sysconfig
import tempfile
import warnings
from pathlib import Path

__all__ = [
    "CATEGORIES",
    "MODULE_CATEGORIES",
    "SPLIT_FRACTIONS",
    "clean_paragraphs",
    "extract_pydocs",
    "split_of",
    "load_pydocs",
]

# Bump when the cleaning rules change, so stale caches are rebuilt.
_FORMAT_VERSION = 1

CATEGORIES = [
    "language",
    "text",
    "numbers and time",
    "data structures",
    "files and os",
    "internet",
    "data formats",
    "concurrency",
    "development tools",
]

# Top-level stdlib module or package -> category. Modules not listed here are
# skipped (GUI toolkits, platform glue, audio formats, private helpers).
_CATEGORY_MODULES = {
    "language": [
        "__future__", "builtins", "keyword", "abc", "_py_abc", "types", "copyreg",
        "contextlib", "_collections_abc", "operator", "weakref", "_weakrefset",
    ],
    "text": [
        "string", "re", "sre_compile", "sre_parse", "sre_constants", "textwrap",
        "difflib", "unicodedata", "stringprep", "readline", "rlcompleter", "codecs",
        "locale", "gettext", "shlex", "cmd", "reprlib", "pprint", "_markupbase",
    ],
    "numbers and time": [
        "math", "cmath", "decimal", "_pydecimal", "fractions", "numbers", "random",
        "statistics", "secrets", "colorsys", "datetime", "_pydatetime", "time",
        "calendar", "zoneinfo", "_strptime", "sched", "timeit",
    ],
    "data structures": [
        "collections", "heapq", "bisect", "array", "copy", "enum", "graphlib",
        "dataclasses", "itertools", "functools",
    ],
    "files and os": [
        "os", "pathlib", "shutil", "glob", "fnmatch", "tempfile", "filecmp",
        "fileinput", "stat", "io", "_pyio", "posixpath", "ntpath", "genericpath",
        "linecache", "platform", "errno", "signal", "getpass", "pty", "tty",
        "sysconfig", "site", "_sitebuiltins", "ctypes", "mmap", "resource", "pwd",
        "grp", "venv", "zipimport", "pipes", "subprocess", "shelve", "dbm",
    ],
    "internet": [
        "email", "http", "urllib", "socket", "ssl", "smtplib", "smtpd", "ftplib",
        "poplib", "imaplib", "nntplib", "telnetlib", "xmlrpc", "ipaddress",
        "mailbox", "mimetypes", "webbrowser", "wsgiref", "socketserver", "cgi",
        "cgitb", "uuid", "hmac", "hashlib", "netrc", "mailcap", "nturl2path",
    ],
    "data formats": [
        "json", "csv", "xml", "html", "configparser", "tomllib", "plistlib",
        "pickle", "pickletools", "_compat_pickle", "marshal", "sqlite3", "zlib",
        "gzip", "bz2", "lzma", "zipfile", "tarfile", "base64", "binascii",
        "struct", "quopri", "uu", "xdrlib", "_compression", "zipapp", "chunk",
    ],
    "concurrency": [
        "threading", "_threading_local", "multiprocessing", "concurrent",
        "asyncio", "queue", "selectors", "contextvars", "asyncore", "asynchat",
    ],
    "development tools": [
        "typing", "pydoc", "doctest", "unittest", "pdb", "bdb", "trace",
        "traceback", "tracemalloc", "profile", "cProfile", "pstats", "inspect",
        "dis", "opcode", "ast", "tokenize", "token", "symtable", "importlib",
        "pkgutil", "modulefinder", "runpy", "warnings", "logging", "argparse",
        "optparse", "getopt", "compileall", "py_compile", "pyclbr", "tabnanny",
        "code", "codeop", "atexit", "gc", "imp", "distutils",
    ],
}
MODULE_CATEGORIES = {m: c for c, mods in _CATEGORY_MODULES.items() for m in mods}

# Folders of the stdlib that are tests, vendored code, GUIs or installers.
_SKIP_PARTS = {
    "test", "tests", "idle_test", "idlelib", "lib2to3", "site-packages",
    "dist-packages", "tkinter", "turtledemo", "ensurepip", "__phello__",
    "__pycache__", "pydoc_data", "encodings",
}

SPLIT_FRACTIONS = {"train": 0.90, "validation": 0.05, "test": 0.05}
MIN_CHARS, MAX_CHARS = 40, 600

# --- cleaning ----------------------------------------------------------------

_URL = re.compile(r"^<?(https?|ftp)://\S+>?\.?$")
# A call signature: "name(a, b=1) -> int", "Foo.bar(x)", "S.pop(i) -- remove".
_SIGNATURE = re.compile(
    r"^[A-Za-z_][\w.]*\s*\(.*\)\s*(->.*)?:?$"  # alone on its line
    r"|^[A-Za-z_][\w.]*\([^)]*\)[\]\s]*(--|->|-\s|:\s)"  # followed by a description
)
# Section underlines, table borders and other punctuation-only lines.
_RULE = re.compile(r"^[\s=*\-~^+|#_`.:'\"]+$")
_ROLE = re.compile(r":[\w:+-]+:`(?:[^`<]*<)?~?!?([^`>]*)>?`")  # :func:`x` -> x
_LITERAL = re.compile(r"``([^`]+)``")
_INTERPRETED = re.compile(r"(?<![\w`])`([^`]+)`_{0,2}(?![\w`])")
_EMPHASIS = re.compile(r"(?<![\w*])\*{1,2}([^*\s](?:[^*]*[^*\s])?)\*{1,2}(?![\w*])")
_CODE_CHARS = re.compile(r"[{}\[\]=<>#@$\\|;]|\w\(|\w_\w|\.\w")


def _is_code_line(line: str) -> bool:
    s = line.strip()
    return (
        s.startswith((">>>", "...", "$ ", "%", "#", "@"))
        or bool(re.match(r"^:[\w ]+:(\s|$)", s))  # field list, ":param x: ..."
        or " # " in s
        or bool(_SIGNATURE.match(s))
        or bool(re.match(r"^(def|class|import|from|return|if|for|while|with|try|except)\b.*[:)]$", s))
        or s.endswith(("{", "}", ";"))
    )


def _strip_markup(text: str) -> str:
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = text.replace("::", ":")
    return re.sub(r"\s+", " ", text).strip()


def _looks_like_prose(text: str) -> bool:
    if not (MIN_CHARS <= len(text) <= MAX_CHARS):
        return False
    words = text.split()
    if len(words) < 6 or not (text[0].isalpha() or text[0] in "\"'") or text[-1] not in ".!?:":
        return False
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    if letters / len(text) < 0.85:
        return False
    # Few identifier-like tokens: a sentence, not a formula or a list of names.
    codeish = sum(bool(_CODE_CHARS.search(w)) for w in words)
    return codeish / len(words) <= 0.25 and "http" not in text and "XXX" not in text


def _sentence_chunks(text: str, limit: int) -> list[str]:
    """Greedy runs of whole sentences, each at most ``limit`` characters."""
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text)
    chunks, current = [], ""
    for sentence in sentences:
        if current and len(current) + 1 + len(sentence) > limit:
            chunks.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        chunks.append(current)
    return chunks


def _block_lines(block: str) -> list[str] | None:
    """The lines of a paragraph with a uniform indentation removed, or None.

    A block indented as a whole (a note or a definition's body in the
    language reference) is kept; so is ``term`` followed by an indented
    description, whose term line (usually a signature) is dropped. Mixed
    indentation means a code or literal block: None.
    """
    lines = [ln.rstrip() for ln in block.split("\n") if ln.strip()]
    indents = [len(ln) - len(ln.lstrip()) for ln in lines]
    if len(set(indents[1:])) == 1 and indents[0] < indents[1]:
        lines, indents = lines[1:], indents[1:]  # definition list: drop the term
    if len(set(indents)) != 1:
        return None
    return [ln.strip() for ln in lines]


def clean_paragraphs(doc: str) -> list[str]:
    """Split docstring or help text into clean prose paragraphs.

    ``doc`` is text as ``ast.get_docstring`` or ``pydoc_data.topics`` gives it.
    Paragraphs are separated by blank lines; wrapped lines are joined with one
    space. A paragraph is dropped when it has mixed indentation (a code or
    literal block) or any line that is a doctest prompt, a call signature,
    code, a table border or underline, or a bare URL; reST markup
    (``:func:`x```, ````x````, ``*x*``) is reduced to its text. Paragraphs
    longer than 600 characters are cut into runs of whole sentences. What
    remains must read as prose: 40-600 characters, at least six words,
    mostly letters. Returns the paragraphs in order.
    """
    out = []
    for block in re.split(r"\n\s*\n", doc.strip()):
        lines = _block_lines(block)
        if not lines or any(
            _is_code_line(ln) or _RULE.match(ln) or _URL.match(ln) for ln in lines
        ):
            continue
        text = _strip_markup(" ".join(lines))
        if text[-1:].isalnum():  # one-line summaries often lack the full stop
            text += "."
        for chunk in _sentence_chunks(text, MAX_CHARS):
            if _looks_like_prose(chunk):
                out.append(chunk)
    return out


# --- extraction --------------------------------------------------------------


def _stdlib_modules(stdlib: Path):
    """(dotted module name, path) of every .py file worth reading, sorted.

    Skipped folders are pruned during the walk (``site-packages`` can hold
    thousands of files that are not the standard library).
    """
    found = []
    for folder, dirs, files in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in _SKIP_PARTS and not d.startswith(("config-", "."))]
        found += [Path(folder) / f for f in files if f.endswith(".py")]
    for path in sorted(found):
        parts = list(path.relative_to(stdlib).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or parts[0].startswith("_sysconfigdata"):
            continue
        yield ".".join(parts), path


def _definitions(statements: list):
    """Class and function nodes among statements, nested ones included.

    Descends only through statement bodies (not expressions), which is much
    faster than ``ast.walk`` on a whole module.
    """
    for node in statements:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            sub = getattr(node, field, None)
            if isinstance(sub, list):
                yield from _definitions(sub)


def _docstrings(tree: ast.Module):
    """Module, class and function docstrings of a parsed file, in source order."""
    for node in [tree, *_definitions(tree.body)]:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc


def extract_pydocs(stdlib: str | os.PathLike | None = None) -> list[dict]:
    """Extract the labelled paragraphs from the stdlib sources and pydoc topics.

    ``stdlib`` defaults to ``sysconfig.get_paths()["stdlib"]``. Returns a list
    of ``{"text", "module", "category"}`` dicts, deduplicated (first occurrence
    kept), in a fixed order: language topics by name, then modules by path.
    Nothing is imported except ``pydoc_data.topics`` (pure data).
    """
    records: list[dict] = []
    seen: set[str] = set()

    def add(text: str, module: str, category: str) -> None:
        if text not in seen:
            seen.add(text)
            records.append({"text": text, "module": module, "category": category})

    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        topics = {}
    for name in sorted(topics):
        for text in clean_paragraphs(topics[name]):
            add(text, f"topics.{name}", "language")

    root = Path(stdlib if stdlib is not None else sysconfig.get_paths()["stdlib"])
    for module, path in _stdlib_modules(root):
        category = MODULE_CATEGORIES.get(module.split(".")[0])
        if category is None:
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        for doc in _docstrings(tree):
            for text in clean_paragraphs(doc):
                add(text, module, category)
    return records


# --- splits and loading --------------------------------------------------------


def split_of(text: str, seed: int = 0) -> str:
    """The split ("train"/"validation"/"test") a text belongs to.

    Decided by SHA-256 of ``f"{seed}:{text}"``, so it is the same on every
    machine and Python version (unlike ``hash()``), and a text never moves
    between splits when other texts are added or removed. Fractions are
    ``SPLIT_FRACTIONS`` (90/5/5).
    """
    u = _unit_hash(text, seed)
    if u < SPLIT_FRACTIONS["train"]:
        return "train"
    if u < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["validation"]:
        return "validation"
    return "test"


def _unit_hash(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _cache_path() -> Path:
    from ssledu import cache_dir

    version = ".".join(map(str, sys.version_info[:3]))
    return cache_dir() / f"pydocs-{version}.json"


def _records_problem(records) -> str | None:
    """What is wrong with cached records (None if nothing): the keys and categories
    ``load_pydocs`` reads. A cache written by another version or edited by hand fails here."""
    if not isinstance(records, list):
        return f"records is a {type(records).__name__}, not a list"
    expected = {"text", "module", "category"}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or set(rec) != expected:
            keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            return f"record {i} has keys {keys}, expected {sorted(expected)}"
        if rec["category"] not in CATEGORIES or not isinstance(rec["text"], str):
            return f"record {i} has unknown category {rec['category']!r}"
    return None


def _load_records() -> list[dict]:
    """Records from the JSON cache, or freshly extracted (and cached if possible)."""
    path = _cache_path()
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format") == _FORMAT_VERSION and payload.get("records"):
            problem = _records_problem(payload["records"])
            if problem is None:
                return payload["records"]
            warnings.warn(
                f"the pydocs cache {path} is damaged ({problem}); rebuilding it from the "
                "Python sources (a few seconds). If this repeats, delete the file.",
                stacklevel=3,
            )
    except (OSError, ValueError, AttributeError):
        pass  # missing, unreadable or an older format: rebuild quietly
    records = extract_pydocs()
    try:  # atomic write: a reader never sees half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"format": _FORMAT_VERSION, "records": records}, fh)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache need not be
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass  # read-only cache folder: work uncached
    return records


def load_pydocs(seed: int = 0):
    """The pydocs corpus as a ``datasets.DatasetDict`` (train/validation/test).

    Columns: ``text`` (str, one paragraph), ``label`` (int, a ``ClassLabel``
    whose names are ``CATEGORIES``), ``category`` (str), ``module`` (str, e.g.
    ``"json.decoder"`` or ``"topics.assert"``). ``seed`` changes which texts go
    to which split (see ``split_of``) and the order within each split (sorted by
    the same hash, so categories are mixed). On CPython 3.10-3.13: about
    8,500 paragraphs, 1.1 MB of text; the smallest category ("data
    structures") has about 200.
    """
    import datasets

    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=CATEGORIES),
            "category": datasets.Value("string"),
            "module": datasets.Value("string"),
        }
    )
    rows: dict[str, list] = {name: [] for name in SPLIT_FRACTIONS}
    for rec in _load_records():
        rows[split_of(rec["text"], seed)].append(rec)
    out = {}
    for name, recs in rows.items():
        recs.sort(key=lambda r: _unit_hash("order:" + r["text"], seed))
        out[name] = datasets.Dataset.from_dict(
            {
                "text": [r["text"] for r in recs],
                "label": [CATEGORIES.index(r["category"]) for r in recs],
                "category": [r["category"] for r in recs],
                "module": [r["module"] for r in recs],
            },
            features=features,
        )
    return datasets.DatasetDict(out)

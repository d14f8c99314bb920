"""hub: every named corpus through one entry point, ``load_corpus(name)``.

Embedded corpora work offline, always:

* ``toyworld``  generated text with exact log-probabilities (``toyworld.py``);
* ``pydocs``    English paragraphs from the Python documentation (``pydocs.py``);
* ``digits``    scikit-learn's 8x8 handwritten digits with captions (``digits.py``).

Hub corpora (``tiny_shakespeare``, ``wikitext2``, ``tinystories``, ``sst2``,
``ag_news``) come from a local mirror folder if there is one, else from the
internet: ``tiny_shakespeare`` is one plain file fetched with ``urllib`` (kept
in ``ssledu.cache_dir()/hub/``), the others come from the Hugging Face hub
through ``datasets.load_dataset`` (cached by ``datasets``).

Every network failure is ONE error, ``CorpusUnavailableError`` (a
``ConnectionError``), whose message names ``SSLEDU_DATA_DIR`` and the mirror
layout. It comes within ``HUB_TIMEOUT_S`` = 15 s (env ``SSLEDU_HUB_TIMEOUT``
changes it): before anything is downloaded, one HTTP request to the source
(through the proxy of ``HTTPS_PROXY``/``HTTP_PROXY`` when set) must get an
answer within that time, DNS lookup included, and that answer must not be an
HTTP error. ``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1`` fail at once.
Once the source has answered, a download that breaks off is reported the same
way (after the timeouts of ``urllib`` or ``huggingface_hub``, 15 s and 10 s
per stalled read).

Every corpus comes back as a ``datasets.DatasetDict`` with a ``text`` column
(and ``label``, a ``ClassLabel``, where the corpus has labels) and the split
names ``train`` / ``validation`` / ``test`` (those the corpus has).

Mirror folders
--------------
Set ``SSLEDU_DATA_DIR`` to a folder holding one sub-folder per corpus, named
after the corpus (or one of the aliases below; case does not matter)::

    $SSLEDU_DATA_DIR/
      tiny_shakespeare/  input.txt                   (or train.txt, validation.txt)
      wikitext2/         train.txt  validation.txt  test.txt
      tinystories/       train.txt  validation.txt
      sst2/              train.tsv  validation.tsv
      ag_news/           train.csv  test.csv

Files per split: ``<split>.txt`` for text, or ``<split>.tsv`` / ``<split>.csv``
with a header row naming a ``text`` column (``sentence`` also works) and a
``label`` column (integers, or the label names). How a ``.txt`` file is cut
into examples depends on the corpus:

* ``tiny_shakespeare``: the whole file is ONE example (character-level
  language modelling reads it as one stream). ``input.txt`` alone (the
  char-rnn file) is split like nanoGPT: the first 90 % of the characters are
  ``train``, the last 10 % ``validation``. Folder alias ``tinyshakespeare``.
* ``wikitext2``: one example per non-blank line (a paragraph or a ``= heading
  =``), stripped. Also accepted: ``valid.txt`` and ``wiki.{train,valid,test}.tokens``;
  folder alias ``wikitext-2``. This is the tokenized WikiText-2 (``<unk>``
  tokens included), as in ``Salesforce/wikitext`` config ``wikitext-2-v1``.
* ``tinystories``: stories separated by lines ``<|endoftext|>`` (the format of
  the original ``TinyStoriesV2-GPT4-{train,valid}.txt``, also accepted by name).
* ``sst2``: ``dev.tsv`` is accepted as validation (the GLUE files, columns
  ``sentence<TAB>label``). The GLUE test split has no labels and is not used.

A mirror may hold only some splits (for example WikiText-2 validation and
test); the splits found are returned.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "CorpusUnavailableError",
    "HubCorpus",
    "HUB_CORPORA",
    "EMBEDDED_CORPORA",
    "find_mirror",
    "mirror_root",
    "list_corpora",
    "load_corpus",
    "load_mirror",
    "probe",
    "hub_timeout",
    "HUB_TIMEOUT_S",
]

SPLITS = ("train", "validation", "test")
PROBE_TIMEOUT_S = 3.0
HUB_TIMEOUT_S = 15.0  # DNS + connect + first answer of the source; env SSLEDU_HUB_TIMEOUT
_TRUE = {"1", "true", "yes", "on", "y", "t"}


class CorpusUnavailableError(ConnectionError):
    """A hub corpus has no local mirror and its source cannot be reached or read."""


@dataclass(frozen=True)
class HubCorpus:
    """Where a hub corpus lives and how its files are read.

    ``hub_id``/``config`` name a ``datasets`` repository; ``urls`` (split ->
    file URL) replace them for plain text files. ``unit`` says how a ``.txt``
    file is cut into examples: "document" (whole file), "line" (non-blank
    lines) or "story" (blocks between ``<|endoftext|>`` lines).
    """

    name: str
    description: str
    splits: tuple[str, ...]
    unit: str
    hub_id: str | None = None
    config: str | None = None
    urls: dict[str, str] | None = None
    text_column: str = "text"
    label_column: str | None = None
    label_names: tuple[str, ...] | None = None
    folder_aliases: tuple[str, ...] = ()
    file_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    layout: str = ""
    char_split: float | None = None  # one input.txt cut into train/validation

    @property
    def source(self) -> str:
        if self.hub_id:
            return self.hub_id + (f" ({self.config})" if self.config else "")
        return ", ".join(sorted(set((self.urls or {}).values())))


HUB_CORPORA: dict[str, HubCorpus] = {
    c.name: c
    for c in [
        HubCorpus(
            name="tiny_shakespeare",
            description="1.1 MB of Shakespeare's plays (char-rnn), one text per split: character-level LMs",
            splits=("train", "validation"),
            unit="document",
            urls={
                "train": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
            },
            folder_aliases=("tinyshakespeare", "tiny-shakespeare"),
            layout="input.txt (split 90/10 by characters), or train.txt + validation.txt (one example each)",
            char_split=0.9,
        ),
        HubCorpus(
            name="wikitext2",
            description="WikiText-2: Wikipedia Good and Featured articles, one paragraph or heading per row",
            splits=("train", "validation", "test"),
            unit="line",
            hub_id="Salesforce/wikitext",
            config="wikitext-2-v1",
            folder_aliases=("wikitext-2", "wikitext_2"),
            file_aliases={
                "train": ("wiki.train.tokens",),
                "validation": ("valid.txt", "wiki.valid.tokens"),
                "test": ("wiki.test.tokens",),
            },
            layout="train.txt, validation.txt (or valid.txt), test.txt: one paragraph per line",
        ),
        HubCorpus(
            name="tinystories",
            description="TinyStories: short stories in the vocabulary of a 3-4 year old (GPT-generated)",
            splits=("train", "validation"),
            unit="story",
            hub_id="roneneldan/TinyStories",
            folder_aliases=("tiny_stories", "tiny-stories"),
            file_aliases={
                "train": ("TinyStoriesV2-GPT4-train.txt", "TinyStories-train.txt"),
                "validation": ("TinyStoriesV2-GPT4-valid.txt", "TinyStories-valid.txt", "valid.txt"),
            },
            layout="train.txt, validation.txt: stories separated by lines <|endoftext|>",
        ),
        HubCorpus(
            name="sst2",
            description="SST-2 (GLUE): movie-review sentences labelled negative/positive",
            splits=("train", "validation"),
            unit="line",
            hub_id="stanfordnlp/sst2",
            text_column="sentence",
            label_column="label",
            label_names=("negative", "positive"),
            folder_aliases=("sst-2", "sst_2"),
            file_aliases={"validation": ("dev.tsv",)},
            layout="train.tsv, validation.tsv (or dev.tsv) with a header: sentence<TAB>label",
        ),
        HubCorpus(
            name="ag_news",
            description="AG News: news titles and descriptions in 4 topics",
            splits=("train", "test"),
            unit="line",
            hub_id="fancyzhx/ag_news",
            label_column="label",
            label_names=("World", "Sports", "Business", "Sci/Tech"),
            folder_aliases=("ag-news", "agnews"),
            layout="train.csv, test.csv with a header: text,label",
        ),
    ]
}

EMBEDDED_CORPORA: dict[str, str] = {
    "toyworld": "generated text with exact log-probabilities, known latents (offline)",
    "pydocs": "English paragraphs from the Python documentation, 9 topic labels (offline)",
    "digits": "scikit-learn's 1,797 handwritten 8x8 digits with captions (offline)",
}

_NAME_ALIASES = {
    alias.lower().replace("-", "_"): c.name for c in HUB_CORPORA.values() for alias in c.folder_aliases
}
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}


# --- names ------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"corpus name must be a string; got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = _NAME_ALIASES.get(key, key)
    if key in EMBEDDED_CORPORA or key in HUB_CORPORA:
        return key
    known = [*EMBEDDED_CORPORA, *HUB_CORPORA]
    close = difflib.get_close_matches(key, known + list(_NAME_ALIASES), n=1, cutoff=0.5)
    hint = f" Did you mean {_NAME_ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise ValueError(f"corpus {name!r} is unknown; available: {', '.join(known)}.{hint}")


# --- mirrors ----------------------------------------------------------------------


def mirror_root() -> Path | None:
    """The mirror root from env ``SSLEDU_DATA_DIR``, or None when unset."""
    raw = os.environ.get("SSLEDU_DATA_DIR", "").strip()
    return Path(raw).expanduser() if raw else None


def find_mirror(name: str, root: str | os.PathLike | None = None) -> Path | None:
    """The mirror folder of hub corpus ``name`` under ``root`` (default
    ``SSLEDU_DATA_DIR``), matching the name or an alias case-insensitively;
    None if there is none."""
    corpus = HUB_CORPORA[_canonical_name(name)]
    base = Path(root).expanduser() if root is not None else mirror_root()
    if base is None or not base.is_dir():
        return None
    folders = {p.name.lower(): p for p in sorted(base.iterdir()) if p.is_dir()}
    for candidate in (corpus.name, *corpus.folder_aliases):
        if candidate.lower() in folders:
            return folders[candidate.lower()]
    return None


def _split_files(corpus: HubCorpus, split: str) -> list[str]:
    return [f"{split}.txt", f"{split}.tsv", f"{split}.csv", *corpus.file_aliases.get(split, ())]


def _expected_layout(corpus: HubCorpus) -> str:
    folders = " or ".join(f"{n}/" for n in (corpus.name, *corpus.folder_aliases[:1]))
    return f"$SSLEDU_DATA_DIR/{folders} with {corpus.layout}"


def _txt_examples(text: str, unit: str) -> list[str]:
    if unit == "document":
        return [text]
    if unit == "line":
        return [ln.strip() for ln in text.splitlines() if ln.strip()]
    if unit == "story":
        stories, current = [], []
        for line in text.splitlines():
            if line.strip() == "<|endoftext|>":
                stories.append("\n".join(current).strip())
                current = []
            else:
                current.append(line)
        stories.append("\n".join(current).strip())
        return [s for s in stories if s]
    raise ValueError(f"unknown unit {unit!r}; use document, line or story")


def _read_text(path: Path) -> str:
    """The text of a mirror file; a file that is not UTF-8 is named with the line to fix."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: byte {data[exc.start]:#04x} at offset {exc.start} is not UTF-8 ({exc.reason}). "
            "Mirror files must be UTF-8: re-save the file as UTF-8 (e.g. "
            f"iconv -f latin1 -t utf-8 {path.name} > fixed && mv fixed {path.name})"
        ) from None


def _table_rows(path: Path, corpus: HubCorpus) -> tuple[list[str], list | None]:
    """(texts, labels or None) from a .tsv/.csv file with a header row."""
    tsv = path.suffix.lower() == ".tsv"
    text = _read_text(path)
    reader = (
        csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
        if tsv
        else csv.reader(io.StringIO(text, newline=""))
    )
    header = [h.strip().lower() for h in next(reader, [])]
    text_col = next((c for c in ("text", corpus.text_column, "sentence") if c in header), None)
    if text_col is None:
        raise ValueError(
            f"{path} has no text column; its header is {header}. "
            "The first row must name a 'text' (or 'sentence') column and optionally 'label'."
        )
    ti = header.index(text_col)
    li = header.index("label") if "label" in header else None
    separator = "tab" if tsv else "comma"
    texts, labels = [], []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            fix = ("add the missing field" if len(row) < len(header) else
                   "put a text holding commas in double quotes" if not tsv else "remove the extra tab")
            raise ValueError(
                f"{path}:{reader.line_num}: this row has {len(row)} field(s) but the header names "
                f"{len(header)} ({', '.join(header)}), separated by a {separator}; {fix}, or delete the row"
            )
        texts.append(row[ti].strip())
        if li is not None:
            labels.append(_label_value(row[li], corpus, path, reader.line_num))
    return texts, (labels if li is not None else None)


def _label_value(raw: str, corpus: HubCorpus, path: Path, lineno: int) -> int:
    raw = raw.strip()
    if raw.lstrip("-").isdigit():
        return int(raw)
    names = corpus.label_names or ()
    if raw in names:
        return names.index(raw)
    raise ValueError(
        f"{path}:{lineno}: label {raw!r} is neither an integer nor one of {list(names)}"
    )


def _make_dataset(texts: list[str], labels: list | None, corpus: HubCorpus):
    import datasets

    columns = {"text": texts}
    features = {"text": datasets.Value("string")}
    if labels is not None:
        columns["label"] = labels
        if corpus.label_names:
            bad = sorted({y for y in labels if not 0 <= y < len(corpus.label_names)})
            if bad:
                raise ValueError(
                    f"{corpus.name}: labels {bad[:5]} are outside 0..{len(corpus.label_names) - 1} "
                    f"({', '.join(corpus.label_names)})"
                )
            features["label"] = datasets.ClassLabel(names=list(corpus.label_names))
        else:
            features["label"] = datasets.Value("int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def load_mirror(name: str, folder: str | os.PathLike):
    """Read hub corpus ``name`` from a mirror folder (layout: module docstring).

    Returns a ``DatasetDict`` of the splits found. Raises ``FileNotFoundError``
    listing the expected and the present files when no split file is there.
    """
    import datasets

    corpus = HUB_CORPORA[_canonical_name(name)]
    folder = Path(folder)
    present = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()}
    out = {}
    for split in corpus.splits:
        path = next((present[f.lower()] for f in _split_files(corpus, split) if f.lower() in present), None)
        if path is None:
            continue
        if path.suffix.lower() in (".tsv", ".csv"):
            texts, labels = _table_rows(path, corpus)
        else:
            texts, labels = _txt_examples(_read_text(path), corpus.unit), None
        out[split] = _make_dataset(texts, labels, corpus)
    if not out and corpus.char_split is not None and "input.txt" in present:
        text = _read_text(present["input.txt"])
        cut = int(len(text) * corpus.char_split)  # nanoGPT: data[:int(n * 0.9)]
        out = {
            "train": _make_dataset([text[:cut]], None, corpus),
            "validation": _make_dataset([text[cut:]], None, corpus),
        }
    if not out:
        expected = [f for s in corpus.splits for f in _split_files(corpus, s)]
        if corpus.char_split is not None:
            expected.append("input.txt")
        raise FileNotFoundError(
            f"mirror folder {folder} of corpus {corpus.name!r} has none of the expected files.\n"
            f"  expected: {', '.join(expected)}\n"
            f"  found:    {', '.join(sorted(p.name for p in present.values())) or '(nothing)'}\n"
            f"  layout:   {_expected_layout(corpus)}"
        )
    return datasets.DatasetDict(out)


# --- the hub ----------------------------------------------------------------------


def hub_timeout() -> float:
    """Seconds a hub source has to answer: env ``SSLEDU_HUB_TIMEOUT``, else ``HUB_TIMEOUT_S``."""
    raw = os.environ.get("SSLEDU_HUB_TIMEOUT", "").strip()
    if not raw:
        return HUB_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(
            f"SSLEDU_HUB_TIMEOUT must be a number of seconds above 0; got {raw!r}. "
            f"Unset it for the default of {HUB_TIMEOUT_S:g} s."
        )
    return value


class _Unreachable(Exception):
    """A source did not answer usefully; the message is the reason."""


def _proxy_for(url: str) -> str | None:
    """The proxy ``urllib`` (and ``requests``/``httpx``) use for ``url``, from the environment."""
    parsed = urlparse(url)
    if urllib.request.proxy_bypass(parsed.hostname or ""):
        return None
    return urllib.request.getproxies().get(parsed.scheme)


def _open_url(url: str, timeout: float):
    """The ``urllib`` response of a GET of ``url``; raises ``_Unreachable`` unless its
    headers arrive within ``timeout`` seconds (DNS, connect and proxy included: the
    request runs in a thread, since a DNS lookup has no timeout of its own)."""
    outcome: dict = {}
    gave_up = threading.Event()

    def request():
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "ssledu (course corpora)"})
            # A fresh opener reads the proxy variables now (urlopen's global one keeps the first).
            response = urllib.request.build_opener().open(req, timeout=timeout)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc
            return
        if gave_up.is_set():  # too late: nobody reads it
            response.close()
        else:
            outcome["response"] = response

    worker = threading.Thread(target=request, daemon=True, name="ssledu-hub")
    worker.start()
    worker.join(timeout)
    via = f" through the proxy {_proxy_for(url)}" if _proxy_for(url) else ""
    host = urlparse(url).netloc
    if "response" in outcome:
        return outcome["response"]
    gave_up.set()
    exc = outcome.get("error")
    if isinstance(exc, urllib.error.HTTPError):
        raise _Unreachable(f"{url} answered HTTP {exc.code} {exc.reason}{via}")
    detail = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if detail is None or isinstance(detail, TimeoutError):  # our deadline or the socket's, same limit
        raise _Unreachable(f"{host} did not answer within {timeout:g} s{via}")
    shown = detail if isinstance(detail, str) else f"{type(detail).__name__}: {detail}"
    raise _Unreachable(f"cannot reach {host}{via}: {shown}")


def _offline_reason(corpus: HubCorpus) -> str | None:
    """Why the source of ``corpus`` cannot be used now, or None when it answers in time.

    A plain-file source is not asked here: its download is the same request, with the
    same time limit."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]} is set"
    if corpus.urls:
        return None
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        _open_url(f"{endpoint}/api/datasets/{corpus.hub_id}", hub_timeout()).close()
    except _Unreachable as exc:
        return str(exc)
    return None


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if a TCP connection to ``host:port`` opens within ``timeout``
    seconds, else a short reason. The DNS lookup counts against the same
    limit (it runs in a thread, since ``getaddrinfo`` has no timeout)."""
    outcome: dict = {}

    def connect():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome["ok"] = True
        except OSError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    if outcome.get("ok"):
        return None
    exc = outcome.get("error")
    detail = f"{exc.__class__.__name__}: {exc}" if exc else "no answer"
    return f"cannot reach {host}:{port} within {timeout:g} s ({detail})"


def _unavailable(corpus: HubCorpus, reason: str, data_dir=None) -> CorpusUnavailableError:
    root = Path(data_dir).expanduser() if data_dir is not None else mirror_root()
    name = "data_dir" if data_dir is not None else "SSLEDU_DATA_DIR"
    where = (
        f"{name} is {str(root)!r}, which has no {corpus.name}/ folder."
        if root is not None
        else "SSLEDU_DATA_DIR is not set."
    )
    return CorpusUnavailableError(
        f"corpus {corpus.name!r} needs the internet ({reason}) and has no local mirror. {where}\n"
        f"To use it offline, copy its files into a mirror folder and set SSLEDU_DATA_DIR to the "
        f"folder's parent:\n  {_expected_layout(corpus)}\n"
        f"The embedded corpora work offline: {', '.join(EMBEDDED_CORPORA)}."
    )


# Exceptions of these packages raised while downloading mean "the network failed".
_NETWORK_MODULES = ("requests", "urllib3", "httpx", "httpcore", "aiohttp", "huggingface_hub", "fsspec")


def _is_network_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a failed download."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError)):
            return True
        for cls in type(exc).__mro__:
            module = cls.__module__.split(".")[0]
            if module.rstrip("0123456789") in _NETWORK_MODULES or cls.__name__ == "DatasetNotFoundError":
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def _download_dir(corpus: HubCorpus) -> Path:
    from ssledu import cache_dir

    return cache_dir() / "hub" / corpus.name


def _download_targets(corpus: HubCorpus) -> dict[str, Path]:
    """url -> the file it is kept in; the folder reads like a mirror (``input.txt`` or ``<split>.txt``)."""
    folder = _download_dir(corpus)
    return {
        url: folder / (Path(urlparse(url).path).name if corpus.char_split else f"{split}.txt")
        for split, url in (corpus.urls or {}).items()
    }


def _download(corpus: HubCorpus, data_dir=None) -> Path:
    """Fetch a plain-file corpus into ``cache_dir()/hub/<name>/`` (a mirror folder)."""
    folder = _download_dir(corpus)
    folder.mkdir(parents=True, exist_ok=True)
    timeout = hub_timeout()
    for url, target in _download_targets(corpus).items():
        if target.is_file():
            continue
        partial = target.with_name(target.name + ".part")
        try:
            with _open_url(url, timeout) as response, open(partial, "wb") as out:
                while chunk := response.read(1 << 16):  # each read waits at most `timeout` s
                    out.write(chunk)
        except _Unreachable as exc:
            raise _unavailable(corpus, str(exc), data_dir) from None
        except OSError as exc:  # the connection broke or stalled mid-download
            partial.unlink(missing_ok=True)
            raise _unavailable(corpus, f"the download of {url} broke off: {type(exc).__name__}: {exc}",
                               data_dir) from exc
        os.replace(partial, target)  # atomic: never a half-written corpus
    return folder


def _from_hub(corpus: HubCorpus, data_dir=None):
    if corpus.urls and all(p.is_file() for p in _download_targets(corpus).values()):
        return load_mirror(corpus.name, _download_dir(corpus))  # fetched before: no network
    reason = _offline_reason(corpus)
    if reason is not None:
        raise _unavailable(corpus, reason, data_dir)
    if corpus.urls:
        return load_mirror(corpus.name, _download(corpus, data_dir))
    import datasets

    try:
        raw = datasets.load_dataset(corpus.hub_id, corpus.config)
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        raise _unavailable(corpus, f"the download failed: {type(exc).__name__}: {exc}", data_dir) from exc
    out = {}
    for split in corpus.splits:
        if split not in raw:
            continue
        ds = raw[split]
        texts = ds[corpus.text_column]
        labels = ds[corpus.label_column] if corpus.label_column else None
        if corpus.unit == "line":
            keep = [i for i, t in enumerate(texts) if t.strip()]
            texts = [texts[i].strip() for i in keep]
            labels = [labels[i] for i in keep] if labels is not None else None
        out[split] = _make_dataset(texts, labels, corpus)
    return datasets.DatasetDict(out)


# --- the entry point --------------------------------------------------------------


def _select(ds, split: str | None, name: str):
    if split is None:
        return ds
    key = _SPLIT_ALIASES.get(split, split)
    if key not in ds:
        raise ValueError(
            f"corpus {name!r} has no split {split!r} here; available: {', '.join(ds)}"
        )
    return ds[key]


def load_corpus(name: str, split: str | None = None, *, data_dir: str | os.PathLike | None = None, **kwargs):
    """Load a named corpus as a ``datasets.DatasetDict`` (or one split).

    ``name``: an embedded corpus (toyworld, pydocs, digits; ``kwargs`` go to
    its loader, e.g. ``n_train`` for toyworld, ``seed`` for pydocs/digits) or a
    hub corpus (tiny_shakespeare, wikitext2, tinystories, sst2, ag_news).
    ``split``: None for all splits, or "train"/"validation"/"test".
    ``data_dir`` overrides env ``SSLEDU_DATA_DIR`` for the mirror lookup.
    Columns: ``text`` (+ ``label`` as a ``ClassLabel``). Raises ``ValueError``
    for an unknown name (suggesting the closest) or a mirror file to fix (named
    with its line), and ``CorpusUnavailableError`` (a ``ConnectionError``)
    within ``hub_timeout()`` seconds (15 by default) when a hub corpus has no
    mirror and its source does not answer.
    """
    key = _canonical_name(name)
    if key in EMBEDDED_CORPORA:
        if key == "toyworld":
            from ssledu.data.toyworld import load_toyworld as loader
        elif key == "pydocs":
            from ssledu.data.pydocs import load_pydocs as loader
        else:
            from ssledu.data.digits import load_digits as loader
        return _select(loader(**kwargs), split, key)
    if kwargs:
        raise TypeError(
            f"load_corpus({key!r}) takes no extra arguments (got {', '.join(kwargs)}); "
            "only the embedded corpora toyworld, pydocs, digits do"
        )
    corpus = HUB_CORPORA[key]
    folder = find_mirror(key, data_dir)
    if folder is None:
        return _select(_from_hub(corpus, data_dir), split, key)
    ds = load_mirror(key, folder)
    wanted = _SPLIT_ALIASES.get(split, split)
    if wanted in corpus.splits and wanted not in ds:
        raise FileNotFoundError(
            f"mirror folder {folder} of corpus {key!r} has no {wanted} split; expected one of "
            f"{', '.join(_split_files(corpus, wanted))}. Splits found: {', '.join(ds)}."
        )
    return _select(ds, split, key)


def list_corpora(data_dir: str | os.PathLike | None = None):
    """A ``pandas.DataFrame`` of every corpus ``load_corpus`` knows.

    Columns: ``name``, ``kind`` ("embedded" or "hub"), ``description``,
    ``source`` (the generator/package, the mirror folder found, or the hub id)
    and ``available`` ("yes (embedded)", "yes (mirror <folder>)" or "hub (needs
    internet)"). Nothing is downloaded and the network is not probed.
    """
    import pandas as pd

    rows = [
        {
            "name": n,
            "kind": "embedded",
            "description": d,
            "source": f"ssledu.data.{n}",
            "available": "yes (embedded)",
        }
        for n, d in EMBEDDED_CORPORA.items()
    ]
    for corpus in HUB_CORPORA.values():
        folder = find_mirror(corpus.name, data_dir)
        rows.append(
            {
                "name": corpus.name,
                "kind": "hub",
                "description": corpus.description,
                "source": corpus.source,
                "available": f"yes (mirror {folder})" if folder else "hub (needs internet)",
            }
        )
    return pd.DataFrame(rows, columns=["name", "kind", "description", "source", "available"])

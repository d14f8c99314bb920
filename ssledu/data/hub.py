"""hub: every named corpus through one entry point, ``load_corpus(name)``.

Embedded corpora work offline, always:

* ``toyworld``  generated text with exact log-probabilities (``toyworld.py``);
* ``pydocs``    English paragraphs from the Python documentation (``pydocs.py``);
* ``digits``    scikit-learn's 8x8 handwritten digits with captions (``digits.py``).

Hub corpora (``tiny_shakespeare``, ``wikitext2``, ``tinystories``, ``sst2``,
``ag_news``) come from a local mirror folder if there is one, else from the
Hugging Face hub through ``datasets.load_dataset`` (cached by ``datasets``).
Without internet and without a mirror, ``load_corpus`` fails within seconds
with a ``CorpusUnavailableError`` (a ``ConnectionError``) that says what to do.

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
import os
import socket
import threading
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
]

SPLITS = ("train", "validation", "test")
PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class CorpusUnavailableError(ConnectionError):
    """A hub corpus has no local mirror and the hub cannot be reached."""


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


def _table_rows(path: Path, corpus: HubCorpus) -> tuple[list[str], list | None]:
    """(texts, labels or None) from a .tsv/.csv file with a header row."""
    tsv = path.suffix.lower() == ".tsv"
    with open(path, encoding="utf-8", newline="") as fh:
        reader = (
            csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(fh)
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
        texts, labels = [], []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            texts.append(row[ti].strip())
            if li is not None:
                labels.append(_label_value(row[li], corpus, path, lineno))
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
            texts, labels = _txt_examples(path.read_text(encoding="utf-8"), corpus.unit), None
        out[split] = _make_dataset(texts, labels, corpus)
    if not out and corpus.char_split is not None and "input.txt" in present:
        text = present["input.txt"].read_text(encoding="utf-8")
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


def _offline_reason(corpus: HubCorpus) -> str | None:
    """Why the hub cannot be used now (None if a 3 s TCP connect succeeds)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return f"{var}={os.environ[var]} is set"
    if corpus.urls:
        url = next(iter(corpus.urls.values()))
    else:
        url = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    proxy = next(
        (os.environ[v] for v in _PROXY_VARS if os.environ.get(v)), None
    )
    target = urlparse(proxy if proxy else url)
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    return probe(host, port)


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


def _unavailable(corpus: HubCorpus, reason: str) -> CorpusUnavailableError:
    root = mirror_root()
    where = (
        f"SSLEDU_DATA_DIR is {str(root)!r}, which has no {corpus.name}/ folder."
        if root is not None
        else "SSLEDU_DATA_DIR is not set."
    )
    return CorpusUnavailableError(
        f"corpus {corpus.name!r} needs the internet ({reason}) and has no local mirror. {where}\n"
        f"To use it offline, copy its files into a mirror folder and set SSLEDU_DATA_DIR to the "
        f"folder's parent:\n  {_expected_layout(corpus)}\n"
        f"The embedded corpora work offline: {', '.join(EMBEDDED_CORPORA)}."
    )


def _from_hub(corpus: HubCorpus):
    reason = _offline_reason(corpus)
    if reason is not None:
        raise _unavailable(corpus, reason)
    import datasets

    try:
        if corpus.urls:
            raw = datasets.load_dataset("text", data_files=dict(corpus.urls), sample_by="document")
        else:
            raw = datasets.load_dataset(corpus.hub_id, corpus.config)
    except ConnectionError as exc:
        raise _unavailable(corpus, f"download failed: {exc}") from exc
    if corpus.char_split is not None:  # one file, cut like the mirror's input.txt
        text = "".join(raw["train"]["text"])
        cut = int(len(text) * corpus.char_split)
        return datasets.DatasetDict(
            {
                "train": _make_dataset([text[:cut]], None, corpus),
                "validation": _make_dataset([text[cut:]], None, corpus),
            }
        )
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
    for an unknown name (suggesting the closest) and ``CorpusUnavailableError``
    within seconds when a hub corpus has no mirror and no network.
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
        return _select(_from_hub(corpus), split, key)
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

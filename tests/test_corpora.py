"""Corpora: pydocs (docs of the running Python), digits, and load_corpus with mirrors."""

from __future__ import annotations

import collections
import importlib.util
import os
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ssledu.data import digits, hub, pydocs
from ssledu.data.hub import CorpusUnavailableError, list_corpora, load_corpus


def _shared_data() -> Path:
    env = os.environ.get("SSLEDU_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED = _shared_data()
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real corpus copies not found at {SHARED} (set SSLEDU_SHARED_DATA)"
)


# --- pydocs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pydocs_loads(tmp_path_factory):
    """Two loads of pydocs: the first extracts and caches, the second reads the cache."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSLEDU_CACHE", str(cache))
        first = pydocs.load_pydocs()
        cached = list(cache.glob("pydocs-*.json"))
        second = pydocs.load_pydocs()
        yield first, second, cached


def _all_texts(ds) -> list[str]:
    return [t for split in ds.values() for t in split["text"]]


def test_pydocs_is_large_enough(pydocs_loads):
    ds, _, _ = pydocs_loads
    size = sum(len(t.encode("utf-8")) for t in _all_texts(ds))
    assert size >= 800_000, f"pydocs holds only {size} bytes of text"
    assert list(ds) == ["train", "validation", "test"]


def test_pydocs_categories_and_labels(pydocs_loads):
    ds, _, _ = pydocs_loads
    assert len(pydocs.CATEGORIES) >= 6
    assert ds["train"].features["label"].names == pydocs.CATEGORIES
    counts = collections.Counter()
    for split in ds.values():
        for label, category in zip(split["label"], split["category"]):
            assert pydocs.CATEGORIES[label] == category
            counts[category] += 1
    assert set(counts) == set(pydocs.CATEGORIES)
    assert min(counts.values()) >= 150, counts
    # The hand-made map decides the label: spot-check modules we know.
    by_module = {m: c for split in ds.values() for m, c in zip(split["module"], split["category"])}
    assert by_module["json.decoder"] == "data formats"
    assert by_module["threading"] == "concurrency"
    assert by_module["topics.assert"] == "language"


_SIGNATURE_LINE = re.compile(r"^[A-Za-z_][\w.]*\([^)]*\)\s*(->|--|-\s|:\s|$)")


def test_pydocs_texts_are_clean_prose(pydocs_loads):
    ds, _, _ = pydocs_loads
    for text in _all_texts(ds):
        assert 40 <= len(text) <= 600, text
        assert ">>>" not in text and "\n" not in text and "``" not in text, text
        assert not _SIGNATURE_LINE.match(text), text
        assert not re.search(r":(func|meth|class|mod|attr|exc|data|param|return):", text), text
        assert not re.match(r"^\W*https?://\S+\W*$", text), text


def test_pydocs_split_is_deterministic_and_disjoint(pydocs_loads):
    first, second, cached = pydocs_loads
    assert len(cached) == 1 and cached[0].name == f"pydocs-{'.'.join(map(str, sys.version_info[:3]))}.json"
    for name in first:  # the cached load equals the extracting one, row for row
        assert first[name]["text"] == second[name]["text"]
        assert first[name]["label"] == second[name]["label"]
    sets = {name: set(first[name]["text"]) for name in first}
    total = sum(len(first[name]) for name in first)
    assert sum(len(s) for s in sets.values()) == total  # no duplicate within a split
    assert not (sets["train"] & sets["validation"]) and not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    for name, texts in sets.items():
        assert all(pydocs.split_of(t) == name for t in texts)
    assert 0.87 < len(sets["train"]) / total < 0.93
    assert 0.03 < len(sets["test"]) / total < 0.07


def test_split_of_is_a_stable_hash():
    # Pinned: sha256 of "seed:text", the same on every machine and Python version.
    held_out = {i: pydocs.split_of(f"sentence {i}") for i in range(50)}
    held_out = {i: s for i, s in held_out.items() if s != "train"}
    assert held_out == {8: "test", 10: "validation", 11: "validation", 36: "test",
                        40: "validation", 43: "test", 44: "test", 48: "validation"}
    assert pydocs.split_of("sentence 9", seed=1) == "test"
    texts = [f"text number {i}" for i in range(4000)]
    moved = sum(pydocs.split_of(t, seed=0) != pydocs.split_of(t, seed=1) for t in texts)
    assert 0.12 < moved / len(texts) < 0.24  # 2 * 0.9 * 0.1 = 0.18 expected


def test_clean_paragraphs_keeps_prose_and_drops_code():
    doc = (
        "frobnicate(x, y=2) -> int\n"
        "\n"
        "Return the frobnicated value of *x*, computed with\n"
        ":func:`math.fsum` and ``y`` as the step.\n"
        "\n"
        "Add the two values and return the sum, for example:\n"
        ">>> frobnicate(1)\n"
        "3\n"
        "\n"
        "Example::\n"
        "\n"
        "    total = frobnicate(x)\n"
        "    print(total)\n"
        "\n"
        "+-------+-------+\n"
        "| a     | b     |\n"
        "+-------+-------+\n"
        "\n"
        "https://docs.python.org/3/library/math.html\n"
        "\n"
        "Too short.\n"
        "\n"
        "S.pop(i) -- remove and return the item at index i from the list.\n"
        "\n"
        "timeout\n"
        "   The number of seconds to wait before the call gives up and raises\n"
        "   an error.\n"
    )
    assert pydocs.clean_paragraphs(doc) == [
        "Return the frobnicated value of x, computed with math.fsum and y as the step.",
        "The number of seconds to wait before the call gives up and raises an error.",
    ]


def test_clean_paragraphs_cuts_long_paragraphs_at_sentences():
    sentence = "This sentence is part of a long paragraph about the import system."
    chunks = pydocs.clean_paragraphs(" ".join([sentence] * 20))
    assert len(chunks) == 3 and all(len(c) <= pydocs.MAX_CHARS for c in chunks)
    assert " ".join(chunks) == " ".join([sentence] * 20)


def test_pydocs_reads_sources_without_importing_them(pydocs_loads):
    assert "antigravity" not in sys.modules and "this" not in sys.modules
    assert "tkinter" not in sys.modules and "idlelib" not in sys.modules


def test_pydocs_works_when_the_cache_is_not_writable(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SSLEDU_CACHE", str(blocker / "cache"))
    fake = [{"text": "A sentence long enough to count as a paragraph.", "module": "json", "category": "data formats"}]
    monkeypatch.setattr(pydocs, "extract_pydocs", lambda: fake)
    assert pydocs._load_records() == fake
    # writable: the cache is written atomically, with no temporary file left behind
    monkeypatch.setenv("SSLEDU_CACHE", str(tmp_path / "cache"))
    assert pydocs._load_records() == fake
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [pydocs._cache_path().name]
    monkeypatch.setattr(pydocs, "extract_pydocs", lambda: pytest.fail("cache was not used"))
    assert pydocs._load_records() == fake


# --- digits ------------------------------------------------------------------------


def test_digits_images_labels_captions():
    data = digits.load_digits_images()
    images, labels = data["images"], data["labels"]
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert data["captions"][0] == "a handwritten zero"
    assert all(c == f"a handwritten {digits.DIGIT_NAMES[y]}" for c, y in zip(data["captions"], labels))
    assert digits.caption(7) == "a handwritten seven"
    with pytest.raises(ValueError, match="0..9"):
        digits.caption(10)


def test_digits_split_is_stratified_and_seeded():
    ds = digits.load_digits(seed=0)
    assert {k: len(v) for k, v in ds.items()} == {"train": 1437, "validation": 180, "test": 180}
    assert ds["train"].features["label"].names == digits.DIGIT_NAMES
    for name in ("validation", "test"):
        counts = np.bincount(ds[name]["label"], minlength=10)
        assert counts.min() >= 17 and counts.max() <= 19, counts  # about 18 of each digit
    first = ds["test"].with_format("numpy")[:]
    assert first["image"].shape == (180, 8, 8) and first["image"].dtype == np.float32
    assert all(t == f"a handwritten {digits.DIGIT_NAMES[y]}" for t, y in zip(first["text"], first["label"]))
    # the three splits partition the 1797 images
    rows = sorted(img.tobytes() for split in ds.values() for img in split.with_format("numpy")["image"])
    full = sorted(img.tobytes() for img in digits.load_digits_images()["images"])
    assert rows == full
    again = digits.load_digits(seed=0)["test"].with_format("numpy")["image"]
    other = digits.load_digits(seed=1)["test"].with_format("numpy")["image"]
    assert np.array_equal(again, first["image"]) and not np.array_equal(other, first["image"])


# --- load_corpus: mirrors ---------------------------------------------------------


@pytest.fixture
def mirror(tmp_path):
    """A mirror folder with the documented layout for four hub corpora."""
    (tmp_path / "wikitext2").mkdir()
    (tmp_path / "wikitext2" / "train.txt").write_text(
        " \n = Title = \n \n First paragraph , with tokens . \n \n Second one . \n", encoding="utf-8"
    )
    (tmp_path / "wikitext2" / "valid.txt").write_text(" = Other = \n", encoding="utf-8")
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text(
        'sentence\tlabel\n"quoted" gem \t1\nflat and dull \t0\nfun\t1\n', encoding="utf-8"
    )
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nmeh\t0\n", encoding="utf-8")
    (tmp_path / "ag_news").mkdir()
    (tmp_path / "ag_news" / "test.csv").write_text(
        'text,label\n"Stocks fall, bonds rise",Business\nMatch report,1\n', encoding="utf-8"
    )
    (tmp_path / "tinystories").mkdir()
    (tmp_path / "tinystories" / "validation.txt").write_text(
        "Once upon a time.\n\nThe end.\n<|endoftext|>\nTom ran.\n<|endoftext|>\n", encoding="utf-8"
    )
    (tmp_path / "tiny_shakespeare").mkdir()
    (tmp_path / "tiny_shakespeare" / "input.txt").write_text("abcdefghij" * 100 + "X", encoding="utf-8")
    return tmp_path


def test_mirror_text_files(mirror, monkeypatch):
    monkeypatch.setenv("SSLEDU_DATA_DIR", str(mirror))
    wiki = load_corpus("wikitext2")
    assert list(wiki) == ["train", "validation"]  # only the splits present
    assert wiki["train"]["text"] == ["= Title =", "First paragraph , with tokens .", "Second one ."]
    assert load_corpus("wikitext-2", split="valid")["text"] == ["= Other ="]
    stories = load_corpus("tinystories", split="validation")
    assert stories["text"] == ["Once upon a time.\n\nThe end.", "Tom ran."]
    shakespeare = load_corpus("tiny_shakespeare")
    train, val = shakespeare["train"]["text"], shakespeare["validation"]["text"]
    assert len(train) == len(val) == 1
    assert len(train[0]) == int(1001 * 0.9) == 900 and train[0] + val[0] == "abcdefghij" * 100 + "X"


def test_mirror_tables_with_labels(mirror):
    sst = load_corpus("sst2", data_dir=mirror)  # folder alias SST-2, dev.tsv as validation
    assert sst["train"]["text"] == ['"quoted" gem', "flat and dull", "fun"]
    assert sst["train"]["label"] == [1, 0, 1] and sst["validation"]["label"] == [0]
    assert sst["train"].features["label"].names == ["negative", "positive"]
    news = load_corpus("ag_news", split="test", data_dir=mirror)
    assert news["text"] == ["Stocks fall, bonds rise", "Match report"]
    assert news["label"] == [2, 1]  # label names are mapped to ids
    assert news.features["label"].names == ["World", "Sports", "Business", "Sci/Tech"]


def test_mirror_with_wrong_layout(tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "sentences.txt").write_text("hello\n")
    with pytest.raises(FileNotFoundError) as err:
        load_corpus("sst2", data_dir=tmp_path)
    msg = str(err.value)
    assert "train.tsv" in msg and "dev.tsv" in msg and "sentences.txt" in msg
    (tmp_path / "wikitext2").mkdir()
    (tmp_path / "wikitext2" / "test.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError, match="no train split.*train.txt"):
        load_corpus("wikitext2", split="train", data_dir=tmp_path)
    (tmp_path / "ag_news").mkdir()
    (tmp_path / "ag_news" / "train.csv").write_text("title,label\nx,1\n")
    with pytest.raises(ValueError, match="no text column"):
        load_corpus("ag_news", data_dir=tmp_path)


@needs_shared
def test_real_copies_in_shared_data(monkeypatch):
    monkeypatch.setenv("SSLEDU_DATA_DIR", str(SHARED))
    raw = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    shakespeare = load_corpus("tiny_shakespeare")
    train, val = shakespeare["train"][0]["text"], shakespeare["validation"][0]["text"]
    assert len(raw) == 1_115_394 and len(train) == 1_003_854 and len(val) == 111_540
    assert train.startswith("First Citizen:") and train + val == raw
    wiki = load_corpus("wikitext2")
    assert {k: len(v) for k, v in wiki.items()} == {"validation": 2461, "test": 2891}
    assert wiki["validation"][0]["text"] == "= Homarus gammarus ="
    dev = load_corpus("sst2", split="validation")
    assert len(dev) == 872 and sum(dev["label"]) == 444
    assert dev[0] == {"text": "it 's a charming and often affecting journey .", "label": 1}


# --- load_corpus: failures and the listing ---------------------------------------------


def test_offline_fails_fast_and_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SSLEDU_DATA_DIR", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(ConnectionError) as err:
        load_corpus("tinystories")
    assert time.perf_counter() - start < 5
    assert isinstance(err.value, CorpusUnavailableError)
    msg = str(err.value)
    assert "SSLEDU_DATA_DIR" in msg and "HF_HUB_OFFLINE" in msg
    assert "tinystories/" in msg and "<|endoftext|>" in msg and "pydocs" in msg


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_fails_fast(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("SSLEDU_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    with pytest.raises(CorpusUnavailableError, match="cannot reach 127.0.0.1"):
        load_corpus("sst2")
    assert time.perf_counter() - start < 5


_NET_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "SSLEDU_DATA_DIR", "HF_ENDPOINT", "NO_PROXY", "no_proxy",
             *(f"{scheme}_{case}" for scheme in ("HTTPS", "HTTP", "ALL") for case in ("PROXY",)),
             "https_proxy", "http_proxy", "all_proxy")


@pytest.fixture
def no_network_env(monkeypatch, tmp_path):
    """A clean network environment, a short hub time limit and a private cache."""
    for var in _NET_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SSLEDU_HUB_TIMEOUT", "1")
    monkeypatch.setenv("SSLEDU_CACHE", str(tmp_path / "cache"))
    return monkeypatch


@pytest.fixture
def silent_server():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _http_server(status: int, body: bytes = b""):
    """A local HTTP server answering every request (CONNECT included) with ``status``."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_CONNECT = _answer

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def proxy_404():
    server = _http_server(404, b"not here")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _assert_course_error(err, corpus: str):
    msg = str(err.value)
    assert isinstance(err.value, CorpusUnavailableError) and isinstance(err.value, ConnectionError)
    assert "SSLEDU_DATA_DIR" in msg and f"{corpus}/" in msg, msg


@pytest.mark.parametrize("corpus", ["ag_news", "tiny_shakespeare"])
def test_a_source_that_never_answers_fails_within_the_time_limit(no_network_env, silent_server, corpus):
    # ag_news asks HF_ENDPOINT; tiny_shakespeare's file is on GitHub, reached through the proxy.
    no_network_env.setenv("HF_ENDPOINT", silent_server)
    no_network_env.setenv("HTTPS_PROXY", silent_server)
    start = time.perf_counter()
    with pytest.raises(ConnectionError) as err:
        load_corpus(corpus)
    assert time.perf_counter() - start < 4, "the limit is SSLEDU_HUB_TIMEOUT = 1 s"
    _assert_course_error(err, corpus)
    assert "did not answer within 1 s" in str(err.value), str(err.value)


@pytest.mark.parametrize("corpus", ["ag_news", "tiny_shakespeare", "wikitext2"])
def test_a_proxy_answering_404_is_the_course_error(no_network_env, proxy_404, corpus):
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        no_network_env.setenv(var, proxy_404)
    start = time.perf_counter()
    with pytest.raises(CorpusUnavailableError) as err:
        load_corpus(corpus)
    assert time.perf_counter() - start < 4
    _assert_course_error(err, corpus)
    assert "404" in str(err.value) and "proxy" in str(err.value)


def test_hub_time_limit_default_and_bad_values(monkeypatch):
    monkeypatch.delenv("SSLEDU_HUB_TIMEOUT", raising=False)
    assert hub.hub_timeout() == hub.HUB_TIMEOUT_S == 15.0
    for bad in ("soon", "0", "-3", "nan"):
        monkeypatch.setenv("SSLEDU_HUB_TIMEOUT", bad)
        with pytest.raises(ValueError, match="SSLEDU_HUB_TIMEOUT must be a number of seconds above 0"):
            hub.hub_timeout()


def test_a_failed_hub_download_after_the_probe_is_the_course_error(no_network_env):
    # The hub answers the probe, then the download itself fails (here: a proxy error of requests).
    import datasets

    server = _http_server(200, b"{}")
    no_network_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    # the error class of the HTTP client under datasets (requests, httpx, ... by version)
    ProxyError = type("ProxyError", (Exception,), {"__module__": "requests.exceptions"})

    def broken(*args, **kwargs):
        raise ProxyError("Unable to connect to proxy")

    no_network_env.setattr(datasets, "load_dataset", broken)
    try:
        with pytest.raises(CorpusUnavailableError, match="download failed: ProxyError") as err:
            load_corpus("sst2")
        _assert_course_error(err, "sst2")

        def not_network(*args, **kwargs):  # a bug is not a network failure: it stays itself
            raise KeyError("text")

        no_network_env.setattr(datasets, "load_dataset", not_network)
        with pytest.raises(KeyError):
            load_corpus("sst2")
    finally:
        server.shutdown()


def test_tiny_shakespeare_downloads_without_aiohttp_and_is_kept(no_network_env, tmp_path):
    import dataclasses

    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    server = _http_server(200, text.encode("utf-8"))
    url = f"http://127.0.0.1:{server.server_address[1]}/data/tinyshakespeare/input.txt"
    corpus = dataclasses.replace(hub.HUB_CORPORA["tiny_shakespeare"], urls={"train": url})
    no_network_env.setitem(hub.HUB_CORPORA, "tiny_shakespeare", corpus)
    try:
        ds = load_corpus("tiny_shakespeare")
    finally:
        server.shutdown()
    cut = int(len(text) * 0.9)
    assert ds["train"]["text"] == [text[:cut]] and ds["validation"]["text"] == [text[cut:]]
    kept = tmp_path / "cache" / "hub" / "tiny_shakespeare" / "input.txt"
    assert kept.read_text(encoding="utf-8") == text
    # the server is gone: the kept copy is read without the network
    assert load_corpus("tiny_shakespeare", split="validation")["text"] == [text[cut:]]


def test_a_non_utf8_mirror_file_names_the_file_and_line(tmp_path):
    (tmp_path / "wikitext2").mkdir()
    (tmp_path / "wikitext2" / "test.txt").write_bytes("line one\nna\u00efve\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"test\.txt:2: byte 0xef .* not UTF-8.*re-save the file as UTF-8"):
        load_corpus("wikitext2", data_dir=tmp_path)
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "dev.tsv").write_bytes("sentence\tlabel\ngood\t1\ncaf\u00e9\t0\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"dev\.tsv:3: .*not UTF-8"):
        load_corpus("sst2", data_dir=tmp_path)


def test_a_mirror_row_with_a_missing_or_extra_field_names_the_line(tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "train.tsv").write_text("sentence\tlabel\ngood\t1\n\nno label here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.tsv:4: this row has 1 field\(s\) but the header names 2 "
                                         r"\(sentence, label\), separated by a tab; add the missing field"):
        load_corpus("sst2", data_dir=tmp_path)
    (tmp_path / "ag_news").mkdir()
    (tmp_path / "ag_news" / "test.csv").write_text("text,label\nStocks fall, bonds rise,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"test\.csv:2: this row has 3 .*double quotes"):
        load_corpus("ag_news", data_dir=tmp_path)


def test_probe_sees_an_open_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert hub.probe("127.0.0.1", server.getsockname()[1], timeout=2) is None
    assert "cannot reach" in hub.probe("127.0.0.1", _closed_port(), timeout=2)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'tiny_shakespeare'") as err:
        load_corpus("shakespear")
    assert "pydocs" in str(err.value) and "wikitext2" in str(err.value)
    with pytest.raises(ValueError, match="Did you mean 'sst2'"):
        load_corpus("sst-3")
    with pytest.raises(TypeError, match="no extra arguments"):
        load_corpus("sst2", n_train=10)


def test_load_corpus_embedded_and_split_errors():
    test = load_corpus("digits", split="test")
    assert len(test) == 180 and {"image", "text", "label"} <= set(test.column_names)
    with pytest.raises(ValueError, match="available: train, validation, test"):
        load_corpus("digits", split="dev-2")


@pytest.mark.skipif(
    importlib.util.find_spec("ssledu.data.toyworld") is None, reason="ssledu/data/toyworld.py not written yet"
)
def test_load_corpus_toyworld_passes_arguments():
    ds = load_corpus("toyworld", n_train=40, n_validation=8, n_test=8)
    assert {k: len(v) for k, v in ds.items()} == {"train": 40, "validation": 8, "test": 8}
    assert "text" in ds["train"].column_names


def test_list_corpora(mirror, monkeypatch):
    monkeypatch.delenv("SSLEDU_DATA_DIR", raising=False)
    table = list_corpora(data_dir=mirror)
    assert list(table.columns) == ["name", "kind", "description", "source", "available"]
    rows = table.set_index("name")
    expected = {"toyworld", "pydocs", "digits", "tiny_shakespeare", "wikitext2", "tinystories", "sst2", "ag_news"}
    assert set(rows.index) == expected
    assert (rows.loc[["toyworld", "pydocs", "digits"], "kind"] == "embedded").all()
    assert rows.loc["sst2", "available"] == f"yes (mirror {mirror / 'SST-2'})"
    assert rows.loc["wikitext2", "source"] == "Salesforce/wikitext (wikitext-2-v1)"
    assert list_corpora().set_index("name").loc["sst2", "available"] == "hub (needs internet)"


def test_package_exports_are_lazy():
    import ssledu.data as data

    assert data.load_corpus is load_corpus and data.list_corpora is list_corpora
    assert data.load_pydocs is pydocs.load_pydocs and data.load_digits is digits.load_digits
    with pytest.raises(AttributeError):
        data.no_such_thing

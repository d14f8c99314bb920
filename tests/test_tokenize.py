"""Tests for ssledu.data.tokenize: layout of special ids, round trips, word ids, save/load."""

import os
import time
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from ssledu.data.tokenize import (
    KINDS,
    SPECIAL_TOKENS,
    load_tokenizer,
    save_tokenizer,
    sentinel_id,
    train_tokenizer,
)

DATA = Path(os.environ.get("SSLEDU_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

TEXTS = [
    "the quick brown fox jumps over the lazy dog .",
    "a cat sat on the mat , and the dog sat too .",
    "unbelievably , the fox was quick and the cat was lazy .",
    "Hello  World!\nNew line,\ttab and   spaces.",
]
ROLES = ["pad", "unk", "cls", "sep", "mask", "bos", "eos"]


@pytest.fixture(scope="module")
def toks():
    return {kind: train_tokenizer(TEXTS, kind, sentinels=3) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_at_fixed_ids(toks, kind):
    tok = toks[kind]
    assert isinstance(tok, PreTrainedTokenizerFast)
    for i, (role, token) in enumerate(zip(ROLES, SPECIAL_TOKENS)):
        assert getattr(tok, f"{role}_token") == token
        assert getattr(tok, f"{role}_token_id") == i
        assert tok.convert_ids_to_tokens(i) == token
    # a special token in the text is one token, never split into characters or pieces
    assert tok("[MASK]", add_special_tokens=True)["input_ids"] == [4]


@pytest.mark.parametrize("kind", KINDS)
def test_sentinels_count_down_from_the_top(toks, kind):
    tok = toks[kind]
    n = len(tok)
    assert [sentinel_id(tok, k) for k in range(3)] == [n - 1, n - 2, n - 3]
    assert tok.convert_ids_to_tokens(n - 1) == "<extra_id_0>"
    ids = tok("the <extra_id_1> dog")["input_ids"]
    assert ids.count(n - 2) == 1  # one token, never split into "<", "extra", ...
    assert not any("extra" in t and t != "<extra_id_1>" for t in tok.convert_ids_to_tokens(ids))
    assert n - 1 in tok.all_special_ids
    ids = tok("the cat")["input_ids"]
    assert tok.decode(ids + [n - 1], skip_special_tokens=True) == tok.decode(ids)
    with pytest.raises(ValueError, match="sentinels=n"):
        sentinel_id(tok, 3)
    # without sentinels the learned vocabulary runs to the top
    plain = train_tokenizer(TEXTS, kind)
    assert plain.convert_ids_to_tokens(len(plain) - 1) != "<extra_id_0>"
    assert len(plain) == n - 3


@pytest.mark.parametrize("kind", KINDS)
def test_no_special_tokens_added_by_default(toks, kind):
    tok = toks[kind]
    ids = tok("the cat sat")["input_ids"]
    assert ids and not set(ids) & set(range(len(SPECIAL_TOKENS)))


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_char_and_bpe_round_trip_exactly(toks, kind):
    tok = toks[kind]
    for text in TEXTS + ["  leading spaces and trailing  \n"]:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    # a character never seen in training: bytes for BPE, [UNK] for char
    ids = tok("fox ☃")["input_ids"]
    if kind == "bpe":
        assert tok.decode(ids) == "fox ☃" and 1 not in ids
    else:
        assert ids[-1] == tok.unk_token_id and len(ids) == 5


def test_char_is_one_token_per_character(toks):
    tok = toks["char"]
    text = TEXTS[3]
    tokens = tok.convert_ids_to_tokens(tok(text)["input_ids"])
    assert tokens == list(text)


def test_word_kind_gives_exactly_one_token_per_word(toks):
    tok = toks["word"]
    for text in TEXTS:
        enc = tok([text])
        ids = enc["input_ids"][0]
        assert tok.convert_ids_to_tokens(ids) == text.split()
        assert enc.word_ids(0) == list(range(len(text.split())))
        assert tok.decode(ids) == " ".join(text.split())  # whitespace normalised to one space
    ids = tok("the zebra sat")["input_ids"]
    assert ids[1] == tok.unk_token_id and len(ids) == 3


def test_wordpiece_normalises_whitespace_and_glues_punctuation(toks):
    tok = toks["wordpiece"]
    assert tok.decode(tok("the   fox\n jumps")["input_ids"]) == "the fox jumps"
    assert tok.decode(tok("a cat sat on the mat , and")["input_ids"]) == "a cat sat on the mat, and"


def test_wordpiece_pieces_of_a_long_word_share_one_word_id():
    # A tiny vocabulary cannot hold "unbelievably", so it splits into several "##" pieces.
    tok = train_tokenizer(TEXTS * 3, "wordpiece", vocab_size=60)
    enc = tok(["so unbelievably quick"])
    tokens = enc.tokens(0)
    word_ids = enc.word_ids(0)
    pieces = [t for t, w in zip(tokens, word_ids) if w == 1]
    assert len(pieces) >= 3
    assert pieces[0] == "u" or not pieces[0].startswith("##")
    assert all(p.startswith("##") for p in pieces[1:])
    assert "".join(p.removeprefix("##") for p in pieces) == "unbelievably"
    assert word_ids[0] == 0 and word_ids[-1] == 2
    assert [w for w in word_ids if w not in (0, 2)] == [1] * len(pieces)


def test_char_word_ids_group_each_word_with_its_trailing_spaces(toks):
    tok = toks["char"]
    text = "the  fox jumps"
    enc = tok([text])
    expected = [0] * 5 + [1] * 4 + [2] * 5  # "the  " / "fox " / "jumps"
    assert enc.word_ids(0) == expected


def test_bpe_word_ids_follow_gpt2_pretokens(toks):
    tok = toks["bpe"]
    enc = tok(["the fox, unbelievably"])
    groups = {}
    for t, w in zip(enc.tokens(0), enc.word_ids(0)):
        groups.setdefault(w, []).append(t)
    assert ["".join(g) for g in groups.values()] == ["the", "Ġfox", ",", "Ġunbelievably"]


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_gives_identical_ids(toks, kind, tmp_path):
    tok = toks[kind]
    save_tokenizer(tok, tmp_path / kind)
    assert (tmp_path / kind / "tokenizer.json").is_file()
    probe = TEXTS + ["the <extra_id_0> dog [MASK] ☃"]
    for loaded in (load_tokenizer(tmp_path / kind), PreTrainedTokenizerFast.from_pretrained(tmp_path / kind)):
        assert loaded(probe)["input_ids"] == tok(probe)["input_ids"]
        assert len(loaded) == len(tok)
        assert [getattr(loaded, f"{r}_token_id") for r in ROLES] == list(range(7))
        assert sentinel_id(loaded, 0) == len(loaded) - 1
        assert loaded.decode(tok(TEXTS[3])["input_ids"]) == tok.decode(tok(TEXTS[3])["input_ids"])


def test_load_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_tokenizer"):
        load_tokenizer(tmp_path)


def test_vocab_size_min_frequency_and_lowercase():
    bpe = train_tokenizer(TEXTS * 5, "bpe", vocab_size=300)
    assert len(bpe) == 300
    wp = train_tokenizer(TEXTS * 5, "wordpiece", vocab_size=70, sentinels=2)
    assert len(wp) == 70
    # char with a cap keeps the most frequent characters
    char = train_tokenizer(["aaaa bbb cc d"], "char", vocab_size=7 + 3)
    assert set(char.get_vocab()) == set(SPECIAL_TOKENS) | {"a", "b", " "}
    # min_frequency: words seen once are unknown
    word = train_tokenizer(["x y y z z z"], "word", min_frequency=2)
    assert word("x y z")["input_ids"][0] == word.unk_token_id
    assert len(word) == 7 + 2
    low = train_tokenizer(["The Cat"], "word", lowercase=True)
    assert low.convert_ids_to_tokens(low("THE cat")["input_ids"]) == ["the", "cat"]


def test_accepts_any_iterable_and_a_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": TEXTS})
    ref = train_tokenizer(TEXTS, "word").get_vocab()
    assert train_tokenizer(ds, "word").get_vocab() == ref
    assert train_tokenizer(ds["text"], "word").get_vocab() == ref
    assert train_tokenizer((t for t in TEXTS), "word").get_vocab() == ref


def test_bad_inputs_raise_helpful_errors():
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer([], "char")
    with pytest.raises(ValueError, match="empty or whitespace"):
        train_tokenizer(["", "  "], "wordpiece")
    with pytest.raises(ValueError, match="char, word, wordpiece, bpe"):
        train_tokenizer(TEXTS, "sentencepiece")
    with pytest.raises(ValueError, match="minimum is 8"):
        train_tokenizer(TEXTS, "wordpiece", vocab_size=7)
    with pytest.raises(ValueError, match="minimum is 11"):
        train_tokenizer(TEXTS, "word", vocab_size=10, sentinels=3)
    with pytest.raises(ValueError, match="minimum is 263"):
        train_tokenizer(TEXTS, "bpe", vocab_size=200)
    train_tokenizer(TEXTS, "word", vocab_size=8)  # the minimum itself is fine
    with pytest.raises(TypeError, match="wrap it in a list"):
        train_tokenizer("just one string", "char")
    with pytest.raises(TypeError, match="must be a str"):
        train_tokenizer(["ok", 3], "char")
    with pytest.raises(ValueError, match="sentinels"):
        train_tokenizer(TEXTS, "char", sentinels=-1)


def test_realistic_shakespeare():
    path = DATA / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}; set SSLEDU_SHARED_DATA to the folder")
    text = path.read_text(encoding="utf-8")
    train, held_out = text[:100_000], text[100_000:110_000]
    docs = train.split("\n\n")
    chars_per_token = {}
    for kind in KINDS:
        t0 = time.perf_counter()
        tok = train_tokenizer(docs, kind, sentinels=4)
        assert time.perf_counter() - t0 < 10
        ids = tok(held_out)["input_ids"]
        chars_per_token[kind] = len(held_out) / len(ids)
        if kind in ("char", "bpe"):
            assert tok.decode(ids) == held_out
        assert sentinel_id(tok, 0) == len(tok) - 1
    assert len(train_tokenizer(docs, "bpe", vocab_size=1000)) == 1000
    # subwords compress text several-fold; characters do not compress at all
    assert chars_per_token["char"] == pytest.approx(1.0, abs=0.01)
    assert chars_per_token["bpe"] > 2.5 and chars_per_token["wordpiece"] > 2.5
    assert chars_per_token["word"] > 4.0


def test_wordpiece_ids_follow_string_order_and_do_not_change_tokenization():
    # The raw WordPiece trainer numbers pieces of equal frequency in a different order from run
    # to run (seen on pydocs: 2 of 3 runs gave the same pieces with different ids), so
    # train_tokenizer renumbers the learned pieces in string order. (Which pieces tie at the
    # vocabulary cut-off can still change between runs: that is the trainer's.)
    import random

    from tokenizers import Tokenizer, models

    texts = TEXTS * 3 + ["unbelievably quick zebras zigzag", "zebra crossings are unbelievable"]
    ours = train_tokenizer(texts, "wordpiece", vocab_size=60)
    vocab = ours.get_vocab()
    learned = sorted((i, t) for t, i in vocab.items() if t not in SPECIAL_TOKENS)
    assert [t for _, t in learned] == sorted(t for _, t in learned)
    assert [i for i, _ in learned] == list(range(len(SPECIAL_TOKENS), len(vocab)))

    # Any other numbering of the same pieces tokenizes every text identically.
    pieces = [t for _, t in learned]
    random.Random(0).shuffle(pieces)
    shuffled = {s: i for i, s in enumerate(SPECIAL_TOKENS)}
    shuffled.update((t, len(SPECIAL_TOKENS) + i) for i, t in enumerate(pieces))
    other = Tokenizer(models.WordPiece(shuffled, unk_token="[UNK]", continuing_subword_prefix="##"))
    other.normalizer = ours.backend_tokenizer.normalizer
    other.pre_tokenizer = ours.backend_tokenizer.pre_tokenizer
    for t in texts:
        assert ours.tokenize(t) == other.encode(t).tokens

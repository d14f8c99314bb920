"""Train a small tokenizer offline: characters, words, WordPiece (BERT) or byte-level BPE (GPT-2).

Every tokenizer this module builds shares one layout, so that objectives and models can
rely on it::

    id  0      1      2      3      4       5      6      7 ...           len-1
        [PAD]  [UNK]  [CLS]  [SEP]  [MASK]  [BOS]  [EOS]  learned tokens  <extra_id_0>

- The seven special tokens sit at FIXED ids 0..6 for every kind.
- ``sentinels=n`` appends T5's ``<extra_id_k>`` tokens at the top of the vocabulary,
  counting down as in T5: ``<extra_id_0>`` is ``len(tokenizer) - 1``.
- Nothing is added automatically when encoding: ``tokenizer("a b")`` gives the ids of
  ``a`` and ``b`` only. Each objective adds the [CLS]/[SEP]/[BOS]/[EOS] it needs
  (see ``ssledu.data.blocks.encode_texts``).
- ``tokenizer(texts)`` returns fast encodings, so ``enc.word_ids(i)`` tells which word
  each token came from (used by whole-word masking). What a "word" is depends on the kind:

  ============  ===========================================================  =================
  kind          one token is                                                 word_ids group
  ============  ===========================================================  =================
  "char"        one character, whitespace included                           a whitespace word
                                                                             and the spaces
                                                                             after it
  "word"        one whitespace-separated word (unknown words -> [UNK])       a whitespace word
  "wordpiece"   a WordPiece piece, "##" marks a continuation (BERT)          a word; punctuation
                                                                             is its own word
  "bpe"         a byte-level BPE piece (GPT-2); a leading space is part of   a GPT-2 pre-token
                the piece, shown as "Ġ"                                      (" word", ",", ...)
  ============  ===========================================================  =================

  decode(encode(text)) == text exactly for "char" and "bpe"; "word" and "wordpiece"
  give back the words joined by single spaces (WordPiece also glues punctuation back to
  the word before it, as BERT's decoder does).

Sources: WordPiece and its "##" prefix from BERT (Devlin et al., 2019); byte-level BPE from
GPT-2 (Radford et al., 2019); sentinels from T5 (Raffel et al., 2020).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

__all__ = [
    "SPECIAL_TOKENS",
    "SPECIAL_IDS",
    "PAD_ID",
    "UNK_ID",
    "CLS_ID",
    "SEP_ID",
    "MASK_ID",
    "BOS_ID",
    "EOS_ID",
    "KINDS",
    "DEFAULT_VOCAB_SIZE",
    "train_tokenizer",
    "sentinel_id",
    "save_tokenizer",
    "load_tokenizer",
]

# Fixed layout: the position in this list IS the token id.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[BOS]", "[EOS]"]
_ROLES = ["pad_token", "unk_token", "cls_token", "sep_token", "mask_token", "bos_token", "eos_token"]
# The same layout by role, for code that needs an id without a tokenizer at hand
# (model configs, exercises): {"pad": 0, "unk": 1, "cls": 2, ..., "eos": 6}.
SPECIAL_IDS: dict[str, int] = {role.removesuffix("_token"): i for i, role in enumerate(_ROLES)}
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))

KINDS = ("char", "word", "wordpiece", "bpe")
# None = keep every symbol seen (char, word); the subword sizes suit the course's nano/tiny
# models, which train in minutes on a laptop.
DEFAULT_VOCAB_SIZE = {"char": None, "word": None, "wordpiece": 4096, "bpe": 4096}
_N_BYTES = 256  # byte-level BPE always keeps all 256 bytes so that any text round-trips


def _as_text_list(texts) -> list[str]:
    """Materialise a list, Dataset column or any iterable of str; reject empty input."""
    if isinstance(texts, str):
        raise TypeError(
            "texts must be a collection of strings, not a single string; "
            "wrap it in a list: train_tokenizer([text], ...)"
        )
    column_names = getattr(texts, "column_names", None)
    if column_names is not None:  # a datasets.Dataset: use its "text" column
        if "text" not in column_names:
            raise ValueError(
                f"the dataset has no 'text' column (columns: {column_names}); "
                "pass the column directly, e.g. train_tokenizer(ds['my_column'])"
            )
        texts = texts["text"]
    if not isinstance(texts, Iterable):
        raise TypeError(f"texts must be an iterable of str; got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is a {type(t).__name__}; every text must be a str")
    if not out:
        raise ValueError("texts is empty; pass at least one non-empty string to train on")
    if not any(t.strip() for t in out):
        raise ValueError(
            f"all {len(out)} texts are empty or whitespace; a tokenizer needs some text to learn from"
        )
    return out


def _min_vocab_size(kind: str, sentinels: int) -> int:
    base = len(SPECIAL_TOKENS) + sentinels + 1
    return base + _N_BYTES - 1 if kind == "bpe" else base


def _char_tokenizer(texts: list[str], n_learned: int | None, min_frequency: int, lowercase: bool):
    # One token per character = a BPE model with no merges. Splitting on whitespace and
    # merging each run of spaces into the word before it makes word_ids group a word with
    # the spaces that follow it, while keeping every character (so decode is exact).
    counts = Counter()
    for t in texts:
        counts.update(t.lower() if lowercase else t)
    chars = [c for c, n in counts.most_common() if n >= min_frequency]
    if n_learned is not None:
        chars = chars[:n_learned]
    chars.sort()  # ids in code-point order: easier to read in a vocabulary table
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for c in chars:
        vocab[c] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_previous")
    tok.decoder = decoders.Fuse()  # concatenate: no spaces inserted between characters
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS])
    return tok


def _trained_tokenizer(kind, texts, n_learned, min_frequency, lowercase):
    specials = [AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS]
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        # no decoder: tokenizers joins the words with single spaces
        trainer = trainers.WordLevelTrainer(
            vocab_size=n_learned if n_learned is not None else 10**9,
            min_frequency=min_frequency,
            special_tokens=specials,
            show_progress=False,
        )
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=n_learned,
            min_frequency=min_frequency,
            special_tokens=specials,
            continuing_subword_prefix="##",
            show_progress=False,
        )
    else:  # bpe
        tok = Tokenizer(models.BPE(unk_token=None))
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=n_learned,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    if kind == "word" and lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if kind == "wordpiece":
        # The trainer numbers pieces of equal frequency in an arbitrary order that changes from
        # run to run, and with it every model trained on the ids. WordPiece encodes by longest
        # match, whatever the ids, so renumbering the learned pieces in string order changes no
        # tokenization and makes the ids reproducible.
        learned = sorted(t for t in tok.get_vocab() if t not in SPECIAL_TOKENS)
        vocab = {s: i for i, s in enumerate(SPECIAL_TOKENS)}
        vocab.update((t, len(SPECIAL_TOKENS) + i) for i, t in enumerate(learned))
        tok.model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##")
    return tok


def train_tokenizer(
    texts,
    kind: str = "wordpiece",
    vocab_size: int | None = None,
    *,
    lowercase: bool = False,
    sentinels: int = 0,
    min_frequency: int = 1,
    model_max_length: int = 1_000_000,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer of the given ``kind`` on ``texts``, offline, in seconds.

    texts: a list of str, any iterable of str, a ``datasets`` column, or a Dataset with a
        "text" column.
    kind: "char", "word", "wordpiece" (BERT) or "bpe" (byte-level, GPT-2).
    vocab_size: upper bound on ``len(tokenizer)``, special tokens and sentinels included
        (a small corpus may give fewer). None: every symbol seen for "char"/"word",
        ``DEFAULT_VOCAB_SIZE[kind]`` for the subword kinds. "bpe" needs at least
        7 + 256 (+ sentinels), because it keeps all 256 bytes.
    lowercase: lowercase before tokenizing (WordPiece also strips accents, as uncased BERT).
    sentinels: number of T5 ``<extra_id_k>`` tokens, placed at the top of the vocabulary
        with ``<extra_id_0>`` = ``len(tokenizer) - 1``.
    min_frequency: a symbol (char/word) or merge must occur this often to enter the vocabulary.
    model_max_length: the length transformers warns above; the course's models set their own.

    Returns a ``transformers.PreTrainedTokenizerFast`` with [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3
    [MASK]=4 [BOS]=5 [EOS]=6 and no automatic [CLS]/[SEP] (see the module docstring).
    """
    if kind not in KINDS:
        raise ValueError(f"tokenizer kind {kind!r} is unknown; available: {', '.join(KINDS)}")
    if not isinstance(sentinels, int) or isinstance(sentinels, bool) or sentinels < 0:
        raise ValueError(f"sentinels must be a non-negative integer; got {sentinels!r}")
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"min_frequency must be an integer >= 1; got {min_frequency!r}")
    if vocab_size is None:
        vocab_size = DEFAULT_VOCAB_SIZE[kind]
    if vocab_size is not None:
        minimum = _min_vocab_size(kind, sentinels)
        if not isinstance(vocab_size, int) or vocab_size < minimum:
            why = f"{len(SPECIAL_TOKENS)} special tokens + {sentinels} sentinels"
            why += f" + {_N_BYTES} bytes" if kind == "bpe" else " + 1 learned token"
            raise ValueError(
                f"vocab_size={vocab_size!r} is too small for kind={kind!r}; "
                f"the minimum is {minimum} ({why})"
            )
    texts = _as_text_list(texts)
    n_learned = None if vocab_size is None else vocab_size - sentinels  # specials included

    if kind == "char":
        n_chars = None if n_learned is None else n_learned - len(SPECIAL_TOKENS)
        tok = _char_tokenizer(texts, n_chars, min_frequency, lowercase)
    else:
        tok = _trained_tokenizer(kind, texts, n_learned, min_frequency, lowercase)

    vocab = tok.get_vocab(with_added_tokens=True)
    for i, s in enumerate(SPECIAL_TOKENS):  # the layout every other module relies on
        assert vocab[s] == i, f"{s} landed at id {vocab[s]}, expected {i}"
    n_base = tok.get_vocab_size(with_added_tokens=True)
    extra = [f"<extra_id_{k}>" for k in range(sentinels)]
    clash = [s for s in extra if s in vocab]
    if clash:
        raise ValueError(f"the corpus already contains the sentinel strings {clash[:3]}; rename them")
    # Add from the highest index down so that <extra_id_0> gets the largest id (T5 order).
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in reversed(extra)])

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,  # keep decode exact for char/bpe
        extra_special_tokens=extra,
        **dict(zip(_ROLES, SPECIAL_TOKENS)),
    )
    if sentinels:
        assert fast.convert_tokens_to_ids("<extra_id_0>") == len(fast) - 1 == n_base + sentinels - 1
    return fast


def sentinel_id(tokenizer, k: int) -> int:
    """Id of T5's ``<extra_id_k>`` in ``tokenizer``; raises if it has fewer sentinels."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be a non-negative integer (<extra_id_k>); got {k!r}")
    token = f"<extra_id_{k}>"
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise ValueError(
            f"{token} is not in this tokenizer; train it with train_tokenizer(..., sentinels=n) "
            f"with n > {k}"
        )
    return vocab[token]


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path) -> Path:
    """Save to the folder ``path`` (tokenizer.json + tokenizer_config.json); return the folder.

    ``load_tokenizer(path)`` or ``PreTrainedTokenizerFast.from_pretrained(path)`` reads it back.
    """
    if not hasattr(tokenizer, "save_pretrained"):
        raise TypeError(
            f"save_tokenizer(tokenizer, path) needs the tokenizer object first; got "
            f"{type(tokenizer).__name__}. Build one with train_tokenizer(texts, kind=...)"
        )
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    return path


def load_tokenizer(path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by ``save_tokenizer`` from the folder ``path``.

    Checks that the file is readable and keeps the course's layout (``SPECIAL_TOKENS`` at
    ids 0..6); a damaged or foreign ``tokenizer.json`` raises ValueError naming the file.
    """
    path = Path(path)
    file = path / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"no tokenizer.json in {path}; save one first with save_tokenizer(tokenizer, {str(path)!r})"
        )
    fix = (f"delete {path} and train the tokenizer again (train_tokenizer, then "
           "save_tokenizer); models trained with the old ids need the same tokenizer")
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    except Exception as err:
        # JSONDecodeError for a cut-off file, KeyError for a foreign layout, and the Rust
        # library's own Exception for a malformed model section: all mean the same here.
        raise ValueError(f"{file} is corrupt or not a tokenizer file ({type(err).__name__}: "
                         f"{str(err)[:120]}); {fix}") from err
    vocab = tokenizer.get_vocab()
    moved = [f"{s}={vocab.get(s)}" for i, s in enumerate(SPECIAL_TOKENS) if vocab.get(s) != i]
    if moved:
        raise ValueError(
            f"{file} does not have the course's special-token layout "
            f"({', '.join(f'{s}={i}' for i, s in enumerate(SPECIAL_TOKENS))}); found "
            f"{', '.join(moved)}. It was not made by ssledu.data.tokenize: {fix}"
        )
    return tokenizer

"""Tests for ssledu.data.blocks: encoding, packing, padding, splits and seeded loaders."""

import os
from pathlib import Path

import pytest
import torch

from ssledu.data.blocks import (
    TokenBlocks,
    encode_texts,
    make_loader,
    pack_blocks,
    pad_blocks,
    split_blocks,
    train_val_split,
)
from ssledu.data.tokenize import train_tokenizer

DATA = Path(os.environ.get("SSLEDU_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
TEXTS = ["the cat sat on the mat .", "a dog ran .", "", "the dog sat on a cat ."]
PAD, CLS, SEP, BOS, EOS = 0, 2, 3, 5, 6


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, "word")


def docs_with_unique_ids(lengths):
    """Document i holds ids 1000*(i+1) + 0, 1, ...: every id tells its document and position."""
    return [[1000 * (i + 1) + j for j in range(n)] for i, n in enumerate(lengths)]


# --- encode_texts -------------------------------------------------------------------------


def test_encode_texts_frames_each_text(tok):
    plain = [tok(t)["input_ids"] for t in TEXTS]
    assert encode_texts(tok, TEXTS, add_eos=False) == plain
    assert encode_texts(tok, TEXTS) == [p + [EOS] for p in plain]  # EOS by default
    assert encode_texts(tok, TEXTS, add_bos=True) == [[BOS] + p + [EOS] for p in plain]
    assert encode_texts(tok, TEXTS, add_cls_sep=True) == [[CLS] + p + [SEP] for p in plain]
    assert encode_texts(tok, iter(TEXTS), add_eos=False) == plain


def test_encode_texts_truncates_inside_the_frame(tok):
    out = encode_texts(tok, TEXTS, add_cls_sep=True, max_length=4)
    assert all(len(x) <= 4 and x[0] == CLS and x[-1] == SEP for x in out)
    assert out[0][1:3] == tok(TEXTS[0])["input_ids"][:2]
    assert out[2] == [CLS, SEP]


def test_encode_texts_errors(tok):
    with pytest.raises(ValueError, match="already frames"):
        encode_texts(tok, TEXTS, add_cls_sep=True, add_eos=True)
    with pytest.raises(ValueError, match="no room"):
        encode_texts(tok, TEXTS, add_bos=True, max_length=2)
    with pytest.raises(TypeError, match="wrap it"):
        encode_texts(tok, "the cat")


# --- pack_blocks / pad_blocks -------------------------------------------------------------


@pytest.mark.parametrize("separator_id", [None, 3])
def test_packing_is_an_exact_cut_of_the_stream(separator_id):
    docs = docs_with_unique_ids([5, 1, 0, 13, 7])
    stream = []
    for i, d in enumerate(docs):
        stream += ([separator_id] if separator_id is not None and i else []) + d
    blocks = pack_blocks(docs, 4, separator_id=separator_id)
    assert blocks.dtype == torch.long and blocks.shape == (len(stream) // 4, 4)
    assert blocks.flatten().tolist() == stream[: blocks.numel()]
    padded = pack_blocks(docs, 4, separator_id=separator_id, drop_remainder=False, pad_id=999)
    assert padded.shape[0] == -(-len(stream) // 4)
    flat = padded.flatten().tolist()
    assert flat[: len(stream)] == stream and set(flat[len(stream) :]) <= {999}


def test_packing_accepts_tensors_and_a_flat_list():
    docs = docs_with_unique_ids([6, 6])
    ref = pack_blocks(docs, 3)
    assert torch.equal(pack_blocks([torch.tensor(d) for d in docs], 3), ref)
    assert torch.equal(pack_blocks(docs[0] + docs[1], 3), ref)
    assert torch.equal(pack_blocks(torch.tensor(docs), 3), ref)


def test_respect_documents_never_mixes_documents():
    lengths = [5, 1, 0, 13, 8]
    docs = docs_with_unique_ids(lengths)
    out = pad_blocks(docs, 4, return_doc_ids=True)
    ids, mask, doc_ids = out["input_ids"], out["attention_mask"], out["doc_ids"]
    assert ids.shape == mask.shape == (2 + 1 + 0 + 4 + 2, 4)
    assert torch.equal(pack_blocks(docs, 4, respect_documents=True), ids)
    for row, m, d in zip(ids.tolist(), mask.tolist(), doc_ids.tolist()):
        real = [x for x, keep in zip(row, m) if keep]
        assert {x // 1000 - 1 for x in real} == {d}  # one document per row
        assert m == sorted(m, reverse=True)  # padding only at the right
        assert all(x == PAD for x, keep in zip(row, m) if not keep)
    for i, d in enumerate(docs):  # each document comes back whole, in order
        rows = (doc_ids == i).nonzero().flatten()
        assert ids[rows][mask[rows].bool()].tolist() == d
    assert set(pad_blocks(docs, 4)) == {"input_ids", "attention_mask"}


def test_block_errors():
    docs = docs_with_unique_ids([3, 2])
    for bad in (1, 0, 2.0):
        with pytest.raises(ValueError, match="block_size must be an integer >= 2"):
            pack_blocks(docs, bad)
        with pytest.raises(ValueError, match="block_size"):
            pad_blocks(docs, bad)
    with pytest.raises(ValueError, match="only 5 tokens"):
        pack_blocks(docs, 8)
    assert pack_blocks(docs, 8, drop_remainder=False).shape == (1, 8)
    with pytest.raises(ValueError, match="empty"):
        pad_blocks([[], []], 4)


def test_packing_real_text_round_trips():
    path = DATA / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}; set SSLEDU_SHARED_DATA to the folder")
    docs = path.read_text(encoding="utf-8")[:50_000].split("\n\n")
    tok = train_tokenizer(docs, "bpe", vocab_size=512)
    ids = encode_texts(tok, docs)  # [EOS] closes every document
    blocks = pack_blocks(ids, 64)
    assert blocks.shape == (sum(map(len, ids)) // 64, 64)
    text = tok.decode(blocks.flatten().tolist())
    assert text == "".join(d + "[EOS]" for d in docs)[: len(text)]  # bytes split across blocks rejoin
    assert len(text) > 0.9 * 50_000


# --- splits and loaders -------------------------------------------------------------------


def test_train_val_split_is_seeded_disjoint_and_complete():
    tr, va = train_val_split(100, 0.1, seed=0)
    assert len(va) == 10 and len(tr) == 90
    assert sorted(tr.tolist() + va.tolist()) == list(range(100))
    assert torch.equal(train_val_split(100, 0.1, seed=0)[1], va)
    assert not torch.equal(train_val_split(100, 0.1, seed=1)[1], va)
    assert len(train_val_split(3, 0.01)[1]) == 1  # never an empty validation set
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
            train_val_split(10, bad)
    with pytest.raises(ValueError, match="at least 2"):
        train_val_split(1, 0.5)


def test_split_blocks_tensor_and_dict():
    blocks = torch.arange(40).view(20, 2)
    train, val = split_blocks(blocks, 0.25, seed=3)
    assert train.shape == (15, 2) and val.shape == (5, 2)
    assert sorted(torch.cat([train, val])[:, 0].tolist()) == blocks[:, 0].tolist()
    d = {"input_ids": blocks, "attention_mask": blocks % 2}
    dtrain, dval = split_blocks(d, 0.25, seed=3)
    assert torch.equal(dtrain["input_ids"], train) and torch.equal(dval["attention_mask"], val % 2)


def epoch_orders(loader, n_epochs=2):
    return [torch.cat([b[:, 0] for b in loader]).tolist() for _ in range(n_epochs)]


def test_loader_order_depends_only_on_the_seed():
    data = torch.arange(64).view(32, 2)
    a = epoch_orders(make_loader(data, 5, seed=7))
    b = epoch_orders(make_loader(data, 5, seed=7))
    c = epoch_orders(make_loader(data, 5, seed=8))
    assert a == b
    assert a != c
    assert a[0] != a[1]  # a new order each epoch
    for order in a + c:
        assert sorted(order) == list(range(0, 64, 2))  # every row exactly once
    torch.manual_seed(123)  # global randomness does not leak in
    assert epoch_orders(make_loader(data, 5, seed=7)) == a
    assert epoch_orders(make_loader(data, 5, shuffle=False), 1)[0] == list(range(0, 64, 2))


def test_loader_batches_and_drop_last():
    data = torch.arange(30).view(10, 3)
    batches = list(make_loader(data, 4))
    assert [b.shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
    assert [b.shape[0] for b in make_loader(data, 4, drop_last=True)] == [4, 4]
    padded = pad_blocks(docs_with_unique_ids([3, 6, 2]), 4)
    batch = next(iter(make_loader(padded, 2, seed=0)))
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape == (2, 4)
    assert len(TokenBlocks(padded)) == 4
    with pytest.raises(ValueError, match="same number of rows"):
        TokenBlocks({"a": torch.zeros(3), "b": torch.zeros(4)})
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make_loader(data, 0)
    with pytest.raises(ValueError, match="empty"):
        make_loader(torch.zeros(0, 4), 2)


def test_loader_with_a_list_and_a_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(9)], "label": list(range(9))})
    first = [b["label"].tolist() for b in make_loader(ds, 4, seed=1)]
    again = [b["label"].tolist() for b in make_loader(ds, 4, seed=1)]
    assert first == again and sorted(sum(first, [])) == list(range(9))
    seqs = [[i] * (i + 1) for i in range(5)]  # variable lengths need a collate_fn
    loader = make_loader(seqs, 2, seed=0, collate_fn=lambda b: [len(x) for x in b])
    assert sorted(sum(list(loader), [])) == [1, 2, 3, 4, 5]

"""Tests of ssledu.objectives.mlm: BERT masking, whole words, exact counts, NSP/SOP, losses."""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerFast,
)

from ssledu.data.tokenize import train_tokenizer
from ssledu.objectives import mlm

WORDS = (
    "the quick brown fox jumps over lazy dog unbelievable things happen rarely "
    "extraordinary circumstances demand unconventional responses"
).split()
SPECIAL = 7  # ids 0..6 are [PAD] [UNK] [CLS] [SEP] [MASK] [BOS] [EOS]
CLS, SEP, PAD, MASK = 2, 3, 0, 4


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def wp():
    """A tiny WordPiece vocabulary: long words split into several pieces."""
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(200)]
    return train_tokenizer(texts, kind="wordpiece", vocab_size=80)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def random_rows(n_rows, lengths, vocab, seed=0):
    """Ragged rows "[CLS] x ... [SEP]" of non-special ids."""
    g = gen(seed)
    rows = []
    for i in range(n_rows):
        body = torch.randint(SPECIAL, vocab, (lengths[i % len(lengths)],), generator=g)
        rows.append([CLS, *body.tolist(), SEP])
    return rows


def pad(rows):
    L = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (L - len(r)) for r in rows])


# ----------------------------------------------------------- reference equality

SETTINGS = [
    (0.15, 0.8, 0.1), (0.3, 0.5, 0.4), (0.5, 0.0, 1.0), (0.2, 1.0, 0.0), (0.4, 0.6, 0.2),
    (1.0, 0.8, 0.1),
]


@pytest.mark.parametrize("p, m, r", SETTINGS)
def test_mask_tokens_equals_transformers_collator(wp, p, m, r):
    rows = random_rows(6, [5, 12, 30, 1, 20], len(wp))
    for seed in (0, 1, 2):
        ref_collator = DataCollatorForLanguageModeling(
            wp, mlm_probability=p, mask_replace_prob=m, random_replace_prob=r, seed=seed
        )
        g = torch.Generator().manual_seed(seed)
        ours = mlm.MLMCollator(wp, p, m, r, seed=seed, ensure_one=False)
        for _ in range(3):  # successive batches: the generators advance identically
            ref = ref_collator([list(x) for x in rows])
            got = mlm.mask_tokens(pad(rows), wp, p, m, r, generator=g)
            assert torch.equal(got["input_ids"], ref["input_ids"])
            assert torch.equal(got["labels"], ref["labels"])
        ref2 = DataCollatorForLanguageModeling(
            wp, mlm_probability=p, mask_replace_prob=m, random_replace_prob=r, seed=seed
        )
        for _ in range(2):
            a, b = ours(rows), ref2(rows)
            assert torch.equal(a["input_ids"], b["input_ids"])
            assert torch.equal(a["labels"], b["labels"])
            assert torch.equal(a["attention_mask"], (pad(rows) != PAD).long())


def test_whole_words_equal_transformers_when_all_mask(wp):
    """transformers 5's WWM forces 100 % [MASK]; with the same setting ours agrees bit for bit."""
    rng = random.Random(1)
    sents = [" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(24)]
    enc = wp(sents, return_offsets_mapping=True)
    m = min(len(x) for x in enc["input_ids"])  # equal lengths, so no padding is involved
    examples, word_ids = [], []
    for i in range(len(sents)):
        examples.append(
            {
                "input_ids": [CLS, *enc["input_ids"][i][:m], SEP],
                "offset_mapping": [(0, 0), *enc["offset_mapping"][i][:m], (0, 0)],
            }
        )
        word_ids.append([None, *enc.word_ids(i)[:m], None])
    ids = torch.tensor([e["input_ids"] for e in examples])
    for seed in (0, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = DataCollatorForLanguageModeling(
                wp, whole_word_mask=True, mlm_probability=0.3, seed=seed
            )
        ref = reference(examples)
        g = torch.Generator().manual_seed(seed)
        got = mlm.mask_whole_words(ids, word_ids, wp, 0.3, 1.0, 0.0, generator=g)
        assert torch.equal(got["labels"], ref["labels"])
        assert torch.equal(got["input_ids"], ref["input_ids"])


# ----------------------------------------------------------------- statistics


def test_selection_and_80_10_10_statistics(wp):
    ids = pad(random_rows(64, [254], len(wp), seed=3))  # 64 x 256, 16 256 candidates
    before = ids.clone()
    out = mlm.mask_tokens(ids, wp, generator=gen(0))
    assert torch.equal(ids, before), "the input must not be modified"
    sel = out["labels"] != -100
    n_sel = sel.sum().item()
    assert abs(n_sel / (64 * 254) - 0.15) < 0.01
    x = out["input_ids"]
    as_mask = (x == MASK) & sel
    changed = (x != ids) & sel & ~as_mask
    kept = (x == ids) & sel
    assert abs(as_mask.sum().item() / n_sel - 0.80) < 0.025
    # Random ids hit the original token 1 time in len(wp), so "kept" is slightly above 10 %.
    assert abs(changed.sum().item() / n_sel - 0.10) < 0.02
    assert abs(kept.sum().item() / n_sel - 0.10) < 0.02
    assert torch.equal(x[~sel], ids[~sel]), "unselected positions are untouched"
    assert torch.equal(out["labels"][sel], ids[sel]), "labels hold the original ids"


def test_specials_and_padding_never_selected(wp):
    rows = random_rows(40, [1, 4, 9, 17], len(wp), seed=5)
    rows = [r[:3] + [5, 6, 1] + r[3:] for r in rows]  # [BOS] [EOS] [UNK] inside as well
    ids = pad(rows)
    special = torch.isin(ids, torch.arange(SPECIAL))
    out = mlm.mask_tokens(ids, wp, mlm_probability=1.0, generator=gen(0))
    assert torch.equal(out["labels"] != -100, ~special), "p=1 selects exactly the non-specials"
    # An explicit mask protects what it marks, and only that.
    protect = torch.zeros_like(special)
    protect[:, 1] = True
    out = mlm.mask_tokens(ids, wp, 1.0, special_tokens_mask=protect, generator=gen(0))
    assert torch.equal(out["labels"] != -100, ~protect)


def test_list_and_single_row_inputs(wp):
    rows = random_rows(3, [6], len(wp))
    a = mlm.mask_tokens(rows, wp, 0.5, generator=gen(4))
    b = mlm.mask_tokens(torch.tensor(rows), wp, 0.5, generator=gen(4))
    assert torch.equal(a["input_ids"], b["input_ids"]) and a["input_ids"].shape == (3, 8)
    one = mlm.mask_tokens(torch.tensor(rows[0]), wp, 0.5, generator=gen(4))
    assert one["input_ids"].shape == (8,)
    with pytest.raises(ValueError, match="different lengths"):
        mlm.mask_tokens([[CLS, 9, SEP], [CLS, 9, 9, SEP]], wp)


def test_ensure_one_guards_empty_rows_and_loss_is_zero_not_nan(wp):
    rows = pad(random_rows(200, [1, 2], len(wp), seed=2))  # "[CLS] x [SEP]": often nothing selected
    plain = mlm.mask_tokens(rows, wp, 0.15, generator=gen(0))
    empty = ~(plain["labels"] != -100).any(dim=1)
    assert empty.sum() > 100
    guarded = mlm.mask_tokens(rows, wp, 0.15, generator=gen(0), ensure_one=True)
    sel = guarded["labels"] != -100
    assert sel.any(dim=1).all()
    assert not (sel & torch.isin(rows, torch.arange(SPECIAL))).any()
    # Rows that already had a selection keep exactly their selection.
    assert torch.equal(sel[~empty], (plain["labels"] != -100)[~empty])
    # Without empty rows, ensure_one draws nothing extra: identical output.
    long_rows = pad(random_rows(8, [40], len(wp)))
    a = mlm.mask_tokens(long_rows, wp, generator=gen(1))
    b = mlm.mask_tokens(long_rows, wp, generator=gen(1), ensure_one=True)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    # The loss guard: all labels -100 gives 0 (with a gradient path), not NaN.
    logits = torch.randn(2, 3, len(wp), requires_grad=True)
    none = torch.full((2, 3), -100)
    assert torch.isnan(F.cross_entropy(logits.view(-1, len(wp)), none.view(-1), ignore_index=-100))
    loss = mlm.mlm_loss(logits, none)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    labels = torch.tensor([[-100, 9, -100], [12, -100, 30]])
    ref = F.cross_entropy(logits[labels != -100], labels[labels != -100])
    assert torch.allclose(mlm.mlm_loss(logits, labels), ref)


# ------------------------------------------------------------- whole words


def test_whole_word_groups_and_per_token_80_10_10(wp):
    rng = random.Random(2)
    sents = [" ".join(rng.choice(WORDS) for _ in range(20)) for _ in range(120)]
    enc = wp(sents)
    rows = [[CLS, *x, SEP] for x in enc["input_ids"]]
    word_ids = [[None, *enc.word_ids(i), None] for i in range(len(sents))]
    pieces_per_word = [sum(1 for w in word_ids[0] if w == k) for k in range(20)]
    assert max(pieces_per_word) >= 3, "the vocabulary must split long words into pieces"
    L = max(len(r) for r in rows)
    ids = pad(rows)
    wids = [w + [None] * (L - len(w)) for w in word_ids]
    out = mlm.mask_whole_words(ids, wids, wp, generator=gen(0))
    sel = out["labels"] != -100
    n_words = n_sel_words = multi = 0
    for i, w in enumerate(wids):
        for k in set(x for x in w if x is not None):
            pos = [j for j, x in enumerate(w) if x == k]
            s = sel[i, pos]
            assert s.all() or not s.any(), f"word {k} of row {i} is partly selected"
            n_words += 1
            n_sel_words += int(s.all())
            multi += int(s.all() and len(pos) > 1)
    assert multi > 50
    assert abs(n_sel_words / n_words - 0.15) < 0.02
    assert not sel[ids == PAD].any() and not sel[:, 0].any()
    # 80/10/10 per token (original BERT), not transformers 5's 100 % [MASK].
    n_sel = sel.sum().item()
    share_mask = ((out["input_ids"] == MASK) & sel).sum().item() / n_sel
    assert 0.76 < share_mask < 0.84
    # Pair inputs restart word ids at 0 in segment B: groups follow runs, not raw ids.
    pair = torch.tensor([[CLS, 10, 11, SEP, 12, 13, SEP]])
    pw = [[None, 0, 0, None, 0, 0, None]]
    seen = set()
    for seed in range(30):
        s = mlm.mask_whole_words(pair, pw, wp, 0.5, generator=gen(seed))["labels"] != -100
        seen.add(tuple(s[0].tolist()))
    assert seen == {
        (False,) * 7,
        (False, True, True, False, False, False, False),
        (False, False, False, False, True, True, False),
        (False, True, True, False, True, True, False),
    }


# ------------------------------------------------------------- exact count


def test_exact_count_matches_original_bert(wp):
    lengths = [1, 3, 8, 28, 60, 198]  # + [CLS]/[SEP]: n = 3, 5, 10, 30, 62, 200
    ids = pad(random_rows(len(lengths), lengths, len(wp)))
    out = mlm.mask_tokens_exact(ids, wp, generator=gen(0))
    counts = (out["labels"] != -100).sum(dim=1).tolist()
    # round() halves to even, as Python 2/3 in create_pretraining_data.py: 1.5 -> 2, 4.5 -> 4.
    assert counts == [1, 1, 2, 4, 9, 20]
    assert not (out["labels"] != -100)[torch.isin(ids, torch.arange(SPECIAL))].any()
    # Positions are uniform among candidates: each of 28 positions chosen ~ 4/28 of the time.
    rows = pad(random_rows(2000, [28], len(wp)))
    sel = mlm.mask_tokens_exact(rows, wp, generator=gen(1))["labels"] != -100
    freq = sel[:, 1:-1].float().mean(dim=0)
    assert (sel.sum(dim=1) == 4).all()
    assert (freq - 4 / 28).abs().max() < 0.03


# ---------------------------------------------------------------- NSP / SOP


def _docs(n_docs=30, n_segs=5):
    """Documents whose words say where they come from: d<doc> s<seg> w<k>."""
    return [
        [f"d{d} s{s} " + " ".join(f"w{k}" for k in range(1 + (d + s) % 4)) for s in range(n_segs)]
        for d in range(n_docs)
    ]


@pytest.fixture(scope="module")
def word_tok():
    docs = _docs()
    return train_tokenizer([seg for doc in docs for seg in doc], kind="word")


def _split_pair(row, tok):
    toks = tok.convert_ids_to_tokens(row.tolist())
    seps = [i for i, t in enumerate(toks) if t == "[SEP]"]
    return toks, seps


def test_nsp_pairs_structure_and_labels(word_tok):
    docs = _docs()
    out = mlm.nsp_pairs(docs, word_tok, 32, seed=0)
    N = 30 * 4
    assert out["input_ids"].shape[0] == N and set(out) == {
        "input_ids", "token_type_ids", "attention_mask", "next_sentence_label"
    }
    labels = out["next_sentence_label"]
    assert abs(labels.float().mean().item() - 0.5) < 0.1
    n = 0
    columns = (out["input_ids"], out["token_type_ids"], out["attention_mask"], labels)
    for row, types, att, lab in zip(*columns):
        toks, seps = _split_pair(row, word_tok)
        length = int(att.sum())
        assert toks[0] == "[CLS]" and len(seps) == 2 and seps[1] == length - 1
        assert types[: seps[0] + 1].eq(0).all() and types[seps[0] + 1 : length].eq(1).all()
        assert types[length:].eq(0).all() and row[length:].eq(PAD).all()
        assert att[length:].eq(0).all()
        (da, sa), (db, sb) = toks[1:3], toks[seps[0] + 1 : seps[0] + 3]
        if lab == 0:
            assert da == db and int(sb[1:]) == int(sa[1:]) + 1, "label 0: B is A's next segment"
        else:
            assert da != db, "label 1: B comes from another document"
        n += 1
    assert n == N
    again = mlm.nsp_pairs(docs, word_tok, 32, seed=0)
    other = mlm.nsp_pairs(docs, word_tok, 32, seed=1)
    assert torch.equal(again["input_ids"], out["input_ids"])
    assert not torch.equal(other["next_sentence_label"], labels)


def test_sop_pairs_swap_the_same_two_segments(word_tok):
    docs = _docs()
    out = mlm.sop_pairs(docs, word_tok, 32, seed=0)
    labels = out["sentence_order_label"]
    assert abs(labels.float().mean().item() - 0.5) < 0.1
    for row, types, lab in zip(out["input_ids"], out["token_type_ids"], labels):
        toks, seps = _split_pair(row, word_tok)
        (da, sa), (db, sb) = toks[1:3], toks[seps[0] + 1 : seps[0] + 3]
        assert da == db, "both segments come from the same document"
        step = int(sb[1:]) - int(sa[1:])
        assert step == (-1 if lab == 1 else 1)


def test_pairs_from_texts_and_truncation(wp, word_tok):
    assert mlm.split_sentences("a b . c d .  e f ! g?\nh") == ["a b .", "c d .", "e f !", "g?", "h"]
    texts = ["d0 s0 w0 . d0 s1 w0 w1 . d0 s2", "d1 s0 . d1 s1"]
    out = mlm.sop_pairs(texts, word_tok, 32, seed=0)
    assert out["input_ids"].shape[0] == 3
    # The longer side loses tokens first: A 10, B 3, max_len 11 -> budget 8 -> A 5, B 3.
    a, b = list(range(10, 20)), [30, 31, 32]
    out = mlm.sop_pairs([[a, b]], wp, 11, swap_prob=0.0)
    assert out["input_ids"][0].tolist() == [CLS, 10, 11, 12, 13, 14, SEP, 30, 31, 32, SEP]
    out = mlm.sop_pairs([[a, b]], wp, 7, swap_prob=0.0)  # budget 4 -> A 2, B 2
    assert out["input_ids"][0].tolist() == [CLS, 10, 11, SEP, 30, 31, SEP]
    with pytest.raises(ValueError, match="two segments"):
        mlm.sop_pairs(["one sentence only"], word_tok)
    with pytest.raises(ValueError, match="two non-empty documents"):
        mlm.nsp_pairs([["a", "b"]], word_tok)


# --------------------------------------------------------- model-level tests


def tiny_config(vocab_size, **kw):
    base = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    base.update(kw)
    return BertConfig(**base)


def test_pretraining_loss_equals_manual_sum_and_model_loss(word_tok):
    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config(len(word_tok)))
    pairs = mlm.nsp_pairs(_docs(6), word_tok, 16, seed=0)
    batch = mlm.mlm_collator(word_tok, 0.3, seed=0)(mlm.unbatch(pairs))
    assert torch.equal(batch["token_type_ids"], pairs["token_type_ids"])
    assert torch.equal(batch["attention_mask"], pairs["attention_mask"])
    assert torch.equal(batch["next_sentence_label"], pairs["next_sentence_label"])
    loss, parts = mlm.pretraining_loss(model, batch, alpha=0.5)
    out = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")})
    lab = batch["labels"]
    manual_mlm = F.cross_entropy(out.prediction_logits[lab != -100], lab[lab != -100])
    manual_nsp = F.cross_entropy(out.seq_relationship_logits, batch["next_sentence_label"])
    assert torch.allclose(loss, manual_mlm + 0.5 * manual_nsp, atol=1e-6)
    assert float(parts["mlm_loss"]) == pytest.approx(manual_mlm.item(), abs=1e-6)
    assert float(parts["nsp_loss"]) == pytest.approx(manual_nsp.item(), abs=1e-6)
    full, _ = mlm.pretraining_loss(model, batch)
    assert torch.allclose(full, model(**batch).loss, atol=1e-6), "alpha=1 is transformers' own sum"
    sop = mlm.mlm_collator(word_tok, seed=0)(mlm.unbatch(mlm.sop_pairs(_docs(6), word_tok, 16)))
    loss, _ = mlm.pretraining_loss(model, sop)
    loss.backward()
    assert model.cls.seq_relationship.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="next_sentence_label"):
        mlm.pretraining_loss(model, {"input_ids": batch["input_ids"], "labels": lab})


def test_collator_strategies_state_and_fit(wp, word_tok):
    rng = random.Random(3)
    sents = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(8)]
    enc = wp(sents)
    examples = [
        {"input_ids": [CLS, *enc["input_ids"][i], SEP], "word_ids": [None, *enc.word_ids(i), None]}
        for i in range(len(sents))
    ]
    batch = mlm.mlm_collator(wp, 0.3, strategy="whole_word", seed=0)(examples)
    ids = pad([e["input_ids"] for e in examples])
    L = ids.shape[1]
    ref = mlm.mask_whole_words(
        ids, [e["word_ids"] + [None] * (L - len(e["word_ids"])) for e in examples], wp, 0.3,
        ensure_one=True, generator=gen(0),
    )
    assert torch.equal(batch["labels"], ref["labels"]) and "word_ids" not in batch
    exact = mlm.mlm_collator(wp, strategy="exact", seed=0)(examples)
    n = (ids != PAD).sum(dim=1)
    expected = torch.tensor([max(1, round(0.15 * int(k))) for k in n])
    assert torch.equal((exact["labels"] != -100).sum(dim=1), expected)
    # state_dict / load_state_dict replay the same masks.
    collate = mlm.mlm_collator(wp, seed=5)
    state = collate.state_dict()
    first = collate(examples)
    collate.load_state_dict(state)
    assert torch.equal(collate(examples)["input_ids"], first["input_ids"])
    # The collator and pretraining_loss plug into ssledu.train.fit.
    from ssledu.train import fit

    torch.manual_seed(0)
    model = BertForPreTraining(tiny_config(len(word_tok)))
    data = mlm.unbatch(mlm.sop_pairs(_docs(8), word_tok, 16, seed=0))
    history = fit(
        model, data, collate_fn=mlm.mlm_collator(word_tok, seed=0), loss_fn=mlm.pretraining_loss,
        batch_size=8, max_steps=3, progress=False, live_plot=False, device="cpu",
    )
    rows = history.steps
    assert len(rows) == 3 and {"mlm_loss", "nsp_loss"} <= set(rows[0])
    assert rows[0]["loss"] == pytest.approx(rows[0]["mlm_loss"] + rows[0]["nsp_loss"], rel=1e-5)


CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the rug",
    "a bird flew over the tree",
    "the cat sat on the mat",
    "my fish swam in the bowl",
]


def test_tiny_bert_learns_and_fills_mask():
    tok = train_tokenizer(CORPUS, kind="word")
    V = len(tok)
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(V))
    examples = [[CLS, *tok(s)["input_ids"], SEP] for s in CORPUS] * 4  # 20 rows
    collate = mlm.mlm_collator(tok, 0.3, seed=0, model=model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        batch = collate(examples)
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(V)) < 0.1, (losses[0], math.log(V))
    assert sum(losses[-10:]) / 10 < losses[0] - 1.5, losses
    model.train()
    preds = mlm.fill_mask(model, tok, "the cat [MASK] on the [MASK]", k=3)
    assert model.training, "fill_mask restores the training mode"
    assert len(preds) == 2 and all(len(p) == 3 for p in preds)
    for cands in preds:
        probs = [p for _, p in cands]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
    assert preds[0][0][0] == "sat" and preds[1][0][0] == "mat", preds
    # Masked accuracy of the trained model on fresh masks is far above chance.
    model.eval()
    with torch.no_grad():
        batch = collate(examples)
        acc = mlm.masked_accuracy(model(**batch).logits, batch["labels"])
    assert acc > 0.5


def test_masked_accuracy_by_hand():
    logits = torch.tensor([[[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.3, 0.3, 0.4]]])  # (1, 3, 3)
    labels = torch.tensor([[1, 2, -100]])
    assert mlm.masked_accuracy(logits, labels) == 0.5  # right at 0, wrong at 1 (2nd choice)
    assert mlm.masked_accuracy(logits, labels, k=2) == 1.0
    assert math.isnan(mlm.masked_accuracy(logits, torch.full((1, 3), -100)))
    with pytest.raises(ValueError, match="k must be"):
        mlm.masked_accuracy(logits, labels, k=4)


# ------------------------------------------------------------------- bad input


def test_bad_input_messages(wp):
    ids = pad(random_rows(2, [5], len(wp)))
    for kwargs, pattern in [
        ({"mlm_probability": 1.5}, "mlm_probability must be a number in \\[0, 1\\]; got 1.5"),
        ({"mlm_probability": -0.1}, "mlm_probability"),
        ({"mask_replace_prob": 1.2}, "mask_replace_prob"),
        ({"mask_replace_prob": 0.8, "random_replace_prob": 0.3}, "must not exceed 1"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            mlm.mask_tokens(ids, wp, **kwargs)
        with pytest.raises(ValueError, match=pattern):
            mlm.MLMCollator(wp, **kwargs)
    from tokenizers import Tokenizer, models, pre_tokenizers

    raw = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "a": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    no_mask = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]")
    with pytest.raises(ValueError, match="no mask token"):
        mlm.mask_tokens([[2, 2]], no_mask)
    with pytest.raises(ValueError, match="no mask token"):
        mlm.mlm_collator(no_mask)
    model = BertForMaskedLM(tiny_config(len(wp), max_position_embeddings=8))
    collate = mlm.mlm_collator(wp, model=model)
    collate([list(range(10, 18))])  # 8 tokens fit
    with pytest.raises(ValueError, match="at most 8"):
        collate([list(range(10, 19))])
    with pytest.raises(ValueError, match="at most 8"):
        mlm.fill_mask(model, wp, "the quick brown fox jumps over [MASK] dog")
    with pytest.raises(ValueError, match="has no \\[MASK\\]"):
        mlm.fill_mask(model, wp, "the fox")
    with pytest.raises(ValueError, match="word_ids"):
        mlm.mlm_collator(wp, strategy="whole_word")([[CLS, 9, SEP]])
    with pytest.raises(ValueError, match="strategy"):
        mlm.mlm_collator(wp, strategy="span")


# ------------------------------------------------------------------ cloze scores


class _CountMasks(torch.nn.Module):
    """A stand-in model whose prediction everywhere is the number of [MASK]s in its row."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size
        self.config = BertConfig(vocab_size=vocab_size, max_position_embeddings=64)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        B, L = input_ids.shape
        n = (input_ids == MASK).sum(dim=1)  # (B,)
        logits = torch.zeros(B, L, self.vocab_size)
        logits[torch.arange(B), :, n] = 10.0
        from types import SimpleNamespace

        return SimpleNamespace(logits=logits)


def test_cloze_scores_mask_one_token_or_one_whole_word(wp):
    texts = ["unbelievable things happen", "extraordinary circumstances demand the fox"]
    enc = wp(texts)
    pieces = []
    for t in range(len(texts)):
        w = enc.word_ids(t)
        pieces += [w.count(x) for x in w]
    assert max(pieces) >= 3, "the vocabulary must split some words into several pieces"
    model = _CountMasks(len(wp))
    tokens = mlm.cloze_scores(model, wp, texts, batch_size=3)
    words = mlm.cloze_scores(model, wp, texts, whole_words=True, batch_size=4)
    n = sum(len(x) for x in enc["input_ids"])
    for out in (tokens, words):
        assert all(len(v) == n for v in out.values())
        assert out["target"] == [i for x in enc["input_ids"] for i in x]
        assert out["position"] == [i for x in enc["input_ids"] for i in range(len(x))]
        assert out["pieces"] == pieces
    assert tokens["predicted"] == [1] * n, "token masking hides exactly one token per copy"
    assert words["predicted"] == pieces, "whole-word masking hides every piece of the word"


def test_cloze_scores_equal_a_manual_forward_pass(word_tok):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config(len(word_tok)))
    model.train()
    texts = ["d0 s1 w0 w1", "d2 s0 w0"]
    out = mlm.cloze_scores(model, word_tok, texts, batch_size=2)
    assert model.training, "the training mode is restored"
    model.eval()
    ids = word_tok(texts[0], add_special_tokens=False)["input_ids"]
    row = torch.tensor([[CLS, *ids, SEP]])
    row[0, 3] = MASK  # the third token of the first text
    with torch.no_grad():
        logp = model(input_ids=row).logits[0, 3].log_softmax(-1)
    assert out["log_prob"][2] == pytest.approx(logp[ids[2]].item(), abs=1e-5)
    assert out["predicted"][2] == int(logp.argmax())
    assert out["correct"] == [p == t for p, t in zip(out["predicted"], out["target"])]
    assert out["text"] == [0, 0, 0, 0, 1, 1, 1]
    small = BertForMaskedLM(tiny_config(len(word_tok), max_position_embeddings=5))
    with pytest.raises(ValueError, match="at most 5"):
        mlm.cloze_scores(small, word_tok, texts)
    with pytest.raises(TypeError, match="list of strings"):
        mlm.cloze_scores(model, word_tok, "d0 s1")

"""Denoising objectives: BART's noises, T5 span corruption, ELECTRA and deletion prediction."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch
from transformers.models.bart.modeling_bart import shift_tokens_right

from ssledu import models
from ssledu.data import blocks, tokenize, toyworld
from ssledu.objectives import denoise


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def texts():
    return toyworld.generate_texts(200, seed=0)


@pytest.fixture(scope="module")
def tok(texts):
    return tokenize.train_tokenizer(texts, kind="word", sentinels=40)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def specials_of(seq, tok, ignore=()):
    special = set(tok.all_special_ids) - set(ignore)
    return [t for t in seq if t in special]


# --------------------------------------------------------------------------- infilling statistics


def _chi_square_pvalue(observed, expected, dof):
    try:
        from scipy.stats import chi2

        stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
        return float(chi2.sf(stat, dof))
    except ImportError:  # Wilson-Hilferty normal approximation of the chi-square tail
        stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
        z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
        return 0.5 * math.erfc(z / math.sqrt(2))


def _poisson_gof(lengths, lam):
    """p-value of a chi-square test of ``lengths`` against Poisson(lam), bins 0..8 and 9+."""
    n = len(lengths)
    pmf = [math.exp(-lam) * lam**k / math.factorial(k) for k in range(9)]
    expected = [n * p for p in pmf] + [n * (1 - sum(pmf))]
    observed = [sum(1 for x in lengths if x == k) for k in range(9)] + [sum(1 for x in lengths if x >= 9)]
    return _chi_square_pvalue(observed, expected, dof=len(expected) - 1)


def test_infilling_statistics_match_bart():
    g, n_words = gen(0), 997
    budget = math.ceil(0.3 * n_words)
    lengths = []
    for _ in range(20):
        spans = denoise.infilling_spans(n_words, generator=g)
        assert sum(n for _, n in spans) == budget  # exactly 30 % of the words (rounded up)
        # spans never overlap and stay inside the document
        ends = [first + n for first, n in spans]
        assert all(e <= f for e, (f, _) in zip(ends, spans[1:])) and ends[-1] <= n_words
        lengths += [n for _, n in spans[:-1]]  # the last span is cut to the budget
    assert len(lengths) > 1500
    assert _poisson_gof(lengths, 3.0) > 0.01, "span lengths are not Poisson(3)"
    assert _poisson_gof(lengths, 2.6) < 1e-4, "the test must be able to tell lambda=2.6 apart"
    insertions = sum(1 for x in lengths if x == 0) / len(lengths)
    assert 0.03 < insertions < 0.08  # P(0) = e^-3 = 0.050


def test_text_infilling_one_mask_per_span_and_mask_share(tok, texts):
    mask = tok.mask_token_id
    ids = blocks.encode_texts(tok, [" ".join(texts[:20])], add_bos=True)[0]
    n_words = len(ids) - 2
    g, insertions = gen(1), 0
    for _ in range(10):
        out, spans = denoise.text_infilling(ids, tok, generator=g, return_spans=True)
        masked = sum(n for _, n in spans)
        assert masked == math.ceil(0.3 * n_words)
        assert out.count(mask) == len(spans)  # ONE [MASK] per span, insertions included
        assert len(out) == len(ids) - masked + len(spans)
        insertions += sum(n == 0 for _, n in spans)
        # The kept tokens are the original minus the spans, in order.
        kept = [t for t in out if t != mask]
        gone = {1 + w for first, n in spans for w in range(first, first + n)}
        assert kept == [t for i, t in enumerate(ids) if i not in gone]
        # Each [MASK] stands where its span (or insertion) was: rebuild the original.
        rebuilt, it = [], iter(spans)
        for t in out:
            if t == mask:
                first, n = next(it)
                rebuilt += ids[1 + first: 1 + first + n]
            else:
                rebuilt.append(t)
        assert rebuilt == ids
    assert insertions > 0, "0-length spans insert a [MASK]"
    # word_ids: a span takes every piece of its words
    word_ids = [None] + [i // 2 for i in range(n_words)] + [None]
    out, spans = denoise.text_infilling(ids, tok, generator=gen(1), word_ids=word_ids, return_spans=True)
    assert len(out) == len(ids) - 2 * sum(n for _, n in spans) + len(spans)


def test_token_masking_and_deletion_counts(tok, texts):
    ids = blocks.encode_texts(tok, texts[:1], add_bos=True)[0]
    n = len(ids) - 2
    masked = denoise.token_masking(ids, tok, 0.3, generator=gen(0))
    assert len(masked) == len(ids) and masked.count(tok.mask_token_id) == math.ceil(0.3 * n)
    assert all(a == b for a, b in zip(masked, ids) if a != tok.mask_token_id)
    deleted = denoise.token_deletion(ids, tok, 0.3, generator=gen(0))
    assert len(deleted) == len(ids) - math.ceil(0.3 * n)
    it = iter(ids)
    assert all(t in it for t in deleted), "deletion keeps the order of the rest"


def test_permutation_and_rotation(tok, texts):
    ids = blocks.encode_texts(tok, texts[:1], add_bos=True)[0]
    stop = tok.convert_tokens_to_ids(".")

    def sentences(seq):
        out, cur = [], []
        for t in seq[1:-1]:
            cur.append(t)
            if t == stop:
                out.append(tuple(cur))
                cur = []
        return sorted(out + ([tuple(cur)] if cur else []))

    seen = set()
    offsets = set()
    body = ids[1:-1]
    g = gen(0)
    for _ in range(200):
        perm = denoise.sentence_permutation(ids, tok, generator=g)
        assert perm[0] == ids[0] and perm[-1] == ids[-1] and sentences(perm) == sentences(ids)
        seen.add(tuple(perm))
        rot = denoise.document_rotation(ids, tok, generator=g)
        k = next(k for k in range(len(body)) if body[k:] + body[:k] == rot[1:-1])
        offsets.add(k)
    assert len(seen) == math.factorial(len(sentences(ids)))  # every order occurs
    assert offsets == set(range(1, len(body)))  # offset in [1, n-1], never the identity


def test_special_tokens_never_corrupted(tok, texts):
    sep, bos, eos = tok.sep_token_id, tok.bos_token_id, tok.eos_token_id
    new = {tok.mask_token_id} | {tok.convert_tokens_to_ids(f"<extra_id_{k}>") for k in range(40)}
    g = gen(3)
    for text_a, text_b in zip(texts[:30], texts[30:60]):
        a, b = blocks.encode_texts(tok, [text_a, text_b], add_eos=False)
        ids = [bos, *a, sep, *b, eos]
        want = specials_of(ids, tok)
        outs = [denoise.bart_noise(ids, tok, (name,), generator=g) for name in denoise.NOISES]
        outs.append(denoise.bart_noise(ids, tok, denoise.NOISES, generator=g))
        t5 = denoise.span_corruption(ids, tok, generator=g)
        assert denoise.span_reconstruct(t5["input_ids"], t5["labels"], tok) == ids  # across [SEP] too
        outs.append(t5["input_ids"])
        outs.append(denoise.deletion_prediction(ids, tok, generator=g)["input_ids"])
        for out in outs:
            assert specials_of(out, tok, ignore=new) == want
            assert out[0] == bos and out[-1] == eos


def test_composition_follows_fairseq_order(tok, texts):
    ids = blocks.encode_texts(tok, texts[:1], add_bos=True)[0]
    g1, g2 = gen(5), gen(5)
    both = denoise.bart_noise(ids, tok, ("infill", "permute"), generator=g1)
    by_hand = denoise.text_infilling(denoise.sentence_permutation(ids, tok, generator=g2), tok, generator=g2)
    assert both == by_hand
    assert denoise.bart_noise(ids, tok, generator=gen(5)) == both  # the default is BART's recipe


# --------------------------------------------------------------------------- T5


def test_t5_lengths_published_values():
    assert denoise.t5_lengths(568) == (512, 114)
    assert denoise.t5_lengths(141) == (128, 29)
    assert denoise.t5_lengths(70) == (64, 14)
    assert [denoise.t5_raw_length(n) for n in (512, 128, 64)] == [568, 141, 70]


def test_span_corruption_lengths_round_trip_and_sentinels(tok):
    top = len(tok) - 1
    g = gen(0)
    for L in list(range(2, 80)) + [141, 200]:
        raw = torch.randint(7, top - 40, (L,), generator=g).tolist()
        out = denoise.span_corruption(raw, tok, generator=g)
        assert (len(out["input_ids"]), len(out["labels"])) == denoise.t5_lengths(L)
        assert denoise.span_reconstruct(out["input_ids"], out["labels"], tok) == raw + [tok.eos_token_id]
        sentinels = [t for t in out["labels"] if t > top - 40]
        assert sentinels == list(range(top, top - len(sentinels), -1))  # count down from the top
        assert [t for t in out["input_ids"] if t > top - 40] == sentinels


# --------------------------------------------------------------------------- batches, loss, training


@pytest.fixture(scope="module")
def bart_model(tok):
    torch.manual_seed(0)
    return models.bart(tok, "nano", dropout=0.0)


def test_collator_decoder_inputs_equal_transformers(tok, texts, bart_model):
    ids = blocks.encode_texts(tok, texts[:8], add_bos=True)
    for collate in (denoise.BARTCollator(tok, ("infill", "permute"), model=bart_model),
                    denoise.T5Collator(tok, model=bart_model)):
        batch = collate(ids)
        start = bart_model.config.decoder_start_token_id if isinstance(collate, denoise.BARTCollator) else 0
        ref = shift_tokens_right(batch["labels"], tok.pad_token_id, start)
        assert torch.equal(batch["decoder_input_ids"], ref)
        assert (batch["labels"] == -100).any(), "rows of different lengths are padded with -100"
    batch = denoise.BARTCollator(tok)(ids)
    real = batch["labels"] != -100
    assert [row[m].tolist() for row, m in zip(batch["labels"], real)] == ids  # labels = the original


def test_loss_by_hand_equals_nano_bart(tok, texts, bart_model):
    batch = denoise.BARTCollator(tok, seed=1, model=bart_model)(blocks.encode_texts(tok, texts[:6], add_bos=True))
    with torch.no_grad():
        ref = bart_model(**batch).loss
        logits = bart_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            decoder_input_ids=batch["decoder_input_ids"]).logits
        inner = bart_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           labels=batch["labels"]).loss  # the model shifts the labels itself
    assert torch.allclose(denoise.seq2seq_loss(logits, batch["labels"]), ref, atol=1e-6)
    assert torch.allclose(inner, ref, atol=1e-6)
    assert abs(ref.item() - math.log(len(tok))) < 0.5  # untrained: about ln |V|


def test_collator_state_and_fork(tok, texts):
    ids = blocks.encode_texts(tok, texts[:4], add_bos=True)
    for collate in (denoise.BARTCollator(tok, seed=2), denoise.T5Collator(tok, seed=2),
                    denoise.DeletionCollator(tok, seed=2)):
        state = collate.state_dict()
        first = collate(ids)
        twin = collate.fork(7)
        twin(ids)
        collate.load_state_dict(state)
        again = collate(ids)
        assert torch.equal(again["input_ids"], first["input_ids"])
        assert not torch.equal(collate(ids)["input_ids"], first["input_ids"])  # fresh noise per call


def test_nano_bart_loss_falls_with_fit_and_needs_the_encoder(tok):
    """Under fit the loss falls below what a decoder alone can reach, and only with the encoder's input.

    Random words: no language model predicts them (a decoder that ignores the encoder stays at
    ln 16 per word), so a loss below that floor needs the corrupted input; blanking the input
    (every token [MASK]) must cost the trained model that gain.
    """
    from ssledu.train import fit

    g = gen(0)
    special = set(tok.all_special_ids)
    words = torch.tensor([i for i in range(len(tok)) if i not in special][:16])
    data = [[tok.bos_token_id, *words[torch.randint(0, 16, (5,), generator=g)].tolist(), tok.eos_token_id]
            for _ in range(512)]
    torch.manual_seed(0)
    model = models.bart(tok, "nano", dropout=0.0, d_model=128, n_head=4, d_ff=256)
    history = fit(model, data, collate_fn=denoise.BARTCollator(tok, ("mask",), mask_p=0.15, model=model),
                  batch_size=32, lr=3e-3, max_steps=150, warmup_steps=10, progress=False, live_plot=False,
                  device="cpu")
    losses = [row["loss"] for row in history.steps]
    assert len(losses) == 150
    assert abs(losses[0] - math.log(len(tok))) < 0.5
    batch = denoise.BARTCollator(tok, ("mask",), mask_p=0.15, seed=1, model=model)(data[:128])
    blank = {**batch, "input_ids": torch.full_like(batch["input_ids"], tok.mask_token_id)}
    model.eval()
    with torch.no_grad():
        loss, blank_loss = float(model(**batch).loss), float(model(**blank).loss)
    floor = 5 * math.log(16) / 7  # 5 uniform words, then [EOS] and the decoder's end: nats per target token
    assert loss < floor - 0.15, (loss, floor)  # below what the decoder alone can do
    assert blank_loss > loss + 0.15, (loss, blank_loss)  # and the gain comes from the input


# --------------------------------------------------------------------------- ELECTRA


def test_rtd_inputs_and_labels():
    input_ids = torch.tensor([[5, 4, 9, 4, 6, 0]])  # [MASK]=4 at positions 1 and 3, pad at 5
    labels = torch.tensor([[-100, 11, -100, 12, -100, -100]])
    samples = torch.tensor([[0, 11, 0, 20, 0, 0]])  # position 1 sampled the original back
    out = denoise.rtd_inputs(input_ids, labels, samples=samples, attention_mask=torch.tensor([[1, 1, 1, 1, 1, 0]]))
    assert out["input_ids"].tolist() == [[5, 11, 9, 20, 6, 0]]
    assert out["labels"].tolist() == [[0, 0, 0, 1, 0, -100]]  # equal sample counts as original
    logits = torch.full((1, 6, 30), -1e4)
    logits[0, 1, 11] = logits[0, 3, 13] = 0.0  # the generator is sure
    out = denoise.rtd_inputs(input_ids, labels, logits=logits, generator=gen(0))
    assert out["input_ids"].tolist() == [[5, 11, 9, 13, 6, 0]] and out["labels"].tolist() == [[0, 0, 0, 1, 0, 0]]


def test_electra_loss_matches_transformers_and_weight():
    import transformers as tf

    config = tf.ElectraConfig(vocab_size=30, embedding_size=16, hidden_size=16, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)
    torch.manual_seed(0)
    disc = tf.ElectraForPreTraining(config).eval()
    ids = torch.randint(5, 30, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    d_labels = torch.randint(0, 2, (2, 8))
    with torch.no_grad():
        out = disc(input_ids=ids, attention_mask=mask, labels=d_labels)
    ours_labels = d_labels.masked_fill(mask == 0, -100)
    g_logits = torch.randn(2, 8, 30)
    g_labels = torch.full((2, 8), -100)
    g_labels[:, 2] = 7
    loss, parts = denoise.electra_loss(g_logits, g_labels, out.logits, ours_labels)
    assert torch.allclose(parts["discriminator_loss"], out.loss, atol=1e-6)
    gen_ref = torch.nn.functional.cross_entropy(g_logits[:, 2], g_labels[:, 2])
    assert torch.allclose(parts["generator_loss"], gen_ref, atol=1e-6)
    assert torch.allclose(loss, gen_ref + 50 * out.loss, atol=1e-5)  # lambda = 50 (ELECTRA)


# --------------------------------------------------------------------------- deletion prediction


def test_deletion_labels_mark_gaps(tok, texts):
    ids = blocks.encode_texts(tok, texts[:1], add_bos=True)[0]
    out = denoise.deletion_prediction(ids, tok, generator=gen(0))
    n = len(ids) - 2
    k = round(0.1 * n)
    assert len(out["input_ids"]) == len(ids) - k == len(out["labels"])
    it = iter(ids)
    assert all(t in it for t in out["input_ids"]), "the kept tokens keep their order"
    assert 1 <= sum(out["labels"]) <= k
    # The label sits on the token right after each run of deleted tokens.
    marked = denoise.deletion_targets([5, 10, 11, 12, 13, 14, 6], {1, 3, 4})
    assert marked == {"input_ids": [5, 11, 14, 6], "labels": [0, 1, 1, 0]}
    marked = denoise.deletion_targets([5, 10, 11, 6], {2})
    assert marked["labels"] == [0, 0, 1]  # a deletion before [EOS] is marked on [EOS]


@pytest.mark.parametrize("n,rate,closed", [(6, 0.34, True), (7, 0.3, False), (8, 0.5, True)])
def test_no_skill_accuracy_is_exact(n, rate, closed):
    k = min(max(round(rate * n), 1), n - 1)
    ids = [5, *range(10, 10 + n)] + ([6] if closed else [])
    accs = []
    for gone in combinations(range(1, n + 1), k):  # every equally likely deletion
        labels = denoise.deletion_targets(ids, set(gone))["labels"]
        accs.append(labels.count(0) / len(labels))
    exact = sum(accs) / len(accs)
    want = denoise.deletion_no_skill_accuracy(n, rate, n_special=1 + closed, closed=closed)
    assert want == pytest.approx(exact, abs=1e-12)


def test_no_skill_accuracy_matches_sampling(tok, texts):
    ids = blocks.encode_texts(tok, texts[:1], add_bos=True)[0]
    g, accs = gen(0), []
    for _ in range(400):
        labels = denoise.deletion_prediction(ids, tok, generator=g)["labels"]
        accs.append(labels.count(0) / len(labels))
    want = denoise.deletion_no_skill_accuracy(len(ids) - 2)
    assert abs(sum(accs) / len(accs) - want) < 0.004


# --------------------------------------------------------------------------- errors


class NoMask:
    """A tokenizer-like object without a mask token."""

    mask_token = None
    mask_token_id = None


@pytest.mark.parametrize("call,words", [
    (lambda t: denoise.text_infilling([5, 9, 6], t, p=1.5), ("p must", "(0, 1)", "got 1.5", "0.3")),
    (lambda t: denoise.text_infilling([5, 9, 6], t, poisson_lambda=0), ("poisson_lambda", "3")),
    (lambda t: denoise.text_infilling([], t), ("empty",)),
    (lambda t: denoise.token_masking([5, 9, 6], NoMask()), ("no mask token", "add_special_tokens")),
    (lambda t: denoise.span_corruption([7, 8, 9] * 20, tokenize.train_tokenizer(["a b c"], kind="word", sentinels=2)),
     ("sentinel", "has 2", "sentinels=")),
    (lambda t: denoise.bart_noise([5, 9, 6], t, ("shuffle",)), ("unknown noise", "infill")),
    (lambda t: denoise.electra_loss(torch.zeros(1, 2, 3), torch.zeros(1, 2).long(), torch.zeros(1, 2),
                                    torch.zeros(1, 2).long(), discriminator_weight=-1), ("discriminator_weight", "50")),
    (lambda t: denoise.BARTCollator(t)([]), ("non-empty",)),
])
def test_clear_errors(tok, call, words):
    with pytest.raises(ValueError) as err:
        call(tok)
    for w in words:
        assert w.lower() in str(err.value).lower(), err.value


def test_electra_step_end_to_end(tok, texts):
    from ssledu.objectives import mlm

    torch.manual_seed(0)
    generator = models.electra(tok, "nano", head="generator", d_model=32, n_head=1, dropout=0.0)
    discriminator = models.electra(tok, "nano", dropout=0.0)
    batch = mlm.MLMCollator(tok, seed=0, model=discriminator)(blocks.encode_texts(tok, texts[:8], add_bos=True))
    g_logits = generator(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    rtd = denoise.rtd_inputs(batch["input_ids"], batch["labels"], logits=g_logits, generator=gen(0),
                             attention_mask=batch["attention_mask"])
    d_logits = discriminator(input_ids=rtd["input_ids"], attention_mask=rtd["attention_mask"]).logits
    loss, parts = denoise.electra_loss(g_logits, batch["labels"], d_logits, rtd["labels"])
    loss.backward()
    assert generator.electra.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert discriminator.electra.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    # An untrained generator samples almost uniformly: nearly every masked position is replaced.
    masked = batch["labels"] != -100
    assert rtd["labels"][masked].float().mean() > 0.8
    assert (rtd["labels"][~masked & (batch["attention_mask"] == 1)] == 0).all()
    assert abs(parts["generator_loss"].item() - math.log(len(tok))) < 0.5

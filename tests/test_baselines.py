"""Baselines: n-gram language models and an LSTM with GPT's interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from ssledu.baselines import LSTMLanguageModel, NGramLM, lstm_matching, lstm_parameter_count
from ssledu.objectives import clm


def markov2_corpus(n_docs, doc_len, vocab=8, seed=0):
    """Documents [BOS=0] x1 .. x_doc_len from a random second-order Markov chain over ids
    1..vocab-1 that starts from the state (BOS, BOS); returns (docs, transition table)."""
    rng = np.random.default_rng(seed)
    trans = rng.dirichlet(np.full(vocab - 1, 0.3), size=(vocab, vocab))  # p(x | a, b)
    docs = []
    for _ in range(n_docs):
        doc = [0, 0]
        for _ in range(doc_len):
            doc.append(int(rng.choice(vocab - 1, p=trans[doc[-2], doc[-1]])) + 1)
        docs.append(doc[1:])
    return docs, trans


def exact_nll(docs, trans):
    """Mean -log p(x_t | x_{t-2}, x_{t-1}) under the true chain, over every token but BOS."""
    logs = [
        math.log(trans[s[i - 2], s[i - 1]][s[i] - 1])
        for d in docs
        for s in [[0] + d]
        for i in range(2, len(s))
    ]
    return -sum(logs) / len(logs)


# --- n-grams -------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_ngram_distributions_sum_to_one_and_match_log_prob(n, smoothing):
    docs, _ = markov2_corpus(30, 20, vocab=12, seed=n)
    lm = NGramLM(n, 15, smoothing=smoothing).fit(docs)  # ids 12..14 never seen
    rng = np.random.default_rng(0)
    for _ in range(20):
        context = rng.integers(0, 15, size=rng.integers(0, 5)).tolist()
        p = lm.next_distribution(context)
        assert p.shape == (15,) and p.sum() == pytest.approx(1.0, abs=1e-12)
        assert p.min() > 0  # smoothing never gives probability zero, even to unseen ids
        w = int(rng.integers(0, 15))
        assert math.log(p[w]) == pytest.approx(lm.log_prob(context, w), abs=1e-12)


def test_kneser_ney_bigram_matches_hand_computation():
    # bigrams scored: (0,1) (1,2) (2,1) (1,2) (2,3); D = 0.75, V = 5
    lm = NGramLM(2, 5).fit([[0, 1, 2, 1, 2, 3]])
    # continuation counts: 1 <- {0, 2}, 2 <- {1}, 3 <- {2}: total 4, 3 types
    uni = {
        w: (max(c - 0.75, 0) + 0.75 * 3 / 5) / 4 for w, c in {0: 0, 1: 2, 2: 1, 3: 1, 4: 0}.items()
    }
    assert uni[1] == pytest.approx(0.425)
    assert math.exp(lm.log_prob([1], 2)) == pytest.approx(
        (2 - 0.75 + 0.75 * 1 * uni[2]) / 2
    )  # 0.690625
    assert math.exp(lm.log_prob([2], 1)) == pytest.approx((1 - 0.75 + 0.75 * 2 * uni[1]) / 2)
    assert math.exp(lm.log_prob([4], 3)) == pytest.approx(uni[3])  # unseen history: back off
    total, n = lm.nll([[0, 1, 2]])
    assert n == 2 and total == pytest.approx(-lm.log_prob([0], 1) - lm.log_prob([0, 1], 2))


def test_unigram_is_close_to_relative_frequencies_and_add_k_is_exact():
    rng = np.random.default_rng(1)
    docs = [
        [0] + rng.choice(5, size=400, p=[0.05, 0.4, 0.3, 0.2, 0.05]).tolist() for _ in range(25)
    ]
    counts = np.bincount([w for d in docs for w in d[1:]], minlength=7).astype(float)
    N = counts.sum()
    kn = NGramLM(1, 7).fit(docs).next_distribution([])
    assert np.abs(kn - counts / N).max() < 1e-3
    addk = NGramLM(1, 7, smoothing="add-k", k=0.5).fit(docs).next_distribution([3, 4])
    np.testing.assert_allclose(addk, (counts + 0.5) / (N + 0.5 * 7), rtol=1e-12)


def test_bigram_on_a_deterministic_cycle_has_near_zero_nll():
    cycle = [1, 2, 3, 4, 5, 6]
    docs = [[0] + cycle * 50 for _ in range(4)]
    lm = NGramLM(2, 8).fit(docs)
    total, n = lm.nll([[0] + cycle * 10])
    assert n == 60 and total / n < 0.02
    uni_total, _ = NGramLM(1, 8).fit(docs).nll([[0] + cycle * 10])
    assert uni_total / n == pytest.approx(math.log(6), abs=0.02)


def test_trigram_kneser_ney_approaches_the_true_entropy_of_a_markov_source():
    docs, trans = markov2_corpus(240, 200)
    train, test = docs[:200], docs[200:]
    scores = {}
    for n in (1, 2, 3):
        for smoothing in ("kneser-ney", "add-k"):
            total, count = NGramLM(n, 8, smoothing=smoothing).fit(train).nll(test)
            scores[n, smoothing] = total / count
    assert scores[3, "kneser-ney"] < scores[2, "kneser-ney"] - 0.1 < scores[1, "kneser-ney"] - 0.2
    assert scores[3, "kneser-ney"] == pytest.approx(exact_nll(test, trans), abs=0.03)
    assert scores[3, "kneser-ney"] < scores[3, "add-k"]


def test_ngram_scores_the_same_tokens_as_the_neural_perplexity():
    docs, _ = markov2_corpus(5, 10)
    _, n = NGramLM(3, 8).fit(docs).nll(docs)
    model = LSTMLanguageModel(8, d_model=8, n_layer=1, dropout=0.0)
    assert n == clm.perplexity(model, docs)["n_tokens"] == sum(len(d) - 1 for d in docs)


def test_ngram_errors_say_what_to_do():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        NGramLM(2, 5).fit([[0, 9]])
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM(2, 5).nll([[0, 1]])
    with pytest.raises(ValueError, match="kneser-ney"):
        NGramLM(2, 5, smoothing="laplace")


# --- LSTM ----------------------------------------------------------------------------


def test_lstm_loss_is_cross_entropy_of_shifted_logits_and_pads_are_ignored():
    torch.manual_seed(0)
    model = LSTMLanguageModel(20, d_model=16, n_layer=2, dropout=0.3).eval()
    batch = clm.causal_lm_batch([[5, 7, 8, 9, 6], [5, 10, 6]], pad_id=0)
    out = model(**batch)
    assert out.logits.shape == (2, 5, 20)
    keep = batch["attention_mask"][:, 1:].bool()
    manual = F.cross_entropy(out.logits[:, :-1][keep], batch["input_ids"][:, 1:][keep])
    torch.testing.assert_close(out.loss, manual, rtol=0, atol=1e-6)
    # right padding does not change the real positions' logits
    alone = model(input_ids=torch.tensor([[5, 10, 6]])).logits
    torch.testing.assert_close(out.logits[1, :3], alone[0], rtol=0, atol=1e-6)
    assert model.head.weight is model.embed.weight


def test_lstm_cached_steps_equal_the_full_forward_and_generate_works():
    torch.manual_seed(0)
    model = LSTMLanguageModel(20, d_model=16, n_layer=2, dropout=0.0).eval()
    ids = torch.tensor([[5, 7, 8, 9, 10]])
    full = model(input_ids=ids).logits
    out = model(input_ids=ids[:, :2], use_cache=True)
    step = model(input_ids=ids[:, 2:3], past_key_values=out.past_key_values, use_cache=True)
    torch.testing.assert_close(step.logits[0, 0], full[0, 2], rtol=0, atol=1e-6)
    a = clm.generate(model, ids, 6, greedy=True)
    assert torch.equal(a, clm.generate(model, ids, 6, greedy=True, use_cache=False))


def test_lstm_learns_a_repeating_pattern():
    torch.manual_seed(0)
    V = 12
    model = LSTMLanguageModel(V, d_model=32, n_layer=1, dropout=0.0)
    pattern = [1, 2, 3, 4, 5, 6, 7, 8]
    data = torch.tensor([[0] + pattern * 2] * 4)
    batch = clm.causal_lm_batch(data, pad_id=0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
    losses = []
    for _ in range(30):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(V), abs=0.05)  # tiny init: uniform
    assert losses[-1] < 0.2  # every token but the first follows from the one before


def test_lstm_matching_is_within_ten_percent_of_a_gpt():
    for n_embd, n_layer, vocab in [(64, 2, 500), (128, 4, 2000), (32, 1, 100)]:
        cfg = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=2)
        gpt = GPT2LMHeadModel(cfg)
        target = sum(p.numel() for p in gpt.parameters())
        lstm = lstm_matching(gpt, vocab)
        got = sum(p.numel() for p in lstm.parameters())
        assert got == lstm_parameter_count(vocab, lstm.d_model, lstm.n_layer)
        assert abs(got - target) / target < 0.1
    assert lstm_matching(100_000, 50, n_layer=1).n_layer == 1
    with pytest.raises(ValueError, match="too few"):
        lstm_matching(1000, 5000)


def test_lstm_trains_with_the_course_trainer():
    train = pytest.importorskip("ssledu.train")
    torch.manual_seed(0)
    model = LSTMLanguageModel(12, d_model=32, n_layer=1, dropout=0.0)
    data = torch.tensor([[0] + [1, 2, 3, 4, 5, 6, 7, 8] * 3] * 16)
    history = train.fit(
        model,
        data,
        collate_fn=clm.clm_collator(0),
        batch_size=8,
        lr=3e-2,
        max_steps=8,
        progress=False,
        live_plot=False,
        device="cpu",
    )
    losses = [s["loss"] for s in history.steps]
    assert losses[0] == pytest.approx(math.log(12), abs=0.05) and losses[-1] < losses[0] - 0.2

"""Causal LM objective: batches, perplexity, sampling and the toyworld floor."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.modeling_outputs import CausalLMOutput

from ssledu.objectives import clm

V, BOS, EOS, PAD = 40, 5, 6, 0


def tiny_gpt(n_positions=32, seed=0, vocab_size=V):
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def gpt():
    return tiny_gpt()


def random_docs(n, lo, hi, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    return [torch.randint(7, V, (L,), generator=g).tolist() for L in lengths]


def brute_force_nll(model, doc, context=None):
    """-log p(doc[t] | doc[max(0, t - context + 1):t]) for t >= 1, one forward per token."""
    out = []
    with torch.no_grad():
        for t in range(1, len(doc)):
            start = 0 if context is None else max(0, t - context + 1)
            logits = model(input_ids=torch.tensor([doc[start:t]])).logits[0, -1]
            out.append(-F.log_softmax(logits.float(), -1)[doc[t]].item())
    return out


# --- batches -------------------------------------------------------------------------


def test_batch_labels_are_unshifted_inputs_with_padding_ignored():
    b = clm.causal_lm_batch([[BOS, 7, 8, 9, EOS], [BOS, 10, 11]], pad_id=PAD)
    assert b["input_ids"].tolist() == [[5, 7, 8, 9, 6], [5, 10, 11, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert b["labels"].tolist() == [[5, 7, 8, 9, 6], [5, 10, 11, -100, -100]]


def test_gpt2_loss_on_batch_equals_cross_entropy_of_shifted_logits(gpt):
    batch = clm.causal_lm_batch(random_docs(4, 3, 12), pad_id=PAD)
    out = gpt(**batch)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    keep = mask[:, 1:].bool()
    manual = F.cross_entropy(out.logits[:, :-1][keep], ids[:, 1:][keep])
    torch.testing.assert_close(out.loss, manual, rtol=0, atol=1e-6)
    inputs, targets = clm.shift_for_next_token(ids)
    assert torch.equal(inputs, ids[:, :-1]) and torch.equal(targets, ids[:, 1:])
    # Pre-shifted labels get shifted again: the model would learn to predict 2 tokens ahead.
    wrong = gpt(
        input_ids=ids, attention_mask=mask, labels=F.pad(batch["labels"][:, 1:], (0, 1), value=-100)
    ).loss
    keep2 = mask[:, 2:].bool()
    torch.testing.assert_close(
        wrong, F.cross_entropy(out.logits[:, :-2][keep2], ids[:, 2:][keep2]), rtol=0, atol=1e-6
    )


def test_pad_equal_to_eos_keeps_the_real_eos_label():
    b = clm.causal_lm_batch([[BOS, 7, EOS], [BOS, 8, 9, 10, EOS]], pad_id=EOS)
    assert b["labels"][0].tolist() == [BOS, 7, EOS, -100, -100]
    assert b["labels"][1, -1].item() == EOS


def test_batch_accepts_blocks_dicts_and_truncates_and_collator_pickles():
    blocks = torch.arange(12).view(3, 4) + 7
    b = clm.causal_lm_batch(blocks, pad_id=PAD)
    assert torch.equal(b["labels"], blocks) and b["attention_mask"].all()
    b = clm.causal_lm_batch(
        [{"input_ids": [7, 8, 9]}, {"input_ids": torch.tensor([10])}], pad_id=PAD, max_length=2
    )
    assert b["input_ids"].tolist() == [[7, 8], [10, 0]]
    collate = pickle.loads(pickle.dumps(clm.clm_collator(PAD, max_length=3)))
    assert collate([[7, 8, 9, 10]])["input_ids"].tolist() == [[7, 8, 9]]
    with pytest.raises(ValueError, match="empty"):
        clm.causal_lm_batch([[7], []], pad_id=PAD)


def test_pack_documents_appends_one_eos_per_document():
    docs = [[7, 8, 9], [10, 11, EOS], [12, 13, 14, 15]]
    packed = clm.pack_documents(docs, 4, eos_id=EOS)
    assert packed.tolist() == [[7, 8, 9, EOS], [10, 11, EOS, 12], [13, 14, 15, EOS]]
    rows = clm.pack_documents(docs + [[16, 17, 18, 19]], 3, eos_id=EOS, respect_documents=True)
    # one document per row, one-token leftovers ([EOS] alone) dropped
    assert rows == [[7, 8, 9], [10, 11, EOS], [12, 13, 14], [15, EOS], [16, 17, 18], [19, EOS]]
    with pytest.raises(ValueError, match="block_size"):
        clm.pack_documents(docs, 1, eos_id=EOS)


# --- evaluation ----------------------------------------------------------------------


def test_per_position_nll_matches_token_by_token_and_ignores_padding(gpt):
    docs = random_docs(3, 2, 9, seed=1)
    b = clm.causal_lm_batch(docs, pad_id=PAD)
    with torch.no_grad():
        nll = clm.per_position_nll(gpt, b["input_ids"], b["attention_mask"])
    for i, doc in enumerate(docs):
        assert nll[i, 0] == 0 and (nll[i, len(doc) :] == 0).all()
        torch.testing.assert_close(
            nll[i, 1 : len(doc)], torch.tensor(brute_force_nll(gpt, doc)), rtol=0, atol=1e-5
        )


def test_perplexity_equals_brute_force_and_bos_adds_one_scored_token(gpt):
    docs = random_docs(5, 2, 15, seed=2)
    ref = [x for d in docs for x in brute_force_nll(gpt, d)]
    r = clm.perplexity(gpt, docs, batch_size=2)
    assert r["n_tokens"] == sum(len(d) - 1 for d in docs) == len(ref)
    assert r["nll"] == pytest.approx(sum(ref) / len(ref), abs=1e-6)
    assert r["ppl"] == pytest.approx(math.exp(r["nll"]), rel=1e-12)
    with_bos = clm.perplexity(gpt, [[BOS] + d for d in docs])
    assert with_bos["n_tokens"] == r["n_tokens"] + len(docs)
    ref_bos = [x for d in docs for x in brute_force_nll(gpt, [BOS] + d)]
    assert with_bos["nll"] == pytest.approx(sum(ref_bos) / len(ref_bos), abs=1e-6)


def test_sliding_window_scores_each_token_once_with_the_longest_context(gpt):
    doc = random_docs(1, 30, 30, seed=3)[0]
    ctx = 8
    # stride 1: every token t is scored with the ctx - 1 tokens before it (or all of them)
    ref = brute_force_nll(gpt, doc, context=ctx)
    r = clm.perplexity(gpt, [doc], context=ctx, stride=1)
    assert r["n_tokens"] == len(doc) - 1
    assert r["nll"] == pytest.approx(sum(ref) / len(ref), abs=1e-6)
    # the default stride (ctx // 2) also scores every token but the first
    assert clm.perplexity(gpt, doc, context=ctx)["n_tokens"] == len(doc) - 1
    # stride == context: the same as scoring non-overlapping chunks one by one
    chunks = [doc[i : i + ctx] for i in range(0, len(doc), ctx)]
    whole = clm.perplexity(gpt, [doc], context=ctx, stride=ctx)
    apart = clm.perplexity(gpt, chunks)
    assert whole["n_tokens"] == apart["n_tokens"] == len(doc) - len(chunks)
    assert whole["nll"] == pytest.approx(apart["nll"], abs=1e-6)
    # the model's own n_positions is the default context: no window needed here
    assert clm.perplexity(gpt, doc)["nll"] == pytest.approx(
        sum(brute_force_nll(gpt, doc)) / 29, abs=1e-6
    )


# --- sampling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "temperature,top_k,top_p",
    [
        (1.0, 0, 1.0),
        (0.7, 0, 1.0),
        (1.0, 5, 1.0),
        (1.0, 0, 0.9),
        (1.3, 8, 0.5),
        (0.5, 3, 0.95),
        (2.0, 0, 0.01),
    ],
)
def test_filter_logits_equals_transformers_warpers(temperature, top_k, top_p):
    g = torch.Generator().manual_seed(top_k + int(100 * top_p))
    logits = torch.randn(16, 50, generator=g) * 3
    ids = torch.zeros(16, 1, dtype=torch.long)
    ref = logits.clone()
    if temperature != 1.0:
        ref = TemperatureLogitsWarper(temperature)(ids, ref)
    if top_k:
        ref = TopKLogitsWarper(top_k)(ids, ref)
    if top_p < 1.0:
        ref = TopPLogitsWarper(top_p)(ids, ref)
    ours = clm.filter_logits(logits, temperature, top_k, top_p)
    assert torch.equal(ours, ref)


def test_top_p_keeps_the_smallest_set_reaching_p():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 30, generator=g) * 2
    for p in (0.0, 0.3, 0.8):
        kept = torch.isfinite(clm.filter_logits(logits, top_p=p))
        probs = logits.softmax(-1)
        assert (kept.sum(-1) >= 1).all()
        mass = (probs * kept).sum(-1)
        assert (mass >= p - 1e-6).all()
        # dropping the least likely kept token would fall below p: the set is minimal
        smallest = torch.where(kept, probs, torch.inf).min(-1).values
        assert ((mass - smallest < p + 1e-6) | (kept.sum(-1) == 1)).all()
        # and it is a top set: every kept token is at least as likely as every dropped one
        dropped_max = torch.where(kept, -torch.inf, probs).max(-1).values
        assert (smallest >= dropped_max).all()
    assert (torch.isfinite(clm.filter_logits(logits, top_p=0.0)).sum(-1) == 1).all()
    with pytest.raises(ValueError, match="greedy"):
        clm.filter_logits(logits, temperature=0)


def test_sample_next_follows_the_filtered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    draws = clm.sample_next(logits, temperature=0.8, top_k=4, generator=g)
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    target = clm.filter_logits(logits[:1], 0.8, 4).softmax(-1)[0].double()
    assert freq[4:].sum() == 0  # outside the top 4: never drawn
    assert (freq - target).abs().max() < 0.012  # 4 standard errors at n = 20000
    again = clm.sample_next(
        logits, temperature=0.8, top_k=4, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(draws, again)
    assert torch.equal(clm.sample_next(logits[:2], greedy=True), torch.tensor([0, 0]))


def test_generate_matches_model_generate_greedy_and_sampling(gpt):
    prompt = torch.tensor([[BOS, 7, 8, 9], [BOS, 20, 21, 22]])
    ones = torch.ones_like(prompt)
    common = dict(max_new_tokens=15, eos_token_id=None, pad_token_id=PAD, attention_mask=ones)
    ours = clm.generate(gpt, prompt, 15, greedy=True)
    assert torch.equal(ours, gpt.generate(prompt, do_sample=False, **common))
    assert torch.equal(ours, clm.generate(gpt, prompt, 15, greedy=True, use_cache=False))
    for t, k, p in [(1.0, 0, 1.0), (0.7, 5, 0.9)]:
        torch.manual_seed(11)
        ours = clm.generate(gpt, prompt, 15, temperature=t, top_k=k, top_p=p)
        torch.manual_seed(11)
        ref = gpt.generate(prompt, do_sample=True, temperature=t, top_k=k, top_p=p, **common)
        assert torch.equal(ours, ref)
    a = clm.generate(gpt, prompt[0], 10, seed=3)
    assert a.shape == (14,) and torch.equal(a, clm.generate(gpt, prompt[0], 10, seed=3))
    assert not torch.equal(a, clm.generate(gpt, prompt[0], 10, seed=4))
    with pytest.raises(ValueError, match="context of 32"):
        clm.generate(gpt, prompt, 29)
    assert not gpt.training



def test_sliding_generate_matches_a_cropping_loop_and_the_cached_loop():
    model = tiny_gpt(n_positions=8, seed=2)
    prompt = torch.tensor([[BOS, 7, 8]])
    ours = clm.generate(model, prompt, 12, greedy=True, sliding=True)
    assert ours.shape == (1, 15)
    ids = prompt
    with torch.no_grad():
        for _ in range(12):  # crop to the trained positions (context - 1), take the argmax
            nxt = model(input_ids=ids[:, -7:]).logits[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
    assert torch.equal(ours, ids)
    # within the context it is the cached loop; a prompt longer than the context works too
    assert torch.equal(ours[:, :8], clm.generate(model, prompt, 5, greedy=True))
    long = clm.generate(model, ids, 3, greedy=True, sliding=True)
    assert torch.equal(long[:, :15], ids) and long.shape == (1, 18)
    with pytest.raises(ValueError, match="sliding=True"):
        clm.generate(model, prompt, 12, greedy=True)



def test_suppressed_ids_are_never_generated_and_match_model_generate(gpt):
    prompt = torch.tensor([[BOS, 7, 8, 9]])
    greedy = clm.generate(gpt, prompt, 10, greedy=True)
    banned = sorted(set(greedy[0, 4:].tolist()))  # everything the model chose greedily
    out = clm.generate(gpt, prompt, 10, greedy=True, suppress_ids=banned)
    assert not set(out[0, 4:].tolist()) & set(banned)
    common = dict(max_new_tokens=10, eos_token_id=None, pad_token_id=PAD,
                  attention_mask=torch.ones_like(prompt), suppress_tokens=banned)
    assert torch.equal(out, gpt.generate(prompt, do_sample=False, **common))
    torch.manual_seed(4)
    ours = clm.generate(gpt, prompt, 10, temperature=1.5, top_p=0.9, suppress_ids=banned)
    torch.manual_seed(4)
    ref = gpt.generate(prompt, do_sample=True, temperature=1.5, top_k=0, top_p=0.9, **common)
    assert torch.equal(ours, ref)
    # a model sure of one token must pick another when that token is suppressed
    sure = clm.generate(_Scripted([9]), torch.tensor([[BOS]]), 3, seed=0, use_cache=False,
                        suppress_ids=[9])
    assert 9 not in sure[0].tolist()



def test_training_on_full_blocks_never_trains_the_last_position():
    # Why sliding generation keeps n_positions - 1 tokens: nothing follows the last token of
    # a block, so its prediction has no loss and its position embedding gets no gradient.
    model = tiny_gpt(n_positions=8).train()
    blocks = torch.randint(7, V, (4, 8), generator=torch.Generator().manual_seed(0))
    model(**clm.causal_lm_batch(blocks, pad_id=PAD)).loss.backward()
    grad = model.transformer.wpe.weight.grad  # (8, d)
    assert grad[7].abs().max() == 0 and grad[:7].abs().amax(-1).min() > 0


class _WindowSum(torch.nn.Module):
    """Predicts (sum of the ids it reads up to t) mod V: every token of the window counts."""

    def __init__(self, n_positions):
        super().__init__()
        self.config = GPT2Config(n_positions=n_positions)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, **kw):
        assert input_ids.shape[1] <= self.config.n_positions, "read past the context"
        target = input_ids.cumsum(dim=1) % V  # (B, L)
        return CausalLMOutput(logits=F.one_hot(target, V).float() * 10)


def test_sliding_generate_reads_exactly_the_last_context_minus_one_tokens():
    model = _WindowSum(n_positions=4)
    out = clm.generate(model, torch.tensor([BOS, 7]), 6, greedy=True, use_cache=False, sliding=True)
    expected = [BOS, 7]
    for _ in range(6):  # never more than 3 = n_positions - 1 tokens: the last position is untrained
        expected.append(sum(expected[-3:]) % V)
    assert out.tolist() == expected


class _Scripted(torch.nn.Module):
    """Emits a fixed next token per sequence: row b always predicts script[b]."""

    def __init__(self, script):
        super().__init__()
        self.script = torch.tensor(script)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, **kw):
        logits = torch.full((*input_ids.shape, V), -10.0)
        logits[torch.arange(len(self.script)), :, self.script] = 10.0
        return CausalLMOutput(logits=logits)


def test_generate_stops_at_eos_and_fills_finished_rows():
    model = _Scripted([EOS, 9])
    out = clm.generate(
        model, torch.tensor([[BOS], [BOS]]), 4, greedy=True, eos_id=EOS, use_cache=False
    )
    assert out.tolist() == [[BOS, EOS, EOS, EOS, EOS], [BOS, 9, 9, 9, 9]]
    out = clm.generate(
        _Scripted([EOS]), torch.tensor([[BOS, 7]]), 4, greedy=True, eos_id=EOS, use_cache=False
    )
    assert out.tolist() == [[BOS, 7, EOS]]  # everyone finished: the loop ends early


def test_next_token_distribution_is_the_softmax_after_bos_and_prompt():
    tokenize = pytest.importorskip("ssledu.data.tokenize")
    tok = tokenize.train_tokenizer(["the cat sat on the mat", "a dog sat"], kind="word")
    model = tiny_gpt(vocab_size=len(tok))
    top = clm.next_token_distribution(model, tok, "the cat", k=4)
    ids = [tok.bos_token_id] + tok("the cat", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits[0, -1].softmax(-1)
    best = probs.topk(4)
    assert [t for t, _ in top] == tok.convert_ids_to_tokens(best.indices.tolist())
    assert [p for _, p in top] == pytest.approx(best.values.tolist(), abs=1e-6)


class _Uniform(torch.nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, **kw):
        return CausalLMOutput(logits=torch.zeros(*input_ids.shape, self.vocab_size))


# --- the toyworld floor --------------------------------------------------------------


class _Oracle(torch.nn.Module):
    """Puts probability exp(-floor) on each true next word and spreads the rest evenly."""

    def __init__(self, table, vocab_size):
        super().__init__()
        self.table, self.vocab_size = table, vocab_size
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, **kw):
        B, L = input_ids.shape
        logits = torch.zeros(B, L, self.vocab_size)
        for b in range(B):
            n = int(attention_mask[b].sum())
            floors = self.table[tuple(input_ids[b, :n].tolist())]
            for t in range(n - 1):
                p = math.exp(-floors[t])
                rest = (1 - p) / (self.vocab_size - 1)
                logits[b, t] = math.log(max(rest, 1e-30))
                logits[b, t, input_ids[b, t + 1]] = math.log(p)
        return CausalLMOutput(logits=logits)


def test_compare_to_floor_is_exact_for_an_oracle_and_log_v_for_uniform():
    toyworld = pytest.importorskip("ssledu.data.toyworld")
    tokenize = pytest.importorskip("ssledu.data.tokenize")
    texts = toyworld.generate_texts(12, seed=0)
    tok = tokenize.train_tokenizer(texts, kind="word")
    table = {}
    for text in texts:
        ids = (
            [tok.bos_token_id]
            + tok(text, add_special_tokens=False)["input_ids"]
            + [tok.eos_token_id]
        )
        table[tuple(ids)] = toyworld.word_nlls(text)
    floor = [x for t in texts for x in toyworld.word_nlls(t)]
    kinds = [k for t in texts for k in list(toyworld.position_kinds(t)) + ["eos"]]

    r = clm.compare_to_floor(_Oracle(table, len(tok)), tok, texts, batch_size=5)
    assert r["n_tokens"] == len(floor) == sum(len(t.split()) + 1 for t in texts)
    assert r["floor_nll"] == pytest.approx(sum(floor) / len(floor), abs=1e-9)
    assert r["floor_nll"] == pytest.approx(toyworld.bayes_floor(texts), abs=1e-9)
    assert r["model_nll"] == pytest.approx(r["floor_nll"], abs=1e-5) and abs(r["gap"]) < 1e-5
    for kind, row in r["by_kind"].items():
        sel = [f for f, k in zip(floor, kinds) if k == kind]
        assert row["n_tokens"] == len(sel) and row["floor_nll"] == pytest.approx(
            sum(sel) / len(sel), abs=1e-9
        )
        assert row["model_nll"] == pytest.approx(row["floor_nll"], abs=1e-5)
    assert set(r["by_kind"]) == {"backward_copy", "forward_copy", "free", "eos"}
    assert r["by_kind"]["backward_copy"]["accuracy"] == 1.0  # probability 1: the oracle's argmax

    u = clm.compare_to_floor(_Uniform(len(tok)), tok, texts)
    assert u["model_nll"] == pytest.approx(math.log(len(tok)), abs=1e-5)
    assert u["gap"] > 0 and u["accuracy"] == 0.0  # the argmax of all-zero logits is [PAD]


def test_compare_to_floor_rejects_a_subword_tokenizer():
    toyworld = pytest.importorskip("ssledu.data.toyworld")
    tokenize = pytest.importorskip("ssledu.data.tokenize")
    texts = toyworld.generate_texts(4, seed=0)
    tok = tokenize.train_tokenizer(texts, kind="char")
    with pytest.raises(ValueError, match="kind='word'"):
        clm.compare_to_floor(tiny_gpt(vocab_size=len(tok)), tok, texts)

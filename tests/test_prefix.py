"""Tests for ssledu.objectives.prefix: masks, leak checks, prefix-LM batches, UniLM mixture,
generation from a prefix, and the permutation-LM sidebar."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel, GPT2Config, GPT2Model

from ssledu.objectives import prefix as px

KINDS = ("bidirectional", "causal", "prefix", "seq2seq", "right_to_left")


# ---------------------------------------------------------------- fixtures and shared functions

@pytest.fixture(scope="module")
def tokenizer():
    from ssledu.data.tokenize import train_tokenizer

    texts = ["the cat sat on the mat .", "a dog ran to the red ball .", "the bird sang ."]
    return train_tokenizer(texts, kind="word")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_bert(attn, vocab_size=24, layers=2, cls=BertModel, seed=0, dropout=0.1):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                     attn_implementation=attn)
    return cls(cfg).eval()


def brute_force_allowed(kind, am, P=None):
    """Nested-loop reference: (B, L, L) bool, True = query i may attend key j."""
    B, L = am.shape
    out = torch.zeros(B, L, L, dtype=torch.bool)
    for b in range(B):
        for i in range(L):
            for j in range(L):
                if not am[b, i]:
                    out[b, i, j] = i == j  # padded query: only itself
                    continue
                if not am[b, j]:
                    continue
                if kind == "bidirectional":
                    ok = True
                elif kind == "causal":
                    ok = j <= i
                elif kind == "right_to_left":
                    ok = j >= i
                else:  # prefix / seq2seq
                    ok = j < P[b] or j <= i
                out[b, i, j] = ok
    return out


def right_padded(lengths, L):
    return (torch.arange(L)[None] < torch.tensor(lengths)[:, None]).long()


def make_mask(kind, am, P, dtype=torch.float32):
    if kind in ("prefix", "seq2seq"):
        return px.build_mask(kind, am, prefix_lengths=P, dtype=dtype)
    return px.build_mask(kind, am, dtype=dtype)


# ---------------------------------------------------------------- mask values

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", KINDS)
def test_mask_values_match_brute_force(kind, dtype):
    am = right_padded([7, 4, 1], 7)
    P = torch.tensor([3, 2, 1])
    mask = make_mask(kind, am, P, dtype)
    assert mask.shape == (3, 1, 7, 7) and mask.dtype == dtype
    ref = brute_force_allowed(kind, am, P)
    expected = torch.where(ref, torch.tensor(0.0, dtype=dtype), torch.tensor(torch.finfo(dtype).min, dtype=dtype))
    assert torch.equal(mask[:, 0], expected)
    assert torch.equal(px.allowed(mask), ref)
    assert px.allowed(mask).any(-1).all()  # no empty row, hence no NaN


def test_prefix_mask_spans_causal_to_bidirectional_and_equals_seq2seq():
    am = torch.ones(2, 6, dtype=torch.long)
    assert torch.equal(px.prefix_mask(am, 0), px.causal_mask(am))
    assert torch.equal(px.prefix_mask(am, 1), px.causal_mask(am))  # j < 1 adds nothing beyond j <= i
    assert torch.equal(px.prefix_mask(am, 6), px.bidirectional_mask(am))
    assert torch.equal(px.seq2seq_mask(am, [2, 4]), px.prefix_mask(am, torch.tensor([2, 4])))
    a = px.allowed(px.prefix_mask(am, 3))[0]
    assert a[0, 2] and not a[0, 3]  # first token sees the whole prefix but not the completion
    assert a[4, 4] and not a[4, 5]


def test_allowed_accepts_boolean_and_checks_shape():
    b = torch.ones(1, 3, 3, dtype=torch.bool).tril()
    assert torch.equal(px.allowed(b[:, None]), b)
    with pytest.raises(ValueError, match="mask"):
        px.allowed(torch.zeros(1, 2, 3, 3))


def test_bad_inputs_raise_clear_errors():
    am = right_padded([5, 3], 5)
    with pytest.raises(ValueError, match="unknown mask kind 'diagonal'"):
        px.build_mask("diagonal", am)
    with pytest.raises(ValueError, match="needs prefix_lengths"):
        px.build_mask("prefix", am)
    with pytest.raises(ValueError, match="example 1 has prefix length 4 but only 3"):
        px.prefix_mask(am, [2, 4])
    with pytest.raises(ValueError, match="one entry per example"):
        px.prefix_mask(am, [1, 2, 3])
    with pytest.raises(ValueError, match="right padding"):
        px.prefix_mask(torch.tensor([[0, 1, 1]]), 1)
    with pytest.raises(ValueError, match="shape \\(B, L\\)"):
        px.causal_mask(torch.ones(5))
    with pytest.raises(ValueError, match="only 0"):
        px.causal_mask(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="floating dtype"):
        px.causal_mask(am, dtype=torch.long)
    ids = torch.arange(10).reshape(2, 5)
    for P in (0, 5, [1, 3]):  # 0: empty prefix; 5 = L: empty completion; 3 >= real length 3 of row 1
        with pytest.raises(ValueError, match="prefix length must be in \\[1, real length - 1\\]"):
            px.prefix_lm_batch(ids, am, prefix_lengths=P)
    with pytest.raises(ValueError, match="does not match"):
        px.prefix_lm_batch(ids, am[:, :4])
    with pytest.raises(ValueError, match="no separator"):
        px.prefix_lm_batch(ids, separator_id=99)
    with pytest.raises(ValueError, match="at least 2 real tokens"):
        px.prefix_lm_batch(ids, right_padded([5, 1], 5))
    with pytest.raises(ValueError, match="right padding"):
        px.unilm_batch("right_to_left", ids, torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="unknown mask kind"):
        px.UniLMMixture(kinds=("causal", "sideways"))
    with pytest.raises(ValueError, match="pass tokenizer"):
        px.UniLMMixture(kinds=("bidirectional",))


# ---------------------------------------------------------------- leak tests

def perturbation_effects(model, ids_row, mask_row, vocab_size):
    """For one example, change each position j in turn; return (L, L) bool 'query i changed
    when token j changed' and the max |h| (to check finiteness). All in ONE forward pass."""
    L = ids_row.numel()
    batch = ids_row.repeat(L + 1, 1)  # row 0 original, row 1 + j perturbed at j
    for j in range(L):
        batch[1 + j, j] = 5 + (int(ids_row[j]) - 5 + 7) % (vocab_size - 5)
    assert (batch[1:].diagonal() != ids_row).all()
    with torch.no_grad():
        h = model(input_ids=batch, attention_mask=mask_row.expand(L + 1, -1, -1, -1)).last_hidden_state
    assert torch.isfinite(h).all()
    diff = (h[1:] - h[:1]).abs().amax(-1)  # (L perturbed j, L query i)
    return diff.T, diff  # (i, j)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_no_leak_every_mask_kind(attn):
    V = 24
    model = tiny_bert(attn, V)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (2, 8), generator=g)
    am = right_padded([8, 5], 8)
    ids[1, 5:] = 0
    P = torch.tensor([3, 2])
    for kind in KINDS:
        mask = make_mask(kind, am, P)
        ok = px.allowed(mask)
        for b in range(2):
            diff, _ = perturbation_effects(model, ids[b], mask[b : b + 1], V)
            # a token a position may not see leaves it bit-for-bit unchanged ...
            assert torch.equal(diff[~ok[b]], torch.zeros_like(diff[~ok[b]])), (attn, kind, b)
            # ... and every token it may see does change it
            assert (diff[ok[b]] > 1e-6).all(), (attn, kind, b)


def test_boolean_4d_mask_leaks_under_eager_but_not_sdpa():
    """The transformers 5 trap: a boolean 4D mask is added as 1/0 under eager attention."""
    V = 24
    ids = torch.randint(5, V, (1, 6), generator=torch.Generator().manual_seed(1))
    bool_causal = px.allowed(px.causal_mask(torch.ones_like(ids)))[:, None]  # (1, 1, 6, 6) True = allowed
    leaks = {}
    for attn in ("eager", "sdpa"):
        diff, _ = perturbation_effects(tiny_bert(attn, V), ids[0], bool_causal, V)
        future = ~bool_causal[0, 0]
        leaks[attn] = float(diff[future].max())
    assert leaks["eager"] > 1e-4  # position i reacts to a later token: the causal mask is gone
    assert leaks["sdpa"] == 0.0


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_gpt2_4d_prefix_mask_replaces_its_causal_mask(attn):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=24, n_embd=16, n_layer=2, n_head=2, n_positions=16, bos_token_id=5,
                     eos_token_id=6, attn_implementation=attn)
    model = GPT2Model(cfg).eval()
    ids = torch.randint(5, 24, (7,), generator=torch.Generator().manual_seed(2))
    mask = px.prefix_mask(torch.ones(1, 7), 3)
    diff, _ = perturbation_effects(model, ids, mask, 24)
    ok = px.allowed(mask)[0]
    assert torch.equal(diff[~ok], torch.zeros_like(diff[~ok]))
    assert (diff[ok] > 1e-6).all()
    assert diff[0, 2] > 0  # position 0 sees a LATER prefix token: GPT-2's own causal mask is replaced


# ---------------------------------------------------------------- prefix-LM batches

def test_prefix_lm_batch_labels_are_shifted_completion_tokens():
    ids = torch.tensor([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 0, 0]])
    am = right_padded([6, 4], 6)
    out = px.prefix_lm_batch(ids, am, prefix_lengths=[2, 3])
    assert set(out) == {"input_ids", "attention_mask", "labels", "prefix_lengths"}
    assert out["labels"].tolist() == [[-100, 12, 13, 14, 15, -100], [-100, -100, 23, -100, -100, -100]]
    assert out["prefix_lengths"].tolist() == [2, 3]
    assert torch.equal(out["attention_mask"], px.prefix_mask(am, [2, 3]))
    # the predicted tokens are exactly the completion tokens
    for b, (P, n) in enumerate([(2, 6), (3, 4)]):
        lab = out["labels"][b]
        assert lab[lab != -100].tolist() == ids[b, P:n].tolist()
    # the crux: no labelled position can see the token it must predict (position i -> token i + 1)
    ok = px.allowed(out["attention_mask"])
    for b, i in (out["labels"] != -100).nonzero().tolist():
        assert not ok[b, i, i + 1]
        assert ok[b, i, : i + 1].all()  # while everything before its target is visible


def test_prefix_lm_batch_separator_and_random_split():
    ids = torch.tensor([[9, 9, 3, 8, 8, 8], [9, 3, 8, 8, 0, 0]])
    am = right_padded([6, 4], 6)
    out = px.prefix_lm_batch(ids, am, separator_id=3)
    assert out["prefix_lengths"].tolist() == [3, 2]  # separator is the last prefix token
    assert out["labels"][0].tolist() == [-100, -100, 8, 8, 8, -100]
    with pytest.raises(ValueError, match="separator its last token"):
        px.prefix_lm_batch(torch.tensor([[9, 9, 3]]), separator_id=3)
    # random split: uniform over [1, L_b - 1], reproducible with a seed
    many = torch.randint(5, 20, (4000, 6), generator=torch.Generator().manual_seed(0))
    m_am = right_padded([6, 4] * 2000, 6)
    P1 = px.prefix_lm_batch(many, m_am, generator=torch.Generator().manual_seed(3))["prefix_lengths"]
    P2 = px.prefix_lm_batch(many, m_am, generator=torch.Generator().manual_seed(3))["prefix_lengths"]
    assert torch.equal(P1, P2)
    full, short = P1[0::2], P1[1::2]
    assert full.min() == 1 and full.max() == 5  # L_b = 6
    assert short.min() == 1 and short.max() == 3  # L_b = 4
    freq_full = torch.bincount(full, minlength=6)[1:].float() / 2000
    freq_short = torch.bincount(short, minlength=4)[1:].float() / 2000
    assert torch.allclose(freq_full, torch.full((5,), 1 / 5), atol=0.03)
    assert torch.allclose(freq_short, torch.full((3,), 1 / 3), atol=0.03)


def counting_batch(g, B=16, L=12, V=20):
    """Arithmetic sequences mod 15 over ids 5..19 with stride 1 or 2: the stride is only
    visible from two consecutive tokens, so the model must use context."""
    start = torch.randint(0, 15, (B, 1), generator=g)
    stride = torch.randint(1, 3, (B, 1), generator=g)
    return 5 + (start + stride * torch.arange(L)) % 15


def test_prefix_lm_training_lowers_completion_loss_and_generates():
    model = tiny_bert("sdpa", vocab_size=20, cls=BertForMaskedLM, dropout=0.0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        batch = px.prefix_lm_batch(counting_batch(g, B=32), generator=g)
        loss = model(**batch).loss  # the extra key prefix_lengths is ignored by the model
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(20)) < 0.3  # starts near uniform over the vocabulary
    assert np.mean(losses[-5:]) < 0.25  # the completions are (almost) deterministic
    # greedy continuation follows the stride seen in the (bidirectional) prompt
    right = 0
    for start in range(15):
        for stride in (1, 2):
            seq = [5 + (start + stride * t) % 15 for t in range(8)]
            right += px.prefix_generate(model, torch.tensor(seq[:4]), 4, greedy=True).tolist() == seq
    assert right >= 27, f"{right}/30 continuations correct"
    assert model.training  # mode restored after generation


class RecordingModel(torch.nn.Module):
    """Stub LM whose next-token logits are fixed; it records the masks it receives."""

    def __init__(self, logits):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.fixed = logits
        self.masks = []

    def forward(self, input_ids, attention_mask):
        if self.masks is not None:
            self.masks.append(attention_mask)
        B, L = input_ids.shape
        return SimpleNamespace(logits=self.fixed.expand(B, L, -1).clone())


def test_prefix_generate_masks_and_sampling():
    logits = torch.log(torch.tensor([0.05, 0.05, 0.5, 0.3, 0.1]))
    stub = RecordingModel(logits)
    out = px.prefix_generate(stub, torch.tensor([[1, 1, 1]]), 3, greedy=True)
    assert out.tolist() == [[1, 1, 1, 2, 2, 2]]
    for step, m in enumerate(stub.masks):  # bidirectional over the prompt, causal after it
        L = 3 + step
        assert torch.equal(px.allowed(m), brute_force_allowed("prefix", torch.ones(1, L), [3]))
    stub.masks = None  # stop recording
    draw = lambda **kw: px.prefix_generate(stub, torch.zeros(400, 1, dtype=torch.long), 1,  # 400 rows, one step each
                                           generator=torch.Generator().manual_seed(0), **kw)[:, 1]
    assert torch.equal(draw(), draw())  # reproducible with a generator
    assert set(draw(top_k=1).tolist()) == {2}
    assert set(draw(top_k=2).tolist()) == {2, 3}
    assert set(draw(top_p=0.5).tolist()) == {2}  # 0.5 alone reaches p
    assert set(draw(top_p=0.75).tolist()) == {2, 3}
    freq = torch.bincount(draw(), minlength=5).float() / 400
    assert torch.allclose(freq, logits.exp(), atol=0.06)
    hot = torch.bincount(draw(temperature=0.3), minlength=5)[2] / 400
    assert hot > 0.8  # low temperature sharpens towards the mode
    stops = px.prefix_generate(stub, torch.tensor([0, 1]), 5, greedy=True, eos_id=2)
    assert stops.tolist() == [0, 1, 2]  # stops once every row wrote eos
    with pytest.raises(ValueError, match="temperature"):
        draw(temperature=0)
    with pytest.raises(ValueError, match="context of 32 positions"):
        px.prefix_generate(tiny_bert("eager", cls=BertForMaskedLM), torch.tensor([5, 6]), 40)


# ---------------------------------------------------------------- UniLM mixture

def test_mixture_frequencies_follow_weights(tokenizer):
    mix = px.UniLMMixture(("bidirectional", "causal", "prefix"), weights=(0.5, 0.3, 0.2), seed=0,
                          tokenizer=tokenizer)
    draws = [mix.sample_kind() for _ in range(3000)]
    freq = [draws.count(k) / 3000 for k in mix.kinds]
    assert np.allclose(freq, [0.5, 0.3, 0.2], atol=0.03)
    again = px.UniLMMixture(("bidirectional", "causal", "prefix"), weights=(0.5, 0.3, 0.2), seed=0,
                            tokenizer=tokenizer)
    assert [again.sample_kind() for _ in range(50)] == draws[:50]
    assert mix.drawn == draws


def test_mixture_builds_each_kind(tokenizer):
    examples = [tokenizer(t)["input_ids"] for t in ["the cat sat on the mat .", "a dog ran ."]]
    sep = tokenizer.convert_tokens_to_ids("on")
    seen = set()
    mix = px.UniLMMixture(KINDS, seed=1, tokenizer=tokenizer, separator_id=sep, mlm_probability=0.5)
    model = tiny_bert("eager", vocab_size=len(tokenizer), cls=BertForMaskedLM)  # one shared network
    for _ in range(40):
        batch = mix(examples[:1])  # only the first example has "on", the seq2seq separator
        kind = mix.drawn[-1]
        seen.add(kind)
        ids, labels, ok = batch["input_ids"], batch["labels"], px.allowed(batch["attention_mask"])
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        assert torch.isfinite(model(**batch).loss)
        orig = torch.tensor(examples[0])
        if kind == "bidirectional":
            assert ok.all()
            sel = labels[0] != -100
            assert torch.equal(labels[0][sel], orig[sel]) and sel.any()
        elif kind == "right_to_left":
            assert labels[0].tolist() == [-100] + orig[:-1].tolist()
            for i in range(1, len(orig)):
                assert not ok[0, i, i - 1]  # position i predicts token i - 1, which it cannot see
        else:
            P = {"causal": 1, "seq2seq": 4}.get(kind)
            lab = labels[0]
            first = int((lab != -100).nonzero()[0])
            if P is not None:
                assert first == P - 1
            assert lab[first:-1].tolist() == orig[first + 1 :].tolist()
            assert torch.equal(ok, brute_force_allowed("prefix", torch.ones(1, len(orig)), [first + 1]))
    assert seen == set(KINDS)
    padded = px.UniLMMixture(("causal",), tokenizer=tokenizer)(examples)
    assert padded["input_ids"][1].tolist() == examples[1] + [tokenizer.pad_token_id] * 3
    assert padded["labels"][1].tolist() == examples[1][1:] + [-100] * 4


# ---------------------------------------------------------------- permutation LM sidebar

def test_permutation_lm_example_matches_transformers_collator(tokenizer):
    from transformers import DataCollatorForPermutationLanguageModeling

    words = tokenizer("the cat sat on the mat . a dog ran to the red ball .")["input_ids"]
    ids = [tokenizer.cls_token_id] + words + [tokenizer.sep_token_id]
    ids += [tokenizer.pad_token_id] * (len(ids) % 2 + 2)  # even length, with padding at the end
    collator = DataCollatorForPermutationLanguageModeling(tokenizer)
    n_targets = 0
    for seed in range(5):
        ours = px.permutation_lm_example(ids, tokenizer, seed=seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            ref = collator([ids])
        for key in ("input_ids", "labels", "perm_mask", "target_mapping"):
            assert np.array_equal(ours[key], ref[key][0].numpy()), (seed, key)
        n_targets += ours["targets"].sum()
        assert not ours["targets"][[0, len(ids) - 1]].any()  # [CLS] and [PAD] are never targets
    assert n_targets > 0
    with pytest.raises(ValueError, match="even"):
        px.permutation_lm_example(ids[:-1], tokenizer)


# ---------------------------------------------------------------- scoring

def test_position_scores_match_the_models_own_loss(tokenizer):
    model = tiny_bert("sdpa", vocab_size=len(tokenizer), cls=BertForMaskedLM, seed=3)
    ids = torch.tensor([tokenizer("the cat sat on the mat .")["input_ids"],
                        tokenizer("a dog ran to the red ball")["input_ids"]])
    batch = px.prefix_lm_batch(ids, prefix_lengths=[2, 4])
    model.train()  # position_scores must switch dropout off itself
    out = px.position_scores(model, batch)
    assert model.training
    scored = batch["labels"] != -100
    assert torch.equal(out["scored"], scored)
    assert torch.isnan(out["nll"][~scored]).all() and not torch.isnan(out["nll"][scored]).any()
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = model(**batch).loss
    ref = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"].clamp(min=0), reduction="none")
    assert torch.allclose(out["nll"][scored], ref[scored], atol=1e-5)
    assert abs(out["nll"][scored].mean().item() - loss.item()) < 1e-5  # the model's loss is their mean
    assert torch.equal(out["correct"], (logits.argmax(-1) == batch["labels"]) & scored)


def test_blank_each_blanks_one_position_per_row():
    out = px.blank_each(torch.tensor([5, 9, 8, 7]), [1, 3], mask_token_id=4)
    assert out["input_ids"].tolist() == [[5, 4, 8, 7], [5, 9, 8, 4]]
    assert out["labels"].tolist() == [[-100, 9, -100, -100], [-100, -100, -100, 7]]
    with pytest.raises(ValueError, match="positions must lie"):
        px.blank_each(torch.tensor([5, 9]), [2], 4)


def _brute_blank_nlls(texts, text, visible=None):
    """p(w_i | the other visible words) by summing over every story of World.tiny()."""
    stories = [(t.split(), p) for t, p in texts.items()]
    words = text.split()
    k = len(words) if visible is None else visible
    if visible is None:  # the whole story is seen, so its length is known
        stories = [(w, p) for w, p in stories if len(w) == k]
    prefixes = {}
    for w, p in stories:  # total probability of the stories that start with each k-word prefix
        key = tuple(w[:k])
        prefixes[key] = prefixes.get(key, 0.0) + p
    vocab = {w for ws, _ in stories for w in ws}
    out = []
    for i in range(k):
        seen = tuple(words[:k])
        den = sum(prefixes.get(seen[:i] + (c,) + seen[i + 1:], 0.0) for c in vocab)
        out.append(-math.log(prefixes[seen] / den))
    return out


def test_blank_nlls_equal_brute_force_on_the_tiny_world():
    from ssledu.data import toyworld

    world = toyworld.World.tiny()
    texts = toyworld.enumerate_texts(world)
    picks = sorted(texts)[::60]  # 7 stories of different shapes
    for text in picks:
        n = len(text.split())
        assert np.allclose(px.blank_nlls(text, world), _brute_blank_nlls(texts, text), atol=1e-9)
        k = n // 2
        assert np.allclose(px.blank_nlls(text, world, visible=k), _brute_blank_nlls(texts, text, k), atol=1e-9)


def test_blank_nlls_are_zero_exactly_at_copy_positions():
    from ssledu.data import toyworld

    hidden_by_left = 0
    for text in toyworld.generate_texts(20, seed=4):
        full, left = px.blank_nlls(text), toyworld.word_nlls(text)[:-1]
        for i, kind in enumerate(toyworld.position_kinds(text)):
            if kind != "free":  # forced by the left (backward) or by the rest of the story (forward)
                assert full[i] == 0.0, (text, i, kind)
            if kind == "forward_copy":
                hidden_by_left += left[i] > 0.5
    assert hidden_by_left > 20  # ... while a left-to-right reader is unsure there
    with pytest.raises(ValueError, match="visible must be in"):
        px.blank_nlls("we see one shape .", visible=9)
    with pytest.raises(ValueError, match="cannot produce"):
        px.blank_nlls("we see one shapes")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_leak_test_function_passes_every_kind_and_catches_leaks(attn):
    V = 24
    model = tiny_bert(attn, V, cls=BertForMaskedLM)  # an LM head: hidden_states come from the encoder
    ids = torch.randint(5, V, (7,), generator=torch.Generator().manual_seed(5))
    for kind in KINDS:
        mask = make_mask(kind, torch.ones(1, 7), torch.tensor([3]))
        res = px.leak_test(model, ids, mask)
        assert res["ok"] and res["leaks"] == [] and res["deaf"] == [], (attn, kind)
        assert torch.equal(res["allowed"], px.allowed(mask)[0])
        assert torch.equal(res["change"] > 0, res["allowed"])
    # an off-by-one prefix mask (j <= P) lets every prefix position see token P: caught
    i = torch.arange(7)
    bad = (i[None, :] <= i[:, None]) | (i[None, :] <= 3)
    leaky = torch.zeros(7, 7).masked_fill(~bad, torch.finfo(torch.float32).min)[None, None]
    assert px.leak_test(model, ids, leaky)["ok"]  # the model honours the mask it is given ...
    res = px.leak_test(model, ids, leaky, expected=px.prefix_mask(torch.ones(1, 7), 3))
    assert not res["ok"] and res["leaks"] == [(0, 3), (1, 3), (2, 3)]  # ... which lets P - 1 = 2 see its target
    # a boolean mask leaks under eager attention only
    boolean = px.allowed(px.causal_mask(torch.ones(1, 7)))[:, None]
    res = px.leak_test(model, ids, boolean)
    if attn == "eager":
        assert not res["ok"] and (0, 6) in res["leaks"]
    else:
        assert res["ok"]
    with pytest.raises(ValueError, match=r"\(1, 1, L, L\)"):
        px.leak_test(model, ids, px.causal_mask(torch.ones(2, 7)))
    model.train()
    px.leak_test(model, ids, px.causal_mask(torch.ones(1, 7)))
    assert model.training


def test_mixture_can_replace_every_selected_token_by_mask(tokenizer):
    ids = torch.tensor([tokenizer("the cat sat on the mat . a dog ran to the red ball .")["input_ids"]] * 64)
    seen = {}
    for mrp, rrp in [(1.0, 0.0), (0.8, 0.1)]:
        mix = px.UniLMMixture(("bidirectional",), seed=0, tokenizer=tokenizer, mlm_probability=0.3,
                              mask_replace_prob=mrp, random_replace_prob=rrp)
        batch = mix(ids)
        sel = batch["labels"] != -100
        assert torch.equal(batch["labels"][sel], ids[sel])
        seen[mrp] = (batch["input_ids"][sel] == tokenizer.mask_token_id).float().mean().item()
    assert seen[1.0] == 1.0  # every selected token is [MASK]: no position predicts a visible token
    assert 0.7 < seen[0.8] < 0.9  # BERT's 80/10/10

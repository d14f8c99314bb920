"""Frozen features and label-efficiency probes."""

import numpy as np
import pytest
import torch

from ssledu import models
from ssledu.data.tokenize import train_tokenizer
from ssledu.probe import frozen_features, label_efficiency, subsample_per_class

TEXTS = ["the red circle is big", "a small blue square", "the star jumps", "it waits on the left side"]


@pytest.fixture(scope="module")
def tok_model():
    tok = train_tokenizer(TEXTS * 3, kind="word")
    torch.manual_seed(0)
    model = models.bert(tok, "nano")
    return tok, model


def test_mean_pooling_matches_manual_and_ignores_padding(tok_model):
    tok, model = tok_model
    model.train()
    feats = frozen_features(model, tok, TEXTS, batch_size=4)
    assert model.training, "train/eval mode is restored"
    assert feats.shape == (4, model.config.hidden_size)
    # one text alone (no padding) gives the same features as inside a padded batch
    alone = frozen_features(model, tok, [TEXTS[2]])
    np.testing.assert_allclose(alone[0], feats[2], atol=1e-5)
    ids = [tok.cls_token_id] + tok(TEXTS[0], add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    model.eval()
    with torch.no_grad():
        h = model.bert(input_ids=torch.tensor([ids])).last_hidden_state[0]
    np.testing.assert_allclose(feats[0], h.mean(0).numpy(), atol=1e-5)


def test_all_layers_concatenated(tok_model):
    tok, model = tok_model
    feats = frozen_features(model, tok, TEXTS, layers="all")
    n = model.config.num_hidden_layers + 1
    assert feats.shape == (4, n * model.config.hidden_size)
    first = frozen_features(model, tok, TEXTS, layers=0)
    np.testing.assert_allclose(feats[:, : model.config.hidden_size], first, atol=1e-6)


def test_bad_input(tok_model):
    tok, model = tok_model
    with pytest.raises(ValueError, match="empty"):
        frozen_features(model, tok, [])
    with pytest.raises(ValueError, match="positions"):
        frozen_features(model, tok, TEXTS, max_length=10_000)
    with pytest.raises(ValueError, match="pooling"):
        frozen_features(model, tok, TEXTS, pooling="max")


def test_subsample_is_stratified_and_seeded():
    y = np.repeat(np.arange(5), 40)
    idx = subsample_per_class(y, 10, seed=3)
    assert len(idx) == 10 and len(set(idx)) == 10
    assert sorted(np.bincount(y[idx])) == [2] * 5
    assert np.array_equal(idx, subsample_per_class(y, 10, seed=3))
    assert not np.array_equal(idx, subsample_per_class(y, 10, seed=4))


def test_label_efficiency_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    centers = rng.normal(size=(4, 16)) * 3
    signal = centers[y] + rng.normal(size=(600, 16))
    noise = rng.normal(size=(600, 16))
    good = label_efficiency(signal[:400], y[:400], signal[400:], y[400:], sizes=[8, 64, None], name="signal")
    bad = label_efficiency(noise[:400], y[:400], noise[400:], y[400:], sizes=[8, 64, None], name="noise")
    assert list(good["n_labels"]) == [8, 64, 400]
    assert good["accuracy"].min() > 0.85
    assert bad["accuracy"].max() < 0.45
    assert (good["method"] == "signal").all()


def test_bare_encoder_gives_the_same_features_as_its_mlm_model(tok_model):
    tok, model = tok_model
    with_head = frozen_features(model, tok, TEXTS)
    bare = frozen_features(model.bert, tok, TEXTS)  # a BertModel, as models.bert(..., head=None)
    np.testing.assert_allclose(bare, with_head, atol=1e-6)


def test_bart_is_probed_on_its_encoder(tok_model):
    tok, _ = tok_model
    torch.manual_seed(0)
    bart = models.bart(tok, "nano")
    bart.train()
    feats = frozen_features(bart, tok, TEXTS[:1], add_cls_sep=False)
    assert bart.training, "train/eval mode is restored"
    ids = torch.tensor([tok(TEXTS[0], add_special_tokens=False)["input_ids"]])
    bart.eval()
    with torch.no_grad():
        h = bart.get_encoder()(input_ids=ids).last_hidden_state[0]  # (L, d)
    np.testing.assert_allclose(feats[0], h.mean(0).numpy(), atol=1e-5)


def test_mode_is_restored_after_an_error(tok_model):
    tok, model = tok_model
    model.train()
    with pytest.raises(ValueError, match="out of range"):
        frozen_features(model, tok, TEXTS, layers=[0, 7])
    assert model.training


# --- per-layer features, word alignment, probes, control tasks, random baseline ----------

from ssledu.data import toyworld  # noqa: E402
from ssledu.probe import (control_labels, layer_features, layer_probes, majority_baseline,  # noqa: E402
                          probe_accuracy, random_init_like)

STORIES = toyworld.generate_texts(12, seed=5)


def _chance_bound(p, m, z=4.0):
    """Upper end of a binomial z-sigma interval around chance accuracy p on m test rows."""
    return p + z * np.sqrt(p * (1 - p) / m)


def test_layer_features_stack_every_hidden_state(tok_model):
    tok, model = tok_model
    stack = layer_features(model, tok, TEXTS)
    n = model.config.num_hidden_layers + 1
    assert stack.shape == (n, len(TEXTS), model.config.hidden_size)
    for i in range(n):
        np.testing.assert_allclose(stack[i], frozen_features(model, tok, TEXTS, layers=i), atol=1e-6)
    cls = layer_features(model, tok, TEXTS, pooling="cls")
    np.testing.assert_allclose(cls[-1], frozen_features(model, tok, TEXTS, pooling="cls"), atol=1e-6)


def test_word_features_are_the_states_of_each_word(tok_model):
    tok, model = tok_model
    texts = [TEXTS[0], TEXTS[3]]
    feats = layer_features(model, tok, texts, level="word", batch_size=2)
    n_words = sum(len(t.split()) for t in texts)
    assert feats.shape == (3, n_words, 64)
    model.eval()
    ids = [tok.cls_token_id] + tok(texts[1], add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    with torch.no_grad():
        hs = model.bert(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    # a word tokenizer: word k of text 1 is token k + 1 (after [CLS]), unpadded, alone
    first = len(texts[0].split())
    for layer in range(3):
        np.testing.assert_allclose(feats[layer, first:], hs[layer][0, 1:-1].numpy(), atol=1e-5)


def test_word_features_pool_the_pieces_of_a_subword_tokenizer():
    texts = ["we see two shapes . a big red circle sits on the left ."] * 4
    tok = train_tokenizer(texts + ["circles sitting redness"], kind="bpe", vocab_size=280)
    torch.manual_seed(0)
    model = models.bert(tok, "nano")
    text = "a reddish circle"  # "reddish" is cut into several pieces
    enc = tok(text, add_special_tokens=False)
    pieces = enc.word_ids()
    assert len(pieces) > 3, "the test needs a word made of several pieces"
    model.eval()
    ids = [tok.cls_token_id] + enc["input_ids"] + [tok.sep_token_id]
    with torch.no_grad():
        h = model.bert(input_ids=torch.tensor([ids])).last_hidden_state[0, 1:-1]  # (T, D)
    at = [t for t, w in enumerate(pieces) if w == 1]
    mean = layer_features(model, tok, [text], level="word")[-1]
    first = layer_features(model, tok, [text], level="word", word_pooling="first")[-1]
    last = layer_features(model, tok, [text], level="word", word_pooling="last")[-1]
    assert mean.shape == (3, 64)
    np.testing.assert_allclose(mean[1], h[at].mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(first[1], h[at[0]].numpy(), atol=1e-5)
    np.testing.assert_allclose(last[1], h[at[-1]].numpy(), atol=1e-5)


def test_word_features_refuse_to_cut_a_text(tok_model):
    tok, model = tok_model
    with pytest.raises(ValueError, match="max_length"):
        layer_features(model, tok, [" ".join(["the"] * 20)], level="word", max_length=8)


@pytest.mark.parametrize("family", ["gpt", "electra", "bare", "t5"])
def test_layer_features_for_every_family(tok_model, family):
    tok, bert = tok_model
    torch.manual_seed(0)
    if family == "gpt":
        model, n, inner = models.gpt(tok, "nano"), 3, lambda m: m.transformer
    elif family == "electra":
        model, n, inner = models.electra(tok, "nano"), 3, lambda m: m.electra
    elif family == "bare":
        model, n, inner = bert.bert, 3, lambda m: m
    else:
        import transformers as tf

        cfg = tf.T5Config(vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                          pad_token_id=0, eos_token_id=6, decoder_start_token_id=0)
        model, n, inner = tf.T5ForConditionalGeneration(cfg), 3, lambda m: m.get_encoder()
    model.train()
    feats = layer_features(model, tok, TEXTS[:2], level="word", add_cls_sep=False)
    assert model.training
    assert feats.shape[:2] == (n, len(TEXTS[0].split()) + len(TEXTS[1].split()))
    model.eval()
    ids = torch.tensor([tok(TEXTS[1], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        h = inner(model)(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    np.testing.assert_allclose(feats[-1, len(TEXTS[0].split()):], h.numpy(), atol=1e-5)


def test_a_probe_reads_an_encoded_label_perfectly_and_shuffled_labels_at_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 800)
    noise = rng.normal(size=(800, 12))
    encoded = np.concatenate([np.eye(4)[y], noise[:, :8]], axis=1)  # the label: the first 4 columns
    stack = np.stack([noise, encoded])  # layer 0: nothing, layer 1: the label
    table = layer_probes(stack[:, :400], y[:400], stack[:, 400:], y[400:])
    assert list(table["layer"]) == [0, 1]
    assert table["accuracy"][1] == 1.0
    assert table["accuracy"][0] < _chance_bound(0.25, 400)
    shuffled = rng.permutation(y)
    acc = probe_accuracy(encoded[:400], shuffled[:400], encoded[400:], shuffled[400:])
    assert acc < _chance_bound(0.25, 400)
    assert majority_baseline(y[:400], y[400:]) < _chance_bound(0.25, 400)


def test_control_labels_are_fixed_per_word_type():
    words = [w for s in STORIES for w in s.split()]
    roles = [r for s in STORIES for r in toyworld.word_roles(s)]
    ctrl = control_labels(words, roles, seed=0)
    assert len(ctrl) == len(words)
    by_type = {}
    for w, c in zip(words, ctrl):
        assert by_type.setdefault(w, c) == c, f"word {w!r} got two control labels"
    assert set(ctrl) <= set(roles)
    # a type's label does not depend on which other words are present
    few = control_labels(["red", "circle"], n_classes=5, seed=3)
    many = control_labels(["circle", "x", "red", "y"], n_classes=5, seed=3)
    assert few[0] == many[2] and few[1] == many[0]
    assert not np.array_equal(control_labels(words, n_classes=5, seed=0),
                              control_labels(words, n_classes=5, seed=1))
    # uniform labels cover the classes about evenly over many types
    lots = control_labels([f"w{i}" for i in range(5000)], n_classes=5, seed=0)
    assert np.abs(np.bincount(lots, minlength=5) / 5000 - 0.2).max() < 0.03


def test_selectivity_exposes_a_probe_that_memorises_word_identity():
    words = [w for s in toyworld.generate_texts(60, seed=1) for w in s.split()]
    roles = [r for s in toyworld.generate_texts(60, seed=1) for r in toyworld.word_roles(s)]
    vocab = sorted(set(words))
    identity = np.eye(len(vocab))[[vocab.index(w) for w in words]]  # one-hot word type
    rng = np.random.default_rng(0)
    noise = rng.normal(size=identity.shape)
    stack = np.stack([noise, identity])
    ctrl = control_labels(words, roles, seed=0)
    half = len(words) // 2
    table = layer_probes(stack[:, :half], roles[:half], stack[:, half:], roles[half:],
                         control=(ctrl[:half], ctrl[half:]), C=100.0)
    # roles are a function of the word type, and so are control labels: identity solves both
    assert table["accuracy"][1] == 1.0 and table["control_accuracy"][1] == 1.0
    assert table["selectivity"][1] == 0.0
    assert table["accuracy"][0] < 0.5


def test_random_init_like_keeps_the_shape_and_redraws_the_weights(tok_model):
    tok, model = tok_model
    model.eval()
    state = torch.get_rng_state()
    fresh = random_init_like(model, seed=1)
    assert torch.equal(state, torch.get_rng_state()), "the global RNG is untouched"
    assert type(fresh) is type(model) and not fresh.training
    a, b = dict(model.named_parameters()), dict(fresh.named_parameters())
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    w = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(a[w], b[w])
    assert torch.equal(b[w], dict(random_init_like(model, seed=1).named_parameters())[w])
    assert not torch.equal(b[w], dict(random_init_like(model, seed=2).named_parameters())[w])
    plain = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    again = random_init_like(plain, seed=0)
    assert not torch.equal(plain[0].weight, again[0].weight)
    assert torch.equal(again[2].weight, random_init_like(plain, seed=0)[2].weight)


def test_roles_probe_on_a_random_network_end_to_end():
    """The chapter's recipe on a small scale: word roles from every layer of a random BERT."""
    stories = toyworld.generate_texts(40, seed=2)
    tok = train_tokenizer(toyworld.vocabulary(), kind="word")
    torch.manual_seed(0)
    model = models.bert(tok, "nano")
    feats = layer_features(model, tok, stories, level="word")
    roles = np.array([r for s in stories for r in toyworld.word_roles(s)])
    assert feats.shape[1] == len(roles)
    half = int(np.sum([len(s.split()) for s in stories[:30]]))
    table = layer_probes(feats[:, :half], roles[:half], feats[:, half:], roles[half:])
    assert table["accuracy"][0] > 0.9  # random embeddings still tell word types apart


def test_probes_fit_with_one_blas_thread(monkeypatch):
    """Logistic-regression probes run with one BLAS thread (many threads made them 40x slower)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info, threadpool_limits

    from ssledu.probe import probe_accuracy

    seen = []
    fit = LogisticRegression.fit

    def spy(self, *args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), np.repeat([0, 1], 20)
    with threadpool_limits(limits=2, user_api="blas"):  # what a 2-core machine starts with
        probe_accuracy(x, y, x, y)
        label_efficiency(x, y, x, y, sizes=[10, None], seeds=[0])
    assert seen == [1, 1, 1]

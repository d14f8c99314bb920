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

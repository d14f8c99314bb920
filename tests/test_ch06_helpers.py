"""Chapter 06 helpers: the digit encoder of SimCLR and the spread that shows collapse."""

import math

import pytest
import torch

from ssledu.objectives import contrastive


def test_digit_encoder_shapes_and_layers():
    enc = contrastive.DigitEncoder(width=8, feature_dim=16, projection_dim=4)
    x = torch.rand(5, 8, 8)
    assert enc.features(x).shape == (5, 16)
    assert enc(x).shape == (5, 4)
    assert enc(x.unsqueeze(1)).shape == (5, 4)  # (B, 1, 8, 8) accepted too
    # forward is the head applied to the features: the probe reads the layer below the loss
    assert torch.equal(enc(x), enc.head(enc.features(x)))
    assert (enc.features(x) >= 0).all()  # features end in a ReLU


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 1, 7, 7), "8x8"),
    (torch.randint(0, 2, (2, 8, 8)), "float"),
    (torch.rand(2, 3, 8, 8), "shape"),
])
def test_digit_encoder_rejects_bad_images(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        contrastive.DigitEncoder().features(bad)


def test_digit_encoder_rejects_bad_sizes():
    with pytest.raises(ValueError, match="feature_dim must be a positive integer"):
        contrastive.DigitEncoder(feature_dim=0)


def test_save_and_load_by_name_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLEDU_CACHE", str(tmp_path))
    torch.manual_seed(0)
    enc = contrastive.DigitEncoder(width=4, feature_dim=8, projection_dim=3)
    folder = enc.save("ch06-test")
    assert folder == tmp_path / "checkpoints" / "ch06-test"
    back = contrastive.DigitEncoder.load("ch06-test")
    x = torch.rand(3, 8, 8)
    assert back.config == enc.config
    assert torch.equal(back(x), enc(x))
    other = contrastive.DigitEncoder.load(folder)  # a path works as well as a name
    assert torch.equal(other(x), enc(x))
    with pytest.raises(FileNotFoundError, match="run chapter 06"):
        contrastive.DigitEncoder.load("no-such-encoder")


def test_embedding_spread_extremes():
    # all rows one direction (lengths differ): collapsed, 0
    z = torch.tensor([[1.0, 2.0, 0.0]]) * torch.tensor([[1.0], [3.0], [0.5]])
    assert float(contrastive.embedding_spread(z)) == pytest.approx(0.0, abs=1e-7)
    # two opposite unit vectors: mean 0, every row at distance 1
    assert float(contrastive.embedding_spread(torch.tensor([[1.0, 0.0], [-2.0, 0.0]]))) == pytest.approx(1.0)
    # two orthogonal unit vectors: mean (1/2, 1/2), distance sqrt(1/2)
    assert float(contrastive.embedding_spread(torch.eye(2))) == pytest.approx(math.sqrt(0.5))
    with pytest.raises(ValueError, match="at least 2"):
        contrastive.embedding_spread(torch.ones(1, 3))


def test_nt_xent_training_of_the_encoder_starts_at_log_candidates_and_falls():
    """The first loss is close to ln(2N - 1) (a blind guess) and falls within 50 steps."""
    from ssledu.data.digits import load_digits_images

    torch.manual_seed(0)
    x_all = torch.tensor(load_digits_images()["images"][:256])
    enc = contrastive.DigitEncoder(width=8, feature_dim=32, projection_dim=16)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        x = x_all[torch.randint(0, len(x_all), (64,), generator=g)]
        loss = contrastive.nt_xent(enc(contrastive.augment_digits(x, generator=g)),
                                   enc(contrastive.augment_digits(x, generator=g)), 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert round(losses[0], 1) == round(math.log(127), 1)
    assert sum(losses[-5:]) / 5 < losses[0] - 0.4, losses[-5:]


def test_pull_only_training_collapses_the_spread():
    """Alignment alone (no negatives) drives the spread of the embeddings towards 0."""
    torch.manual_seed(0)
    x = torch.rand(64, 8, 8)
    enc = contrastive.DigitEncoder(width=8, feature_dim=32, projection_dim=16)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = float(contrastive.embedding_spread(enc(x)))
    for _ in range(40):
        loss = contrastive.alignment(enc(contrastive.augment_digits(x, generator=g)),
                                     enc(contrastive.augment_digits(x, generator=g)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(contrastive.embedding_spread(enc(x)))
    assert after < before / 5


# --- the retrieval widget -----------------------------------------------------------------------


def _bag_of_letters(texts):
    """A toy encoder: counts of a, b, c in each text -> (N, 3)."""
    import numpy as np

    return np.array([[t.count(c) for c in "abc"] for t in texts], dtype=float)


def test_nearest_neighbours_ranks_by_cosine_and_skips_the_query():
    from ssledu import widgets

    corpus = ["aaa", "aab", "bbb", "ccc", "abc"]
    labels = ["A", "A", "B", "C", "mix"]
    enc = {"letters": _bag_of_letters, "reversed": lambda t: -_bag_of_letters(t)}
    emb = {k: f(corpus) for k, f in enc.items()}
    out = widgets.nearest_neighbours("aaa", enc, corpus, emb, k=2, labels=labels, query_label="A")
    # "aaa" itself is in the corpus and skipped; next: "aab" (cos 0.894), then "abc" (0.577)
    assert [t for t, _, _ in out.columns["letters"]] == ["aab", "abc"]
    assert out.columns["letters"][0][1] == "A"
    assert out.columns["letters"][0][2] == pytest.approx(2 / math.sqrt(5))
    # a negated encoder has the same cosines between corpus and query
    assert out.columns["reversed"] == out.columns["letters"]
    html = out._repr_html_()
    assert "aab" in html and "#2f855a" in html  # same-label neighbour in green
    assert "1. (0.894) aab" in repr(out)
    with pytest.raises(ValueError, match="k must be an integer"):
        widgets.nearest_neighbours("aaa", enc, corpus, emb, k=5)
    with pytest.raises(ValueError, match="same names"):
        widgets.nearest_neighbours("aaa", enc, corpus, {"letters": emb["letters"]})


def test_retrieval_explorer_headless_runs_once_with_the_default(monkeypatch):
    from ssledu import widgets

    monkeypatch.setenv("SSLEDU_WIDGETS", "off")
    calls = []

    def enc(texts):
        calls.append(len(texts))
        return _bag_of_letters(texts)

    ex = widgets.retrieval_explorer({"letters": enc}, ["aaa", "bbb", "ab"], "aab", k=1, show=False)
    assert calls == [3, 1] and ex.calls == 1  # the corpus embedded once, then the default query once
    assert [t for t, _, _ in ex.result.columns["letters"]] == ["ab"]  # cos 0.949, ahead of "aaa" (0.894)

"""Chapter 05 helpers: the PCA limit of a linear autoencoder, vector corruptions, exact match."""

import numpy as np
import pytest
import torch

from ssledu.objectives import denoise


def _data(n=300, d=10, seed=0):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, d)) @ g.normal(size=(d, d)) + 3.0  # correlated, off-centre


@pytest.mark.parametrize("k", [0, 1, 4, 10])
def test_pca_limit_equals_sklearn_pca(k):
    from sklearn.decomposition import PCA

    x = _data()
    if k == 0:
        want = float(((x - x.mean(0)) ** 2).mean())  # nothing kept: the mean is the best guess
    else:
        p = PCA(k).fit(x)
        want = float(((p.inverse_transform(p.transform(x)) - x) ** 2).mean())
    assert denoise.pca_reconstruction_error(x, k) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert denoise.pca_reconstruction_error(x, k, x) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_pca_limit_on_held_out_data_uses_the_training_directions():
    from sklearn.decomposition import PCA

    x, xe = _data(seed=0), _data(n=50, seed=1)
    p = PCA(3).fit(x)
    want = float(((p.inverse_transform(p.transform(xe)) - xe) ** 2).mean())
    assert denoise.pca_reconstruction_error(x, 3, xe) == pytest.approx(want, rel=1e-9)


def test_a_trained_linear_autoencoder_reaches_the_limit_and_not_below():
    torch.manual_seed(0)
    x = torch.tensor(_data(n=200, d=8), dtype=torch.float32)
    limit = denoise.pca_reconstruction_error(x, 2)
    ae = torch.nn.Sequential(torch.nn.Linear(8, 2), torch.nn.Linear(2, 8))
    opt = torch.optim.Adam(ae.parameters(), lr=3e-2)
    for _ in range(1500):
        loss = ((ae(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    err = float(((ae(x) - x) ** 2).mean().detach())
    assert limit * (1 - 1e-4) <= err <= limit * 1.01


def test_pca_limit_bad_inputs():
    with pytest.raises(ValueError, match=r"k must be .* \[0, 10\]"):
        denoise.pca_reconstruction_error(_data(), 11)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        denoise.pca_reconstruction_error(np.zeros(5), 1)
    with pytest.raises(ValueError, match=r"x_eval must be \(M, 10\)"):
        denoise.pca_reconstruction_error(_data(), 2, np.zeros((3, 4)))


def test_masking_noise_share_and_gaussian_sigma():
    x = torch.ones(200, 100)
    g = torch.Generator().manual_seed(0)
    masked = denoise.corrupt_vectors(x, "mask", 0.25, generator=g)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert float((masked == 0).float().mean()) == pytest.approx(0.25, abs=0.01)  # 20,000 draws
    noisy = denoise.corrupt_vectors(x, "gaussian", 0.5, generator=torch.Generator().manual_seed(0))
    assert float((noisy - x).std()) == pytest.approx(0.5, abs=0.01)
    assert float((noisy - x).mean()) == pytest.approx(0.0, abs=0.01)
    assert torch.equal(x, torch.ones(200, 100))  # the input is untouched
    again = denoise.corrupt_vectors(x, "mask", 0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, masked)  # seeded


def test_corrupt_vectors_bad_inputs():
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="'mask' or 'gaussian'"):
        denoise.corrupt_vectors(x, "salt")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        denoise.corrupt_vectors(x, "mask", 1.0)
    with pytest.raises(ValueError, match="sigma"):
        denoise.corrupt_vectors(x, "gaussian", -0.1)


def test_exact_match_drops_start_and_padding_and_bites():
    labels = torch.tensor([[5, 7, 8, 6], [5, 9, 6, -100], [5, 9, 6, -100], [5, 7, 8, 6], [5, 9, 6, -100]])
    generated = torch.tensor([
        [6, 5, 7, 8, 6, 0],   # equal after the start token
        [6, 5, 9, 6, 0, 0],   # equal, padded
        [6, 5, 9, 9, 6, 0],   # one token too many, inside
        [6, 5, 7, 9, 6, 0],   # one token wrong
        [6, 5, 9, 6, 7, 0],   # the target, then more tokens
    ])
    got = denoise.exact_match(generated, labels, pad_token_id=0, decoder_start_token_id=6)
    assert got.tolist() == [True, True, False, False, False]
    # without dropping the decoder start nothing matches
    assert not denoise.exact_match(generated, labels, pad_token_id=0).any()
    with pytest.raises(ValueError, match="same B"):
        denoise.exact_match(generated[:2], labels, pad_token_id=0)

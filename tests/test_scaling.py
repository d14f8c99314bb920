"""Scaling laws: the Chinchilla fit recovers a law it is given, the compute-optimal split is
the true minimum of the law on the iso-FLOP curve, parameters counted as Kaplan et al. do."""

import math

import numpy as np
import pytest
import torch

from ssledu import models, scaling

# Hoffmann et al. 2022's own fit (approach 3): a realistic law to recover.
CHINCHILLA = dict(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28)


def _grid(n_sizes=6, n_budgets=6):
    N, D = np.meshgrid(np.geomspace(1e6, 1e9, n_sizes), np.geomspace(1e8, 1e11, n_budgets))
    return N.ravel(), D.ravel()


def test_fit_recovers_an_exact_law():
    N, D = _grid()
    fit = scaling.fit_scaling_law(N, D, scaling.predict(CHINCHILLA, N, D))
    assert set(fit) == {"E", "A", "alpha", "B", "beta", "rmse"}
    for key, value in CHINCHILLA.items():
        assert fit[key] == pytest.approx(value, rel=1e-3), key
    assert fit["rmse"] < 1e-4


@pytest.mark.parametrize("floor", [None, CHINCHILLA["E"]])
def test_fit_recovers_the_law_from_noisy_losses(floor):
    N, D = _grid()
    rng = np.random.default_rng(0)
    L = scaling.predict(CHINCHILLA, N, D) * np.exp(0.005 * rng.standard_normal(N.size))
    fit = scaling.fit_scaling_law(N, D, L, floor=floor)
    assert fit["E"] == pytest.approx(CHINCHILLA["E"], abs=0.05)
    assert fit["alpha"] == pytest.approx(CHINCHILLA["alpha"], abs=0.02)
    assert fit["beta"] == pytest.approx(CHINCHILLA["beta"], abs=0.02)
    for key in ("A", "B"):
        assert abs(math.log(fit[key] / CHINCHILLA[key])) < 0.25, (key, fit[key])
    assert 0.01 < fit["rmse"] < 0.05  # the noise is ~0.5 % of L ~ 2-4 nats
    if floor is not None:
        assert fit["E"] == floor


def test_fit_at_a_small_model_scale_with_few_points():
    # Sizes and budgets like the chapter's toyworld runs: 5 x 4 points, 1 % noise.
    law = dict(E=2.1, A=30.0, alpha=0.4, B=60.0, beta=0.35)
    N, D = np.meshgrid(np.geomspace(2e4, 2e6, 5), np.geomspace(1e5, 1e7, 4))
    L = scaling.predict(law, N.ravel(), D.ravel())
    L *= np.exp(0.01 * np.random.default_rng(1).standard_normal(L.size))
    fit = scaling.fit_scaling_law(N.ravel(), D.ravel(), L)
    assert fit["E"] == pytest.approx(2.1, abs=0.15)
    assert fit["alpha"] == pytest.approx(0.4, abs=0.1)
    pred = scaling.predict(fit, N.ravel(), D.ravel())
    assert np.max(np.abs(pred - L)) < 0.1


def test_predict_numbers_and_arrays():
    assert scaling.predict(CHINCHILLA, 1e9, 1e10) == pytest.approx(
        1.69 + 406.4 / 1e9 ** 0.34 + 410.7 / 1e10 ** 0.28)
    out = scaling.predict(CHINCHILLA, [1e6, 1e9], [1e8, 1e8])
    assert out.shape == (2,) and out[0] > out[1]


def test_compute_optimal_is_the_minimum_on_the_iso_flop_curve():
    for C in (1e18, 5.76e23):
        n_opt, d_opt = scaling.compute_optimal(CHINCHILLA, C)
        assert 6 * n_opt * d_opt == pytest.approx(C)
        # brute force: the law along N x C/(6N)
        N = np.geomspace(n_opt / 100, n_opt * 100, 20001)
        L = scaling.predict(CHINCHILLA, N, C / (6 * N))
        assert N[np.argmin(L)] == pytest.approx(n_opt, rel=2e-3)
    # Chinchilla's own budget: about 40B parameters with this fit (the paper's table 3 ~ 40B)
    assert 2e10 < scaling.compute_optimal(CHINCHILLA, 5.76e23)[0] < 8e10


def test_compute_optimal_grows_with_exponent_beta_over_alpha_plus_beta():
    C = np.geomspace(1e15, 1e25, 11)
    N, D = scaling.compute_optimal(CHINCHILLA, C)
    slope_n = np.polyfit(np.log(C), np.log(N), 1)[0]
    slope_d = np.polyfit(np.log(C), np.log(D), 1)[0]
    a, b = CHINCHILLA["alpha"], CHINCHILLA["beta"]
    assert slope_n == pytest.approx(b / (a + b), abs=1e-9)
    assert slope_d == pytest.approx(a / (a + b), abs=1e-9)
    assert np.all(np.diff(N) > 0)


def test_count_parameters_without_embeddings():
    model = models.gpt(100, "nano")  # vocab 100, d 64, 128 positions, tied LM head
    total = scaling.count_parameters(model, non_embedding=False)
    assert total == models.count_parameters(model, trainable_only=False)
    body = scaling.count_parameters(model)
    assert total - body == 100 * 64 + 128 * 64
    # Kaplan et al. 2020: N ~ 12 n_layer d^2 for the layers (+ biases and norms)
    assert 12 * 2 * 64 ** 2 <= body < 12 * 2 * 64 ** 2 * 1.05
    bert = models.bert(100, "nano")
    assert scaling.count_parameters(bert, non_embedding=False) - scaling.count_parameters(bert) \
        == (100 + 128 + 2) * 64  # tokens, positions, token types


def test_scaling_bad_inputs():
    with pytest.raises(ValueError, match="fits 5 parameters .* at least 5 .* got 3.*floor="):
        scaling.fit_scaling_law([1e6, 1e7, 1e8], [1e9, 1e9, 1e10], [3.0, 2.5, 2.2])
    with pytest.raises(ValueError, match="fits 4 parameters"):
        scaling.fit_scaling_law([1e6, 1e7, 1e8], [1e9, 1e9, 1e10], [3.0, 2.5, 2.2], floor=1.0)
    with pytest.raises(ValueError, match="same D: beta cannot"):
        scaling.fit_scaling_law([1, 2, 3, 4, 5, 6], [7] * 6, [3, 2.9, 2.8, 2.7, 2.6, 2.5])
    with pytest.raises(ValueError, match="one value per run"):
        scaling.fit_scaling_law([1, 2, 3, 4, 5, 6], [7] * 5, [3] * 6)
    with pytest.raises(ValueError, match="every L must be a finite number > 0.*-1"):
        scaling.fit_scaling_law([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [3, 2, 1, 0.5, -1])
    with pytest.raises(ValueError, match="params miss beta"):
        scaling.predict({k: v for k, v in CHINCHILLA.items() if k != "beta"}, 1e6, 1e9)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        scaling.count_parameters(torch.zeros(3))

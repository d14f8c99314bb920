"""Scaling laws: loss as a function of model size N and training tokens D (chapter 09).

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", Chinchilla),
eq. 2 / approach 3::

    L(N, D) = E + A / N^alpha + B / D^beta

E is the irreducible loss (the entropy of the data: on toyworld it is known exactly), A/N^alpha
what a finite model misses, B/D^beta what finite data misses. Training costs C ~ 6 N D FLOPs
(Kaplan et al. 2020), and for a budget C the law gives the best split into N and D (eq. 4).

=======================================  ======================================================
name                                     what it does
=======================================  ======================================================
``fit_scaling_law(N, D, L)``             E, A, alpha, B, beta by Huber regression on log L
``predict(params, N, D)``                the law's loss at (N, D)
``compute_optimal(params, C)``           the (N, D) of least loss with 6 N D = C (eq. 4)
``count_parameters(model)``              N as Kaplan et al. count it: without embeddings
=======================================  ======================================================
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["fit_scaling_law", "predict", "compute_optimal", "count_parameters", "KEYS"]

KEYS = ("E", "A", "alpha", "B", "beta")

# Hoffmann et al. 2022, appendix D.2: Huber delta 1e-3 on log-residuals, L-BFGS started from
# the grid alpha, beta in {0, .5, ..., 2}, e in {-1, -.5, ..., 1}, a, b in {0, 5, ..., 25}.
_GRID = dict(
    alpha=np.arange(0.0, 2.01, 0.5),
    beta=np.arange(0.0, 2.01, 0.5),
    e=np.arange(-1.0, 1.01, 0.5),
    a=np.arange(0.0, 25.1, 5.0),
    b=np.arange(0.0, 25.1, 5.0),
)


def _as_points(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a list of numbers; got {type(values).__name__}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        bad = arr[~(np.isfinite(arr) & (arr > 0))][0]
        raise ValueError(f"every {name} must be a finite number > 0 (the law takes logs); found {bad}")
    return arr


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals and its derivative."""
    small = np.abs(r) <= delta
    loss = np.where(small, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta))
    return loss, np.where(small, r, delta * np.sign(r))


def _objective(theta, logN, logD, logL, delta, e_fixed):
    """Sum of Huber(log L_hat - log L) and its gradient in (a, alpha, b, beta[, e])."""
    a, alpha, b, beta = theta[:4]
    e = e_fixed if e_fixed is not None else theta[4]
    terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])  # (3, n)
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    log_hat = top + np.log(total)  # log(A/N^alpha + B/D^beta + E), overflow-safe
    w /= total  # each term's share of L_hat: d log_hat / d term
    loss, dr = _huber(log_hat - logL, delta)
    grad = [np.sum(dr * w[0]), -np.sum(dr * w[0] * logN), np.sum(dr * w[1]),
            -np.sum(dr * w[1] * logD)]
    if e_fixed is None:
        grad.append(np.sum(dr * w[2]))
    return loss.sum(), np.array(grad)


def fit_scaling_law(N, D, L, *, floor: float | None = None, delta: float = 1e-3,
                    n_starts: int = 30) -> dict:
    """Fit ``L(N, D) = E + A / N^alpha + B / D^beta`` to measured losses.

    N: parameters of each run (``count_parameters``), D: training tokens, L: final loss
    (nats per token); equal-length lists of > 0 numbers, n points. Hoffmann et al. 2022,
    eq. 3 and appendix D.2: minimise sum Huber_delta(log L_hat - log L) with L-BFGS over
    (log A, alpha, log B, beta, log E), Huber delta = 1e-3; of the paper's grid of 4500
    initial points the ``n_starts`` with the lowest loss are refined and the best result
    wins (refining all 4500 found the same minimum in our checks, at 20x the time).
    floor: fix E to a known irreducible loss (toyworld's exact entropy) and fit the other
    four. Returns dict(E, A, alpha, B, beta, rmse): ``rmse`` in nats, of L itself.
    """
    from scipy.optimize import minimize

    logN, logD, logL = (np.log(_as_points(k, v)) for k, v in (("N", N), ("D", D), ("L", L)))
    if not len(logN) == len(logD) == len(logL):
        raise ValueError(f"N, D and L need one value per run; got {len(logN)}, {len(logD)} "
                         f"and {len(logL)} values")
    n_params = 5 if floor is None else 4
    if len(logL) < n_params:
        fitted = ", ".join(KEYS if floor is None else KEYS[1:])
        raise ValueError(
            f"fit_scaling_law fits {n_params} parameters ({fitted}) and needs at least "
            f"{n_params} (N, D, L) points; got {len(logL)}. Train more "
            "model sizes or budgets" + (", or fix E with floor=..." if floor is None else "")
        )
    for name, logs, exponent in (("N", logN, "alpha"), ("D", logD, "beta")):
        if np.ptp(logs) == 0:
            raise ValueError(f"every run has the same {name}: {exponent} cannot be told from the "
                             f"other terms; vary {name} across runs (at least two values)")
    if floor is not None and (not math.isfinite(floor) or floor < 0):
        raise ValueError(f"floor (a known irreducible loss E) must be a finite number >= 0; got {floor!r}")
    if not delta > 0 or not (isinstance(n_starts, int) and n_starts >= 1):
        raise ValueError(f"delta must be > 0 and n_starts a positive integer; got {delta!r}, {n_starts!r}")
    e_fixed = None if floor is None else (math.log(floor) if floor > 0 else -math.inf)

    grid = np.array(list(itertools.product(
        _GRID["a"], _GRID["alpha"], _GRID["b"], _GRID["beta"],
        *([_GRID["e"]] if e_fixed is None else []))))
    # Objective at every grid point at once: (n_grid, n) residuals.
    a, alpha, b, beta = (grid[:, i:i + 1] for i in range(4))
    e = grid[:, 4:5] if e_fixed is None else np.full_like(a, e_fixed)
    log_hat = np.logaddexp(np.logaddexp(a - alpha * logN, b - beta * logD), e)
    start_loss = _huber(log_hat - logL, delta)[0].sum(axis=1)
    starts = grid[np.argsort(start_loss)[:n_starts]]

    best = None
    for x0 in starts:
        res = minimize(_objective, x0, args=(logN, logD, logL, delta, e_fixed), jac=True,
                       method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    a, alpha, b, beta = best.x[:4]
    E = floor if floor is not None else math.exp(best.x[4])
    params = dict(E=float(E), A=math.exp(a), alpha=float(alpha), B=math.exp(b), beta=float(beta))
    residual = predict(params, np.exp(logN), np.exp(logD)) - np.exp(logL)
    params["rmse"] = float(np.sqrt(np.mean(residual ** 2)))
    return params


def _check_params(params) -> None:
    missing = [k for k in KEYS if k not in params]
    if missing:
        raise ValueError(f"params miss {', '.join(missing)}; pass the dict fit_scaling_law "
                         f"returns (keys {', '.join(KEYS)})")


def predict(params: dict, N, D):
    """The law's loss ``E + A / N^alpha + B / D^beta``: a float for numbers, an array for
    arrays (N and D broadcast). params: a dict with E, A, alpha, B, beta."""
    _check_params(params)
    n, d = _as_points("N", N), _as_points("D", D)
    loss = params["E"] + params["A"] / n ** params["alpha"] + params["B"] / d ** params["beta"]
    return float(loss[0]) if np.ndim(N) == 0 and np.ndim(D) == 0 else loss


def compute_optimal(params: dict, C):
    """The model size N and tokens D of least predicted loss for a compute budget of
    C = 6 N D FLOPs (Hoffmann et al. 2022, eq. 4, the closed form):

        N_opt = G (C/6)^(beta/(alpha+beta)),  D_opt = (C/6) / N_opt,
        G = (alpha A / (beta B))^(1/(alpha+beta)).

    C: a number or an array of FLOPs. Returns (N, D), floats or arrays like C.
    """
    _check_params(params)
    alpha, beta = params["alpha"], params["beta"]
    if not (alpha > 0 and beta > 0 and params["A"] > 0 and params["B"] > 0):
        raise ValueError(f"compute_optimal needs A, B, alpha, beta > 0; got A={params['A']}, "
                         f"alpha={alpha}, B={params['B']}, beta={beta} (a flat term has no optimum)")
    c = _as_points("C", C) / 6.0
    G = (alpha * params["A"] / (beta * params["B"])) ** (1.0 / (alpha + beta))
    n_opt = G * c ** (beta / (alpha + beta))
    d_opt = c / n_opt
    if np.ndim(C) == 0:
        return float(n_opt[0]), float(d_opt[0])
    return n_opt, d_opt


def count_parameters(model, *, non_embedding: bool = True) -> int:
    """Parameters of a torch model, each shared tensor once (a tied LM head counts once).

    non_embedding: leave out the weights of every ``nn.Embedding`` (tokens, positions,
    token types), as Kaplan et al. 2020 count N: their scaling laws hold across depths
    and widths only without them. For the total use ``non_embedding=False``.
    """
    from torch import nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters needs a torch.nn.Module; got {type(model).__name__}")
    skip = set()
    if non_embedding:
        skip = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    unique = {id(p): p for p in model.parameters() if id(p) not in skip}
    return sum(p.numel() for p in unique.values())

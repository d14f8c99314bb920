"""Frozen features and linear probes: what did pretraining put into the representations?

A probe is a small supervised model (here logistic regression) trained on the
*frozen* features of a pretrained network. If a linear probe reads a property
off the features with few labels, pretraining made that property explicit.

    feats = frozen_features(model, tokenizer, texts)            # (N, D) mean-pooled
    table = label_efficiency(train_feats, y_train, test_feats, y_test, sizes=[16, 64, 256])

Conventions (OBJECTIVES.md, "Probing"): the model is put in ``eval()`` mode and
run under ``no_grad``; layer 0 of ``output_hidden_states`` is the embeddings.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ssledu.conventions import context_length, eval_mode, pad_batch

__all__ = ["frozen_features", "head_to_head", "label_efficiency", "subsample_per_class"]


def _encoder(model):
    """The network that maps input_ids to hidden states, without any head.

    transformers' ``base_model`` strips a head (BertForMaskedLM -> BertModel, GPT2LMHeadModel
    -> GPT2Model) and is the model itself for a bare BertModel; an encoder-decoder (BART)
    is probed on its encoder, ``get_encoder()``.
    """
    base = getattr(model, "base_model", model)
    if getattr(getattr(base, "config", None), "is_encoder_decoder", False) and hasattr(base, "get_encoder"):
        return base.get_encoder()
    return base


def _check_layers(layers, n_hidden: int):
    """Validate ``layers`` against the ``n_hidden`` hidden states (embeddings + one per layer)."""
    if layers in ("last", "all"):
        return
    items = [layers] if isinstance(layers, int) and not isinstance(layers, bool) else layers
    if isinstance(items, str) or not isinstance(items, (list, tuple)) or not items or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise ValueError(
            f"layers must be 'last', 'all', an int or a non-empty list of ints; got {layers!r}"
        )
    bad = [i for i in items if not -n_hidden <= i < n_hidden]
    if bad:
        raise ValueError(
            f"layers={layers!r} is out of range: the model has {n_hidden} hidden states "
            f"(0 = embeddings, 1..{n_hidden - 1} = its layers); pick from 0..{n_hidden - 1} "
            "or use layers='last'"
        )


@torch.no_grad()
def frozen_features(model, tokenizer, texts: Sequence[str], *, layers="last", pooling="mean",
                    max_length: int | None = None, batch_size: int = 128, add_cls_sep: bool = True,
                    device=None) -> np.ndarray:
    """Features of ``texts`` from a frozen transformer, pooled over tokens.

    Args:
        layers: "last", "all" (concatenate every hidden state, embeddings included),
            an int (index into ``hidden_states``; 0 = embeddings) or a list of ints.
        pooling: "mean" over real tokens (padding excluded) or "cls" (first position).
        max_length: tokens per text, [CLS]/[SEP] included (longer texts are cut); None =
            the model's positions, at most 128.
        add_cls_sep: wrap each text as ``[CLS] text [SEP]`` (BERT-style inputs).
    Returns:
        float32 array (N, D) — D = hidden size times the number of layers taken.
    The model's train/eval mode is restored afterwards.
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls'; got {pooling!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings; wrap a single text in a list: [text]")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: pass at least one text")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must be strings; got a {type(bad).__name__}: {str(bad)[:40]!r}")
    max_pos = context_length(model, default=None)
    if max_length is None:
        max_length = min(128, max_pos or 128)
    for name, value in (("max_length", max_length), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    _check_layers(layers, n_hidden=10**9)  # the type now; the range once the model has answered
    limit = max_length - (2 if add_cls_sep else 0)
    if limit < 1:
        raise ValueError(f"max_length={max_length} leaves no room for text tokens; use max_length >= 3")
    if max_pos is not None and max_length > max_pos:
        raise ValueError(f"max_length={max_length} exceeds the model's {max_pos} positions; "
                         f"pass max_length <= {max_pos}")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only {vocab}; "
            "probe the model with the tokenizer it was trained with"
        )
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id] if add_cls_sep else []
    if any(s is None for s in specials):
        raise ValueError("add_cls_sep=True needs a tokenizer with [CLS] and [SEP]; "
                         "use ssledu.data.tokenize.train_tokenizer or pass add_cls_sep=False")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    enc_model = _encoder(model)
    dev = device or next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            ids = tokenizer(chunk, add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
            if add_cls_sep:
                ids = [[tokenizer.cls_token_id] + x + [tokenizer.sep_token_id] for x in ids]
            padded = pad_batch(ids, pad_id, length=max(1, max(len(x) for x in ids)))
            input_ids, mask = padded["input_ids"], padded["attention_mask"]  # (B, L)
            hidden = enc_model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev),
                               output_hidden_states=True).hidden_states  # tuple of (B, L, D)
            _check_layers(layers, len(hidden))
            if layers == "last":
                chosen = [hidden[-1]]
            elif layers == "all":
                chosen = list(hidden)
            elif isinstance(layers, int):
                chosen = [hidden[layers]]
            else:
                chosen = [hidden[i] for i in layers]
            m = mask.to(dev).unsqueeze(-1).to(chosen[0].dtype)  # (B, L, 1)
            pooled = []
            for h in chosen:
                if pooling == "mean":
                    pooled.append((h * m).sum(1) / m.sum(1).clamp_min(1))  # (B, D)
                else:
                    pooled.append(h[:, 0])
            out.append(torch.cat(pooled, dim=-1).float().cpu())
    return torch.cat(out).numpy()


def subsample_per_class(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` examples drawn with every class present when n allows (stratified).

    Classes get ``n // n_classes`` each (at least one), the remainder is filled at random.
    """
    labels = np.asarray(labels)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer (examples to draw); got {n!r}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    if n >= len(labels):
        return rng.permutation(len(labels))
    per = max(1, n // len(classes))
    picked = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        picked.extend(rng.choice(idx, size=min(per, len(idx)), replace=False).tolist())
    picked = picked[:n]
    rest = np.setdiff1d(np.arange(len(labels)), picked)
    if len(picked) < n:
        picked.extend(rng.choice(rest, size=n - len(picked), replace=False).tolist())
    return np.asarray(picked)


def label_efficiency(train_x, train_y, test_x, test_y, sizes: Sequence[int] = (16, 64, 256, None), *,
                     seeds: Sequence[int] = (0, 1, 2), C: float = 1.0, standardize: bool = True,
                     name: str | None = None, max_iter: int = 2000):
    """Test accuracy of a logistic-regression probe trained on N labelled examples.

    ``sizes`` lists N (None = all training examples); each N < all is repeated over
    ``seeds`` (different stratified subsets) and averaged. Features are standardised
    with statistics of the full *unlabelled* training pool, which a self-supervised
    practitioner has. Returns a pandas DataFrame: method, n_labels, accuracy, std.
    """
    train_x, test_x = np.asarray(train_x, dtype=np.float64), np.asarray(test_x, dtype=np.float64)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train_x and test_x must be (N, D) feature matrices with the same D; got shapes "
            f"{train_x.shape} and {test_x.shape} (frozen_features returns (N, D))"
        )
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(
            f"features and labels must have the same number of rows; got {len(train_x)} train "
            f"features for {len(train_y)} labels and {len(test_x)} test features for {len(test_y)}"
        )
    if len(train_y) == 0 or len(test_y) == 0:
        raise ValueError("train and test sets must each hold at least one example")
    sizes = list(sizes)
    bad = [n for n in sizes if n is not None and (not isinstance(n, (int, np.integer))
                                                 or isinstance(n, bool) or n < 1)]
    if not sizes or bad:
        raise ValueError(
            f"sizes must be a non-empty list of label counts >= 1 (None = all {len(train_y)}); "
            f"got {bad or sizes!r}"
        )
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed, e.g. seeds=(0, 1, 2)")
    import pandas as pd  # after the checks: a wrong call fails without the slow imports
    from sklearn.linear_model import LogisticRegression

    if standardize:
        mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
        train_x, test_x = (train_x - mu) / sd, (test_x - mu) / sd
    rows = []
    for n in sizes:
        n_eff = len(train_y) if n is None or n >= len(train_y) else int(n)
        accs = []
        for seed in (seeds if n_eff < len(train_y) else seeds[:1]):
            idx = subsample_per_class(train_y, n_eff, seed)
            if len(np.unique(train_y[idx])) < 2:
                accs.append(float(np.mean(test_y == train_y[idx][0])))
                continue
            clf = LogisticRegression(C=C, max_iter=max_iter)
            clf.fit(train_x[idx], train_y[idx])
            accs.append(float((clf.predict(test_x) == test_y).mean()))
        rows.append({"method": name or "features", "n_labels": n_eff,
                     "accuracy": float(np.mean(accs)), "std": float(np.std(accs))})
    return pd.DataFrame(rows)


def head_to_head(results, method: str, baseline: str, *, by: Sequence[str] = ("n_labels",),
                 value: str = "accuracy", min_gap: float = 0.01):
    """Compare two methods measured over repeated runs (e.g. pretraining seeds), group by group.

    results: long DataFrame, one row per run with columns ``method``, ``value`` and ``by``
    (e.g. the rows of :func:`label_efficiency` for several seeds, with a ``fact`` column).
    Returns a DataFrame indexed by ``by`` with the mean and standard deviation over runs of
    each method (columns ``<method>``, ``<method> sd``, ``<baseline>``, ``<baseline> sd``),
    ``gap`` = mean(method) - mean(baseline) and ``verdict``: "ahead" / "behind" when the gap
    is larger than ``tolerance`` = max(2 x the larger sd, ``min_gap``), else "tie".
    The floor ``min_gap`` (default one accuracy point) is there because with a few thousand
    test examples a smaller gap is within the test set's own noise even when the runs agree.
    """
    import pandas as pd

    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in ["method", value, *by] if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks the column(s) {missing}; it has {list(results.columns)}")
    found = set(results["method"])
    for name in (method, baseline):
        if name not in found:
            raise ValueError(f"method {name!r} is not in results; methods there: {sorted(found)}")
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0; got {min_gap}")
    # One run gives no spread: its sd is 0, and only min_gap separates a tie from a win.
    stats = (results.groupby(by + ["method"])[value].agg(["mean", "std"]).fillna(0.0)
             .unstack("method"))
    out = pd.DataFrame({
        method: stats[("mean", method)], f"{method} sd": stats[("std", method)],
        baseline: stats[("mean", baseline)], f"{baseline} sd": stats[("std", baseline)],
    })
    out["gap"] = out[method] - out[baseline]
    tolerance = np.maximum(2 * np.maximum(out[f"{method} sd"], out[f"{baseline} sd"]), min_gap)
    out["verdict"] = np.where(out["gap"] > tolerance, "ahead", np.where(out["gap"] < -tolerance, "behind", "tie"))
    return out

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

__all__ = ["frozen_features", "label_efficiency", "subsample_per_class"]


def _encoder(model):
    """The bare encoder of a ...ForMaskedLM / ...ForPreTraining model, else the model."""
    for name in ("bert", "roberta", "transformer", "model", "encoder"):
        sub = getattr(model, name, None)
        if isinstance(sub, torch.nn.Module):
            return sub
    return model


@torch.no_grad()
def frozen_features(model, tokenizer, texts: Sequence[str], *, layers="last", pooling="mean",
                    max_length: int = 128, batch_size: int = 128, add_cls_sep: bool = True,
                    device=None) -> np.ndarray:
    """Features of ``texts`` from a frozen transformer, pooled over tokens.

    Args:
        layers: "last", "all" (concatenate every hidden state, embeddings included),
            an int (index into ``hidden_states``; 0 = embeddings) or a list of ints.
        pooling: "mean" over real tokens (padding excluded) or "cls" (first position).
        add_cls_sep: wrap each text as ``[CLS] text [SEP]`` (BERT-style inputs).
    Returns:
        float32 array (N, D) — D = hidden size times the number of layers taken.
    The model's train/eval mode is restored afterwards.
    """
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls'; got {pooling!r}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: pass at least one text")
    was_training = model.training
    model.eval()
    enc_model = _encoder(model)
    dev = device or next(model.parameters()).device
    limit = max_length - (2 if add_cls_sep else 0)
    if limit < 1:
        raise ValueError(f"max_length={max_length} leaves no room for text tokens")
    max_pos = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if max_pos is not None and max_length > max_pos:
        raise ValueError(f"max_length={max_length} exceeds the model's {max_pos} positions; lower max_length")
    out = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            ids = tokenizer(chunk, add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
            if add_cls_sep:
                ids = [[tokenizer.cls_token_id] + x + [tokenizer.sep_token_id] for x in ids]
            width = max(1, max(len(x) for x in ids))
            input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, x in enumerate(ids):
                input_ids[i, :len(x)] = torch.tensor(x, dtype=torch.long)
                mask[i, :len(x)] = 1
            hidden = enc_model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev),
                               output_hidden_states=True).hidden_states  # tuple of (B, L, D)
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
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def subsample_per_class(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` examples drawn with every class present when n allows (stratified).

    Classes get ``n // n_classes`` each (at least one), the remainder is filled at random.
    """
    labels = np.asarray(labels)
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
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = np.asarray(train_x, dtype=np.float64), np.asarray(test_x, dtype=np.float64)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("features and labels must have the same number of rows")
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

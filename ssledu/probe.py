"""Frozen features and linear probes: what did pretraining put into the representations?

A probe is a small supervised model (here logistic regression) trained on the
*frozen* features of a pretrained network. If a linear probe reads a property
off the features with few labels, pretraining made that property explicit.

    feats = frozen_features(model, tokenizer, texts)            # (N, D) mean-pooled
    table = label_efficiency(train_feats, y_train, test_feats, y_test, sizes=[16, 64, 256])

Per layer, with a control task and a random network of the same shape as baselines::

    words = layer_features(model, tok, stories, level="word")   # (n_hidden, W, D)
    ctrl = control_labels(all_words, roles)                      # Hewitt & Liang (2019)
    layer_probes(words[:, :k], roles[:k], words[:, k:], roles[k:], control=(ctrl[:k], ctrl[k:]))
    baseline = random_init_like(model)                           # same shapes, no pretraining

Conventions (OBJECTIVES.md, "Probing"): the model is put in ``eval()`` mode and
run under ``no_grad``; layer 0 of ``output_hidden_states`` is the embeddings.
A probe that scores well on the control task (each word type a fixed random label) is
memorising word identity; ``selectivity = accuracy - control accuracy`` says how much of
the accuracy the representation, not the probe, is responsible for.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ssledu.conventions import context_length, eval_mode, pad_batch

__all__ = ["frozen_features", "layer_features", "probe_accuracy", "layer_probes", "control_labels",
           "majority_baseline", "random_init_like", "head_to_head", "label_efficiency",
           "subsample_per_class"]


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


def _prepare(model, tokenizer, texts, *, max_length, batch_size, add_cls_sep) -> tuple[list, int]:
    """Validate the arguments shared by the feature extractors; return (texts, max_length)."""
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
    if max_length - (2 if add_cls_sep else 0) < 1:
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
    if add_cls_sep and (tokenizer.cls_token_id is None or tokenizer.sep_token_id is None):
        raise ValueError("add_cls_sep=True needs a tokenizer with [CLS] and [SEP]; "
                         "use ssledu.data.tokenize.train_tokenizer or pass add_cls_sep=False")
    return texts, max_length


def _word_index(text: str, offsets) -> list:
    """Whitespace-word index of each token from its character offsets (None: a token of
    spaces only, as a character tokenizer makes). Works for every tokenizer kind, also
    byte-level BPE whose pieces carry the space before a word."""
    owner = np.full(len(text) + 1, -1)
    pos = 0
    for k, word in enumerate(text.split()):
        pos = text.index(word, pos)
        owner[pos:pos + len(word)] = k
        pos += len(word)
    out = []
    for s, e in offsets:
        hit = owner[s:max(e, s + 1)]
        hit = hit[hit >= 0]
        out.append(int(hit[0]) if len(hit) else None)
    return out


def _hidden_batches(model, tokenizer, texts, *, max_length, batch_size, add_cls_sep, device,
                    words: bool = False):
    """Run the frozen encoder over ``texts`` in batches (call inside ``eval_mode`` and no_grad).

    Yields (hidden_states: tuple of n_hidden tensors (B, L, D), attention_mask (B, L),
    word_ids: per row a list of L whole-word indices or None, only when ``words``).
    With ``words`` a text longer than ``max_length`` is an error: cutting it would drop
    words that the caller has labels for.
    """
    limit = max_length - (2 if add_cls_sep else 0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    enc_model = _encoder(model)
    dev = device or next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        if words:
            enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
            ids = enc["input_ids"]
            long = next((i for i, x in enumerate(ids) if len(x) > limit), None)
            if long is not None:
                raise ValueError(
                    f"text {start + long} has {len(ids[long])} tokens, more than the {limit} that fit "
                    f"in max_length={max_length}; word features need whole texts: shorten the "
                    "texts or raise max_length (up to the model's positions)")
            wids = [_word_index(t, o) for t, o in zip(chunk, enc["offset_mapping"])]
        else:
            ids = tokenizer(chunk, add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]
            wids = None
        if add_cls_sep:
            ids = [[tokenizer.cls_token_id] + x + [tokenizer.sep_token_id] for x in ids]
            if wids is not None:
                wids = [[None] + w + [None] for w in wids]
        padded = pad_batch(ids, pad_id, length=max(1, max(len(x) for x in ids)))
        input_ids, mask = padded["input_ids"], padded["attention_mask"]  # (B, L)
        hidden = enc_model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev),
                           output_hidden_states=True).hidden_states  # tuple of (B, L, D)
        yield hidden, mask.to(dev), wids


def _pick(hidden, layers) -> list:
    _check_layers(layers, len(hidden))
    if layers == "last":
        return [hidden[-1]]
    if layers == "all":
        return list(hidden)
    if isinstance(layers, int):
        return [hidden[layers]]
    return [hidden[i] for i in layers]


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
    texts, max_length = _prepare(model, tokenizer, texts, max_length=max_length,
                                 batch_size=batch_size, add_cls_sep=add_cls_sep)
    _check_layers(layers, n_hidden=10**9)  # the type now; the range once the model has answered
    out = []
    with eval_mode(model):
        for hidden, mask, _ in _hidden_batches(model, tokenizer, texts, max_length=max_length,
                                               batch_size=batch_size, add_cls_sep=add_cls_sep,
                                               device=device):
            out.append(torch.cat([_pool(h, mask, pooling) for h in _pick(hidden, layers)], dim=-1))
    return torch.cat(out).float().cpu().numpy()


def _word_pool(stacked, wids, word_pooling: str):
    """(n_hidden, B, L, D) token states -> (n_hidden, W, D) word states, words in row order.

    ``wids``: per row the whole-word index of each token (None: a special, padding or space).
    """
    n_hidden, B, L, D = stacked.shape
    flat_pos, word_of = [], []  # flat token position (b * L + t) and its global word index
    base = 0
    for b, row in enumerate(wids):
        for t, w in enumerate(row):
            if w is not None:
                flat_pos.append(b * L + t)
                word_of.append(base + w)
        base += max((w for w in row if w is not None), default=-1) + 1
    flat = stacked.reshape(n_hidden, B * L, D)
    pos = torch.tensor(flat_pos, device=flat.device)
    word = torch.tensor(word_of, device=flat.device)
    if word_pooling == "mean":
        sums = flat.new_zeros(n_hidden, base, D).index_add_(1, word, flat[:, pos])
        counts = torch.bincount(word, minlength=base).clamp_min(1).to(flat.dtype)  # (W,)
        return sums / counts[None, :, None]
    reduce = "amin" if word_pooling == "first" else "amax"  # the word's first / last piece
    start = torch.full((base,), -1 if reduce == "amax" else B * L, device=flat.device)
    pick = start.scatter_reduce(0, word, pos, reduce=reduce)
    return flat[:, pick]


def _pool(h, mask, pooling: str):
    """(B, L, D) hidden states -> (B, D): mean over real tokens, or the first position."""
    if pooling == "cls":
        return h[:, 0]
    m = mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1)


@torch.no_grad()
def layer_features(model, tokenizer, texts: Sequence[str], *, level: str = "sentence",
                   pooling: str = "mean", word_pooling: str = "mean", max_length: int | None = None,
                   batch_size: int = 128, add_cls_sep: bool = True, device=None) -> np.ndarray:
    """Frozen features of every layer, stacked for per-layer probes (Tenney et al. 2019).

    level: "sentence" -> one row per text, pooled over its tokens with ``pooling``
        ("mean" over real tokens or "cls", the first position), as :func:`frozen_features`;
        "word" -> one row per whitespace word, all words of text 0 first, then of text 1, ...
        (``sum(len(t.split()) for t in texts)`` rows), each the ``word_pooling`` ("mean",
        "first" or "last" piece) of that word's tokens, so a subword tokenizer lines up with
        word labels such as ``toyworld.word_roles``.
    Returns float32 (n_hidden, N, D): index 0 = the embeddings, i = the output of layer i.
    Works for bare encoders, ``*ForMaskedLM``, GPT-2, ELECTRA and encoder-decoders (their
    encoder). Eval mode and no_grad inside; the model's mode is restored afterwards.
    """
    if level not in ("sentence", "word"):
        raise ValueError(f"level must be 'sentence' (one row per text) or 'word' (one per word); got {level!r}")
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls'; got {pooling!r}")
    if word_pooling not in ("mean", "first", "last"):
        raise ValueError(f"word_pooling must be 'mean', 'first' or 'last'; got {word_pooling!r}")
    texts, max_length = _prepare(model, tokenizer, texts, max_length=max_length,
                                 batch_size=batch_size, add_cls_sep=add_cls_sep)
    out = []
    with eval_mode(model):
        for hidden, mask, wids in _hidden_batches(model, tokenizer, texts, max_length=max_length,
                                                  batch_size=batch_size, add_cls_sep=add_cls_sep,
                                                  device=device, words=level == "word"):
            stacked = torch.stack(hidden)  # (n_hidden, B, L, D)
            if level == "sentence":
                out.append(torch.stack([_pool(h, mask, pooling) for h in hidden], dim=0))
                continue
            out.append(_word_pool(stacked, wids, word_pooling))
    return torch.cat(out, dim=1).float().cpu().numpy()


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


def _fit_logistic(x, y, *, C: float, max_iter: int):
    """A scikit-learn logistic regression fitted with one BLAS thread.

    A probe's matrices are small (thousands of rows, at most a few hundred columns), and
    OpenBLAS threads gain nothing on them; on a 2-core CPU where torch has just run with two
    OpenMP threads (which keep spinning for a while), a two-thread BLAS made one
    ``label_efficiency`` call 40x slower than one thread (11.7 s against 0.3 s).
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return LogisticRegression(C=C, max_iter=max_iter).fit(x, y)


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
            clf = _fit_logistic(train_x[idx], train_y[idx], C=C, max_iter=max_iter)
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


# --- per-layer probes, control tasks and baselines ---------------------------------------


def _check_xy(x, y, what: str):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"{what} features must be an (N, D) matrix; got shape {x.shape}")
    if y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"{what} features and labels must have the same number of rows; got {len(x)} feature "
            f"rows for labels of shape {y.shape} (one label per row of features)"
        )
    if len(y) == 0:
        raise ValueError(f"the {what} set is empty: pass at least one example")
    return x, y


def probe_accuracy(train_x, train_y, test_x, test_y, *, C: float = 1.0, max_iter: int = 1000,
                   standardize: bool = True) -> float:
    """Test accuracy of one logistic-regression probe (scikit-learn, L2 penalty ``C``).

    train_x (N, D), train_y (N,), test_x (M, D), test_y (M,). Features are standardised
    with the training rows' mean and sd. The training labels need at least two classes.
    """
    train_x, train_y = _check_xy(train_x, train_y, "train")
    test_x, test_y = _check_xy(test_x, test_y, "test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in width: {train_x.shape[1]} vs {test_x.shape[1]}")
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(
            f"the training labels hold a single class ({classes[0]!r}); a probe needs at least 2 "
            "classes: draw more examples or a stratified subset (probe.subsample_per_class)"
        )
    if standardize:
        mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
        train_x, test_x = (train_x - mu) / sd, (test_x - mu) / sd
    clf = _fit_logistic(train_x, train_y, C=C, max_iter=max_iter)
    return float((clf.predict(test_x) == test_y).mean())


def majority_baseline(train_y, test_y) -> float:
    """Test accuracy of always answering the most frequent training label (the floor a
    probe must beat; with balanced classes about 1 / n_classes)."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(train_y) == 0 or len(test_y) == 0:
        raise ValueError("train_y and test_y must each hold at least one label")
    values, counts = np.unique(train_y, return_counts=True)
    return float(np.mean(test_y == values[np.argmax(counts)]))


def control_labels(word_types: Sequence, labels=None, *, n_classes: int | None = None,
                   seed: int = 0) -> np.ndarray:
    """Control task of Hewitt & Liang (2019): every word TYPE gets one fixed random label.

    word_types: one entry per token (e.g. the words of all stories, in order). The label of
    a type is drawn from the empirical distribution of ``labels`` (same length, the real
    task's labels; Hewitt & Liang's choice) or, with ``n_classes``, uniformly from
    0..n_classes-1. It depends only on the type, ``seed`` and that distribution, so call
    this once on the train and test words together. A probe that scores well on a control
    task memorises word identity; ``selectivity = task accuracy - control accuracy``.
    Returns an array (len(word_types),) of labels.
    """
    import zlib

    word_types = [str(w) for w in word_types]
    if (labels is None) == (n_classes is None):
        raise ValueError("pass either labels (the real task's labels, to copy their distribution) "
                         "or n_classes (uniform control labels), not both or neither")
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(word_types):
            raise ValueError(f"labels and word_types must have the same length; got {len(labels)} "
                             f"labels for {len(word_types)} words")
        classes, counts = np.unique(labels, return_counts=True)
        probs = counts / counts.sum()
    else:
        if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2; got {n_classes!r}")
        classes, probs = np.arange(n_classes), np.full(n_classes, 1.0 / n_classes)
    table = {}
    for w in dict.fromkeys(word_types):
        # a generator per type, keyed by the type itself: its label does not depend on
        # which other words happen to be in the data
        rng = np.random.default_rng([int(seed), zlib.crc32(w.encode())])
        table[w] = classes[rng.choice(len(classes), p=probs)]
    return np.array([table[w] for w in word_types])


def layer_probes(train_feats, train_y, test_feats, test_y, *, control=None, layers=None,
                 C: float = 1.0, max_iter: int = 1000, standardize: bool = True):
    """One probe per layer: accuracy (and selectivity) as a function of depth.

    train_feats (n_hidden, N, D), test_feats (n_hidden, M, D) from :func:`layer_features`;
    train_y (N,), test_y (M,). control: optional (control_train_y, control_test_y) from
    :func:`control_labels`, probed on the same features. layers: indices to probe (default
    all; 0 = embeddings). Returns a pandas DataFrame with columns layer, accuracy and, with
    ``control``, control_accuracy and selectivity = accuracy - control_accuracy.
    """
    import pandas as pd

    train_feats, test_feats = np.asarray(train_feats), np.asarray(test_feats)
    if train_feats.ndim != 3 or test_feats.ndim != 3 or train_feats.shape[0] != test_feats.shape[0]:
        raise ValueError(
            f"train_feats and test_feats must be (n_hidden, N, D) stacks with the same n_hidden "
            f"(layer_features returns them); got shapes {train_feats.shape} and {test_feats.shape}"
        )
    n_hidden = train_feats.shape[0]
    if layers is None:
        layers = list(range(n_hidden))
    _check_layers(list(layers) if not isinstance(layers, int) else layers, n_hidden)
    layers = [layers] if isinstance(layers, int) else list(layers)
    if control is not None and (not isinstance(control, (tuple, list)) or len(control) != 2):
        raise ValueError("control must be a pair (control_train_y, control_test_y) from control_labels")
    rows = []
    for i in layers:
        row = {"layer": i % n_hidden,
               "accuracy": probe_accuracy(train_feats[i], train_y, test_feats[i], test_y, C=C,
                                          max_iter=max_iter, standardize=standardize)}
        if control is not None:
            row["control_accuracy"] = probe_accuracy(train_feats[i], control[0], test_feats[i], control[1],
                                                     C=C, max_iter=max_iter, standardize=standardize)
            row["selectivity"] = row["accuracy"] - row["control_accuracy"]
        rows.append(row)
    return pd.DataFrame(rows)


def random_init_like(model, seed: int = 0):
    """A copy of ``model`` with fresh random weights: same class, config and shapes.

    The baseline every probe needs: what does a network of this shape give *without*
    pretraining? (Random features already carry word identity, so a probe on them is
    often far above chance.) transformers models are rebuilt from their config with the
    library's own initialisation; other modules are deep-copied and every submodule's
    ``reset_parameters()`` is called. Seeded (``torch.manual_seed(seed)`` in a forked RNG:
    the global RNG is untouched); same device and train/eval mode as ``model``.
    """
    import copy

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"random_init_like needs a torch.nn.Module; got {type(model).__name__}")
    first = next(model.parameters(), None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = getattr(model, "config", None)
        if config is not None and hasattr(model, "save_pretrained"):
            fresh = type(model)(copy.deepcopy(config))
        else:
            fresh = copy.deepcopy(model)
            for module in fresh.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    if first is not None:
        fresh.to(first.device)
    return fresh.train(model.training)

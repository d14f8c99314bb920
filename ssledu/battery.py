"""One battery for every pretrained text network of the course (chapter 08).

The same toyworld tasks for each network, so that objectives can be compared row by row::

    tasks = toyworld_tasks(n_train=300, n_test=150, n_qa=600)
    row, layers = evaluate(zoo.load("ch02-mlm-toyworld"), zoo.load_tokenizer("ch02-mlm-toyworld"),
                           tasks, frame=FRAMES["ch02-mlm-toyworld"])

``row`` holds one number per column of the chapter's table: intrinsic scores (where the
network has the head for them), linear probes on frozen features (sentence level and word
level, with Hewitt & Liang's control task), adaptation (a tagging and a QA head, frozen and
fine-tuned) and the saliency check against toyworld's answer key. ``layers`` holds the
per-layer probe curve. Everything is seeded; the numbers are those of ``probe``,
``adapt`` and ``interpret``, this module only lines the tasks up.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np

__all__ = ["TEXT_NETWORKS", "FRAMES", "SENTENCE_TARGETS", "toyworld_tasks", "frame_texts",
           "sentence_features", "word_features", "intrinsic", "probe_battery", "adapt_curve",
           "encode_tasks", "evaluate"]

#: The course's pretrained text networks (zoo names) and the objective each was trained with.
TEXT_NETWORKS: dict[str, str] = {
    "ch02-mlm-toyworld": "masked LM (BERT)",
    "ch03-gpt-toyworld": "causal LM (GPT)",
    "ch04-unilm": "prefix LM (UniLM)",
    "ch05-bart-infill": "denoising (BART encoder)",
    "ch05-electra-disc": "replaced tokens (ELECTRA)",
    "ch06-simcse-toyworld": "contrastive (SimCSE)",
}

#: The special tokens each network saw around a story in pretraining (chapters 02 and 06 use
#: BERT's [CLS] ... [SEP]; 03, 04 and 05 use [BOS] ... [EOS]). Probes frame a story the same way.
FRAMES: dict[str, tuple[str, str]] = {
    "ch02-mlm-toyworld": ("[CLS]", "[SEP]"),
    "ch03-gpt-toyworld": ("[BOS]", "[EOS]"),
    "ch04-unilm": ("[BOS]", "[EOS]"),
    "ch05-bart-infill": ("[BOS]", "[EOS]"),
    "ch05-electra-disc": ("[BOS]", "[EOS]"),
    "ch06-simcse-toyworld": ("[CLS]", "[SEP]"),
}

#: Story-level probe targets (keys of ``toyworld.sentence_targets``).
SENTENCE_TARGETS = ("n_objects", "colour", "relation")


def toyworld_tasks(n_train: int = 300, n_test: int = 150, n_qa: int = 600, n_qa_test: int = 200,
                   seed: int = 0, max_tokens: int = 64) -> dict:
    """Every label the battery needs, from toyworld's answer key (seeded, deterministic).

    Only stories that fit in ``max_tokens`` positions with their two frame tokens (and QA
    examples whose ``[CLS] question [SEP] story [SEP]`` fits) are kept, one word per token:
    the smallest context of the course's networks (chapter 03's GPT) is 64.

    Returns a dict: ``train`` / ``test`` (lists of stories); ``sentence`` (target ->
    (n_train + n_test,) array, train rows first); per word of all stories, train words first:
    ``words``, ``role`` (ids into ``toyworld.ROLE_NAMES``), ``main_colour`` (the story's
    first-object colour, repeated on every word: a story fact a word must read from its
    context), ``role_control`` / ``main_colour_control`` (Hewitt & Liang control labels),
    ``n_train_words``; ``bio`` (per story its BIO tags); ``qa`` / ``qa_test`` (lists of
    ``toyworld.generate_qa`` examples); ``cloze_ceiling`` (mean over the test words of the
    best guess with both sides visible, ``toyworld.best_guess_accuracy``) and ``lm_floor``
    (``toyworld.bayes_floor`` of the test stories, nats per token).
    """
    from ssledu.data import toyworld
    from ssledu.probe import control_labels

    for name, n in (("n_train", n_train), ("n_test", n_test), ("n_qa", n_qa), ("n_qa_test", n_qa_test)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 2:
            raise ValueError(f"{name} must be an integer >= 2; got {n!r}")
    if not isinstance(max_tokens, int) or max_tokens < 16:
        raise ValueError(f"max_tokens must be an integer >= 16 (the positions of the smallest network); "
                         f"got {max_tokens!r}")
    texts = [t for t in toyworld.generate_texts(2 * (n_train + n_test) + 50, seed=seed)
             if len(t.split()) + 2 <= max_tokens][: n_train + n_test]
    train, test = texts[:n_train], texts[n_train:]
    targets = [toyworld.sentence_targets(t) for t in texts]
    words = [w for t in texts for w in t.split()]
    role = np.array([r for t in texts for r in toyworld.role_ids(t)])
    main = np.array([s["colour"] for t, s in zip(texts, targets) for _ in t.split()])
    qa = [q for q in toyworld.generate_qa(2 * (n_qa + n_qa_test) + 50, seed=seed + 1)
          if len(q["question"].split()) + len(q["context_words"]) + 3 <= max_tokens][: n_qa + n_qa_test]
    if len(texts) < n_train + n_test or len(qa) < n_qa + n_qa_test:
        raise ValueError(f"too few stories fit in max_tokens={max_tokens}; raise it")
    best = [toyworld.best_guess_accuracy(t)["both"] for t in test]
    return {
        "train": train, "test": test,
        "sentence": {k: np.array([s[k] for s in targets]) for k in SENTENCE_TARGETS},
        "words": words, "role": role, "main_colour": main,
        "role_control": control_labels(words, role, seed=seed),
        "main_colour_control": control_labels(words, main, seed=seed),
        "n_train_words": sum(len(t.split()) for t in train),
        "bio": [toyworld.bio_tags(t) for t in texts],
        "qa": qa[:n_qa], "qa_test": qa[n_qa:],
        "cloze_ceiling": float(np.mean([x for b in best for x in b])),
        "lm_floor": float(toyworld.bayes_floor(test)),
    }


def frame_texts(texts: Sequence[str], frame: tuple[str, str] | None) -> list[str]:
    """``"[BOS] story [EOS]"`` for a frame ("[BOS]", "[EOS]"); the texts as they are for None."""
    if frame is None:
        return list(texts)
    if len(frame) != 2 or not all(isinstance(f, str) and f.strip() == f and f for f in frame):
        raise ValueError(f"frame must be a pair of special tokens such as ('[BOS]', '[EOS]'); got {frame!r}")
    return [f"{frame[0]} {t} {frame[1]}" for t in texts]


def _features(model, tokenizer, texts, frame, level):
    from ssledu.probe import layer_features

    unknown = [f for f in (frame or ()) if f not in tokenizer.get_vocab()]
    if unknown:
        raise ValueError(f"the tokenizer has no token {unknown[0]!r}; pick a frame from its special tokens "
                         f"{tokenizer.all_special_tokens}")
    feats = layer_features(model, tokenizer, frame_texts(texts, frame), level=level,
                           add_cls_sep=False if frame else True)
    if level == "word" and frame:
        # the frame's two tokens came out as one extra "word" at each end of every story: drop them
        keep = np.concatenate([np.r_[False, np.ones(len(t.split()), bool), False] for t in texts])
        feats = feats[:, keep]
    return feats


def sentence_features(model, tokenizer, texts: Sequence[str], frame=None) -> np.ndarray:
    """(n_hidden, N, D) mean-pooled states of every layer; ``frame`` as :data:`FRAMES`
    (None: the probe's default ``[CLS] text [SEP]``)."""
    return _features(model, tokenizer, list(texts), frame, "sentence")


def word_features(model, tokenizer, texts: Sequence[str], frame=None) -> np.ndarray:
    """(n_hidden, W, D) states of every whitespace word of ``texts`` (the frame's tokens dropped),
    one row per word in order, as ``toyworld`` labels them."""
    return _features(model, tokenizer, list(texts), frame, "word")


def intrinsic(model, tokenizer, texts: Sequence[str]) -> dict:
    """The pretraining task's own score where the network still has the head for it.

    A masked LM (``*ForMaskedLM``): ``cloze_acc``, the share of words guessed right when each
    word alone is hidden (``mlm.cloze_scores``). A causal LM (``*LMHeadModel``): ``lm_nll``,
    nats per token on the stories (``clm.compare_to_floor``). Other networks: both NaN.
    """
    name = type(model).__name__
    out = {"cloze_acc": math.nan, "lm_nll": math.nan}
    if name.endswith("ForMaskedLM"):
        from ssledu.objectives import mlm

        out["cloze_acc"] = float(np.mean(mlm.cloze_scores(model, tokenizer, list(texts), batch_size=256)["correct"]))
    elif name.endswith("LMHeadModel") or name.endswith("ForCausalLM"):
        from ssledu.objectives import clm

        out["lm_nll"] = float(clm.compare_to_floor(model, tokenizer, list(texts))["model_nll"])
    return out


def probe_battery(model, tokenizer, tasks: dict, frame=None, *, n_word_train: int | None = None):
    """Linear probes on frozen features: returns (row dict, per-layer DataFrame).

    Sentence probes on the last layer, mean-pooled (``probe_<target>``); word probes on every
    layer for ``main_colour`` and on the last layer for ``role``, each with its control task
    (``<target>_acc``, ``<target>_control``, ``<target>_selectivity``; main colour at its best
    layer). ``n_word_train``: train stories used by the word probes (default all).
    """
    from ssledu.probe import layer_probes, probe_accuracy

    n_train = len(tasks["train"])
    texts = tasks["train"] + tasks["test"]
    row = {}
    sent = sentence_features(model, tokenizer, texts, frame)[-1]  # (N, D)
    for k in SENTENCE_TARGETS:
        y = tasks["sentence"][k]
        row[f"probe_{k}"] = probe_accuracy(sent[:n_train], y[:n_train], sent[n_train:], y[n_train:])
    k = n_train if n_word_train is None else min(int(n_word_train), n_train)
    use = tasks["train"][:k] + tasks["test"]
    n_k = sum(len(t.split()) for t in tasks["train"][:k])
    rows = np.r_[np.arange(n_k), np.arange(tasks["n_train_words"], len(tasks["words"]))]
    feats = word_features(model, tokenizer, use, frame)  # (n_hidden, W, D)
    layers = None
    for target, all_layers in (("main_colour", True), ("role", False)):
        y, c = tasks[target][rows], tasks[f"{target}_control"][rows]
        f = feats if all_layers else feats[-1:]
        df = layer_probes(f[:, :n_k], y[:n_k], f[:, n_k:], y[n_k:], control=(c[:n_k], c[n_k:]))
        best = df.loc[df["accuracy"].idxmax()]
        row[f"{target}_acc"] = float(best["accuracy"])
        row[f"{target}_control"] = float(best["control_accuracy"])
        row[f"{target}_selectivity"] = float(best["selectivity"])
        if all_layers:
            layers = df.assign(layer=df["layer"].astype(int))
    return row, layers


def encode_tasks(tokenizer, tasks: dict) -> dict:
    """The tagging (BIO), QA and story-classification examples for one tokenizer: {"tag": (train,
    test), "qa": (train, test), "qa_vocab_size": int, "cls": (train, test), "cls_classes": list}.

    Classification: each story's relation (``tasks["sentence"]["relation"]``: how the second
    object stands to the first, "none" with one object), one label per story.

    The course's tokenizers learnt the stories' words only: "what", "colour", "size", "where"
    and "?" would all read as [UNK], and "what colour is the star ?" would equal "what size
    is the star ?". The QA examples use a copy of the tokenizer with the question words
    added (ids from ``len(tokenizer)`` on); ``qa_vocab_size`` is the rows the encoder then
    needs (``adapt.EncoderWithHead(..., vocab_size=...)``, ``adapt_curve(..., vocab_size=...)``).
    """
    from ssledu import adapt
    from ssledu.data import toyworld

    n_train = len(tasks["train"])
    texts = tasks["train"] + tasks["test"]
    tag = adapt.encode_tagging(tokenizer, [t.split() for t in texts], tasks["bio"], tag_names=toyworld.BIO_TAGS)
    vocab = tokenizer.get_vocab()
    new_words = sorted({w for q in tasks["qa"] + tasks["qa_test"] for w in q["question"].split()} - set(vocab))
    qa_tok = tokenizer
    if new_words:
        qa_tok = copy.deepcopy(tokenizer)  # the caller's tokenizer stays as it was
        qa_tok.add_tokens(new_words)

    def qa(items):
        return adapt.encode_qa(qa_tok, [q["question"] for q in items], [q["context"] for q in items],
                               [(q["answer_start"], q["answer_end"]) for q in items])

    # story classification: the relation of the second object to the first ("none": one object)
    relation = tasks["sentence"]["relation"]
    classes = sorted(set(relation.tolist()))
    cls = adapt.encode_classification(tokenizer, texts, [classes.index(r) for r in relation])
    return {"tag": (tag[:n_train], tag[n_train:]), "qa": (qa(tasks["qa"]), qa(tasks["qa_test"])),
            "qa_vocab_size": len(qa_tok), "cls": (cls[:n_train], cls[n_train:]), "cls_classes": classes}


def adapt_curve(model, task: str, train: Sequence[dict], test: Sequence[dict], sizes: Sequence[int], *,
                freeze: bool, steps: int, lr: float = 3e-3, batch_size: int = 32, seed: int = 0,
                name: str | None = None, vocab_size: int | None = None):
    """Label efficiency of one head: for each N in ``sizes`` a fresh copy of ``model`` plus a head
    trains ``steps`` steps on the first N examples of a seeded shuffle and is scored on ``test``
    (``adapt.accuracy``). Returns (DataFrame method/n_labels/accuracy, the head trained on the
    largest N). A fixed number of steps per size: every N costs the same, and a small N is
    seen for more epochs. vocab_size: rows of the input embeddings when the examples use words
    added to the tokenizer (``encode_tasks``' ``qa_vocab_size``); None keeps the encoder's."""
    import pandas as pd

    from ssledu import adapt
    from ssledu.data import toyworld

    train, test = list(train), list(test)
    if task == "tagging":
        num_labels = len(toyworld.BIO_TAGS)
    elif task == "classification":
        num_labels = 1 + max(int(e["labels"]) for e in train + test)
    else:
        num_labels = None
    template = adapt.EncoderWithHead(model, task, num_labels, freeze=freeze, seed=seed, vocab_size=vocab_size)
    order = np.random.default_rng(seed).permutation(len(train))
    rows, last = [], None
    for n in sizes:
        n_eff = min(int(n), len(train))
        head = copy.deepcopy(template)
        adapt.train_head(head, [train[i] for i in order[:n_eff]], epochs=None, max_steps=steps, lr=lr,
                         batch_size=min(batch_size, n_eff), seed=seed)
        rows.append({"method": name or ("frozen" if freeze else "fine-tuned"), "n_labels": n_eff,
                     "accuracy": adapt.accuracy(head, test)})
        last = head
    return pd.DataFrame(rows), last


def evaluate(model, tokenizer, tasks: dict, *, frame=None, tag_sizes: Sequence[int] = (2, 8, 32),
             qa_sizes: Sequence[int] = (64, 512), tag_steps: int = 30, qa_steps: int = 100,
             frozen: bool = True, n_word_train: int | None = None, n_saliency: int = 100,
             cls_sizes: Sequence[int] = (), cls_steps: int = 30):
    """Evaluate one network on every probe and task of the battery.

    Returns (row, per-layer probe DataFrame, label-efficiency DataFrame with a ``task``
    column). The row: :func:`intrinsic`, :func:`probe_battery`, ``tag_<N>`` / ``qa_<N>`` /
    ``cls_<N>`` (story classification, with ``cls_sizes``; fine-tuned, and ``..._frozen_<N>``
    with ``frozen``) and
    ``saliency_top1``: the share of test questions whose evidence word the fine-tuned QA
    head's gradient x input ranks first (``interpret.qa_evidence_ranks``, answer excluded),
    with ``saliency_chance`` = mean of 1 / competing words.
    """
    import pandas as pd

    from ssledu.interpret import qa_evidence_ranks

    row = intrinsic(model, tokenizer, tasks["test"])
    probes, layers = probe_battery(model, tokenizer, tasks, frame, n_word_train=n_word_train)
    row.update(probes)
    enc = encode_tasks(tokenizer, tasks)
    curves = []
    for freeze in ((True, False) if frozen else (False,)):
        for task, key, sizes, steps, bs in (("tagging", "tag", tag_sizes, tag_steps, 8),
                                            ("qa", "qa", qa_sizes, qa_steps, 32),
                                            ("classification", "cls", cls_sizes, cls_steps, 32)):
            if not sizes:
                continue
            df, head = adapt_curve(model, task, *enc[key], sizes, freeze=freeze, steps=steps, batch_size=bs,
                                   vocab_size=enc["qa_vocab_size"] if task == "qa" else None)
            for n, acc in zip(df["n_labels"], df["accuracy"]):
                row[f"{key}{'_frozen' if freeze else ''}_{n}"] = float(acc)
            curves.append(df.assign(task=key))
            if task == "qa" and not freeze:
                qa_test = tasks["qa_test"][:n_saliency]
                ranks = qa_evidence_ranks(head, enc["qa"][1][:n_saliency], [q["evidence"] for q in qa_test])
                row["saliency_top1"] = float(np.mean(ranks == 1))
                row["saliency_chance"] = float(np.mean([1 / (len(q["context_words"]) - 1) for q in qa_test]))
    return row, layers, pd.concat(curves, ignore_index=True)

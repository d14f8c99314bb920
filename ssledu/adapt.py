"""Downstream heads on any pretrained encoder: classify, tag, answer (chapter 08).

Every self-supervised paper reports the same three adaptations, and this module puts each
on top of any network of the course (BERT, ELECTRA, GPT-2, the encoder of BART or T5)::

    model = EncoderWithHead(zoo.load("ch05-electra-disc"), "tagging", num_labels=4, freeze=True)
    train = encode_tagging(tok, words, tags)         # list of examples
    train_head(model, train, epochs=3)               # ssledu.train.fit underneath
    accuracy(model, test)

- ``"classification"``: the encoder's states pooled over the text -> one linear layer
  (BERT's sequence classification, Devlin et al. 2019).
- ``"tagging"``: one linear layer per token (BERT's NER set-up: a word's label sits on its
  first piece; the other pieces are skipped with ``IGNORE_INDEX``).
- ``"qa"``: extractive question answering as in BERT on SQuAD: a start and an end logit per
  token, loss = mean of the two cross-entropies; :func:`decode_span` returns the best span
  with start <= end and at most ``max_answer_len`` tokens, inside the context.

``freeze=True`` keeps the encoder fixed and in eval mode (no dropout): a linear probe
trained by gradient descent. ``freeze=False`` fine-tunes everything.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ssledu.conventions import IGNORE_INDEX, eval_mode, pad_batch
from ssledu.probe import _encoder, subsample_per_class

__all__ = ["TASKS", "HeadOutput", "EncoderWithHead", "encode_classification", "encode_tagging",
           "encode_qa", "collate", "train_head", "predict", "accuracy", "decode_span",
           "label_efficiency"]

TASKS = ("classification", "tagging", "qa")
POOLINGS = ("mean", "cls", "last")
_NEG = -1e4  # logits of positions that cannot be an answer (finite: no NaN in the loss)


@dataclass
class HeadOutput:
    """What :class:`EncoderWithHead` returns: ``loss`` (None without targets), ``logits``
    ((B, C) classification, (B, L, C) tagging) or ``start_logits`` / ``end_logits`` (B, L)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None


def _hidden_size(config) -> int:
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell the width of {type(config).__name__}: it has no hidden_size, "
                     "n_embd or d_model")


class EncoderWithHead(nn.Module):
    """A pretrained encoder plus a linear task head.

    model: any transformers model of the course; its head (MLM, LM, discriminator) is
    dropped and an encoder-decoder keeps its encoder (``probe._encoder``). The encoder is
    copied: ``model`` itself is never changed. task: one of
    :data:`TASKS`. num_labels: classes (classification, tagging; qa has 2 fixed outputs).
    freeze: train the head only (the encoder stays in eval mode). pooling (classification):
    "mean" over real tokens (any model), "cls" (first token, BERT) or "last" (last real
    token, the one a causal model has read everything at). Head init: normal(0, 0.02) as
    BERT's, drawn from ``seed``. vocab_size: grow the copy's input embeddings to this many
    rows when the task brought words the pretraining tokenizer lacked (``tokenizer.add_tokens``,
    then ``vocab_size=len(tokenizer)``); see :meth:`add_token_rows`.
    forward(input_ids (B, L), attention_mask, labels | start_positions + end_positions,
    context_mask (B, L), inputs_embeds) -> :class:`HeadOutput`.
    """

    def __init__(self, model, task: str, num_labels: int | None = None, *, freeze: bool = False,
                 pooling: str = "mean", seed: int = 0, vocab_size: int | None = None):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        if task == "qa":
            num_labels = 2 if num_labels is None else num_labels
            if num_labels != 2:
                raise ValueError(f"a qa head has 2 outputs (start, end); got num_labels={num_labels}")
        elif not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 2:
            raise ValueError(f"num_labels must be an integer >= 2 for {task}; got {num_labels!r}")
        # a copy: fine-tuning (or freezing) must not change the network the caller passed,
        # which a chapter goes on to adapt in other ways
        self.encoder = copy.deepcopy(_encoder(model))
        self.config = self.encoder.config  # fit reads the positions and vocabulary from here
        self.task, self.num_labels, self.pooling, self.frozen = task, num_labels, pooling, freeze
        self.head = nn.Linear(_hidden_size(self.config), num_labels)
        self.reset_head(seed)
        if vocab_size is not None:
            self.add_token_rows(vocab_size, seed)
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def reset_head(self, seed: int = 0) -> None:
        """Redraw the head's weights: normal(0, 0.02), zero bias (BERT's initialisation)."""
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            w = torch.randn(self.head.weight.shape, generator=g) * 0.02
            self.head.weight.copy_(w.to(self.head.weight))
            self.head.bias.zero_()

    def add_token_rows(self, vocab_size: int, seed: int = 0) -> None:
        """Grow the input embeddings to ``vocab_size`` rows; the new rows (words added to the
        tokenizer for the task, e.g. a question's "what", "colour", "?") are drawn around the old
        rows, per dimension mean + std * normal(0, 1) from ``seed`` (Hewitt 2021: new words
        start where the old ones live, and differ from each other). The old rows are kept."""
        emb = self.encoder.get_input_embeddings()
        old, dim = emb.weight.shape
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < old:
            raise ValueError(f"vocab_size must be an integer >= the {old} rows the encoder has; got "
                             f"{vocab_size!r} (pass len(tokenizer) after tokenizer.add_tokens)")
        if vocab_size == old:
            return
        g = torch.Generator().manual_seed(int(seed))
        w = emb.weight.detach()
        extra = w.mean(0) + w.std(0) * torch.randn(vocab_size - old, dim, generator=g).to(w)
        new = copy.deepcopy(emb)  # keeps the class and its settings (BART's scaled embeddings)
        new.weight = nn.Parameter(torch.cat([w, extra]))
        new.num_embeddings = vocab_size
        self.encoder.set_input_embeddings(new)
        self.encoder.config.vocab_size = vocab_size  # fit checks the ids against it

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # a frozen encoder is a fixed feature map: no dropout, ever
            self.encoder.eval()
        return self

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def forward(self, input_ids=None, attention_mask=None, labels=None, start_positions=None,
                end_positions=None, context_mask=None, inputs_embeds=None) -> HeadOutput:
        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if attention_mask is None:
            attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
        h = self.encoder(input_ids=input_ids, inputs_embeds=inputs_embeds,
                         attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        if self.task == "classification":
            logits = self.head(self._pool(h, attention_mask))  # (B, C)
            loss = None if labels is None else F.cross_entropy(logits, labels)
            return HeadOutput(loss=loss, logits=logits)
        if self.task == "tagging":
            logits = self.head(h)  # (B, L, C)
            loss = None if labels is None else F.cross_entropy(
                logits.reshape(-1, self.num_labels), labels.reshape(-1), ignore_index=IGNORE_INDEX)
            return HeadOutput(loss=loss, logits=logits)
        start, end = self.head(h).unbind(-1)  # (B, L) each
        allowed = attention_mask.bool() if context_mask is None else context_mask.bool()
        start, end = start.masked_fill(~allowed, _NEG), end.masked_fill(~allowed, _NEG)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = (F.cross_entropy(start, start_positions) + F.cross_entropy(end, end_positions)) / 2
        return HeadOutput(loss=loss, start_logits=start, end_logits=end)

    def _pool(self, h, mask):
        if self.pooling == "cls":
            return h[:, 0]
        m = mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        if self.pooling == "mean":
            return (h * m).sum(1) / m.sum(1).clamp_min(1)
        last = mask.long().cumsum(1).argmax(1)  # index of the last real token, right padding
        return h[torch.arange(h.shape[0], device=h.device), last]


# --- encoding examples ---------------------------------------------------------------------


def _wrap(tokenizer, ids: list, add_cls_sep: bool) -> list:
    return [tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id] if add_cls_sep else ids


def _check_len(name, ids, max_length, i):
    if len(ids) > max_length:
        raise ValueError(f"{name} {i} has {len(ids)} tokens, more than max_length={max_length}; "
                         "shorten it or raise max_length (up to the model's positions)")


def encode_classification(tokenizer, texts: Sequence[str], labels: Sequence[int], *,
                          max_length: int = 128, add_cls_sep: bool = True) -> list[dict]:
    """Examples ``{"input_ids": [...], "labels": int}`` for a classification head.

    Texts longer than ``max_length`` tokens ([CLS]/[SEP] included) are cut. Labels are
    class ids 0..C-1; at least two classes must be present.
    """
    texts, labels = list(texts), [int(y) for y in labels]
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels must have the same length; got {len(texts)} texts "
                         f"and {len(labels)} labels")
    if len(set(labels)) < 2:
        raise ValueError(f"the labels hold a single class ({labels[0] if labels else 'none'}); "
                         "a classifier needs at least 2 classes")
    room = max_length - (2 if add_cls_sep else 0)
    out = []
    for text, y in zip(texts, labels):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:room]
        out.append({"input_ids": _wrap(tokenizer, ids, add_cls_sep), "labels": y})
    return out


def _word_pieces(tokenizer, words: list[str]) -> tuple[list, list]:
    """Token ids of a list of words and, per token, the index of its word (None: spaces)."""
    from ssledu.probe import _word_index

    text = " ".join(words)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], _word_index(text, enc["offset_mapping"])


def encode_tagging(tokenizer, words: Sequence[Sequence[str]], tags: Sequence[Sequence],
                   *, tag_names: Sequence[str] | None = None, max_length: int = 128,
                   add_cls_sep: bool = True) -> list[dict]:
    """Examples ``{"input_ids": [...], "labels": [...]}`` for a tagging head.

    words: per text a list of words; tags: per text one tag per word, an int or, with
    ``tag_names`` (e.g. ``toyworld.BIO_TAGS``), a name. A word's tag goes on its first
    token; its other pieces, [CLS]/[SEP] and spaces get ``IGNORE_INDEX`` (BERT's NER
    recipe), so accuracy counts every word once. A text longer than ``max_length`` tokens
    is an error (its cut words would lose their tags).
    """
    words, tags = list(words), list(tags)
    if len(words) != len(tags):
        raise ValueError(f"words and tags must hold the same number of texts; got {len(words)} and {len(tags)}")
    out = []
    for i, (ws, ts) in enumerate(zip(words, tags)):
        ws = ws.split() if isinstance(ws, str) else list(ws)
        if len(ws) != len(ts):
            raise ValueError(f"text {i} has {len(ws)} words but {len(ts)} tags; give one tag per word")
        if tag_names is not None:
            unknown = [t for t in ts if t not in tag_names]
            if unknown:
                raise ValueError(f"tag {unknown[0]!r} of text {i} is not in tag_names {list(tag_names)}")
            ts = [list(tag_names).index(t) for t in ts]
        ids, wids = _word_pieces(tokenizer, ws)
        labels, seen = [], set()
        for w in wids:
            labels.append(IGNORE_INDEX if w is None or w in seen else int(ts[w]))
            seen.add(w)
        if add_cls_sep:
            labels = [IGNORE_INDEX] + labels + [IGNORE_INDEX]
        ids = _wrap(tokenizer, ids, add_cls_sep)
        _check_len("text", ids, max_length, i)
        out.append({"input_ids": ids, "labels": labels})
    return out


def encode_qa(tokenizer, questions: Sequence[str], contexts: Sequence[str], spans: Sequence, *,
              max_length: int = 128) -> list[dict]:
    """Examples for extractive QA: ``[CLS] question [SEP] context [SEP]``.

    spans: per example (start_word, end_word), inclusive whitespace-word indices into the
    context (``toyworld.generate_qa`` gives ``answer_start`` / ``answer_end``). Each
    example: ``input_ids``, ``start_positions`` / ``end_positions`` (the first token of the
    start word, the last token of the end word), ``context_mask`` (1 on context tokens:
    where an answer may lie) and ``word_of_token`` (the context word of each token, -1 off
    the context) to map a predicted span back to words. A question word the tokenizer does
    not know is an error (it would read as [UNK], the same for every unknown word).
    """
    questions, contexts, spans = list(questions), list(contexts), list(spans)
    if not (len(questions) == len(contexts) == len(spans)):
        raise ValueError(f"questions, contexts and spans must have the same length; got "
                         f"{len(questions)}, {len(contexts)} and {len(spans)}")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError("encode_qa needs a tokenizer with [CLS] and [SEP] "
                         "(ssledu.data.tokenize.train_tokenizer makes them)")
    out = []
    for i, (q, c, span) in enumerate(zip(questions, contexts, spans)):
        words = c.split()
        s_word, e_word = (int(v) for v in span)
        if not 0 <= s_word <= e_word < len(words):
            raise ValueError(
                f"answer span {tuple(span)} of example {i} lies outside its context of {len(words)} "
                f"words (valid: 0 <= start <= end <= {len(words) - 1}); spans are word indices, "
                "end inclusive")
        q_ids = tokenizer(q, add_special_tokens=False)["input_ids"]
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in q_ids:
            # unknown words all read as one [UNK]: "what colour is the star ?" and "what size is
            # the star ?" would be the same input, and no head could tell which word to return
            unknown = [w for w in q.split()
                       if tokenizer.unk_token_id in tokenizer(w, add_special_tokens=False)["input_ids"]]
            raise ValueError(
                f"question {i} {q!r} has words the tokenizer does not know: {unknown}; they would all "
                f"become {tokenizer.unk_token}, so questions that differ only in them look the same. "
                "Add them (tokenizer.add_tokens(words)) and give the encoder rows for them "
                "(EncoderWithHead(..., vocab_size=len(tokenizer))), as battery.encode_tasks does")
        c_ids, wids = _word_pieces(tokenizer, words)
        offset = len(q_ids) + 2  # [CLS] question [SEP]
        ids = [tokenizer.cls_token_id] + q_ids + [tokenizer.sep_token_id] + c_ids + [tokenizer.sep_token_id]
        _check_len("example", ids, max_length, i)
        on = [t for t, w in enumerate(wids) if w is not None]
        start = offset + next(t for t in on if wids[t] == s_word)
        end = offset + max(t for t in on if wids[t] == e_word)
        word_of = [-1] * offset + [-1 if w is None else w for w in wids] + [-1]
        out.append({"input_ids": ids, "start_positions": start, "end_positions": end,
                    "context_mask": [int(w >= 0) for w in word_of], "word_of_token": word_of})
    return out


def collate(examples: Sequence[dict], pad_id: int = 0) -> dict:
    """Pad a list of encoded examples into one batch of tensors (right padding).

    input_ids / attention_mask (B, L); labels (B,) or (B, L) padded with IGNORE_INDEX;
    start/end positions (B,); context_mask (B, L). ``word_of_token`` is left out (it is
    not a model input; :func:`predict` reads it from the examples).
    """
    examples = list(examples)
    if not examples:
        raise ValueError("collate needs at least one example")
    batch = pad_batch([e["input_ids"] for e in examples], pad_id)
    L = batch["input_ids"].shape[1]
    first = examples[0]
    if "labels" in first:
        if isinstance(first["labels"], (list, tuple)):
            batch["labels"] = torch.tensor([list(e["labels"]) + [IGNORE_INDEX] * (L - len(e["labels"]))
                                            for e in examples])
        else:
            batch["labels"] = torch.tensor([e["labels"] for e in examples])
    for key in ("start_positions", "end_positions"):
        if key in first:
            batch[key] = torch.tensor([e[key] for e in examples])
    if "context_mask" in first:
        batch["context_mask"] = pad_batch([e["context_mask"] for e in examples], 0)["input_ids"]
    return batch


# --- training and evaluation -------------------------------------------------------------


def train_head(model: EncoderWithHead, examples: Sequence[dict], *, epochs: int | None = 3,
               lr: float = 1e-3, batch_size: int = 32, seed: int = 0, progress: bool = False,
               **fit_kwargs):
    """Train ``model`` on encoded ``examples`` with :func:`ssledu.train.fit`; return its History.

    Defaults suit a head on a nano/tiny encoder (AdamW, lr 1e-3; BERT fine-tunes its base
    size with 2e-5 to 5e-5). Other keywords go to ``fit`` (max_steps, max_seconds, ...).
    """
    from ssledu.train import fit

    if not isinstance(model, EncoderWithHead):
        raise TypeError(f"train_head needs an EncoderWithHead; got {type(model).__name__}")
    examples = list(examples)
    if not examples:
        raise ValueError("examples is empty: encode some examples first (encode_classification, ...)")
    pad = getattr(model.config, "pad_token_id", None) or 0
    fit_kwargs.setdefault("live_plot", False)
    return fit(model, examples, collate_fn=lambda b: collate(b, pad), epochs=epochs, lr=lr,
               batch_size=batch_size, seed=seed, progress=progress, **fit_kwargs)


def decode_span(start_logits, end_logits, mask=None, *, max_answer_len: int = 30):
    """Best answer span per row: argmax of start_logit[s] + end_logit[e] over s <= e < s + max_answer_len.

    start_logits, end_logits: (B, L); mask: (B, L), 1 where an answer may lie (the
    context). Returns (starts, ends), long tensors (B,), always ends >= starts (BERT's SQuAD
    decoding, exhaustive instead of over the top-20 candidates).
    """
    if not isinstance(max_answer_len, int) or isinstance(max_answer_len, bool) or max_answer_len < 1:
        raise ValueError(f"max_answer_len must be a positive integer (tokens); got {max_answer_len!r}")
    if start_logits.shape != end_logits.shape or start_logits.dim() != 2:
        raise ValueError(f"start_logits and end_logits must both be (B, L); got {tuple(start_logits.shape)} "
                         f"and {tuple(end_logits.shape)}")
    B, L = start_logits.shape
    scores = start_logits.float()[:, :, None] + end_logits.float()[:, None, :]  # (B, L_start, L_end)
    idx = torch.arange(L, device=scores.device)
    ok = (idx[None, :] >= idx[:, None]) & (idx[None, :] < idx[:, None] + max_answer_len)  # (L, L)
    ok = ok.unsqueeze(0)
    if mask is not None:
        m = mask.bool()
        ok = ok & m[:, :, None] & m[:, None, :]
        empty = ~m.any(1)
        if empty.any():
            raise ValueError(f"row {int(empty.nonzero()[0])} has no position where an answer may lie "
                             "(its mask is all 0)")
    best = scores.masked_fill(~ok, float("-inf")).reshape(B, -1).argmax(1)
    return best // L, best % L


@torch.no_grad()
def predict(model: EncoderWithHead, examples: Sequence[dict], *, batch_size: int = 64,
            max_answer_len: int = 30) -> list:
    """Predictions for encoded examples: a class id per example (classification), a tag id
    per labelled token (tagging: one per word), a (start_word, end_word) pair (qa).
    Eval mode inside; the model's mode is restored."""
    examples = list(examples)
    pad = getattr(model.config, "pad_token_id", None) or 0
    dev = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            batch = {k: v.to(dev) for k, v in collate(chunk, pad).items()}
            targets = {k: batch.pop(k) for k in ("labels", "start_positions", "end_positions") if k in batch}
            o = model(**batch)
            if model.task == "classification":
                out.extend(o.logits.argmax(-1).tolist())
            elif model.task == "tagging":
                pred = o.logits.argmax(-1)
                labels = targets["labels"]
                out.extend(pred[b][labels[b] != IGNORE_INDEX].tolist() for b in range(len(chunk)))
            else:
                s, e = decode_span(o.start_logits, o.end_logits, batch["context_mask"],
                                   max_answer_len=max_answer_len)
                for ex, si, ei in zip(chunk, s.tolist(), e.tolist()):
                    out.append((ex["word_of_token"][si], ex["word_of_token"][ei]))
    return out


def _truth(example: dict):
    if "start_positions" in example:
        w = example["word_of_token"]
        return (w[example["start_positions"]], w[example["end_positions"]])
    labels = example["labels"]
    if isinstance(labels, (list, tuple)):
        return [y for y in labels if y != IGNORE_INDEX]
    return labels


def accuracy(model: EncoderWithHead, examples: Sequence[dict], **kwargs) -> float:
    """Classification: share of texts right. Tagging: share of words right (every word
    once). QA: exact match, the share of answers whose word span is exactly right."""
    examples = list(examples)
    if not examples:
        raise ValueError("examples is empty")
    preds = predict(model, examples, **kwargs)
    if model.task == "tagging":
        right = total = 0
        for p, ex in zip(preds, examples):
            t = _truth(ex)
            right += sum(int(a == b) for a, b in zip(p, t))
            total += len(t)
        return right / max(total, 1)
    return float(np.mean([p == _truth(ex) for p, ex in zip(preds, examples)]))


def label_efficiency(template: EncoderWithHead, train: Sequence[dict], test: Sequence[dict],
                     sizes: Sequence[int] = (16, 64, 256, None), *, seeds: Sequence[int] = (0,),
                     name: str | None = None, **train_kwargs):
    """Test accuracy after training a copy of ``template`` on N labelled examples.

    For each N in ``sizes`` (None = all) and seed: a deep copy of ``template`` (the
    pretrained weights, untouched) gets a head drawn from the seed, trains on N examples
    (stratified by class for classification, else the first N of a seeded shuffle) and is
    scored by :func:`accuracy`. Returns the DataFrame of :func:`ssledu.probe.label_efficiency`
    (method, n_labels, accuracy, std), so probes and heads go into one plot.
    """
    import pandas as pd

    train, test = list(train), list(test)
    if not train or not test:
        raise ValueError("train and test must each hold at least one example")
    rows = []
    for n in sizes:
        n_eff = len(train) if n is None or n >= len(train) else int(n)
        accs = []
        for seed in seeds:
            if template.task == "classification":
                idx = subsample_per_class(np.array([e["labels"] for e in train]), n_eff, seed)
            else:
                idx = np.random.default_rng(seed).permutation(len(train))[:n_eff]
            model = copy.deepcopy(template)
            model.reset_head(seed)
            train_head(model, [train[i] for i in idx], seed=seed, **train_kwargs)
            accs.append(accuracy(model, test))
        rows.append({"method": name or ("frozen" if template.frozen else "fine-tuned"), "n_labels": n_eff,
                     "accuracy": float(np.mean(accs)), "std": float(np.std(accs))})
    return pd.DataFrame(rows)

"""Looking inside a network, checked against toyworld's answer key (chapter 08).

Two instruments:

- **Attention statistics** per layer and head (Clark et al. 2019, "What does BERT look
  at?"): how far a head looks (mean distance), and how much of its attention goes to the
  token itself, to the previous token and to special tokens ([CLS], [SEP], ...)::

      ids, mask = batch["input_ids"], batch["attention_mask"]
      maps = attention_maps(model, ids, mask)                        # (layers, B, H, L, L)
      special = torch.isin(ids, torch.tensor(tok.all_special_ids))   # [CLS], [SEP], ...
      attention_statistics(maps, mask, special)                      # a DataFrame

  Attention weights need ``attn_implementation="eager"`` (sdpa computes them inside one
  kernel and returns none: build with ``models.bert(tok, attn="eager")`` or call
  ``model.set_attn_implementation("eager")``) and eval mode (dropout rescales the kept
  weights: train-mode rows sum to about 1.1).
- **Gradient x input saliency** (Shrikumar et al. 2016; Simonyan et al. 2014 for the
  gradient): d score / d embedding, times the embedding, per token. Equal to captum's
  ``InputXGradient`` on the word embeddings (a test checks it). With toyworld the word
  that holds the evidence is known, so :func:`qa_evidence_ranks` measures how often the
  saliency ranks it first: a saliency method validated against ground truth.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ssledu.conventions import eval_mode

__all__ = ["attention_maps", "attention_statistics", "grad_x_input", "token_saliency",
           "evidence_rank", "qa_evidence_ranks"]

REDUCTIONS = ("abs", "sum", "l2")


def _network(model):
    """The module that takes input_ids / inputs_embeds: a head's encoder, or the model's."""
    from ssledu.adapt import EncoderWithHead
    from ssledu.probe import _encoder

    return model.encoder if isinstance(model, EncoderWithHead) else _encoder(model)


def _check_eager(model) -> None:
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl not in (None, "eager"):
        raise ValueError(
            f"attention maps need attn_implementation='eager', but this model uses {impl!r}, which "
            "returns no attention weights; build it with attn='eager' (e.g. models.bert(tok, "
            "attn='eager')) or call model.set_attn_implementation('eager') first"
        )


@torch.no_grad()
def attention_maps(model, input_ids, attention_mask=None) -> torch.Tensor:
    """Attention weights of every layer and head: (n_layers, B, H, L, L), rows sum to 1.

    ``[l, b, h, i, j]`` is how much query token i attends to key token j in layer l + 1
    (self-attention of the encoder for an encoder-decoder). Eval mode and no_grad
    inside; the model's mode is restored. Raises ValueError for a non-eager model.
    """
    net = _network(model)
    _check_eager(net)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    dev = next(model.parameters()).device
    with eval_mode(model):
        out = net(input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev), output_attentions=True)
    if not out.attentions:
        raise ValueError(f"{type(net).__name__} returned no attention weights; build it with attn='eager'")
    return torch.stack(out.attentions).float().cpu()


def attention_statistics(maps, attention_mask=None, special_mask=None):
    """Per layer and head, what the attention of real query tokens goes to (Clark et al. 2019).

    maps: (n_layers, B, H, L, L) from :func:`attention_maps` (or the tuple of (B, H, L, L)
    of ``output_attentions``); attention_mask (B, L), 1 = real
    token; special_mask (B, L), 1 = a special token ([CLS], [SEP], ...; default none).
    Returns a pandas DataFrame, one row per (layer, head), layer counted from 1:
    ``mean_distance`` (sum_j a_ij |i - j|, in tokens), ``self`` (a_ii), ``previous``
    (a_i,i-1, over queries i >= 1) and ``special`` (sum of a_ij over special keys j),
    each averaged over the real query tokens of the batch.
    """
    import pandas as pd

    if isinstance(maps, (tuple, list)):  # the per-layer tuple of output_attentions
        maps = torch.stack([torch.as_tensor(m) for m in maps])
    maps = torch.as_tensor(maps).float()
    if maps.dim() != 5 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"maps must be (n_layers, B, H, L, L) as attention_maps returns; got {tuple(maps.shape)}")
    n_layers, B, H, L, _ = maps.shape
    real = torch.ones(B, L) if attention_mask is None else torch.as_tensor(attention_mask).float()
    special = torch.zeros(B, L) if special_mask is None else torch.as_tensor(special_mask).float()
    if real.shape != (B, L) or special.shape != (B, L):
        raise ValueError(f"attention_mask and special_mask must be (B, L) = ({B}, {L}); got "
                         f"{tuple(real.shape)} and {tuple(special.shape)}")
    i = torch.arange(L)
    distance = (i[:, None] - i[None, :]).abs().float()  # (L, L)
    q = real[None, :, None, :]  # (1, B, 1, L): weights of the real queries

    def mean_over_queries(per_query, weights=q):  # (layers, B, H, L) -> (layers, H)
        return (per_query * weights).sum((1, 3)) / weights.sum((1, 3)).clamp_min(1)

    stats = {
        "mean_distance": mean_over_queries((maps * distance).sum(-1)),
        "self": mean_over_queries(maps.diagonal(dim1=-2, dim2=-1)),
        "previous": mean_over_queries(
            torch.nn.functional.pad(maps.diagonal(offset=-1, dim1=-2, dim2=-1), (1, 0)),
            q * (i >= 1).float()),
        "special": mean_over_queries((maps * special[None, :, None, None, :]).sum(-1)),
    }
    rows = [{"layer": layer + 1, "head": h, **{k: float(v[layer, h]) for k, v in stats.items()}}
            for layer in range(n_layers) for h in range(H)]
    return pd.DataFrame(rows)


# --- gradient x input ----------------------------------------------------------------------


def _score(model, out, batch, target):
    """(B,) scores whose gradient the saliency follows."""
    if callable(target):
        return target(out)
    if getattr(out, "start_logits", None) is not None:  # a QA head: the chosen span's score
        if target is None and "start_positions" in batch:
            s, e = batch["start_positions"], batch["end_positions"]
        elif target is None:
            s, e = out.start_logits.argmax(-1), out.end_logits.argmax(-1)
        else:
            s, e = target
        rows = torch.arange(len(s), device=out.start_logits.device)
        return out.start_logits[rows, s] + out.end_logits[rows, e]
    logits = out.logits
    if logits.dim() != 2:
        raise ValueError(f"the model's logits are {tuple(logits.shape)}, not (B, C); pass target as a "
                         "callable output -> (B,) scores (e.g. one token's tag logit)")
    if target is None:
        target = batch["labels"] if "labels" in batch else logits.argmax(-1)
    target = torch.as_tensor(target, device=logits.device)
    return logits[torch.arange(len(logits), device=logits.device), target]


_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "context_mask")


def grad_x_input(model, batch: dict, target=None) -> torch.Tensor:
    """Gradient x input on the word embeddings: (B, L, D), float32 on the CPU.

    batch: a dict with ``input_ids`` (B, L) and optionally ``attention_mask``, and for
    the default target ``labels`` (classification) or ``start_positions`` /
    ``end_positions`` (qa). target: None (the gold class or span when the batch has it,
    else the predicted one), class ids (B,), a (starts, ends) pair for a QA head, or a
    callable ``output -> (B,) scores``. The score of each row is differentiated with
    respect to its word embeddings E (positions added inside the model), and the result
    is dscore/dE * E: captum's ``InputXGradient`` on ``inputs_embeds``. Eval mode inside.
    """
    if "input_ids" not in batch:
        raise ValueError(f"batch needs input_ids; it has {', '.join(batch) or 'nothing'}")
    dev = next(model.parameters()).device
    batch = {k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    inputs = {k: batch[k] for k in _INPUTS if k in batch and k != "input_ids"}
    from ssledu.adapt import EncoderWithHead

    if not isinstance(model, EncoderWithHead):
        inputs.pop("context_mask", None)
    with eval_mode(model), torch.enable_grad():
        embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)  # (B, L, D)
        out = model(inputs_embeds=embeds, **inputs)
        score = _score(model, out, batch, target)
        if score.shape != (len(embeds),):
            raise ValueError(f"the target score must be one number per row, shape ({len(embeds)},); "
                             f"got {tuple(score.shape)}")
        # rows do not interact in eval mode, so the gradient of the sum is each row's own
        (grad,) = torch.autograd.grad(score.sum(), embeds)
    return (grad * embeds).detach().float().cpu()


def token_saliency(model, batch: dict, target=None, *, reduce: str = "abs") -> torch.Tensor:
    """Saliency of each token: (B, L), gradient x input summed over the embedding dimension.

    reduce: "abs" (|sum|, the magnitude used by AllenNLP Interpret, Wallace et al. 2019),
    "sum" (signed: positive pushes the score up) or "l2" (the norm over the dimension).
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {reduce!r}")
    gx = grad_x_input(model, batch, target)
    if reduce == "l2":
        return gx.norm(dim=-1)
    total = gx.sum(-1)
    return total.abs() if reduce == "abs" else total


def evidence_rank(scores, evidence, mask=None) -> torch.Tensor:
    """Rank of the evidence position by score, 1 = the highest: (B,) long.

    scores (B, L); evidence (B,) positions; mask (B, L): 1 where a position competes (others
    are ignored; the evidence must be one of them). Ties count in the evidence's favour.
    """
    scores = torch.as_tensor(scores, dtype=torch.float32)
    evidence = torch.as_tensor(evidence).long()
    B, L = scores.shape
    if evidence.shape != (B,) or (evidence < 0).any() or (evidence >= L).any():
        raise ValueError(f"evidence must hold one position per row in 0..{L - 1}; got {evidence.tolist()}")
    allowed = torch.ones(B, L, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
    rows = torch.arange(B)
    if not allowed[rows, evidence].all():
        raise ValueError("an evidence position is masked out; the mask must allow it")
    own = scores[rows, evidence][:, None]
    return 1 + ((scores > own) & allowed).sum(1)


def qa_evidence_ranks(model, examples: Sequence[dict], evidence_words: Sequence[int], *,
                      exclude_answer: bool = True, reduce: str = "abs", batch_size: int = 32) -> np.ndarray:
    """For each QA example, the rank of the evidence word among the context words by saliency.

    model: an ``adapt.EncoderWithHead`` with task "qa"; examples from ``adapt.encode_qa``;
    evidence_words: per example the context word index of the evidence (toyworld's
    ``generate_qa`` gives ``evidence``). A word's saliency is the sum of its tokens'
    (:func:`token_saliency` of the gold span's score); with ``exclude_answer`` the answer
    words do not compete (the gradient is always large at the answer itself).
    Returns ranks (N,), 1 = the evidence word is the most salient; ``(ranks == 1).mean()``
    is the top-1 rate, against a chance of 1 / (number of competing words).
    """
    from ssledu.adapt import collate

    examples, evidence_words = list(examples), [int(w) for w in evidence_words]
    if len(examples) != len(evidence_words):
        raise ValueError(f"examples and evidence_words must have the same length; got {len(examples)} "
                         f"and {len(evidence_words)}")
    pad = getattr(model.config, "pad_token_id", None) or 0
    ranks = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        sal = token_saliency(model, collate(chunk, pad), reduce=reduce)  # (b, L)
        for ex, row, ev in zip(chunk, sal, evidence_words[start:start + batch_size]):
            word_of = ex["word_of_token"]
            n_words = max(word_of) + 1
            if not 0 <= ev < n_words:
                raise ValueError(f"evidence word {ev} lies outside the context of {n_words} words")
            per_word = torch.zeros(n_words).index_add_(
                0, torch.tensor([w for w in word_of if w >= 0]),
                row[: len(word_of)][torch.tensor(word_of) >= 0])
            allowed = torch.ones(1, n_words, dtype=torch.bool)
            if exclude_answer:
                s, e = word_of[ex["start_positions"]], word_of[ex["end_positions"]]
                allowed[0, s:e + 1] = ev in range(s, e + 1)
            ranks.append(int(evidence_rank(per_word[None], [ev], allowed)[0]))
    return np.array(ranks)

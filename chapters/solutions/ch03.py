"""Worked solutions for chapter 03's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import math

import torch
import torch.nn.functional as F

SOLUTIONS = {}
WRONG = {}


# --- 1. the causal LM loss -----------------------------------------------------------

def causal_lm_loss(logits, input_ids, attention_mask):
    logits, targets = logits[:, :-1], input_ids[:, 1:]  # position t predicts token t + 1
    keep = attention_mask[:, 1:].bool()
    return F.cross_entropy(logits[keep], targets[keep]).item()


def causal_lm_loss_wrong(logits, input_ids, attention_mask):  # forgot the shift
    keep = attention_mask.bool()
    return F.cross_entropy(logits[keep], input_ids[keep]).item()


SOLUTIONS["causal_lm_loss"] = causal_lm_loss
WRONG["causal_lm_loss"] = causal_lm_loss_wrong


# --- 2. perplexity from per-batch losses ---------------------------------------------

def perplexity_from_batches(batch_losses, batch_tokens):
    total_nll = sum(loss * n for loss, n in zip(batch_losses, batch_tokens))
    return math.exp(total_nll / sum(batch_tokens))


def perplexity_from_batches_wrong(batch_losses, batch_tokens):  # every batch weighs the same
    return math.exp(sum(batch_losses) / len(batch_losses))


SOLUTIONS["perplexity_from_batches"] = perplexity_from_batches
WRONG["perplexity_from_batches"] = perplexity_from_batches_wrong


# --- 3. top-p filtering --------------------------------------------------------------

def top_p_filter(logits, top_p):
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    before = probs.cumsum(-1) - probs  # mass of the more likely tokens
    drop_sorted = before >= top_p  # the nucleus is complete before this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def top_p_filter_wrong(logits, top_p):  # drops the token that crosses top_p
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    drop_sorted = probs.cumsum(-1) > top_p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


SOLUTIONS["top_p_filter"] = top_p_filter
WRONG["top_p_filter"] = top_p_filter_wrong

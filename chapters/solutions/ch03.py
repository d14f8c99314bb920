"""Worked solutions for chapter 03's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import math

import torch
import torch.nn.functional as F

from ssledu.data import toyworld

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


# --- 3. the forward-copy ceiling -----------------------------------------------------

def forward_copy_ceiling(story):
    words = story.split()
    chances = []
    for i, kind in enumerate(toyworld.position_kinds(story)):
        if kind != "forward_copy":
            continue
        dist = toyworld.next_word_distribution(words[:i])
        top = max(dist.values())
        tied = [w for w, p in dist.items() if math.isclose(p, top)]
        # the best guess is one of the tied words, picked at random: right 1/len(tied) of the time
        chances.append((words[i] in tied) / len(tied))
    return sum(chances) / len(chances)


def forward_copy_ceiling_wrong(story):  # one fixed argmax per word: ties are not a coin flip
    words = story.split()
    hits = []
    for i, kind in enumerate(toyworld.position_kinds(story)):
        if kind == "forward_copy":
            dist = toyworld.next_word_distribution(words[:i])
            hits.append(max(dist, key=dist.get) == words[i])
    return sum(hits) / len(hits)


SOLUTIONS["forward_copy_ceiling"] = forward_copy_ceiling
WRONG["forward_copy_ceiling"] = forward_copy_ceiling_wrong


# --- 4. top-p filtering --------------------------------------------------------------

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

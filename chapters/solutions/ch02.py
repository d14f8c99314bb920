"""Worked solutions for chapter 02's exercises, keyed by checker name (``ssledu.check.<name>``).

``SOLUTIONS[name]`` passes the checker; ``WRONG[name]`` is a plausible mistake that must fail.
"""

import math

import torch.nn.functional as F

from ssledu.data import toyworld

SOLUTIONS = {}
WRONG = {}


# --- 1. the MLM loss from logits ----------------------------------------------------

def mlm_loss_from_logits(logits, labels):
    logp = logits.log_softmax(dim=-1)  # (B, L, V)
    keep = labels != -100  # (B, L)
    picked = logp[keep].gather(1, labels[keep].unsqueeze(1)).squeeze(1)
    return -picked.mean().item()


def mlm_loss_from_logits_wrong(logits, labels):  # averages over every position
    V = logits.shape[-1]
    total = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction="sum")
    return (total / labels.numel()).item()


SOLUTIONS["mlm_loss_from_logits"] = mlm_loss_from_logits
WRONG["mlm_loss_from_logits"] = mlm_loss_from_logits_wrong


# --- 2. how far can the model trust a word it reads? ---------------------------------
# P(original | shows a word) = 1 - P(shows a wrong word) / P(shows a word).
# Shows a word: every position except the selected ones turned into [MASK].
# Shows a wrong word: selected, drawn for "random", and the draw missed the original.
# Chapter setting (p = 0.3, 80/10/10, 58 tokens): 1 - 0.3*0.1*(57/58) / (1 - 0.3*0.8) = 0.961,
# close to what the 80/10/10 model does on clean input in section 8.

def visible_word_is_original(p, mask_share, random_share, vocab_size):
    wrong = p * random_share * (vocab_size - 1) / vocab_size
    return 1 - wrong / (1 - p * mask_share)


def visible_word_is_original_wrong(p, mask_share, random_share, vocab_size):
    # forgets to condition on "not [MASK]": the share of ALL positions that are right
    return 1 - p * random_share * (vocab_size - 1) / vocab_size


SOLUTIONS["visible_word_is_original"] = visible_word_is_original
WRONG["visible_word_is_original"] = visible_word_is_original_wrong


# --- 3. the ceiling of a cloze test with two blanks ---------------------------------
# Sum the exact probability of every complete story over the words at both blanks, keyed by
# the word at i. Hiding a forward copy together with its restatement leaves, e.g. for a
# colour, six equally likely answers: the ceiling drops from 1 to 1/6.

def two_blank_ceiling(story, i, j):
    words = story.split()
    first, last = min(i, j), max(i, j)
    totals = {}
    for x in toyworld.vocabulary():
        for y in toyworld.vocabulary():
            trial = list(words)
            trial[first], trial[last] = x, y
            try:
                nll = toyworld.true_nll(trial)
            except ValueError:  # a story the generator cannot produce
                continue
            answer = trial[i]
            totals[answer] = totals.get(answer, 0.0) + math.exp(-nll)
    return max(totals.values()) / sum(totals.values())


def two_blank_ceiling_wrong(story, i, j):  # hides word i alone: j still gives the answer away
    return toyworld.best_guess_accuracy(story)["both"][i]


SOLUTIONS["two_blank_ceiling"] = two_blank_ceiling
WRONG["two_blank_ceiling"] = two_blank_ceiling_wrong

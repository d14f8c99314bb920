"""Exercises of chapter 02 (masked language modelling)."""

from __future__ import annotations

import math
import random

from ssledu.check import Exercise, close, register

# --- 1. the MLM loss from logits ---------------------------------------------------


def _ref_mlm_loss_from_logits(logits, labels):
    from ssledu.objectives.mlm import mlm_loss

    return float(mlm_loss(logits, labels))


def _cases_loss(rng: random.Random):
    import torch

    B, L, V = rng.randrange(1, 4), rng.randrange(3, 10), rng.randrange(5, 15)
    g = torch.Generator().manual_seed(rng.randrange(10_000))
    logits = torch.randn(B, L, V, generator=g) * 2
    labels = torch.randint(V, (B, L), generator=g)
    keep = torch.rand(B, L, generator=g) < 0.3
    keep[0, rng.randrange(L)] = True  # at least one position carries a loss
    return [{"logits": logits, "labels": labels.masked_fill(~keep, -100)}]


register(
    Exercise(
        name="mlm_loss_from_logits",
        chapter="02",
        description="the MLM loss: mean negative log-probability of the original token over the "
        "positions whose label is not -100",
        reference=_ref_mlm_loss_from_logits,
        cases=_cases_loss,
        compare=close(rel=1e-4, abs_=1e-5),
        hint="log_softmax over the vocabulary, pick the log-probability of each label, and average "
        "over the labelled positions only (not over all B x L positions)",
    )
)


# --- 2. how far can the model trust a word it reads? ---------------------------------


def _ref_visible_word_is_original(p, mask_share, random_share, vocab_size):
    # A position shows a real word unless it was selected and turned into [MASK]; it shows a
    # wrong word only if it was selected, drawn for "random", and the draw missed the original.
    shows_a_word = 1.0 - p * mask_share
    shows_a_wrong_word = p * random_share * (vocab_size - 1) / vocab_size
    return 1.0 - shows_a_wrong_word / shows_a_word


def _cases_trust(rng: random.Random):
    mask_share = rng.choice([0.5, 0.6, 0.8, 0.9])
    return [{
        "p": rng.choice([0.1, 0.15, 0.2, 0.3, 0.4, 0.5]),
        "mask_share": mask_share,
        "random_share": rng.choice([0.5, 1.0]) * (1.0 - mask_share),
        "vocab_size": rng.randrange(10, 300),
    }]


register(
    Exercise(
        name="visible_word_is_original",
        chapter="02",
        description="under BERT-style corruption (select with p; of the selected, a share becomes "
        "[MASK], a share a uniformly random token of the vocabulary), the probability that a "
        "position showing a real word (not [MASK]) shows its original word",
        reference=_ref_visible_word_is_original,
        cases=_cases_trust,
        compare=close(rel=1e-6, abs_=1e-9),
        hint="this is a conditional probability: the model never sees positions that show [MASK] "
        "here. List the ways a position can end up showing a word, say in which of them the word "
        "is wrong, and remember that a random draw over the whole vocabulary can hit the original",
    )
)


# --- 3. the ceiling of a cloze test with two blanks --------------------------------


def _ref_two_blank_ceiling(story, i, j):
    from ssledu.data import toyworld

    words = story.split()
    a, b = sorted((i, j))
    weight = {}  # word at i -> summed probability of the stories that put it there
    for wa in toyworld.next_word_distribution(words[:a]):
        if wa == toyworld.EOS:
            continue
        try:
            options_b = toyworld.next_word_distribution(words[:a] + [wa] + words[a + 1:b])
        except ValueError:  # wa makes the words between the blanks impossible
            continue
        for wb in options_b:
            if wb == toyworld.EOS:
                continue
            trial = words[:a] + [wa] + words[a + 1:b] + [wb] + words[b + 1:]
            try:
                p = math.exp(-toyworld.true_nll(trial))
            except ValueError:
                continue
            key = wa if a == i else wb
            weight[key] = weight.get(key, 0.0) + p
    return max(weight.values()) / sum(weight.values())


def _cases_two_blanks(rng: random.Random):
    from ssledu.data import toyworld

    seed = rng.randrange(100_000)
    stories = toyworld.generate_texts(20, seed=seed)
    cases = []
    for story in stories:  # a forward copy hidden together with its later restatement
        words = story.split()
        pairs = [(i, j) for i, kind in enumerate(toyworld.position_kinds(story)) if kind == "forward_copy"
                 for j in range(i + 1, len(words)) if words[j] == words[i]]
        if pairs:
            i, j = rng.choice(pairs)
            cases.append({"story": story, "i": i, "j": j})
            break
    k, m = rng.sample(range(len(words)), 2)  # and any two words of the same story
    return cases + [{"story": story, "i": m, "j": k}]


register(
    Exercise(
        name="two_blank_ceiling",
        chapter="02",
        description="the expected accuracy of the Bayes-optimal guess of word i of a toyworld story "
        "when words i AND j are both hidden (max over w of p(word i = w | every other word))",
        reference=_ref_two_blank_ceiling,
        cases=_cases_two_blanks,
        compare=close(rel=1e-6, abs_=1e-9),
        hint="the probability of a word w at i given the visible words is proportional to the "
        "total probability of all the complete stories that agree with the visible words and put "
        "w at i, whatever they put at j. toyworld.true_nll gives minus the log-probability of a "
        "complete story (an impossible one raises ValueError), and next_word_distribution lists "
        "the words a prefix allows",
    )
)

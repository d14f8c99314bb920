"""Chapter 03's measurements: the forward-copy ceiling and the masked LM's accuracy by kind."""

from fractions import Fraction

import pytest
import torch

from ssledu.data import toyworld

STORY = ("we see two shapes . a big red circle sits on the left . "
         "a small blue square is above it . finally the circle was big and red .")


def _ceiling(story):
    from ssledu.exercises.ch03 import _ref_forward_copy_ceiling

    return _ref_forward_copy_ceiling(story)


def test_forward_copy_ceiling_of_the_chapter_story_by_hand():
    # Forward copies: "two" (1 of 3 numbers), "big" (1 of 3 sizes), "red" (1 of 6 colours),
    # "circle" (1 of 5 shapes); the best causal guess is right 1/k of the time at each.
    expected = (Fraction(1, 3) + Fraction(1, 3) + Fraction(1, 6) + Fraction(1, 5)) / 4
    assert toyworld.position_kinds(STORY).count("forward_copy") == 4
    assert _ceiling(STORY) == pytest.approx(float(expected), abs=1e-12)


def test_forward_copy_ceiling_counts_a_tie_as_a_coin_flip_not_a_hit():
    # A model that names one fixed word of a tie is right 0 or 1 times; the ceiling is 1/k.
    value = _ceiling(STORY)
    assert 0 < value < 1 and value not in (0.25, 0.5, 0.75)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_copy_ceiling_agrees_with_best_guess_accuracy(seed):
    """Two implementations: the exercise's reference and toyworld.best_guess_accuracy (left)."""
    for story in toyworld.generate_texts(20, seed=seed):
        left = toyworld.best_guess_accuracy(story)["left"]
        kinds = toyworld.position_kinds(story)
        picked = [a for a, k in zip(left, kinds) if k == "forward_copy"]
        assert _ceiling(story) == pytest.approx(sum(picked) / len(picked), abs=1e-12)


def test_cloze_records_line_up_with_position_kinds():
    """The chapter groups cloze_scores' records by toyworld.position_kinds of the same texts,
    zipped in order: with a word tokenizer there is one record per word, in reading order."""
    from ssledu import models
    from ssledu.data import train_tokenizer
    from ssledu.objectives.mlm import cloze_scores

    texts = toyworld.generate_texts(6, seed=3)
    tok = train_tokenizer(toyworld.generate_texts(200, seed=4) + texts, kind="word")
    torch.manual_seed(0)
    bert = models.bert(tok, "nano", n_layer=1, n_head=2, d_model=16, d_ff=32, max_len=64, dropout=0.0)
    cloze = cloze_scores(bert, tok, texts, batch_size=7)
    kinds = [k for t in texts for k in toyworld.position_kinds(t)]
    words = [w for t in texts for w in t.split()]
    assert len(cloze["correct"]) == len(kinds) == len(words)
    assert tok.convert_ids_to_tokens(cloze["target"]) == words
